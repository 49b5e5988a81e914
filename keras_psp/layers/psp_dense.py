"""`PSPDense`: `keras.layers.Dense` with PSP on its pre-activation."""

import keras

from keras_psp.layers.psp_layer import PSPAffineMixin


@keras.saving.register_keras_serializable(package="keras_psp")
class PSPDense(PSPAffineMixin, keras.layers.Dense):
    """A `keras.layers.Dense` layer whose pre-activation is PSP-regularized.

    A drop-in replacement for `Dense`: same arguments, weights and output,
    plus `strength` and `reduction`. With `z = inputs @ kernel + bias` it adds
    `keras_psp.psp_penalty(z, strength, reduction)` to the model's losses and
    returns `activation(z)`. `PSPDense.from_layer(dense)` converts an existing
    `Dense` with its weights.

    Args:
        units: dimensionality of the output space, as in `Dense`.
        activation: activation applied to `z`, as in `Dense`.
        strength: λ, a finite float >= 0, in the non-trainable float32
            variable `self.strength` (callbacks may assign it during `fit`).
        reduction: `"sum"` (paper eq. 7: `λ · ½ Σ_units z²` per example,
            averaged over the batch) or `"mean"` (the authors' code:
            `λ · mean(z²)`).
        strength_divisor: the number L of layers over which a model's λ
            was divided (recorded by `apply_psp(...,
            divide_by_num_layers=True)` and the builders of
            `keras_psp.models`; 1, the default, for a λ given to this layer
            itself): `strength` is the model's λ / L, and
            `keras_psp.callbacks.StrengthScheduler` sets it to
            `schedule(epoch) / L`.
        **kwargs: every other argument of `keras.layers.Dense` (`use_bias`,
            `kernel_initializer`, `kernel_regularizer`, ...) and of the base
            layer (`name`, `dtype`, ...).

    Example:

    >>> import numpy as np
    >>> layer = PSPDense(120, activation="relu", strength=1e-3)
    >>> tuple(layer(np.ones((2, 400))).shape)
    (2, 120)
    >>> len(layer.losses)
    1
    """

    base_layer_class = keras.layers.Dense

    def __init__(
        self,
        units,
        activation=None,
        strength=1e-3,
        reduction="sum",
        strength_divisor=1,
        **kwargs,
    ):
        super().__init__(units, activation=activation, **kwargs)
        self._init_affine_psp(strength, reduction, strength_divisor)
