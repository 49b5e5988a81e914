"""What `apply_psp` and `strip_psp` share: the model they accept, and the
model they return around a clone's graph."""

import types

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


def copy_layer(layer):
    """A new, unbuilt layer (or `keras.ops` operation) equal to `layer` in
    config; its weights are for the caller to copy."""
    copy = from_config(type(layer), layer.get_config(), layer)
    # Keras leaves `name` out of a layer's automatic config when `__init__`
    # takes no `name` and no `**kwargs` of that spelling (`**kw`): the copy
    # would be renamed, and `get_layer`, `include` and `exclude` miss it.
    copy.name = layer.name
    return copy
