import os

import keras
import numpy as np
import pytest

import keras_psp
from keras_psp import PSPActivation
from keras_psp import PSPConv2D
from keras_psp import PSPDense
from keras_psp import PSPModel
from keras_psp import PSPSequential
from tests.helpers import to_numpy
from tests.test_penalty import numpy_sum

L = keras.layers


def _functional(strength=0.01):
    inputs = keras.Input((8, 8, 1))
    x = PSPConv2D(4, 3, activation="relu", strength=strength, name="conv")(
        inputs
    )
    x = L.BatchNormalization()(L.Flatten()(x))
    x = PSPActivation("relu", strength=strength, name="act")(x)
    outputs = PSPDense(3, activation="softmax", strength=strength, name="out")(
        x
    )
    return PSPModel(inputs, outputs)


def _data(n=16):
    x = np.random.randn(n, 8, 8, 1).astype("float32")
    y = np.random.randint(0, 3, size=n)
    return x, y


def _penalties(model, x):
    """The PSP terms of a forward pass in inference mode, in numpy."""
    model(x, training=False)
    return float(
        sum(to_numpy(t) for t in keras_psp.models.psp_model.psp_losses(model))
    )


def test_fit_logs_psp_loss_included_in_loss():
    model = _functional()
    x, y = _data()
    # lr=0 keeps the weights fixed, so the logged value can be recomputed.
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert "psp_loss" in history.history
    logged = history.history["psp_loss"][0]
    # BatchNormalization uses batch statistics in training: evaluate those.
    model(x, training=True)
    expected = float(
        sum(to_numpy(t) for t in keras_psp.models.psp_model.psp_losses(model))
    )
    assert logged > 0
    np.testing.assert_allclose(logged, expected, rtol=1e-4)
    data_loss = to_numpy(
        keras.losses.sparse_categorical_crossentropy(y, model(x, training=True))
    ).mean()
    np.testing.assert_allclose(
        history.history["loss"][0], data_loss + logged, rtol=1e-4
    )


def test_evaluate_and_validation_report_psp_loss():
    model = _functional()
    x, y = _data()
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    history = model.fit(
        x, y, validation_data=(x, y), batch_size=8, epochs=1, verbose=0
    )
    assert "val_psp_loss" in history.history
    result = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    np.testing.assert_allclose(
        result["psp_loss"], _penalties(model, x), rtol=1e-4
    )
    np.testing.assert_allclose(
        history.history["val_psp_loss"][0], result["psp_loss"], rtol=1e-4
    )


def test_strength_changed_by_callback_takes_effect_without_recompiling():
    model = _functional(strength=0.01)
    x, y = _data()
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    layers = keras_psp.models.psp_model.psp_layers(model)
    assert len(layers) == 3
    functions = []

    class Schedule(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            functions.append(self.model.train_function)
            for layer in layers:
                layer.strength.assign([0.01, 0.0, 0.02][epoch])

    history = model.fit(
        x, y, batch_size=16, epochs=3, verbose=0, callbacks=[Schedule()]
    )
    first, zero, double = history.history["psp_loss"]
    assert first > 0
    assert zero == 0.0
    np.testing.assert_allclose(double, 2 * first, rtol=1e-4)
    # The same compiled step ran all three epochs.
    assert functions[1] is functions[2]


def test_sequential_logs_psp_loss_and_trains():
    model = PSPSequential(
        [
            keras.Input((6,)),
            PSPDense(16, activation="relu", strength=1e-2),
            PSPDense(2, strength=1e-2),
        ]
    )
    model.compile(keras.optimizers.SGD(0.05), "mse")
    x = np.random.randn(64, 6).astype("float32")
    y = np.random.randn(64, 2).astype("float32")
    history = model.fit(x, y, batch_size=16, epochs=5, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert all(v > 0 for v in history.history["psp_loss"])


def test_plain_model_still_trains_with_psp_layers():
    inputs = keras.Input((6,))
    outputs = PSPDense(2, strength=1.0)(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.0), "mse")
    x = np.random.randn(8, 6).astype("float32")
    y = np.zeros((8, 2), dtype="float32")
    result = model.evaluate(x, y, verbose=0, return_dict=True)
    # loss = mse(z, 0) + 1.0 * 0.5 * mean_b sum_u z^2 = mean(z^2) * (1 + 1)
    z = to_numpy(model(x))
    np.testing.assert_allclose(
        result["loss"], (z**2).mean() + numpy_sum(z, 1.0), rtol=1e-4
    )


@pytest.mark.parametrize("kind", ["functional", "sequential"])
def test_save_and_load_keras_file(tmp_path, kind):
    if kind == "functional":
        model = _functional(strength=0.01)
    else:
        model = PSPSequential(
            [
                keras.Input((8, 8, 1)),
                PSPConv2D(4, 3, activation="relu", strength=0.01),
                L.Flatten(),
                keras_psp.PreActivationRegularizer(
                    L.Dense(3, activation="softmax"), strength=0.01
                ),
            ]
        )
    x, y = _data()
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    for layer in keras_psp.models.psp_model.psp_layers(model):
        layer.strength.assign(0.123)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model)
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )
    loaded_layers = keras_psp.models.psp_model.psp_layers(loaded)
    assert len(loaded_layers) == len(
        keras_psp.models.psp_model.psp_layers(model)
    )
    for layer in loaded_layers:
        assert float(to_numpy(layer.strength)) == pytest.approx(0.123)
    np.testing.assert_allclose(
        _penalties(loaded, x), _penalties(model, x), rtol=1e-5
    )
    history = loaded.fit(x, y, epochs=1, verbose=0)
    assert "psp_loss" in history.history
