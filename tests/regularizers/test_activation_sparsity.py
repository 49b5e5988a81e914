import math

import keras
import numpy as np
import pytest

from keras_psp.regularizers import ActivationSparsity
from keras_psp.regularizers import activation_sparsity
from tests.helpers import gradients
from tests.helpers import to_numpy


def numpy_sparsity(a):
    """The measure in NumPy (float64), channels last."""
    x = np.abs(a).reshape(a.shape[0], -1, a.shape[-1]).mean(axis=1)
    n = x.shape[-1]
    out = []
    for row in x:
        if row.sum() == 0:
            out.append(1.0)
            continue
        p = row / row.sum()
        p = p[p > 0]
        out.append((n - math.exp(-(p * np.log(p)).sum())) / (n - 1))
    return np.array(out)


def test_hand_made_activations_have_known_sparsity():
    a = np.array(
        [
            [2.0, 2.0, 2.0, 2.0],  # all equal: perplexity 4
            [0.0, 0.0, 5.0, 0.0],  # one-hot: perplexity 1
            [1.0, 1.0, 0.0, 0.0],  # two of four: perplexity 2
            [0.0, 0.0, 0.0, 0.0],  # nothing active
            [-1.0, 1.0, -1.0, 1.0],  # magnitudes count
        ]
    )
    np.testing.assert_allclose(
        to_numpy(activation_sparsity(a)), [0, 1, 2 / 3, 1, 0], atol=1e-6
    )


def test_scaling_does_not_change_it_and_numpy_agrees():
    a = np.random.default_rng(0).exponential(size=(6, 5, 5, 8))
    a[a < 0.7] = 0  # ReLU-like zeros
    s = to_numpy(activation_sparsity(a))
    np.testing.assert_allclose(s, numpy_sparsity(a), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        to_numpy(activation_sparsity(1000 * a)), s, rtol=1e-5, atol=1e-6
    )
    # Channels first gives the same with axis=1.
    np.testing.assert_allclose(
        to_numpy(activation_sparsity(np.moveaxis(a, -1, 1), axis=1)),
        s,
        rtol=1e-6,
    )


def test_gradient_is_finite_where_activations_are_zero():
    variable = keras.Variable(
        np.array([[0.01, 1.0, 2.0], [0.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    )
    (grad,) = gradients(
        lambda: keras.ops.sum(activation_sparsity(variable)), [variable]
    )
    assert np.all(np.isfinite(grad))
    # More activity on the least active unit makes the first row denser.
    assert grad[0, 0] < 0
    assert grad[0, 2] > 0


def test_bad_shapes_and_axes_are_refused():
    with pytest.raises(ValueError, match=r"shape \(batch, \.\.\., channels\)"):
        activation_sparsity(np.ones(4))
    with pytest.raises(ValueError, match="`axis` must not be the batch axis"):
        activation_sparsity(np.ones((2, 3)), axis=0)


def test_regularizer_records_strength_times_mean_excess():
    a = np.array([[2.0, 2.0, 2.0, 2.0], [0.0, 0.0, 5.0, 0.0]])
    layer = keras.layers.Activation(
        "linear", activity_regularizer=ActivationSparsity(0.5, target=0.25)
    )
    layer(a)
    # Sparsity 0 and 1; above 0.25: 0 and 0.75; mean 0.375.
    np.testing.assert_allclose(
        to_numpy(layer.losses[0]), 0.5 * 0.375, rtol=1e-6
    )


def test_model_saves_and_reloads_with_equal_predictions(tmp_path):
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(
        5, activation="relu", activity_regularizer=ActivationSparsity(1e-2)
    )(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    x = np.random.default_rng(1).normal(size=(4, 6)).astype("float32")
    model(x)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(model(x)))
    regularizer = loaded.layers[1].activity_regularizer
    assert regularizer.get_config() == {
        "strength": 1e-2,
        "target": 0.0,
        "axis": -1,
    }


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"strength": -1.0}, ValueError, "`strength`.*activation-sparsity"),
        ({"strength": None}, TypeError, "`strength`.*activation-sparsity"),
        ({"target": 1.0}, ValueError, r"`target` must be in \[0, 1\)"),
        ({"target": "0"}, TypeError, "`target` must be a real number"),
        ({"axis": 1.5}, TypeError, "`axis` must be an integer"),
        ({"axis": False}, TypeError, "`axis` must be an integer"),
    ],
)
def test_bad_hyperparameters_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        ActivationSparsity(**kwargs)


@pytest.mark.parametrize("axis", [2, 5, -3])
def test_an_axis_out_of_range_is_refused_not_wrapped(axis):
    with pytest.raises(
        ValueError, match=f"`axis` must be in \\[-2, 2\\).*axis={axis}"
    ):
        activation_sparsity(np.ones((3, 4)), axis)
