"""A one-line error when the Keras backend is not installed."""

import json
import os

# The backend's module, and the extra of keras-psp that installs it.
BACKENDS = {
    "tensorflow": ("tensorflow", "tf"),
    "jax": ("jax", "jax"),
    "torch": ("torch", "torch"),
}


def selected_backend():
    """The backend Keras will load: `KERAS_BACKEND`, else the one in
    `$KERAS_HOME/keras.json` (default `~/.keras`), else TensorFlow."""
    backend = os.environ.get("KERAS_BACKEND")
    if backend:
        return backend
    home = os.environ.get("KERAS_HOME") or os.path.join(
        os.path.expanduser("~"), ".keras"
    )
    try:
        with open(os.path.join(home, "keras.json")) as f:
            return json.load(f).get("backend", "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def check_backend_installed():
    """Imports Keras; raises one line naming the extra to install when the
    backend Keras would use is missing (instead of Keras' traceback)."""
    backend = selected_backend()
    try:
        import keras  # noqa: F401
    except ModuleNotFoundError as error:
        module, extra = BACKENDS.get(backend, (None, None))
        if error.name is None or error.name.split(".")[0] != module:
            raise
        choices = ", ".join(
            f"keras-psp[{e}] ({name})" for name, (_, e) in BACKENDS.items()
        )
        raise ImportError(
            f"keras-psp needs a Keras backend: Keras would run on {backend!r} "
            f"(KERAS_BACKEND, else ~/.keras/keras.json) but {module} is not "
            "installed. Install one with "
            f"`pip install keras-psp[{extra}]` (choices: {choices}) and set "
            "KERAS_BACKEND to it."
        ) from None


check_backend_installed()
