"""Perplexity-based activation sparsity: the measure and its penalty."""

import keras
from keras import ops

from keras_psp.penalty import validate_strength
from keras_psp.regularizers.psp_regularizer import activity_loss
from keras_psp.validation import validate_axis


def activation_sparsity(a, axis=-1):
    """The perplexity-based sparsity of each example's activations.

    Huesmann, Garcia Rodriguez, Linsen, Risse, "The Impact of Activation
    Sparsity on Overfitting in Convolutional Neural Networks", arXiv
    2104.06153 (following Huesmann, Klemm, Linsen, Risse, arXiv
    2002.09237), define layer-wise activation sparsity through perplexity.
    For one example and a layer with n channels (units of a dense layer,
    feature maps of a convolution, along `axis`):

        x_c  = mean of |a| over the channel's positions,
        p_c  = x_c / Σ_c' x_c',
        PP   = exp(-Σ_c p_c log p_c)            (1 <= PP <= n),
        S    = (n - PP) / (n - 1)               (0 <= S <= 1).

    S is 0 when every channel is equally active and 1 when one channel
    carries everything; S = 1 also when nothing is active (all zero). It
    does not change when the activations are scaled. Choices the text
    available to us leaves open, made here: channels as the units of a
    convolution (the mean |a| over positions), the normalization to [0, 1]
    by n - 1, and S = 1 for all-zero activations.

    Args:
        a: activations, shape `(batch, ..., channels)` (`axis` picks the
            channel axis).
        axis: the channel axis (default -1, channels last).

    Returns:
        A float32 tensor of shape `(batch,)`: S for each example.

    Example:

    >>> import numpy as np
    >>> a = np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 3.0, 0.0, 0.0],
    ...               [1.0, 1.0, 0.0, 0.0]])
    >>> s = keras.ops.convert_to_numpy(activation_sparsity(a))
    >>> [round(float(v), 4) for v in s]  # equal, one-hot, two of four
    [0.0, 1.0, 0.6667]
    """
    a = ops.abs(ops.cast(a, "float32"))
    rank = len(a.shape)
    if rank < 2:
        raise ValueError(
            "activation_sparsity expects activations of shape (batch, ..., "
            f"channels); received a tensor of shape {tuple(a.shape)}."
        )
    if not -rank <= axis < rank:
        raise ValueError(
            f"Argument `axis` must be in [{-rank}, {rank}) for activations "
            f"of shape {tuple(a.shape)}. Received: axis={axis}."
        )
    axis = axis % rank
    if axis == 0:
        raise ValueError(
            "Argument `axis` must not be the batch axis (0). Received: "
            f"axis={axis}."
        )
    a = ops.moveaxis(a, axis, -1)
    spatial = tuple(range(1, rank - 1))
    x = ops.mean(a, axis=spatial) if spatial else a  # (batch, n)
    n = x.shape[-1]
    total = ops.sum(x, axis=-1, keepdims=True)
    active = total[:, 0] > 0
    p = x / ops.where(total > 0, total, 1.0)
    # 0 log 0 = 0; the log's argument is kept positive so that its
    # gradient stays finite where p is 0.
    plogp = ops.where(p > 0, p * ops.log(ops.where(p > 0, p, 1.0)), 0.0)
    perplexity = ops.exp(-ops.sum(plogp, axis=-1))
    sparsity = (n - perplexity) / max(n - 1, 1)
    return ops.where(active, sparsity, 1.0)


@keras.saving.register_keras_serializable(package="keras_psp")
class ActivationSparsity(keras.regularizers.Regularizer):
    """Penalizes activation sparsity above a target: an activity regularizer.

    The targeted sparsity regularization of Huesmann et al. (arXiv
    2002.09237): activation sparsity, rising in a layer as it starts to
    overfit, is penalized in the layers that show it, so that activations
    stay dense. For a layer's activations `a` (put it on a layer whose
    output is its activation: `activity_regularizer=` of a layer with a
    non-linear `activation`, or of an `Activation` layer), with S the
    per-example sparsity of `activation_sparsity`,

        penalty = λ · mean over the batch of max(S - target, 0).

    "Targeted" is layer by layer: give it to the layers whose sparsity
    rises (see `keras_psp.callbacks.ActivationSparsityMonitor`), each with
    its own λ. Choices made here where the text available to us is silent:
    the hinge at `target` (0 by default: all sparsity is penalized),
    averaging over the batch (so λ means the same at any batch size).

    Args:
        strength: λ, a finite float >= 0.
        target: the sparsity in [0, 1) below which nothing is penalized.
        axis: the channel axis of the activations (default -1).

    Example:

    >>> import numpy as np
    >>> layer = keras.layers.Dense(
    ...     8, activation="relu",
    ...     activity_regularizer=ActivationSparsity(1e-2),
    ... )
    >>> _ = layer(np.random.default_rng(0).normal(size=(4, 3)))
    >>> 0 <= float(keras.ops.convert_to_numpy(layer.losses[0])) <= 1e-2
    True
    """

    def __init__(self, strength=1e-2, target=0.0, axis=-1):
        self.strength = validate_strength(
            strength, meaning="the activation-sparsity penalty's strength λ"
        )
        if isinstance(target, bool) or not isinstance(target, (int, float)):
            raise TypeError(
                "Argument `target` must be a real number in [0, 1) (the "
                f"sparsity left unpenalized). Received: target={target!r}."
            )
        if not 0 <= target < 1:
            raise ValueError(
                "Argument `target` must be in [0, 1) (the sparsity left "
                f"unpenalized). Received: target={target!r}."
            )
        self.target = float(target)
        self.axis = validate_axis(axis)

    def __call__(self, x):
        excess = ops.relu(activation_sparsity(x, self.axis) - self.target)
        return activity_loss(self.strength * ops.mean(excess), x)

    def get_config(self):
        return {
            "strength": self.strength,
            "target": self.target,
            "axis": self.axis,
        }
