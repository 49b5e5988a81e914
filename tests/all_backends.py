"""Run the test suite on the TensorFlow, JAX and PyTorch backends at once.

Keras picks its backend once per process, so the suite runs once per
backend (see `conftest.py`). Most of a pass is single-threaded Python
(tracing, building, small ops), so the three passes run side by side: on
two cores this takes about half as long as running them one after another.
Each pass's output is printed whole when it ends, and the exit status is 0
only when every pass succeeded.

Usage:

    python tests/all_backends.py                  # the whole suite, 3 backends
    python tests/all_backends.py tests/layers -x  # further pytest arguments
    BACKENDS="jax torch" python tests/all_backends.py

It is the same as, only faster than:

    for b in tensorflow jax torch; do KERAS_BACKEND=$b python -m pytest -q; done
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BACKENDS = ("tensorflow", "jax", "torch")
ROOT = Path(__file__).resolve().parent.parent


def _backends():
    wanted = os.environ.get("BACKENDS", " ".join(BACKENDS)).split()
    unknown = sorted(set(wanted) - set(BACKENDS))
    if unknown or not wanted:
        raise SystemExit(
            f"BACKENDS must name some of {', '.join(BACKENDS)}; got "
            f"{os.environ.get('BACKENDS')!r}"
        )
    return wanted


def _start(backend, pytest_args):
    log = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", *pytest_args],
        cwd=ROOT,
        env={**os.environ, "KERAS_BACKEND": backend},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return process, log, time.monotonic()


def main(pytest_args):
    """Runs the passes; returns 0 when all passed, else 1."""
    running = {b: _start(b, pytest_args) for b in _backends()}
    print(f"pytest on {', '.join(running)} side by side ...", flush=True)
    failed = []
    try:
        while running:
            for backend, (process, log, started) in list(running.items()):
                if process.poll() is None:
                    continue
                del running[backend]
                seconds = time.monotonic() - started
                log.seek(0)
                status = "passed" if process.returncode == 0 else "FAILED"
                print(
                    f"\n===== KERAS_BACKEND={backend}: {status} "
                    f"(exit {process.returncode}, {seconds:.0f} s) ====="
                )
                print(log.read(), end="", flush=True)
                log.close()
                if process.returncode != 0:
                    failed.append(backend)
            time.sleep(0.5)
    except KeyboardInterrupt:
        for process, _, _ in running.values():
            process.terminate()
        for process, _, _ in running.values():
            process.wait()
        print("\ninterrupted; the passes still running were stopped")
        return 130
    if failed:
        print(f"\nFAILED on: {', '.join(failed)}")
        return 1
    print("\nall backends passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
