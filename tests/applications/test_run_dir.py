import errno
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from applications import run_dir as run_dirs
from tests.helpers import in_pytorch_pass

# Backend-independent: one pass runs it (the other passes would only repeat
# it, and CI's time is short).
pytestmark = in_pytorch_pass("run-dir logic")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def test_lock_file_left_by_a_dead_process_is_taken(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # Whatever the file says, nobody holds its flock.
    (run_dir / "lock").write_text(f"process {dead.pid} on some-host\n")
    with run_dirs.run_lock(str(run_dir)):
        owner = (run_dir / "lock").read_text()
        assert owner == f"process {os.getpid()} on {socket.gethostname()}\n"
        with pytest.raises(run_dirs.RunInUseError):
            with run_dirs.run_lock(str(run_dir)):
                pass
    assert not (run_dir / "lock").exists()


# Holds run_lock(argv[1]) until killed.
LOCK_HOLDER = """
import sys
import time

from applications import run_dir as run_dirs

with run_dirs.run_lock(sys.argv[1]):
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
        with pytest.raises(
            run_dirs.RunInUseError, match=f"process {holder.pid}"
        ):
            with run_dirs.run_lock(str(run_dir)):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (run_dir / "lock").exists()  # a kill -9 leaves the file
    with run_dirs.run_lock(str(run_dir)):
        assert (
            (run_dir / "lock").read_text().startswith(f"process {os.getpid()} ")
        )


# Answers "try <start time>" (takes run_lock(argv[1]) at that time: "won"
# or "lost") and "release" ("released").
LOCK_RACER = """
import sys
import time

from applications import run_dir as run_dirs

lock = None
for line in sys.stdin:
    command, *start = line.split()
    if command == "try":
        while time.time() < float(start[0]):
            pass
        lock = run_dirs.run_lock(sys.argv[1])
        try:
            lock.__enter__()
        except run_dirs.RunInUseError:
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

from applications import run_dir as run_dirs

run_dir, start, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
marker = os.path.join(run_dir, "held")
while time.time() < start:
    pass
held = overlaps = 0
while time.time() < start + seconds:
    try:
        with run_dirs.run_lock(run_dir):
            held += 1
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                overlaps += 1
                continue
            os.remove(marker)
    except run_dirs.RunInUseError:
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


def test_write_json_is_atomic(tmp_path, monkeypatch):
    path = str(tmp_path / "results.json")
    run_dirs.write_json(path, {"a": 1})

    def broken_dump(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(json, "dump", broken_dump)
    with pytest.raises(RuntimeError):
        run_dirs.write_json(path, {"a": 2})
    with open(path) as f:
        assert json.load(f) == {"a": 1}


def test_atomic_path_leaves_the_old_file_when_the_writer_fails(tmp_path):
    path = str(tmp_path / "model.keras")
    with open(path, "w") as f:
        f.write("old")
    with pytest.raises(RuntimeError):
        with run_dirs.atomic_path(path) as tmp:
            assert tmp.endswith("model.keras") and tmp != path
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("killed")
    with open(path) as f:
        assert f.read() == "old"
    assert os.listdir(tmp_path) == ["model.keras"]
    with run_dirs.atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write("new")
    with open(path) as f:
        assert f.read() == "new"


HISTORY = "epoch,loss,val_accuracy\n0,1.0,0.5\n1,0.9,0.6\n2,0.8,0.7\n"


def test_read_history_drops_a_row_cut_short(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text(HISTORY + "3,0.7")  # a kill in the middle of a row
    rows = run_dirs.read_history(str(path))
    assert [row["epoch"] for row in rows] == ["0", "1", "2"]
    assert run_dirs.read_history(str(tmp_path / "none.csv")) == []


def test_keep_history_keeps_the_epochs_the_backup_holds(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text(HISTORY)
    run_dirs.keep_history(str(path), 2)
    assert path.read_text() == "epoch,loss,val_accuracy\n0,1.0,0.5\n1,0.9,0.6\n"
    run_dirs.keep_history(str(path), 0)
    assert not path.exists()
    run_dirs.keep_history(str(path), 3)  # no file: nothing to do
    assert not path.exists()


def test_check_writable(tmp_path):
    assert run_dirs.check_writable(str(tmp_path / "a" / "b")) is None
    assert run_dirs.check_writable(str(tmp_path)) is None
    assert os.listdir(tmp_path) == []  # made and removed: nothing left
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert "is not a directory" in run_dirs.check_writable(str(a_file))
    assert "is not a directory" in run_dirs.check_writable(str(a_file / "run"))


def test_check_writable_tries_instead_of_asking_os_access(
    tmp_path, monkeypatch
):
    # /proc takes no new entry, though os.access says root may write it.
    assert run_dirs.check_writable("/proc/x") == (
        "cannot create /proc/x in /proc (No such file or directory)"
    )
    # A read-only dir (as a read-only mount refuses a new entry).
    locked = str(tmp_path / "locked")
    os.mkdir(locked)
    real = tempfile.mkdtemp

    def mkdtemp(prefix=None, dir=None):
        if dir == locked:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(prefix=prefix, dir=dir)

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    assert run_dirs.check_writable(locked) == (
        f"{locked} is not writable (Read-only file system)"
    )
    assert run_dirs.check_writable(os.path.join(locked, "a", "run")) == (
        f"cannot create {locked}/a/run in {locked} (Read-only file system)"
    )
    assert os.listdir(tmp_path) == ["locked"]  # the probes leave nothing
    assert run_dirs.check_writable("") == "the path is empty"


def test_failed():
    assert run_dirs.failed({"status": "failed", "reason": "nan"})
    assert not run_dirs.failed({"status": "finished"})
    assert not run_dirs.failed({"final_test_error": 1.0})  # before statuses
