import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_psp
from keras_psp.models import AllCNNC
from keras_psp.models import LeNet5
from keras_psp.models import MobileNetV2
from keras_psp.models import ResNet18
from keras_psp.models.psp_model import psp_layers
from tests.helpers import to_numpy

L = keras.layers


def _application():
    base = keras.applications.MobileNetV3Small(
        weights=None, input_shape=(32, 32, 3), classes=3
    )
    return keras_psp.apply_psp(base, 1e-3, reduction="mean")


# name: (PSP model factory, input shape).
MODELS = {
    "lenet5": (lambda: LeNet5(psp_strength=1e-3), (28, 28, 1)),
    "all_cnn_c": (lambda: AllCNNC(psp_strength=1e-3), (32, 32, 3)),
    "resnet18": (lambda: ResNet18(psp_strength=1e-3), (32, 32, 3)),
    "mobilenetv2": (lambda: MobileNetV2(psp_strength=1e-3), (32, 32, 3)),
    "mobilenetv3small_converted": (_application, (32, 32, 3)),
}

# Saved and loaded in a fresh process (a builder's plain layers, and a
# converted keras.applications model's): the others are stripped to the
# same Keras classes, and a fresh process compiles each model anew.
LOADED_ELSEWHERE = ("lenet5", "mobilenetv3small_converted")
# Loads each model with Keras only, and checks keras_psp was never imported.
LOAD_WITHOUT_KERAS_PSP = """
import json, sys
import keras, numpy as np
cases = json.load(open(sys.argv[1]))
for path, x_path, y_path in cases:
    model = keras.saving.load_model(path)
    y = model.predict(np.load(x_path), verbose=0)
    np.testing.assert_allclose(y, np.load(y_path), atol=1e-5)
assert not any(name.startswith("keras_psp") for name in sys.modules)
print("loaded", len(cases))
"""


def test_strip_psp_on_builders_and_a_converted_application(tmp_path):
    cases = []
    for name, (factory, shape) in MODELS.items():
        model = factory()
        assert psp_layers(model)
        x = np.random.rand(2, *shape).astype("float32")
        expected = model.predict(x, verbose=0)
        stripped = keras_psp.strip_psp(model)
        assert not isinstance(stripped, keras_psp.PSPModel), name
        assert not psp_layers(stripped), name
        assert not stripped.losses, name
        np.testing.assert_allclose(
            stripped.predict(x, verbose=0), expected, atol=1e-5, err_msg=name
        )
        # Same weights, one for one (λ aside).
        weights = [w for w in model.weights if not w.path.endswith("strength")]
        assert len(weights) == len(stripped.weights), name
        for w, s in zip(weights, stripped.weights, strict=True):
            np.testing.assert_array_equal(to_numpy(w), to_numpy(s))
        if name in LOADED_ELSEWHERE:
            path = os.path.join(tmp_path, f"{name}.keras")
            stripped.save(path)
            np.save(os.path.join(tmp_path, f"{name}_x.npy"), x)
            np.save(os.path.join(tmp_path, f"{name}_y.npy"), expected)
            cases.append(
                [
                    path,
                    os.path.join(tmp_path, f"{name}_x.npy"),
                    os.path.join(tmp_path, f"{name}_y.npy"),
                ]
            )
        keras.utils.clear_session()
    listing = os.path.join(tmp_path, "cases.json")
    with open(listing, "w") as f:
        json.dump(cases, f)
    result = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_KERAS_PSP, listing],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"loaded {len(LOADED_ELSEWHERE)}" in result.stdout


def test_strip_psp_undoes_hand_placed_psp_layers():
    inputs = keras.Input((6,))
    x = keras_psp.PSPDense(4, activation="relu", strength=0.1, name="a")(inputs)
    x = keras_psp.PreActivationRegularizer(
        L.Dense(4, activation="tanh"), name="b"
    )(x)
    x = keras_psp.PSPActivation(L.PReLU(), name="c")(x)
    x = keras_psp.PSPActivation("elu", name="d")(x)
    model = keras_psp.PSPModel(inputs, x)
    stripped = keras_psp.strip_psp(model)
    kinds = [type(layer).__name__ for layer in stripped.layers[1:]]
    assert kinds == ["Dense", "Dense", "PReLU", "Activation"]
    assert stripped.get_layer("b").activation is keras.activations.tanh
    x = np.random.randn(3, 6).astype("float32")
    np.testing.assert_allclose(
        stripped.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )


def test_strip_psp_keeps_sequential():
    model = keras_psp.apply_psp(
        keras.Sequential([keras.Input((3,)), L.Dense(2, activation="relu")])
    )
    stripped = keras_psp.strip_psp(model)
    assert type(stripped) is keras.Sequential
    assert type(stripped.layers[0]) is L.Dense


def test_strip_psp_bad_argument():
    with pytest.raises(TypeError, match="`model`"):
        keras_psp.strip_psp(L.Dense(2))


@keras.saving.register_keras_serializable(package="tests_stripping")
class Tower(keras.Model):
    """A functional subclass saved from its constructor's arguments, with
    a PSP term at an activation layer, at a `keras.ops` activation and at
    a Dense's activation."""

    def __init__(self, width=6, name="tower", **kwargs):
        inputs = keras.Input((4,))
        x = L.ReLU(name="relu")(L.Dense(width, name="hidden")(inputs))
        x = keras.ops.tanh(L.Dense(width, name="mid")(x))
        outputs = L.Dense(2, activation="elu", name="logits")(x)
        super().__init__(inputs, outputs, name=name, **kwargs)
        self.width = width

    def get_config(self):
        return {"width": self.width, "name": self.name}


@pytest.mark.parametrize("way", ["apply_psp", "enable_psp"])
def test_strip_psp_gives_a_plain_copy_of_the_models_class(way):
    model = Tower()
    x = np.random.rand(3, 4).astype("float32")
    expected = to_numpy(model(x))
    converted = getattr(keras_psp, way)(model, 1e-2)
    assert len(keras_psp.psp_terms(converted)) == 3
    stripped = keras_psp.strip_psp(converted)
    assert type(stripped) is Tower and stripped is not converted
    assert not psp_layers(stripped) and not keras_psp.psp_terms(stripped)
    np.testing.assert_array_equal(to_numpy(stripped(x)), expected)
    assert not stripped.losses
    # A copy: the weights are equal, not shared; the PSP model keeps PSP.
    weights = [w for w in converted.weights if not w.path.endswith("strength")]
    assert [w.path for w in stripped.weights] == [w.path for w in weights]
    for w, s in zip(weights, stripped.weights, strict=True):
        assert w is not s
        np.testing.assert_array_equal(to_numpy(w), to_numpy(s))
    converted(x)
    assert len(converted.losses) == 3
