"""Generic wrapper adding PSP to any layer that has an `activation`."""

import keras
from keras import ops

from keras_psp import pre_activations
from keras_psp.layers.psp_wrapper import PSPWrapperMixin


@keras.saving.register_keras_serializable(package="keras_psp")
class PreActivationRegularizer(PSPWrapperMixin, keras.layers.Wrapper):
    """Adds post-synaptic potential (PSP) regularization to a layer.

    The wrapped layer's affine part produces the pre-activation `z`; the
    wrapper adds `psp_penalty(z, strength, reduction)` to the model's losses
    with `add_loss` and returns `activation(z)`. The output equals the
    unwrapped layer's output for the same weights: only the loss changes.

    The wrapped layer is called with its activation swapped for a linear
    one during the wrapper's call only, so a layer that another model also
    uses is never changed under that model (the two share its weights).
    The wrapper takes every call the wrapped layer takes (same arguments,
    keyword-only ones and `training` included); in a masked sequence (the
    input carries a Keras mask), padded positions add nothing to the
    penalty (see `keras_psp.psp_penalty`).

    Args:
        layer: a layer whose class is known to apply its `activation` to its
            affine output: `Dense`, `EinsumDense`, `Conv1D`, `Conv2D`,
            `Conv3D`, `Conv1DTranspose`, `Conv2DTranspose`,
            `Conv3DTranspose`, `DepthwiseConv1D`, `DepthwiseConv2D`,
            `SeparableConv1D`, `SeparableConv2D`, or a class declared with
            `keras_psp.register_pre_activation_layer`. It may already be
            built; its weights are kept.
        strength: λ, a finite float >= 0 (finite in float32). Stored in the
            non-trainable float32 variable `self.strength`, which callbacks
            may assign during `fit`.
        reduction: `"sum"` (paper eq. 7: `λ · ½ Σ_units z²` per example,
            averaged over the batch) or `"mean"` (the authors' code:
            `λ · mean(z²)` over batch and units). See
            `keras_psp.psp_penalty`.
        activation: the activation to apply to `z`. Defaults to the wrapped
            layer's own activation.
        strength_divisor: the number L of layers over which a model's λ
            was divided (recorded by `apply_psp(...,
            divide_by_num_layers=True)` and the builders of
            `keras_psp.models`; 1, the default, for a λ given to this layer
            itself): `strength` is the model's λ / L, and
            `keras_psp.callbacks.StrengthScheduler` sets it to
            `schedule(epoch) / L`.
        **kwargs: base layer arguments (`name`, `dtype`, ...). `dtype`
            defaults to the wrapped layer's dtype policy; the output is cast
            to the wrapper's compute dtype.

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
        self,
        layer,
        strength=1e-3,
        reduction="sum",
        activation=None,
        strength_divisor=1,
        **kwargs,
    ):
        pre_activations.check_affine_layer(layer)
        if kwargs.get("dtype") is None:
            kwargs["dtype"] = layer.dtype_policy
        super().__init__(layer, **kwargs)
        self._init_wrapper(strength, reduction, strength_divisor)
        if activation is None:
            activation = layer.activation
        self.activation = keras.activations.get(activation)

    def pre_activation(self, *args, **kwargs):
        """Returns z, the wrapped layer's affine output, for this call."""
        return pre_activations.affine_output(self.layer, *args, **kwargs)

    def call(self, *args, **kwargs):
        z = pre_activations.affine_output(self.layer, *args, **kwargs)
        self.add_psp_loss(z, pre_activations.call_mask(args, kwargs))
        return ops.cast(self.activation(z), self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(self._psp_config())
        config["activation"] = keras.activations.serialize(self.activation)
        return config
