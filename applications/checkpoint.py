"""The backup a run resumes from: one file per finished epoch, atomic.

Keras' `BackupAndRestore` writes its weights file in place and its epoch
number in a second file after it, so a kill during the write leaves a
truncated file, and a kill between the two leaves weights one epoch ahead
of the epoch number; either way the resumed run is not the run that was
stopped. `EpochBackup` writes each backup whole, under a name that holds
its epoch count (`epoch-0003.weights.h5`: three epochs done), and renames
it into place, so the newest name is always a complete backup of the
epoch it names.
"""

import os
import re

import keras

from applications import run_dir as run_dirs

PATTERN = re.compile(r"epoch-(\d+)\.weights\.h5")


class CorruptBackupError(RuntimeError):
    """The backup cannot be read."""


def latest(directory):
    """`(epochs, path)` of the newest backup in `directory`: the number of
    epochs it holds and its file; `(0, None)` when there is none."""
    found = []
    if os.path.isdir(directory):
        for name in os.listdir(directory):
            match = PATTERN.fullmatch(name)
            if match:
                found.append((int(match.group(1)), name))
    if not found:
        return 0, None
    epochs, name = max(found)
    return epochs, os.path.join(directory, name)


def restore(model, path):
    """Loads the backup `path` (weights, optimizer state, λ) into the
    compiled `model`.

    Raises:
        CorruptBackupError: the file cannot be read as this model's backup.
    """
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    try:
        model.load_weights(path)
    except Exception as error:  # h5py, OSError, ValueError: all say "bad"
        first = str(error).strip().splitlines()
        raise CorruptBackupError(
            f"the backup {path} cannot be read ({type(error).__name__}: "
            f"{first[0] if first else ''})"
        ) from error


class EpochBackup(keras.callbacks.Callback):
    """Backs the model up (weights, optimizer state, PSP λ) at the end of
    every epoch, atomically, keeping only the newest backup.

    Put it after every callback that writes the epoch's records (the CSV
    row): a run killed after the row and before the backup reruns that
    epoch, and `run_dir.keep_history` drops the row it will write again.

    Args:
        directory: where the backups go (created when needed).
    """

    def __init__(self, directory):
        super().__init__()
        self.directory = directory

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.directory, exist_ok=True)
        path = os.path.join(self.directory, f"epoch-{epoch + 1:04d}.weights.h5")
        with run_dirs.atomic_path(path) as tmp:
            self.model.save_weights(tmp)
        for name in os.listdir(self.directory):
            if PATTERN.fullmatch(name) and name != os.path.basename(path):
                os.remove(os.path.join(self.directory, name))
