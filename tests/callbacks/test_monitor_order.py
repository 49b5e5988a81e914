"""The monitors' entries reach every callback, in any order of the list."""

import csv

import keras
import numpy as np

from keras_psp.callbacks import ActivationSparsityMonitor
from keras_psp.callbacks import PreActivationMonitor

L = keras.layers


class Reader(keras.callbacks.Callback):
    """Records the keys of each epoch's logs and its `on_train_begin`
    calls."""

    def __init__(self):
        super().__init__()
        self.keys, self.begun = [], 0

    def on_train_begin(self, logs=None):
        self.begun += 1

    def on_epoch_end(self, epoch, logs=None):
        self.keys.append(set(logs))


def test_callbacks_before_the_monitors_get_their_entries(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((4,)),
            L.Dense(3, activation="relu", name="hidden"),
            L.Dense(2, name="out"),
        ]
    )
    model.compile("sgd", "mse")
    x = np.random.randn(8, 4).astype("float32")
    y = np.random.randn(8, 2).astype("float32")
    path = tmp_path / "history.csv"
    logger, first, between, last = (
        keras.callbacks.CSVLogger(str(path)),
        Reader(),
        Reader(),
        Reader(),
    )
    monitor = PreActivationMonitor(x[:4])
    sparsity = ActivationSparsityMonitor(x[:4])
    # The order that lost every ⟨z²⟩ column: the logger first.
    callbacks = [logger, first, monitor, between, sparsity, last]
    given = list(callbacks)
    model.fit(x, y, epochs=2, batch_size=4, verbose=0, callbacks=callbacks)
    entries = {"z2/hidden", "z2/out", "z2_mean", "sparsity/hidden"}
    entries |= {"sparsity_mean"}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and entries <= set(rows[0])
    assert all(float(row["z2_mean"]) > 0 for row in rows)
    for reader in (first, between, last):
        assert len(reader.keys) == 2
        assert all(entries <= keys for keys in reader.keys)
        assert reader.begun == 1  # each callback begun once
    assert callbacks == given  # the list passed to fit is left as it was
    # Again, with the monitors first: nothing changes.
    model.fit(x, y, epochs=1, verbose=0, callbacks=[monitor, sparsity, first])
    assert entries <= first.keys[-1] and first.begun == 2
