"""The schedules of λ: step, cosine and warm-up (Keras schedule objects)."""

import keras
import numpy as np
import pytest

from keras_psp.callbacks import cosine_strength
from keras_psp.callbacks import step_strength
from keras_psp.callbacks import warmup_strength
from tests.helpers import to_numpy


# The factor functions StrengthScheduler took before λ schedules: the new
# helpers must give exactly strength × these.
def _old_step(epoch, decay_epochs, factor):
    return factor ** sum(epoch >= e for e in decay_epochs)


def _old_cosine(epoch, epochs, final_factor):
    progress = min(epoch / max(epochs - 1, 1), 1.0)
    return final_factor + (1 - final_factor) * 0.5 * (
        1 + np.cos(np.pi * progress)
    )


def _old_warmup(epoch, epochs):
    return min((epoch + 1) / epochs, 1.0)


def _values(schedule, epochs):
    return np.array([float(to_numpy(schedule(e))) for e in range(epochs)])


def _assert_strengths(schedule, expected, strength):
    # λ is float32; near 0 (a cosine's end) compare against λ's scale.
    np.testing.assert_allclose(
        _values(schedule, len(expected)),
        expected,
        rtol=1e-6,
        atol=1e-6 * strength,
    )


@pytest.mark.parametrize(
    "decay_epochs, factor",
    [([2, 4], 0.1), ([4, 2], 0.5), ([0, 3, 3], 0.5), ([1], 0.0), ([], 0.1)],
)
def test_step_strength_is_the_old_factor_times_strength(decay_epochs, factor):
    strength = 3e-3
    schedule = step_strength(strength, decay_epochs, factor)
    assert isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule)
    if decay_epochs:
        assert isinstance(
            schedule, keras.optimizers.schedules.PiecewiseConstantDecay
        )
    expected = [strength * _old_step(e, decay_epochs, factor) for e in range(8)]
    _assert_strengths(schedule, expected, strength)


@pytest.mark.parametrize("epochs", [1, 2, 5, 50])
@pytest.mark.parametrize("final_factor", [0.0, 0.2])
def test_cosine_strength_is_the_old_factor_times_strength(epochs, final_factor):
    strength = 2e-3
    schedule = cosine_strength(strength, epochs, final_factor=final_factor)
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    expected = [
        strength * _old_cosine(e, epochs, final_factor)
        for e in range(epochs + 5)
    ]
    _assert_strengths(schedule, expected, strength)
    # Keras' CosineDecay reaches alpha × initial at step decay_steps.
    np.testing.assert_allclose(
        float(to_numpy(schedule(max(epochs - 1, 1)))),
        strength * final_factor,
        rtol=1e-6,
        atol=1e-6 * strength,
    )


@pytest.mark.parametrize("epochs", [1, 2, 4, 10])
def test_warmup_strength_is_the_old_factor_times_strength(epochs):
    strength = 1e-3
    schedule = warmup_strength(strength, epochs)
    expected = [strength * _old_warmup(e, epochs) for e in range(epochs + 5)]
    _assert_strengths(schedule, expected, strength)


def test_strength_helpers_bad_arguments():
    with pytest.raises(ValueError, match="`strength`"):
        step_strength(-1e-3, [1])
    with pytest.raises(TypeError, match="`strength`"):
        cosine_strength("1e-3", 10)
    with pytest.raises(ValueError, match="`decay_epochs`"):
        step_strength(1e-3, [-1])
    with pytest.raises(ValueError, match="`decay_epochs`"):
        step_strength(1e-3, 5)
    with pytest.raises(ValueError, match="`decay_epochs`"):
        step_strength(1e-3, [1.5])
    with pytest.raises(ValueError, match="`factor`"):
        step_strength(1e-3, [1], factor=float("nan"))
    with pytest.raises(ValueError, match="`epochs`"):
        cosine_strength(1e-3, 0)
    with pytest.raises(ValueError, match="`final_factor`"):
        cosine_strength(1e-3, 10, final_factor=-0.1)
    with pytest.raises(ValueError, match="`epochs`"):
        warmup_strength(1e-3, 2.5)
