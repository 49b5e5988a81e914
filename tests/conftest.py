"""Test configuration: one pytest process per Keras backend.

Select the backend with `KERAS_BACKEND` (tensorflow, jax or torch). When it
is set, the suite checks that Keras really runs on it, so a backend that
failed to load can never pass silently as another.
"""

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


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    keras.utils.clear_session()
    keras.utils.set_random_seed(1234)
    np.random.seed(1234)
    yield
    keras.config.set_dtype_policy("float32")
