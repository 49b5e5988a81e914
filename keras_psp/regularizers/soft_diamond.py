"""`SoftDiamond`: the negative log of a symmetric alpha-stable weight prior."""

import collections
import functools
import math
import numbers

import keras
import numpy as np
from keras import ops

from keras_psp.penalty import validate_strength
from keras_psp.regularizers import alpha_stable


def _validate_dispersion(dispersion):
    if isinstance(dispersion, (bool, np.bool_)) or not isinstance(
        dispersion, numbers.Real
    ):
        raise TypeError(
            "Argument `dispersion` must be a finite real number > 0 (the "
            "dispersion γ of the alpha-stable prior). Received: "
            f"dispersion={dispersion!r} of type {type(dispersion).__name__}."
        )
    value = float(dispersion)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            "Argument `dispersion` must be a finite real number > 0 (the "
            "dispersion γ of the alpha-stable prior). Received: "
            f"dispersion={dispersion!r}."
        )
    return value


_Tail = collections.namedtuple("_Tail", ["offset", "slope", "series"])


@functools.lru_cache(maxsize=16)
def _spline(alpha):
    """The penalty's pieces for `alpha`, computed once (not at every call,
    which is every training step on an eager backend): the grid step; per
    grid interval, the spline as v0 + c1 t + c2 t² + c3 t³ (t in [0, 1]);
    and the tail beyond the table."""
    step, values, slopes = alpha_stable.negative_log_density_table(alpha)
    centred = values - values[0]
    end = step * (values.size - 1)
    # The coefficients are computed in float64: the small ones keep their
    # precision in float32, where differences of the large values would not.
    v0, v1 = centred[:-1], centred[1:]
    d0, d1 = slopes[:-1] * step, slopes[1:] * step
    coefficients = np.stack(
        [v0, d0, 3 * (v1 - v0) - 2 * d0 - d1, 2 * (v0 - v1) + d0 + d1],
        axis=-1,
    )
    coefficients.setflags(write=False)
    if end >= alpha_stable.TABLE_END:
        tail = _Tail(
            math.log(math.pi) - float(values[0]),
            None,
            tuple(alpha_stable.tail_coefficients(alpha)),
        )
    else:
        tail = _Tail(float(centred[-1]), float(slopes[-1]), None)
    return step, coefficients, tail


def soft_diamond_penalty(x, alpha, dispersion):
    """`-log p(x) + log p(0)` elementwise, p the SαS(α, γ) density.

    The table of `alpha_stable.negative_log_density_table` is interpolated
    with cubic Hermite splines (values and slopes at the grid points), so
    the penalty and its gradient are continuous and differentiable by
    every backend; beyond the table's end (u = |x| / γ^(1/α) = 20) the
    density's series in `u^-α` (`alpha_stable.tail_coefficients`), which
    meets the table there to 2e-6; for α = 2, whose table ends early
    (thin tails), a quadratic matching its end.

    Args:
        x: tensor of weights.
        alpha: the tail index, in [0.5, 2].
        dispersion: γ > 0.

    Returns:
        A float32 tensor shaped like `x`, 0 where x is 0.
    """
    step, coefficients, beyond = _spline(alpha)
    end = step * coefficients.shape[0]
    table = ops.convert_to_tensor(coefficients, dtype="float32")
    scale = dispersion ** (1.0 / alpha)
    u = ops.abs(ops.cast(x, "float32")) / scale
    inside = u < end
    # Where u >= end the spline is not used: its argument is held at end
    # (so that no gradient flows through it there).
    position = ops.where(inside, u, end) / step
    index = ops.minimum(
        ops.cast(ops.floor(position), "int32"), coefficients.shape[0] - 1
    )
    t = position - ops.cast(index, "float32")
    c0, c1, c2, c3 = ops.unstack(ops.take(table, index, axis=0), 4, axis=-1)
    spline = c0 + t * (c1 + t * (c2 + t * c3))
    far = ops.where(inside, end, u)  # the tail's argument, >= end
    if beyond.series is not None:
        # -log p = log π + (1+α) log u - log Σ_k a_k u^-α(k-1).
        y = far ** (-alpha)
        series = 0.0
        for coefficient in reversed(beyond.series):
            series = series * y + coefficient
        tail = beyond.offset + (1 + alpha) * ops.log(far) - ops.log(series)
    else:
        # Thin tails (α = 2): the table ends early; a Gaussian's -log p
        # (quadratic) matching the table's value and slope at its end.
        tail = beyond.offset + beyond.slope * (far * far - end * end) / (
            2 * end
        )
    return ops.where(inside, spline, tail)


@keras.saving.register_keras_serializable(package="keras_psp")
class SoftDiamond(keras.regularizers.Regularizer):
    """Soft diamond weight penalty: a symmetric alpha-stable (SαS) prior.

    Adigun and Kosko, "Soft Diamond Regularizers for Deep Learning", arXiv
    2412.20724: the penalty is the negative log of a thick-tailed SαS prior
    on each weight. With tail index α and dispersion γ (characteristic
    function `exp(-γ|t|^α)`) and p its density,

        penalty(W) = λ · Σ_w [ -log p(w) + log p(0) ],

    summed over the weights like `keras.regularizers.L1`/`L2`. α = 2 gives
    a Gaussian prior (`λ w² / (4γ)`: L2), α = 1 a Cauchy prior
    (`λ log(1 + w²/γ²)`); the paper recommends α = 0.5 ("sub-Cauchy"),
    whose penalty is L1-like (a "soft diamond") near 0 and grows only
    logarithmically for large weights, so small weights are pushed to 0
    and large ones barely shrink. SαS densities have no closed form in
    general; as in the paper, a look-up table is used: here it is computed
    once per α in float64 by inverting the characteristic function (see
    `keras_psp.regularizers.alpha_stable`) and interpolated in `keras.ops`.

    Choices the paper's text available to us leaves open, made here: the
    constant `log p(0)`, so that a zero weight costs nothing; a sum over the
    weights (not a mean); λ as a separate factor; the table on
    `|w| / γ^(1/α)` in [0, 20], cubic Hermite interpolation, and the
    density's series beyond (see `soft_diamond_penalty`).

    Args:
        strength: λ, a finite float >= 0.
        alpha: the tail index α, in [0.5, 2] (default 0.5).
        dispersion: the dispersion γ > 0 (default 1e-2: scale
            `γ^(1/α)` = 1e-4 at α = 0.5).

    Example:

    >>> import keras
    >>> import numpy as np
    >>> from keras_psp.regularizers import SoftDiamond
    >>> dense = keras.layers.Dense(
    ...     4, kernel_regularizer=SoftDiamond(1e-4, alpha=1.0, dispersion=0.1)
    ... )
    >>> _ = dense(np.ones((1, 3)))
    >>> # α = 1 is Cauchy: λ Σ log(1 + w²/γ²).
    >>> w = keras.ops.convert_to_numpy(dense.kernel)
    >>> expected = 1e-4 * np.log1p(w**2 / 0.1**2).sum()
    >>> penalty = keras.ops.convert_to_numpy(dense.losses[0])
    >>> bool(np.isclose(penalty, expected, rtol=1e-4))
    True
    """

    def __init__(self, strength=1e-4, alpha=0.5, dispersion=1e-2):
        self.strength = validate_strength(
            strength, meaning="the soft diamond penalty's strength λ"
        )
        self.alpha = alpha_stable.validate_alpha(alpha)
        self.dispersion = _validate_dispersion(dispersion)

    def __call__(self, x):
        penalty = soft_diamond_penalty(x, self.alpha, self.dispersion)
        return self.strength * ops.sum(penalty)

    def get_config(self):
        return {
            "strength": self.strength,
            "alpha": self.alpha,
            "dispersion": self.dispersion,
        }
