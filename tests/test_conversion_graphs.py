"""`apply_psp` and `strip_psp` on the graph shapes of models users bring:
`keras.ops` nodes, nested models (also as the output), shared layers,
several inputs and outputs with structure."""

import os

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


def ops_nodes():
    """Arithmetic on tensors and `keras.ops` calls between layers."""
    inputs = keras.Input((4,))
    h = L.Dense(8, activation="relu", name="fc1")(inputs)
    h = ops.concatenate([h * 2.0, ops.tanh(h) - 1.0], axis=-1)
    h = L.Dense(6, activation="elu", name="fc2")(h + 1.0)
    outputs = L.Dense(3, name="logits")(ops.mean(ops.stack([h, h]), axis=0))
    # fc1, fc2, and the linear logits (the output).
    return keras.Model(inputs, outputs), (4,), 3


def nested_inside():
    inner = keras.Sequential(
        [keras.Input((4,)), L.Dense(5, activation="relu", name="inner_fc")],
        name="inner_seq",
    )
    block_in = keras.Input((5,))
    block = keras.Model(
        block_in, L.ReLU(name="block_relu")(block_in + 0.5), name="block"
    )
    inputs = keras.Input((4,))
    outputs = L.Dense(2, name="head")(block(inner(inputs)))
    return keras.Model(inputs, outputs), (4,), 3


def nested_as_output():
    """The logits are made inside a nested model."""
    head = keras.Sequential(
        [keras.Input((6,)), L.Dense(3, name="nested_logits")], name="head"
    )
    inputs = keras.Input((4,))
    hidden = L.Dense(6, activation="tanh", name="fc")(inputs)
    return keras.Model(inputs, head(hidden)), (4,), 2


def shared_layer():
    """One Dense called on two inputs: two pre-activations."""
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    shared = L.Dense(5, activation="relu", name="shared")
    merged = L.Concatenate()([shared(a), shared(b)])
    return keras.Model([a, b], L.Dense(2, name="out")(merged)), [(4,), (4,)], 3


def dict_inputs_and_outputs():
    """Dict input and nested output structure, in a non-sorted order."""
    image = keras.Input((6, 6, 1), name="image")
    meta = keras.Input((3,), name="meta")
    x = L.Conv2D(2, 3, activation="relu", name="conv")(image)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Concatenate()(
        [x, L.Dense(2, activation="swish", name="meta_fc")(meta)]
    )
    outputs = {
        "zeta": L.Dense(2, activation="softmax", name="zeta_head")(x),
        "alpha": [L.Dense(1, name="alpha_head")(x), x],
    }
    model = keras.Model({"meta": meta, "image": image}, outputs)
    # conv, meta_fc, both heads (the softmax one and the linear logits).
    return model, {"meta": (3,), "image": (6, 6, 1)}, 4


def activation_ops():
    """Activations applied with `keras.ops` and `keras.activations` calls,
    not layers: z is each op's input, unless that input is already an
    activation (the second op of a composite activation)."""
    inputs = keras.Input((4,))
    h = ops.relu(L.Dense(8, name="fc1")(inputs))
    h = keras.activations.gelu(L.Dense(8, name="fc2")(h))
    h = ops.leaky_relu(L.Dense(6, name="fc3")(h) + 1.0, 0.3)
    h = ops.tanh(ops.sigmoid(h))  # a chain on an activation: no z
    h = L.Dense(6, name="fc4")(h)
    h = h * ops.tanh(ops.softplus(h))  # mish by hand: one z, softplus's
    outputs = ops.softmax(L.Dense(3, name="logits")(h))
    # relu, gelu, leaky_relu, softplus and the output's softmax.
    return keras.Model(inputs, outputs), (4,), 5


GRAPHS = {
    "activation_ops": activation_ops,
    "ops_nodes": ops_nodes,
    "nested_inside": nested_inside,
    "nested_as_output": nested_as_output,
    "shared_layer": shared_layer,
    "dict_inputs_and_outputs": dict_inputs_and_outputs,
}


def _term_names(model):
    """The names of the layers and ops where `apply_psp` put PSP terms."""
    return [term.layer.name for term in psp_terms(model)]


def _data(shapes, n=4):
    if isinstance(shapes, tuple):
        return np.random.randn(n, *shapes).astype("float32")
    return keras.tree.map_shape_structure(
        lambda shape: np.random.randn(n, *shape).astype("float32"), shapes
    )


def _assert_same(actual, expected, atol=1e-5):
    keras.tree.assert_same_structure(actual, expected)
    flat = zip(
        keras.tree.flatten(actual), keras.tree.flatten(expected), strict=True
    )
    for a, e in flat:
        np.testing.assert_allclose(to_numpy(a), to_numpy(e), atol=atol)


@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_converts_with_equal_predictions_and_one_term_per_pre_activation(
    graph, tmp_path
):
    model, shapes, terms = GRAPHS[graph]()
    x = _data(shapes)
    expected = model(x)
    converted = keras_psp.apply_psp(model, 1e-2)
    outputs = converted(x)
    _assert_same(outputs, expected)
    assert len(psp_losses(converted)) == terms
    # The structure of inputs and outputs is kept: dict keys, nesting.
    keras.tree.assert_same_structure(converted.output, model.output)
    keras.tree.assert_same_structure(converted.input, model.input)

    path = os.path.join(tmp_path, "converted.keras")
    converted.save(path)
    loaded = keras.saving.load_model(path)
    _assert_same(loaded(x), expected)

    converted.compile("sgd", "mse")
    y = keras.tree.map_structure(np.zeros_like, to_numpy_tree(expected))
    logs = converted.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["psp_loss"] > 0


def to_numpy_tree(structure):
    return keras.tree.map_structure(to_numpy, structure)


@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_strip_psp_gives_back_the_plain_model(graph):
    model, shapes, _ = GRAPHS[graph]()
    x = _data(shapes)
    expected = model(x)
    converted = keras_psp.apply_psp(model, 1e-2)
    stripped = keras_psp.strip_psp(converted)
    _assert_same(stripped(x), expected)
    assert not keras_psp.models.psp_model.psp_layers(stripped)
    assert type(stripped) is type(model)
    assert _layer_names(stripped) == _layer_names(model)


def _layer_names(model):
    return [
        layer.name
        for layer in model.layers
        if not isinstance(layer, L.InputLayer)
    ]


def test_original_model_is_unchanged():
    model, shapes, _ = shared_layer()
    x = _data(shapes)
    expected = to_numpy(model(x))
    converted = keras_psp.apply_psp(model, 1.0)
    for variable in converted.trainable_variables:
        variable.assign(variable + 1.0)
    np.testing.assert_array_equal(to_numpy(model(x)), expected)
    assert model.get_layer("shared").activation is keras.activations.relu


def test_regularize_logits_reaches_into_a_nested_output_model():
    model, shapes, _ = nested_as_output()
    x = _data(shapes)
    converted = keras_psp.apply_psp(model, 1e-2)
    assert set(_term_names(converted)) == {"fc", "nested_logits"}
    nested = converted.get_layer("head").get_layer("nested_logits")
    assert nested in [term.layer for term in psp_terms(converted)]
    converted(x)
    assert len(converted.losses) == 2
    without = keras_psp.apply_psp(model, 1e-2, regularize_logits=False)
    assert _term_names(without) == ["fc"]
    without(x)
    assert len(without.losses) == 1


def test_activation_ops_penalize_the_op_input():
    model, shapes, _ = activation_ops()
    x = _data(shapes)
    found, _ = keras_psp.find_pre_activations(model)
    names = [entry.layer.name for entry in found]
    assert names == ["relu", "gelu", "leaky_relu", "softplus", "softmax"]
    converted = keras_psp.apply_psp(model, 0.5)
    terms = psp_terms(converted)
    assert [term.layer.name for term in terms] == names
    assert {term.route for term in terms} == {"layer input"}
    converted(x)
    # The terms are added in the order of the forward pass.
    losses = [float(to_numpy(loss)) for loss in psp_losses(converted)]

    def z(tensor):
        return to_numpy(keras.Model(model.input, tensor)(x))

    expected = [
        z(model.get_layer("fc1").output),
        z(model.get_layer("fc2").output),
        z(model.get_layer("fc3").output) + 1.0,
        z(model.get_layer("fc4").output),
        z(model.get_layer("logits").output),
    ]
    assert len(losses) == len(expected)
    for loss, value in zip(losses, expected, strict=True):
        penalty = 0.5 * 0.5 * (value.astype("float64") ** 2).sum() / len(x)
        np.testing.assert_allclose(loss, penalty, rtol=1e-5)
    # The original's op nodes are left as they were.
    assert not any("call" in vars(op) for op in model.operations)
    without = keras_psp.apply_psp(model, 0.5, regularize_logits=False)
    assert _term_names(without) == ["relu", "gelu", "leaky_relu", "softplus"]
    # Selected by name, and a typo's hint names the op.
    only = keras_psp.apply_psp(model, 0.5, include="leaky_relu")
    assert _term_names(only) == ["leaky_relu"]
    only(x)
    assert len(only.losses) == 1
    with pytest.raises(
        ValueError, match="Closest layer names: \\['leaky_relu'"
    ):
        keras_psp.apply_psp(model, 0.5, exclude="leaky_rleu")
    # The op node is put back: the stripped graph has the original's ops.
    stripped = keras_psp.strip_psp(converted)
    assert [type(op).__name__ for op in stripped.operations] == [
        type(op).__name__ for op in model.operations
    ]
    stripped(x)
    assert not stripped.losses


def _swish_by_hand(x):
    return x * ops.sigmoid(x)


def unregistered_functions():
    """Plain Python functions Keras cannot deserialize by name (none is
    registered): a custom activation, a lambda activation, and `Lambda`
    layers of a lambda and of a closure."""
    offset = 0.25

    def shifted(x):
        return x + offset

    inputs = keras.Input((4,))
    h = L.Dense(6, activation=_swish_by_hand, name="custom_fc")(inputs)
    h = L.Dense(6, activation=lambda t: ops.tanh(t) * 2.0, name="lambda_fc")(h)
    h = L.Lambda(lambda t: t * 0.5, name="halve")(h)
    h = L.Lambda(shifted, name="shift")(h)
    return keras.Model(inputs, L.Dense(2, name="logits")(h))


def test_unregistered_functions_are_kept_not_deserialized():
    # Keras' own `clone_model` fails on this model (it rebuilds each layer
    # from its config); a user's in-memory functions need no registration.
    model = unregistered_functions()
    x = _data((4,))
    expected = to_numpy(model(x))
    converted = keras_psp.apply_psp(model, 1e-2)
    np.testing.assert_allclose(to_numpy(converted(x)), expected, atol=1e-5)
    assert set(_term_names(converted)) == {"custom_fc", "lambda_fc", "logits"}
    assert len(converted.losses) == 3
    assert (
        converted.get_layer("shift").function
        is model.get_layer("shift").function
    )
    converted.compile("sgd", "mse")
    logs = converted.train_on_batch(x, np.zeros((4, 2)), return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["psp_loss"] > 0
    # Training the copy leaves the original's weights as they were.
    np.testing.assert_allclose(to_numpy(model(x)), expected, atol=1e-6)
    assert model.get_layer("custom_fc").activation is _swish_by_hand
    # The copy holds the user's very function, under its PSP term.
    keras_psp.disable_psp(converted)
    assert converted.get_layer("custom_fc").activation is _swish_by_hand

    dense = model.get_layer("custom_fc")
    psp_dense = keras_psp.PSPDense.from_layer(dense, strength=1e-2)
    assert psp_dense.psp_activation is _swish_by_hand
    np.testing.assert_allclose(
        to_numpy(psp_dense(x)), to_numpy(dense(x)), atol=1e-6
    )
    psp_model = keras.Sequential([keras.Input((4,)), psp_dense])
    plain = keras_psp.strip_psp(psp_model).layers[0]
    assert type(plain) is L.Dense and plain.activation is _swish_by_hand


def test_copies_of_a_psp_model_with_unregistered_functions_are_free_of_it():
    model = unregistered_functions()
    x = _data((4,))
    expected = to_numpy(model(x))
    converted = keras_psp.apply_psp(model, 1e-2)
    (state,) = psp_layers(converted)
    converted(x)
    before = len(state.losses)

    stripped = keras_psp.strip_psp(converted)
    np.testing.assert_allclose(to_numpy(stripped(x)), expected, atol=1e-5)
    assert not psp_layers(stripped)
    assert not stripped.losses
    again = keras_psp.apply_psp(converted, 1e-2)
    again(x)
    assert len(again.losses) == 3
    # Calling the copies adds no term to the model they were made from.
    assert len(state.losses) == before
    assert stripped.get_layer("custom_fc").activation is _swish_by_hand


class _Scale(L.Layer):
    """A user's layer with Keras' automatic config, whose `**kw` is not
    spelled `**kwargs`: Keras leaves its name out of the config."""

    def __init__(self, factor, **kw):
        super().__init__(**kw)
        self.factor = factor

    def call(self, x):
        return x * self.factor


def test_layers_keep_their_names_when_their_config_omits_them():
    inputs = keras.Input((4,))
    h = _Scale(2.0, name="scale")(L.Dense(5, activation="relu")(inputs))
    model = keras.Model(inputs, L.Dense(2, name="logits")(h))
    x = _data((4,))
    converted = keras_psp.apply_psp(model, 1e-2)
    np.testing.assert_allclose(
        to_numpy(converted(x)), to_numpy(model(x)), atol=1e-5
    )
    assert converted.get_layer("scale").factor == 2.0
    stripped = keras_psp.strip_psp(converted)
    assert _layer_names(stripped) == _layer_names(model)
