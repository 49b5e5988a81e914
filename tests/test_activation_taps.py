"""`activation_taps.watch`: which activations a layer applies in its own
code hand their z over, on every backend (it swaps Keras' backend
activation functions, an internal: these tests pin what it sees)."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_psp import PSPDense
from keras_psp import activation_taps
from tests.helpers import to_numpy

L = keras.layers


class Calls(L.Layer):
    """Runs `function(self, x)` as its call."""

    def __init__(self, function, **kwargs):
        super().__init__(**kwargs)
        self.function = function

    def call(self, x):
        return self.function(self, x)


def _seen(function, x=None):
    layer = Calls(function)
    x = (
        np.linspace(-2, 2, 12, dtype="float32").reshape(3, 4)
        if x is None
        else x
    )
    found = []
    with activation_taps.watch(layer, found.append) as watched:
        output = layer(x)
    return [to_numpy(z) for z in found], watched, to_numpy(output)


@pytest.mark.parametrize(
    "function, count",
    [
        (lambda self, x: keras.activations.silu(x) * x, 1),
        (lambda self, x: ops.gelu(x), 1),
        (lambda self, x: ops.tanh(ops.softplus(x)), 1),  # mish, by hand
        (lambda self, x: keras.activations.mish(x), 1),
        (lambda self, x: keras.activations.hard_silu(x), 1),  # nested calls
        (lambda self, x: L.ReLU(max_value=6.0, negative_slope=0.1)(x), 1),
        (lambda self, x: ops.relu(ops.relu(x)), 1),
        (lambda self, x: ops.relu(x) + ops.relu(x + 1.0), 2),
        (lambda self, x: ops.softmax(x), 0),  # normalizes, no neuron's
        (lambda self, x: L.Activation("relu")(L.Dense(4)(x)), 1),
        (lambda self, x: keras.Sequential([L.Dense(4, "elu")])(x), 1),
    ],
)
def test_counts_each_activation_once(function, count):
    found, watched, _ = _seen(function)
    assert len(found) == watched.count == count
    assert not watched.skipped


def test_z_is_the_activation_input_and_output_unchanged():
    x = np.linspace(-2, 2, 12, dtype="float32").reshape(3, 4)
    found, _, output = _seen(lambda self, x: ops.silu(x * 2.0))
    np.testing.assert_allclose(found[0], x * 2.0, rtol=1e-6)
    np.testing.assert_allclose(output, to_numpy(ops.silu(x * 2.0)), rtol=1e-6)


def test_attention_scores_are_left_out():
    attention = L.MultiHeadAttention(2, 4)

    def attend(self, x):
        seq = x[:, None, :]
        return attention(seq, seq)

    found, watched, _ = _seen(attend)
    assert found == [] and not watched.skipped


def test_psp_layer_inside_is_regularized_there_already():
    dense = PSPDense(4, activation="relu")
    found, _, _ = _seen(lambda self, x: dense(x))
    assert found == []


def test_activation_inside_a_loop_is_named_not_taken():
    def loop(self, x):
        return ops.fori_loop(0, 2, lambda i, h: ops.relu(h) - 0.1, x)

    found, watched, _ = _seen(loop)
    assert found == []
    ((layer, reason),) = watched.skipped
    assert "keras.ops.fori_loop" in reason


def test_nothing_is_seen_outside_a_watch():
    from keras.src import backend

    relu = backend.nn.relu
    layer = Calls(lambda self, x: ops.relu(x))
    found = []
    with activation_taps.watch(L.Dense(2), found.append):
        assert backend.nn.relu is not relu  # watched
        layer(np.ones((1, 2), "float32"))  # not inside the watched layer
    assert found == []
    # And the backend's functions are what they were before again.
    assert backend.nn.relu is relu
