"""Training on several devices or machines with the frameworks' own
engines: `tf.distribute` (MirroredStrategy, MultiWorkerMirroredStrategy)
and `keras.distribution.DataParallel` (JAX), for `applications.train
--distribution`."""

import contextlib
import json
import os


def is_chief(args):
    """Whether this process writes the run dir: always, but in a
    multi-worker run, where only the chief (task 0 of `TF_CONFIG`) does."""
    if args.distribution != "multi_worker":
        return True
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = tf_config.get("task", {})
    if task.get("type") == "chief":
        return True
    cluster = tf_config.get("cluster", {})
    return "chief" not in cluster and int(task.get("index", 0)) == 0


def distribute(args):
    """Sets up `args.distribution`: the `tf.distribute` strategy (None
    unless TensorFlow's), the scope to build the model in, and the number
    of replicas. The global batch stays `args.batch_size`: the
    engines split each batch between the replicas and sum their gradients
    (Keras scales each replica's loss, PSP term included, by
    1/replicas)."""
    import keras

    if args.distribution == "data_parallel":
        distribution = keras.distribution.DataParallel()
        keras.distribution.set_distribution(distribution)
        replicas = int(distribution.device_mesh.shape[0])
        return None, contextlib.nullcontext(), replicas
    if args.distribution in ("mirrored", "multi_worker"):
        import tensorflow as tf

        if args.distribution == "mirrored":
            strategy = tf.distribute.MirroredStrategy()
        else:
            strategy = multi_worker_strategy()
        return strategy, strategy.scope(), int(strategy.num_replicas_in_sync)
    return None, contextlib.nullcontext(), 1


def multi_worker_strategy(**kwargs):
    """`tf.distribute.MultiWorkerMirroredStrategy(**kwargs)` (reading
    `TF_CONFIG`), mended so that Keras 3's `fit` runs under it.

    Keras (3.15) asks the strategy for the mean of the replicas' scalar
    logs over axis 0 and of the first batch's `(x, y)` structure; the
    multi-worker strategy refuses both ("Invalid reduction dimension 0 for
    input with 0 dimensions": tensorflow/tensorflow#72388; "Attempt to
    convert a value (PerReplica ...)"). This strategy reduces each tensor
    of a structure, a scalar over no axis. Training is untouched: the
    gradients are all-reduced by the strategy, as before.
    """
    import tensorflow as tf

    class Strategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis):
            def one(v):
                local = self.experimental_local_results(v)[0]
                scalar = getattr(local, "shape", None) is not None and (
                    local.shape.rank == 0
                )
                return super(Strategy, self).reduce(
                    reduce_op, v, None if scalar else axis
                )

            return tf.nest.map_structure(one, value)

    return Strategy(**kwargs)


def split_batches(strategy, dataset):
    """The training data for `strategy`: each replica gets its own part of
    every batch of `dataset`, so that a global batch is a batch of
    `dataset` (`--batch-size`) in the same order as on one device; each
    worker reads only its replicas' parts.

    (`strategy.experimental_distribute_dataset` finds no batch to split in
    our training data, whose batches are made inside each epoch's
    `flat_map`, and would give whole batches to each replica: a global
    batch of replicas × batch size; and it splits a last, smaller test
    batch by the full batch size: all of it to the first replica.)
    """
    import tensorflow as tf

    def replica_parts(context):
        replicas = context.num_replicas_in_sync
        local = replicas // context.num_input_pipelines
        first = context.input_pipeline_id * local

        def parts(*batch):
            size = tf.shape(batch[0], out_type=tf.int64)[0]

            def part(replica):
                start = replica * size // replicas
                stop = (replica + 1) * size // replicas
                return tuple(t[start:stop] for t in batch)

            return tf.data.Dataset.range(first, first + local).map(part)

        return dataset.flat_map(parts)

    return strategy.distribute_datasets_from_function(replica_parts)
