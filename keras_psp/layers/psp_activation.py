"""Standalone PSP layer regularizing the input of an activation."""

import keras
from keras import ops

from keras_psp import keras_internals
from keras_psp import pre_activations
from keras_psp.layers.psp_layer import PSPLayerMixin


def _get_activation(identifier):
    error = ValueError(
        "Argument `activation` must be an activation name, a callable or an "
        f"activation layer. Received: activation={identifier!r}."
    )
    if identifier is None:
        raise error
    try:
        return keras.activations.get(identifier)
    except ValueError:
        raise error from None


@keras.saving.register_keras_serializable(package="keras_psp")
class PSPActivation(PSPLayerMixin, keras.layers.Layer):
    """Applies an activation and regularizes its input with PSP.

    For `conv → batch norm → (+ residual) → ReLU` the pre-activation `z` is
    the ReLU's input, after batch norm and the add; this layer takes the
    place of the activation: it adds `psp_penalty(z, strength, reduction)`
    with `add_loss` and returns `activation(z)`.

    Args:
        activation: what to apply: a name or function from
            `keras.activations` (`"relu"`, `"swish"`, ...) or an activation
            layer instance (`keras.layers.ReLU(max_value=6.0)`,
            `LeakyReLU`, `ELU`, `PReLU`, `Activation`, ...), whose weights
            (e.g. `PReLU`'s slopes) it keeps. Other layers are refused
            (declare your own activation layer class with
            `keras_psp.register_pre_activation_layer(cls,
            kind="activation")`).
        strength: λ, a finite float >= 0 (finite in float32), stored in
            the non-trainable float32 variable `self.strength`.
        reduction: `"sum"` (paper eq. 7) or `"mean"` (the authors' code); see
            `keras_psp.psp_penalty`. In a masked sequence (the input
            carries a Keras mask), padded positions add nothing.
        strength_divisor: the number L of layers over which a model's λ
            was divided (recorded by `apply_psp(...,
            divide_by_num_layers=True)` and the builders of
            `keras_psp.models`; 1, the default, for a λ given to this layer
            itself): `strength` is the model's λ / L, and
            `keras_psp.callbacks.StrengthScheduler` sets it to
            `schedule(epoch) / L`.
        **kwargs: base layer arguments (`name`, `dtype`, ...). The output
            is cast to this layer's compute dtype, whatever the dtype policy
            of an activation layer given as `activation`.

    Example:

    >>> import numpy as np
    >>> layer = PSPActivation("relu", strength=0.5)
    >>> y = layer(np.array([[-1.0, 2.0]]))
    >>> [float(v) for v in keras.ops.convert_to_numpy(y)[0]]
    [0.0, 2.0]
    >>> float(layer.losses[0])  # 0.5 * 0.5 * (1 + 4)
    1.25
    """

    def __init__(
        self,
        activation,
        strength=1e-3,
        reduction="sum",
        strength_divisor=1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._init_psp(strength, reduction, strength_divisor)
        if isinstance(activation, dict):
            activation = keras.layers.deserialize(activation)
        if isinstance(activation, keras.layers.Layer):
            pre_activations.check_activation_layer(activation)
        else:
            activation = _get_activation(activation)
        self.activation = activation
        self.supports_masking = True

    def build(self, input_shape):
        if isinstance(self.activation, keras.layers.Layer):
            if not self.activation.built:
                self.activation.build(input_shape)
        self.built = True

    def pre_activation(self, inputs):
        """Returns z: the activation's input itself."""
        return inputs

    def call(self, inputs):
        # The input's own mask: a `mask` argument would be recorded in the
        # graph, and a plain activation put back in its place takes none.
        self.add_psp_loss(inputs, keras_internals.keras_mask(inputs))
        # An activation layer of another dtype policy (e.g. a float32
        # `PReLU` in a mixed precision model) must not change the output's.
        return ops.cast(self.activation(inputs), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(self._psp_config())
        if isinstance(self.activation, keras.layers.Layer):
            config["activation"] = keras.layers.serialize(self.activation)
        else:
            config["activation"] = keras.activations.serialize(self.activation)
        return config
