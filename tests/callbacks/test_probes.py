"""The monitors' batch `x`: refused early, naming `x`, when it cannot feed
the model (not after a whole epoch, from deep inside a backend)."""

import keras
import numpy as np
import pytest

from keras_psp.callbacks import ActivationSparsityMonitor
from keras_psp.callbacks import PreActivationMonitor

MONITORS = [ActivationSparsityMonitor, PreActivationMonitor]


class _Batches(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.count = 0

    def on_train_batch_end(self, batch, logs=None):
        self.count += 1


def _conv_model():
    model = keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            keras.layers.Conv2D(2, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )
    model.compile("sgd", "mse")
    return model


def _key(monitor_class, name):
    """The log key of `monitor_class`'s value for `name` (a layer, or
    `mean`)."""
    if monitor_class is ActivationSparsityMonitor:
        return "sparsity_mean" if name == "mean" else f"sparsity/{name}"
    return "z2_mean" if name == "mean" else f"z2/{name}"


def _fit_refused(monitor):
    """`fit` with `monitor` first; no training batch may run."""
    model = _conv_model()
    batches = _Batches()
    x = np.zeros((4, 6, 6, 1), "float32")
    y = np.zeros((4, 3), "float32")
    try:
        model.fit(x, y, batch_size=2, verbose=0, callbacks=[monitor, batches])
    finally:
        assert batches.count == 0  # refused before training


@pytest.mark.parametrize("monitor_class", MONITORS)
@pytest.mark.parametrize(
    "x, match",
    [
        (np.array(["a", "b"]), r"`x` of \w+ must hold numbers.*dtype <U1"),
        (np.zeros((0, 6, 6, 1)), r"`x` of \w+ must hold at least one example"),
        (np.float32(1.0), r"`x` of \w+ must be a batch.*shape \(\)"),
        ({"image": "a"}, r"`x` of \w+ must hold numbers"),
    ],
)
def test_a_batch_that_is_not_one_is_refused_at_construction(
    monitor_class, x, match
):
    with pytest.raises((TypeError, ValueError), match=match):
        monitor_class(x)


@pytest.mark.parametrize("monitor_class", MONITORS)
def test_a_batch_of_the_wrong_shape_is_refused_before_training(monitor_class):
    # (6, 6) images where the model takes (6, 6, 1): a missing channel axis.
    monitor = monitor_class(np.zeros((5, 6, 6), "float32"))
    with pytest.raises(
        ValueError,
        match=r"`x` .*shape \(5, 6, 6\).*model.s input `input_layer\w*` "
        r"takes shape \(None, 6, 6, 1\)",
    ):
        _fit_refused(monitor)


@pytest.mark.parametrize("monitor_class", MONITORS)
def test_a_batch_for_another_number_of_inputs_is_refused(monitor_class):
    monitor = monitor_class([np.zeros((2, 6, 6, 1)), np.zeros((2, 6, 6, 1))])
    with pytest.raises(ValueError, match=r"`x` .*2 arrays.*1 input"):
        _fit_refused(monitor)


@pytest.mark.parametrize("monitor_class", MONITORS)
def test_a_batch_that_fits_is_measured_as_before(monitor_class):
    # Any batch size; the model's own dtype need not be the batch's.
    monitor = monitor_class(np.ones((3, 6, 6, 1), "float64"))
    x, y = np.ones((4, 6, 6, 1), "float32"), np.zeros((4, 3), "float32")
    history = _conv_model().fit(
        x, y, batch_size=2, verbose=0, callbacks=[monitor]
    )
    assert np.isfinite(history.history[_key(monitor_class, "mean")][0])


def _two_inputs():
    a = keras.Input((6,), name="a")
    b = keras.Input((2,), name="b")
    merged = keras.layers.Concatenate()([a, b])
    hidden = keras.layers.Dense(5, activation="relu", name="hidden")(merged)
    return a, b, keras.layers.Dense(3)(hidden)


@pytest.mark.parametrize("monitor_class", MONITORS)
@pytest.mark.parametrize("structure", ["dict model", "list model"])
def test_models_with_named_inputs_take_a_dict_batch(monitor_class, structure):
    # Keras feeds a dict by the input layers' names, to either model.
    a, b, outputs = _two_inputs()
    inputs = {"a": a, "b": b} if structure == "dict model" else [a, b]
    model = keras.Model(inputs, outputs)
    model.compile("sgd", "mse")
    x = {"a": np.ones((4, 6)), "b": np.ones((4, 2))}
    monitor = monitor_class(x)
    history = model.fit(x, np.zeros((4, 3)), verbose=0, callbacks=[monitor])
    assert np.isfinite(history.history[_key(monitor_class, "hidden")][0])


@pytest.mark.parametrize("monitor_class", MONITORS)
def test_a_sequential_model_built_by_fit_is_measured(monitor_class):
    # No Input: Keras builds the model on the first batch, after
    # on_train_begin; the batch is checked when the model has its input.
    model = keras.Sequential(
        [
            keras.layers.Dense(5, activation="relu", name="hidden"),
            keras.layers.Dense(3),
        ]
    )
    model.compile("sgd", "mse")
    monitor = monitor_class(np.ones((7, 6)))  # not fit's batch size
    history = model.fit(
        np.ones((4, 6)), np.zeros((4, 3)), verbose=0, callbacks=[monitor]
    )
    assert np.isfinite(history.history[_key(monitor_class, "hidden")][0])


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(4, activation="relu")
        self.logits = keras.layers.Dense(3)

    def call(self, x):
        return self.logits(self.hidden(x))


@pytest.mark.parametrize("monitor_class", MONITORS)
def test_a_subclassed_model_is_refused_before_training(monitor_class):
    # Its layer graph, which the monitor reads, is its Python code.
    monitor = monitor_class(np.ones((2, 5)))
    model = Subclassed()
    model.compile("sgd", "mse")
    batches = _Batches()
    with pytest.raises(TypeError, match=r"Subclassed.*subclassed model"):
        model.fit(
            np.ones((4, 5)),
            np.zeros((4, 3)),
            verbose=0,
            callbacks=[monitor, batches],
        )
    assert batches.count == 0
