import keras
import numpy as np
import pytest

from keras_psp import PSPDense
from tests.helpers import to_numpy
from tests.test_penalty import numpy_sum


def test_is_a_dense_and_takes_dense_arguments():
    layer = PSPDense(
        7,
        activation="relu",
        use_bias=False,
        kernel_initializer="ones",
        kernel_regularizer=keras.regularizers.L2(1e-4),
        name="fc",
        strength=0.5,
    )
    assert isinstance(layer, keras.layers.Dense)
    x = np.random.randn(3, 4).astype("float32")
    out = to_numpy(layer(x))
    np.testing.assert_allclose(
        out, np.maximum(x.sum(1, keepdims=True), 0) * np.ones(7), rtol=1e-5
    )
    assert layer.bias is None
    z = x @ np.ones((4, 7), dtype="float32")
    # One PSP term (from add_loss) plus the kernel's L2 term.
    assert len(layer.losses) == 2
    np.testing.assert_allclose(
        to_numpy(layer.losses[0]), numpy_sum(z, 0.5), rtol=1e-5
    )


def test_same_output_as_dense_with_same_weights():
    x = np.random.randn(5, 6).astype("float32")
    dense = keras.layers.Dense(4, activation="tanh")
    expected = to_numpy(dense(x))
    psp = PSPDense(4, activation="tanh")
    psp.build(x.shape)
    psp.kernel.assign(dense.kernel)
    psp.bias.assign(dense.bias)
    np.testing.assert_allclose(to_numpy(psp(x)), expected, atol=1e-6)


def test_from_layer_copies_config_and_weights():
    x = np.random.randn(5, 6).astype("float32")
    dense = keras.layers.Dense(4, activation="relu", name="hidden")
    expected = to_numpy(dense(x))
    psp = PSPDense.from_layer(dense, strength=0.1, reduction="mean")
    assert psp.name == "hidden"
    assert dense.activation is keras.activations.relu  # left unchanged
    np.testing.assert_allclose(to_numpy(psp(x)), expected, atol=1e-6)
    assert psp.reduction == "mean"
    unbuilt = PSPDense.from_layer(keras.layers.Dense(3))
    assert not unbuilt.built


def test_from_layer_refuses_other_types():
    with pytest.raises(TypeError, match="`layer`.*`Dense`"):
        PSPDense.from_layer(keras.layers.Conv2D(3, 3))


def test_config_round_trip():
    layer = PSPDense(3, activation="relu", strength=0.3, reduction="mean")
    config = layer.get_config()
    assert config["activation"] == "relu"
    assert config["strength"] == pytest.approx(0.3)
    clone = PSPDense.from_config(config)
    assert clone.psp_activation is keras.activations.relu
    assert clone.units == 3 and clone.reduction == "mean"


def test_bad_arguments():
    with pytest.raises(ValueError, match="`strength`"):
        PSPDense(3, strength=-1.0)
    with pytest.raises(TypeError, match="`strength`"):
        PSPDense(3, strength="1e-3")
    with pytest.raises(ValueError, match="`reduction`"):
        PSPDense(3, reduction="none")
