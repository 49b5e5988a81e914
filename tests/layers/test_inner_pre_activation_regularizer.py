import os

import keras
import numpy as np
import pytest

from keras_psp import InnerPreActivationRegularizer
from keras_psp import PreActivationRegularizer
from keras_psp import apply_psp
from keras_psp.callbacks import PreActivationMonitor
from keras_psp.models.psp_model import PSPModel
from keras_psp.models.psp_model import psp_losses
from tests.helpers import to_numpy
from tests.test_penalty import numpy_sum

L = keras.layers


class Block(L.Layer):
    """A composite layer: relu feed-forward, linear projection, residual."""

    def __init__(self, units=6, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.hidden = L.Dense(self.units, activation="relu", name="hidden")
        self.project = L.Dense(input_shape[-1], name="project")
        self.hidden.build(input_shape)
        self.project.build(tuple(input_shape[:-1]) + (self.units,))

    def call(self, x):
        return x + self.project(self.hidden(x))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def _hidden_z(block, x):
    kernel, bias = (to_numpy(w) for w in block.hidden.weights)
    return x @ kernel + bias


def test_output_unchanged_and_penalty_is_of_the_inner_pre_activation():
    block = Block()
    x = np.random.randn(4, 3).astype("float32")
    expected = to_numpy(block(x))
    wrapper = InnerPreActivationRegularizer(block, strength=0.1)
    np.testing.assert_allclose(to_numpy(wrapper(x)), expected, atol=1e-6)
    assert len(wrapper.losses) == 1
    np.testing.assert_allclose(
        to_numpy(wrapper.losses[0]),
        numpy_sum(_hidden_z(block, x), 0.1),
        rtol=1e-5,
    )
    # Only the layer with a non-linear activation counts, once per call.
    wrapper(x)
    assert len(wrapper.losses) == 1


def test_time_distributed_is_skipped_and_reported():
    # It calls its Dense inside a vectorized map, where add_loss cannot go.
    inputs = keras.Input((3, 5))
    hidden = L.TimeDistributed(L.Dense(4, activation="tanh"), name="td")(inputs)
    model = keras.Model(inputs, L.Dense(2, name="logits")(hidden))
    with pytest.warns(UserWarning, match=r"(?s)td \(TimeDistributed\).*map"):
        converted = apply_psp(model)
    assert type(converted.get_layer("td")) is L.TimeDistributed


def test_wrapped_model_trains_saves_and_is_monitored(tmp_path):
    inputs = keras.Input((3,))
    hidden = Block(name="block")(inputs)
    model = keras.Model(inputs, L.Dense(2, name="logits")(hidden))
    x = np.random.randn(8, 3).astype("float32")
    y = np.random.randn(8, 2).astype("float32")
    expected = model.predict(x, verbose=0)
    # The same layers, wrapped by hand (`apply_psp` attaches PSP in place).
    block = InnerPreActivationRegularizer(
        model.get_layer("block"), 0.1, name="block"
    )
    logits = PreActivationRegularizer(
        model.get_layer("logits"), 0.1, name="logits"
    )
    converted = PSPModel(inputs, logits(block(inputs)))
    np.testing.assert_allclose(
        converted.predict(x, verbose=0), expected, atol=1e-6
    )
    converted(x)
    assert len(psp_losses(converted)) == 2  # the block's inner z, logits

    monitor = PreActivationMonitor(x)
    monitor.set_model(converted)
    values = monitor.measure()
    z = _hidden_z(block.layer, x)
    np.testing.assert_allclose(values["z2/block"], np.mean(z**2), rtol=1e-5)

    converted.compile(keras.optimizers.SGD(0.1), "mse")
    before = to_numpy(block.layer.hidden.kernel)
    logs = converted.fit(x, y, epochs=1, batch_size=8, verbose=0).history
    assert np.isfinite(logs["loss"][0]) and logs["psp_loss"][0] > 0
    assert not np.allclose(to_numpy(block.layer.hidden.kernel), before)

    path = os.path.join(tmp_path, "block.keras")
    converted.save(path)
    loaded = keras.saving.load_model(path, custom_objects={"Block": Block})
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), converted.predict(x, verbose=0), atol=1e-6
    )
    loaded(x)
    assert len(psp_losses(loaded)) == 2


def test_layer_without_inner_pre_activation_refused():
    wrapper = InnerPreActivationRegularizer(L.TimeDistributed(L.Dense(3)))
    with pytest.warns(UserWarning, match="applied no activation PSP can"):
        wrapper(np.ones((2, 3, 4), "float32"))
    assert not wrapper.losses
    # A non-linearity inside a map is named with the reason.
    mapped = InnerPreActivationRegularizer(
        L.TimeDistributed(L.Dense(3, activation="relu"))
    )
    with pytest.warns(UserWarning, match="(?s)no activation.*inside a map"):
        mapped(np.ones((2, 3, 4), "float32"))


def test_layer_with_its_own_pre_activation_refused():
    with pytest.raises(ValueError, match="PreActivationRegularizer"):
        InnerPreActivationRegularizer(L.Dense(3, activation="relu"))
    with pytest.raises(TypeError, match="`layer`"):
        InnerPreActivationRegularizer("dense")


def test_composite_used_by_another_model_is_not_changed():
    block = Block()
    inputs = keras.Input((3,))
    other = keras.Model(inputs, block(inputs))
    x = np.random.randn(4, 3).astype("float32")
    expected = other.predict(x, verbose=0)
    wrapper = InnerPreActivationRegularizer(block, strength=0.5)
    wrapper(x)
    assert len(wrapper.losses) == 1
    # The other model adds no loss and predicts as before.
    other(x)
    assert not other.losses
    assert block.hidden.activation is keras.activations.relu
    np.testing.assert_allclose(other.predict(x, verbose=0), expected)


def test_monitor_measures_an_unconverted_composite_without_changing_it():
    inputs = keras.Input((3,))
    block = Block(name="block")
    model = keras.Model(inputs, L.Dense(2, name="logits")(block(inputs)))
    x = np.random.randn(8, 3).astype("float32")
    monitor = PreActivationMonitor(x)
    monitor.set_model(model)
    values = monitor.measure()
    z = _hidden_z(block, x)
    np.testing.assert_allclose(values["z2/block"], np.mean(z**2), rtol=1e-5)
    model(x)
    assert not model.losses
    assert block.hidden.activation is keras.activations.relu


@keras.saving.register_keras_serializable(package="tests")
class KeywordBlock(L.Layer):
    """Called with keyword arguments only, and with tensors beside plain
    values in them (as Bart, Whisper and T5 call their blocks)."""

    def build(self, decoder_sequence_shape, encoder_sequence_shape=None):
        self.fc = L.Dense(decoder_sequence_shape[-1], activation="gelu")
        self.fc.build(decoder_sequence_shape)

    def call(
        self,
        decoder_sequence,
        encoder_sequence=None,
        scale=1.0,
        use_causal_mask=False,
        training=None,
    ):
        h = self.fc(decoder_sequence) * scale
        if encoder_sequence is not None:
            h = h + keras.ops.mean(encoder_sequence, axis=1, keepdims=True)
        return h + (1.0 if use_causal_mask else 0.0)


def test_any_call_signature_passes_through():
    block = KeywordBlock(name="block")
    wrapper = InnerPreActivationRegularizer(block, strength=1e-3)
    seq = np.random.default_rng(0).normal(size=(2, 3, 4)).astype("float32")
    enc = np.ones((2, 5, 4), "float32")
    kwargs = dict(scale=2.0, use_causal_mask=True, training=False)
    got = wrapper(decoder_sequence=seq, encoder_sequence=enc, **kwargs)
    want = block(decoder_sequence=seq, encoder_sequence=enc, **kwargs)
    np.testing.assert_array_equal(to_numpy(got), to_numpy(want))
    assert len(wrapper.losses) == 1
    # In a functional model, keyword-only and mixed calls convert too.
    dec_in, enc_in = keras.Input((3, 4)), keras.Input((5, 4))
    out = KeywordBlock(name="kw")(
        decoder_sequence=dec_in, encoder_sequence=enc_in, scale=2.0
    )
    model = keras.Model([dec_in, enc_in], out)
    converted = apply_psp(model, regularize_logits=False)
    np.testing.assert_array_equal(
        to_numpy(converted([seq, enc])), to_numpy(model([seq, enc]))
    )
    assert len(psp_losses(converted)) == 1


class ShapelessBuild(L.Layer):
    """keras.io's gated residual network style: `build(self)`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.fc = L.Dense(4, activation="elu")

    def build(self):
        self.fc.build((None, 4))

    def call(self, x):
        return x + self.fc(x)


def test_layer_whose_build_takes_no_shape():
    wrapper = InnerPreActivationRegularizer(ShapelessBuild())
    x = np.ones((2, 4), "float32")
    np.testing.assert_array_equal(
        to_numpy(wrapper(x)), to_numpy(wrapper.layer(x))
    )
    assert len(wrapper.losses) == 1
    symbolic = InnerPreActivationRegularizer(ShapelessBuild())
    assert tuple(symbolic(keras.Input((4,))).shape) == (None, 4)


def test_variables_keep_their_paths():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, Block(name="block")(inputs))
    converted = apply_psp(model)
    paths = sorted(v.path for v in converted.variables)
    assert [p for p in paths if not p.endswith("strength")] == sorted(
        v.path for v in model.variables
    )


def test_padded_positions_add_nothing():
    """A masked sequence: the penalty of a half-padded batch is that of
    its real positions alone, for both reductions."""
    for reduction in ("sum", "mean"):
        tokens = keras.Input((None,), dtype="int32")
        embedded = L.Embedding(10, 4, mask_zero=True)(tokens)
        inner = Block(name="block")
        model = keras.Model(
            tokens,
            InnerPreActivationRegularizer(inner, 1.0, reduction)(embedded),
        )
        real = np.array([[1, 2, 3], [4, 5, 6]])
        padded = np.concatenate([real, np.zeros((2, 3), "int64")], axis=1)
        model(real)
        unpadded_term = float(to_numpy(model.losses[0]))
        model(padded)
        padded_term = float(to_numpy(model.losses[0]))
        np.testing.assert_allclose(padded_term, unpadded_term, rtol=1e-5)
