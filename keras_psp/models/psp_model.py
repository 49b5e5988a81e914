"""Models that log the PSP term of their loss as `psp_loss`."""

import types

import keras
from keras import ops

from keras_psp import keras_internals
from keras_psp.layers.psp_layer import PSPLayerMixin


def psp_layers(model):
    """Returns the PSP layers of `model`, nested models included."""
    return [
        layer
        for layer in keras_internals.sublayers(model)
        if isinstance(layer, PSPLayerMixin)
    ]


def _user_strengths(model):
    """The PSP layers of `model`, and each one's λ on the scale its user
    wrote it (float64); raises if there is none."""
    layers = psp_layers(model)
    if not layers:
        raise ValueError(
            f"Argument `model` ('{model.name}') has no PSP layer, so it has "
            "no PSP strength."
        )
    return layers, [
        float(ops.convert_to_numpy(layer.strength)) * layer.strength_divisor
        for layer in layers
    ]


def model_strength(model):
    """Returns the model's PSP strength λ, on the scale its user wrote it.

    That is `strength * strength_divisor` of its PSP layers: the λ given to
    `PSPDense`, `apply_psp` (with or without `divide_by_num_layers`) or a
    builder's `psp_strength`, or the last value `StrengthScheduler` set.
    Where layers were given different λ's, it is the largest of them.

    Args:
        model: a model holding PSP layers (nested models included).

    Raises:
        ValueError: if `model` has no PSP layer.

    Example:

    >>> import keras
    >>> from keras_psp import apply_psp
    >>> base = keras.Sequential([
    ...     keras.Input((4,)),
    ...     keras.layers.Dense(8, activation="relu"),
    ...     keras.layers.Dense(2),
    ... ])
    >>> model = apply_psp(base, 1e-3, divide_by_num_layers=True)
    >>> [layer.strength_divisor for layer in psp_layers(model)]
    [2, 2]
    >>> round(model_strength(model), 8)
    0.001
    """
    return max(_user_strengths(model)[1])


def strength_shares(model):
    """Returns how the model's λ is shared among its PSP layers.

    Each entry `(layer, ratio, divisor)` says that the layer's λ is
    `model_λ * ratio / divisor`: `divisor` is its `strength_divisor` (L for
    a λ divided among L layers) and `ratio` its λ on the user's scale over
    the largest one (1 for every layer of a model built with one λ; where
    all are 0, 1). The ratios do not depend on λ's scale.

    Args:
        model: a model holding PSP layers (nested models included).

    Raises:
        ValueError: if `model` has no PSP layer.
    """
    layers, strengths = _user_strengths(model)
    top = max(strengths)
    return [
        (layer, strength / top if top > 0 else 1.0, layer.strength_divisor)
        for layer, strength in zip(layers, strengths, strict=True)
    ]


def psp_losses(model):
    """Returns the PSP penalties added during `model`'s last forward pass."""
    return keras_internals.own_losses(model, psp_layers(model))


class PSPLossMixin:
    """Adds a `psp_loss` entry (the summed PSP penalties) to `fit`'s logs.

    `loss` in the logs already includes the PSP term, as every `add_loss`
    term; `psp_loss` shows how much of it is PSP. It is averaged over the
    epoch like `loss` (weighted by batch size), and evaluation reports it as
    `val_psp_loss`.
    """

    def _init_psp_loss_tracker(self):
        self.psp_loss_tracker = keras.metrics.Mean(name="psp_loss")

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        loss = super().compute_loss(
            x=x,
            y=y,
            y_pred=y_pred,
            sample_weight=sample_weight,
            training=training,
        )
        terms = psp_losses(self)
        total = ops.sum(ops.stack(terms)) if terms else ops.zeros(())
        first_output = keras.tree.flatten(y_pred)[0]
        batch_size = ops.cast(ops.shape(first_output)[0], "float32")
        self.psp_loss_tracker.update_state(total, sample_weight=batch_size)
        return loss


@keras.saving.register_keras_serializable(package="keras_psp")
class PSPModel(PSPLossMixin, keras.Model):
    """A functional `keras.Model` that logs its PSP term as `psp_loss`.

    Built like `keras.Model(inputs, outputs)`. It trains exactly like a
    `keras.Model`; the only difference is the `psp_loss` entry in the logs
    of `fit` and `evaluate`. `keras_psp.apply_psp` returns one.

    Args:
        inputs: the model's input tensor(s), as for `keras.Model`.
        outputs: the model's output tensor(s), as for `keras.Model`.
        name: the model's name.
        **kwargs: other `keras.Model` arguments.

    Example:

    >>> import keras
    >>> from keras_psp import PSPDense
    >>> inputs = keras.Input((8,))
    >>> hidden = PSPDense(16, activation="relu", strength=1e-3)(inputs)
    >>> model = PSPModel(inputs, keras.layers.Dense(2)(hidden))
    >>> model.compile("sgd", "mse")
    >>> "psp_loss" in [m.name for m in model.metrics]
    True
    """

    def __init__(self, inputs, outputs, name=None, **kwargs):
        super().__init__(inputs, outputs, name=name, **kwargs)
        self._init_psp_loss_tracker()
        # Not tracked by Keras (a namespace, not a dict): plain config data.
        self._conversion = types.SimpleNamespace(recipe=None, layers=True)

    @property
    def conversion_recipe(self):
        """How `apply_psp` made this model from a model that saves itself
        from its constructor's arguments, or None (see `get_config`)."""
        return self._conversion.recipe

    @property
    def saves_layer_configs(self):
        """Whether `get_config` holds the layers' configs (see there)."""
        return self._conversion.layers

    def set_conversion_recipe(self, recipe, layer_configs=True):
        """Makes the model save `recipe` (for `keras_psp.apply_psp`), with
        its layers' configs too if `layer_configs`."""
        self._conversion.recipe = recipe
        self._conversion.layers = layer_configs

    def get_config(self):
        """The functional model's config (its layers' configs) and, for a
        model `apply_psp` made from a model that saves itself from its
        constructor's arguments (a keras_hub backbone), how to make it
        again: the original's config and where PSP went. Loading uses the
        layers' configs, or the recipe where they cannot rebuild the layers
        (`apply_psp` found some that do not, or they raise)."""
        recipe = self._conversion.recipe
        if recipe is None:
            return super().get_config()
        config = {}
        if self._conversion.layers:
            try:
                config = super().get_config()
            except Exception:  # a layer's config cannot even be made
                config = {}
        return {
            **config,
            "name": self.name,
            "trainable": self.trainable,
            "psp_conversion": recipe,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        if "psp_conversion" not in config:
            return super().from_config(config, custom_objects)
        config = dict(config)
        recipe = config.pop("psp_conversion")
        if "layers" in config:
            try:
                model = super().from_config(config, custom_objects)
            except Exception:  # a layer's config does not rebuild it
                pass
            else:
                model.set_conversion_recipe(recipe)
                return model
        from keras_psp.conversion import copying as conversion  # imports this

        with keras.saving.custom_object_scope(custom_objects or {}):
            model = conversion.reconvert(recipe)
        model.trainable = config.get("trainable", True)
        return model


@keras.saving.register_keras_serializable(package="keras_psp")
class PSPSequential(PSPLossMixin, keras.Sequential):
    """A `keras.Sequential` that logs its PSP term as `psp_loss`.

    Args:
        layers: the list of layers, as for `keras.Sequential`.
        trainable: whether the model's weights are trainable.
        name: the model's name.

    Example:

    >>> import keras
    >>> from keras_psp import PSPDense
    >>> model = PSPSequential([
    ...     keras.Input((8,)),
    ...     PSPDense(16, activation="relu", strength=1e-3),
    ...     keras.layers.Dense(2),
    ... ])
    >>> model.compile("sgd", "mse")
    >>> "psp_loss" in [m.name for m in model.metrics]
    True
    """

    def __init__(self, layers=None, trainable=True, name=None):
        super().__init__(layers=layers, trainable=trainable, name=name)
        self._init_psp_loss_tracker()
