"""Test helpers: backend-specific autodiff (library code uses keras.ops
only) and tfds data, real or mocked."""

import contextlib

import keras
import numpy as np
import pytest


def in_pytorch_pass(what):
    """Skip mark of a backend-independent test (`what` it checks) that runs
    once, in the PyTorch pass: the TensorFlow pass holds most such tests
    and is the longest."""
    return pytest.mark.skipif(
        keras.backend.backend() != "torch",
        reason=f"backend-independent {what}: runs in the PyTorch pass",
    )


def gradients(loss_fn, variables):
    """Returns d loss_fn() / d variables as numpy arrays, on any backend.

    `loss_fn` takes no argument and reads the variables' current values.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn()
        grads = tape.gradient(loss, [v.value for v in variables])
        return [np.asarray(g) for g in grads]
    if backend == "torch":
        import torch

        loss = loss_fn()
        grads = torch.autograd.grad(loss, [v.value for v in variables])
        return [g.detach().cpu().numpy() for g in grads]
    if backend == "jax":
        import jax

        def pure(values):
            mapping = list(zip(variables, values, strict=True))
            # collect_losses: let add_loss record losses inside the scope.
            with keras.StatelessScope(
                state_mapping=mapping, collect_losses=True
            ):
                return loss_fn()

        grads = jax.grad(pure)([v.value for v in variables])
        return [np.asarray(g) for g in grads]
    raise NotImplementedError(backend)


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


@contextlib.contextmanager
def tfds_data(name, num_examples=64):
    """The real local tfds data set when prepared, else tfds' mock data.

    CIFAR-10 is never on our machines, so it is always mocked. Mocked
    builders report themselves unprepared; `is_prepared` is patched so the
    library's fail-fast check lets the mock through.
    """
    import tensorflow_datasets as tfds

    if tfds.builder(name).is_prepared():
        yield False
        return
    with tfds.testing.mock_data(num_examples=num_examples):
        original = tfds.core.DatasetBuilder.is_prepared
        tfds.core.DatasetBuilder.is_prepared = lambda self: True
        try:
            yield True
        finally:
            tfds.core.DatasetBuilder.is_prepared = original
