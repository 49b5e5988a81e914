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

A layer of any other class that applies activations in its own code (a
transformer block's feed-forward `Dense` with `gelu`, a gated MLP's
`silu(gate(x)) * up(x)`, an activation layer or Sequential sub-block it
holds; `activation_taps` sees them as they run) is `"composite"`: the
inputs of those activations are regularized where they are, and its
output is left as it is.
"""

import collections
import difflib
import warnings

import keras

from keras_psp import activation_taps
from keras_psp import cloning
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
    try:
        return keras.activations.get(activation) is keras.activations.linear
    except (TypeError, ValueError):  # a name Keras does not know
        return False


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


def skip_reason(layer):
    """Why a layer that looks as if it had a pre-activation of its own (it
    holds an `activation`, or is recurrent) cannot be wrapped whole, or
    None when it does not look so (or is supported)."""
    if layer_kind(layer) is not None:
        return None
    if activation_taps.is_recurrent(layer) or any(
        activation_taps.is_recurrent(sublayer)
        for sublayer in keras_internals.sublayers(layer)
    ):
        return activation_taps.RECURRENT
    if isinstance(layer, keras.layers.TimeDistributed):
        return activation_taps.MAPPED
    activation = getattr(layer, "activation", None)
    if activation is not None and not is_linear(activation):
        return (
            f"its class {type(layer).__name__} is not known to apply "
            "`activation` to its affine output (its output may not be "
            "activation(z)); if it does, declare it with "
            "`keras_psp.register_pre_activation_layer`"
        )
    return None


def _unknown_layer(layer, model_watches):
    """`(composite, reasons)` for a layer of no known kind: whether it
    applies activations in its own code that PSP can regularize (seen in a
    symbolic run of its first call, else of the whole model:
    `model_watches()`), and why each it applies that PSP cannot regularize
    is left out."""
    if activation_taps.is_recurrent(layer):
        return False, [activation_taps.RECURRENT]
    if _is_keras_leaf(layer):
        return False, []
    try:
        watched = _traced_watch(layer)
    except Exception as error:
        try:
            watched = model_watches().get(id(layer), _LayerWatch((0, [])))
        except Exception:  # named in the warning, never silent
            return False, [
                "its call could not be run symbolically "
                f"({cloning.describe(error)}), so PSP cannot see which "
                "activations it applies"
            ]
    if watched is None:
        return False, []
    reasons = [
        reason
        if inner is layer
        else f"inner layer '{inner.name}' ({type(inner).__name__}): {reason}"
        for inner, reason in watched.skipped
    ]
    activation = getattr(layer, "activation", None)
    if not watched.count and not reasons and activation is not None:
        if not is_linear(activation):
            reasons.append(
                "it holds a non-linear `activation` but applies no Keras "
                "activation function in its call (it may compute it with "
                "backend code), so PSP cannot see z: write the non-linearity"
                " with `keras.activations` or `keras.ops`, or, if the layer "
                "returns activation(z) of its affine output with nothing "
                "after it, declare its class with "
                "`keras_psp.register_pre_activation_layer`"
            )
    return watched.count > 0, reasons


def inner_pre_activations(layer, *args, **kwargs):
    """Calls a composite `layer` and returns the list of z's of the
    activations it applies in its own code in that call."""
    found = []
    with activation_taps.watch(layer, found.append):
        layer(*args, **kwargs)
    return found


def _symbolic_watch(layer, arguments):
    """The `Watch` of one symbolic run of `layer` on stand-ins of
    `arguments` (`(args, kwargs)` holding `keras.KerasTensor`s): no node is
    added, nothing changes. Raises what the run raises."""

    # Dense stand-ins (a spec Keras marks sparse, e.g. keras_hub's scaled
    # embeddings on TensorFlow, is a dense tensor when the model runs), of
    # a small size where a size is unknown: PyTorch's symbolic run would
    # try 83, past e.g. a position embedding's length.
    def stand_in(x, size):
        if not isinstance(x, keras.KerasTensor):
            return x
        shape = tuple(size if d is None else d for d in x.shape)
        return keras.KerasTensor(shape, x.dtype)

    error = None
    for size in (2, 8, None):
        args, kwargs = keras.tree.map_structure(
            lambda x, size=size: stand_in(x, size), arguments
        )
        try:
            with activation_taps.watch(layer, lambda z: None) as watched:
                keras_internals.trace(layer.__call__, *args, **kwargs)
        except Exception as failure:  # tried again at other sizes
            error = error or failure
            continue
        return watched
    raise error


def _traced_watch(layer):
    """The `Watch` of one symbolic run of `layer` on the arguments of its
    first call in the graph, or None when it was not called in a graph."""
    arguments = keras_internals.call_arguments(layer)
    if arguments is None:
        return None
    return _symbolic_watch(layer, arguments)


class _LayerWatch:
    """What a symbolic run of the whole model saw in one of its layers."""

    def __init__(self, counts):
        self.count, self.skipped = counts


def _model_watches(model):
    """`id(layer) -> _LayerWatch` for the layers of `model`'s graph, from
    one symbolic run of the whole model (for a layer whose own run fails on
    its recorded arguments, e.g. a keras_hub spec of the wrong rank)."""
    watched = _symbolic_watch(model, ((model.input,), {}))
    return {key: _LayerWatch(c) for key, c in watched.by_layer.items()}


def _is_keras_leaf(layer):
    """A Keras layer that holds no layer and runs no user code: it applies
    no activation of its own unless its class is registered (an affine or
    activation layer), so it need not be traced."""
    return (
        type(layer).__module__.startswith("keras.src.layers.")
        and not isinstance(layer, keras.layers.Lambda)
        and not keras_internals.sublayers(layer)
    )


def describe_skipped(skipped):
    """` Unregularized: ...` for `(layer, reason)` pairs, or ''."""
    if not skipped:
        return ""
    return " Unregularized: " + "; ".join(
        f"'{layer.name}' ({type(layer).__name__}): {reason}"
        for layer, reason in skipped
    )


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


# The arguments by which keras_hub and Keras layers take a sequence's padding.
MASK_ARGUMENTS = ("mask", "padding_mask", "decoder_padding_mask")


def call_mask(args, kwargs):
    """The padding mask of a layer call: its `mask`, `padding_mask` or
    `decoder_padding_mask` argument, else the Keras mask its first input
    carries; None when it has none."""
    for name in MASK_ARGUMENTS:
        if kwargs.get(name) is not None:
            return kwargs[name]
    first = args[0] if args else next(iter(kwargs.values()), None)
    first = keras.tree.flatten(first)[0] if first is not None else None
    if first is None:
        return None
    return keras_internals.keras_mask(first)


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
    if kind == PSP:
        return True
    if kind == ACTIVATION:
        return not (
            isinstance(source, keras.layers.Activation)
            and is_linear(source.activation)
        )
    return kind == AFFINE and not is_linear(source.activation)


def _acts_on_a_pre_activation(operation):
    """Whether an activation (layer or op node) acts on a z: not when its
    input is another activation's output (or a PSP layer's, regularized
    already), nor when it takes more than one tensor."""
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


def find_pre_activations(model, regularize_logits=True):
    """Finds every pre-activation of a Sequential or functional model.

    Nested Sequential and functional models are entered. A layer of no
    known kind (see `layer_kind`) is run once symbolically on the arguments
    of its first call: if it applies activations in its own code (a
    transformer block's feed-forward `Dense(..., activation="gelu")`, a
    gated MLP's `silu(gate(x)) * up(x)`, `keras.ops.relu`, an activation
    layer or Sequential sub-block it holds, at any depth), it is
    `"composite"`.

    One rule says which activation has a z, for layers, `keras.ops` calls
    and the code inside composite layers alike: an activation whose input
    is another activation's output (an activation layer's or op's, a layer
    with a non-linear `activation`'s, or a PSP layer's) has none of its
    own: `relu(relu(z))` is one term, and so is mish's
    `tanh(softplus(z))`. Inside composite layers, softmax (and
    log-softmax, sparsemax) and the non-linearities an attention layer
    applies to its scores are not neurons' activations and are left out.

    Args:
        model: a built Sequential or functional `keras.Model`.
        regularize_logits: whether the output layers' pre-activations count
            (the logits: a linear output layer is then a pre-activation too).

    Returns:
        `(found, skipped)`: a list of `PreActivation` in graph order (the
        layers `apply_psp` regularizes, and the PSP layers already there),
        and a list of `SkippedLayer` for each non-linearity PSP cannot
        regularize, with the reason (recurrent layers, activations inside a
        `keras.ops` loop, a layer whose call cannot be run symbolically, a
        non-linearity computed outside Keras' activation functions).
    """
    outputs = {id(layer) for layer in output_layers(model)}
    found, skipped = [], []
    model_watch = []

    def model_watches():
        if not model_watch:
            model_watch.append(_model_watches(model))
        return model_watch[0]

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
            composite, reasons = _unknown_layer(layer, model_watches)
            if composite:
                found.append(PreActivation(layer, COMPOSITE, path))
            if reasons:
                reason = "; ".join(dict.fromkeys(reasons))
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
        elif _acts_on_a_pre_activation(layer):
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
