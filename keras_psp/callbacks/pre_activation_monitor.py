"""`PreActivationMonitor`: the mean squared pre-activation ⟨z²⟩ of every
layer, and the PSP term, in each epoch's logs."""

import keras
import numpy as np
from keras import ops

from keras_psp import keras_internals
from keras_psp import pre_activations
from keras_psp.callbacks import probes
from keras_psp.layers.psp_layer import PSPLayerMixin
from keras_psp.models.psp_model import psp_layers
from keras_psp.penalty import psp_penalty
from keras_psp.validation import validate_bool


class _PreActivationProbe(keras.layers.Layer):
    """Measures the pre-activation z of `target` from `target`'s input.

    It returns, per example, ⟨z²⟩ over the layer's units and, for a PSP
    layer, the PSP penalty of the whole batch (repeated along the batch
    axis, which `predict_on_batch` expects on every output): the reductions
    run in the compiled forward pass, so only a few numbers per example
    leave it. It shares `target`'s weights (it holds no variable of its own).
    """

    def __init__(self, target, **kwargs):
        super().__init__(**kwargs)
        # A plain attribute holder, so the target is not tracked twice.
        self._target = [target]
        # Called as the target is called (keyword-only inputs, tensors
        # beside plain values); a `keras.ops` node takes its input only.
        if isinstance(target, keras.layers.Layer):
            keras_internals.adopt_call_signature(self, target)

    def _pre_activations(self, *args, **kwargs):
        """The list of z's of one call of the target (a composite layer
        has several)."""
        (target,) = self._target
        kind = pre_activations.layer_kind(target)
        if kind == pre_activations.PSP:
            z = target.pre_activation(*args, **kwargs)
            return z if isinstance(z, list) else [z]
        if kind == pre_activations.AFFINE:
            return [pre_activations.affine_output(target, *args, **kwargs)]
        if kind == pre_activations.ACTIVATION:
            return [args[0]]  # z is its input
        # A composite layer: its inner pre-activations.
        return pre_activations.inner_pre_activations(target, *args, **kwargs)

    def call(self, *args, **kwargs):
        (target,) = self._target
        per_example, penalty = [], 0.0
        for z in self._pre_activations(*args, **kwargs):
            z = ops.cast(z, "float32")
            unit_axes = tuple(range(1, len(z.shape)))
            per_example.append(
                ops.mean(ops.square(z), axis=unit_axes) if unit_axes else z * z
            )
            if isinstance(target, PSPLayerMixin):
                penalty += psp_penalty(z, target.strength, target.reduction)
        # ⟨z²⟩ over a composite layer's inner pre-activations: their mean.
        z2 = ops.mean(ops.stack(per_example), axis=0)
        if not isinstance(target, PSPLayerMixin):
            return z2
        return z2, ops.zeros_like(z2) + penalty


def _probe_model(model, regularize_logits):
    """The probe model of every pre-activation's ⟨z²⟩ (flat: each PSP
    layer's penalty right after its ⟨z²⟩), and `(key, layer)` for each."""

    def tap(layer, index, args, kwargs, output):
        return _PreActivationProbe(layer, name=f"probe_{index}")(
            *args, **kwargs
        )

    return probes.probe_model(model, regularize_logits, tap, "pre-activation")


class PreActivationMonitor(keras.callbacks.Callback):
    """Logs the mean squared pre-activation ⟨z²⟩ of every layer each epoch.

    On a fixed batch `x` (held out from training, e.g. the first test
    batch), in inference mode, at the end of each epoch, it adds to the
    epoch's logs, so that `CSVLogger`, `TensorBoard` and `History` get them:

    - `z2/<layer>`: ⟨z²⟩ = mean of z² over the batch and the layer's units,
      for every pre-activation (the layers `keras_psp.apply_psp` would
      regularize, and the PSP layers), whether it is penalized or not:
      this is the quantity of the paper's Fig. 2b, comparable between
      unregularized, L2 and PSP models;
    - `z2_mean`: the mean of these over the layers;
    - `psp_term`: for models with PSP layers, the PSP penalty of the batch
      (each layer's `strength` and `reduction`).

    It costs one forward pass of `x` per epoch. When training begins it
    moves itself ahead of the other callbacks of that `fit` (the list you
    passed stays as it is), so `CSVLogger`, `TensorBoard` and your own
    callbacks get these entries in any order of the list; it measures the
    weights before another callback's `on_epoch_end` changes them. Layers
    inside nested models are measured too, as `z2/<nested model>/<layer>`;
    a layer called twice in the graph (shared) is measured at each call
    (`z2/<layer>`, `z2/<layer>_call2`, ...).

    Args:
        x: the fixed batch of inputs: a NumPy array, a tensor of any
            backend or a `tf.Tensor` (e.g. `next(iter(dataset))[0]`); a
            list or dict of them for several inputs. It is checked against
            the model's inputs when training begins.
        per_layer: whether to log `z2/<layer>` for every layer (else only
            `z2_mean` and `psp_term`).
        regularize_logits: whether the logits count as a pre-activation, as
            in `apply_psp`.

    Example:

    ```python
    monitor = keras_psp.callbacks.PreActivationMonitor(x_test[:1000])
    logger = keras.callbacks.CSVLogger("history.csv")
    model.fit(x, y, epochs=10, callbacks=[monitor, logger])
    ```
    """

    def __init__(self, x, per_layer=True, regularize_logits=True):
        super().__init__()
        self.x = probes.fixed_batch(x, "PreActivationMonitor")
        self.per_layer = validate_bool(per_layer, "per_layer")
        self.regularize_logits = validate_bool(
            regularize_logits, "regularize_logits"
        )
        self._probe = None

    def _build_probe(self):
        probes.check_graph_model(self.model, "PreActivationMonitor")
        probes.check_batch_fits(self.model, self.x, "PreActivationMonitor")
        self._layers, self._probe = _probe_model(
            self.model, self.regularize_logits
        )
        # Walks the model once, not every epoch.
        self._has_psp = bool(psp_layers(self.model))

    # Stays ahead of the callbacks that read the logs (`probes.run_ahead`).
    _runs_ahead = True

    def on_train_begin(self, logs=None):
        probes.run_ahead(self)
        # A batch that does not fit fails here, not after an epoch (a model
        # without an Input gets its input from fit, on the first batch).
        if self._probe is None and probes.can_probe_now(self.model):
            self._build_probe()

    def measure(self):
        """Returns `{name: value}` for the model's current weights."""
        if self._probe is None:
            self._build_probe()
        # A compiled forward pass (predict_on_batch), in inference mode.
        outputs = self._probe.predict_on_batch(self.x)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        outputs = iter(outputs)
        values = {}
        means = []
        psp_term = 0.0
        for key, layer in self._layers:
            mean = float(np.mean(np.asarray(next(outputs), dtype=np.float64)))
            means.append(mean)
            if self.per_layer:
                values[f"z2/{key}"] = mean
            if isinstance(layer, PSPLayerMixin):
                psp_term += float(np.asarray(next(outputs))[0])
        values["z2_mean"] = float(np.mean(means))
        if self._has_psp:
            values["psp_term"] = psp_term
        return values

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self.measure())
