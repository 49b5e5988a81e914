"""Test configuration: one pytest process per Keras backend.

Select the backend with `KERAS_BACKEND` (tensorflow, jax or torch). When it
is set, the suite checks that Keras really runs on it, so a backend that
failed to load can never pass silently as another.
"""

import gc
import itertools
import os

import keras
import numpy as np
import pytest


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend: {keras.backend.backend()}"


def pytest_sessionstart(session):
    wanted = os.environ.get("KERAS_BACKEND")
    if wanted and keras.backend.backend() != wanted:
        raise pytest.UsageError(
            f"KERAS_BACKEND={wanted} but Keras runs on "
            f"{keras.backend.backend()}."
        )


# clear_session's own full garbage collection costs 0.3 s or more once
# TensorFlow, JAX or PyTorch is loaded: almost half of a pass, run before
# every test. A full collection every COLLECT_EVERY tests keeps memory
# bounded as well.
COLLECT_EVERY = 25
_tests = itertools.count(1)


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    keras.utils.clear_session(free_memory=False)
    if next(_tests) % COLLECT_EVERY == 0:
        gc.collect()
    keras.utils.set_random_seed(1234)
    np.random.seed(1234)
    yield
    keras.config.set_dtype_policy("float32")
    _release_code_taps()


def _release_code_taps():
    """Collects the models a test left with PSP's code taps enabled: their
    taps release the backend shims when they are garbage collected, which
    could otherwise be many tests later, so the next test starts with
    Keras' own functions, as a program that never enabled PSP does."""
    from keras_psp.conversion import code_taps

    if code_taps._installed["users"] > 0:
        gc.collect()
