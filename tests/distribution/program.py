"""`python -m applications.train ARGS` on two devices of this machine.

    python -m tests.distribution.program ARGS

With `--distribution mirrored`: two logical CPU devices (TensorFlow); with
`data_parallel`: two JAX host devices; otherwise (`multi_worker`, a worker
per process) one device. Set before TensorFlow or JAX starts. The data
are the local MNIST, else tfds' mock MNIST.
"""

import os
import sys


def main(argv):
    distribution = argv[argv.index("--distribution") + 1]
    if distribution == "data_parallel":
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    from applications import train
    from tests.helpers import tfds_data

    if distribution == "mirrored":
        import tensorflow as tf

        (cpu,) = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
    with tfds_data("mnist", num_examples=300):
        train.main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
