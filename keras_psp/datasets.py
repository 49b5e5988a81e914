"""tf.data pipelines for MNIST, Fashion-MNIST and CIFAR-10 (tfds).

Preprocessing follows the authors' PyTorch code (github enzotarta/PSP):
images scaled to [0, 1] and normalized per channel with the mean and std
below; CIFAR-10 training images are augmented as in their CIFAR scripts
(zero-pad 4, random 32×32 crop, random horizontal flip).

The data is read with tensorflow-datasets from a local data dir: the
`data_dir` argument, else `TFDS_DATA_DIR`, else tfds' default. A data set
that is not there is downloaded by tfds as usual when its host can be
reached; when it cannot, `load` fails within seconds with a message saying
what to set, instead of tfds retrying for minutes.
"""

import collections
import os
import socket
import threading

from keras_psp.validation import validate_positive_int

# name: (per-channel mean, per-channel std, image shape, classes, augment,
# host that tfds downloads it from).
DATASETS = {
    "mnist": (
        (0.1307,),
        (0.3081,),
        (28, 28, 1),
        10,
        False,
        "storage.googleapis.com",
    ),
    "fashion_mnist": (
        (0.5,),
        (0.5,),
        (28, 28, 1),
        10,
        False,
        "fashion-mnist.s3-website.eu-central-1.amazonaws.com",
    ),
    "cifar10": (
        (0.4914, 0.4822, 0.4465),
        (0.2023, 0.1994, 0.2010),
        (32, 32, 3),
        10,
        True,
        "www.cs.toronto.edu",
    ),
}

Splits = collections.namedtuple(
    "Splits", ["train", "validation", "test", "info"]
)
Splits.__doc__ = """What `load` returns.

`train`, `validation` (None without a validation split) and `test` are
batched `tf.data.Dataset`s of `(image, label)`; `info` is a dict with
`name`, `input_shape`, `classes`, `mean`, `std` and the number of
examples of each split (`train_examples`, `validation_examples`,
`test_examples`)."""


class DatasetUnavailableError(RuntimeError):
    """The data set is not in the data dir and cannot be downloaded."""


def _reachable(host, timeout=5.0):
    """Whether a TCP connection to `host`:443 opens within `timeout` s."""
    result = []

    def probe():
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            result.append(True)
        except OSError:
            pass

    # DNS lookups ignore the socket timeout: bound them with a thread.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result)


def prepared_builder(name, data_dir=None, download=True):
    """Returns the tfds builder of `name`, prepared, or fails fast.

    Args:
        name: `"mnist"`, `"fashion_mnist"` or `"cifar10"`.
        data_dir: tfds data dir; default `TFDS_DATA_DIR`, else tfds' own.
        download: whether to let tfds download and prepare a missing data
            set (only tried when its download host answers).

    Raises:
        ValueError: unknown `name`.
        DatasetUnavailableError: the data set is missing and cannot be
            downloaded; the message says what to set.
    """
    import tensorflow_datasets as tfds

    if name not in DATASETS:
        raise ValueError(
            f"Argument `name` must be one of {sorted(DATASETS)}. "
            f"Received: name={name!r}."
        )
    data_dir = data_dir or os.environ.get("TFDS_DATA_DIR") or None
    builder = tfds.builder(name, data_dir=data_dir)
    if builder.is_prepared():
        return builder
    host = DATASETS[name][-1]
    if download and _reachable(host):
        builder.download_and_prepare()
        return builder
    why = "downloading is off" if not download else f"{host} cannot be reached"
    raise DatasetUnavailableError(
        f"Data set '{name}' is not prepared in the tfds data dir "
        f"{builder.data_dir_root} and {why}. Set `data_dir=` (or the "
        "TFDS_DATA_DIR environment variable) to a tfds data dir that holds "
        "it, or prepare it there on a machine with network access "
        f"(`tfds.builder('{name}', data_dir=DIR).download_and_prepare()`). "
        "MNIST and Fashion-MNIST can be prepared offline from their "
        "original files: python ../shared/datasets/prepare_tfds.py DIR."
    )


def _num_examples(builder, split, read):
    try:
        return builder.info.splits[split].num_examples
    except KeyError:
        # Builders without split metadata (tfds' mock data): count.
        return int(read(split).reduce(0, lambda count, _: count + 1))


def load(
    name,
    batch_size=128,
    *,
    data_dir=None,
    validation_split=0.0,
    seed=0,
    shuffle=True,
    augment=True,
    test_batch_size=None,
    train_examples=None,
    test_examples=None,
    download=True,
):
    """Loads a data set as batched, preprocessed `tf.data` pipelines.

    Args:
        name: `"mnist"`, `"fashion_mnist"` or `"cifar10"`.
        batch_size: training batch size (the last batch may be smaller).
        data_dir: tfds data dir; default `TFDS_DATA_DIR`, else tfds' own.
        validation_split: fraction of the training set (the last part, in
            tfds order) held out as a validation set, in `[0, 1)`.
        seed: seed of the shuffling and of the augmentation; the same seed
            gives the same order and the same crops and flips.
        shuffle: whether to reshuffle the training set each epoch.
        augment: whether to augment CIFAR-10 training images (pad 4, random
            crop, horizontal flip); validation and test images never are.
            MNIST and Fashion-MNIST are not augmented.
        test_batch_size: batch size of validation and test (default
            `batch_size`).
        train_examples: use only the first N training examples (before the
            validation split), for quick runs.
        test_examples: use only the first N test examples.
        download: let tfds download a missing data set when its host can be
            reached (see `prepared_builder`).

    Returns:
        A `Splits(train, validation, test, info)` namedtuple.

    Example:

    ```python
    splits = keras_psp.datasets.load("mnist", batch_size=100)
    model.fit(splits.train, validation_data=splits.test, epochs=50)
    ```
    """
    import tensorflow as tf

    validate_positive_int(batch_size, "batch_size")
    validate_positive_int(test_batch_size, "test_batch_size", allow_none=True)
    validate_positive_int(train_examples, "train_examples", allow_none=True)
    validate_positive_int(test_examples, "test_examples", allow_none=True)
    if not 0 <= validation_split < 1:
        raise ValueError(
            "Argument `validation_split` must be in [0, 1). Received: "
            f"validation_split={validation_split!r}."
        )
    mean, std, shape, classes, can_augment, _ = DATASETS.get(name, (None,) * 6)
    builder = prepared_builder(name, data_dir, download)
    test_batch_size = test_batch_size or batch_size

    def read(split):
        return builder.as_dataset(
            split=split, as_supervised=True, shuffle_files=False
        )

    num_train = _num_examples(builder, "train", read)
    if train_examples:
        num_train = min(num_train, train_examples)
    num_validation = int(round(num_train * validation_split))
    num_fit = num_train - num_validation
    num_test = _num_examples(builder, "test", read)
    if test_examples:
        num_test = min(num_test, test_examples)

    mean_t = tf.constant(mean, tf.float32)
    std_t = tf.constant(std, tf.float32)

    def to_unit(image):
        return tf.cast(image, tf.float32) / 255.0

    def normalize(image, label):
        return (to_unit(image) - mean_t) / std_t, label

    def augmented(random, example):
        image, label = example
        seeds = tf.random.experimental.stateless_split(
            tf.stack([random, tf.constant(seed, tf.int64)]), 2
        )
        # Zero-pad the [0, 1] image, as PyTorch's RandomCrop(padding=4)
        # does before ToTensor and Normalize.
        image = tf.pad(to_unit(image), [[4, 4], [4, 4], [0, 0]])
        image = tf.image.stateless_random_crop(image, shape, seed=seeds[0])
        image = tf.image.stateless_random_flip_left_right(image, seed=seeds[1])
        return (image - mean_t) / std_t, label

    autotune = tf.data.AUTOTUNE
    train = read("train").take(num_fit).cache()
    if shuffle:
        train = train.shuffle(num_fit, seed=seed, reshuffle_each_iteration=True)
    if augment and can_augment:
        # A random stream that changes every epoch, reproducibly from seed.
        randoms = tf.data.Dataset.random(
            seed=seed, rerandomize_each_iteration=True
        )
        train = tf.data.Dataset.zip(randoms, train).map(
            augmented, num_parallel_calls=autotune
        )
    else:
        train = train.map(normalize, num_parallel_calls=autotune)
    train = train.batch(batch_size).prefetch(autotune)

    def evaluation(dataset):
        dataset = dataset.cache().map(normalize, num_parallel_calls=autotune)
        return dataset.batch(test_batch_size).prefetch(autotune)

    validation = None
    if num_validation:
        validation = evaluation(
            read("train").skip(num_fit).take(num_validation)
        )
    test = evaluation(read("test").take(num_test))
    info = {
        "name": name,
        "input_shape": shape,
        "classes": classes,
        "mean": mean,
        "std": std,
        "train_examples": num_fit,
        "validation_examples": num_validation,
        "test_examples": num_test,
    }
    return Splits(train, validation, test, info)
