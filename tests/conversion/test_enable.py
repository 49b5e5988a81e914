"""`enable_psp` / `disable_psp`: PSP switched on in place, class kept."""

import json
import zipfile

import keras
import numpy as np
import pytest
from keras import ops

import keras_psp
from keras_psp import keras_internals
from keras_psp.conversion import code_taps
from keras_psp.conversion.enable import attachments as psp_terms
from keras_psp.conversion.psp_state import PSPState
from keras_psp.models.psp_model import model_strength


def _mlp():
    return keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(7, activation="relu"),
            keras.layers.Dense(3),
        ]
    )


def _numpy(x):
    return ops.convert_to_numpy(x)


def _total(model):
    return float(sum(_numpy(loss) for loss in model.losses))


def test_returns_the_model_itself_with_its_class_and_predictions():
    model = _mlp()
    x = np.random.rand(4, 5).astype("float32")
    before = _numpy(model(x))
    assert keras_psp.enable_psp(model, 1e-2) is model
    assert type(model) is keras.Sequential
    np.testing.assert_array_equal(_numpy(model(x)), before)


def test_terms_equal_the_paper_penalty_computed_by_hand():
    model = _mlp()
    x = np.random.rand(4, 5).astype("float32")
    keras_psp.enable_psp(model, 0.1)
    model(x)
    w1, b1 = (_numpy(w) for w in model.layers[0].weights[:2])
    w2, b2 = (_numpy(w) for w in model.layers[1].weights[:2])
    z1 = x @ w1 + b1
    z2 = np.maximum(z1, 0) @ w2 + b2
    expected = sum(0.1 * 0.5 * (z**2).sum() / 4 for z in (z1, z2))
    assert len(model.losses) == 2
    np.testing.assert_allclose(_total(model), expected, rtol=1e-5)


def test_divide_by_num_layers_gives_each_term_its_share():
    model = _mlp()
    x = np.random.rand(4, 5).astype("float32")
    keras_psp.enable_psp(model, 0.1)
    model(x)
    full = _total(model)
    keras_psp.disable_psp(model)
    keras_psp.enable_psp(model, 0.1, divide_by_num_layers=True)
    model(x)
    np.testing.assert_allclose(_total(model), full / 2, rtol=1e-5)
    assert model_strength(model) == pytest.approx(0.1)


def test_fit_logs_psp_loss_and_disable_undoes_everything():
    model = _mlp()
    weights = len(model.weights)
    activations = [layer.activation for layer in model.layers]
    keras_psp.enable_psp(model, 1e-2)
    model.compile("sgd", "mse")
    x = np.random.rand(8, 5).astype("float32")
    history = model.fit(x, np.zeros((8, 3)), epochs=1, verbose=0)
    assert history.history["psp_loss"][0] > 0
    keras_psp.disable_psp(model)
    assert [layer.activation for layer in model.layers] == activations
    assert len(model.weights) == weights
    assert not any(
        isinstance(layer, PSPState)
        for layer in keras_internals.sublayers(model)
    )
    assert "compute_loss" not in vars(model)
    model(x)
    assert not model.losses


class CountedModel(keras.Model):
    """A functional model subclass with its own train_step, which records
    that it ran (once per trace where `fit` compiles it)."""

    ran = []

    def train_step(self, *args, **kwargs):
        CountedModel.ran.append(self.name)
        return super().train_step(*args, **kwargs)


def test_a_subclass_keeps_its_class_and_its_own_train_step():
    inputs = keras.Input((5,))
    outputs = keras.layers.Dense(3, activation="tanh")(inputs)
    model = CountedModel(inputs, outputs)
    keras_psp.enable_psp(model, 1e-2)
    assert type(model) is CountedModel
    model.compile("sgd", "mse")
    x = np.random.rand(8, 5).astype("float32")
    history = model.fit(x, np.zeros((8, 3)), batch_size=4, verbose=0)
    assert model.name in CountedModel.ran
    assert history.history["psp_loss"][0] > 0


@keras_psp.register_pre_activation_layer
class _HoldsActivationLayer(keras.layers.Layer):
    """Affine, with its activation held as an `Activation` layer (the
    keras.io traffic example's GraphConv)."""

    def __init__(self, units=4, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.activation = keras.layers.Activation("relu")

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units))

    def call(self, x):
        return self.activation(ops.matmul(x, self.kernel))


def test_a_layer_holding_an_activation_layer_trains_and_gets_it_back():
    inputs = keras.Input((5,))
    layer = _HoldsActivationLayer()
    model = keras.Model(inputs, keras.layers.Dense(2)(layer(inputs)))
    held = layer.activation
    keras_psp.enable_psp(model, 1e-2)
    routes = [term.route for term in psp_terms(model)]
    assert routes == ["activation attribute", "activation attribute"]
    model.compile("sgd", "mse")
    x = np.random.rand(4, 5).astype("float32")
    model.fit(x, np.zeros((4, 2)), verbose=0)
    keras_psp.disable_psp(model)
    assert layer.activation is held
    assert held.activation is keras.activations.relu


class _Block(keras.layers.Layer):
    """Attention, then a Dense with softmax, then gelu called in code."""

    def build(self, input_shape):
        self.attention = keras.layers.MultiHeadAttention(2, 4)
        self.attention.build(input_shape, input_shape)
        self.gate = keras.layers.Dense(input_shape[-1], activation="softmax")
        self.gate.build(input_shape)

    def call(self, x):
        x = x + self.attention(x, x)
        return self.gate(x) * keras.activations.gelu(x)


def _block_model():
    inputs = keras.Input((3, 6))
    return keras.Model(inputs, _Block(name="block")(inputs))


def test_softmax_of_a_layer_counts_and_that_of_attention_does_not():
    model = _block_model()
    keras_psp.enable_psp(model, 1e-2, regularize_logits=False)
    routes = sorted(term.route for term in psp_terms(model))
    # The gate's softmax (its own activation) and the gelu; not the
    # attention scores' softmax.
    assert routes == ["activation attribute", "code"]
    x = np.random.rand(2, 3, 6).astype("float32")
    model(x)
    assert len(model.losses) == 2


def test_structural_terms_install_no_tap_and_code_taps_install_once(
    monkeypatch,
):
    calls = []
    original = code_taps.acquire
    monkeypatch.setattr(
        code_taps, "acquire", lambda: (calls.append(1), original())
    )
    model = _mlp()
    keras_psp.enable_psp(model, 1e-2)
    x = np.random.rand(2, 5).astype("float32")
    for _ in range(3):
        model(x)
    assert calls == []  # a Dense's z needs no tap, analysis or call
    keras_psp.disable_psp(model)

    users = code_taps._installed["users"]
    model = _block_model()
    keras_psp.enable_psp(model, 1e-2)
    installs = len(calls)  # the analysis's, and the block's
    assert code_taps._installed["users"] == users + 1
    x = np.random.rand(2, 3, 6).astype("float32")
    for _ in range(3):
        model(x)
    assert len(calls) == installs
    keras_psp.disable_psp(model)
    assert code_taps._installed["users"] == users


def test_masked_positions_add_nothing():
    inputs = keras.Input((4,), dtype="int32")
    x = keras.layers.Embedding(10, 3, mask_zero=True)(inputs)
    x = keras.layers.Dense(5, activation="relu", name="hidden")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    keras_psp.enable_psp(model, 0.1, regularize_logits=False)
    tokens = np.array([[1, 2, 0, 0], [3, 0, 0, 0]])
    model(tokens)
    table = _numpy(model.layers[1].embeddings)
    kernel, bias = (_numpy(w) for w in model.get_layer("hidden").weights[:2])
    z = table[tokens] @ kernel + bias
    z = z * (tokens > 0)[..., None]
    np.testing.assert_allclose(
        _total(model), 0.1 * 0.5 * (z**2).sum() / 2, rtol=1e-5
    )


def test_a_saved_model_is_the_plain_model(tmp_path):
    inputs = keras.Input((3, 6))
    x = _Block(name="block")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="elu")(x))
    keras_psp.enable_psp(model, 1e-2)
    path = tmp_path / "model.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        config = archive.read("config.json").decode()
    assert "keras_psp" not in config
    assert '"activation": "elu"' in json.dumps(json.loads(config))
    x = np.random.rand(2, 3, 6).astype("float32")
    loaded = keras.saving.load_model(path, custom_objects={"_Block": _Block})
    np.testing.assert_allclose(_numpy(loaded(x)), _numpy(model(x)), rtol=1e-6)
    loaded(x)
    assert not loaded.losses


def test_bad_calls_raise_clear_errors():
    model = _mlp()
    with pytest.raises(ValueError, match="has no PSP enabled"):
        keras_psp.disable_psp(model)
    keras_psp.enable_psp(model)
    with pytest.raises(ValueError, match="has PSP enabled already"):
        keras_psp.enable_psp(model)
    with pytest.raises(ValueError, match="Argument `strength`"):
        keras_psp.enable_psp(_mlp(), strength=-1.0)
    with pytest.raises(ValueError, match="Closest layer names"):
        keras_psp.enable_psp(_mlp(), include="dens")


def test_model_checkpoint_and_backup_and_restore_work(tmp_path):
    x = np.random.rand(8, 5).astype("float32")
    y = np.random.rand(8, 3).astype("float32")

    def enabled():
        keras.utils.set_random_seed(3)
        model = keras_psp.enable_psp(_mlp(), 1e-2)
        model.compile("sgd", "mse")
        return model

    model = enabled()
    checkpoint = tmp_path / "best.keras"
    backup = tmp_path / "backup"
    model.fit(
        x,
        y,
        epochs=2,
        verbose=0,
        callbacks=[
            keras.callbacks.ModelCheckpoint(checkpoint),
            keras.callbacks.BackupAndRestore(backup, delete_checkpoint=False),
        ],
    )
    # The checkpoint holds the plain model, with the trained weights.
    loaded = keras.saving.load_model(checkpoint)
    np.testing.assert_allclose(_numpy(loaded(x)), _numpy(model(x)), rtol=1e-6)
    loaded(x)
    assert not loaded.losses
    # A new run with PSP enabled resumes from the backup: its weights, and
    # only the epochs left.
    again = enabled()
    history = again.fit(
        x,
        y,
        epochs=3,
        verbose=0,
        callbacks=[keras.callbacks.BackupAndRestore(backup)],
    )
    assert len(history.history["psp_loss"]) == 1


def test_taps_leave_a_function_someone_else_replaced_as_it_is(monkeypatch):
    from keras.src import backend

    monkeypatch.setattr(code_taps, "_installed", {"users": 0, "shims": []})
    before, relu = vars(backend.nn)["gelu"], vars(backend.nn)["relu"]
    code_taps.acquire()
    assert backend.nn.gelu is not before  # our shim

    def theirs(*args, **kwargs):
        return before(*args, **kwargs)

    backend.nn.gelu = theirs
    try:
        code_taps.release()
        assert backend.nn.gelu is theirs
        assert vars(backend.nn)["relu"] is relu  # the others restored
    finally:
        backend.nn.gelu = before
