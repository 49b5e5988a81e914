"""What produced a run's numbers: backend, versions, commit, machine."""

import importlib.metadata
import os
import platform
import subprocess

THREAD_VARIABLES = (
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "OMP_NUM_THREADS",
    "XLA_FLAGS",
)
PACKAGES = (
    "keras",
    "keras-psp",
    "tensorflow",
    "tensorflow-datasets",
    "jax",
    "torch",
    "numpy",
)


def provenance():
    """Backend, package versions, git commit, platform and thread settings
    (a seed repeats a run only with these)."""
    import keras

    return {
        "backend": keras.backend.backend(),
        "versions": versions(),
        "git_commit": git_commit(),
        "platform": platform.platform(),
        "threads": threads(),
    }


def git_commit():
    """The commit of this checkout, or None outside a git checkout."""
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                cwd=os.path.dirname(os.path.abspath(__file__)),
                timeout=10,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        return None


def threads():
    """The thread settings in force."""
    env = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    return {"cpu_count": os.cpu_count(), **env}


def versions():
    """Python's version and those of the installed packages that matter."""
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found
