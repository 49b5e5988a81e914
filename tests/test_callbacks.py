import keras
import numpy as np
import pytest

from keras_psp import apply_psp
from keras_psp.callbacks import PreActivationMonitor
from keras_psp.models import LeNet5
from tests.helpers import to_numpy
from tests.test_penalty import numpy_mean

L = keras.layers


def _data(n=32):
    x = np.random.randn(n, 28, 28, 1).astype("float32")
    y = np.random.randint(0, 10, size=n)
    return x, y


def _expected_z2(model, x):
    """⟨z²⟩ per layer, computed directly from the weights in numpy."""
    conv1 = model.get_layer("conv1")
    inputs = keras.Input((28, 28, 1))
    conv = L.Conv2D(20, 5)
    z1 = keras.Model(inputs, conv(inputs))
    conv.set_weights([to_numpy(conv1.kernel), to_numpy(conv1.bias)])
    return {"conv1": numpy_mean(to_numpy(z1(x)), 1.0)}


@pytest.mark.parametrize("regime", ["none", "l2", "psp"])
def test_monitor_logs_z2_for_every_regime(regime, tmp_path):
    kwargs = {
        "none": {},
        "l2": {"weight_decay": 1e-4},
        "psp": {"psp_strength": 1e-3},
    }
    model = LeNet5(**kwargs[regime])
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    x, y = _data()
    held_out = np.random.randn(16, 28, 28, 1).astype("float32")
    monitor = PreActivationMonitor(held_out)
    csv = tmp_path / "history.csv"
    history = model.fit(
        x,
        y,
        epochs=2,
        batch_size=16,
        verbose=0,
        callbacks=[monitor, keras.callbacks.CSVLogger(str(csv))],
    )
    keys = {"z2/conv1", "z2/conv2", "z2/fc1", "z2_mean"}
    assert keys <= set(history.history)
    # The logits are the softmax layer's input (none/L2) or the PSP dense.
    logits = "z2/predictions" if regime != "psp" else "z2/predictions_logits"
    assert logits in history.history
    assert ("psp_term" in history.history) == (regime == "psp")
    header = csv.read_text().splitlines()[0].split(",")
    assert "z2/conv1" in header and "z2_mean" in header
    # The last epoch's value is that of the final weights.
    np.testing.assert_allclose(
        history.history["z2/conv1"][-1],
        _expected_z2(model, held_out)["conv1"],
        rtol=1e-4,
    )


@pytest.mark.parametrize("name", ["per_layer", "regularize_logits"])
def test_monitor_refuses_a_flag_that_is_not_a_bool(name):
    with pytest.raises(TypeError, match=f"`{name}` must be a bool"):
        PreActivationMonitor(np.zeros((2, 28, 28, 1)), **{name: "no"})


def test_monitor_psp_term_equals_the_models_penalty():
    model = LeNet5(psp_strength=1e-3)
    x = np.random.randn(16, 28, 28, 1).astype("float32")
    values = PreActivationMonitor(x)
    values.set_model(model)
    measured = values.measure()
    model(x, training=False)
    expected = sum(float(to_numpy(loss)) for loss in model.losses)
    np.testing.assert_allclose(measured["psp_term"], expected, rtol=1e-5)
    assert len([k for k in measured if k.startswith("z2/")]) == 4


def test_monitor_measures_activations_applied_with_keras_ops():
    from tests.test_conversion_graphs import activation_ops

    model, _, _ = activation_ops()
    x = np.random.randn(8, 4).astype("float32")
    values = PreActivationMonitor(x)
    values.set_model(model)
    measured = values.measure()
    keys = {"relu", "gelu", "leaky_relu", "softplus", "softmax"}
    assert {k for k in measured if k.startswith("z2/")} == {
        f"z2/{k}" for k in keys
    }
    fc3 = to_numpy(keras.Model(model.input, model.get_layer("fc3").output)(x))
    np.testing.assert_allclose(
        measured["z2/leaky_relu"], np.mean((fc3 + 1.0) ** 2), rtol=1e-5
    )


def test_monitor_takes_a_batch_from_a_tf_data_pipeline():
    # As in the notebooks: the held-out batch is a tf.Tensor, on any backend.
    import tensorflow as tf

    x = np.random.randn(16, 28, 28, 1).astype("float32")
    batch = next(iter(tf.data.Dataset.from_tensor_slices(x).batch(16)))
    assert isinstance(batch, tf.Tensor)
    model = LeNet5(psp_strength=1e-3)
    from_numpy, from_tf = PreActivationMonitor(x), PreActivationMonitor(batch)
    from_numpy.set_model(model)
    from_tf.set_model(model)
    expected = from_numpy.measure()
    measured = from_tf.measure()
    assert set(measured) == set(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(measured[key], value, rtol=1e-6)


def test_monitor_on_converted_keras_application():
    base = keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), classes=4
    )
    x = np.random.rand(4, 32, 32, 3).astype("float32")
    plain = PreActivationMonitor(x)
    plain.set_model(base)
    converted = PreActivationMonitor(x)
    converted.set_model(apply_psp(base, 1e-3))
    before, after = plain.measure(), converted.measure()
    z2 = {k: v for k, v in before.items() if k.startswith("z2/")}
    assert len(z2) == 36  # 35 ReLU6 + the logits
    for key, value in z2.items():
        np.testing.assert_allclose(after[key], value, rtol=1e-4)


def test_monitor_measures_layers_inside_nested_models_and_shared_layers():
    inner = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(5, activation="relu", name="fc"),
        ],
        name="inner",
    )
    a, b = keras.Input((4,)), keras.Input((4,))
    shared = keras.layers.Dense(4, activation="tanh", name="shared")
    merged = keras.layers.Concatenate()([inner(shared(a)), shared(b)])
    model = keras.Model([a, b], keras.layers.Dense(2, name="logits")(merged))
    x = [np.random.randn(8, 4).astype("float32") for _ in range(2)]
    before = model.predict(x, verbose=0)
    monitor = PreActivationMonitor(x)
    monitor.set_model(model)
    values = monitor.measure()
    assert set(values) == {
        "z2/shared",
        "z2/shared_call2",
        "z2/inner/fc",
        "z2/logits",
        "z2_mean",
    }
    # Each value is ⟨z²⟩ of that call's pre-activation, computed by hand.
    kernel, bias = (to_numpy(w) for w in shared.weights)
    z_a, z_b = x[0] @ kernel + bias, x[1] @ kernel + bias
    np.testing.assert_allclose(values["z2/shared"], np.mean(z_a**2), rtol=1e-5)
    np.testing.assert_allclose(
        values["z2/shared_call2"], np.mean(z_b**2), rtol=1e-5
    )
    fc_kernel, fc_bias = (to_numpy(w) for w in inner.get_layer("fc").weights)
    z_fc = np.tanh(z_a) @ fc_kernel + fc_bias
    np.testing.assert_allclose(
        values["z2/inner/fc"], np.mean(z_fc**2), rtol=1e-5
    )
    # The model's own graph is unchanged: it still predicts as before.
    np.testing.assert_array_equal(model.predict(x, verbose=0), before)
