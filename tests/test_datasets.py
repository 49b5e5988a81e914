import os
import time

import numpy as np
import pytest

from keras_psp import datasets
from keras_psp.models import LeNet5
from tests.helpers import tfds_data


def _first_batch(dataset):
    images, labels = next(iter(dataset))
    return np.asarray(images), np.asarray(labels)


def _all_images(dataset):
    return np.concatenate([np.asarray(images) for images, _ in dataset])


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
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


def test_seeded_shuffling_and_augmentation_are_reproducible():
    with tfds_data("cifar10", num_examples=48):
        kwargs = dict(batch_size=48, train_examples=48)
        first = _first_batch(datasets.load("cifar10", seed=7, **kwargs).train)
        again = _first_batch(datasets.load("cifar10", seed=7, **kwargs).train)
        other = _first_batch(datasets.load("cifar10", seed=8, **kwargs).train)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


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
def test_missing_data_fails_fast_with_advice(tmp_path, monkeypatch, download):
    # Without network, whatever this machine has.
    monkeypatch.setattr(datasets, "_reachable", lambda host, timeout=5: False)
    start = time.time()
    with pytest.raises(datasets.DatasetUnavailableError, match="TFDS_DATA_DIR"):
        datasets.load("cifar10", data_dir=str(tmp_path), download=download)
    assert time.time() - start < 10


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
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        datasets.load(**kwargs)
