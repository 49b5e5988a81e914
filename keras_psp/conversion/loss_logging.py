"""`psp_loss` in the logs of `fit` and `evaluate`, on any model class."""

import functools

import keras
from keras import ops

from keras_psp import keras_internals

TRACKER = "_psp_loss_tracker"


@keras.saving.register_keras_serializable(package="keras_psp")
class PSPLossMetric(keras.metrics.Mean):
    """The mean PSP term per example, shown as `psp_loss` (training-time
    state: saving keeps the plain model, so it saves nothing)."""

    def __init__(self, name="psp_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def save_own_variables(self, store):
        pass

    def load_own_variables(self, store):
        pass


def _psp_total(model, layers):
    found = keras_internals.own_losses(model, layers)
    return ops.sum(ops.stack(found)) if found else ops.zeros(())


def install(model):
    """Makes `model` log its PSP term as `psp_loss`: a metric tracked by
    the model, updated where every Keras train and test step (a model's
    own `train_step` included, if it calls it) computes its loss,
    `compute_loss`, replaced on this instance only."""
    from keras_psp.models.psp_model import psp_layers  # it imports `layers`

    tracker = PSPLossMetric()
    keras_internals.attach(model, TRACKER, tracker)
    original = model.compute_loss
    # Found once: walking every layer at each step costs on PyTorch, whose
    # steps run eagerly.
    layers = psp_layers(model)

    @functools.wraps(original)
    def compute_loss(*args, **kwargs):
        loss = original(*args, **kwargs)
        y_pred = kwargs.get("y_pred", args[2] if len(args) > 2 else None)
        first = keras.tree.flatten(y_pred)[0] if y_pred is not None else None
        size = 1.0 if first is None else ops.shape(first)[0]
        tracker.update_state(
            _psp_total(model, layers), sample_weight=ops.cast(size, "float32")
        )
        return loss

    model.compute_loss = compute_loss


def remove(model):
    """Undoes `install`."""
    if "compute_loss" in vars(model):
        delattr(model, "compute_loss")
    if TRACKER in vars(model):
        keras_internals.detach(model, TRACKER)
