"""What `apply_psp` and `strip_psp` share: the model they accept, and the
model they return around a clone's graph."""

import inspect
import os
import tempfile
import types
import warnings

import keras

from keras_psp import keras_internals


def check_graph_model(model, function):
    """Raises a clear error unless `model` is a built Sequential or
    functional model (a layer graph `function` can rebuild)."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Argument `model` must be a `keras.Sequential` or functional "
            f"`keras.Model`. Received: model={model!r}."
        )
    if not keras_internals.is_graph_model(model):
        raise TypeError(
            f"Argument `model` is a subclassed model ({type(model).__name__});"
            f" `{function}` needs a Sequential or functional model, whose "
            "layer graph it can rebuild. In a subclassed model, use "
            "`keras_psp.PSPDense`/`PSPConv2D` in place of Dense/Conv2D, wrap "
            "other layers with `keras_psp.PreActivationRegularizer`, and "
            "replace activations after batch norm with "
            "`keras_psp.PSPActivation`."
        )
    if not model.built or not model.inputs:
        raise ValueError(
            "Argument `model` must be built with a known input shape: start "
            "the Sequential model with `keras.Input(shape)` or call "
            "`model.build(input_shape)` first."
        )


def rebuild(model, clone, sequential_class, functional_class):
    """`clone`'s graph as a `sequential_class` when `model` is Sequential,
    else as a `functional_class` with the structure of `clone`'s inputs and
    outputs, named as `model`."""
    if isinstance(model, keras.Sequential):
        (spec,) = model.inputs
        inputs = keras.Input(batch_shape=spec.shape, dtype=spec.dtype)
        return sequential_class([inputs, *clone.layers], name=model.name)
    return functional_class(clone.input, clone.output, name=model.name)


def _is_user_function(value):
    """Whether `value` is a plain Python function of the user's (a named
    function, a lambda, a closure), not one of Keras' own."""
    return isinstance(value, types.FunctionType) and not str(
        value.__module__
    ).startswith("keras")


def from_config(layer_class, config, owner, **functions):
    """`layer_class.from_config(config)`, with the plain Python functions
    that `owner` holds under a config key (a custom activation, a lambda,
    a `Lambda` layer's function), or that `functions` gives for a key, passed
    as the very same objects.

    Keras rebuilds a function from its config by its registered name or, for
    a lambda, from its bytecode in unsafe mode only: a user's unregistered
    activation would fail to copy, although the function is right here.
    """
    config = dict(config)
    # The instance's own attributes: `getattr` could run a property that
    # needs a built or called layer.
    found = {key: vars(owner).get(key) for key in config}
    found.update(functions)
    # What `enable_psp` put in an attribute stands for the function it
    # holds: a copy takes the user's function, not the model's term.
    found = {
        key: getattr(getattr(value, "psp_term", None), "original", value)
        for key, value in found.items()
    }
    objects = {}
    for key, function in found.items():
        # A string is a name Keras or the layer itself resolves.
        if _is_user_function(function) and not isinstance(config[key], str):
            name = f"keras_psp>{key}_{id(function)}"
            objects[name] = function
            config[key] = {
                "module": "builtins",
                "class_name": "function",
                "config": name,
                "registered_name": "function",
            }
    with keras.saving.custom_object_scope(objects):
        return layer_class.from_config(config)


def _init_arguments(layer_class, config):
    """`config` without the keys `layer_class.__init__` does not take, or
    None when it takes them all (it has `**kwargs`, or they are named)."""
    try:
        parameters = inspect.signature(layer_class.__init__).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        return None
    kept = {key: value for key, value in config.items() if key in parameters}
    return kept if len(kept) < len(config) else None


def copy_layer(layer):
    """A new, unbuilt layer (or `keras.ops` operation) equal to `layer` in
    config; its weights and other state are for the caller to copy (see
    `copy_state`). Raises what rebuilding the layer from its config raises.
    """
    config = layer.get_config()
    try:
        copy = from_config(type(layer), config, layer)
    except TypeError:
        # Keras adds `trainable` and `dtype` (and `name`) to every layer's
        # config, but a custom `__init__` without `**kwargs` refuses them:
        # they are set on the copy instead.
        kept = _init_arguments(type(layer), config)
        if kept is None:
            raise
        copy = from_config(type(layer), kept, layer)
        if isinstance(layer, keras.layers.Layer):
            copy.trainable = layer.trainable
            copy.dtype_policy = layer.dtype_policy
    # Keras leaves `name` out of a layer's automatic config when `__init__`
    # takes no `name` and no `**kwargs` of that spelling (`**kw`): the copy
    # would be renamed, and `get_layer`, `include` and `exclude` miss it.
    copy.name = layer.name
    return copy


class _Store(dict):
    """A weights store for `save_own_variables`, holding values (numpy
    arrays), not the source's variables."""

    def __setitem__(self, key, value):
        if isinstance(value, keras.Variable):
            value = value.numpy()
        elif keras.ops.is_tensor(value):
            value = keras.ops.convert_to_numpy(value)
        super().__setitem__(key, value)


def copy_state(source, target, skip=()):
    """Copies every piece of `source`'s state into `target`, a built layer
    of the same structure, the way `.keras` saving and loading copy it:
    each layer's `save_own_variables` / `load_own_variables` (so that a
    layer rebuilds what it derives from its variables, e.g. an adapted
    `Normalization`'s `finalize_state`) and `save_assets` / `load_assets`
    (e.g. an adapted `StringLookup`'s vocabulary).

    Layers of the classes in `skip` are left out of both.

    Raises:
        ValueError: when the two do not hold the same layers.
    """
    sources = [source, *keras_internals.sublayers(source)]
    targets = [target, *keras_internals.sublayers(target)]
    sources = [x for x in sources if not isinstance(x, skip or ())]
    targets = [x for x in targets if not isinstance(x, skip or ())]
    if [type(x) for x in sources] != [type(x) for x in targets]:
        raise ValueError(
            f"its copy does not hold the same layers ({len(sources)} in the "
            f"layer, {len(targets)} in the copy)"
        )
    for origin, copy in zip(sources, targets, strict=True):
        _check_same_settings(origin, copy)
    for origin, copy in zip(sources, targets, strict=True):
        store = _Store()
        origin.save_own_variables(store)
        copy.load_own_variables(store)
        if hasattr(origin, "save_assets"):
            with tempfile.TemporaryDirectory() as directory:
                origin.save_assets(directory)
                copy.load_assets(directory)


_SETTINGS = (bool, int, float, str, type(None))


def _check_same_settings(origin, copy):
    """Raises unless the copy has the layer's plain settings (its public
    attributes holding a number, a string, a bool or None; names aside):
    a config that leaves one out (keras_hub's Qwen2 decoder forgets its
    sliding window) rebuilds a layer that computes something else."""
    mine, theirs = vars(origin), vars(copy)
    for key, value in mine.items():
        if key.startswith("_") or "name" in key or key == "built":
            continue
        if isinstance(value, _SETTINGS) and key in theirs:
            if theirs[key] != value and not (value != value):  # NaN
                raise ValueError(
                    f"its config does not round-trip: `{key}` is "
                    f"{value!r} in '{origin.name}' and {theirs[key]!r} in "
                    "the layer rebuilt from its config"
                )


def describe(error):
    """`Type: first line` of an exception, for a warning."""
    lines = str(error).strip().splitlines() or [""]
    return f"{type(error).__name__}: {lines[0][:200]}".strip(" :")


def _accepted_kwargs(operation, kwargs):
    """`kwargs` less the unset ones (None) that `operation`'s call does not
    take: Keras records a layer's filled-in `mask=None` with its call, and
    the layer put in its place may take no mask."""
    try:
        parameters = inspect.signature(operation.call).parameters
    except (TypeError, ValueError):
        return kwargs
    if any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        return kwargs
    return {
        key: value
        for key, value in kwargs.items()
        if key in parameters or value is not None
    }


def convert_graph(model, convert, fallback, on_graph=None, enter=None):
    """Rebuilds the graph of a Sequential or functional `model` with each
    layer (and `keras.ops` node) replaced.

    `convert(layer)` returns `(new, after)`: the object to call in place of
    `layer` and a function to run once it has been called (and so built),
    typically copying the layer's state into it. When either raises (a
    layer whose config does not round-trip, whose copy cannot be called
    like it, or whose state cannot be copied), `fallback(layer)` gives the
    object to call instead (built from the layer itself), and the layer is
    listed with the reason. Nested Sequential and functional models for
    which `enter(model)` is true (by default, those of Keras' own classes)
    are rebuilt the same way; other nested models are converted as layers
    (so they keep their class). A shared layer is replaced once.

    `on_graph(graph, clone, fallbacks)`, if given, is called with each
    functional model of the tree (nested ones first, `model` last), its
    rebuilt graph and the fallbacks inside it (nested models included),
    and returns the model to use for `graph`.

    Returns:
        `(clone, fallbacks)`: a `keras.Sequential` or functional model, and
        `(layer, reason)` for each layer that fell back.
    """
    memo, fallbacks = {}, []

    def call(layer, *args, **kwargs):
        if id(layer) in memo:
            new = memo[id(layer)]
            return new(*args, **_accepted_kwargs(new, kwargs))
        if keras_internals.is_graph_model(layer) and (enter or is_plain_graph)(
            layer
        ):
            memo[id(layer)] = convert_nested(layer)
            return memo[id(layer)](*args, **kwargs)
        try:
            new, after = convert(layer)
            outputs = new(*args, **_accepted_kwargs(new, kwargs))
            after()
        except Exception as error:  # listed; the layer itself is used
            fallbacks.append((layer, describe(error)))
            new = fallback(layer)
            outputs = new(*args, **_accepted_kwargs(new, kwargs))
        memo[id(layer)] = new
        return outputs

    def convert_nested(graph):
        if isinstance(graph, keras.Sequential):
            (spec,) = graph.inputs
            x = inputs = keras.Input(batch_shape=spec.shape, dtype=spec.dtype)
            for layer in graph.layers:
                x = call(layer, x)
            layers = [memo[id(layer)] for layer in graph.layers]
            return keras.Sequential([inputs, *layers], name=graph.name)
        start = len(fallbacks)
        # Inputs named as the model's input layers (Keras' own clone names
        # them after their tensors, `keras_tensor...`).
        inputs = keras.tree.map_structure(
            lambda x: keras.Input(
                batch_shape=x.shape,
                dtype=x.dtype,
                name=keras_internals.producer(x).name,
            ),
            graph.input,
        )
        clone = keras.models.clone_model(
            graph,
            input_tensors=inputs,
            clone_function=lambda layer: layer,
            call_function=call,
        )
        if on_graph is None:
            return clone
        return on_graph(graph, clone, fallbacks[start:])

    return convert_nested(model), fallbacks


def warn_shared(fallbacks, function):
    """Warns, in one message, about the layers `function`'s copy shares
    with the model it was given (see `convert_graph`)."""
    if not fallbacks:
        return
    lines = "\n".join(
        f"  - {layer.name} ({type(layer).__name__}): {reason}"
        for layer, reason in fallbacks
    )
    warnings.warn(
        f"`{function}` could not copy {len(fallbacks)} layer(s), so the "
        "model it returns uses the original layer objects: the two models "
        "share their weights (training one changes the other); save a copy "
        f"of the original first if you need both.\n{lines}",
        UserWarning,
        stacklevel=3,
    )


def is_plain_graph(model):
    """Whether `model` is of Keras' own Sequential or functional class
    (not a subclass), so a graph copy of it is of its class."""
    return type(model) in (keras.Sequential, keras_internals.Functional)


def saved_copy(model):
    """`model` saved to `.keras` in a temporary directory and loaded: a
    copy exactly as Keras' saving makes it (the class rebuilt from its
    config, then every variable and asset put back by its path)."""
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.keras")
        model.save(path)
        return keras.saving.load_model(path, compile=False)


def copy_model(model, function, skip=()):
    """A copy of `model`, of its class, with its weights and other state,
    and the layers it shares with `model` (see `convert_graph`).

    A Sequential or functional model of Keras' own class is copied layer
    by layer (a layer that cannot be copied is shared, and listed); a
    model of another class (a functional subclass, a keras_hub backbone or
    task) is rebuilt from its config, as `.keras` loading rebuilds it, and
    its state copied into it. Layers of the classes in `skip` (state a
    copy must not take, e.g. what `enable_psp` added) are left out.

    Raises:
        TypeError: naming `function`, when a model of another class cannot
            be rebuilt from its config or take its state.
    """
    if is_plain_graph(model):

        def convert(layer):
            copy = copy_layer(layer)
            if not isinstance(layer, keras.layers.Layer):  # a `keras.ops` node
                return copy, lambda: None
            return copy, lambda: copy_state(layer, copy, skip)

        clone, fallbacks = convert_graph(model, convert, lambda layer: layer)
        return rebuild(model, clone, keras.Sequential, keras.Model), fallbacks
    try:
        copy = saved_copy(model)
    except Exception as error:
        raise TypeError(
            f"`{function}` cannot copy model '{model.name}' of class "
            f"{type(model).__name__}: {describe(error)}. Change the model in "
            "place with `keras_psp.enable_psp(model)` (and take PSP out with "
            "`keras_psp.disable_psp(model)`) instead."
        ) from error
    return copy, []
