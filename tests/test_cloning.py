"""The copies `apply_psp` and `strip_psp` make: every piece of layer state
(as `.keras` saving copies it), custom layers whose `__init__` takes no
`**kwargs`, and a fallback to the layer itself, named, when a copy cannot
be made. `apply_psp` adds no wrapper: each layer of the copy is of its
original's class."""

import warnings

import keras
import numpy as np
import pytest

import keras_psp
from keras_psp import cloning
from keras_psp.models.psp_model import psp_layers
from tests.helpers import to_numpy

L = keras.layers


def _predictions_equal(a, b, x):
    np.testing.assert_array_equal(to_numpy(a(x)), to_numpy(b(x)))


def test_adapted_normalization_converts_and_strips_with_equal_predictions():
    data = np.random.default_rng(0).normal(5, 3, (20, 3)).astype("float32")
    norm = L.Normalization(name="norm")
    norm.adapt(data)
    inputs = keras.Input((3,))
    hidden = L.Dense(4, activation="relu")(norm(inputs))
    model = keras.Model(inputs, L.Dense(2)(hidden))
    converted = keras_psp.apply_psp(model)
    _predictions_equal(converted, model, data)
    assert converted.get_layer("norm") is not norm  # a copy, not shared
    _predictions_equal(keras_psp.strip_psp(converted), model, data)


def test_adapted_string_lookup_state_is_copied():
    lookup = L.StringLookup()
    lookup.adapt(np.array([["a"], ["b"], ["c"], ["b"]]))
    copy = cloning.copy_layer(lookup)
    copy.build((None, 1))
    cloning.copy_state(lookup, copy)
    x = np.array([["c"], ["a"], ["zz"]])
    assert copy.get_vocabulary() == lookup.get_vocabulary()
    np.testing.assert_array_equal(to_numpy(copy(x)), to_numpy(lookup(x)))


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="a model with string inputs runs only on TensorFlow (Keras); "
    "the state copy is tested on every backend above",
)
def test_model_with_adapted_string_lookup_converts():
    lookup = L.StringLookup(name="lookup")
    lookup.adapt(np.array([["a"], ["b"], ["c"], ["b"]]))
    inputs = keras.Input((1,), dtype="string")
    encoded = L.CategoryEncoding(
        num_tokens=lookup.vocabulary_size(), output_mode="one_hot"
    )(lookup(inputs))
    model = keras.Model(inputs, L.Dense(2, activation="relu")(encoded))
    x = np.array([["c"], ["a"], ["zz"]])
    converted = keras_psp.apply_psp(model)
    _predictions_equal(converted, model, x)
    _predictions_equal(keras_psp.strip_psp(converted), model, x)


@keras.saving.register_keras_serializable(package="tests")
class NoKwargs(L.Layer):
    """keras.io style: `__init__` takes its own arguments only."""

    def __init__(self, units):
        super().__init__()
        self.units = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units))

    def call(self, x):
        return keras.ops.relu(keras.ops.matmul(x, self.kernel))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_custom_layer_without_kwargs_is_copied():
    inputs = keras.Input((3,))
    layer = NoKwargs(4)
    model = keras.Model(inputs, L.Dense(2)(layer(inputs)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        converted = keras_psp.apply_psp(model)
    copy = converted.get_layer(layer.name)
    assert type(copy) is NoKwargs and copy is not layer
    assert copy.units == 4 and copy.kernel is not layer.kernel
    np.testing.assert_array_equal(to_numpy(copy.kernel), to_numpy(layer.kernel))
    x = np.ones((2, 3), "float32")
    _predictions_equal(converted, model, x)
    # Its relu, applied in its code, and the logits each get their term.
    assert [term.layer for term in keras_psp.psp_terms(converted)] == [
        copy,
        converted.get_layer(model.layers[-1].name),
    ]
    converted(x)
    assert len(converted.losses) == 2


class _Table:
    scale = 2.0


class Unconfigurable(L.Layer):
    """Holds a Python object with no config (keras.io's LSTM-GC model
    holds a graph): it cannot be rebuilt from its config."""

    def __init__(self, table, **kwargs):
        super().__init__(**kwargs)
        self.table = table
        self.fc = L.Dense(3, activation="relu")

    def call(self, x):
        return self.fc(x) * self.table.scale


def test_layer_that_cannot_be_copied_is_shared_and_named():
    inputs = keras.Input((3,))
    layer = Unconfigurable(_Table(), name="graph_block")
    model = keras.Model(inputs, L.Dense(2)(layer(inputs)))
    with pytest.warns(UserWarning) as caught:
        converted = keras_psp.apply_psp(model)
    messages = [str(warning.message) for warning in caught]
    assert any("share" in m and "graph_block" in m for m in messages)
    assert any(
        "unregularized" in m and "would change the original" in m
        for m in messages
    )
    assert type(converted) is type(model)
    assert converted.get_layer("graph_block") is layer  # used as it is
    logits = converted.layers[-1]
    assert logits is not model.layers[-1]  # the others are copies
    x = np.ones((2, 3), "float32")
    _predictions_equal(converted, model, x)
    # The shared block gets no term (it would change the original model
    # too), and the warning of what PSP leaves says so; the logits do.
    assert [term.layer for term in keras_psp.psp_terms(converted)] == [logits]
    converted(x)
    assert len(converted.losses) == 1
    model(x)
    assert len(converted.losses) == 1 and not model.losses
    assert layer.fc.activation is keras.activations.relu
    assert not psp_layers(model)
