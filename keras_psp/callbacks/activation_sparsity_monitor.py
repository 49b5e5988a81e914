"""`ActivationSparsityMonitor`: each layer's activation sparsity in each
epoch's logs."""

import keras
import numpy as np

from keras_psp import pre_activations
from keras_psp.callbacks import probes
from keras_psp.regularizers.activation_sparsity import activation_sparsity
from keras_psp.validation import validate_axis
from keras_psp.validation import validate_bool


class _SparsityProbe(keras.layers.Layer):
    """The perplexity-based sparsity of each example's activations."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis

    def call(self, activations):
        return activation_sparsity(activations, self.axis)


class ActivationSparsityMonitor(keras.callbacks.Callback):
    """Logs every layer's activation sparsity each epoch.

    Activation sparsity rising in a layer is the overfitting signal of
    Huesmann et al. (arXiv 2002.09237, 2104.06153): this monitor shows it
    layer by layer, like `PreActivationMonitor` shows ⟨z²⟩. On a fixed
    batch `x` (held out from training), in inference mode, at the end of
    each epoch, it adds to the epoch's logs (for `CSVLogger`,
    `TensorBoard`, `History`):

    - `sparsity/<layer>`: the mean over `x` of the perplexity-based
      sparsity (`keras_psp.regularizers.activation_sparsity`: 0 when all
      channels are equally active, 1 when one carries everything) of the
      layer's activations, for every layer with a non-linear activation
      (its output), every activation layer and every PSP layer, nested
      models' included (`sparsity/<nested model>/<layer>`); the logits
      are left out;
    - `sparsity_mean`: the mean of these over the layers.

    It costs one forward pass of `x` per epoch. Like
    `PreActivationMonitor`, it moves itself ahead of the other callbacks
    of the `fit` when training begins, so `CSVLogger` and `TensorBoard`
    record its entries in any order of the callbacks list.

    Args:
        x: the fixed batch of inputs (NumPy array or tensor; a list or
            dict of them for several inputs), checked against the model's
            inputs when training begins.
        per_layer: whether to log `sparsity/<layer>` (else only
            `sparsity_mean`).
        axis: the channel axis of the activations (default -1).

    Example:

    ```python
    monitor = keras_psp.callbacks.ActivationSparsityMonitor(x_test[:1000])
    logger = keras.callbacks.CSVLogger("history.csv")
    model.fit(x, y, epochs=10, callbacks=[monitor, logger])
    ```
    """

    def __init__(self, x, per_layer=True, axis=-1):
        super().__init__()
        self.x = probes.fixed_batch(x, "ActivationSparsityMonitor")
        self.per_layer = validate_bool(per_layer, "per_layer")
        self.axis = validate_axis(axis)
        self._probe = None

    def _tap(self, layer, index, args, kwargs, output):
        if id(layer) in self._outputs:
            return None  # the model's output (also a PSP model's softmax)
        kind = pre_activations.layer_kind(layer)
        if kind not in (
            pre_activations.AFFINE,
            pre_activations.ACTIVATION,
            pre_activations.PSP,
        ):
            return None  # a composite layer's output is not an activation
        # A PSP layer keeps its activation in `psp_activation`.
        activation = getattr(
            layer, "psp_activation", getattr(layer, "activation", None)
        )
        if kind != pre_activations.ACTIVATION or activation is not None:
            if pre_activations.is_linear(activation):
                return None  # PSP logits, linear bottlenecks: not activations
        rank = len(output.shape)
        if not -rank <= self.axis < rank or self.axis % rank == 0:
            raise ValueError(
                f"Argument `axis`={self.axis} of ActivationSparsityMonitor "
                f"is not a channel axis of layer `{layer.name}`'s output "
                f"(rank {rank}, shape {tuple(output.shape)}): the default "
                "-1 (channels last) fits every layer."
            )
        probe = _SparsityProbe(self.axis, name=f"sparsity_probe_{index}")
        return probe(output)

    def _build_probe(self):
        probes.check_graph_model(self.model, "ActivationSparsityMonitor")
        probes.check_batch_fits(self.model, self.x, "ActivationSparsityMonitor")
        self._outputs = {
            id(layer) for layer in pre_activations.output_layers(self.model)
        }
        self._layers, self._probe = probes.probe_model(
            self.model, False, self._tap, "activation"
        )

    # Stays ahead of the callbacks that read the logs (`probes.run_ahead`).
    _runs_ahead = True

    def on_train_begin(self, logs=None):
        probes.run_ahead(self)
        # A batch or an axis that does not fit fails here, not after an
        # epoch (a model without an Input gets its input from fit, on the
        # first batch).
        if self._probe is None and probes.can_probe_now(self.model):
            self._build_probe()

    def measure(self):
        """Returns `{name: value}` for the model's current weights."""
        if self._probe is None:
            self._build_probe()
        outputs = self._probe.predict_on_batch(self.x)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        values, means = {}, []
        for (key, _), output in zip(self._layers, outputs, strict=True):
            mean = float(np.mean(np.asarray(output, dtype=np.float64)))
            means.append(mean)
            if self.per_layer:
                values[f"sparsity/{key}"] = mean
        values["sparsity_mean"] = float(np.mean(means)) if means else 0.0
        return values

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self.measure())
