"""`apply_psp` on the layers users bring: blocks that apply activations in
their own code (gated MLPs, `keras.ops` calls, activation layers and
Sequential sub-blocks they hold), layers whose config does not round-trip,
unusual call signatures and masked sequences.

The expected numbers of PSP terms are counted by hand from each block's
code; the z of a gate is checked against `psp_penalty` of the gate's own
output, computed apart.
"""

import warnings

import keras
import numpy as np
import pytest
from keras import ops

import keras_psp
from keras_psp import psp_terms
from keras_psp.models.psp_model import psp_layers
from keras_psp.models.psp_model import psp_losses
from tests.helpers import to_numpy

L = keras.layers


@keras.saving.register_keras_serializable(package="tests")
class GatedMLP(L.Layer):
    """Llama's feed-forward block: `down(activation(gate(x)) * up(x))`."""

    def __init__(self, activation="silu", **kwargs):
        super().__init__(**kwargs)
        self.activation = activation  # a string, as many blocks keep it
        self.gate = L.Dense(8, use_bias=False, name="gate")
        self.up = L.Dense(8, use_bias=False, name="up")
        self.down = L.Dense(4, use_bias=False, name="down")

    def call(self, x):
        act = keras.activations.get(self.activation)
        return self.down(act(self.gate(x)) * self.up(x))

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}


@keras.saving.register_keras_serializable(package="tests")
class MixedBlock(L.Layer):
    """`keras.ops.relu`, an `Activation` layer, a Sequential sub-block with
    a `ReLU` layer, and attention (whose softmax is no neuron's)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.fc = L.Dense(4)
        self.fc2 = L.Dense(4)
        self.act = L.Activation("tanh")
        self.sub = keras.Sequential([L.Dense(4), L.ReLU()])
        self.attention = L.MultiHeadAttention(1, 4)

    def call(self, x):
        h = ops.relu(self.fc(x))  # 1
        h = self.act(self.fc2(h))  # 2
        h = self.sub(h)  # 3: the Dense's output, the ReLU's input
        h = ops.relu(h)  # relu(relu(z)): not another z
        seq = h[:, None, :]
        return h + self.attention(seq, seq)[:, 0, :]


def _functional(block, width=4):
    inputs = keras.Input((width,))
    hidden = block(inputs)
    return keras.Model(inputs, L.Dense(2, name="logits")(hidden))


def _quiet_convert(model, **kwargs):
    """`apply_psp` that fails on any UserWarning (nothing left out)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        return keras_psp.apply_psp(model, **kwargs)


def _terms(model, x):
    model(x)
    return [float(to_numpy(t)) for t in psp_losses(model)]


@pytest.mark.parametrize("activation", ["silu", "gelu"])
def test_gated_mlp_gets_one_term_per_gate_activation(activation):
    block = GatedMLP(activation, name="mlp")
    model = _functional(block)
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    converted = _quiet_convert(model, strength=0.5)
    np.testing.assert_array_equal(to_numpy(converted(x)), to_numpy(model(x)))
    mlp = converted.get_layer("mlp")
    assert type(mlp) is GatedMLP and mlp is not block
    # The block applies its activation in its own code: seen at run time.
    assert [(t.layer, t.route, t.count) for t in psp_terms(converted)] == [
        (mlp, "code", 1),
        (converted.get_layer("logits"), "activation attribute", 1),
    ]
    terms = _terms(converted, x)
    assert len(terms) == 2  # the gate's activation, and the logits
    gate = to_numpy(mlp.gate(x))
    expected = float(to_numpy(keras_psp.psp_penalty(gate, 0.5)))
    np.testing.assert_allclose(terms[0], expected, rtol=1e-5)
    # Not the up projection's, which enters no activation.
    up = to_numpy(mlp.up(x))
    assert abs(float(to_numpy(keras_psp.psp_penalty(up, 0.5))) - terms[0]) > (
        1e-3 * terms[0]
    )


def test_ops_activation_layers_and_sub_blocks_inside_a_block():
    model = _functional(MixedBlock(name="mixed"))
    x = np.random.default_rng(1).normal(size=(3, 4)).astype("float32")
    converted = _quiet_convert(model)
    np.testing.assert_array_equal(to_numpy(converted(x)), to_numpy(model(x)))
    assert len(_terms(converted, x)) == 4  # 3 in the block, the logits
    stripped = keras_psp.strip_psp(converted)
    np.testing.assert_array_equal(to_numpy(stripped(x)), to_numpy(model(x)))
    assert not psp_layers(stripped)


def test_activation_of_an_activation_has_one_rule_for_layers_and_ops():
    inputs = keras.Input((4,))
    hidden = L.Dense(4, name="fc")(inputs)
    by_ops = keras.activations.relu(keras.activations.relu(hidden))
    by_layers = L.Activation("relu")(L.Activation("relu")(hidden))
    relu_dense = L.Activation("relu")(L.Dense(4, activation="relu")(inputs))
    model = keras.Model(inputs, [by_ops, by_layers, relu_dense])
    converted = keras_psp.apply_psp(model, regularize_logits=False)
    x = np.ones((2, 4), "float32")
    # One z each: fc's output (twice: the op and the layer chain) and the
    # relu Dense's affine output.
    assert len(_terms(converted, x)) == 3


def test_model_with_nothing_to_regularize_raises():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, L.LayerNormalization()(L.Dense(3)(inputs)))
    with pytest.raises(ValueError, match="found no pre-activation"):
        keras_psp.apply_psp(model, regularize_logits=False)


def test_recurrent_layer_inside_a_block_is_named():
    @keras.saving.register_keras_serializable(package="tests")
    class RecurrentBlock(L.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.rnn = L.SimpleRNN(4, return_sequences=True, name="rnn")
            self.fc = L.Dense(4, activation="relu")

        def call(self, x):
            return self.fc(self.rnn(x))

    inputs = keras.Input((3, 4))
    model = keras.Model(inputs, RecurrentBlock(name="block")(inputs))
    with pytest.warns(UserWarning, match=r"(?s)block.*'rnn'.*recurren"):
        converted = keras_psp.apply_psp(model, regularize_logits=False)
    found, skipped = keras_psp.find_pre_activations(model, False)
    assert [entry.layer.name for entry in skipped] == ["block"]
    x = np.ones((2, 3, 4), "float32")
    assert len(_terms(converted, x)) == 1  # the Dense after the RNN
