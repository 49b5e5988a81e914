"""The README and the user guide (docs/) say what is true.

The README holds what a newcomer needs first (install, the two commands CI
runs, one example, links); the user guide's pages in docs/ hold the rest.
Each page's code runs as written, and the statements checked here are
checked on the page that makes them.
"""

import pathlib
import re

import keras
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
GUIDE = ROOT / "docs" / "guide"

# Text checks do not depend on the Keras backend: the TensorFlow pass runs
# them; code that builds models runs on every backend.
TENSORFLOW_PASS = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="checks text, backend-independent: runs in the TensorFlow pass",
)

# Every Python block of the README and of the site's pages, and the test
# that runs it: a new block needs a test.
RUN_BY = {
    ("README.md", 0): "test_first_example_runs",
    ("docs/index.md", 0): "test_first_example_runs",
    ("docs/guide/four-ways.md", 0): "test_four_ways_example_runs",
    ("docs/guide/conversion.md", 0): "test_conversion_example_runs",
    ("docs/guide/keras-hub.md", 0): "test_keras_hub_example_runs",
    ("docs/guide/strength.md", 0): (
        "tests/test_strength_finder.py::test_strength_page_example_runs"
    ),
    ("docs/guide/paper.md", 0): "test_paper_training_example_runs",
    ("docs/guide/distribution.md", 0): "test_mirrored_strategy_example_runs",
    ("docs/guide/distribution.md", 1): "test_data_parallel_example_runs",
    ("docs/guide/related.md", 0): "test_related_regularizers_example_runs",
}


def _text(page):
    return (ROOT / page).read_text()


def _blocks(page, language):
    return re.findall(rf"```{language}\n(.*?)```", _text(page), flags=re.S)


def _run(page, index, code=None):
    namespace = {}
    code = _blocks(page, "python")[index] if code is None else code
    exec(compile(code, page, "exec"), namespace)
    return namespace


@TENSORFLOW_PASS
def test_every_python_block_of_the_readme_and_the_site_is_run():
    pages = ["README.md", "docs/index.md"] + [
        path.relative_to(ROOT).as_posix() for path in sorted(GUIDE.glob("*.md"))
    ]
    blocks = {
        (page, index)
        for page in pages
        for index in range(len(_blocks(page, "python")))
    }
    assert blocks == set(RUN_BY)
    for test in RUN_BY.values():
        if "::" not in test:
            assert test in globals(), test


@TENSORFLOW_PASS
def test_readme_opens_with_the_user_path_then_the_two_commands_ci_runs():
    user, ci_commands = _blocks("README.md", "bash")[:2]
    assert README.index("## Install and run") < README.index(user)
    assert "KERAS_BACKEND=" in user and "[tf,tfds]" in user
    assert README.index(ci_commands) > README.index(
        "## The two commands CI runs"
    )
    setup, tests = ci_commands.strip().splitlines()
    ci = (ROOT / ".ci" / "run").read_text()
    install = setup.split(" && python -m applications.")[0]
    assert setup.endswith("&& python -m applications.train")
    for step in install.split(" && "):
        assert step in ci.splitlines()
    assert tests in ci.splitlines()
    # The site's page on CI shows the same two commands.
    assert ci_commands in _blocks("docs/guide/development.md", "bash")


@TENSORFLOW_PASS
def test_readme_and_home_page_name_every_extra_of_setup_cfg():
    import configparser

    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    for page in ("README.md", "docs/index.md"):
        for extra in setup["options.extras_require"]:
            assert f"`[{extra}]`" in _text(page), (page, extra)


@TENSORFLOW_PASS
def test_readme_links_resolve_and_lead_to_every_guide_page_and_notebook():
    links = re.findall(r"\]\(([^)]+)\)", README)
    local = [link.split("#")[0] for link in links if "://" not in link]
    for link in local:
        assert (ROOT / link).exists(), link
    for path in GUIDE.glob("*.md"):
        assert path.relative_to(ROOT).as_posix() in local, path.name
    for path in (ROOT / "notebooks").glob("*.ipynb"):
        assert path.relative_to(ROOT).as_posix() in local, path.name
    for target in ("RESULTS.md", "BENCHMARKS.md", "CHANGELOG.md"):
        assert target in local, target
    # How to read the documentation: the site and where it comes from.
    assert 'pip install -e ".[docs]" && mkdocs serve' in README


@TENSORFLOW_PASS
def test_site_pages_link_by_repository_paths():
    # So that they work on GitHub; docs/hooks.py maps them onto the site.
    for page in [ROOT / "docs" / "index.md", *sorted(GUIDE.glob("*.md"))]:
        for link in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            target = link.split("#")[0]
            if target and "://" not in target:
                assert (page.parent / target).exists(), (page.name, link)


@TENSORFLOW_PASS
def test_home_page_and_development_page_list_every_notebook():
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert len(notebooks) >= 5
    for page, prefix in (
        ("docs/index.md", "../notebooks/"),
        ("docs/guide/development.md", "../../notebooks/"),
    ):
        for notebook in notebooks:
            assert f"]({prefix}{notebook.name})" in _text(page), (
                page,
                notebook.name,
            )


def test_first_example_runs():
    # The README's first example is the home page's, and the wheel's smoke
    # check (.ci/smoke_wheel.py) runs it from the package metadata.
    (code,) = _blocks("docs/index.md", "python")
    assert _blocks("README.md", "python")[0] == code
    model = _run("README.md", 0)["model"]
    assert "psp_loss" in [metric.name for metric in model.metrics]
    assert "psp_loss" in model.history.history


def test_four_ways_example_runs():
    model = _run("docs/guide/four-ways.md", 0)["model"]
    assert "psp_loss" in [metric.name for metric in model.metrics]


def test_conversion_example_runs():
    import numpy as np

    import keras_psp
    from keras_psp.models.psp_model import psp_layers
    from keras_psp.models.psp_model import psp_losses

    namespace = _run("docs/guide/conversion.md", 0)
    backbone, copy = namespace["backbone"], namespace["copy"]
    plain, terms = namespace["plain"], namespace["terms"]
    found, skipped = namespace["found"], namespace["skipped"]
    inputs = {
        "token_ids": np.ones((2, 8), "int32"),
        "segment_ids": np.zeros((2, 8), "int32"),
        "padding_mask": np.ones((2, 8), "int32"),
    }
    copy(inputs)
    # As the comments say: the class is kept, 3 terms, none left after.
    assert type(copy) is type(backbone) is type(plain)
    assert len(psp_losses(copy)) == len(terms) == len(found) == 3
    assert not skipped and not psp_layers(plain)
    assert not keras_psp.psp_terms(backbone)  # disabled again


def test_keras_hub_example_runs():
    namespace = _run("docs/guide/keras-hub.md", 0)
    task, terms = namespace["task"], namespace["terms"]
    assert type(task).__name__ == "GemmaCausalLM"
    assert [term.route for term in terms] == ["code", "code"]
    history = namespace["history"].history
    assert all(value > 0 for value in history["psp_loss"])
    # As the page says: the share asked for at the start.
    assert 1e-4 < history["psp_loss"][0] / history["loss"][0] < 1e-2
    # Plain keras_hub generates from the saved preset what the task did.
    assert namespace["loaded"] == str(namespace["answer"])


def test_paper_training_example_runs():
    from tests.helpers import tfds_data

    (training,) = _blocks("docs/guide/paper.md", "python")
    assert "epochs = 400\n" in training
    # As written but for the epochs (400 take a GPU days), on tfds' mock
    # CIFAR-10 (not on our machines): 64 images, one step per epoch.
    with tfds_data("cifar10", num_examples=64):
        namespace = _run(
            "docs/guide/paper.md",
            0,
            training.replace("epochs = 400", "epochs = 2"),
        )
    assert namespace["steps"] == 1
    history = namespace["model"].history.history
    assert len(history["loss"]) == 2 and "val_accuracy" in history


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="tf.distribute needs the TensorFlow backend; runs in the "
    "TensorFlow pass",
)
def test_mirrored_strategy_example_runs():
    namespace = _run("docs/guide/distribution.md", 0)
    model = namespace["model"]
    assert model.optimizer is not None
    assert namespace["strategy"].num_replicas_in_sync >= 1


@pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="keras.distribution's DataParallel: runs in the JAX pass",
)
def test_data_parallel_example_runs():
    import numpy as np

    try:
        model = _run("docs/guide/distribution.md", 1)["model"]
        assert isinstance(
            keras.distribution.distribution(),
            keras.distribution.DataParallel,
        )
    finally:
        keras.distribution.set_distribution(None)
    # LeNet-5's trainable parameters (docs/guide/paper.md).
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 431_080


def test_related_regularizers_example_runs():
    import numpy as np

    from keras_psp.optimizers import GradientCoherentSGD

    (code,) = _blocks("docs/guide/related.md", "python")
    assert "SoftDiamond" in code
    namespace = _run("docs/guide/related.md", 0)
    model = namespace["model"]
    assert isinstance(model.optimizer, GradientCoherentSGD)
    # PSP (4 layers) and the activation sparsity of the 3 hidden layers.
    model(np.zeros((2, 28, 28, 1)))
    assert len(model.losses) == 4 + 3
    assert 0 <= namespace["sparsity"]["overall"] <= 1


# Loads a saved model without importing keras_psp, then with it.
LOAD = """
import sys

import keras

try:
    keras.saving.load_model(sys.argv[1])
except TypeError as error:
    print("without:", str(error).split(". ")[0])
import keras_psp

model = keras.saving.load_model(sys.argv[1])
print("with:", type(model).__name__, float(model.layers[0].strength.numpy()))
"""


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="registration is backend-independent: TensorFlow pass",
)
def test_loading_a_saved_model_needs_import_keras_psp(tmp_path):
    import os
    import subprocess
    import sys

    import keras_psp

    page = _text("docs/guide/four-ways.md")
    bullet = page.split("- Every layer has `get_config`")[1].split("\n- ")[0]
    bullet = " ".join(bullet.split())
    assert "without `custom_objects`" in bullet
    assert "`import keras_psp`" in bullet
    assert "Could not locate class" in bullet
    assert "has run `import keras_psp`" in " ".join(README.split())
    model = keras_psp.PSPSequential(
        [
            keras.Input((4,)),
            keras_psp.PSPDense(3, activation="relu", strength=2e-3),
            keras.layers.Dense(2),
        ]
    )
    path = str(tmp_path / "model.keras")
    model.save(path)
    result = subprocess.run(
        [sys.executable, "-c", LOAD, path],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "without: Could not locate class 'PSPSequential'",
        f"with: PSPSequential {float(keras.ops.cast(2e-3, 'float32'))}",
    ]
