"""Callbacks: watching pre-activations, scheduling the PSP strength.

- `PreActivationMonitor` logs the mean squared pre-activation ⟨z²⟩ of every
  layer (and the PSP term) each epoch.
- `StrengthScheduler` sets the PSP strength λ each epoch from a Keras
  schedule object (`keras.optimizers.schedules.LearningRateSchedule`,
  called with the epoch index), logs it as `psp_strength`, and serializes
  with `get_config`; `step_strength`, `cosine_strength` and
  `warmup_strength` build common schedules of λ.
"""

import math
import numbers

import keras
import numpy as np
from keras import ops

from keras_psp import pre_activations
from keras_psp.layers.psp_layer import PSPLayerMixin
from keras_psp.models.psp_model import psp_layers
from keras_psp.penalty import FLOAT32_MAX
from keras_psp.penalty import psp_penalty
from keras_psp.penalty import validate_strength
from keras_psp.validation import validate_positive_int


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
        return pre_activations.inner_pre_activations(
            target,
            pre_activations.inner_pre_activation_layers(target),
            *args,
            **kwargs,
        )

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
    """A model sharing `model`'s weights whose outputs are the probes of
    every pre-activation, nested models' included; and `(key, layer)` for
    each probe, in the order of the outputs."""
    found, _ = pre_activations.find_pre_activations(model, regularize_logits)
    if not found:
        raise ValueError(
            "The model has no pre-activation to monitor (no layer with a "
            "non-linear activation, no activation layer, no PSP layer)."
        )
    paths = {id(entry.layer): entry.path for entry in found}
    probes, keys, calls = [], [], {}

    def call_function(layer, *args, **kwargs):
        if id(layer) in paths:
            key = "/".join(paths[id(layer)] + (layer.name,))
            calls[key] = calls.get(key, 0) + 1
            if calls[key] > 1:
                key = f"{key}_call{calls[key]}"
            probe = _PreActivationProbe(layer, name=f"probe_{len(keys)}")
            probes.append(probe(*args, **kwargs))
            keys.append((key, layer))
        return layer(*args, **kwargs)

    inputs = keras.tree.map_structure(
        lambda t: keras.Input(batch_shape=t.shape, dtype=t.dtype), model.input
    )
    pre_activations.run_graph(model, inputs, call_function)
    # Flat: ⟨z²⟩ per layer, each PSP layer's penalty right after its ⟨z²⟩.
    return keys, keras.Model(inputs, keras.tree.flatten(probes))


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

    It costs one forward pass of `x` per epoch. Put it before `CSVLogger`
    in the callbacks list so that the logger sees these entries. Layers
    inside nested models are measured too, as `z2/<nested model>/<layer>`;
    a layer called twice in the graph (shared) is measured at each call
    (`z2/<layer>`, `z2/<layer>_call2`, ...).

    Args:
        x: the fixed batch of inputs: a NumPy array, a tensor of any
            backend or a `tf.Tensor` (e.g. `next(iter(dataset))[0]`).
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
        # NumPy feeds predict_on_batch on every backend; a tf.Tensor (e.g. a
        # batch taken from a tf.data pipeline) would not on JAX or PyTorch.
        self.x = keras.tree.map_structure(ops.convert_to_numpy, x)
        self.per_layer = per_layer
        self.regularize_logits = regularize_logits
        self._probe = None

    def measure(self):
        """Returns `{name: value}` for the model's current weights."""
        if self._probe is None:
            self._layers, self._probe = _probe_model(
                self.model, self.regularize_logits
            )
            # Walks the model once, not every epoch.
            self._has_psp = bool(psp_layers(self.model))
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


def _check_factor(value, name):
    """Returns `value` as a float, or raises naming `name` unless it is a
    finite real number >= 0."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, numbers.Real
    ):
        raise TypeError(
            f"Argument `{name}` must be a finite real number >= 0. "
            f"Received: {name}={value!r} of type {type(value).__name__}."
        )
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"Argument `{name}` must be a finite real number >= 0. "
            f"Received: {name}={value!r}."
        )
    return value


def step_strength(strength, decay_epochs, factor=0.1):
    """λ = `strength`, multiplied by `factor` at each of `decay_epochs`.

    At epoch e (0-based) λ is `strength * factor**k`, k being the number of
    entries of `decay_epochs` that are <= e (an epoch listed twice decays
    twice).

    Args:
        strength: λ before the first decay.
        decay_epochs: the 0-based epochs at whose start λ is multiplied by
            `factor`; integers >= 0, in any order.
        factor: the multiplier, >= 0.

    Returns:
        A `keras.optimizers.schedules.PiecewiseConstantDecay` (with no
        `decay_epochs`, a constant `ExponentialDecay`), for
        `StrengthScheduler`.

    Example:

    >>> schedule = step_strength(1e-3, decay_epochs=[2, 4])
    >>> [round(float(schedule(epoch)), 8) for epoch in range(5)]
    [0.001, 0.001, 0.0001, 0.0001, 1e-05]
    """
    strength = validate_strength(strength)
    factor = _check_factor(factor, "factor")
    try:
        epochs = list(decay_epochs)
    except TypeError:
        epochs = None
    if epochs is None or not all(
        isinstance(e, numbers.Integral)
        and not isinstance(e, (bool, np.bool_))
        and e >= 0
        for e in epochs
    ):
        raise ValueError(
            "Argument `decay_epochs` must be a list of integers >= 0 (0-based "
            f"epochs). Received: decay_epochs={decay_epochs!r}."
        )
    epochs = sorted(int(e) for e in epochs)
    if not epochs:
        return keras.optimizers.schedules.ExponentialDecay(
            strength, decay_steps=1, decay_rate=1.0
        )
    # PiecewiseConstantDecay gives values[i + 1] for boundaries[i] < step
    # <= boundaries[i + 1]: on integer epochs, epoch > e - 1 is epoch >= e.
    boundaries = sorted(set(epochs))
    values = [strength] + [
        strength * factor ** sum(e <= b for e in epochs) for b in boundaries
    ]
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [b - 1 for b in boundaries], values
    )


def cosine_strength(strength, epochs, final_factor=0.0):
    """λ decayed from `strength` to `final_factor * strength` along a
    cosine over `epochs` epochs, then held.

    At epoch e λ is `strength * (f + (1 - f) * (1 + cos(π p)) / 2)`, with
    f = `final_factor` and p = min(e / max(epochs - 1, 1), 1): `strength`
    at epoch 0, `final_factor * strength` from epoch `epochs - 1` on.

    Args:
        strength: λ at epoch 0.
        epochs: the number of epochs of the decay (a positive integer).
        final_factor: λ's final value as a fraction of `strength`, >= 0.

    Returns:
        A `keras.optimizers.schedules.CosineDecay`, for `StrengthScheduler`.

    Example:

    >>> schedule = cosine_strength(1e-3, epochs=5, final_factor=0.2)
    >>> [round(float(schedule(epoch)), 6) for epoch in (0, 2, 4, 9)]
    [0.001, 0.0006, 0.0002, 0.0002]
    """
    strength = validate_strength(strength)
    validate_positive_int(epochs, "epochs")
    final_factor = _check_factor(final_factor, "final_factor")
    return keras.optimizers.schedules.CosineDecay(
        strength, decay_steps=max(epochs - 1, 1), alpha=final_factor
    )


def warmup_strength(strength, epochs):
    """λ ramped linearly from `strength / epochs` to `strength` over
    `epochs` epochs, then held.

    At epoch e λ is `strength * min((e + 1) / epochs, 1)`.

    Args:
        strength: λ from epoch `epochs - 1` on.
        epochs: the number of epochs of the ramp (a positive integer).

    Returns:
        A `keras.optimizers.schedules.PolynomialDecay` of power 1 (from
        `strength / epochs` up to `strength`), for `StrengthScheduler`.

    Example:

    >>> schedule = warmup_strength(1e-3, epochs=4)
    >>> [round(float(schedule(epoch)), 6) for epoch in range(6)]
    [0.00025, 0.0005, 0.00075, 0.001, 0.001, 0.001]
    """
    strength = validate_strength(strength)
    validate_positive_int(epochs, "epochs")
    # (s/E - s) * (1 - e/(E-1)) + s = s (e+1) / E for e <= E - 1; with
    # E = 1, decay_steps 1 keeps it constant (s/1 = s) without 0/0.
    return keras.optimizers.schedules.PolynomialDecay(
        strength / epochs,
        decay_steps=max(epochs - 1, 1),
        end_learning_rate=strength,
        power=1.0,
    )


class StrengthScheduler(keras.callbacks.Callback):
    """Sets the PSP strength λ of the model's PSP layers at each epoch.

    `schedule` is a Keras schedule object
    (`keras.optimizers.schedules.LearningRateSchedule`: `step_strength`,
    `cosine_strength`, `warmup_strength` make common ones, and any of Keras'
    schedules works, e.g. `ExponentialDecay`), called with the 0-based
    epoch index as its step. Its value `schedule(epoch)` is the model's λ
    itself (not a factor of it): at the start of each epoch the PSP layers'
    `strength` variables are set from it, and the compiled train step reads
    the variables, so nothing is recompiled. The model's λ in force is
    logged as `psp_strength` (a float).

    **The model's λ is the sum of its PSP layers' λ's.** Each layer gets
    `schedule(epoch) * r`, where r is the layer's share of that sum when
    training first begins (`on_train_begin` of the first `fit`): the layers
    keep their proportions. So:

    - for `keras_psp.models.LeNet5(psp_strength=λ)` and the other models,
      which split λ over their L PSP layers (λ/L each; the default
      `psp_divide_by_num_layers=True`), and for `apply_psp(model, λ,
      divide_by_num_layers=True)`, the model's λ is the λ they were given:
      a schedule of λ's starts where the model was built, and each layer
      gets `schedule(epoch) / L`;
    - for `apply_psp(model, λ)` (each of the L layers gets λ, the default),
      the model's λ is L·λ: pass a schedule of L·λ's to give each layer λ.
    - If every layer's λ is 0 when training begins, they share the
      schedule's value equally.

    The shares do not depend on λ's scale, so a resumed run (layers
    restored from a checkpoint holding a decayed λ, by `load_weights` or
    `BackupAndRestore`, then `fit(initial_epoch=...)`) gets exactly
    `schedule(epoch)` at each epoch, as the uninterrupted run did: the
    decay is not compounded. Put the scheduler before `BackupAndRestore`
    in the callbacks list, so that the shares are read from the model as
    built (this matters only if a checkpoint holds λ = 0 everywhere).

    `get_config` gives a JSON-serializable config (the schedule through
    `keras.optimizers.schedules.serialize`), and `from_config` rebuilds
    the scheduler from it. The paper names a decay policy for λ as future
    work.

    Args:
        schedule: a `keras.optimizers.schedules.LearningRateSchedule`
            instance whose value at each epoch is a finite λ >= 0 (finite in
            float32, where λ is stored). Plain Python functions are refused:
            they are not serializable, and those written for the older
            `StrengthScheduler` returned a factor, not λ.
        verbose: 1 to print λ at each epoch.

    Raises:
        TypeError: at construction, if `schedule` is not a schedule object.
        ValueError: at the start of an epoch, if the schedule's value there
            is not a finite λ >= 0 in float32 (the message names the
            epoch); at the start of training, if the model has no PSP
            layer.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> from keras_psp import PSPDense
    >>> from keras_psp.models.psp_model import PSPModel
    >>> inputs = keras.Input((4,))
    >>> hidden = PSPDense(8, activation="relu", strength=1e-3)(inputs)
    >>> model = PSPModel(inputs, keras.layers.Dense(1)(hidden))
    >>> model.compile("sgd", "mse")
    >>> scheduler = StrengthScheduler(step_strength(1e-3, decay_epochs=[2]))
    >>> x, y = np.ones((8, 4)), np.ones((8, 1))
    >>> history = model.fit(x, y, epochs=3, verbose=0, callbacks=[scheduler])
    >>> [round(value, 8) for value in history.history["psp_strength"]]
    [0.001, 0.001, 0.0001]
    >>> rebuilt = StrengthScheduler.from_config(scheduler.get_config())
    >>> round(float(rebuilt.schedule(2)), 8)
    0.0001
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not isinstance(
            schedule, keras.optimizers.schedules.LearningRateSchedule
        ):
            raise TypeError(
                "Argument `schedule` must be a "
                "`keras.optimizers.schedules.LearningRateSchedule` instance "
                "giving λ at each epoch (e.g. `keras_psp.callbacks."
                "step_strength(1e-3, [10])` or `keras.optimizers.schedules."
                "CosineDecay(1e-3, decay_steps=49)`). Received: "
                f"schedule={schedule!r} of type {type(schedule).__name__}."
            )
        self.schedule = schedule
        self.verbose = verbose
        self._shares = None
        self._shares_model = None
        self._strength = None

    def get_config(self):
        return {
            "schedule": keras.optimizers.schedules.serialize(self.schedule),
            "verbose": self.verbose,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["schedule"] = keras.optimizers.schedules.deserialize(
            config["schedule"]
        )
        return cls(**config)

    def on_train_begin(self, logs=None):
        # The shares are read once per model: a second fit (or the end of
        # a schedule reaching 0) must not change them.
        if self._shares is not None and self._shares_model is self.model:
            return
        layers = psp_layers(self.model)
        if not layers:
            raise ValueError("StrengthScheduler needs a model with PSP layers.")
        strengths = [float(ops.convert_to_numpy(la.strength)) for la in layers]
        total = math.fsum(strengths)
        if total > 0:
            shares = [strength / total for strength in strengths]
        else:
            shares = [1 / len(layers)] * len(layers)
        self._shares = list(zip(layers, shares, strict=True))
        self._shares_model = self.model

    def strength(self, epoch):
        """Returns the model's λ at `epoch` (0-based) as a float, after
        checking it.

        Raises:
            ValueError: if it is not a finite λ >= 0 in float32.
        """
        value = self.schedule(epoch)
        try:
            array = np.asarray(ops.convert_to_numpy(value), dtype=np.float64)
            strength = float(array) if array.size == 1 else None
        except (TypeError, ValueError, OverflowError):
            strength = None
        if (
            strength is None
            or not math.isfinite(strength)
            or not 0 <= strength <= FLOAT32_MAX
        ):
            shown = value if strength is None else strength
            raise ValueError(
                "Argument `schedule` of StrengthScheduler must give a finite "
                f"λ >= 0 (at most {FLOAT32_MAX:.4g}, λ is float32) at every "
                f"epoch. At epoch {epoch} (0-based) it gave {shown!r}. "
                f"Received: schedule={self.schedule!r}."
            )
        return strength

    def on_epoch_begin(self, epoch, logs=None):
        strength = self.strength(epoch)
        for layer, share in self._shares:
            layer.strength.assign(strength * share)
        self._strength = strength
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: PSP strength λ = {strength:.4g}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["psp_strength"] = self._strength
