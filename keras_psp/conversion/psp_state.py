"""The layer that holds the PSP `enable_psp` switched on in a model."""

import keras

from keras_psp.layers.psp_layer import PSPLayerMixin


@keras.saving.register_keras_serializable(package="keras_psp")
class PSPState(PSPLayerMixin, keras.layers.Layer):
    """λ and the PSP terms of a model with PSP enabled in place.

    `keras_psp.enable_psp` adds one to the model it changes, as an
    attribute (for a Sequential model, of its `InputLayer`): every z the
    model's structure reaches adds its term `psp_penalty(z, strength,
    reduction)` here with `add_loss`, so the terms are in `model.losses`
    and `strength` is in `model.non_trainable_variables` (a callback can
    change it during `fit` without a recompile, on every backend). It is
    never called and computes nothing else.

    PSP switched on in place is a training-time change, as LoRA is in
    Keras: saving (`.keras`, `save_weights`, a keras_hub preset) keeps the
    plain model, so this layer saves no variable and loads none.

    Args:
        strength: λ per term, a finite float >= 0 (λ/L where the model's
            λ was divided among L terms).
        reduction: `"sum"` or `"mean"`; see `keras_psp.psp_penalty`.
        strength_divisor: L, the number of terms λ was divided among (1 if
            it was not).
        **kwargs: base layer arguments (`name`, ...).

    Example:

    >>> import numpy as np
    >>> state = PSPState(strength=0.5)
    >>> state.add_psp_loss(np.array([[1.0, 2.0]]))
    >>> float(state.losses[0])  # 0.5 * 0.5 * (1 + 4)
    1.25
    """

    def __init__(
        self, strength=1e-3, reduction="sum", strength_divisor=1, **kwargs
    ):
        super().__init__(**kwargs)
        self._init_psp(strength, reduction, strength_divisor)
        self.built = True

    def save_own_variables(self, store):
        pass

    def load_own_variables(self, store):
        pass

    def get_config(self):
        config = super().get_config()
        config.update(self._psp_config())
        return config
