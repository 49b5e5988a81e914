"""The programs built on keras-psp; run each with `python -m`:

- `applications.train`: train one configuration (resumable run dir);
- `applications.reproduce`: the paper's experiments over several seeds,
  with tables and plots;
- `applications.quickstart`: L2 against PSP on MNIST, a few epochs;
- `applications.benchmark`: what PSP costs in training speed;
- `applications.convert_applications`: `apply_psp` on every model of
  `keras.applications`;
- `applications.convert_keras_hub`: `apply_psp` on every keras_hub
  backbone, at a tiny size.

The programs keep TensorFlow's C++ start-up logs off the terminal (set
`TF_CPP_MIN_LOG_LEVEL` yourself to see them).
"""

import contextlib
import os
import sys

# Set by the user: they asked for TensorFlow's logs at that level.
_QUIET = "TF_CPP_MIN_LOG_LEVEL" not in os.environ
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def quiet_tensorflow():
    """Imports TensorFlow (once; Keras imports it too, for `tf.data`),
    keeping its start-up lines off stderr: TensorFlow writes them from C++
    before its logging is set up, where TF_CPP_MIN_LOG_LEVEL cannot stop
    them (TensorFlow 2.21: "All log messages before absl::InitializeLog()",
    oneDNN, "Could not find cuda drivers"). Errors are still raised."""
    if not _QUIET or "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            with contextlib.suppress(ImportError):
                import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
