import keras
import pytest

import keras_psp
from keras_psp import pre_activations

L = keras.layers


@pytest.mark.parametrize(
    "layer,kind",
    [
        (L.Dense(2, activation="relu"), "affine"),
        (L.Conv2D(2, 3), "affine"),  # linear, but of an affine class
        (L.ReLU(), "activation"),
        (L.BatchNormalization(), None),
        (keras_psp.PSPDense(2), "psp"),
        (L.LSTM(2), None),
    ],
)
def test_layer_kind(layer, kind):
    assert pre_activations.layer_kind(layer) == kind


def test_subclass_of_a_known_class_is_not_known_until_registered():
    class Sub(L.Dense):
        pass

    assert pre_activations.layer_kind(Sub(2, activation="relu")) is None
    assert "not known" in pre_activations.skip_reason(Sub(2, activation="tanh"))
    keras_psp.register_pre_activation_layer(Sub)
    assert pre_activations.layer_kind(Sub(2)) == "affine"


def test_register_bad_arguments():
    with pytest.raises(TypeError, match="`layer_class`"):
        keras_psp.register_pre_activation_layer(L.Dense(2))
    with pytest.raises(ValueError, match="`kind`"):
        keras_psp.register_pre_activation_layer(L.Layer, kind="afine")
    with pytest.raises(ValueError, match="PSP layer"):
        keras_psp.register_pre_activation_layer(keras_psp.PSPDense)


def test_find_pre_activations_reports_recurrent_wrappers():
    inputs = keras.Input((5, 3))
    x = L.Bidirectional(L.LSTM(4), name="bi")(inputs)
    model = keras.Model(inputs, L.Dense(2, activation="softmax", name="out")(x))
    found, skipped = keras_psp.find_pre_activations(model)
    assert [(e.layer.name, e.kind) for e in found] == [("out", "affine")]
    assert [e.layer.name for e in skipped] == ["bi"]
    assert "recurrent" in skipped[0].reason


def test_find_pre_activations_paths_in_nested_models():
    inner = keras.Sequential(
        [keras.Input((3,)), L.Dense(3, activation="relu", name="fc")],
        name="inner",
    )
    inputs = keras.Input((3,))
    model = keras.Model(inputs, L.Dense(1, name="out")(inner(inputs)))
    found, _ = keras_psp.find_pre_activations(model, regularize_logits=False)
    assert [(e.layer.name, e.path) for e in found] == [("fc", ("inner",))]
