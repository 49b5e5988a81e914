"""The teaching notebooks: committed with the outputs of a full run (made by
`python notebooks/refresh.py`), and run top to bottom (quick mode) in the
TensorFlow pass without touching the committed files, as a user runs them
(TensorFlow's log settings left to the notebook)."""

import configparser
import copy
import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import keras
import nbformat
import pytest
import tensorflow_datasets as tfds
from nbclient import NotebookClient

REPO = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
REFRESH = REPO / "notebooks" / "refresh.py"
NEEDS_MNIST = {
    "02_lenet5_mnist_regimes.ipynb",
    "05_psp_beside_related_regularizers.ipynb",
}
# What each notebook prints when it runs (in quick mode too): its lesson's
# key results. Every notebook has an entry.
PRINTS = {
    "01_psp_on_one_neuron.ipynb": [
        "max |autodiff - closed form|, kernel:",
        "max |autodiff - finite differences|:",
    ],
    "02_lenet5_mnist_regimes.ipynb": [" PSP: test error", "final ⟨z²⟩"],
    "03_why_psp_not_weight_decay.ipynb": [
        "PSP, silent inputs:   0.0 % of the pull",
        " PSP: test accuracy",
        "finite difference",
    ],
    "04_bring_your_own_model.ipynb": [
        "UserWarning: PSP leaves 1 layer(s) unregularized",
        "find_strength: λ =",
        "row_reader (LSTM)",
        "same predictions: True",
        "after enable_psp: 4 terms",
        "largest difference between the predictions: 0.0",
        "PSP terms left: 0",
        "same outputs: True",
    ],
    "06_psp_finetuning_keras_hub.ipynb": [
        "task: GemmaCausalLM | preprocessor: GemmaCausalLMPreprocessor",
        "λ from find_strength",
        "decoder_block_0  1 term(s), code",
        "LoRA + PSP: final loss",
        "it generates the same: True",
    ],
    "05_psp_beside_related_regularizers.ipynb": [
        "gradient-coherent L1: test error",
        "activation sparsity: test error",
    ],
}
INSTALL = '%pip install "..[tf,tfds,plots]" keras-hub'

MAX_BYTES = 300_000
# A line of TensorFlow's C++ logging (absl), e.g. "I0000 00:00:17.. port.cc".
TF_LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d|absl::", re.MULTILINE)
SETUP_CFG = REPO / "setup.cfg"
ENV_SET_BY_REFRESH = (
    "KERAS_BACKEND",
    "TF_CPP_MIN_LOG_LEVEL",
    "MPLBACKEND",
    "PYTHONPATH",
    "KERAS_PSP_NOTEBOOK_QUICK",
)


def code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def streams(notebook, name):
    """The text a notebook's cells wrote to stream `name`, cell by cell."""
    return [
        output.text
        for cell in code_cells(notebook)
        for output in cell.get("outputs", [])
        if output.output_type == "stream" and output.name == name
    ]


def extra(name):
    setup = configparser.ConfigParser()
    setup.read(SETUP_CFG)
    return set(setup["options.extras_require"][name].split())


def shown(cell):
    """What a cell shows: 'stdout', 'result' and the mime types it draws."""
    kinds = set()
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            if output.name == "stdout":
                kinds.add("stdout")
        elif output.output_type == "execute_result":
            kinds.add("result")
        elif output.output_type == "display_data":
            kinds.update(m for m in output.data if m.startswith("image/"))
    return kinds


def load_refresh():
    spec = importlib.util.spec_from_file_location("refresh", REFRESH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def protect_environment(monkeypatch):
    """Lets monkeypatch restore what refresh.py sets in os.environ."""
    for name in ENV_SET_BY_REFRESH:
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 5
    assert sorted(PRINTS) == [path.name for path in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_opens_with_install_and_parameter_cells(path):
    notebook = nbformat.read(path, as_version=4)
    install, parameters, setup = code_cells(notebook)[:3]
    # Installs only what is missing: never in the suite (the next test).
    assert INSTALL in install.source
    assert f"if missing:\n    {INSTALL}" in install.source
    assert "parameters" in parameters.metadata.get("tags", [])
    assert "KERAS_PSP_NOTEBOOK_QUICK" in parameters.source
    # TensorFlow's log settings come before Keras is imported.
    assert 'os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")' in setup.source
    assert setup.source.index("TF_CPP_MIN_LOG_LEVEL") < setup.source.index(
        "import keras"
    )


def test_the_install_cell_installs_nothing_here():
    """The test extra holds what the install cell installs, so the suite
    (which installs `[test]`) never runs the install cell's pip."""
    assert extra("tf") | extra("tfds") | extra("plots") <= extra("test")
    assert "keras-hub" in extra("test")
    for name in ("keras_psp", "tensorflow", "tensorflow_datasets", "keras_hub"):
        assert importlib.util.find_spec(name) is not None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_with_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    cells = code_cells(notebook)
    counts = [cell.execution_count for cell in cells]
    assert counts == list(range(1, len(cells) + 1)), (
        f"{path.name}: execution counts {counts}; refresh it with "
        "`python notebooks/refresh.py`"
    )
    outputs = [output for cell in cells for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    texts = [o.text for o in outputs if o.output_type == "stream"]
    assert not [t for t in texts if TF_LOG_LINE.search(t)], "TF log lines"
    assert not streams(notebook, "stderr"), "stderr in the saved outputs"
    assert (
        streams(notebook, "stdout")[0] == "missing before this cell: nothing\n"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_small_without_volatile_metadata(path):
    assert path.stat().st_size < MAX_BYTES, "lower the figures' dpi"
    notebook = nbformat.read(path, as_version=4)
    assert "language_info" not in notebook.metadata
    for cell in notebook.cells:
        assert "execution" not in cell.metadata  # nbclient's timestamps


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the notebooks' committed outputs come from TensorFlow: runs in "
    "the TensorFlow pass",
)
def test_notebook_runs(path, monkeypatch):
    if path.name in NEEDS_MNIST and not tfds.builder("mnist").is_prepared():
        if os.environ.get("CI"):
            pytest.fail("CI prepares MNIST (.ci/run); it is missing")
        pytest.skip("needs the local MNIST (a kernel cannot mock tfds)")
    committed_bytes = path.read_bytes()
    committed = nbformat.reads(committed_bytes.decode("utf-8"), as_version=4)
    # The kernel inherits KERAS_BACKEND, so it runs on this process' backend,
    # and imports this checkout's keras_psp. TensorFlow's log level is left
    # to the notebook, whose outputs must stay clean on their own.
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.setenv("KERAS_PSP_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv(
        "MPLBACKEND", "module://matplotlib_inline.backend_inline"
    )
    monkeypatch.setenv(
        "PYTHONPATH",
        os.pathsep.join(
            filter(None, [str(REPO), os.environ.get("PYTHONPATH")])
        ),
    )
    notebook = copy.deepcopy(committed)  # executed in memory only
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()  # raises CellExecutionError if any cell fails
    outputs = [o for c in notebook.cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert path.read_bytes() == committed_bytes  # the file is not written
    # Nothing on stderr: no TensorFlow start-up lines ("failed call to
    # cuInit"), which ipykernel forwards from file descriptor 2, no warnings.
    assert not streams(notebook, "stderr"), streams(notebook, "stderr")
    printed = "".join(streams(notebook, "stdout"))
    assert printed.startswith("missing before this cell: nothing\n")
    for text in PRINTS[path.name]:
        assert text in printed, f"{path.name} does not print {text!r}"
    # Whatever a cell prints or draws when run, its committed copy shows too.
    for number, (ran, kept) in enumerate(
        zip(code_cells(notebook), code_cells(committed), strict=True), 1
    ):
        missing = shown(ran) - shown(kept)
        assert not missing, (
            f"{path.name}, code cell {number} shows {sorted(missing)} when "
            "run but not in the committed notebook: run "
            "`python notebooks/refresh.py`"
        )


def test_refresh_help_lists_the_options():
    result = subprocess.run(
        [sys.executable, str(REFRESH), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for word in ("usage:", "NOTEBOOK", "--timeout", "--kernel", "default"):
        assert word in result.stdout


def test_refresh_environment(monkeypatch):
    refresh = load_refresh()
    environ = {"KERAS_PSP_NOTEBOOK_QUICK": "1", "PYTHONPATH": "elsewhere"}
    refresh.configure_environment(environ)
    assert environ["KERAS_BACKEND"] == "tensorflow"
    assert environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    assert "inline" in environ["MPLBACKEND"]
    assert "KERAS_PSP_NOTEBOOK_QUICK" not in environ
    assert environ["PYTHONPATH"].split(os.pathsep) == [str(REPO), "elsewhere"]
    environ = {"KERAS_BACKEND": "jax"}
    refresh.configure_environment(environ)
    assert environ["KERAS_BACKEND"] == "jax"  # the user's choice is kept
    assert environ["PYTHONPATH"] == str(REPO)


def test_refresh_writes_only_notebooks_that_ran(tmp_path, monkeypatch, capsys):
    protect_environment(monkeypatch)
    refresh = load_refresh()
    good, bad = tmp_path / "good.ipynb", tmp_path / "bad.ipynb"
    for path, source in ((good, "print(6 * 7)"), (bad, "1 / 0")):
        notebook = nbformat.v4.new_notebook()
        notebook.cells = [
            nbformat.v4.new_markdown_cell("# t"),
            nbformat.v4.new_code_cell(source),
        ]
        nbformat.write(notebook, path)
    bad_bytes = bad.read_bytes()
    assert refresh.main([str(good), str(bad), "--timeout", "60"]) == 1
    assert bad.read_bytes() == bad_bytes  # failed: left as it was
    (cell,) = code_cells(nbformat.read(good, as_version=4))
    assert cell.execution_count == 1
    assert cell.outputs[0].text == "42\n"
    assert "execution" not in cell.metadata
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bad.ipynb",
        "good.ipynb",
    ]
    printed = capsys.readouterr().out
    assert re.search(r"good\.ipynb: \d+\.\d s", printed)
    assert "FAILED bad.ipynb" in printed
