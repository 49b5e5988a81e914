"""`StrengthScheduler`: sets the PSP strength λ each epoch from a Keras
schedule object, and logs it."""

import math

import keras
import numpy as np
from keras import ops

from keras_psp.models.psp_model import psp_layers
from keras_psp.models.psp_model import strength_shares
from keras_psp.penalty import FLOAT32_MAX


class StrengthScheduler(keras.callbacks.Callback):
    """Sets the PSP strength λ of the model's PSP layers at each epoch.

    `schedule` is a Keras schedule object
    (`keras.optimizers.schedules.LearningRateSchedule`: `step_strength`,
    `cosine_strength`, `warmup_strength` make common ones, and any of Keras'
    schedules works, e.g. `ExponentialDecay`), called with the 0-based
    epoch index as its step. Its value `schedule(epoch)` is the model's λ
    itself (not a factor of it), on the scale the model was built with: the
    λ written to `PSPDense`, `PSPConv2D`, `PSPActivation` or a wrapper, to
    `apply_psp(model, λ)` (with or without `divide_by_num_layers=True`), or
    to a builder's `psp_strength`. A schedule whose first value is that λ
    changes nothing at epoch 0, whichever way the model was built. At the
    start of each epoch the PSP layers' `strength` variables are set from
    it, and the compiled train step reads the variables, so nothing is
    recompiled. The value in force is logged as `psp_strength` (a float),
    on the same scale.

    Each layer gets `schedule(epoch) * r / L`:

    - L is the layer's `strength_divisor`: the number of layers λ was
      divided among (`apply_psp(..., divide_by_num_layers=True)` and the
      builders of `keras_psp.models`, which do so by default, give each of
      their L layers λ/L and record L), or 1 for a layer given λ itself
      (`PSPDense(strength=λ)`, `apply_psp(model, λ)`);
    - r is 1 for a model built with one λ. Where layers were given
      different λ's (on that scale: `strength * strength_divisor`), the
      model's λ is the largest of them and r is each layer's ratio to it,
      read when training first begins (`on_train_begin` of the first `fit`),
      so the layers keep their proportions; where all are 0, r is 1.

    r does not depend on λ's scale, so a resumed run (layers restored from
    a checkpoint holding a decayed λ, by `load_weights` or
    `BackupAndRestore`, then `fit(initial_epoch=...)`) gets exactly
    `schedule(epoch)` at each epoch, as the uninterrupted run did: the
    decay is not compounded. Put the scheduler before `BackupAndRestore`
    in the callbacks list, so that the ratios are read from the model as
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

    Two `PSPDense` layers built with λ = 1e-3: the schedule starts there,
    each layer keeps 1e-3, and the log says so.

    >>> import keras
    >>> import numpy as np
    >>> from keras_psp import PSPDense
    >>> from keras_psp.callbacks import step_strength
    >>> from keras_psp.models.psp_model import PSPModel
    >>> inputs = keras.Input((4,))
    >>> hidden = PSPDense(8, activation="relu", strength=1e-3)(inputs)
    >>> hidden = PSPDense(8, activation="relu", strength=1e-3)(hidden)
    >>> model = PSPModel(inputs, keras.layers.Dense(1)(hidden))
    >>> model.compile("sgd", "mse")
    >>> scheduler = StrengthScheduler(step_strength(1e-3, decay_epochs=[2]))
    >>> x, y = np.ones((8, 4)), np.ones((8, 1))
    >>> history = model.fit(x, y, epochs=3, verbose=0, callbacks=[scheduler])
    >>> [round(value, 8) for value in history.history["psp_strength"]]
    [0.001, 0.001, 0.0001]
    >>> [round(float(layer.strength.numpy()), 8) for layer in model.layers[1:3]]
    [0.0001, 0.0001]
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
        # The ratios are read once per model: a second fit (or the end of
        # a schedule reaching 0) must not change them.
        if self._shares is not None and self._shares_model is self.model:
            return
        if not psp_layers(self.model):
            raise ValueError("StrengthScheduler needs a model with PSP layers.")
        self._shares = strength_shares(self.model)
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
        for layer, ratio, divisor in self._shares:
            # `strength * 1.0 / L` is exactly the builders' `λ / L`.
            layer.strength.assign(strength * ratio / divisor)
        self._strength = strength
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: PSP strength λ = {strength:.4g}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["psp_strength"] = self._strength
