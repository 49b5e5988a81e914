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
