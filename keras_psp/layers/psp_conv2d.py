"""`PSPConv2D`: `keras.layers.Conv2D` with PSP on its pre-activation."""

import keras

from keras_psp.layers.psp_layer import PSPAffineMixin


@keras.saving.register_keras_serializable(package="keras_psp")
class PSPConv2D(PSPAffineMixin, keras.layers.Conv2D):
    """A `keras.layers.Conv2D` layer whose pre-activation is PSP-regularized.

    A drop-in replacement for `Conv2D`: same arguments, weights and output,
    plus `strength` and `reduction`. With `z` the convolution plus bias (one
    unit per filter and output position) it adds
    `keras_psp.psp_penalty(z, strength, reduction)` to the model's losses and
    returns `activation(z)`. `PSPConv2D.from_layer(conv)` converts an
    existing `Conv2D` with its weights.

    Args:
        filters: number of output filters, as in `Conv2D`.
        kernel_size: size of the convolution window, as in `Conv2D`.
        activation: activation applied to `z`, as in `Conv2D`.
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
        **kwargs: every other argument of `keras.layers.Conv2D` (`strides`,
            `padding`, `use_bias`, `kernel_initializer`, ...) and of the base
            layer (`name`, `dtype`, ...).

    Example:

    >>> import numpy as np
    >>> layer = PSPConv2D(20, 5, activation="relu", strength=1e-3)
    >>> tuple(layer(np.ones((2, 28, 28, 1))).shape)
    (2, 24, 24, 20)
    >>> len(layer.losses)
    1
    """

    base_layer_class = keras.layers.Conv2D

    def __init__(
        self,
        filters,
        kernel_size,
        activation=None,
        strength=1e-3,
        reduction="sum",
        strength_divisor=1,
        **kwargs,
    ):
        super().__init__(filters, kernel_size, activation=activation, **kwargs)
        self._init_affine_psp(strength, reduction, strength_divisor)
