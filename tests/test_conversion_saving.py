"""Saving what `apply_psp` made of a functional model that saves itself
from its constructor's arguments (as keras_hub's backbones and the
encoders nested in them do), when it holds a layer whose own config does
not rebuild it (as keras_hub's `ViTPatchingAndEmbedding`, whose config has
keys its `__init__` refuses).

Such a model loads because its class rebuilds it; its converted copy must
load too, although a copy made of its layers' configs cannot.
"""

import os
import warnings

import keras
import numpy as np
import pytest

import keras_psp
from keras_psp.models.psp_model import PSPModel
from keras_psp.models.psp_model import psp_losses
from tests.helpers import to_numpy

L = keras.layers


@keras.saving.register_keras_serializable(package="tests_saving")
class Patches(L.Layer):
    """A projection whose config has a key its `__init__` refuses."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.kernel = self.add_weight(
            shape=(input_shape[-1], self.units), name="kernel"
        )

    def call(self, x):
        return keras.ops.matmul(x, self.kernel)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "patches": 3}


@keras.saving.register_keras_serializable(package="tests_saving")
class Encoder(keras.Model):
    """A functional model saved from its constructor's arguments."""

    def __init__(self, width=8, **kwargs):
        inputs = keras.Input((4,), name="features")
        x = Patches(width, name="patches")(inputs)
        x = L.Dense(width, activation="relu", name="hidden")(x)
        outputs = L.Dense(3, name="logits")(x)
        super().__init__(inputs, outputs, **kwargs)
        self.width = width

    def get_config(self):
        return {"width": self.width, "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _nested():
    inputs = keras.Input((4,), name="x")
    encoded = Encoder(name="encoder")(inputs)
    return keras.Model(inputs, L.Dense(2, name="head")(encoded), name="outer")


def _convert(model):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        converted = keras_psp.apply_psp(model, 1e-2)
    shared = [w for w in caught if "could not copy" in str(w.message)]
    assert shared and "patches (Patches)" in str(shared[0].message)
    return converted


def _round_trip(model, tmp_path, name):
    path = os.path.join(tmp_path, name)
    model.save(path)
    return keras.saving.load_model(path)


def _check_same(model, loaded, x):
    np.testing.assert_array_equal(to_numpy(model(x)), to_numpy(loaded(x)))
    assert len(psp_losses(loaded)) == len(psp_losses(model))
    assert [v.path for v in loaded.weights] == [v.path for v in model.weights]
    for a, b in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


@pytest.mark.parametrize("nested", [False, True], ids=["top", "nested"])
def test_model_saved_from_its_arguments_round_trips(nested, tmp_path):
    original = _nested() if nested else Encoder(name="encoder")
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    converted = _convert(original)
    # Trained a little, so that loading random weights would show.
    converted.compile("sgd", "mse")
    y = np.ones((5, 2 if nested else 3), "float32")
    converted.fit(x, y, epochs=1, verbose=0)
    converted(x)
    loaded = _round_trip(converted, tmp_path, "once.keras")
    loaded(x)
    _check_same(converted, loaded, x)
    encoder = loaded.get_layer("encoder") if nested else loaded
    assert isinstance(encoder, PSPModel)
    assert encoder.conversion_recipe is not None
    # The hidden ReLU, and the layer making the model's output (its logits,
    # `regularize_logits`): the encoder's own when it is the model.
    assert len(psp_losses(loaded)) == 2
    # The loaded model saves and loads again.
    again = _round_trip(loaded, tmp_path, "twice.keras")
    again(x)
    _check_same(loaded, again, x)


def test_plain_functional_models_save_their_layers():
    inputs = keras.Input((4,))
    hidden = L.Dense(8, activation="relu")(inputs)
    converted = keras_psp.apply_psp(keras.Model(inputs, L.Dense(2)(hidden)))
    assert converted.conversion_recipe is None
    assert "layers" in converted.get_config()


def test_a_recipe_its_original_does_not_match_is_a_clear_error():
    converted = _convert(Encoder(name="encoder"))
    config = converted.get_config()
    config["psp_conversion"]["regularized"].append([[99], "affine"])
    with pytest.raises(ValueError, match="lacks 1 of the 3 layers"):
        PSPModel.from_config(config)
