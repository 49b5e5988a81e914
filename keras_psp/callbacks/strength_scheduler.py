"""`StrengthScheduler`: sets the PSP strength λ each epoch from a Keras
schedule object, and logs it."""

import math

import keras
import numpy as np
from keras import ops

from keras_psp.models.psp_model import psp_layers
from keras_psp.penalty import FLOAT32_MAX


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
    >>> from keras_psp.callbacks import step_strength
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
