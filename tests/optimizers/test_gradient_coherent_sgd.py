import keras
import numpy as np
import pytest
from keras import ops

from keras_psp.optimizers import GradientCoherentSGD
from tests.helpers import to_numpy


def _apply(optimizer, kernel, kernel_grad, bias=(1.0,), bias_grad=(0.5,)):
    """One step of `optimizer` on a kernel and a bias with given gradients;
    returns the new values."""
    variables = [
        keras.Variable(np.array(kernel, "float32"), name="kernel"),
        keras.Variable(np.array(bias, "float32"), name="bias"),
    ]
    grads = [
        ops.convert_to_tensor(np.array(kernel_grad, "float32")),
        ops.convert_to_tensor(np.array(bias_grad, "float32")),
    ]
    optimizer.apply(grads, variables)
    return [to_numpy(v) for v in variables]


def test_l2_is_imposed_when_the_regularized_step_still_descends():
    # g = [1, 0], r = 0.5 w = [0.5, 0.5]: <g, g + r> = 1.5 > 0.
    kernel, bias = _apply(
        GradientCoherentSGD(l2=0.5, learning_rate=1.0),
        [[1.0, 1.0]],
        [[1.0, 0.0]],
    )
    np.testing.assert_allclose(kernel, [[1 - 1.5, 1 - 0.5]])
    np.testing.assert_allclose(bias, [0.5])  # biases are not regularized


def test_l2_is_not_imposed_when_it_would_reverse_the_descent():
    # g = [0.1, 0], r = 1.0 w = [-1, 0]: <g, g + r> = 0.01 - 0.1 < 0.
    optimizer = GradientCoherentSGD(l2=1.0, learning_rate=1.0)
    kernel, _ = _apply(optimizer, [[-1.0, 0.0]], [[0.1, 0.0]])
    np.testing.assert_allclose(kernel, [[-1.1, 0.0]])  # plain SGD
    assert optimizer.regularized_share() == [0.0]


def test_the_boundary_counts_as_incoherent():
    # g = [1, 0], r = [-1, 0] (l1 = 1, w < 0): <g, g + r> = 0 exactly.
    optimizer = GradientCoherentSGD(l1=1.0, learning_rate=1.0)
    kernel, _ = _apply(optimizer, [[-2.0, 0.0]], [[1.0, 0.0]])
    np.testing.assert_allclose(kernel, [[-3.0, 0.0]])


def test_l1_uses_the_sign_and_the_share_counts_steps():
    optimizer = GradientCoherentSGD(l1=0.25, learning_rate=1.0)
    variables = [keras.Variable(np.array([[2.0, -2.0]], "float32"))]
    coherent = ops.convert_to_tensor(np.array([[1.0, -1.0]], "float32"))
    incoherent = ops.convert_to_tensor(np.array([[-0.1, 0.1]], "float32"))
    optimizer.apply([coherent], variables)  # r = [0.25, -0.25]: imposed
    np.testing.assert_allclose(to_numpy(variables[0]), [[0.75, -0.75]])
    optimizer.apply([incoherent], variables)  # <g, g+r> = 0.02 - 0.05 < 0
    np.testing.assert_allclose(to_numpy(variables[0]), [[0.85, -0.85]])
    assert optimizer.regularized_share() == [0.5]


def test_fit_regularizes_only_while_the_loss_has_a_coherent_gradient():
    # A loss with zero gradient: the strong L2 is never imposed, the
    # weights do not move (plain decay would shrink them).
    def build():
        model = keras.Sequential(
            [
                keras.Input((2,)),
                keras.layers.Dense(1, kernel_initializer="ones"),
            ]
        )
        model.compile(
            GradientCoherentSGD(l2=10.0, learning_rate=0.1),
            loss=lambda y, p: 0.0 * ops.sum(p),
        )
        return model

    x, y = np.ones((4, 2), "float32"), np.zeros((4, 1), "float32")
    model = build()
    model.fit(x, y, epochs=3, batch_size=4, verbose=0)
    np.testing.assert_allclose(
        to_numpy(model.layers[0].kernel), np.ones((2, 1))
    )
    assert model.optimizer.regularized_share() == [0.0]
    # A mean-squared error pulling the weights down with the L2: imposed
    # at every step, the step is lr (g + l2 w).
    model = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(1, kernel_initializer="ones")]
    )
    model.compile(GradientCoherentSGD(l2=1.0, learning_rate=0.01), loss="mse")
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    # d mse / d w = 2 (w·x + b - y) x = 2·2·1 = 4 per weight; + l2 w = 1.
    np.testing.assert_allclose(
        to_numpy(model.layers[0].kernel), 1 - 0.01 * 5, rtol=1e-6
    )
    assert model.optimizer.regularized_share() == [1.0]


@pytest.mark.parametrize("accumulation", [None, 2])
def test_the_coherence_test_sees_the_whole_batch_gradient(accumulation):
    # One kernel weight w = 1, L2 with l2 = 1 (r = 1), mse on two examples
    # of x = 1: their gradients 2 (w - y) are 1 and -0.9, the batch's 0.05.
    # Alone, the second example's would be incoherent (-0.9 · 0.1 < 0); the
    # batch's is coherent (0.05 · 1.05 > 0): the step is lr (0.05 + 1).
    # With gradient accumulation over the two examples, the same.
    model = keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(1, use_bias=False, kernel_initializer="ones"),
        ]
    )
    optimizer = GradientCoherentSGD(
        l2=1.0, learning_rate=0.1, gradient_accumulation_steps=accumulation
    )
    model.compile(optimizer, loss="mse")
    x = np.ones((2, 1), "float32")
    y = np.array([[0.5], [1.45]], "float32")
    model.fit(
        x,
        y,
        batch_size=2 if accumulation is None else 1,
        shuffle=False,
        verbose=0,
    )
    np.testing.assert_allclose(
        to_numpy(model.layers[0].kernel), [[1 - 0.1 * 1.05]], rtol=1e-6
    )
    assert int(to_numpy(optimizer.iterations)) == 1
    assert optimizer.regularized_share() == [1.0]


def test_saves_and_reloads_with_its_settings_and_counts(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(
        GradientCoherentSGD(l1=1e-3, l2=2e-3, learning_rate=0.05, momentum=0.9),
        loss="mse",
    )
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    model.fit(x, np.ones((8, 2)), epochs=2, batch_size=4, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer, GradientCoherentSGD)
    config = loaded.optimizer.get_config()
    assert (config["l1"], config["l2"], config["momentum"]) == (1e-3, 2e-3, 0.9)
    np.testing.assert_allclose(
        to_numpy(loaded.optimizer.regularized_steps),
        to_numpy(model.optimizer.regularized_steps),
    )
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(model(x)))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"l1": -1.0}, ValueError, "`l1` must be a finite real number >= 0"),
        ({"l2": float("nan")}, ValueError, "`l2`"),
        ({"l1": "1"}, TypeError, "`l1`"),
        # SGD itself takes these and trains uphill, or into NaN.
        ({"learning_rate": -0.1}, ValueError, "`learning_rate` must be"),
        ({"learning_rate": float("nan")}, ValueError, "`learning_rate`"),
    ],
)
def test_bad_strengths_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        GradientCoherentSGD(**kwargs)


def test_a_learning_rate_schedule_is_taken():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    optimizer = GradientCoherentSGD(l1=1e-3, learning_rate=schedule)
    assert optimizer.get_config()["learning_rate"]["class_name"] == (
        "ExponentialDecay"
    )
