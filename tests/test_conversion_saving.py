"""Saving what `apply_psp` made of a functional model that saves itself
from its constructor's arguments (as keras_hub's backbones and the
encoders nested in them do), when it holds a layer whose own config does
not rebuild it (as keras_hub's `ViTPatchingAndEmbedding`, whose config has
keys its `__init__` refuses), or that cannot be built from the shape a
`.keras` file holds (as BLIP2's Q-Former layers), or when its own class
cannot rebuild it (as a keras_hub `FeaturePyramidBackbone` made from
inputs and outputs).

Such a model loads when its class rebuilds it; its converted copy must
load too, although a copy made of its layers' configs cannot, and the
other way round.
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
class TupleShapes(Patches):
    """A projection that builds from a tuple shape only (`.keras` files
    hold lists)."""

    def build(self, input_shape):
        self.output_shape_ = input_shape[:-1] + (self.units,)
        super().build(input_shape)

    def get_config(self):
        return {**L.Layer.get_config(self), "units": self.units}


@keras.saving.register_keras_serializable(package="tests_saving")
class Encoder(keras.Model):
    """A functional model saved from its constructor's arguments."""

    def __init__(self, width=8, tuple_shapes=False, name="encoder"):
        inputs = keras.Input((4,), name="features")
        projection = TupleShapes if tuple_shapes else Patches
        x = projection(width, name="patches")(inputs)
        x = L.Dense(width, activation="relu", name="hidden")(x)
        outputs = L.Dense(3, name="logits")(x)
        super().__init__(inputs, outputs, name=name)
        self.width = width
        self.tuple_shapes = tuple_shapes

    def get_config(self):
        return {
            "width": self.width,
            "tuple_shapes": self.tuple_shapes,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="tests_saving")
class Pyramid(keras.Model):
    """A functional model whose config does not rebuild it."""

    def __init__(self, inputs, outputs, **kwargs):
        super().__init__(inputs, outputs, **kwargs)

    def get_config(self):
        return {"name": self.name}


def _nested(**kwargs):
    inputs = keras.Input((4,), name="x")
    encoded = Encoder(**kwargs)(inputs)
    return keras.Model(inputs, L.Dense(2, name="head")(encoded), name="outer")


def _convert(model, copied=False):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        converted = keras_psp.apply_psp(model, 1e-2)
    shared = [w for w in caught if "could not copy" in str(w.message)]
    if copied:
        assert not shared
    else:
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


@pytest.mark.parametrize("tuple_shapes", [False, True], ids=["config", "build"])
@pytest.mark.parametrize("nested", [False, True], ids=["top", "nested"])
def test_model_saved_from_its_arguments_round_trips(
    nested, tuple_shapes, tmp_path
):
    kwargs = {"tuple_shapes": tuple_shapes}
    original = _nested(**kwargs) if nested else Encoder(**kwargs)
    encoder = original.get_layer("encoder") if nested else original
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    if tuple_shapes:
        # The layers' configs do not load (the plain copy's fail too).
        plain = keras.Model(encoder.input, encoder.output)
        with pytest.raises(Exception, match="concatenate"):
            _round_trip(plain, tmp_path, "plain.keras")
    converted = _convert(original, copied=tuple_shapes)
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


def test_model_its_own_class_cannot_rebuild_loads_from_its_layers(tmp_path):
    inputs = keras.Input((4,))
    hidden = L.Dense(8, activation="relu", name="hidden")(inputs)
    original = Pyramid(inputs, L.Dense(2, name="logits")(hidden))
    with pytest.raises(Exception, match="inputs"):
        _round_trip(original, tmp_path, "plain.keras")
    converted = keras_psp.apply_psp(original, 1e-2)
    assert converted.conversion_recipe is not None
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    converted(x)
    loaded = _round_trip(converted, tmp_path, "converted.keras")
    loaded(x)
    _check_same(converted, loaded, x)


def test_plain_functional_models_save_their_layers():
    inputs = keras.Input((4,))
    hidden = L.Dense(8, activation="relu")(inputs)
    converted = keras_psp.apply_psp(keras.Model(inputs, L.Dense(2)(hidden)))
    assert converted.conversion_recipe is None
    assert "layers" in converted.get_config()


def test_a_recipe_its_original_does_not_match_is_a_clear_error():
    converted = _convert(Encoder())
    config = converted.get_config()
    config["psp_conversion"]["regularized"].append([[99], "affine"])
    with pytest.raises(ValueError, match="lacks 1 of the 3 layers"):
        PSPModel.from_config(config)
