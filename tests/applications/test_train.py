import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import tensorflow_datasets as tfds

from applications import train
from keras_psp import datasets
from tests.helpers import tfds_data

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
TINY = ["--train-examples", "300", "--test-examples", "200", "--verbose", "0"]


@pytest.mark.parametrize(
    "argv, argument",
    [
        (["--epochs", "0"], "--epochs"),
        (["--strength", "-1"], "--strength"),
        (["--strength", "nan"], "--strength"),
        (["--batch-size", "ten"], "--batch-size"),
        (["--model", "resnet18"], "--model"),
        (["--dataset", "cifar10"], "--model"),
        (["--regularization", "none", "--strength", "0.1"], "--strength"),
        (
            ["--regularization", "l2", "--strength-schedule", "cosine"],
            "--strength-schedule",
        ),
        (["--model", "vgg"], "--model"),
    ],
)
def test_bad_arguments_are_argparse_errors(argv, argument, capsys):
    with pytest.raises(SystemExit) as error:
        train.parse_args(argv)
    assert error.value.code == 2
    assert argument in capsys.readouterr().err


def test_paper_defaults():
    mnist = train.parse_args([])
    assert (mnist.batch_size, mnist.momentum, mnist.schedule) == (
        100,
        0.0,
        "constant",
    )
    assert mnist.strength == 1e-3 and mnist.reduction == "mean"
    cifar = train.parse_args(
        [
            "--model",
            "resnet18",
            "--dataset",
            "cifar10",
            "--regularization",
            "l2",
        ]
    )
    assert (cifar.batch_size, cifar.momentum, cifar.schedule) == (
        128,
        0.9,
        "step",
    )
    assert cifar.strength == 5e-4


def test_run_writes_history_results_and_model(tmp_path):
    run_dir = str(tmp_path / "run")
    with tfds_data("mnist", num_examples=300):
        results = train.main(["--epochs", "2", "--run-dir", run_dir, *TINY])
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
    assert 0 <= saved["final_test_error"] <= 100
    assert saved["images_per_second"] > 0 and saved["wall_seconds"] > 0
    assert saved["versions"]["keras"] and saved["strength"] == 1e-3
    env = {name: os.environ.get(name) for name in train.THREAD_VARIABLES}
    assert saved["threads"] == {"cpu_count": os.cpu_count(), **env}
    rows = train.read_history(os.path.join(run_dir, "history.csv"))
    assert [int(row["epoch"]) for row in rows] == [0, 1]
    assert {"psp_loss", "z2/conv1", "z2_mean", "val_accuracy"} <= set(rows[0])
    # A finished run is not run again.
    start = time.time()
    again = train.main(["--epochs", "2", "--run-dir", run_dir, *TINY])
    assert again["final_test_error"] == saved["final_test_error"]
    assert time.time() - start < 5


def test_run_dir_with_other_settings_is_refused(tmp_path):
    run_dir = str(tmp_path / "run")
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, "args.json"), "w") as f:
        json.dump({"seed": 99}, f)
    with pytest.raises(SystemExit, match="other settings"):
        train.main(["--run-dir", run_dir, *TINY])


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
    name = train.run_name(train.parse_args(argv))
    assert name.endswith("_pytorchinit_e1_seed1") == (initializer == "pytorch")


def test_run_dir_in_use_by_a_live_process_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # Held through another open file: flock refuses it even to this process.
    with train.run_lock(str(run_dir)):
        with pytest.raises(SystemExit, match=f"process {os.getpid()} on "):
            train.main(["--run-dir", str(run_dir), *TINY])
        assert (run_dir / "lock").exists()  # the owner's lock is left alone
    assert not (run_dir / "results.json").exists()
    assert not (run_dir / "lock").exists()  # removed on release


def test_lock_file_left_by_a_dead_process_is_taken(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # Whatever the file says, nobody holds its flock.
    (run_dir / "lock").write_text(f"process {dead.pid} on some-host\n")
    with train.run_lock(str(run_dir)):
        owner = (run_dir / "lock").read_text()
        assert owner == f"process {os.getpid()} on {socket.gethostname()}\n"
        with pytest.raises(train.RunInUseError):
            with train.run_lock(str(run_dir)):
                pass
    assert not (run_dir / "lock").exists()


# Holds run_lock(argv[1]) until killed.
LOCK_HOLDER = """
import sys
import time

from applications import train

with train.run_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def test_lock_of_a_killed_process_is_free_at_once(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(run_dir)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(train.RunInUseError, match=f"process {holder.pid}"):
            with train.run_lock(str(run_dir)):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (run_dir / "lock").exists()  # a kill -9 leaves the file
    with train.run_lock(str(run_dir)):
        assert (
            (run_dir / "lock").read_text().startswith(f"process {os.getpid()} ")
        )


# Answers "try <start time>" (takes run_lock(argv[1]) at that time: "won"
# or "lost") and "release" ("released").
LOCK_RACER = """
import sys
import time

from applications import train

lock = None
for line in sys.stdin:
    command, *start = line.split()
    if command == "try":
        while time.time() < float(start[0]):
            pass
        lock = train.run_lock(sys.argv[1])
        try:
            lock.__enter__()
        except train.RunInUseError:
            lock = None
        print("won" if lock else "lost", flush=True)
    else:
        if lock is not None:
            lock.__exit__(None, None, None)
        print("released", flush=True)
"""


def test_racing_processes_one_wins_each_round(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", LOCK_RACER, str(run_dir)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]

    def tell(command):
        for racer in racers:
            racer.stdin.write(f"{command}\n")
            racer.stdin.flush()
        return [racer.stdout.readline().strip() for racer in racers]

    try:
        for round in range(50):
            # The winner holds the lock until every racer has tried.
            answers = tell(f"try {time.time() + 0.01}")
            assert sorted(answers) == ["lost", "lost", "won"], (round, answers)
            assert tell("release") == ["released"] * 3
    finally:
        for racer in racers:
            racer.stdin.close()
            racer.wait(timeout=60)
    assert not (run_dir / "lock").exists()


# From argv[2] (a time) for argv[3] seconds: take run_lock(argv[1]) and
# let it go again, as often as it can; prints how often it held it, and
# how often another racer held it at the same time.
LOCK_HAMMER = """
import os
import sys
import time

from applications import train

run_dir, start, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
marker = os.path.join(run_dir, "held")
while time.time() < start:
    pass
held = overlaps = 0
while time.time() < start + seconds:
    try:
        with train.run_lock(run_dir):
            held += 1
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                overlaps += 1
                continue
            os.remove(marker)
    except train.RunInUseError:
        pass
print(held, overlaps)
"""


def test_racing_processes_never_hold_a_run_dir_together(tmp_path):
    # Taking and letting go as fast as possible: the old PID-file lock
    # let two racers hold the dir in about a quarter of their turns.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    start = time.time() + 1.0  # when all three have started
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", LOCK_HAMMER, str(run_dir), str(start), "1"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    counts = [racer.communicate(timeout=60)[0].split() for racer in racers]
    held = [int(count[0]) for count in counts]
    overlaps = [int(count[1]) for count in counts]
    assert overlaps == [0, 0, 0]
    assert sum(held) > 100  # they did race
    assert not (run_dir / "lock").exists()


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
    assert results["epochs_run"] == 1  # stopped in epoch 1 of 3
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
        [sys.executable, os.path.join(ROOT, "applications", "train.py")] + argv,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert program.returncode == 1
    assert program.stderr.strip().splitlines()[-1] == message
    # train() returns it as failed (reproduce.py reports it so).
    assert train.failed(train.train(train.parse_args(argv)))
    assert not train.failed({"final_test_error": 1.0})  # before statuses


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


def test_write_json_is_atomic(tmp_path, monkeypatch):
    path = str(tmp_path / "results.json")
    train.write_json(path, {"a": 1})

    def broken_dump(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(json, "dump", broken_dump)
    with pytest.raises(RuntimeError):
        train.write_json(path, {"a": 2})
    with open(path) as f:
        assert json.load(f) == {"a": 1}


def test_killed_run_resumes_where_it_stopped(tmp_path):
    if not tfds.builder("mnist").is_prepared():
        if os.environ.get("CI"):
            pytest.fail("CI prepares MNIST (.ci/run); it is missing")
        pytest.skip("needs the local MNIST (a subprocess cannot mock tfds)")
    run_dir = str(tmp_path / "run")
    command = [
        sys.executable,
        os.path.join(ROOT, "applications", "train.py"),
        "--epochs",
        "4",
        "--run-dir",
        run_dir,
        "--verbose",
        "2",
        "--train-examples",
        "3000",
        "--test-examples",
        "500",
    ]
    history = os.path.join(run_dir, "history.csv")
    first = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 240
    while len(train.read_history(history)) < 1 and time.time() < deadline:
        assert first.poll() is None, first.stdout.read()
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    done = len(train.read_history(history))
    assert 1 <= done < 4
    assert not os.path.exists(os.path.join(run_dir, "results.json"))
    second = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Epoch 1/4" not in second.stdout  # resumed, not restarted
    assert [int(r["epoch"]) for r in train.read_history(history)] == [
        0,
        1,
        2,
        3,
    ]
    with open(os.path.join(run_dir, "results.json")) as f:
        assert json.load(f)["epochs_run"] == 4
    assert not [n for n in os.listdir(run_dir) if ".tmp" in n]
