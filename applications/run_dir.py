"""A run directory: its lock, its atomic writes and its records.

A run dir holds one training run: `args.json` (the settings), `history.csv`
(one row per finished epoch), `backup/` (the last finished epoch's
weights), `model.keras` and `results.json`. Every file is written whole or
not at all (a temporary file, then a rename), so a run killed at any point
leaves either the old file or the new one.
"""

import contextlib
import csv
import io
import json
import os
import socket
import tempfile


class RunInUseError(RuntimeError):
    """Another live process is training the same run directory."""


@contextlib.contextmanager
def run_lock(run_dir):
    """Holds `run_dir/lock` while this process trains the run, so that two
    processes (e.g. two `reproduce` programs sharing a runs dir) never train
    the same run at once.

    The lock is an `fcntl.flock` on that file, kept open for the run's
    lifetime: the operating system releases it when the process ends, however
    it ends (kill -9 included), so a dead owner's lock is free at once. The
    file says who holds it (PID and host), for the error message; it is
    removed on release.

    Raises:
        RunInUseError: another process holds the lock.
    """
    import fcntl

    path = os.path.join(run_dir, "lock")
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunInUseError(
                f"{run_dir} is being trained by {_lock_owner(path)}; "
                "wait for it to end, or stop it"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        # A holder removes the file before it lets go: if this file is no
        # longer the one at `path`, it was released by a finished owner
        # and a new lock may be held there; take that one instead.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        owner = f"process {os.getpid()} on {socket.gethostname()}\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, owner.encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        os.close(fd)


def _lock_owner(path):
    try:
        with open(path) as f:
            owner = f.read().strip()
    except OSError:
        owner = ""
    return owner or "another process"


def temporary_path(path):
    """Where `path` is written before it is renamed into place: in the same
    directory (a rename is atomic only there), ending like `path` (Keras
    picks the format from the ending: `.keras`, `.weights.h5`)."""
    head, tail = os.path.split(path)
    return os.path.join(head, f".tmp{os.getpid()}-{tail}")


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path to write `path`'s content to; once the
    block ends without error the file is synced and renamed to `path`, so
    readers see the old file or the whole new one, never a part. On error
    the temporary file is removed."""
    tmp = temporary_path(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_atomic(path, write):
    """Creates `path` with `write(file)` (a text file) atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            write(f)


def write_json(path, data):
    """Writes `data` to `path` as JSON, atomically."""

    def write(f):
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")

    write_atomic(path, write)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def read_history(path):
    """The complete rows of `history.csv`, one per epoch in epoch order
    (for a repeated epoch, its last row); a row cut short by a kill is
    left out."""
    if not os.path.exists(path):
        return []
    rows = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if None in row.values() or row.get("epoch", "") == "":
                continue  # cut short
            rows[int(row["epoch"])] = row
    return [rows[epoch] for epoch in sorted(rows)]


def keep_history(path, epochs):
    """Rewrites `history.csv` (atomically) with only the rows of the first
    `epochs` epochs, which the backup holds: rows written after the backup
    are of epochs that will run again. With `epochs` 0 the file goes."""
    rows = [row for row in read_history(path) if int(row["epoch"]) < epochs]
    if not rows:
        if os.path.exists(path):
            os.remove(path)
        return
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, lambda f: f.write(text.getvalue()))


def failed(results):
    """Whether `results` (a `results.json`) records a failed run; those
    written before runs could fail have no status and are finished."""
    return results.get("status", "finished") == "failed"


def check_writable(run_dir):
    """Why `run_dir` cannot hold a run (a one-line reason), or None: it is,
    or can be made, a directory this process may write.

    Tried, not read from permission bits (root passes every `os.access`
    check, and /proc or a read-only mount takes no new entry all the same):
    a directory is made and removed at once in `run_dir`, or in its nearest
    existing parent when `run_dir` does not exist yet."""
    if not run_dir:
        return "the path is empty"
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        return f"{run_dir} exists and is not a directory"
    parent = os.path.abspath(run_dir)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"cannot create {run_dir}: {parent} is not a directory"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".probe-", dir=parent))
    except OSError as error:
        if parent == os.path.abspath(run_dir):
            return f"{run_dir} is not writable ({error.strerror})"
        return f"cannot create {run_dir} in {parent} ({error.strerror})"
    return None


def recorded_backend(run_dir):
    """The Keras backend of the run in `run_dir`: the one its `args.json`
    or, failing that, its `results.json` records; None when neither does
    (nothing trained yet, or a run recorded before backends were)."""
    for name in ("args.json", "results.json"):
        try:
            backend = read_json(os.path.join(run_dir, name)).get("backend")
        except (OSError, ValueError, AttributeError):
            continue
        if backend:
            return backend
    return None
