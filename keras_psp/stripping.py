"""The way back out: `strip_psp`, the inverse of `apply_psp`."""

import keras

from keras_psp import cloning
from keras_psp import pre_activations
from keras_psp.layers.inner_pre_activation_regularizer import (
    InnerPreActivationRegularizer,
)
from keras_psp.layers.pre_activation_regularizer import PreActivationRegularizer
from keras_psp.layers.psp_activation import PSPActivation
from keras_psp.layers.psp_layer import PSP_CONFIG_KEYS
from keras_psp.layers.psp_layer import PSPAffineMixin
from keras_psp.layers.psp_layer import PSPLayerMixin


def _plain_copy(layer):
    """`(copy, after)`: a plain Keras layer equal to `layer` in the forward
    pass, and the function that gives it `layer`'s state once built."""
    if isinstance(layer, PreActivationRegularizer):
        inner = layer.layer
        config = inner.get_config()
        config["name"] = layer.name
        config["activation"] = keras.activations.serialize(layer.activation)
        copy = cloning.from_config(
            type(inner), config, inner, activation=layer.activation
        )
        return copy, lambda: cloning.copy_state(inner, copy)
    if isinstance(layer, InnerPreActivationRegularizer):
        copy = cloning.copy_layer(layer.layer)
        copy.name = layer.name
        return copy, lambda: cloning.copy_state(layer.layer, copy)
    if isinstance(layer, PSPAffineMixin):
        config = layer.get_config()
        for key in PSP_CONFIG_KEYS:
            config.pop(key)
        copy = cloning.from_config(
            layer.base_layer_class,
            config,
            layer,
            activation=layer.psp_activation,
        )
        # λ is the only weight the plain layer lacks.
        weights = [w for w in layer.weights if w is not layer.strength]
        return copy, lambda: copy.set_weights(
            [keras.ops.convert_to_numpy(w) for w in weights]
        )
    if isinstance(layer, PSPActivation):
        activation = layer.activation
        if type(activation) is keras.layers.Activation and isinstance(
            activation.activation, pre_activations.ACTIVATION_OPS
        ):
            # `apply_psp` made it of a `keras.ops` activation node: that
            # node is put back.
            return cloning.copy_layer(activation.activation), lambda: None
        if isinstance(activation, keras.layers.Layer):
            copy = cloning.copy_layer(activation)
            copy.name = layer.name
            return copy, lambda: cloning.copy_state(activation, copy)
        copy = keras.layers.Activation(activation, name=layer.name)
        return copy, lambda: None
    if not isinstance(layer, keras.layers.Layer):  # a `keras.ops` node
        return cloning.copy_layer(layer), lambda: None
    copy = cloning.copy_layer(layer)
    return copy, lambda: cloning.copy_state(layer, copy)


def _plain_layer(layer):
    """The layer a PSP layer holds, itself (shared with the model) when it
    cannot be copied; raises for a PSP layer that holds none."""
    if isinstance(layer, PreActivationRegularizer):
        if layer.activation is not keras.activations.get(
            layer.layer.activation
        ):
            raise ValueError(
                f"'{layer.name}' applies another activation than the layer "
                "it wraps, which cannot be copied."
            )
        return layer.layer
    if isinstance(layer, InnerPreActivationRegularizer):
        return layer.layer
    if isinstance(layer, PSPActivation) and isinstance(
        layer.activation, keras.layers.Layer
    ):
        return layer.activation
    if isinstance(layer, PSPLayerMixin):
        raise ValueError(f"'{layer.name}' cannot be copied.")
    return layer


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
    model is left unchanged; its layers' state is copied as `.keras` saving
    copies it (variables and assets). A layer that cannot be copied from its
    config is used as it is (the two models then share it), named in a
    `UserWarning`.

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
    clone, fallbacks = cloning.convert_graph(model, _plain_copy, _plain_layer)
    cloning.warn_shared(fallbacks, "strip_psp")
    return cloning.rebuild(model, clone, keras.Sequential, keras.Model)
