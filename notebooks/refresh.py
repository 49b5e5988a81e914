"""Re-executes the teaching notebooks in place, so their outputs are current.

The five took 6.5 minutes together on our 2-core CPU shared with other
work (2026-12-02, load average about 2, TensorFlow backend, this script:
21 s for 01, 240 s for 02, 15 s for 03, 32 s for 04, 77 s for 05, each
with the kernel's start and TensorFlow's import).

Usage (from anywhere; paths are relative to the current directory):

    python notebooks/refresh.py                 # every notebooks/*.ipynb
    python notebooks/refresh.py notebooks/02_lenet5_mnist_regimes.ipynb
    python notebooks/refresh.py --help

Each notebook runs top to bottom with nbclient in a fresh kernel, in full
(non-quick) mode: `KERAS_PSP_NOTEBOOK_QUICK` is removed from the kernel's
environment. The kernel imports this checkout's `keras_psp` and runs on the
TensorFlow backend unless `KERAS_BACKEND` is already set, with
`TF_CPP_MIN_LOG_LEVEL=3` and matplotlib's inline backend (figures become
image/png outputs). What C code writes to the kernel's stdout and stderr
(TensorFlow's start-up log lines) goes to this terminal, not into the
notebook (the notebooks' setup cells also hide them, so that they stay
out of the outputs however a notebook is run). The notebook file is
replaced (temporary file, then `os.replace`) only when every cell ran; a
failing notebook is left as it was and the script exits with status 1
after trying the others.

Timing metadata is not recorded and the kernel's `language_info` is
dropped, so a refresh changes only what the cells print and draw. The time
each notebook took is printed.
"""

import argparse
import os
import pathlib
import stat
import sys
import tempfile
import time

NOTEBOOK_DIR = pathlib.Path(__file__).resolve().parent
REPO = NOTEBOOK_DIR.parent
INLINE = "module://matplotlib_inline.backend_inline"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="\n\n".join(__doc__.split("\n\n")[:2]),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "notebooks",
        nargs="*",
        type=pathlib.Path,
        default=argparse.SUPPRESS,  # the help says what the default is
        metavar="NOTEBOOK",
        help="notebooks to execute in place (default: every .ipynb in "
        f"{NOTEBOOK_DIR})",
    )
    parser.add_argument(
        "--timeout",
        type=int,
        default=3600,
        help="seconds one cell may run before the notebook fails",
    )
    parser.add_argument(
        "--kernel",
        default="python3",
        help="name of the Jupyter kernel to run the notebooks in",
    )
    return parser.parse_args(argv)


def configure_environment(environ=os.environ):
    """Sets what the kernels inherit: backend, quiet TF, inline plots.

    The repository root goes first on `PYTHONPATH`, so the kernels import
    this checkout's `keras_psp` whatever is installed.
    """
    environ.setdefault("KERAS_BACKEND", "tensorflow")
    path = [str(REPO), *filter(None, [environ.get("PYTHONPATH")])]
    environ["PYTHONPATH"] = os.pathsep.join(path)
    environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    environ["MPLBACKEND"] = INLINE
    environ.pop("KERAS_PSP_NOTEBOOK_QUICK", None)


def execute(path, timeout, kernel):
    """Runs the notebook at `path`; writes it back only if every cell ran."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name=kernel,
        record_timing=False,
        # Lines written to the kernel's file descriptors 1 and 2 by C code
        # (TensorFlow's start-up logging) stay out of the outputs.
        extra_arguments=["--IPKernelApp.capture_fd_output=False"],
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()  # raises CellExecutionError if a cell fails
    notebook.metadata.pop("language_info", None)
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        os.chmod(temporary, stat.S_IMODE(os.stat(path).st_mode))
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            nbformat.write(notebook, file)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def main(argv=None):
    args = parse_args(argv)
    paths = getattr(args, "notebooks", None) or sorted(
        NOTEBOOK_DIR.glob("*.ipynb")
    )
    configure_environment()
    print(f"KERAS_BACKEND={os.environ['KERAS_BACKEND']}", flush=True)
    failed = []
    for path in paths:
        path = path.resolve()
        start = time.perf_counter()
        try:
            execute(path, args.timeout, args.kernel)
        except Exception as error:  # report, keep the file, go on
            failed.append(path.name)
            elapsed = time.perf_counter() - start
            print(f"FAILED {path.name} after {elapsed:.1f} s: {error}")
            continue
        elapsed = time.perf_counter() - start
        print(f"{path.name}: {elapsed:.1f} s", flush=True)
    if failed:
        print("not refreshed:", ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
