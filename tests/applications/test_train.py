import json
import os
import re
import signal
import subprocess
import sys
import time

import keras
import pytest
import tensorflow_datasets as tfds

from applications import config
from applications import provenance
from applications import run_dir as run_dirs
from applications import train
from keras_psp import datasets
from tests.helpers import tfds_data

_TF_PASS = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="backend-independent program wiring: runs in the TensorFlow pass",
)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
TINY = ["--train-examples", "300", "--test-examples", "200", "--verbose", "0"]


def screen_lines(output):
    """The lines a terminal shows of `output` (a progress bar redraws its
    line after a carriage return), without colour codes."""
    output = re.sub(r"\x1b\[[0-9;]*m|\x08", "", output)
    return re.split(r"[\r\n]", output)


def progress_lines(output):
    return [line for line in screen_lines(output) if "/step" in line]


def test_run_writes_history_results_and_model(tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    with tfds_data("mnist", num_examples=300):
        results = train.main(
            ["--epochs", "2", "--run-dir", run_dir, *TINY, "--verbose", "1"]
        )
    # The progress bar fits 100 columns; the CSV has every entry.
    lines = progress_lines(capsys.readouterr().out)
    assert lines and max(map(len, lines)) <= 100, max(lines, key=len)
    assert "val_accuracy: " in lines[-1] and "z2" not in lines[-1]
    assert sorted(os.listdir(run_dir)) == [
        "args.json",
        "history.csv",
        "model.keras",
        "results.json",
    ]
    with open(os.path.join(run_dir, "results.json")) as f:
        saved = json.load(f)
    assert saved == json.loads(json.dumps(results))
    assert saved["status"] == "finished"
    assert saved["epochs_run"] == 2 and len(saved["test_errors"]) == 2
    assert saved["final_test_error"] == saved["test_errors"][-1]
    assert saved["best_test_error"] == min(saved["test_errors"])
    best = saved["test_errors"].index(saved["best_test_error"])
    assert saved["best_epoch"] == best + 1  # an epoch, from 1
    assert saved["resumed"] is False and saved["resumed_after_epochs"] == []
    # λ's schedule is recorded as a Keras schedule that can be rebuilt.
    import keras

    schedule = keras.optimizers.schedules.deserialize(
        saved["strength_schedule_config"]
    )
    assert float(schedule(1)) == pytest.approx(1e-3)
    assert 0 <= saved["final_test_error"] <= 100
    assert saved["images_per_second"] > 0 and saved["wall_seconds"] > 0
    assert saved["versions"]["keras"] and saved["strength"] == 1e-3
    env = {name: os.environ.get(name) for name in provenance.THREAD_VARIABLES}
    assert saved["threads"] == {"cpu_count": os.cpu_count(), **env}
    rows = run_dirs.read_history(os.path.join(run_dir, "history.csv"))
    assert [int(row["epoch"]) for row in rows] == [0, 1]
    assert {"psp_loss", "z2/conv1", "z2_mean", "val_accuracy"} <= set(rows[0])
    assert float(rows[0]["psp_strength"]) == pytest.approx(1e-3)  # λ itself
    # A finished run is not run again.
    start = time.time()
    again = train.main(["--epochs", "2", "--run-dir", run_dir, *TINY])
    assert again["final_test_error"] == saved["final_test_error"]
    assert time.time() - start < 5


@_TF_PASS
def test_progress_line_fits_100_columns_at_full_size(capsys):
    """The lines of an hour-long MNIST epoch (600 steps, 999 ms each) with
    a large loss, all of a run's log entries given to the bar."""
    from applications import run_callbacks

    bar = run_callbacks.ShortProgbar()
    bar.set_params({"verbose": 1, "epochs": 2, "steps": 600})
    bar.on_train_begin()
    bar.on_epoch_begin(0)
    progbar = bar.progbar
    progbar.interval = 0  # every update drawn
    logs = {
        "loss": 12.3456,
        "psp_loss": 2.7785e-4,
        "accuracy": 0.9876,
        **{f"z2/layer{i}": 1.5 for i in range(5)},
        "psp_strength": 1e-3,
    }
    progbar._start = time.time() - 9  # a first step of 9 s: ETA 1:29:51
    bar.on_train_batch_end(0, logs)
    progbar._time_after_first_step = time.time() - 298 * 0.999
    bar.on_train_batch_end(298, logs)
    progbar._start = time.time() - 3599
    progbar._time_after_first_step = time.time() - 599 * 0.999
    bar.on_epoch_end(0, {**logs, "val_accuracy": 0.99, "val_loss": 0.03})
    lines = progress_lines(capsys.readouterr().out)
    times = " | ".join(" ".join(line.split()[2:4]) for line in lines)
    assert re.fullmatch(
        r"1:29:5\d 9s/step \| 5:0\d 999ms/step \| 3599s 999ms/step", times
    ), times
    assert max(map(len, lines)) <= 100, lines
    assert lines[-1].endswith("psp_loss: 2.7785e-04 - val_accuracy: 0.9900")


@pytest.mark.parametrize(
    "argv, regularized",
    [
        # The regularizers are tested on every backend in tests/regularizers;
        # the program's wiring of them once, the optimizer on every backend.
        pytest.param(
            ["--regularization", "none", "--comparison", "soft_diamond"],
            None,
            marks=_TF_PASS,
        ),
        (["--comparison", "gradient_coherent_l1"], "regularized_share"),
        # Under a loss-scale optimizer, which wraps GradientCoherentSGD.
        pytest.param(
            ["--comparison", "gradient_coherent_l1"]
            + ["--mixed-precision", "mixed_float16"],
            "regularized_share",
            marks=_TF_PASS,
        ),
        pytest.param(
            ["--regularization", "none", "--comparison", "activation_sparsity"],
            None,
            marks=_TF_PASS,
        ),
    ],
)
def test_comparison_run_on_a_validation_split(
    tmp_path, argv, regularized, capsys
):
    run_dir = str(tmp_path / "run")
    run = [*argv, "--epochs", "1", "--validation-split", "0.2"]
    run += ["--run-dir", run_dir, *TINY]
    with tfds_data("mnist", num_examples=300):
        results = train.main(run)
        capsys.readouterr()
        # Reported again, finished: the error is the validation split's.
        assert train.main(run) == results
    reported = capsys.readouterr().out
    assert "is finished" in reported and "validation error" in reported
    assert "test error" not in reported
    assert results["evaluated_on"] == "validation"
    assert results["evaluated_examples"] == 60  # 20 % of 300
    assert 0 <= results["weight_sparsity"] < 1
    assert results["compression_ratio"] == pytest.approx(
        1 / (1 - results["weight_sparsity"])
    )
    (row,) = run_dirs.read_history(os.path.join(run_dir, "history.csv"))
    assert {"sparsity/conv1", "sparsity/fc1", "sparsity_mean"} <= set(row)
    assert "sparsity/logits" not in row
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    if regularized:
        assert 0 <= float(row[regularized]) <= 1
        optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
        assert type(optimizer).__name__ == "GradientCoherentSGD"
    else:
        assert type(model.optimizer).__name__ == "SGD"


@pytest.mark.parametrize("initializer", ["keras", "pytorch"])
def test_initializer_sets_the_starting_weights(tmp_path, initializer):
    import keras
    import numpy as np

    run_dir = str(tmp_path / "run")
    argv = ["--initializer", initializer, "--lr", "0", "--epochs", "1"]
    with tfds_data("mnist", num_examples=300):
        train.main([*argv, "--run-dir", run_dir, *TINY])
    # With lr 0 the saved model holds the initial weights.
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    bias = np.asarray(keras.ops.convert_to_numpy(model.get_layer("conv1").bias))
    if initializer == "keras":
        np.testing.assert_array_equal(bias, 0)  # Keras: zero biases
    else:
        assert 0.1 < np.abs(bias).max() <= 0.2  # PyTorch: U(±1/√(5·5))
    with open(os.path.join(run_dir, "args.json")) as f:
        settings = json.load(f)
    # A run dir written before --initializer existed has no such key;
    # it must still match a run asked for with the default.
    assert settings.get("initializer", "keras") == initializer
    assert ("initializer" in settings) == (initializer != "keras")
    name = config.run_name(config.parse_args(argv))
    ending = f"_pytorchinit_e1_seed1_{keras.backend.backend()}"
    assert name.endswith(ending) == (initializer == "pytorch")


def test_run_dir_in_use_by_a_live_process_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # Held through another open file: flock refuses it even to this process.
    with run_dirs.run_lock(str(run_dir)):
        with pytest.raises(SystemExit, match=f"process {os.getpid()} on "):
            train.main(["--run-dir", str(run_dir), *TINY])
        assert (run_dir / "lock").exists()  # the owner's lock is left alone
    assert not (run_dir / "results.json").exists()
    assert not (run_dir / "lock").exists()  # removed on release


def test_non_finite_loss_records_a_failed_run(tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    argv = ["--strength", "1e3", "--epochs", "3", "--run-dir", run_dir, *TINY]
    with tfds_data("mnist", num_examples=300):
        with pytest.raises(SystemExit) as error:
            train.main(argv)
    message = str(error.value.code)
    assert message.startswith(f"error: {run_dir} failed: non-finite loss")
    assert f"delete {run_dir}" in message and "\n" not in message
    with open(os.path.join(run_dir, "results.json")) as f:
        results = json.load(f)
    assert results["status"] == "failed"
    assert re.fullmatch(
        r"non-finite loss \((nan|inf)\) at epoch 1 batch [1-3]",
        results["reason"],
    )
    assert "final_test_error" not in results and results["strength"] == 1e3
    assert results["epochs_run"] == 0  # stopped in epoch 1 of 3
    assert results["failed_in_epoch"] == 1
    assert sorted(os.listdir(run_dir)) == [
        "args.json",
        "history.csv",
        "results.json",
    ]
    # Run again: the failure again, without training.
    start = time.time()
    with pytest.raises(SystemExit) as again:
        train.main(argv)
    assert again.value.code == error.value.code
    assert time.time() - start < 5
    # As a program: exit status 1, one line.
    program = subprocess.run(
        [sys.executable, "-m", "applications.train", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert program.returncode == 1
    assert program.stderr.strip().splitlines()[-1] == message
    # train() returns it as failed (reproduce.py reports it so).
    assert run_dirs.failed(train.train(config.parse_args(argv)))


def test_missing_data_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "_reachable", lambda host, timeout=5: False)
    start = time.time()
    with pytest.raises(SystemExit, match="TFDS_DATA_DIR"):
        train.main(
            [
                "--data-dir",
                str(tmp_path),
                "--run-dir",
                str(tmp_path / "run"),
                *TINY,
            ]
        )
    assert time.time() - start < 30


# Runs `python -m applications.train ARGS`, killing itself (SIGKILL, or
# SIGINT for a Ctrl-C) at the point KILL_AT names:
#   batch:E:B    in epoch E (from 0), after batch B (from 0);
#   row:E        after epoch E's history row, before its backup;
#   backup:E     after epoch E's backup, before the next epoch;
#   writing:E    half-way through writing epoch E's backup;
#   save         half-way through writing model.keras;
#   results      after model.keras, before results.json;
#   written      after results.json, before the backup is removed;
#   int:E:B      Ctrl-C (SIGINT) in epoch E after batch B.
KILLER = """
import os
import signal
import sys

import applications

applications.quiet_tensorflow()  # as the program does, before Keras

import keras

from applications import checkpoint, run_dir, train

kind, *where = os.environ["KILL_AT"].split(":")
where = [int(w) for w in where]
epoch = [None]


def die(sig=signal.SIGKILL):
    os.kill(os.getpid(), sig)
    if sig == signal.SIGINT:
        return  # Python raises KeyboardInterrupt at the next bytecode


def half_write(path):
    with open(path, "wb") as f:
        f.write(b"PK\\x03\\x04 half a file")
    die()


def on_epoch_begin(self, e, logs=None):
    epoch[0] = e


def on_train_batch_end(self, batch, logs=None):
    if kind in ("batch", "int") and [epoch[0], batch] == where:
        die(signal.SIGINT if kind == "int" else signal.SIGKILL)


checkpoint.EpochBackup.on_epoch_begin = on_epoch_begin
checkpoint.EpochBackup.on_train_batch_end = on_train_batch_end
backup = checkpoint.EpochBackup.on_epoch_end
row = keras.callbacks.CSVLogger.on_epoch_end
save_weights = keras.Model.save_weights
write_json = run_dir.write_json


def backup_then(self, e, logs=None):
    backup(self, e, logs)
    if kind == "backup" and [e] == where:
        die()


def row_then(self, e, logs=None):
    row(self, e, logs)
    if kind == "row" and [e] == where:
        die()


def save_weights_or_die(self, path, *args, **kwargs):
    if kind == "writing" and [epoch[0]] == where:
        half_write(path)
    return save_weights(self, path, *args, **kwargs)


def save_or_die(self, path, *args, **kwargs):
    half_write(path)


def write_json_or_die(path, data):
    if kind == "results" and path.endswith("results.json"):
        die()
    write_json(path, data)
    if kind == "written" and path.endswith("results.json"):
        die()


checkpoint.EpochBackup.on_epoch_end = backup_then
keras.callbacks.CSVLogger.on_epoch_end = row_then
keras.Model.save_weights = save_weights_or_die
if kind == "save":
    keras.Model.save = save_or_die
run_dir.write_json = write_json_or_die
train.main(sys.argv[1:])
"""
RUN = ["--epochs", "3", "--train-examples", "300", "--test-examples", "200"]


def needs_mnist():
    if not tfds.builder("mnist").is_prepared():
        if os.environ.get("CI"):
            pytest.fail("CI prepares MNIST (.ci/run); it is missing")
        pytest.skip("needs the local MNIST (a subprocess cannot mock tfds)")


def without_log_level():
    """The environment, less TF_CPP_MIN_LOG_LEVEL (the programs set it)."""
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return env


def run_train(run_dir, kill_at="none", extra=()):
    """`python -m applications.train` on `run_dir`, killed at `kill_at`."""
    return subprocess.run(
        [sys.executable, "-c", KILLER, *RUN, "--run-dir", run_dir, *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**without_log_level(), "KILL_AT": kill_at},
        # As from a terminal: a shell's background job (`pytest ... &`)
        # passes SIGINT on ignored, and Ctrl-C would not reach the program.
        preexec_fn=_default_sigint,
    )


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def finished_run(run_dir):
    """A run dir's results, history (no timings) and model weights."""
    import keras
    import numpy as np

    import keras_psp  # noqa: F401 (registers the PSP layers)

    results = run_dirs.read_json(os.path.join(run_dir, "results.json"))
    rows = run_dirs.read_history(os.path.join(run_dir, "history.csv"))
    for row in rows:
        del row["epoch_seconds"]
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    weights = [np.asarray(w) for w in model.get_weights()]
    return results, rows, weights


NUMBERS = (
    "final_test_error",
    "best_test_error",
    "best_epoch",
    "test_errors",
    "epochs_run",
    "status",
)
# Where each life of the stopped run ends. TensorFlow: every point; JAX
# and torch: one of each kind that depends on the backend (restoring the
# weights and optimizer mid-run, the data order after a restart).
LIVES = {
    "tensorflow": [
        "batch:0:1",  # mid-epoch, no backup yet: starts over
        "row:0",  # history row written, backup not: epoch 0 again
        "backup:0",  # backup written: resumes at epoch 1
        "writing:1",  # backup of epoch 1 half-written: epoch 1 again
        "batch:2:1",  # mid-epoch 2
        "save",  # model.keras half-written
        "results",  # model.keras written, results.json not
        "written",  # results.json written, the backup not removed
    ],
    "jax": ["backup:0", "batch:2:1", "save"],
    "torch": ["backup:0", "batch:2:1", "save"],
}


def test_a_run_stopped_anywhere_ends_as_if_never_stopped(tmp_path):
    import keras
    import numpy as np

    needs_mnist()
    straight = str(tmp_path / "straight")
    result = run_train(straight)
    assert result.returncode == 0, result.stderr
    stopped = str(tmp_path / "stopped")
    for kill_at in LIVES[keras.backend.backend()]:
        result = run_train(stopped, kill_at)
        assert result.returncode == -9, (kill_at, result.stderr)
        finished = os.path.exists(os.path.join(stopped, "results.json"))
        assert finished == (kill_at == "written")
    result = run_train(stopped)
    assert result.returncode == 0, result.stderr
    expected, expected_rows, expected_weights = finished_run(straight)
    results, rows, weights = finished_run(stopped)
    assert {k: results[k] for k in NUMBERS} == {k: expected[k] for k in NUMBERS}
    assert [row["epoch"] for row in rows] == ["0", "1", "2"]  # each once
    assert rows == expected_rows  # losses, λ, ⟨z²⟩: bit for bit
    for a, b in zip(weights, expected_weights, strict=True):
        np.testing.assert_array_equal(a, b)
    assert results["resumed"] and not expected["resumed"]
    assert results["resumed_after_epochs"] and all(
        0 < done <= 3 for done in results["resumed_after_epochs"]
    )
    # Nothing half-written is left, and the backup is gone.
    assert sorted(os.listdir(stopped)) == sorted(os.listdir(straight))
    assert ".tmp" not in "".join(os.listdir(stopped))


def test_a_killed_comparison_run_resumes_with_its_optimizer_state(tmp_path):
    """GradientCoherentSGD's per-kernel counters and the activation-sparsity
    monitor survive kill -9 mid-epoch like the weights: the resumed run's
    history (regularized share, sparsity per layer) and weights are bit for
    bit those of a run never stopped."""
    import numpy as np

    needs_mnist()
    extra = ["--comparison", "gradient_coherent_l1"]
    extra += ["--comparison-strength", "1e-4"]
    straight, stopped = str(tmp_path / "straight"), str(tmp_path / "stopped")
    assert run_train(straight, extra=extra).returncode == 0
    assert run_train(stopped, "batch:2:1", extra=extra).returncode == -9
    result = run_train(stopped, extra=extra)
    assert result.returncode == 0, result.stderr
    expected, expected_rows, expected_weights = finished_run(straight)
    results, rows, weights = finished_run(stopped)
    assert results["resumed_after_epochs"] == [2]
    # Counters lost on resume would count only the steps after it: the
    # share would differ from the straight run's (1.0 on this tiny run).
    assert 0 < float(rows[-1]["regularized_share"]) <= 1
    assert "sparsity_mean" in rows[-1]
    assert rows == expected_rows
    for a, b in zip(weights, expected_weights, strict=True):
        np.testing.assert_array_equal(a, b)
    assert {k: results[k] for k in NUMBERS} == {k: expected[k] for k in NUMBERS}


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the signal handling is the program's (resuming is tested on "
    "every backend by the stop-anywhere test): runs in the TensorFlow pass",
)
def test_ctrl_c_ends_with_one_line_and_the_run_resumes(tmp_path):
    needs_mnist()
    run_dir = str(tmp_path / "run")
    result = run_train(run_dir, "int:1:1")
    assert result.returncode == 130, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"interrupted: run the same command again to resume {run_dir} "
        "from its last finished epoch"
    ]
    result = run_train(run_dir)
    assert result.returncode == 0, result.stderr
    results = run_dirs.read_json(os.path.join(run_dir, "results.json"))
    assert results["resumed_after_epochs"] == [1]


# Program logic on files and messages, the same on every backend (the data
# pipeline is tf.data on all three, backups are Keras' HDF5 on all three);
# what depends on the backend, resuming to equal weights, is tested on all
# three above.
ONE_BACKEND = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="backend-independent program logic: runs in the TensorFlow pass",
)


@ONE_BACKEND
def test_a_corrupt_backup_is_named_and_can_be_discarded(tmp_path):
    needs_mnist()
    run_dir = str(tmp_path / "run")
    assert run_train(run_dir, "backup:1").returncode == -9
    backup = os.path.join(run_dir, "backup", "epoch-0002.weights.h5")
    with open(backup, "r+b") as f:
        f.truncate(os.path.getsize(backup) // 2)
    result = run_train(run_dir)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: the backup {backup} cannot be read (")
    assert line.endswith(
        f"run the same command with --discard-backup to start {run_dir} "
        "over from epoch 1"
    )
    result = run_train(run_dir, extra=["--discard-backup"])
    assert result.returncode == 0, result.stderr
    results = run_dirs.read_json(os.path.join(run_dir, "results.json"))
    assert results["epochs_run"] == 3 and results["resumed"] is False


@ONE_BACKEND
def test_corrupt_data_names_the_data_set(tmp_path):
    import shutil

    needs_mnist()
    source = tfds.builder("mnist").data_dir  # .../mnist/<version>
    version = os.path.relpath(source, os.path.dirname(os.path.dirname(source)))
    copy = tmp_path / "data" / version
    shutil.copytree(source, copy)
    shard = sorted(copy.glob("mnist-train.tfrecord*"))[0]
    with open(shard, "r+b") as f:
        f.truncate(1000)
    result = subprocess.run(
        [sys.executable, "-m", "applications.train", *RUN]
        + ["--data-dir", str(tmp_path / "data")]
        + ["--run-dir", str(tmp_path / "run")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=without_log_level(),
    )
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "mnist" in line
    assert str(copy) in line


def test_progress_bar_is_short(tmp_path, capfd):
    run_dir = str(tmp_path / "run")
    argv = ["--epochs", "1", "--run-dir", run_dir, *TINY[:-2]]
    with tfds_data("mnist", num_examples=300):
        train.main([*argv, "--verbose", "1"])
    out = re.sub(r"\x1b\[[0-9;]*m", "", capfd.readouterr().out)  # colours
    shown = re.split(r"[\n\r\b]", out)
    last = [part for part in shown if "val_accuracy" in part][-1]
    assert re.fullmatch(
        r"\d+/\d+ ━+ \S+ \S+/step - loss: \S+ - psp_loss: \S+ "
        r"- val_accuracy: \S+",
        last.strip(),
    ), last
    progress = [part for part in shown if "━" in part]
    assert progress and max(len(part) for part in progress) <= 100, progress
    # What the bar leaves out is in the history.
    (row,) = run_dirs.read_history(os.path.join(run_dir, "history.csv"))
    assert {"z2/conv1", "epoch_seconds", "psp_strength"} <= set(row)


def test_tensorboard_logs_hold_lambda_and_per_layer_z2(tmp_path):
    from tensorboard.backend.event_processing import event_accumulator

    run_dir = tmp_path / "run"
    argv = ["--epochs", "2", "--tensorboard", "--run-dir", str(run_dir)]
    with tfds_data("mnist", num_examples=300):
        train.main([*argv, *TINY])
    logs = event_accumulator.EventAccumulator(
        str(run_dir / "tensorboard" / "train"),
        size_guidance={event_accumulator.TENSORS: 0},
    )
    logs.Reload()
    tags = set(logs.Tags()["tensors"])
    assert {"epoch_psp_strength", "epoch_z2/conv1", "epoch_psp_loss"} <= tags
    assert [event.step for event in logs.Tensors("epoch_z2/conv1")] == [0, 1]


def test_mixed_precision_policy_run(tmp_path):
    import math

    policy = "mixed_bfloat16"  # mixed_float16: tests/test_mixed_precision.py
    run_dir = str(tmp_path / "run")
    argv = ["--mixed-precision", policy, "--epochs", "1", "--run-dir", run_dir]
    with tfds_data("mnist", num_examples=300):
        results = train.main([*argv, *TINY])
    assert results["status"] == "finished"
    assert results["mixed_precision"] == policy
    assert (results["distribution"], results["replicas"]) == ("none", 1)
    (row,) = run_dirs.read_history(os.path.join(run_dir, "history.csv"))
    assert math.isfinite(float(row["loss"]))
    assert math.isfinite(float(row["psp_loss"]))
    settings = run_dirs.read_json(os.path.join(run_dir, "args.json"))
    assert settings["mixed_precision"] == policy
