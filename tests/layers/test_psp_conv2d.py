import keras
import numpy as np
import pytest

from keras_psp import PSPConv2D
from tests.helpers import to_numpy
from tests.test_penalty import numpy_mean


def test_same_output_as_conv2d_and_penalty_over_positions():
    x = np.random.randn(2, 9, 9, 3).astype("float32")
    conv = keras.layers.Conv2D(
        5, 3, strides=2, padding="same", activation="relu"
    )
    expected = to_numpy(conv(x))
    psp = PSPConv2D.from_layer(conv, strength=0.2, reduction="mean")
    assert isinstance(psp, keras.layers.Conv2D)
    assert psp.strides == (2, 2) and psp.padding == "same"
    np.testing.assert_allclose(to_numpy(psp(x)), expected, atol=1e-5)
    # z is the convolution's output before its activation.
    conv.activation = keras.activations.linear
    z = to_numpy(conv(x))
    np.testing.assert_allclose(
        to_numpy(psp.losses[0]), numpy_mean(z, 0.2), rtol=1e-5
    )


def test_takes_conv2d_arguments():
    layer = PSPConv2D(
        8,
        (3, 3),
        padding="same",
        dilation_rate=2,
        activation="relu",
        use_bias=False,
        strength=1e-3,
    )
    out = layer(np.ones((1, 8, 8, 2), dtype="float32"))
    assert tuple(out.shape) == (1, 8, 8, 8)
    config = layer.get_config()
    clone = PSPConv2D.from_config(config)
    assert clone.dilation_rate == (2, 2) and clone.use_bias is False
    assert clone.psp_activation is keras.activations.relu


def test_bad_arguments():
    with pytest.raises(ValueError, match="`strength`"):
        PSPConv2D(3, 3, strength=float("inf"))
    with pytest.raises(ValueError, match="`reduction`"):
        PSPConv2D(3, 3, reduction="sum_of_squares")
