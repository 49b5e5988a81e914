"""State and behaviour shared by every PSP layer."""

import keras
from keras import ops

from keras_psp import cloning
from keras_psp import keras_internals
from keras_psp.penalty import psp_penalty
from keras_psp.penalty import validate_reduction
from keras_psp.penalty import validate_strength
from keras_psp.validation import validate_positive_int

# The config entries a PSP layer adds to its base layer's (`strip_psp`
# removes them to rebuild the plain layer).
PSP_CONFIG_KEYS = ("strength", "reduction", "strength_divisor")


class PSPLayerMixin:
    """Mixin giving a Keras layer a PSP strength variable and its penalty.

    Every PSP layer (`PreActivationRegularizer`,
    `InnerPreActivationRegularizer`, `PSPActivation`, `PSPDense`,
    `PSPConv2D`) mixes this in; `apply_psp` and `PSPModel` find PSP layers
    by it. The layer's λ, the one its penalty
    multiplies, is a float32 non-trainable variable named `strength`, so a
    callback can change it during `fit` with `layer.strength.assign(value)`
    and the compiled train step sees the new value without recompiling.

    `strength_divisor` (an int >= 1, in the config) records how the layer's
    λ relates to the λ the user wrote: a model built with λ and
    `divide_by_num_layers=True` (`apply_psp`, and the builders of
    `keras_psp.models` by default) gives each of its L layers λ/L and
    records L here, so the user's λ is `strength * strength_divisor` in
    every layer; a layer given λ directly has `strength_divisor=1`.
    `keras_psp.callbacks.StrengthScheduler` sets each layer's `strength` to
    `schedule(epoch) / strength_divisor`, so a schedule's values are on the
    user's scale whichever way the model was built.
    """

    def _init_psp(self, strength, reduction, strength_divisor=1):
        strength = validate_strength(strength)
        self.reduction = validate_reduction(reduction)
        validate_positive_int(strength_divisor, "strength_divisor")
        self.strength_divisor = strength_divisor
        # float32 and never autocast: λ must not be rounded to float16, and
        # the penalty is accumulated in float32 anyway.
        self.strength = self.add_weight(
            name="strength",
            shape=(),
            dtype="float32",
            initializer=keras.initializers.Constant(strength),
            trainable=False,
            autocast=False,
        )

    def add_psp_loss(self, z, mask=None):
        """Adds the PSP penalty of the pre-activation `z` with `add_loss`;
        positions where `mask` is off add nothing (see `psp_penalty`)."""
        self.add_loss(psp_penalty(z, self.strength, self.reduction, mask))

    def _psp_config(self):
        return {
            "strength": float(ops.convert_to_numpy(self.strength)),
            "reduction": self.reduction,
            "strength_divisor": self.strength_divisor,
        }


class PSPAffineMixin(PSPLayerMixin):
    """PSP for a subclass of a Keras layer that has an `activation`.

    The layer keeps all of its base class (`Dense`, `Conv2D`, ...): its
    weights, arguments and config. It runs its base class's `call` with a
    linear activation, which gives `z`, adds the penalty of `z`, and applies
    the activation it was given (`self.psp_activation`).
    """

    # The Keras layer class this PSP layer replaces; set by subclasses.
    base_layer_class = None

    def _init_affine_psp(self, strength, reduction, strength_divisor=1):
        self._init_psp(strength, reduction, strength_divisor)
        self.psp_activation = self.activation
        self.activation = keras.activations.linear

    def pre_activation(self, inputs, *args, **kwargs):
        """Returns z, the base layer's output before the activation."""
        return super().call(inputs, *args, **kwargs)

    def call(self, inputs, *args, **kwargs):
        z = super().call(inputs, *args, **kwargs)
        self.add_psp_loss(z, keras_internals.keras_mask(inputs))
        return self.psp_activation(z)

    def get_config(self):
        config = super().get_config()
        config["activation"] = keras.activations.serialize(self.psp_activation)
        config.update(self._psp_config())
        return config

    # Dense and Conv save only their own weights, by position; λ is stored
    # beside them under a key of its own.
    def save_own_variables(self, store):
        super().save_own_variables(store)
        store["psp_strength"] = self.strength

    def load_own_variables(self, store):
        super().load_own_variables(store)
        if "psp_strength" in store.keys():
            self.strength.assign(store["psp_strength"])

    @classmethod
    def from_layer(cls, layer, strength=1e-3, reduction="sum"):
        """Returns a PSP copy of `layer` with the same config and weights.

        Args:
            layer: an instance of `cls.base_layer_class` (e.g. a `Dense` for
                `PSPDense`), built or not; it is left unchanged.
            strength: λ for the new layer.
            reduction: `"sum"` or `"mean"`.
        """
        base = cls.base_layer_class
        if type(layer) is not base:
            raise TypeError(
                f"Argument `layer` of {cls.__name__}.from_layer must be a "
                f"`{base.__name__}` instance. Received: layer={layer!r}. Use "
                "`keras_psp.PreActivationRegularizer` for other layer types."
            )
        config = layer.get_config()
        config.update(strength=strength, reduction=reduction)
        new = cloning.from_config(cls, config, layer)
        if layer.built:
            new.build_from_config(layer.get_build_config())
            targets = [w for w in new.weights if w is not new.strength]
            for target, source in zip(targets, layer.weights, strict=True):
                target.assign(source)
        return new
