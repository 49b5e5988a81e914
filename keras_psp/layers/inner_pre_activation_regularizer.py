"""PSP on the pre-activations inside a composite layer (e.g. a transformer
block), leaving its output unchanged."""

import keras
from keras import ops

from keras_psp import pre_activations
from keras_psp.layers.psp_layer import PSPLayerMixin


class _InnerLayers:
    """The inner layers, found once the composite layer is built; a plain
    holder, out of reach of Keras' tracking (which refuses new state once
    the wrapper is built)."""

    def __init__(self):
        self.layers = None


@keras.saving.register_keras_serializable(package="keras_psp")
class InnerPreActivationRegularizer(PSPLayerMixin, keras.layers.Wrapper):
    """Adds PSP to the pre-activations inside a composite layer.

    A composite layer (a transformer block such as keras_hub's
    `TransformerEncoder`, your own block) may hold
    layers with an activation (e.g. the feed-forward `Dense` with `gelu`),
    but its own output is not `activation(z)`, so it cannot be wrapped
    whole. This wrapper regularizes each of those inner pre-activations
    instead: during the wrapper's call, the `activation` of each inner
    layer of a registered affine class (see
    `keras_psp.register_pre_activation_layer`) whose activation is not
    linear is swapped for one that adds `psp_penalty(z, strength,
    reduction)` to the wrapper's losses and then applies the original
    activation; after the call it is swapped back, so the composite layer
    is never changed under another model that uses it. Its output is
    unchanged. `apply_psp` uses this wrapper for every layer of an
    unregistered class that holds such inner layers.

    Args:
        layer: a `keras.layers.Layer` holding, once built, at least one
            inner layer with a pre-activation.
        strength: λ, a finite float >= 0 (finite in float32), shared by all
            the inner pre-activations, in the non-trainable float32 variable
            `self.strength`.
        reduction: `"sum"` (paper eq. 7) or `"mean"` (the authors' code);
            see `keras_psp.psp_penalty`. Applied to each inner
            pre-activation.
        **kwargs: base layer arguments (`name`, `dtype`, ...). `dtype`
            defaults to the wrapped layer's dtype policy; float outputs are
            cast to the wrapper's compute dtype.

    Example:

    >>> import numpy as np
    >>> import keras
    >>> class Residual(keras.layers.Layer):
    ...     def build(self, input_shape):
    ...         self.fc = keras.layers.Dense(input_shape[-1], "relu")
    ...     def call(self, x):
    ...         return x + self.fc(x)
    >>> layer = InnerPreActivationRegularizer(Residual(), strength=1e-3)
    >>> tuple(layer(np.ones((2, 5))).shape)
    (2, 5)
    >>> len(layer.losses)
    1
    """

    def __init__(self, layer, strength=1e-3, reduction="sum", **kwargs):
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(
                "Argument `layer` must be a `keras.layers.Layer` instance. "
                f"Received: layer={layer!r} of type {type(layer).__name__}."
            )
        if pre_activations.layer_kind(layer) is not None:
            raise ValueError(
                f"Argument `layer` ('{layer.name}', a "
                f"{type(layer).__name__}) has a pre-activation of its own: "
                "use `keras_psp.PreActivationRegularizer` or "
                "`keras_psp.PSPActivation`."
            )
        if kwargs.get("dtype") is None:
            kwargs["dtype"] = layer.dtype_policy
        super().__init__(layer, **kwargs)
        self._init_psp(strength, reduction)
        self.supports_masking = layer.supports_masking
        self._inner = _InnerLayers()

    def build(self, input_shape=None):
        # A layer that needs more than its first input's shape to build
        # builds itself on its first call instead (see `call`).
        if not self.layer.built and input_shape is not None:
            self.layer.build(input_shape)
        self.built = True

    def _inner_layers(self):
        if self._inner.layers is None:
            layers = pre_activations.inner_pre_activation_layers(self.layer)
            if not layers:
                raise ValueError(
                    f"Argument `layer` ('{self.layer.name}', a "
                    f"{type(self.layer).__name__}) holds no inner layer with "
                    "a pre-activation to regularize."
                )
            self._inner.layers = layers
        return self._inner.layers

    # `inputs` is named so that Keras builds the wrapper with its shape.
    def call(self, inputs, *args, **kwargs):
        if not self.layer.built:
            # Its inner layers are made when it is built by a first call.
            self.layer(inputs, *args, **kwargs)
        with pre_activations.tap_inner_pre_activations(
            self._inner_layers(), self.add_psp_loss
        ):
            outputs = self.layer(inputs, *args, **kwargs)
        return self._in_compute_dtype(outputs)

    def _in_compute_dtype(self, outputs):
        """Float outputs in the wrapper's compute dtype (the wrapped layer's,
        unless `dtype` was given), as the output spec says."""
        return keras.tree.map_structure(
            lambda x: (
                ops.cast(x, self.compute_dtype)
                if keras.backend.is_float_dtype(x.dtype)
                else x
            ),
            outputs,
        )

    def compute_output_spec(self, inputs, *args, **kwargs):
        spec = super().compute_output_spec(inputs, *args, **kwargs)
        return keras.tree.map_structure(
            lambda x: (
                keras.KerasTensor(x.shape, self.compute_dtype)
                if keras.backend.is_float_dtype(x.dtype)
                else x
            ),
            spec,
        )

    def pre_activation(self, inputs, *args, **kwargs):
        """Returns the list of inner pre-activations z for these inputs."""
        return pre_activations.inner_pre_activations(
            self.layer, self._inner_layers(), inputs, *args, **kwargs
        )

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    def get_config(self):
        config = super().get_config()
        config.update(self._psp_config())
        return config
