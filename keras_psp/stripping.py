"""The way back out: `strip_psp`, the inverse of `apply_psp`."""

import keras

from keras_psp import cloning
from keras_psp import keras_internals
from keras_psp import pre_activations
from keras_psp.conversion.psp_state import PSPState
from keras_psp.layers.inner_pre_activation_regularizer import (
    InnerPreActivationRegularizer,
)
from keras_psp.layers.pre_activation_regularizer import PreActivationRegularizer
from keras_psp.layers.psp_activation import PSPActivation
from keras_psp.layers.psp_layer import PSP_CONFIG_KEYS
from keras_psp.layers.psp_layer import PSPAffineMixin
from keras_psp.layers.psp_layer import PSPLayerMixin
from keras_psp.models.psp_model import PSPModel
from keras_psp.models.psp_model import PSPSequential


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


def _holds_psp_layers(model):
    """Whether a nested model is rebuilt layer by layer: one of Keras' own
    classes, or a PSP model class (whose PSP layers its config rebuilds)."""
    return cloning.is_plain_graph(model) or isinstance(
        model, (PSPModel, PSPSequential)
    )


def strip_psp(model):
    """Returns a copy of `model` with no PSP in it.

    The inverse of `keras_psp.apply_psp`, as TF Model Optimization's
    `strip_pruning` is for pruning wrappers: the forward pass, the weights
    and the predictions are the same, the PSP terms are gone, and the copy
    saves to `.keras` and loads without keras-psp installed. PSP enabled in
    place (`apply_psp`, `enable_psp`) is not copied: the copy is of the
    model's class (a keras_hub task stays a task). It also undoes the PSP
    layers of the model builders and those you placed by hand, in a
    Sequential or functional model:

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
        A copy of the model's class, with the same layer names; for a
        `keras_psp.PSPModel` or `PSPSequential`, an uncompiled
        `keras.Model` or `keras.Sequential`.

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
    if not _holds_psp_layers(model):
        # Rebuilt from its config, which holds no PSP enabled in place.
        copy, _ = cloning.copy_model(model, "strip_psp", skip=(PSPState,))
        left = [
            layer.name
            for layer in keras_internals.sublayers(copy)
            if isinstance(layer, PSPLayerMixin)
        ]
        if left:
            raise ValueError(
                f"`strip_psp` cannot take the PSP layers {left} out of model "
                f"'{model.name}' of class {type(model).__name__}: its config "
                "rebuilds them. Replace them in the code that builds it."
            )
        return copy
    clone, fallbacks = cloning.convert_graph(
        model, _plain_copy, _plain_layer, enter=_holds_psp_layers
    )
    cloning.warn_shared(fallbacks, "strip_psp")
    return cloning.rebuild(model, clone, keras.Sequential, keras.Model)
