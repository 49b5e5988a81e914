import keras
import numpy as np
import pytest

import keras_psp
from keras_psp import PreActivationRegularizer
from keras_psp import PSPActivation
from keras_psp import PSPDense
from tests.helpers import gradients
from tests.helpers import to_numpy
from tests.test_penalty import numpy_mean
from tests.test_penalty import numpy_sum

L = keras.layers

# (layer factory, input shape): every kind of layer with an `activation`.
LAYER_CASES = {
    "dense": (lambda: L.Dense(6, activation="relu"), (4, 5)),
    "dense_rank3": (lambda: L.Dense(6, activation="tanh"), (2, 3, 5)),
    "dense_linear": (lambda: L.Dense(3), (4, 5)),
    "conv1d": (lambda: L.Conv1D(4, 3, activation="relu"), (2, 10, 3)),
    "conv2d": (
        lambda: L.Conv2D(4, 3, padding="same", activation="relu"),
        (2, 8, 8, 3),
    ),
    "conv3d": (lambda: L.Conv3D(2, 3, activation="elu"), (2, 6, 6, 6, 2)),
    "depthwise_conv1d": (
        lambda: L.DepthwiseConv1D(3, activation="relu"),
        (2, 10, 3),
    ),
    "depthwise_conv2d": (
        lambda: L.DepthwiseConv2D(3, depth_multiplier=2, activation="relu6"),
        (2, 8, 8, 3),
    ),
    "separable_conv1d": (
        lambda: L.SeparableConv1D(4, 3, activation="relu"),
        (2, 10, 3),
    ),
    "separable_conv2d": (
        lambda: L.SeparableConv2D(4, 3, activation="relu"),
        (2, 8, 8, 3),
    ),
    "conv1d_transpose": (
        lambda: L.Conv1DTranspose(4, 3, activation="relu"),
        (2, 10, 3),
    ),
    "conv2d_transpose": (
        lambda: L.Conv2DTranspose(4, 3, strides=2, activation="sigmoid"),
        (2, 5, 5, 3),
    ),
    "conv3d_transpose": (
        lambda: L.Conv3DTranspose(2, 3, activation="relu"),
        (2, 4, 4, 4, 2),
    ),
    "einsum_dense": (
        lambda: L.EinsumDense(
            "ab,bc->ac", output_shape=6, bias_axes="c", activation="gelu"
        ),
        (4, 5),
    ),
}


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_forward_equals_unwrapped_layer(case):
    factory, shape = LAYER_CASES[case]
    x = np.random.randn(*shape).astype("float32")
    layer = factory()
    expected = to_numpy(layer(x))
    wrapper = PreActivationRegularizer(layer, strength=0.1)
    np.testing.assert_allclose(to_numpy(wrapper(x)), expected, atol=1e-6)
    # The penalty is that of the affine part's output, z.
    z = to_numpy(wrapper.pre_activation(x))
    assert len(wrapper.losses) == 1
    np.testing.assert_allclose(
        to_numpy(wrapper.losses[0]), numpy_sum(z, 0.1), rtol=1e-5
    )


@pytest.mark.parametrize("case", ["dense", "conv2d"])
def test_inside_a_model_same_predictions(case):
    factory, shape = LAYER_CASES[case]
    x = np.random.randn(*shape).astype("float32")
    inputs = keras.Input(shape[1:])
    layer = factory()
    plain = keras.Model(inputs, layer(inputs))
    expected = plain.predict(x, verbose=0)
    wrapped = keras.Model(inputs, PreActivationRegularizer(layer)(inputs))
    np.testing.assert_allclose(
        wrapped.predict(x, verbose=0), expected, atol=1e-6
    )


def test_mean_reduction():
    x = np.random.randn(3, 6, 6, 2).astype("float32")
    wrapper = PreActivationRegularizer(
        L.Conv2D(3, 3, activation="relu"), strength=0.2, reduction="mean"
    )
    wrapper(x)
    z = to_numpy(wrapper.pre_activation(x))
    np.testing.assert_allclose(
        to_numpy(wrapper.losses[0]), numpy_mean(z, 0.2), rtol=1e-5
    )


def _penalty_of(layer, x):
    def loss_fn():
        layer(x)
        return keras.ops.sum(keras.ops.stack(layer.losses))

    return loss_fn


@pytest.mark.parametrize("strength", [1.0, 0.37])
def test_dense_gradient_matches_closed_form(strength):
    """Paper eq. 11-12: dR/db = z and dR/dw_j = z * y_j (batch-averaged)."""
    x = np.random.randn(4, 5).astype("float32")
    wrapper = PreActivationRegularizer(
        L.Dense(3, activation="relu"), strength=strength
    )
    wrapper(x)
    dense = wrapper.layer
    grad_kernel, grad_bias = gradients(
        _penalty_of(wrapper, x), [dense.kernel, dense.bias]
    )
    z = x @ to_numpy(dense.kernel) + to_numpy(dense.bias)
    batch = x.shape[0]
    np.testing.assert_allclose(
        grad_bias, strength * z.sum(axis=0) / batch, atol=1e-5
    )
    np.testing.assert_allclose(
        grad_kernel, strength * x.T @ z / batch, atol=1e-5
    )


def test_later_layer_penalty_reaches_earlier_weights():
    """Paper eq. 15: layer 2's penalty has a gradient on layer 1's weights."""
    strength = 0.5
    x = np.random.randn(6, 5).astype("float32")
    first = L.Dense(4, activation="tanh")
    second = PreActivationRegularizer(
        L.Dense(3, activation="relu"), strength=strength
    )
    model = keras.Sequential([keras.Input((5,)), first, second])
    grad_kernel, grad_bias = gradients(
        _penalty_of(model, x), [first.kernel, first.bias]
    )
    assert np.abs(grad_kernel).max() > 1e-4

    w1, b1 = (to_numpy(v).astype("float64") for v in (first.kernel, first.bias))
    w2, b2 = (
        to_numpy(v).astype("float64")
        for v in (second.layer.kernel, second.layer.bias)
    )
    x64 = x.astype("float64")

    def penalty(w1, b1):
        z2 = np.tanh(x64 @ w1 + b1) @ w2 + b2
        return numpy_sum(z2, strength)

    eps = 1e-6
    numeric_kernel = np.zeros_like(w1)
    for index in np.ndindex(w1.shape):
        step = np.zeros_like(w1)
        step[index] = eps
        numeric_kernel[index] = (
            penalty(w1 + step, b1) - penalty(w1 - step, b1)
        ) / (2 * eps)
    numeric_bias = np.zeros_like(b1)
    for index in np.ndindex(b1.shape):
        step = np.zeros_like(b1)
        step[index] = eps
        numeric_bias[index] = (
            penalty(w1, b1 + step) - penalty(w1, b1 - step)
        ) / (2 * eps)
    np.testing.assert_allclose(
        grad_kernel, numeric_kernel, rtol=1e-3, atol=1e-5
    )
    np.testing.assert_allclose(grad_bias, numeric_bias, rtol=1e-3, atol=1e-5)


def test_strength_is_a_float32_non_trainable_variable():
    wrapper = PreActivationRegularizer(L.Dense(2, activation="relu"), 0.3)
    assert isinstance(wrapper.strength, keras.Variable)
    assert not wrapper.strength.trainable
    assert wrapper.strength.dtype == "float32"
    x = np.ones((2, 3), dtype="float32")
    wrapper(x)
    first = float(to_numpy(wrapper.losses[0]))
    wrapper.strength.assign(0.6)
    wrapper(x)
    np.testing.assert_allclose(float(to_numpy(wrapper.losses[0])), 2 * first)
    assert any(v is wrapper.strength for v in wrapper.non_trainable_weights)
    assert not any(v is wrapper.strength for v in wrapper.trainable_weights)


def test_wraps_built_layer_keeping_weights_and_activation():
    layer = L.Dense(3, activation="relu")
    x = np.random.randn(4, 2).astype("float32")
    expected = to_numpy(layer(x))
    kernel = to_numpy(layer.kernel)
    wrapper = PreActivationRegularizer(layer)
    np.testing.assert_array_equal(to_numpy(wrapper.layer.kernel), kernel)
    np.testing.assert_allclose(to_numpy(wrapper(x)), expected, atol=1e-6)
    # The wrapped layer itself is not changed, before or after a call.
    assert layer.activation is keras.activations.relu


def test_layer_used_by_another_model_keeps_its_output_there():
    inputs = keras.Input((2,))
    layer = L.Dense(3, activation="relu")
    other = keras.Model(inputs, layer(inputs))
    x = np.random.randn(4, 2).astype("float32")
    expected = other.predict(x, verbose=0)
    assert (expected == 0).any()  # the ReLU clips something
    wrapper = PreActivationRegularizer(layer, strength=0.5)
    outer = keras.Input((2,))
    wrapped = keras.Model(outer, wrapper(outer))
    np.testing.assert_allclose(wrapped.predict(x, verbose=0), expected)
    np.testing.assert_array_equal(other.predict(x, verbose=0), expected)


def test_config_round_trip():
    wrapper = PreActivationRegularizer(
        L.Conv2D(3, 3, activation="swish"), strength=0.25, reduction="mean"
    )
    x = np.random.randn(2, 5, 5, 2).astype("float32")
    wrapper(x)
    wrapper.strength.assign(0.125)
    config = wrapper.get_config()
    assert config["strength"] == 0.125
    assert config["reduction"] == "mean"
    assert config["activation"] in ("swish", "silu")
    clone = PreActivationRegularizer.from_config(config)
    clone.build(x.shape)
    clone.set_weights(wrapper.get_weights())
    np.testing.assert_allclose(to_numpy(clone(x)), to_numpy(wrapper(x)))
    assert float(to_numpy(clone.strength)) == 0.125
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(wrapper)
    )
    assert isinstance(restored, PreActivationRegularizer)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_bad_strength_value(bad):
    with pytest.raises(ValueError, match="`strength`"):
        PreActivationRegularizer(L.Dense(2, activation="relu"), strength=bad)


@pytest.mark.parametrize("bad", ["0.1", None, True])
def test_bad_strength_type(bad):
    with pytest.raises(TypeError, match="`strength`"):
        PreActivationRegularizer(L.Dense(2, activation="relu"), strength=bad)


def test_unknown_reduction():
    with pytest.raises(ValueError, match="`reduction`"):
        PreActivationRegularizer(L.Dense(2), reduction="average")


@pytest.mark.parametrize(
    "layer", [L.BatchNormalization(), L.Add(), L.MaxPooling2D()]
)
def test_layer_without_activation(layer):
    with pytest.raises(ValueError, match="`layer`.*`activation`"):
        PreActivationRegularizer(layer)


def test_recurrent_layer_refused():
    with pytest.raises(ValueError, match="recurrent"):
        PreActivationRegularizer(L.LSTM(3))


@pytest.mark.parametrize(
    "psp_layer",
    [
        lambda: PreActivationRegularizer(L.Dense(2, activation="relu")),
        lambda: PSPDense(2, activation="relu"),
        lambda: PSPActivation("relu"),
    ],
)
def test_wrapping_a_psp_layer_again(psp_layer):
    with pytest.raises(ValueError, match="already a PSP layer"):
        PreActivationRegularizer(psp_layer())


@pytest.mark.parametrize("bad", ["dense", keras.activations.relu, 3, None])
def test_non_layer_argument(bad):
    with pytest.raises(TypeError, match="`layer`.*keras.layers.Layer"):
        PreActivationRegularizer(bad)


def test_strength_must_be_finite_in_float32():
    with pytest.raises(ValueError, match="`strength`.*float32"):
        PreActivationRegularizer(L.Dense(2, activation="relu"), strength=1e300)


class _DenseThenScale(L.Dense):
    """Has a `Dense`'s activation but multiplies after it: not `affine`."""

    def call(self, inputs):
        return 2.0 * super().call(inputs)


def test_unregistered_class_with_activation_refused():
    with pytest.raises(ValueError, match="not known to apply `activation`"):
        PreActivationRegularizer(_DenseThenScale(2, activation="relu"))


def test_activation_layer_refused_with_pointer_to_psp_activation():
    with pytest.raises(ValueError, match="PSPActivation"):
        PreActivationRegularizer(L.ReLU())


def test_masking_follows_the_wrapped_layer():
    wrapper = PreActivationRegularizer(L.Dense(3, activation="relu"))
    assert wrapper.supports_masking
    inputs = keras.Input((4, 2))
    masked = L.Masking()(inputs)
    outputs = wrapper(masked)
    assert outputs._keras_mask is not None


def test_dtype_follows_the_wrapped_layer_or_the_argument():
    layer = L.Dense(3, activation="relu", dtype="float16")
    assert PreActivationRegularizer(layer).compute_dtype == "float16"
    wrapper = PreActivationRegularizer(
        L.Dense(3, activation="relu"), dtype="mixed_float16"
    )
    y = wrapper(np.ones((2, 4), "float32"))
    assert keras.backend.standardize_dtype(y.dtype) == "float16"
    assert keras.backend.standardize_dtype(wrapper.losses[0].dtype) == "float32"


def test_registered_layer_without_compute_output_shape():
    @keras_psp.register_pre_activation_layer
    class Scaled(L.Layer):
        def __init__(self, activation="relu", **kwargs):
            super().__init__(**kwargs)
            self.activation = keras.activations.get(activation)

        def build(self, input_shape):
            self.scale = self.add_weight(shape=(input_shape[-1],), name="scale")

        def call(self, x):
            return self.activation(x * self.scale)

    wrapper = PreActivationRegularizer(Scaled())
    out = wrapper(keras.Input((3,)))
    assert tuple(out.shape) == (None, 3)
    assert wrapper.layer.scale.path == "scaled/scale"


def test_padded_positions_add_nothing_to_a_dense_layer():
    tokens = keras.Input((None,), dtype="int32")
    embedded = L.Embedding(10, 4, mask_zero=True)(tokens)
    wrapper = PreActivationRegularizer(L.Dense(3, activation="relu"), 1.0)
    model = keras.Model(tokens, wrapper(embedded))
    real = np.array([[1, 2, 3], [4, 5, 6]])
    model(real)
    unpadded = float(to_numpy(model.losses[0]))
    model(np.concatenate([real, np.zeros((2, 2), "int64")], axis=1))
    np.testing.assert_allclose(
        float(to_numpy(model.losses[0])), unpadded, rtol=1e-5
    )
