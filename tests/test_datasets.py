import os
import shutil
import subprocess
import sys
import textwrap
import time
import warnings

import keras
import numpy as np
import pytest

from keras_psp import datasets
from keras_psp.models import LeNet5
from tests.helpers import tfds_data

# tf.data pipelines are the same whatever the Keras backend: these run in
# the TensorFlow pass; the tests that feed `fit` run on every backend.
TF_ONLY = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="tf.data logic, backend-independent: runs in the TensorFlow pass",
)


def _first_batch(dataset):
    images, labels = next(iter(dataset))
    return np.asarray(images), np.asarray(labels)


def _all_images(dataset):
    return np.concatenate([np.asarray(images) for images, _ in dataset])


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
@TF_ONLY
def test_shapes_dtypes_and_ranges(name):
    mean, std, shape, classes, _, _ = datasets.DATASETS[name]
    with tfds_data(name, num_examples=64):
        splits = datasets.load(
            name, batch_size=16, train_examples=64, test_examples=64
        )
        images, labels = _first_batch(splits.train)
        test_images, test_labels = _first_batch(splits.test)
    assert images.shape == (16, *shape) and images.dtype == np.float32
    assert test_images.shape == (16, *shape)
    low = (0 - np.array(mean)) / np.array(std)
    high = (1 - np.array(mean)) / np.array(std)
    for batch in (images, test_images):
        assert np.all(batch >= low - 1e-5) and np.all(batch <= high + 1e-5)
    for batch in (labels, test_labels):
        assert np.issubdtype(batch.dtype, np.integer)
        assert batch.min() >= 0 and batch.max() < classes
    assert splits.info["input_shape"] == shape
    assert splits.info["classes"] == classes
    assert splits.train.element_spec[0].shape.as_list() == [None, *shape]


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
@TF_ONLY
def test_real_data_is_normalized_with_the_papers_statistics(name):
    mean, std = datasets.DATASETS[name][:2]
    with tfds_data(name) as mocked:
        if mocked:
            # CI prepares the data (.ci/run), so there it must be real.
            if os.environ.get("CI"):
                pytest.fail(f"{name} is not prepared in tfds' data dir")
            pytest.skip(f"{name} is not prepared locally")
        splits = datasets.load(name, batch_size=1000, train_examples=10_000)
        assert splits.info["train_examples"] == 10_000
        assert splits.info["test_examples"] == 10_000
        images = _all_images(splits.train)
    assert images.shape == (10_000, 28, 28, 1)
    # Undo the normalization: raw pixels lie in [0, 1] with the paper's
    # MNIST mean 0.1307 (Fashion-MNIST's raw mean is 0.286; its 0.5 is the
    # authors' choice, not the data's).
    raw = images * std[0] + mean[0]
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    if name == "mnist":
        assert abs(raw.mean() - 0.1307) < 0.01


@TF_ONLY
def test_cifar_augmentation_changes_train_images_only():
    with tfds_data("cifar10", num_examples=32):
        kwargs = dict(batch_size=32, train_examples=32, shuffle=False)
        plain = datasets.load("cifar10", augment=False, **kwargs)
        augmented = datasets.load("cifar10", augment=True, seed=3, **kwargs)
        plain_train = _all_images(plain.train)
        first_epoch = _all_images(augmented.train)
        second_epoch = _all_images(augmented.train)
        test_once = _all_images(augmented.test)
        test_twice = _all_images(augmented.test)
        plain_test = _all_images(plain.test)
    assert first_epoch.shape == plain_train.shape == (32, 32, 32, 3)
    assert not np.allclose(first_epoch, plain_train)
    assert not np.allclose(first_epoch, second_epoch)  # new crops each epoch
    # Some crops reach into the zero padding: black pixels, i.e. -mean/std.
    black = (0 - np.array(datasets.DATASETS["cifar10"][0])) / np.array(
        datasets.DATASETS["cifar10"][1]
    )
    assert np.any(np.all(np.isclose(first_epoch, black, atol=1e-5), axis=-1))
    np.testing.assert_array_equal(test_once, test_twice)
    np.testing.assert_array_equal(test_once, plain_test)


@TF_ONLY
def test_seeded_shuffling_and_augmentation_are_reproducible():
    with tfds_data("cifar10", num_examples=48):
        kwargs = dict(batch_size=48, train_examples=48)
        first = _first_batch(datasets.load("cifar10", seed=7, **kwargs).train)
        again = _first_batch(datasets.load("cifar10", seed=7, **kwargs).train)
        other = _first_batch(datasets.load("cifar10", seed=8, **kwargs).train)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


@TF_ONLY
def test_validation_split_is_held_out_and_not_augmented():
    with tfds_data("cifar10", num_examples=40):
        splits = datasets.load(
            "cifar10", batch_size=8, train_examples=40, validation_split=0.25
        )
        assert splits.info["train_examples"] == 30
        assert splits.info["validation_examples"] == 10
        train = _all_images(splits.train)
        validation = _all_images(splits.validation)
        validation_again = _all_images(splits.validation)
    assert train.shape[0] == 30 and validation.shape[0] == 10
    np.testing.assert_array_equal(validation, validation_again)


@TF_ONLY
def test_a_partly_read_split_is_read_whole_afterwards():
    # A monitor's probe reads one batch of the test set; tf.data's
    # per-example cache sometimes kept only what that read had decoded
    # (101 of 2,000 images in 1 of 8 tries), for every later evaluation.
    with tfds_data("mnist", num_examples=64):
        for seed in range(12):
            splits = datasets.load(
                "mnist",
                batch_size=50,
                test_batch_size=50,
                test_examples=1000,
                validation_split=0.1,
                train_examples=1000,
                seed=seed,
            )
            test = splits.info["test_examples"]
            for split, count in ((splits.test, test), (splits.validation, 100)):
                _first_batch(split)
                assert _all_images(split).shape[0] == count
                assert _all_images(split).shape[0] == count


def test_feeds_model_fit():
    with tfds_data("mnist", num_examples=64):
        splits = datasets.load(
            "mnist", batch_size=32, train_examples=64, test_examples=64
        )
        model = LeNet5(psp_strength=1e-3)
        model.compile("sgd", "sparse_categorical_crossentropy")
        history = model.fit(
            splits.train,
            validation_data=splits.test,
            epochs=1,
            verbose=0,
            shuffle=False,  # the pipeline shuffles itself
        )
    assert np.isfinite(history.history["loss"][0])
    assert "val_psp_loss" in history.history


@pytest.mark.parametrize("download", [False, True])
@TF_ONLY
def test_missing_data_fails_fast_with_advice(tmp_path, monkeypatch, download):
    # Without network, whatever this machine has.
    monkeypatch.setattr(datasets, "_reachable", lambda host, timeout=5: False)
    start = time.time()
    with pytest.raises(
        datasets.DatasetUnavailableError, match="TFDS_DATA_DIR"
    ) as raised:
        datasets.load("cifar10", data_dir=str(tmp_path), download=download)
    assert time.time() - start < 10
    message = str(raised.value)
    # Offline advice with tfds' own builder, no path outside the project.
    assert "manual_dir=FILES" in message
    assert "cifar-10-binary.tar.gz" in message
    assert str(tmp_path) in message
    assert "shared" not in message and ".py" not in message


@TF_ONLY
def test_reachability_probe_is_bounded():
    start = time.time()
    assert not datasets._reachable("host.invalid", timeout=2)
    assert time.time() - start < 5


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "imagenet"}, "`name`"),
        ({"name": "mnist", "batch_size": 0}, "`batch_size`"),
        ({"name": "mnist", "validation_split": 1.0}, "`validation_split`"),
        ({"name": "mnist", "train_examples": -5}, "`train_examples`"),
        ({"name": "mnist", "epochs": 0}, "`epochs`"),
        ({"name": "mnist", "epochs": 2.0}, "`epochs`"),
        ({"name": "mnist", "epochs": True}, "`epochs`"),
        (
            {"name": "mnist", "epochs": 3, "initial_epoch": -1},
            "`initial_epoch`",
        ),
        ({"name": "mnist", "epochs": 3, "initial_epoch": 4}, "`initial_epoch`"),
        (
            {"name": "mnist", "epochs": 3, "initial_epoch": 1.0},
            "`initial_epoch`",
        ),
        ({"name": "mnist", "initial_epoch": 1}, "`initial_epoch`"),
        ({"name": "mnist", "epochs": 3, "seed": None}, "`seed`"),
    ],
)
@TF_ONLY
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        datasets.load(**kwargs)


# Resumable data order (`epochs=`, `initial_epoch=`).


def _epoch_batches(splits):
    """The batches of `splits.train`, as numpy pairs, grouped by epoch."""
    steps = splits.info["steps_per_epoch"]
    batches = [(np.asarray(x), np.asarray(y)) for x, y in splits.train]
    assert len(batches) % steps == 0
    return [batches[i : i + steps] for i in range(0, len(batches), steps)]


def _assert_same_batches(batches, others):
    assert len(batches) == len(others)
    for (images, labels), (other_images, other_labels) in zip(
        batches, others, strict=True
    ):
        np.testing.assert_array_equal(images, other_images)
        np.testing.assert_array_equal(labels, other_labels)


def _concat(batches, part):
    return np.concatenate([batch[part] for batch in batches])


@pytest.mark.parametrize(
    "name, examples, batch_size", [("mnist", 300, 64), ("cifar10", 72, 16)]
)
@TF_ONLY
def test_an_epoch_is_the_same_whatever_the_initial_epoch(
    name, examples, batch_size
):
    kwargs = dict(
        batch_size=batch_size, train_examples=examples, seed=5, epochs=4
    )
    with tfds_data(name, num_examples=examples):
        epochs = _epoch_batches(datasets.load(name, **kwargs))
        assert len(epochs) == 4
        for initial_epoch in (1, 3):
            resumed = _epoch_batches(
                datasets.load(name, initial_epoch=initial_epoch, **kwargs)
            )
            assert len(resumed) == 4 - initial_epoch
            for epoch, batches in enumerate(resumed, start=initial_epoch):
                _assert_same_batches(batches, epochs[epoch])
        plain = _epoch_batches(datasets.load(name, augment=False, **kwargs))
        unshuffled = _epoch_batches(
            datasets.load(name, shuffle=False, **kwargs)
        )
    for epoch in range(1, 4):
        previous, this = epochs[epoch - 1], epochs[epoch]
        # Each epoch is a new permutation of the same examples.
        assert not np.array_equal(_concat(previous, 1), _concat(this, 1))
        np.testing.assert_array_equal(
            np.sort(_concat(previous, 1)), np.sort(_concat(this, 1))
        )
    if name == "cifar10":
        # Augmented (crops and flips), yet reproducible above; same order
        # with augment=False.
        for augmented, not_augmented in zip(epochs, plain, strict=True):
            np.testing.assert_array_equal(
                _concat(augmented, 1), _concat(not_augmented, 1)
            )
            assert not np.allclose(
                _concat(augmented, 0), _concat(not_augmented, 0)
            )
        # New crops and flips each epoch, even in the same order.
        for epoch in range(1, 4):
            np.testing.assert_array_equal(
                _concat(unshuffled[epoch], 1), _concat(unshuffled[0], 1)
            )
            assert not np.allclose(
                _concat(unshuffled[epoch], 0), _concat(unshuffled[0], 0)
            )


@TF_ONLY
def test_a_fresh_process_sees_the_same_epoch(tmp_path):
    kwargs = dict(
        batch_size=24, train_examples=48, seed=11, epochs=3, initial_epoch=2
    )
    script = textwrap.dedent(
        f"""
        import numpy as np
        from keras_psp import datasets
        from tests.helpers import tfds_data

        with tfds_data("cifar10", num_examples=48):
            splits = datasets.load("cifar10", **{kwargs!r})
            images, labels = next(iter(splits.train))
        np.savez({str(tmp_path / "batch.npz")!r}, images=images, labels=labels)
        """
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=env, check=True
    )
    with tfds_data("cifar10", num_examples=48):
        kwargs["initial_epoch"] = 0
        epochs = _epoch_batches(datasets.load("cifar10", **kwargs))
    other = np.load(tmp_path / "batch.npz")
    np.testing.assert_array_equal(other["images"], epochs[2][0][0])
    np.testing.assert_array_equal(other["labels"], epochs[2][0][1])
    assert not np.array_equal(other["images"], epochs[1][0][0])


@TF_ONLY
def test_unshuffled_epochs_are_in_tfds_order():
    import tensorflow_datasets as tfds

    with tfds_data("mnist", num_examples=300):
        splits = datasets.load(
            "mnist", batch_size=64, train_examples=300, shuffle=False, epochs=3
        )
        epochs = _epoch_batches(splits)
        raw = tfds.builder("mnist").as_dataset(
            split="train", as_supervised=True, shuffle_files=False
        )
        raw_labels = np.array([int(label) for _, label in raw.take(300)])
    assert len(epochs) == 3
    for batches in epochs:
        np.testing.assert_array_equal(_concat(batches, 1), raw_labels)
        _assert_same_batches(batches, epochs[0])


@TF_ONLY
def test_batches_never_cross_epochs_and_cardinality_is_known():
    with tfds_data("mnist", num_examples=250):
        splits = datasets.load(
            "mnist",
            batch_size=100,
            train_examples=250,
            epochs=4,
            initial_epoch=1,
        )
        sizes = [int(labels.shape[0]) for _, labels in splits.train]
        one_epoch = datasets.load("mnist", batch_size=100, train_examples=250)
    assert splits.info["steps_per_epoch"] == 3
    assert one_epoch.info["steps_per_epoch"] == 3
    assert sizes == [100, 100, 50] * 3
    assert int(splits.train.cardinality()) == 3 * 3


@TF_ONLY
def test_resuming_after_the_last_epoch_leaves_nothing_to_train():
    with tfds_data("mnist", num_examples=64):
        splits = datasets.load(
            "mnist",
            batch_size=32,
            train_examples=64,
            epochs=2,
            initial_epoch=2,
        )
        assert int(splits.train.cardinality()) == 0
        assert list(splits.train) == []
    assert splits.info["steps_per_epoch"] == 2


@TF_ONLY
def test_epochs_share_one_cache_and_do_not_reread_the_files(tmp_path):
    import tensorflow_datasets as tfds

    if not tfds.builder("mnist").is_prepared():
        pytest.skip("mnist is not prepared locally")
    copy = tmp_path / "mnist" / "3.0.1"
    shutil.copytree(tfds.builder("mnist").data_dir, copy)
    splits = datasets.load(
        "mnist",
        batch_size=100,
        train_examples=300,
        epochs=3,
        data_dir=str(tmp_path),
    )
    iterator = iter(splits.train)
    first = [
        np.asarray(labels) for _, labels in (next(iterator) for _ in range(3))
    ]
    shutil.rmtree(copy)  # read once: later epochs come from the cache
    rest = [np.asarray(labels) for _, labels in iterator]
    assert len(rest) == 6
    np.testing.assert_array_equal(
        np.sort(np.concatenate(first)), np.sort(np.concatenate(rest[:3]))
    )


def test_fit_consumes_the_epochs_with_steps_per_epoch():
    epochs, initial_epoch = 3, 1
    with tfds_data("mnist", num_examples=96):
        splits = datasets.load(
            "mnist",
            batch_size=32,
            train_examples=96,
            epochs=epochs,
            initial_epoch=initial_epoch,
        )
        model = keras.Sequential(
            [
                keras.Input(splits.info["input_shape"]),
                keras.layers.Flatten(),
                keras.layers.Dense(splits.info["classes"]),
            ]
        )
        model.compile(
            "sgd",
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            history = model.fit(
                splits.train,
                epochs=epochs,
                initial_epoch=initial_epoch,
                steps_per_epoch=splits.info["steps_per_epoch"],
                verbose=0,
                shuffle=False,
            )
    assert history.epoch == [1, 2]
    assert all(np.isfinite(history.history["loss"]))
    assert not [w for w in caught if "ran out of data" in str(w.message)]


# Corrupt data.


def _truncated_mnist(tmp_path, size):
    import tensorflow_datasets as tfds

    if not tfds.builder("mnist").is_prepared():
        pytest.skip("mnist is not prepared locally")
    copy = tmp_path / "mnist" / "3.0.1"
    shutil.copytree(tfds.builder("mnist").data_dir, copy)
    (train_file,) = copy.glob("mnist-train.tfrecord*")
    with open(train_file, "r+b") as file:
        file.truncate(size)
    return str(tmp_path), str(copy)


@pytest.mark.parametrize("epochs", [None, 2])
def test_a_truncated_file_is_reported_with_its_data_set(tmp_path, epochs):
    import tensorflow as tf

    # ~300 of the 60,000 records are left.
    data_dir, builder_dir = _truncated_mnist(tmp_path, 100_000)
    kwargs = dict(batch_size=100, train_examples=1000, epochs=epochs)
    with pytest.raises(tf.errors.DataLossError):
        # What tf.data says on its own. (A dataset that failed is not
        # iterated again: its in-memory cache may have been left partial.)
        list(datasets.load("mnist", data_dir=data_dir, **kwargs).train)
    splits = datasets.load("mnist", data_dir=data_dir, **kwargs)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        "sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    with pytest.raises(datasets.DatasetCorruptError) as raised:
        with datasets.reading("mnist", data_dir=data_dir):
            model.fit(splits.train, verbose=0, shuffle=False)
    message = str(raised.value)
    assert "\n" not in message
    assert "'mnist'" in message and builder_dir in message
    assert "Delete that directory" in message
    assert "download_and_prepare" in message


@TF_ONLY
def test_reading_lets_other_errors_through():
    with pytest.raises(KeyError):
        with datasets.reading("mnist"):
            raise KeyError("x")
    with pytest.raises(ValueError, match="`name`"):
        with datasets.reading("imagenet"):
            pass
