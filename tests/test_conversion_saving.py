"""Saving what `apply_psp` made of a functional model that saves itself
from its constructor's arguments (as keras_hub's backbones and the
encoders nested in them do), when it holds a layer whose own config does
not rebuild it (as keras_hub's `ViTPatchingAndEmbedding`, whose config has
keys its `__init__` refuses), or that cannot be built from the shape a
`.keras` file holds (as BLIP2's Q-Former layers), or when its own class
cannot rebuild it (as a keras_hub `FeaturePyramidBackbone` made from
inputs and outputs).

The copy is of the model's class, rebuilt from its config, so it loads
whenever the model does. PSP switched on is a training-time change, as
LoRA is: the file holds the plain model, and `enable_psp` with the same
arguments after loading gives the same terms. Files of keras-psp 0.1.0,
whose `PSPModel` config held a conversion recipe, load through their
layers' configs or fail with a clear error.
"""

import json
import os
import warnings
import zipfile

import keras
import numpy as np
import pytest

import keras_psp
from keras_psp.models.psp_model import PSPModel
from keras_psp.models.psp_model import psp_layers
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


def _convert(model):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing shared
        return keras_psp.apply_psp(model, 1e-2)


def _round_trip(model, tmp_path, name):
    path = os.path.join(tmp_path, name)
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        config = archive.read("config.json").decode()
    return keras.saving.load_model(path), config


def _penalty(model, x):
    model(x)
    return float(sum(to_numpy(loss) for loss in model.losses))


def _check_same(model, loaded, x):
    np.testing.assert_array_equal(to_numpy(model(x)), to_numpy(loaded(x)))
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
        # The layers' configs do not load: only the encoder's class does.
        plain = keras.Model(encoder.input, encoder.output)
        with pytest.raises(Exception, match="concatenate"):
            _round_trip(plain, tmp_path, "plain.keras")
    expected = to_numpy(original(x))
    converted = _convert(original)
    assert type(converted) is type(original)
    copied = converted.get_layer("encoder") if nested else converted
    assert type(copied) is Encoder and copied is not encoder
    np.testing.assert_array_equal(to_numpy(converted(x)), expected)
    # The hidden ReLU, and the layer making the model's output (its logits,
    # `regularize_logits`): the encoder's own when it is the model.
    assert len(psp_losses(converted)) == 2
    # Trained a little, so that loading random weights would show.
    converted.compile("sgd", "mse")
    y = np.ones((5, 2 if nested else 3), "float32")
    converted.fit(x, y, epochs=1, verbose=0)
    loaded, config = _round_trip(converted, tmp_path, "once.keras")
    # The plain model: no PSP in the file, none in the loaded model.
    assert "keras_psp" not in config
    assert type(loaded) is type(original)
    assert type(loaded.get_layer("encoder") if nested else loaded) is Encoder
    loaded(x)
    assert not loaded.losses and not psp_layers(loaded)
    # enable_psp with the same arguments gives the same terms.
    keras_psp.enable_psp(loaded, 1e-2)
    _check_same(converted, loaded, x)
    assert len(loaded.losses) == 2
    np.testing.assert_allclose(
        _penalty(loaded, x), _penalty(converted, x), rtol=1e-6
    )
    # The loaded model, PSP enabled, saves and loads again.
    again, _ = _round_trip(loaded, tmp_path, "twice.keras")
    keras_psp.enable_psp(again, 1e-2)
    _check_same(loaded, again, x)


def test_model_its_own_class_cannot_rebuild_is_changed_in_place():
    inputs = keras.Input((4,))
    hidden = L.Dense(8, activation="relu", name="hidden")(inputs)
    original = Pyramid(inputs, L.Dense(2, name="logits")(hidden))
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    expected = to_numpy(original(x))
    with pytest.raises(TypeError, match=r"(?s)Pyramid.*enable_psp\(model\)"):
        keras_psp.apply_psp(original, 1e-2)
    # Left unchanged by the failed copy.
    assert not keras_psp.psp_terms(original) and not psp_layers(original)
    assert keras_psp.enable_psp(original, 1e-2) is original
    assert type(original) is Pyramid
    np.testing.assert_array_equal(to_numpy(original(x)), expected)
    assert len(original.losses) == 2


def test_plain_functional_models_save_the_plain_model(tmp_path):
    inputs = keras.Input((4,))
    hidden = L.Dense(8, activation="relu", name="hidden")(inputs)
    model = keras.Model(inputs, L.Dense(2, name="logits")(hidden))
    converted = keras_psp.apply_psp(
        model, 1e-2, "mean", regularize_logits=False
    )
    assert type(converted) is type(model)
    loaded, config = _round_trip(converted, tmp_path, "converted.keras")
    assert "keras_psp" not in config
    assert type(loaded) is type(model)
    assert [type(la) for la in loaded.layers] == [
        type(la) for la in model.layers
    ]
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    loaded(x)
    assert not loaded.losses
    keras_psp.enable_psp(loaded, 1e-2, "mean", regularize_logits=False)
    _check_same(converted, loaded, x)
    assert len(loaded.losses) == 1
    np.testing.assert_allclose(
        _penalty(loaded, x), _penalty(converted, x), rtol=1e-6
    )


def _saved_by_0_1_0(with_layers):
    """The serialized `PSPModel` of a `.keras` file of keras-psp 0.1.0: its
    config with the conversion recipe (the original's config and where PSP
    went), with or without its layers' configs."""
    inputs = keras.Input((4,))
    hidden = keras_psp.PSPDense(8, activation="relu", name="hidden")(inputs)
    model = PSPModel(inputs, L.Dense(2, name="logits")(hidden), name="old")
    serialized = keras.saving.serialize_keras_object(model)
    config = serialized["config"]
    config["psp_conversion"] = {
        "original": {"class_name": "Functional", "config": {"name": "old"}},
        "regularized": [[[1], "affine"]],
    }
    if not with_layers:
        for key in ("layers", "input_layers", "output_layers"):
            config.pop(key)
    return model, json.loads(json.dumps(serialized))


def test_a_0_1_0_recipe_with_layer_configs_loads_through_them():
    model, serialized = _saved_by_0_1_0(with_layers=True)
    loaded = keras.saving.deserialize_keras_object(serialized)
    assert type(loaded) is PSPModel and loaded.name == "old"
    assert [la.name for la in psp_layers(loaded)] == ["hidden"]
    assert "psp_conversion" not in loaded.get_config()
    loaded.set_weights(model.get_weights())
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    np.testing.assert_array_equal(to_numpy(loaded(x)), to_numpy(model(x)))
    np.testing.assert_allclose(_penalty(loaded, x), _penalty(model, x))


def test_a_0_1_0_recipe_without_layer_configs_is_a_clear_error():
    _, serialized = _saved_by_0_1_0(with_layers=False)
    with pytest.raises(ValueError, match=r"(?s)'old'.*0\.1\.0.*enable_psp"):
        keras.saving.deserialize_keras_object(serialized)
    with pytest.raises(ValueError, match=r"0\.1\.0"):
        PSPModel.from_config(serialized["config"])
