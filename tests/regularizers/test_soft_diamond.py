import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_psp.regularizers import SoftDiamond
from keras_psp.regularizers import alpha_stable
from keras_psp.regularizers import soft_diamond_penalty
from tests.helpers import gradients
from tests.helpers import to_numpy

RNG = np.random.default_rng(3)


def _penalty_and_gradient(alpha, dispersion, w):
    variable = keras.Variable(w.astype("float32"))

    def penalty():
        return ops.sum(soft_diamond_penalty(variable, alpha, dispersion))

    values = to_numpy(soft_diamond_penalty(variable, alpha, dispersion))
    (grad,) = gradients(penalty, [variable])
    return values, grad


def test_alpha_1_is_the_cauchy_penalty_and_gradient():
    gamma = 0.1
    # Inside the table (|w| <= 20 γ) and in its tail.
    w = np.concatenate([RNG.uniform(-2, 2, 50), [0.0, 5.0, -10.0]])
    values, grad = _penalty_and_gradient(1.0, gamma, w)
    # Table (|w| < 20 γ) and series (beyond) alike.
    np.testing.assert_allclose(
        values, np.log1p((w / gamma) ** 2), rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(
        grad, 2 * w / (gamma**2 + w**2), rtol=1e-4, atol=1e-5
    )
    assert values[w == 0] == 0


@pytest.mark.parametrize("alpha", [0.5, 1.0, 1.5, 1.9, 2.0])
def test_table_and_tail_meet_at_the_tables_end(alpha):
    # No jump in the penalty or its gradient where the table ends (20
    # scales; 8.6 for α = 2): across it the penalty changes by its slope.
    step, values, _ = alpha_stable.negative_log_density_table(alpha)
    end = step * (values.size - 1)
    w = end * np.array([1 - 1e-4, 1 + 1e-4])
    penalty, grad = _penalty_and_gradient(alpha, 1.0, w)
    np.testing.assert_allclose(grad[1], grad[0], rtol=1e-3)
    change = np.mean(grad) * (w[1] - w[0])
    assert abs(penalty[1] - penalty[0] - change) < 1e-5 * penalty[0]


def test_alpha_2_is_the_gaussian_penalty_and_gradient():
    gamma = 0.01  # scale √γ = 0.1: the table covers |w| <= 0.86
    w = np.concatenate([RNG.uniform(-0.8, 0.8, 50), [1.5, -3.0]])
    values, grad = _penalty_and_gradient(2.0, gamma, w)
    np.testing.assert_allclose(values, w**2 / (4 * gamma), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grad, w / (2 * gamma), rtol=1e-4, atol=1e-5)


def test_alpha_half_is_flat_for_large_weights_and_steep_near_zero():
    # The paper's sub-Cauchy prior: much steeper than L2 near 0 (relative
    # to its value further out), and only logarithmic far out.
    w = np.array([1e-3, 1e-2, 1e-1, 1.0, 10.0])
    values, grad = _penalty_and_gradient(0.5, 0.1, w)  # scale 0.01
    assert np.all(np.diff(values) > 0)
    # Far out (100 and 1000 scales), -log p grows as (1 + α) log |w|: its
    # gradient is (1 + α) / |w|, 100 times smaller at 10 than at 0.1.
    assert values[-1] - values[-2] == pytest.approx(
        1.5 * math.log(10), rel=0.05
    )
    np.testing.assert_allclose(grad[-2:] * w[-2:], 1.5, rtol=0.1)
    # Concave beyond the scale (unlike L1 and L2): larger weights are
    # pulled less.
    assert grad[2] > grad[3] > grad[4] > 0


def test_regularizer_sums_the_penalty_times_strength():
    w = RNG.normal(size=(3, 4)).astype("float32")
    regularizer = SoftDiamond(1e-3, alpha=1.0, dispersion=0.5)
    np.testing.assert_allclose(
        to_numpy(regularizer(w)),
        1e-3 * np.log1p((w / 0.5) ** 2).sum(),
        rtol=1e-4,
    )


def test_model_saves_and_reloads_with_equal_predictions_and_loss(tmp_path):
    inputs = keras.Input((5,))
    hidden = keras.layers.Dense(
        4,
        activation="relu",
        kernel_regularizer=SoftDiamond(1e-4, alpha=0.5, dispersion=0.05),
    )(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    x = RNG.normal(size=(6, 5)).astype("float32")
    model(x)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(model(x)))
    regularizer = loaded.layers[1].kernel_regularizer
    assert isinstance(regularizer, SoftDiamond)
    assert regularizer.get_config() == {
        "strength": 1e-4,
        "alpha": 0.5,
        "dispersion": 0.05,
    }
    np.testing.assert_allclose(
        to_numpy(loaded.losses[0]), to_numpy(model.losses[0]), rtol=1e-6
    )


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"strength": -1.0}, ValueError, "`strength`.*soft diamond penalty"),
        ({"strength": "1e-6"}, TypeError, "`strength`.*soft diamond penalty"),
        ({"alpha": 3.0}, ValueError, "`alpha`"),
        ({"alpha": "0.5"}, TypeError, "`alpha`"),
        ({"dispersion": 0.0}, ValueError, "`dispersion` must be a finite"),
        ({"dispersion": float("inf")}, ValueError, "`dispersion`"),
        ({"dispersion": "1"}, TypeError, "`dispersion`"),
    ],
)
def test_bad_hyperparameters_are_refused_at_construction(kwargs, error, match):
    with pytest.raises(error, match=match):
        SoftDiamond(**kwargs)
