import keras
import numpy as np
import pytest

import keras_psp
from keras_psp import PSPConv2D
from keras_psp import PSPDense
from keras_psp.callbacks import ActivationSparsityMonitor
from tests.helpers import to_numpy
from tests.regularizers.test_activation_sparsity import numpy_sparsity

RNG = np.random.default_rng(5)


def _model():
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(5, activation="relu", name="hidden")(inputs)
    nested = keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(4),
            keras.layers.ReLU(name="act"),
        ],
        name="block",
    )
    logits = keras.layers.Dense(3, name="logits")(nested(hidden))
    return keras.Model(inputs, logits)


def test_logs_each_activations_sparsity_as_numpy_computes_it():
    model = _model()
    x = RNG.normal(size=(16, 6)).astype("float32")
    hidden = to_numpy(model.get_layer("hidden")(x))
    act = to_numpy(model.get_layer("block")(hidden))
    values = ActivationSparsityMonitor(x)
    values.set_model(model)
    logs = values.measure()
    assert set(logs) == {
        "sparsity/hidden",
        "sparsity/block/act",
        "sparsity_mean",
    }
    assert logs["sparsity/hidden"] == pytest.approx(
        numpy_sparsity(hidden).mean(), rel=1e-5
    )
    assert logs["sparsity/block/act"] == pytest.approx(
        numpy_sparsity(act).mean(), rel=1e-5
    )
    assert logs["sparsity_mean"] == pytest.approx(
        (logs["sparsity/hidden"] + logs["sparsity/block/act"]) / 2
    )


def test_logs_activations_applied_with_keras_ops():
    from tests.test_conversion_graphs import activation_ops

    model, _, _ = activation_ops()
    x = RNG.normal(size=(16, 4)).astype("float32")
    values = ActivationSparsityMonitor(x)
    values.set_model(model)
    logs = values.measure()
    # The output's softmax is left out, as logits are.
    assert {k for k in logs if k.startswith("sparsity/")} == {
        "sparsity/relu",
        "sparsity/gelu",
        "sparsity/leaky_relu",
        "sparsity/softplus",
    }
    fc1 = to_numpy(keras.Model(model.input, model.get_layer("fc1").output)(x))
    assert logs["sparsity/relu"] == pytest.approx(
        numpy_sparsity(np.maximum(fc1, 0)).mean(), rel=1e-5
    )
    # Converted, the same layers, not the output's softmax (now a PSP layer).
    values = ActivationSparsityMonitor(x)
    values.set_model(keras_psp.apply_psp(model, 1e-3))
    converted = values.measure()
    assert converted.keys() == logs.keys()
    assert converted["sparsity/relu"] == pytest.approx(logs["sparsity/relu"])


def test_fit_logs_it_for_psp_layers_each_epoch():
    inputs = keras.Input((8, 8, 1))
    z = PSPConv2D(4, 3, activation="relu", strength=1e-3, name="conv")(inputs)
    z = keras.layers.Flatten()(z)
    z = PSPDense(6, activation="relu", strength=1e-3, name="fc")(z)
    # PSP logits (linear) and a linear Activation: not activations.
    z = keras.layers.Activation("linear", name="identity")(z)
    logits = PSPDense(2, strength=1e-3, name="logits")(z)
    model = keras.Model(inputs, logits)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(True))
    x = RNG.normal(size=(8, 8, 8, 1)).astype("float32")
    y = RNG.integers(0, 2, size=8)
    history = model.fit(
        x, y, epochs=2, verbose=0, callbacks=[ActivationSparsityMonitor(x[:4])]
    )
    logged = {k for k in history.history if k.startswith("sparsity")}
    assert logged == {"sparsity/conv", "sparsity/fc", "sparsity_mean"}
    for key in logged:
        assert len(history.history[key]) == 2
        assert all(0 <= v <= 1 for v in history.history[key])


def test_a_model_without_activations_is_refused():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    monitor = ActivationSparsityMonitor(np.ones((2, 3)))
    monitor.set_model(model)
    with pytest.raises(ValueError, match="no activation to monitor"):
        monitor.measure()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"axis": "a"}, TypeError, "`axis` must be an integer"),
        ({"axis": True}, TypeError, "`axis` must be an integer"),
        ({"per_layer": "yes"}, TypeError, "`per_layer` must be a bool"),
    ],
)
def test_bad_arguments_are_refused_at_construction(kwargs, error, match):
    with pytest.raises(error, match=match):
        ActivationSparsityMonitor(np.zeros((2, 6)), **kwargs)


def test_an_axis_a_layer_does_not_have_is_refused_naming_the_layer():
    """axis=5 must not wrap around to a channel axis of a rank-2 output."""
    monitor = ActivationSparsityMonitor(np.zeros((2, 6)), axis=5)
    monitor.set_model(_model())
    with pytest.raises(ValueError, match="`axis`=5.*`hidden`.*rank 2"):
        monitor.measure()
