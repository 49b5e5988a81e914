"""Generic wrapper adding PSP to any layer that has an `activation`."""

import keras

from keras_psp.layers.psp_layer import PSPLayerMixin


def check_wrappable(layer, argument="layer"):
    """Raises a clear error unless `layer` can be wrapped for PSP."""
    if not isinstance(layer, keras.layers.Layer):
        raise TypeError(
            f"Argument `{argument}` must be a `keras.layers.Layer` instance. "
            f"Received: {argument}={layer!r} of type {type(layer).__name__}."
        )
    if isinstance(layer, PSPLayerMixin):
        raise ValueError(
            f"Argument `{argument}` is already a PSP layer "
            f"({type(layer).__name__} '{layer.name}'); wrapping it again "
            "would count its pre-activation twice. Change its `strength` "
            "variable instead."
        )
    if isinstance(layer, keras.layers.RNN) or hasattr(
        layer, "recurrent_activation"
    ):
        raise ValueError(
            f"Argument `{argument}` is a recurrent layer "
            f"({type(layer).__name__}); it applies its activation inside the "
            "recurrence, so it has no single pre-activation to regularize."
        )
    if not hasattr(layer, "activation"):
        raise ValueError(
            f"Argument `{argument}` must be a layer with an `activation` "
            f"attribute (Dense, Conv1D/2D/3D, DepthwiseConv2D, "
            f"SeparableConv2D, Conv2DTranspose, EinsumDense, ...). Received "
            f"{type(layer).__name__} '{layer.name}', which has none. For an "
            "activation applied after batch norm or a residual add, use "
            "`keras_psp.PSPActivation`."
        )


@keras.saving.register_keras_serializable(package="keras_psp")
class PreActivationRegularizer(PSPLayerMixin, keras.layers.Wrapper):
    """Adds post-synaptic potential (PSP) regularization to a layer.

    The wrapped layer's affine part produces the pre-activation `z`; the
    wrapper adds `psp_penalty(z, strength, reduction)` to the model's losses
    with `add_loss` and returns `activation(z)`. The output equals the
    unwrapped layer's output for the same weights: only the loss changes.

    The wrapper takes over the layer's activation: it sets
    `layer.activation` to linear and applies the original activation
    itself. Wrap a layer that no other model uses (`keras_psp.apply_psp`
    clones layers before wrapping them).

    Args:
        layer: a `keras.layers.Layer` with an `activation` attribute applied
            to its output, e.g. `Dense`, `Conv1D`, `Conv2D`, `Conv3D`,
            `DepthwiseConv2D`, `SeparableConv2D`, `Conv1DTranspose`,
            `Conv2DTranspose`, `EinsumDense`. It may already be built; its
            weights are kept.
        strength: λ, a finite float >= 0. Stored in the non-trainable float32
            variable `self.strength`, which callbacks may assign during
            `fit`.
        reduction: `"sum"` (paper eq. 7: `λ · ½ Σ_units z²` per example,
            averaged over the batch) or `"mean"` (the authors' code:
            `λ · mean(z²)` over batch and units). See
            `keras_psp.psp_penalty`.
        activation: the activation to apply to `z`. Defaults to the wrapped
            layer's own activation.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Example:

    >>> import numpy as np
    >>> import keras
    >>> layer = PreActivationRegularizer(
    ...     keras.layers.Dense(4, activation="relu"), strength=1e-3)
    >>> y = layer(np.ones((2, 3)))
    >>> tuple(y.shape)
    (2, 4)
    >>> len(layer.losses)
    1
    """

    def __init__(
        self, layer, strength=1e-3, reduction="sum", activation=None, **kwargs
    ):
        check_wrappable(layer)
        super().__init__(layer, **kwargs)
        self._init_psp(strength, reduction)
        if activation is None:
            activation = layer.activation
        self.activation = keras.activations.get(activation)
        layer.activation = keras.activations.linear

    def build(self, input_shape=None):
        super().build(input_shape)
        self.built = True

    def pre_activation(self, inputs):
        """Returns z, the wrapped layer's affine output, for `inputs`."""
        return self.layer(inputs)

    def call(self, inputs, *args, **kwargs):
        z = self.layer(inputs, *args, **kwargs)
        self.add_psp_loss(z)
        return self.activation(z)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(self._psp_config())
        config["activation"] = keras.activations.serialize(self.activation)
        return config
