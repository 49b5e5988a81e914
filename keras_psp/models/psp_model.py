"""Models that log the PSP term of their loss as `psp_loss`."""

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
    [2]
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

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # keras-psp 0.1.0's `apply_psp` saved a copy of a keras_hub backbone
        # as a recipe (the original's config and where PSP went), with or
        # without its layers' configs: the layers load as they are.
        if "psp_conversion" in config:
            config = dict(config)
            config.pop("psp_conversion")
            if "layers" not in config:
                raise ValueError(
                    f"Cannot load the PSP model '{config.get('name')}': it was "
                    "saved by keras-psp 0.1.0 as a recipe this version no "
                    "longer reads (its weights are stored under the layers "
                    "of 0.1.0's wrappers). Build its original model again "
                    "(e.g. `keras_hub.models.Backbone.from_preset(...)` or "
                    "the code that built it) and call "
                    "`keras_psp.enable_psp(model, ...)` with the settings "
                    "you used."
                )
        return super().from_config(config, custom_objects)


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
