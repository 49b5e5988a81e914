"""Where z is in a model: which layers have a pre-activation, and of what kind.

The wrapper's validation, the converter, the monitor and `strip_psp` all
ask this module, so they agree on every layer. A layer has a pre-activation
z in one of two ways:

- `"affine"`: its class applies its `activation` attribute to the output of
  its affine part, as the last step of `call` (Dense, Conv*, EinsumDense,
  ...). z is that output; running the layer with a linear activation gives
  it. Only classes known to do so count: the Keras classes in
  `AFFINE_LAYERS`, and those users declare with
  `register_pre_activation_layer`. A layer of another class that merely has
  an `activation` attribute (a recurrent layer, a transformer block that
  keeps the activation of an inner feed-forward layer) is never treated as
  one: its output is not `activation(z)`.
- `"activation"`: the whole job of its class is an activation (`ReLU`,
  `Activation`, ...): z is its input. An activation applied with a
  `keras.ops` or `keras.activations` call in a functional graph
  (`keras.ops.relu(h)`) is a node of one of the classes in
  `ACTIVATION_OPS`: z is its input too, unless that input is already an
  activation (the second op of a composite activation, e.g. mish's tanh).

A layer of any other class that holds layers of an `"affine"` class with
a non-linear activation (a transformer block's feed-forward `Dense`) is
`"composite"`: its inner pre-activations
are regularized where they are, and its output is left as it is.
"""

import collections
import contextlib
import difflib
import warnings

import keras

from keras_psp import keras_internals
from keras_psp.layers.psp_layer import PSPLayerMixin

AFFINE = "affine"
ACTIVATION = "activation"
PSP = "psp"
COMPOSITE = "composite"
KINDS = (AFFINE, ACTIVATION)

AFFINE_LAYERS = (
    keras.layers.Dense,
    keras.layers.EinsumDense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
)
ACTIVATION_LAYERS = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.PReLU,
    keras.layers.Softmax,
)


ACTIVATION_OPS = keras_internals.activation_operation_classes()

# Exact classes, not subclasses: a subclass may override `call` and do
# something after the activation.
_registry = {cls: AFFINE for cls in AFFINE_LAYERS}
_registry.update({cls: ACTIVATION for cls in ACTIVATION_LAYERS})


def register_pre_activation_layer(layer_class=None, *, kind=AFFINE):
    """Declares that a layer class has a pre-activation PSP can regularize.

    The PSP tools (`apply_psp`, `PreActivationRegularizer`, `PSPActivation`,
    the monitor) act only on layer classes known to have one. Declare your
    own layer class here when it keeps that contract:

    - `kind="affine"`: the layer has an `activation` attribute and its
      `call` returns `activation(z)`, with nothing after it; with
      `activation` set to linear it returns z. Its weights must not depend
      on the activation.
    - `kind="activation"`: the layer only applies an activation to its
      input, which is then z.

    Works as a function or as a class decorator.

    Args:
        layer_class: a subclass of `keras.layers.Layer`.
        kind: `"affine"` or `"activation"`, as above.

    Returns:
        `layer_class`, so that it can decorate the class.

    Example:

    >>> import keras
    >>> @register_pre_activation_layer
    ... class ScaledDense(keras.layers.Dense):
    ...     pass
    >>> layer_kind(ScaledDense(3, activation="relu"))
    'affine'
    """
    if layer_class is None:
        return lambda cls: register_pre_activation_layer(cls, kind=kind)
    if not (
        isinstance(layer_class, type)
        and issubclass(layer_class, keras.layers.Layer)
    ):
        raise TypeError(
            "Argument `layer_class` must be a subclass of "
            f"`keras.layers.Layer`. Received: layer_class={layer_class!r}."
        )
    if issubclass(layer_class, PSPLayerMixin):
        raise ValueError(
            f"Argument `layer_class` is a PSP layer ({layer_class.__name__}):"
            " its pre-activation is regularized already."
        )
    if kind not in KINDS:
        raise ValueError(
            f"Argument `kind` must be one of {KINDS}. Received: kind={kind!r}."
        )
    _registry[layer_class] = kind
    return layer_class


def is_linear(activation):
    """Whether `activation` (a function, a name or None) is the identity."""
    if activation is None:
        return True
    return keras.activations.get(activation) is keras.activations.linear


def layer_kind(layer):
    """Returns `"psp"`, `"affine"`, `"activation"` or None for a layer.

    `"psp"` is a layer of keras-psp (its z is regularized already);
    `"affine"` and `"activation"` are the registered kinds (see the module
    docstring); None is any other layer, including one of an unregistered
    class that has an `activation` attribute.
    """
    if isinstance(layer, PSPLayerMixin):
        return PSP
    if type(layer) in ACTIVATION_OPS:
        return ACTIVATION
    return _registry.get(type(layer))


def inner_pre_activation_layers(layer):
    """The layers inside a built composite `layer` whose pre-activation
    PSP can regularize: those of an `"affine"` class with a non-linear
    activation (e.g. a transformer block's feed-forward `Dense`)."""
    if _contains_recurrence(layer) or _maps_inner_layer(layer):
        return []  # a loss added inside a loop or a map would leak out
    return [
        sublayer
        for sublayer in keras_internals.sublayers(layer)
        if layer_kind(sublayer) == AFFINE and not is_linear(sublayer.activation)
    ]


def _is_recurrent(layer):
    return isinstance(layer, keras.layers.RNN) or hasattr(
        layer, "recurrent_activation"
    )


def _contains_recurrence(layer):
    """Whether `layer` is recurrent or holds a recurrent layer (e.g. a
    `Bidirectional`)."""
    return _is_recurrent(layer) or any(
        _is_recurrent(sublayer) for sublayer in keras_internals.sublayers(layer)
    )


def _maps_inner_layer(layer):
    """Whether `layer` calls its inner layer inside a vectorized map."""
    return isinstance(layer, keras.layers.TimeDistributed)


def skip_reason(layer):
    """Why a layer that looks as if it had a pre-activation has none we can
    regularize, or None when it does not look so (or is supported)."""
    if layer_kind(layer) is not None:
        return None
    if _contains_recurrence(layer):
        return (
            "recurrent layer: it applies its activation inside the "
            "recurrence, so it has no single pre-activation"
        )
    if _maps_inner_layer(layer):
        return (
            "it calls its inner layer inside a vectorized map, out of reach "
            "of `add_loss`"
        )
    activation = getattr(layer, "activation", None)
    if callable(activation) and not is_linear(activation):
        return (
            f"its class {type(layer).__name__} is not known to apply "
            "`activation` to its affine output (its output may not be "
            "activation(z)); if it does, declare it with "
            "`keras_psp.register_pre_activation_layer`"
        )
    return None


class _Tap:
    """Stands in for an inner layer's activation: hands z to `take`, then
    applies the original activation, so the output is unchanged."""

    def __init__(self, take, activation):
        self.take = take
        self.activation = activation

    def __call__(self, z):
        self.take(z)
        return self.activation(z)


@contextlib.contextmanager
def tap_inner_pre_activations(layers, take):
    """While active, every z of the `"affine"` `layers` (those inside a
    composite layer, see `inner_pre_activation_layers`) is handed to
    `take(z)` when the layer runs. The activations are swapped only for
    that time, so the layers are never changed under another model."""
    originals = [layer.activation for layer in layers]
    for layer, activation in zip(layers, originals, strict=True):
        layer.activation = _Tap(take, activation)
    try:
        yield
    finally:
        for layer, activation in zip(layers, originals, strict=True):
            layer.activation = activation


def inner_pre_activations(layer, inner_layers, *args, **kwargs):
    """Calls a composite `layer` and returns the list of z's of its
    `inner_layers` (see `inner_pre_activation_layers`) in that call."""
    found = []
    with tap_inner_pre_activations(inner_layers, found.append):
        layer(*args, **kwargs)
    return found


def affine_output(layer, *args, **kwargs):
    """Calls an `"affine"` layer with a linear activation: returns z.

    The layer's activation is swapped out only for this call and restored
    after it, so a layer that other models use is never changed under them.
    """
    activation = layer.activation
    layer.activation = keras.activations.linear
    try:
        return layer(*args, **kwargs)
    finally:
        layer.activation = activation


def check_affine_layer(layer, argument="layer"):
    """Raises a clear error unless `layer` is an `"affine"` layer."""
    if not isinstance(layer, keras.layers.Layer):
        raise TypeError(
            f"Argument `{argument}` must be a `keras.layers.Layer` instance. "
            f"Received: {argument}={layer!r} of type {type(layer).__name__}."
        )
    kind = layer_kind(layer)
    if kind == PSP:
        raise ValueError(
            f"Argument `{argument}` is already a PSP layer "
            f"({type(layer).__name__} '{layer.name}'); wrapping it again "
            "would count its pre-activation twice. Change its `strength` "
            "variable instead."
        )
    if kind == ACTIVATION:
        raise ValueError(
            f"Argument `{argument}` is an activation layer "
            f"({type(layer).__name__} '{layer.name}'): its pre-activation is "
            "its input. Use `keras_psp.PSPActivation(layer)` instead."
        )
    if kind != AFFINE:
        reason = skip_reason(layer) or (
            f"{type(layer).__name__} has no `activation` applied to an "
            "affine output"
        )
        supported = ", ".join(cls.__name__ for cls in AFFINE_LAYERS)
        raise ValueError(
            f"Argument `{argument}` cannot be wrapped: '{layer.name}' is a "
            f"{type(layer).__name__}, and {reason}. Supported: {supported}, "
            "and classes declared with "
            "`keras_psp.register_pre_activation_layer`. For an activation "
            "after batch norm or a residual add, use "
            "`keras_psp.PSPActivation`."
        )


def check_activation_layer(layer, argument="activation"):
    """Raises a clear error unless `layer` is an `"activation"` layer."""
    if layer_kind(layer) == ACTIVATION:
        return
    if isinstance(layer, PSPLayerMixin):
        raise ValueError(
            f"Argument `{argument}` is already a PSP layer "
            f"({type(layer).__name__} '{layer.name}'); regularizing it again "
            "would count its input twice."
        )
    supported = ", ".join(cls.__name__ for cls in ACTIVATION_LAYERS)
    raise TypeError(
        f"Argument `{argument}` must be an activation: a name or function "
        f"from `keras.activations`, or an activation layer ({supported}, or "
        "a class declared with `keras_psp.register_pre_activation_layer("
        f"cls, kind='activation')`). Received the layer '{layer.name}' of "
        f"type {type(layer).__name__}. For a layer with its own activation, "
        "use `keras_psp.PreActivationRegularizer`."
    )


PreActivation = collections.namedtuple(
    "PreActivation", ["layer", "kind", "path"]
)
PreActivation.__doc__ = """A layer of a model that has a pre-activation.

Attributes:
    layer: the layer, or the node of a `keras.ops` activation call.
    kind: `"affine"` (z is its affine output), `"activation"` (z is its
        input), `"composite"` (a layer of another class holding layers
        with a pre-activation, e.g. a transformer block: the z's are those
        of the layers inside) or `"psp"` (a PSP layer: z is regularized
        already).
    path: the names of the nested models that hold it, outermost first
        (empty for a layer of the model itself).
"""

SkippedLayer = collections.namedtuple(
    "SkippedLayer", ["layer", "reason", "path"]
)
SkippedLayer.__doc__ = """A layer PSP cannot regularize, and why."""


def graph_operations(model, path=()):
    """`(operation, path)` for the operations of a model's graph in graph
    order, its layers and its `keras.ops` nodes (`keras.ops.relu(h)`),
    nested Sequential and functional models entered (but not the layers
    inside a layer)."""
    found = []
    for operation in keras_internals.operations(model):
        if isinstance(
            operation, keras.Model
        ) and keras_internals.is_graph_model(operation):
            found.extend(graph_operations(operation, path + (operation.name,)))
        else:
            found.append((operation, path))
    return found


def _is_activation_output(tensor):
    """Whether a symbolic tensor is an activation's output (so not a z):
    that of an activation layer or op, of a layer with a non-linear
    activation, or of a PSP layer (whose z is regularized already)."""
    source = keras_internals.producer(tensor)
    if isinstance(source, keras.Model) and keras_internals.is_graph_model(
        source
    ):
        inner = source.outputs[keras_internals.output_index(tensor)]
        return _is_activation_output(inner)
    kind = layer_kind(source)
    if kind in (PSP, ACTIVATION):
        return True
    return kind == AFFINE and not is_linear(source.activation)


def _acts_on_a_pre_activation(operation):
    """Whether an activation op node's one input is a z: not when it is
    another activation's output (the second op of a composite activation)
    or when the node takes more than one tensor."""
    nodes = getattr(operation, "_inbound_nodes", None)
    if not nodes or len(nodes[0].input_tensors) != 1:
        return False
    return not _is_activation_output(nodes[0].input_tensors[0])


def run_graph(model, inputs, call_function):
    """Runs a model's layer graph on symbolic `inputs`, layer by layer.

    Like `keras.models.clone_model(model, clone_function=lambda l: l,
    call_function=...)` (the model's own layers are called, so weights are
    shared), but nested Sequential and functional models are entered, so
    that `call_function(layer, *args, **kwargs)` sees every layer of the
    graph and whatever it builds is connected to `inputs`.

    Returns:
        The output tensors, in the structure of `model.output`.
    """

    def call(layer, *args, **kwargs):
        if keras_internals.is_graph_model(layer):
            return run_graph(layer, args[0], call_function)
        return call_function(layer, *args, **kwargs)

    if isinstance(model, keras.Sequential):
        x = inputs
        for layer in model.layers:
            x = call(layer, x)
        return x
    clone = keras.models.clone_model(
        model,
        input_tensors=inputs,
        clone_function=lambda layer: layer,
        call_function=call,
    )
    return clone.output


def output_layers(model):
    """The layers whose outputs are `model`'s outputs, entering nested
    models that produce an output."""
    found = []
    for tensor in model.outputs:
        layer = keras_internals.producer(tensor)
        if isinstance(layer, keras.Model) and keras_internals.is_graph_model(
            layer
        ):
            found.extend(output_layers(layer))
        elif layer is not None:
            found.append(layer)
    return found


def _fed_by_linear_psp_layer(layer):
    """Whether an activation layer's input is a linear PSP layer's output,
    which is regularized already (e.g. PSP logits before a softmax)."""
    source = keras_internals.producer(keras_internals.first_call_input(layer))
    if not isinstance(source, PSPLayerMixin):
        return False
    activation = getattr(
        source, "psp_activation", getattr(source, "activation", None)
    )
    return is_linear(activation)


def find_pre_activations(model, regularize_logits=True):
    """Finds every pre-activation of a Sequential or functional model.

    Nested Sequential and functional models are entered; the layers inside
    other layers are not.

    Args:
        model: a built Sequential or functional `keras.Model`.
        regularize_logits: whether the output layers' pre-activations count
            (the logits: a linear output layer is then a pre-activation too).

    Returns:
        `(found, skipped)`: a list of `PreActivation` in graph order (the
        layers `apply_psp` regularizes, and the PSP layers already there),
        and a list of `SkippedLayer` for the layers that look as if they
        had a pre-activation but are not known to (recurrent layers,
        composite layers of unregistered classes).
    """
    outputs = {id(layer) for layer in output_layers(model)}
    found, skipped = [], []
    for layer, path in graph_operations(model):
        kind = layer_kind(layer)
        is_output = id(layer) in outputs
        if not isinstance(layer, keras.layers.Layer):  # a `keras.ops` node
            if kind != ACTIVATION or (is_output and not regularize_logits):
                continue
            if _acts_on_a_pre_activation(layer):
                found.append(PreActivation(layer, kind, path))
        elif kind == PSP:
            found.append(PreActivation(layer, kind, path))
        elif kind is None:
            if inner_pre_activation_layers(layer):
                found.append(PreActivation(layer, COMPOSITE, path))
                continue
            reason = skip_reason(layer)
            if reason is not None:
                skipped.append(SkippedLayer(layer, reason, path))
        elif is_output and not regularize_logits:
            continue
        elif kind == AFFINE:
            if is_output or not is_linear(layer.activation):
                found.append(PreActivation(layer, kind, path))
        elif isinstance(layer, keras.layers.Activation) and is_linear(
            layer.activation
        ):
            continue
        elif not _fed_by_linear_psp_layer(layer):
            found.append(PreActivation(layer, kind, path))
    return found, skipped


def warn_skipped(skipped, stacklevel=3):
    """Warns, in one message, about layers PSP leaves unregularized."""
    if not skipped:
        return
    lines = "\n".join(
        f"  - {'/'.join(entry.path + (entry.layer.name,))} "
        f"({type(entry.layer).__name__}): {entry.reason}"
        for entry in skipped
    )
    warnings.warn(
        f"PSP leaves {len(skipped)} layer(s) unregularized:\n{lines}",
        UserWarning,
        stacklevel=stacklevel,
    )


def closest_names(name, layers, n=3):
    """The names of `layers` closest to `name`, for error messages."""
    return difflib.get_close_matches(
        name, [layer.name for layer in layers], n=n, cutoff=0.5
    )
