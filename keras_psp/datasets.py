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

Resuming: with `epochs=` (and `initial_epoch=`, as in `Model.fit`), `load`
returns a training set holding epochs `initial_epoch, ..., epochs - 1`
back to back, whose epoch `e` (order and CIFAR-10 crops and flips) is a
function of `(seed, e)` only; a run killed and restarted at epoch `e` in a
new process sees the same data as if it had not stopped. Without
`epochs`, the training set is one epoch reshuffled at each iteration, and
a new process starts again from the first epoch's order.

A damaged data dir (a truncated or corrupt tfrecord file) makes reading fail
with a `tf.errors.DataLossError` that names neither the data set nor the
file: run the training inside `with reading(name, data_dir):` to get a
`DatasetCorruptError` that does, and says how to rebuild it.
"""

import collections
import contextlib
import math
import os
import re
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
`name`, `input_shape`, `classes`, `mean`, `std`, the number of
examples of each split (`train_examples`, `validation_examples`,
`test_examples`) and `steps_per_epoch`, the number of training batches in
one epoch (`ceil(train_examples / batch_size)`)."""

# Files that tfds downloads for each data set (see its url_checksums): put
# in a folder and passed as `manual_dir`, they let tfds prepare the data
# set with no network.
_ORIGINAL_FILES = {
    "mnist": "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz",
    "fashion_mnist": "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz",
    "cifar10": "cifar-10-binary.tar.gz",
}


def _how_to_prepare(name, data_dir):
    """One sentence: the tfds calls that prepare `name` in `data_dir`."""
    return (
        f"prepare it with tfds' own builder, on a machine with network "
        f"access (`tfds.builder('{name}', data_dir={data_dir!r})"
        ".download_and_prepare()`) or offline from its original files "
        f"({_ORIGINAL_FILES[name]}) in a folder FILES "
        f"(`tfds.builder('{name}', data_dir={data_dir!r})"
        ".download_and_prepare(download_config=tfds.download.DownloadConfig("
        "manual_dir=FILES, try_download_gcs=False))`)"
    )


class DatasetUnavailableError(RuntimeError):
    """The data set is not in the data dir and cannot be downloaded."""


class DatasetCorruptError(RuntimeError):
    """A file of the prepared data set cannot be read (see `reading`)."""


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
    root = os.fspath(builder.data_dir_root)
    raise DatasetUnavailableError(
        f"Data set '{name}' is not prepared in the tfds data dir {root} and "
        f"{why}. Set `data_dir=` (or the TFDS_DATA_DIR environment variable) "
        "to a tfds data dir that holds it, or "
        f"{_how_to_prepare(name, root)}."
    )


@contextlib.contextmanager
def reading(name, data_dir=None):
    """Reports a damaged data set as a `DatasetCorruptError`.

    tf.data reports a truncated or corrupt tfrecord file with a long
    `tf.errors.DataLossError` that names neither the data set nor its
    directory. Inside this context such an error becomes a
    `DatasetCorruptError` whose one-line message names the data set, the
    directory of its files and how to rebuild it; other errors pass
    through unchanged. Load the data set again after such an error: a
    dataset whose reading failed may keep a partial in-memory cache.

    Args:
        name: the data set read inside the context (as given to `load`).
        data_dir: the tfds data dir given to `load` (default
            `TFDS_DATA_DIR`, else tfds' own).

    Example:

    ```python
    with keras_psp.datasets.reading("mnist"):
        model.fit(splits.train, epochs=5)
    ```
    """
    import tensorflow as tf

    if name not in DATASETS:
        raise ValueError(
            f"Argument `name` must be one of {sorted(DATASETS)}. "
            f"Received: name={name!r}."
        )
    try:
        yield
    except tf.errors.DataLossError as error:
        raise _corrupt(name, data_dir, error) from None


def _corrupt(name, data_dir, error):
    import tensorflow_datasets as tfds

    builder = tfds.builder(
        name, data_dir=data_dir or os.environ.get("TFDS_DATA_DIR") or None
    )
    # TF's message: "{{function_node ...}} what failed\n[[{{node ...}}]]
    # [Op:...] name: "; keep what failed.
    detail = getattr(error, "message", str(error))
    detail = re.sub(r"\[\[.*?\]\]|\{\{.*?\}\}|\[Op:[^\]]*\]|name:", "", detail)
    detail = " ".join(detail.split())[:200]
    root = os.fspath(builder.data_dir_root)
    return DatasetCorruptError(
        f"Data set '{name}' in {builder.data_dir} cannot be read: a file "
        f"there is truncated or corrupt ({detail}). Delete that directory "
        f"and {_how_to_prepare(name, root)}."
    )


def _num_examples(name, data_dir, builder, split, read):
    try:
        return builder.info.splits[split].num_examples
    except KeyError:
        # Builders without split metadata (tfds' mock data): count.
        with reading(name, data_dir):
            return int(read(split).reduce(0, lambda count, _: count + 1))


def _validate_epochs(epochs, initial_epoch):
    validate_positive_int(epochs, "epochs", allow_none=True)
    if not isinstance(initial_epoch, int) or isinstance(initial_epoch, bool):
        raise ValueError(
            "Argument `initial_epoch` must be an integer. Received: "
            f"initial_epoch={initial_epoch!r}."
        )
    if epochs is None and initial_epoch != 0:
        raise ValueError(
            "Argument `initial_epoch` must be 0 when `epochs` is None "
            "(resuming needs `epochs`). Received: "
            f"initial_epoch={initial_epoch!r}."
        )
    if epochs is not None and not 0 <= initial_epoch <= epochs:
        raise ValueError(
            f"Argument `initial_epoch` must be in [0, epochs={epochs}]. "
            f"Received: initial_epoch={initial_epoch!r}."
        )


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
    epochs=None,
    initial_epoch=0,
):
    """Loads a data set as batched, preprocessed `tf.data` pipelines.

    Args:
        name: `"mnist"`, `"fashion_mnist"` or `"cifar10"`.
        batch_size: training batch size (the last batch of each epoch may
            be smaller).
        data_dir: tfds data dir; default `TFDS_DATA_DIR`, else tfds' own.
        validation_split: fraction of the training set (the last part, in
            tfds order) held out as a validation set, in `[0, 1)`.
        seed: seed of the shuffling and of the augmentation; the same seed
            gives the same order and the same crops and flips. With
            `epochs`, an integer; the order and augmentation then depend on
            `seed` and the epoch only (not on TF's global seed).
        shuffle: whether to reshuffle the training set each epoch; if
            False, every epoch is in tfds order.
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
        epochs: None (default) or the total number of epochs of the
            training run, as given to `Model.fit`. If None, `train` is one
            epoch, reshuffled (and re-augmented) at each iteration: its
            order is reproducible from `seed` within a process, but a new
            process starts again from the first epoch's order, so a run
            resumed at epoch `k` replays epoch 0's order. If given, `train`
            holds epochs `initial_epoch, ..., epochs - 1` one after the
            other, each batched on its own (no batch spans two epochs), and
            the order and augmentation of epoch `e` are a function of
            `(seed, e)` only: the same whatever `initial_epoch` and in any
            process. Pass `steps_per_epoch=info["steps_per_epoch"]` to
            `Model.fit` (see the example).
        initial_epoch: the epoch to start at, in `[0, epochs]`, as given to
            `Model.fit` (a run resumed after its epoch `k - 1` was saved
            passes `k`; `epochs` leaves an empty training set). Needs
            `epochs`.

    Returns:
        A `Splits(train, validation, test, info)` namedtuple. With
        `epochs`, `train` has a known cardinality,
        `(epochs - initial_epoch) * info["steps_per_epoch"]`.

    Raises:
        ValueError: a bad argument (the message names it).
        DatasetUnavailableError: see `prepared_builder`.

    Example:

    ```python
    splits = keras_psp.datasets.load("mnist", batch_size=100)
    model.fit(splits.train, validation_data=splits.test, epochs=50)
    ```

    Resumable (`initial_epoch` = the number of epochs already done, e.g.
    read from the last checkpoint):

    ```python
    splits = keras_psp.datasets.load(
        "mnist", batch_size=100, epochs=50, initial_epoch=initial_epoch
    )
    model.fit(
        splits.train,
        validation_data=splits.test,
        epochs=50,
        initial_epoch=initial_epoch,
        steps_per_epoch=splits.info["steps_per_epoch"],
    )
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
    _validate_epochs(epochs, initial_epoch)
    if epochs is not None and (
        not isinstance(seed, int) or isinstance(seed, bool)
    ):
        raise ValueError(
            "Argument `seed` must be an integer when `epochs` is given. "
            f"Received: seed={seed!r}."
        )
    mean, std, shape, classes, can_augment, _ = DATASETS.get(name, (None,) * 6)
    builder = prepared_builder(name, data_dir, download)
    test_batch_size = test_batch_size or batch_size

    def read(split):
        return builder.as_dataset(
            split=split, as_supervised=True, shuffle_files=False
        )

    num_train = _num_examples(name, data_dir, builder, "train", read)
    if train_examples:
        num_train = min(num_train, train_examples)
    num_validation = int(round(num_train * validation_split))
    num_fit = num_train - num_validation
    num_test = _num_examples(name, data_dir, builder, "test", read)
    if test_examples:
        num_test = min(num_test, test_examples)
    steps_per_epoch = math.ceil(num_fit / batch_size)

    mean_t = tf.constant(mean, tf.float32)
    std_t = tf.constant(std, tf.float32)

    def to_unit(image):
        return tf.cast(image, tf.float32) / 255.0

    def normalize(image, label):
        return (to_unit(image) - mean_t) / std_t, label

    def augmented(seeds, example):
        """`example` augmented with stateless ops seeded by `seeds[0]` (crop)
        and `seeds[1]` (flip)."""
        image, label = example
        # Zero-pad the [0, 1] image, as PyTorch's RandomCrop(padding=4)
        # does before ToTensor and Normalize.
        image = tf.pad(to_unit(image), [[4, 4], [4, 4], [0, 0]])
        image = tf.image.stateless_random_crop(image, shape, seed=seeds[0])
        image = tf.image.stateless_random_flip_left_right(image, seed=seeds[1])
        return (image - mean_t) / std_t, label

    autotune = tf.data.AUTOTUNE
    augmenting = augment and can_augment
    if epochs is None:
        train = read("train").take(num_fit).cache()
        if shuffle:
            train = train.shuffle(
                num_fit, seed=seed, reshuffle_each_iteration=True
            )
        if augmenting:
            # A random stream that changes every epoch, reproducibly from
            # seed.
            randoms = tf.data.Dataset.random(
                seed=seed, rerandomize_each_iteration=True
            )

            def augmented_from_stream(random, example):
                seeds = tf.random.experimental.stateless_split(
                    tf.stack([random, tf.constant(seed, tf.int64)]), 2
                )
                return augmented(seeds, example)

            train = tf.data.Dataset.zip(randoms, train).map(
                augmented_from_stream, num_parallel_calls=autotune
            )
        else:
            train = train.map(normalize, num_parallel_calls=autotune)
        train = train.batch(batch_size).prefetch(autotune)
    else:
        train = _epochs(
            read("train").take(num_fit),
            num_fit,
            range(initial_epoch, epochs),
            seed=seed,
            shuffle=shuffle,
            preprocess=augmented if augmenting else None,
            normalize=normalize,
            batch_size=batch_size,
        ).prefetch(autotune)
        train = train.apply(
            tf.data.experimental.assert_cardinality(
                (epochs - initial_epoch) * steps_per_epoch
            )
        )

    def evaluation(dataset, count):
        # Cached as one element holding every example: a read that stops
        # early (one batch for a monitor's probe) can leave tf.data's
        # per-example cache short for every later pass (101 of 2,000 test
        # images), while one element is cached whole or not at all.
        whole = dataset.batch(max(count, 1)).cache()
        # `unbatch` loses the cardinality, which `fit`'s evaluation needs
        # (else Keras warns that the input ran out of data).
        dataset = whole.unbatch().apply(
            tf.data.experimental.assert_cardinality(count)
        )
        dataset = dataset.map(normalize, num_parallel_calls=autotune)
        return dataset.batch(test_batch_size).prefetch(autotune)

    validation = None
    if num_validation:
        validation = evaluation(
            read("train").skip(num_fit).take(num_validation), num_validation
        )
    test = evaluation(read("test").take(num_test), num_test)
    info = {
        "name": name,
        "input_shape": shape,
        "classes": classes,
        "mean": mean,
        "std": std,
        "train_examples": num_fit,
        "validation_examples": num_validation,
        "test_examples": num_test,
        "steps_per_epoch": steps_per_epoch,
    }
    return Splits(train, validation, test, info)


def _epochs(
    examples, count, epochs, *, seed, shuffle, preprocess, normalize, batch_size
):
    """The batched epochs `epochs` (a `range`) of `examples`, each one a
    function of `(seed, epoch)` only.

    The `count` decoded examples are cached in memory once, as one tensor
    per feature shared by all epochs. Epoch `e` permutes them with a
    stateless shuffle seeded from `(seed, e)` and, with `preprocess`,
    augments its `i`-th example with stateless ops seeded from
    `(seed, e, i)`; nothing depends on TF's global seed or on earlier
    epochs.
    """
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE
    # One element: all the examples stacked, decoded once and kept.
    whole = examples.batch(max(count, 1)).cache()
    seed = tf.constant(seed, tf.int64)

    def one_epoch(epoch):
        order_seed, augment_seed = tf.unstack(
            tf.random.experimental.stateless_split(tf.stack([seed, epoch]), 2)
        )

        def slices(images, labels):
            if shuffle:
                order = tf.random.experimental.stateless_shuffle(
                    tf.range(tf.shape(labels)[0]), seed=order_seed
                )
                images = tf.gather(images, order)
                labels = tf.gather(labels, order)
            return tf.data.Dataset.from_tensor_slices((images, labels))

        dataset = whole.flat_map(slices)
        if preprocess is None:
            dataset = dataset.map(normalize, num_parallel_calls=autotune)
        else:

            def preprocessed(index, example):
                seeds = tf.random.experimental.stateless_split(
                    tf.random.experimental.stateless_fold_in(
                        augment_seed, index
                    ),
                    2,
                )
                return preprocess(seeds, example)

            dataset = dataset.enumerate().map(
                preprocessed, num_parallel_calls=autotune
            )
        return dataset.batch(batch_size)

    return tf.data.Dataset.range(epochs.start, epochs.stop).flat_map(one_epoch)
