import keras
import numpy as np

from applications import activation_count


def _count(model, x):
    count, _ = activation_count.count_activations(
        lambda: model(x, training=False)
    )
    return count


class GatedMLP(keras.layers.Layer):
    """`down(silu(gate(x)) * up(x))`, as in a Llama decoder block."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.gate = keras.layers.Dense(8)
        self.up = keras.layers.Dense(8)
        self.down = keras.layers.Dense(4)

    def call(self, x):
        return self.down(keras.ops.silu(self.gate(x)) * self.up(x))


def test_counts_a_gated_mlp_and_dense_activations():
    inputs = keras.Input((4,))
    x = GatedMLP()(inputs)
    x = keras.layers.Dense(4, activation="gelu")(x)  # 1
    x = keras.layers.Dense(4)(x)  # linear: 0
    outputs = keras.layers.ReLU(max_value=6.0)(x)  # ReLU.static_call: 1
    model = keras.Model(inputs, outputs)
    assert _count(model, np.ones((2, 4), "float32")) == 3


def test_an_activation_of_an_activation_counts_once():
    inputs = keras.Input((4,))
    x = keras.ops.relu(keras.ops.relu(inputs))  # 1
    y = inputs * keras.ops.tanh(keras.ops.softplus(inputs))  # 1: softplus
    z = keras.layers.Activation("mish")(inputs)  # 1: Mish.static_call
    model = keras.Model(inputs, [x, y, z])
    assert _count(model, np.ones((2, 4), "float32")) == 3


class Scale(keras.layers.Layer):
    """`x * softplus(w)`: a reparametrized weight, no neuron."""

    def build(self, shape):
        self.w = self.add_weight(shape=shape[-1:], initializer="zeros")

    def call(self, x):
        return x * keras.ops.softplus(self.w)


def test_an_activation_of_a_weight_is_not_counted():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.ops.tanh(Scale()(inputs)))
    assert _count(model, np.ones((2, 4), "float32")) == 1


def test_attention_is_not_counted():
    # MultiHeadAttention's softmax is no neuron's activation; the
    # feed-forward relu Dense after it is.
    inputs = keras.Input((3, 4))
    x = keras.layers.MultiHeadAttention(2, 2)(inputs, inputs)
    outputs = keras.layers.Dense(4, activation="relu")(x)
    model = keras.Model(inputs, outputs)
    assert _count(model, np.ones((2, 3, 4), "float32")) == 1
