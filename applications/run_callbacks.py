"""The callbacks a training run adds to Keras' own: where a non-finite
loss stopped it, how long each epoch took, and a short progress bar."""

import time

import keras

# The bar's entries: with Keras' 20-column bar and the training accuracy
# too, a line of MNIST's 600 steps was 118 columns; these, on a 10-column
# bar, take at most 99 (a loss >= 10 and an hour-long epoch included).
PROGRESS_KEYS = ("loss", "psp_loss", "val_accuracy")
PROGRESS_WIDTH = 10


class TerminateOnNaN(keras.callbacks.TerminateOnNaN):
    """`keras.callbacks.TerminateOnNaN` (stops the run at the first batch
    whose loss is not finite), remembering where: `failure` is then
    "non-finite loss (nan) at epoch E batch B" (both from 1), else None."""

    failure = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        super().on_batch_end(batch, logs)
        if self.model.stop_training and self.failure is None:
            loss = float((logs or {}).get("loss", float("nan")))
            self.failure = (
                f"non-finite loss ({loss}) at epoch {self.epoch + 1} "
                f"batch {batch + 1}"
            )


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_seconds` (training and evaluation) to the epoch's logs."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs["epoch_seconds"] = time.perf_counter() - self.start


class ShortProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar showing only `keys`, on a bar `width` columns
    wide, so that a line fits 100 columns: the training accuracy, the
    per-layer ⟨z²⟩, λ, timings and validation losses stay in the CSV (and
    TensorBoard) logs and in `fit`'s history. Follows `fit`'s `verbose`."""

    def __init__(self, keys=PROGRESS_KEYS, width=PROGRESS_WIDTH):
        super().__init__()
        self.keys = tuple(keys)
        self.width = width

    def _maybe_init_progbar(self):
        # ProgbarLogger makes its `Progbar` here (each epoch) with Keras'
        # default width; only the width is changed.
        super()._maybe_init_progbar()
        self.progbar.width = self.width

    def _short(self, logs):
        return {k: v for k, v in (logs or {}).items() if k in self.keys}

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, self._short(logs))

    def on_test_batch_end(self, batch, logs=None):
        super().on_test_batch_end(batch, self._short(logs))

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, self._short(logs))

    def on_test_end(self, logs=None):
        super().on_test_end(self._short(logs))


class RegularizedShare(keras.callbacks.Callback):
    """Logs `regularized_share`: for `GradientCoherentSGD`, the share of the
    epoch's steps on which the strong regularization was imposed (mean over
    the kernels)."""

    def _state(self):
        optimizer = self.model.optimizer
        # Mixed float16 wraps it in a LossScaleOptimizer.
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)
        if not optimizer.built:
            return 0, None
        steps = int(keras.ops.convert_to_numpy(optimizer.iterations))
        return steps, optimizer.regularized_counts()

    def on_epoch_begin(self, epoch, logs=None):
        self._start = self._state()

    def on_epoch_end(self, epoch, logs=None):
        steps, counts = self._state()
        start_steps, start_counts = self._start
        if logs is None or counts is None or steps == start_steps:
            return
        if start_counts is None:
            start_counts = 0 * counts
        shares = (counts - start_counts) / (steps - start_steps)
        logs["regularized_share"] = float(shares.mean())
