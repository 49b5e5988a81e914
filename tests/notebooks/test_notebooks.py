"""The teaching notebooks run top to bottom (quick mode) on each backend."""

import os
import pathlib

import nbformat
import pytest
import tensorflow_datasets as tfds
from nbclient import NotebookClient

NOTEBOOKS = sorted(
    (pathlib.Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb")
)
NEEDS_MNIST = {"02_lenet5_mnist_regimes.ipynb"}


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_are_stripped(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, monkeypatch):
    if path.name in NEEDS_MNIST and not tfds.builder("mnist").is_prepared():
        if os.environ.get("CI"):
            pytest.fail("CI prepares MNIST (.ci/run); it is missing")
        pytest.skip("needs the local MNIST (a kernel cannot mock tfds)")
    # The kernel inherits KERAS_BACKEND, so it runs on this process' backend.
    monkeypatch.setenv("KERAS_PSP_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()  # raises CellExecutionError if any cell fails
    outputs = [o for c in notebook.cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
