"""A few SGD steps of a small PSP model, on one device and on several.

    python -m tests.distribution.engines ENGINE OUT [OPTIMIZER]

ENGINE is one of:

- `mirrored`: `tf.distribute.MirroredStrategy` on 2 logical CPU devices;
- `data_parallel`: `keras.distribution.DataParallel` on 2 JAX host devices;
- `multi_worker`: one worker of `tf.distribute.MultiWorkerMirroredStrategy`
  (`TF_CONFIG` in the environment); it feeds its own half of every global
  batch.

OPTIMIZER is `sgd` (default) or `gradient_coherent`:
`keras_psp.optimizers.GradientCoherentSGD` with a strong L1, whose
coherence test must see the whole batch's gradient and whose L1 must be
added once, not once per replica.

Each run writes `OUT` (an `.npz`): the logs after every step (`loss`,
`psp_loss`), the final weights and the number of replicas, for the engine
(`<name>_...`) and, where one process can, for one device (`single_...`)
from the same weights and data. No gradient is averaged here: the engines
of TensorFlow and Keras do it.
"""

import json
import os
import sys

STEPS = 3
BATCH = 16  # the global batch, the same for one device and several
STRENGTH = 0.05  # large: the PSP term dominates the loss and its gradient
L1 = 0.5  # GradientCoherentSGD's: strong, lr · L1 · STEPS = 0.015
OPTIMIZER = "sgd"


def data():
    import numpy as np

    rng = np.random.RandomState(0)
    x = rng.normal(size=(STEPS * BATCH, 8)).astype("float32")
    y = rng.randint(0, 3, size=STEPS * BATCH).astype("int32")
    return x, y


def optimizer(l1=L1):
    import keras

    from keras_psp.optimizers import GradientCoherentSGD

    if OPTIMIZER == "gradient_coherent":
        return GradientCoherentSGD(l1=l1, learning_rate=0.01)
    return keras.optimizers.SGD(0.01)


def build(strength=STRENGTH, l1=L1):
    """The model, compiled, from fixed weights (the same in every
    process): PSP in `reduction="sum"` on two layers with a large λ."""
    import keras
    import numpy as np

    from keras_psp import PSPDense
    from keras_psp import PSPSequential

    model = PSPSequential(
        [
            keras.Input((8,)),
            PSPDense(16, "relu", strength=strength, reduction="sum"),
            PSPDense(8, "relu", strength=strength, reduction="sum"),
            keras.layers.Dense(3),
        ]
    )
    rng = np.random.RandomState(1)
    for w in model.trainable_weights:  # not λ, a non-trainable weight
        w.assign(rng.normal(size=w.shape).astype("float32"))
    model.compile(
        optimizer(l1),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


class StepLogs:
    """A callback's logs after every training step."""

    def __new__(cls):
        import keras

        class Logger(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.rows = []

            def on_train_batch_end(self, batch, logs=None):
                self.rows.append([float(logs["loss"]), float(logs["psp_loss"])])

        return Logger()


def fit(model, dataset=None):
    """`STEPS` steps of `BATCH` on `model`; its logs and weights."""
    import keras
    import numpy as np

    logger = StepLogs()
    if dataset is None:
        x, y = data()
        model.fit(
            x,
            y,
            batch_size=BATCH,
            epochs=1,
            shuffle=False,
            verbose=0,
            callbacks=[logger],
        )
    else:
        model.fit(
            dataset,
            epochs=1,
            steps_per_epoch=STEPS,
            verbose=0,
            callbacks=[logger],
        )
    rows = np.array(logger.rows)
    weights = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    if OPTIMIZER == "gradient_coherent":
        # How many steps each kernel was regularized on: its coherence
        # decisions.
        weights.append(model.optimizer.regularized_counts())
    return rows, weights


def record(results, name, rows, weights, replicas):
    results[f"{name}_loss"] = rows[:, 0]
    results[f"{name}_psp_loss"] = rows[:, 1]
    results[f"{name}_replicas"] = replicas
    for i, w in enumerate(weights):
        results[f"{name}_weight{i}"] = w


def one_device(results):
    """One device, with the right λ and with λ/2: the weights a PSP term
    scaled by 1/replicas (keras-team/keras#19891) would give, so the test
    shows that such a bug would fail it."""
    record(results, "single", *fit(build()), 1)
    record(results, "halved", *fit(build(STRENGTH / 2)), 1)
    if OPTIMIZER == "gradient_coherent":
        # An L1 added once per replica (2 replicas) gives these.
        record(results, "doubled_l1", *fit(build(l1=2 * L1)), 1)


def mirrored(results):
    import tensorflow as tf

    (cpu,) = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    one_device(results)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = build()
    record(results, "mirrored", *fit(model), strategy.num_replicas_in_sync)


def data_parallel(results):
    import keras

    one_device(results)
    distribution = keras.distribution.DataParallel()
    keras.distribution.set_distribution(distribution)
    replicas = distribution.device_mesh.shape[0]
    record(results, "data_parallel", *fit(build()), replicas)


def multi_worker(results):
    import tensorflow as tf

    from applications import distribution

    # TensorFlow's strategy, with Keras 3's logs mended (see there).
    strategy = distribution.multi_worker_strategy()
    x, y = data()
    half = BATCH // 2

    def worker_shard(context):
        # This worker's half of every global batch, in the same order.
        i = context.input_pipeline_id
        rows = [
            r
            for step in range(STEPS)
            for r in range(
                step * BATCH + i * half, step * BATCH + (i + 1) * half
            )
        ]
        dataset = tf.data.Dataset.from_tensor_slices((x[rows], y[rows]))
        return dataset.batch(context.get_per_replica_batch_size(BATCH))

    with strategy.scope():
        model = build()
    dataset = strategy.distribute_datasets_from_function(worker_shard)
    record(
        results,
        "multi_worker",
        *fit(model, dataset),
        strategy.num_replicas_in_sync,
    )
    if json.loads(os.environ["TF_CONFIG"])["task"]["index"] == 0:
        # One device, outside the strategy's scope: the whole batches.
        one_device(results)


def main(engine, out, optimizer_name="sgd"):
    import numpy as np

    global OPTIMIZER
    OPTIMIZER = optimizer_name
    if engine == "data_parallel":
        os.environ["KERAS_BACKEND"] = "jax"
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    else:
        os.environ["KERAS_BACKEND"] = "tensorflow"
    results = {}
    {
        "mirrored": mirrored,
        "data_parallel": data_parallel,
        "multi_worker": multi_worker,
    }[engine](results)
    np.savez(out, **results)


if __name__ == "__main__":
    main(*sys.argv[1:])
