import os
import subprocess
import sys

import pytest

# A backend module that import cannot find, as on a machine without it.
HIDE = "import sys; sys.modules[{module!r}] = None; import keras_psp"


@pytest.mark.parametrize(
    "backend,module,extra",
    [("tensorflow", "tensorflow", "tf"), ("jax", "jax", "jax")],
)
def test_missing_backend_is_one_line_naming_the_extra(backend, module, extra):
    env = dict(os.environ, KERAS_BACKEND=backend)
    result = subprocess.run(
        [sys.executable, "-c", HIDE.format(module=module)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: keras-psp needs a Keras backend")
    assert f"keras-psp[{extra}]" in last
    # Keras' own traceback is not shown: only the import of keras_psp.
    assert "keras/src" not in result.stderr
