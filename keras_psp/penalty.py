"""The PSP penalty: one function that every layer and the converter call."""

import math
import numbers

import numpy as np
from keras import ops

REDUCTIONS = ("sum", "mean")
FLOAT32_MAX = float(np.finfo("float32").max)


def validate_strength(strength, name="strength", meaning="the PSP strength λ"):
    """Checks a PSP strength λ (or another penalty's) and returns it as a
    Python float.

    Args:
        strength: the value to check: a non-negative real number, finite
            in float32 (λ is stored in a float32 variable).
        name: the argument's name, used in the error message.
        meaning: what the argument is, for the error message.

    Returns:
        `float(strength)`.

    Raises:
        TypeError: if `strength` is not a real number (bools are refused).
        ValueError: if `strength` is negative, NaN, or infinite in float32.
    """
    if isinstance(strength, (bool, np.bool_)) or not isinstance(
        strength, numbers.Real
    ):
        raise TypeError(
            f"Argument `{name}` must be a non-negative real number "
            f"({meaning}). Received: {name}={strength!r} of type "
            f"{type(strength).__name__}."
        )
    value = float(strength)
    # λ lives in a float32 variable: 1e300 would become inf there.
    if not math.isfinite(value) or not 0 <= value <= FLOAT32_MAX:
        raise ValueError(
            f"Argument `{name}` must be a finite number >= 0 that float32 "
            f"can hold (at most {FLOAT32_MAX:.4g}; {meaning}). "
            f"Received: {name}={strength!r}."
        )
    return value


def validate_reduction(reduction, name="reduction"):
    """Checks a PSP `reduction` and returns it.

    Args:
        reduction: the value to check: `"sum"` or `"mean"`.
        name: the argument's name, used in the error message.

    Raises:
        ValueError: if `reduction` is not one of `"sum"`, `"mean"`.
    """
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(
            f"Argument `{name}` must be one of {REDUCTIONS}. "
            f"Received: {name}={reduction!r}."
        )
    return reduction


def psp_penalty(z, strength, reduction="sum", mask=None):
    """Computes the post-synaptic potential (PSP) penalty of `z`.

    `z` holds the pre-activations of one layer for a batch: its first axis is
    the batch, every other entry is a unit (a neuron of a dense layer, or one
    position of one filter of a convolution). With B examples and `z[b, u]`
    the potential of unit u for example b:

    - `reduction="sum"` (default; paper eq. 7, averaged over the batch like
      the data loss, so λ means the same at any batch size):

          penalty = λ · (1/B) · Σ_b ½ Σ_u z[b, u]²

    - `reduction="mean"` (the normalization of the authors' public PyTorch
      code, with which the paper's λ = 1e-3 results were obtained):

          penalty = λ · (1/(B·U)) · Σ_b Σ_u z[b, u]²

      The authors also divide λ by the number L of regularized layers; that
      is done by giving each layer λ/L (`apply_psp(...,
      divide_by_num_layers=True)`), not here.

    With a `mask` (a sequence's Keras mask or padding mask, shape `(B, T)`,
    true or 1 at real positions), the padded positions add nothing: unit u
    of `z[b, t, u]` counts only where `mask[b, t]` is set, and `"mean"`
    divides by the number of units at real positions (`"sum"` still divides
    by B, as the data loss does). A half-padded batch thus has the penalty
    of its real positions alone. A mask whose shape is not that of `z`'s
    leading axes (e.g. for a layer after pooling) is not applied.

    The sum is accumulated in float32 whatever the dtype of `z`, so that
    `mixed_float16` models stay finite for activations in the hundreds.

    Args:
        z: tensor of rank >= 1 whose first axis is the batch.
        strength: λ, a Python number or a scalar tensor/variable.
        reduction: `"sum"` or `"mean"`, as above.
        mask: None, or a boolean or 0/1 tensor of `z`'s leading shape
            (batch, positions), as above.

    Returns:
        A float32 scalar tensor.

    Example:

    >>> import numpy as np
    >>> z = np.array([[1.0, 2.0], [3.0, 4.0]])
    >>> float(psp_penalty(z, 0.1, "sum"))  # 0.1 * (0.5*5 + 0.5*25) / 2
    0.75
    >>> float(psp_penalty(z, 0.1, "mean"))  # 0.1 * 30 / 4
    0.75
    """
    validate_reduction(reduction)
    if len(z.shape) < 1:
        raise ValueError(
            "Argument `z` must have a batch axis (rank >= 1). "
            f"Received a tensor of shape {z.shape}."
        )
    z = ops.convert_to_tensor(z)
    shape = ops.shape(z)  # ints, or scalar tensors where unknown
    weights = _mask_weights(mask, z)
    if weights is not None:
        z = z * ops.cast(weights, z.dtype)
    squares = _sum_of_squares(z)  # float32
    if reduction == "mean":
        # Every entry of z, or the units at real positions only.
        counted = shape if weights is None else shape[len(mask.shape) :]
        count = 1
        for size in counted:
            count = count * size
        count = ops.cast(count, "float32")
        if weights is not None:
            real = ops.sum(ops.cast(mask, "float32"))
            count = count * ops.maximum(real, 1.0)
        value = squares / count
    else:
        value = 0.5 * squares / ops.cast(shape[0], "float32")
    return ops.cast(strength, "float32") * value


def _mask_weights(mask, z):
    """`mask` shaped to multiply `z` (ones on its unit axes), or None when
    there is no mask or it does not cover `z`'s leading axes."""
    if mask is None or not hasattr(mask, "shape"):
        return None
    if len(mask.shape) < 1 or len(mask.shape) > len(z.shape):
        return None
    for mask_size, z_size in zip(mask.shape, z.shape, strict=False):
        if (
            mask_size is not None
            and z_size is not None
            and (mask_size != z_size)
        ):
            return None
    weights = ops.convert_to_tensor(mask)
    extra = len(z.shape) - len(mask.shape)
    return ops.reshape(weights, tuple(ops.shape(weights)) + (1,) * extra)


@ops.custom_gradient
def _sum_of_squares(z):
    """`Σ z²` over every entry of `z`, in float32, with the gradient `2z`.

    The value is the same as `ops.sum(ops.square(z))`; the gradient is
    written by hand because automatic differentiation of that expression
    makes three passes over `z` where one is needed (broadcast the
    upstream scalar to z's shape, multiply by 2, multiply by z): one
    scalar times `z` (cast back to z's dtype). Measured on a 2-core CPU
    (BENCHMARKS.md), this halves the penalty's share of a training step on
    TensorFlow (without XLA) and PyTorch; XLA (JAX, `jit_compile=True`)
    fuses either form into the passes that happen anyway. The float32 copy
    of a `mixed_float16` z is not kept for the backward pass.
    """
    z32 = ops.cast(z, "float32")
    value = ops.sum(z32 * z32)

    # PyTorch calls grad(*args, upstream=...), TensorFlow and JAX
    # grad(upstream): the form keras.ops.custom_gradient documents.
    def grad(*args, upstream=None):
        if upstream is None:
            (upstream,) = args
        scale = ops.cast(2.0 * upstream, "float32")
        return ops.cast(ops.cast(z, "float32") * scale, z.dtype)

    return value, grad
