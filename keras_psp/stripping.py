"""The way back out: `strip_psp`, the inverse of `apply_psp`."""

import keras

from keras_psp import cloning
from keras_psp import keras_internals
from keras_psp import pre_activations
from keras_psp.layers.inner_pre_activation_regularizer import (
    InnerPreActivationRegularizer,
)
from keras_psp.layers.pre_activation_regularizer import PreActivationRegularizer
from keras_psp.layers.psp_activation import PSPActivation
from keras_psp.layers.psp_layer import PSPAffineMixin
from keras_psp.layers.psp_layer import PSPLayerMixin


def _plain_copy(layer):
    """`(copy, source)`: a plain Keras layer equal to `layer` in the
    forward pass, and the layer whose weights it takes once built."""
    if isinstance(layer, PreActivationRegularizer):
        inner = layer.layer
        config = inner.get_config()
        config["name"] = layer.name
        config["activation"] = keras.activations.serialize(layer.activation)
        copy = cloning.from_config(
            type(inner), config, inner, activation=layer.activation
        )
        return copy, inner
    if isinstance(layer, InnerPreActivationRegularizer):
        inner = layer.layer
        config = inner.get_config()
        config["name"] = layer.name
        return cloning.from_config(type(inner), config, inner), inner
    if isinstance(layer, PSPAffineMixin):
        config = layer.get_config()
        for key in ("strength", "reduction"):
            config.pop(key)
        return (
            cloning.from_config(
                layer.base_layer_class,
                config,
                layer,
                activation=layer.psp_activation,
            ),
            layer,
        )
    if isinstance(layer, PSPActivation):
        activation = layer.activation
        if type(activation) is keras.layers.Activation and isinstance(
            activation.activation, pre_activations.ACTIVATION_OPS
        ):
            # `apply_psp` made it of a `keras.ops` activation node: that
            # node is put back.
            operation = activation.activation
            return cloning.copy_layer(operation), None
        if isinstance(activation, keras.layers.Layer):
            config = activation.get_config()
            config["name"] = layer.name
            copy = cloning.from_config(type(activation), config, activation)
            return copy, activation
        return keras.layers.Activation(activation, name=layer.name), None
    return cloning.copy_layer(layer), layer


def strip_psp(model):
    """Returns a copy of `model` with every PSP layer made a plain Keras one.

    The inverse of `keras_psp.apply_psp`, as TF Model Optimization's
    `strip_pruning` is for pruning wrappers: the forward pass, the weights
    and the predictions are the same, the PSP terms are gone, and the copy
    saves to `.keras` and loads without keras-psp installed. It also undoes
    the PSP layers of the model builders and those you placed by hand:

    - `PreActivationRegularizer(layer)` becomes `layer`'s class with the
      wrapper's activation;
    - `PSPDense` / `PSPConv2D` become `Dense` / `Conv2D`;
    - `PSPActivation` becomes the activation layer it holds, or an
      `Activation` layer.

    Nested Sequential and functional models are stripped too. The original
    model is left unchanged.

    Args:
        model: a built Sequential or functional model (e.g. a
            `keras_psp.PSPModel`).

    Returns:
        An uncompiled `keras.Model` (for a functional model) or
        `keras.Sequential` (for a Sequential one) with the same layer names.

    Example:

    >>> import keras
    >>> import keras_psp
    >>> base = keras.Sequential([
    ...     keras.Input((8,)), keras.layers.Dense(4, activation="relu")])
    >>> plain = strip_psp(keras_psp.apply_psp(base))
    >>> [type(layer).__name__ for layer in plain.layers]
    ['Dense']
    """
    cloning.check_graph_model(model, "strip_psp")
    copies = []

    def clone_layer(layer):
        if keras_internals.is_graph_model(layer):
            return strip_psp(layer)
        copy, source = _plain_copy(layer)
        if isinstance(source, keras.layers.Layer):
            copies.append((source, copy))
        return copy

    clone = keras.models.clone_model(model, clone_function=clone_layer)
    for source, copy in copies:
        strength = getattr(source, "strength", None)
        if not isinstance(source, PSPLayerMixin):
            strength = None  # λ is the only weight the plain layer lacks
        copy.set_weights(
            [
                keras.ops.convert_to_numpy(w)
                for w in source.weights
                if w is not strength
            ]
        )
    return cloning.rebuild(model, clone, keras.Sequential, keras.Model)
