import os

import keras
import numpy as np
import pytest

from applications import checkpoint


def small_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, activation="relu")]
    )
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    return model


def fit(model, epochs, callbacks=(), initial_epoch=0):
    x = np.linspace(-1, 1, 32, dtype="float32").reshape(8, 4)
    y = np.ones((8, 3), dtype="float32")
    model.fit(
        x,
        y,
        epochs=epochs,
        initial_epoch=initial_epoch,
        batch_size=4,
        shuffle=False,
        verbose=0,
        callbacks=list(callbacks),
    )


def test_one_backup_per_epoch_named_by_epochs_done(tmp_path):
    directory = str(tmp_path / "backup")
    assert checkpoint.latest(directory) == (0, None)
    model = small_model()
    fit(model, 3, [checkpoint.EpochBackup(directory)])
    assert os.listdir(directory) == ["epoch-0003.weights.h5"]
    assert checkpoint.latest(directory) == (
        3,
        os.path.join(directory, "epoch-0003.weights.h5"),
    )
    # Temporary files of a killed writer are not backups.
    open(os.path.join(directory, ".tmp99-epoch-0004.weights.h5"), "w").close()
    assert checkpoint.latest(directory)[0] == 3


def test_restore_gives_the_weights_and_optimizer_state(tmp_path):
    directory = str(tmp_path / "backup")
    straight = small_model()
    fit(straight, 4)
    stopped = small_model()
    fit(stopped, 2, [checkpoint.EpochBackup(directory)])
    resumed = small_model()
    done, path = checkpoint.latest(directory)
    checkpoint.restore(resumed, path)
    fit(resumed, 4, initial_epoch=done)
    # Momentum is optimizer state: without it the weights would differ.
    for a, b in zip(straight.weights, resumed.weights, strict=True):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        )


def test_a_corrupt_backup_is_named(tmp_path):
    directory = tmp_path / "backup"
    model = small_model()
    fit(model, 1, [checkpoint.EpochBackup(str(directory))])
    path = directory / "epoch-0001.weights.h5"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(checkpoint.CorruptBackupError) as error:
        checkpoint.restore(small_model(), str(path))
    message = str(error.value)
    assert message.startswith(f"the backup {path} cannot be read (")
    assert "\n" not in message
