"""What `apply_psp` and `strip_psp` share: the model they accept, and the
model they return around a clone's graph."""

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
