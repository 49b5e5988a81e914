"""`PSPRegularizer`: the PSP penalty as a `keras.regularizers.Regularizer`."""

import re

import keras
from keras import ops

from keras_psp.penalty import psp_penalty
from keras_psp.penalty import validate_reduction
from keras_psp.penalty import validate_strength


def _keras_divides_activity_loss(version):
    """Whether `Layer.__call__` divides activity losses by the batch size.

    Keras 3.14.0 and later divide the value an `activity_regularizer` returns
    by the batch size (`ops.divide_no_nan(loss, batch_size)` when the output
    has rank > 0), on every backend: keras-team/keras#22021, fixing
    keras-team/keras#22018, merged on 2026-01-23. Keras 3.8 to 3.13 add the
    value as it is, on every backend (the code is in the backend-independent
    `keras/src/layers/layer.py`). Development builds of 3.14.0 count as
    dividing.
    """
    major, minor = (int(part) for part in re.findall(r"\d+", version)[:2])
    return (major, minor) >= (3, 14)


# Decided once, for the installed Keras.
_KERAS_DIVIDES_ACTIVITY_LOSS = _keras_divides_activity_loss(keras.__version__)


def activity_loss(penalty, x):
    """What an activity regularizer returns for a `penalty` already averaged
    over the batch of `x`, so that the loss Keras records is `penalty` on
    every Keras version: Keras 3.14 and later divide it by the batch size."""
    if _KERAS_DIVIDES_ACTIVITY_LOSS:
        return penalty * ops.cast(ops.shape(x)[0], penalty.dtype)
    return penalty


@keras.saving.register_keras_serializable(package="keras_psp")
class PSPRegularizer(keras.regularizers.Regularizer):
    """The PSP penalty as an activity regularizer.

    The Keras-native way to add PSP to one layer: give the layer a linear
    activation and `activity_regularizer=PSPRegularizer(...)`, and put its
    activation in a `keras.layers.Activation` after it. Its output is then
    the pre-activation `z`, and the loss Keras records for it is
    `keras_psp.psp_penalty(z, strength, reduction)`, the loss `PSPDense` or
    `PreActivationRegularizer` adds for the same `z`:

    - `reduction="sum"`: `λ · (1/B) Σ_b ½ Σ_u z[b, u]²` (paper eq. 7,
      averaged over the B examples of the batch);
    - `reduction="mean"`: `λ · mean(z²)` (the authors' PyTorch code).

    Keras 3.14 and later divide an activity regularizer's value by the batch
    size (keras-team/keras#22021); `psp_penalty` already averages over the
    batch, so on those versions calling the regularizer returns the penalty
    times the batch size, and the recorded loss is the penalty on every
    Keras version this library supports (to float32 rounding: multiplying
    and dividing by a batch size that is not a power of 2 may change the
    last bit).

    Only the layer's output is regularized: with a non-linear `activation`
    in the layer itself, the penalty would fall on `φ(z)`, not `z`. Used as a
    kernel or bias regularizer, the first axis would be taken for a batch;
    PSP is a penalty on activities only. λ is a Python float fixed in the
    compiled step: for a λ that callbacks change during `fit` (e.g.
    `StrengthScheduler`) and for the `psp_loss` log entry of `PSPModel`, use
    the PSP layers. The penalty is computed in float32, so `mixed_float16`
    models stay finite.

    Args:
        strength: λ, a finite float >= 0.
        reduction: `"sum"` (default) or `"mean"`, as in
            `keras_psp.psp_penalty`.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> from keras_psp import PSPRegularizer
    >>> dense = keras.layers.Dense(
    ...     2,
    ...     kernel_initializer="ones",
    ...     activity_regularizer=PSPRegularizer(0.1),
    ... )
    >>> model = keras.Sequential(
    ...     [keras.Input((2,)), dense, keras.layers.Activation("relu")]
    ... )
    >>> _ = model(np.array([[1.0, 0.0], [1.0, 2.0]]))
    >>> # z = [[1, 1], [3, 3]]: 0.1 * (0.5*2 + 0.5*18) / 2
    >>> round(float(keras.ops.convert_to_numpy(model.losses[0])), 6)
    0.5
    """

    def __init__(self, strength=1e-3, reduction="sum"):
        self.strength = validate_strength(strength)
        self.reduction = validate_reduction(reduction)

    def __call__(self, x):
        return activity_loss(psp_penalty(x, self.strength, self.reduction), x)

    def get_config(self):
        return {"strength": self.strength, "reduction": self.reduction}
