"""Schedules of the PSP strength λ for `StrengthScheduler`: step decay,
cosine decay, linear warm-up (Keras schedule objects).

Their values are the model's λ on the scale it was built with: the λ
written to the PSP layers, to `apply_psp` or to a builder's
`psp_strength` (see `StrengthScheduler`), so `step_strength(λ, ...)` and
`cosine_strength(λ, ...)` start where the model was built."""

import numbers

import keras
import numpy as np

from keras_psp.penalty import validate_strength
from keras_psp.validation import validate_non_negative
from keras_psp.validation import validate_positive_int


def step_strength(strength, decay_epochs, factor=0.1):
    """λ = `strength`, multiplied by `factor` at each of `decay_epochs`.

    At epoch e (0-based) λ is `strength * factor**k`, k being the number of
    entries of `decay_epochs` that are <= e (an epoch listed twice decays
    twice).

    Args:
        strength: λ before the first decay.
        decay_epochs: the 0-based epochs at whose start λ is multiplied by
            `factor`; integers >= 0, in any order.
        factor: the multiplier, >= 0.

    Returns:
        A `keras.optimizers.schedules.PiecewiseConstantDecay` (with no
        `decay_epochs`, a constant `ExponentialDecay`), for
        `StrengthScheduler`.

    Example:

    >>> schedule = step_strength(1e-3, decay_epochs=[2, 4])
    >>> [round(float(schedule(epoch)), 8) for epoch in range(5)]
    [0.001, 0.001, 0.0001, 0.0001, 1e-05]
    """
    strength = validate_strength(strength)
    factor = validate_non_negative(factor, "factor")
    try:
        epochs = list(decay_epochs)
    except TypeError:
        epochs = None
    if epochs is None or not all(
        isinstance(e, numbers.Integral)
        and not isinstance(e, (bool, np.bool_))
        and e >= 0
        for e in epochs
    ):
        raise ValueError(
            "Argument `decay_epochs` must be a list of integers >= 0 (0-based "
            f"epochs). Received: decay_epochs={decay_epochs!r}."
        )
    epochs = sorted(int(e) for e in epochs)
    if not epochs:
        return keras.optimizers.schedules.ExponentialDecay(
            strength, decay_steps=1, decay_rate=1.0
        )
    # PiecewiseConstantDecay gives values[i + 1] for boundaries[i] < step
    # <= boundaries[i + 1]: on integer epochs, epoch > e - 1 is epoch >= e.
    boundaries = sorted(set(epochs))
    values = [strength] + [
        strength * factor ** sum(e <= b for e in epochs) for b in boundaries
    ]
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [b - 1 for b in boundaries], values
    )


def cosine_strength(strength, epochs, final_factor=0.0):
    """λ decayed from `strength` to `final_factor * strength` along a
    cosine over `epochs` epochs, then held.

    At epoch e λ is `strength * (f + (1 - f) * (1 + cos(π p)) / 2)`, with
    f = `final_factor` and p = min(e / max(epochs - 1, 1), 1): `strength`
    at epoch 0, `final_factor * strength` from epoch `epochs - 1` on.

    Args:
        strength: λ at epoch 0.
        epochs: the number of epochs of the decay (a positive integer).
        final_factor: λ's final value as a fraction of `strength`, >= 0.

    Returns:
        A `keras.optimizers.schedules.CosineDecay`, for `StrengthScheduler`.

    Example:

    >>> schedule = cosine_strength(1e-3, epochs=5, final_factor=0.2)
    >>> [round(float(schedule(epoch)), 6) for epoch in (0, 2, 4, 9)]
    [0.001, 0.0006, 0.0002, 0.0002]
    """
    strength = validate_strength(strength)
    validate_positive_int(epochs, "epochs")
    final_factor = validate_non_negative(final_factor, "final_factor")
    return keras.optimizers.schedules.CosineDecay(
        strength, decay_steps=max(epochs - 1, 1), alpha=final_factor
    )


def warmup_strength(strength, epochs):
    """λ ramped linearly from `strength / epochs` to `strength` over
    `epochs` epochs, then held.

    At epoch e λ is `strength * min((e + 1) / epochs, 1)`.

    Args:
        strength: λ from epoch `epochs - 1` on.
        epochs: the number of epochs of the ramp (a positive integer).

    Returns:
        A `keras.optimizers.schedules.PolynomialDecay` of power 1 (from
        `strength / epochs` up to `strength`), for `StrengthScheduler`.

    Example:

    >>> schedule = warmup_strength(1e-3, epochs=4)
    >>> [round(float(schedule(epoch)), 6) for epoch in range(6)]
    [0.00025, 0.0005, 0.00075, 0.001, 0.001, 0.001]
    """
    strength = validate_strength(strength)
    validate_positive_int(epochs, "epochs")
    # (s/E - s) * (1 - e/(E-1)) + s = s (e+1) / E for e <= E - 1; with
    # E = 1, decay_steps 1 keeps it constant (s/1 = s) without 0/0.
    return keras.optimizers.schedules.PolynomialDecay(
        strength / epochs,
        decay_steps=max(epochs - 1, 1),
        end_learning_rate=strength,
        power=1.0,
    )
