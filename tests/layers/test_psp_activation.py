import keras
import numpy as np
import pytest

import keras_psp
from keras_psp import PSPActivation
from tests.helpers import to_numpy
from tests.test_penalty import numpy_sum

L = keras.layers

ACTIVATIONS = {
    "relu_name": lambda: "relu",
    "tanh_function": lambda: keras.activations.tanh,
    "activation_layer": lambda: L.Activation("gelu"),
    "relu6_layer": lambda: L.ReLU(max_value=6.0),
    "leaky_relu_layer": lambda: L.LeakyReLU(negative_slope=0.2),
    "elu_layer": lambda: L.ELU(alpha=0.5),
    "prelu_layer": lambda: L.PReLU(
        alpha_initializer=keras.initializers.RandomUniform(0.1, 0.3)
    ),
    "softmax_layer": lambda: L.Softmax(),
}


def _reference(activation, x):
    if isinstance(activation, str):
        activation = keras.activations.get(activation)
    return to_numpy(activation(x))


@pytest.mark.parametrize("case", sorted(ACTIVATIONS))
def test_output_equals_activation_and_penalty_is_of_its_input(case):
    x = (np.random.randn(3, 4, 4, 2) * 10).astype("float32")
    activation = ACTIVATIONS[case]()
    layer = PSPActivation(activation, strength=0.01)
    out = to_numpy(layer(x))
    np.testing.assert_allclose(out, _reference(activation, x), atol=1e-5)
    assert len(layer.losses) == 1
    np.testing.assert_allclose(
        to_numpy(layer.losses[0]), numpy_sum(x, 0.01), rtol=1e-5
    )


def test_relu6_clips():
    layer = PSPActivation(L.ReLU(max_value=6.0))
    out = to_numpy(layer(np.array([[-3.0, 3.0, 30.0]], dtype="float32")))
    np.testing.assert_allclose(out, [[0.0, 3.0, 6.0]])


def test_prelu_weights_are_trainable_weights_of_the_layer():
    prelu = L.PReLU()
    layer = PSPActivation(prelu)
    layer(np.ones((2, 3), dtype="float32"))
    assert any(v is prelu.alpha for v in layer.trainable_weights)


def test_after_batch_norm_and_add():
    inputs = keras.Input((4,))
    a = L.BatchNormalization()(L.Dense(4)(inputs))
    z = L.Add()([a, L.Dense(4)(inputs)])
    out = PSPActivation("relu", strength=1.0)(z)
    model = keras.Model(inputs, out)
    x = np.random.randn(5, 4).astype("float32")
    model(x)
    z_values = to_numpy(keras.Model(inputs, z)(x))
    np.testing.assert_allclose(
        to_numpy(model.losses[0]), numpy_sum(z_values, 1.0), rtol=1e-5
    )


def test_config_round_trip_with_layer_activation():
    layer = PSPActivation(
        L.LeakyReLU(negative_slope=0.3), strength=0.2, reduction="mean"
    )
    x = np.random.randn(2, 3).astype("float32")
    layer(x)
    clone = PSPActivation.from_config(layer.get_config())
    np.testing.assert_allclose(to_numpy(clone(x)), to_numpy(layer(x)))
    assert clone.reduction == "mean"
    assert float(to_numpy(clone.strength)) == pytest.approx(0.2)
    named = PSPActivation.from_config(PSPActivation("elu").get_config())
    assert named.activation is keras.activations.elu


@pytest.mark.parametrize("bad", [-0.5, float("nan")])
def test_bad_strength(bad):
    with pytest.raises(ValueError, match="`strength`"):
        PSPActivation("relu", strength=bad)


def test_bad_strength_type():
    with pytest.raises(TypeError, match="`strength`"):
        PSPActivation("relu", strength="big")


def test_unknown_reduction():
    with pytest.raises(ValueError, match="`reduction`"):
        PSPActivation("relu", reduction="max")


@pytest.mark.parametrize("bad", ["no_such_activation", 3, None])
def test_bad_activation(bad):
    with pytest.raises(ValueError, match="`activation`"):
        PSPActivation(bad)


def test_psp_layer_as_activation_refused():
    with pytest.raises(ValueError, match="already a PSP layer"):
        PSPActivation(PSPActivation("relu"))


@pytest.mark.parametrize(
    "layer", [lambda: L.Dense(3), lambda: L.BatchNormalization()]
)
def test_non_activation_layer_refused(layer):
    with pytest.raises(TypeError, match="`activation` must be an activation"):
        PSPActivation(layer())


def test_registered_activation_layer_accepted():
    @keras_psp.register_pre_activation_layer(kind="activation")
    class Square(L.Layer):
        def call(self, inputs):
            return inputs * inputs

    layer = PSPActivation(Square(), strength=1.0)
    y = to_numpy(layer(np.array([[2.0, -3.0]], "float32")))
    np.testing.assert_allclose(y, [[4.0, 9.0]])
    np.testing.assert_allclose(to_numpy(layer.losses[0]), 0.5 * 13.0)


def test_padded_positions_add_nothing():
    tokens = keras.Input((None,), dtype="int32")
    embedded = keras.layers.Embedding(10, 4, mask_zero=True)(tokens)
    model = keras.Model(tokens, PSPActivation("relu", strength=1.0)(embedded))
    real = np.array([[1, 2, 3], [4, 5, 6]])
    model(real)
    unpadded = float(to_numpy(model.losses[0]))
    model(np.concatenate([real, np.zeros((2, 3), "int64")], axis=1))
    np.testing.assert_allclose(
        float(to_numpy(model.losses[0])), unpadded, rtol=1e-5
    )
