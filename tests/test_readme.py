"""The README's usage code runs, and CI runs the README's commands."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_readme_opens_with_the_user_path_then_the_two_commands_ci_runs():
    user, ci_commands = _blocks("bash")[:2]
    assert README.index("## Install and run") < README.index(user)
    assert "KERAS_BACKEND=" in user and "[tf,tfds]" in user
    setup, tests = ci_commands.strip().splitlines()
    ci = (ROOT / ".ci" / "run").read_text()
    install = setup.split(" && python -m applications.")[0]
    assert setup.endswith("&& python -m applications.train")
    for step in install.split(" && "):
        assert step in ci.splitlines()
    assert tests in ci.splitlines()


def test_readme_names_every_extra_of_setup_cfg():
    import configparser

    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    for extra in setup["options.extras_require"]:
        assert f"`[{extra}]`" in README, extra


def test_training_example_runs_as_written():
    from tests.helpers import tfds_data

    training = _blocks("python")[2]
    assert "epochs = 400\n" in training
    # As written but for the epochs (400 take a GPU days), on tfds' mock
    # CIFAR-10 (not on our machines): 64 images, one step per epoch.
    namespace = {}
    with tfds_data("cifar10", num_examples=64):
        exec(
            compile(
                training.replace("epochs = 400", "epochs = 2"), "R", "exec"
            ),
            namespace,
        )
    assert namespace["steps"] == 1
    history = namespace["model"].history.history
    assert len(history["loss"]) == 2 and "val_accuracy" in history


def test_usage_example_runs():
    code = _blocks("python")[0]
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    model = namespace["model"]
    assert "psp_loss" in [metric.name for metric in model.metrics]


def test_models_you_did_not_write_example_runs():
    import numpy as np

    from keras_psp.models.psp_model import psp_layers
    from keras_psp.models.psp_model import psp_losses

    code = _blocks("python")[1]
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    model, plain = namespace["model"], namespace["plain"]
    found, skipped = namespace["found"], namespace["skipped"]
    inputs = {
        "token_ids": np.ones((2, 8), "int32"),
        "segment_ids": np.zeros((2, 8), "int32"),
        "padding_mask": np.ones((2, 8), "int32"),
    }
    model(inputs)
    assert len(psp_losses(model)) == len(found) == 3  # as the comment says
    assert not skipped and not psp_layers(plain)


def test_related_regularizers_example_runs():
    import numpy as np

    from keras_psp.optimizers import GradientCoherentSGD

    code = _blocks("python")[5]
    assert "SoftDiamond" in code
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
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


def test_loading_a_saved_model_needs_import_keras_psp(tmp_path):
    import os
    import subprocess
    import sys

    import keras
    import pytest

    import keras_psp

    if keras.backend.backend() != "tensorflow":
        pytest.skip("registration is backend-independent: TensorFlow pass")
    bullet = README.split("- Every layer has `get_config`")[1].split("\n- ")[0]
    bullet = " ".join(bullet.split())
    assert "without `custom_objects`" in bullet
    assert "`import keras_psp`" in bullet
    assert "Could not locate class" in bullet
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
