"""Train one configuration: model, data set, regularization, λ, seed.

    python applications/train.py                      # LeNet-5, MNIST, PSP
    python applications/train.py --regularization l2 --epochs 50
    python applications/train.py --model resnet18 --dataset cifar10 \\
        --regularization psp --strength 1e-3 --epochs 400

Everything goes into a run directory (default `runs/<configuration>`):
`history.csv` (one row per epoch: loss, test error, psp_loss, per-layer
⟨z²⟩, ...), `results.json` (written once, at the end: final and best test
error, settings, wall time, images/s, package versions, git commit,
thread settings), `args.json`, the final model `model.keras`, and
`backup/`, from which a run that was interrupted (Ctrl-C, kill -9) resumes
when started again with the same arguments. A run whose `results.json`
exists is not run again. A non-finite loss stops a run and records it as
failed (`"status": "failed"` and the `reason` in `results.json`; finished
runs say `"status": "finished"`); see --help.

Defaults follow the paper: SGD lr 0.1, batch 100 and no momentum for
MNIST/Fashion-MNIST (L2: weight decay 1e-4 on all parameters, as SGD's
`weight_decay` in the authors' code); batch 128, momentum 0.9, ×0.1 at
epochs 150/250/350 for CIFAR-10 (L2: 5e-4 on the kernels). PSP uses the
authors' normalization: mean of z² per layer and λ/L per layer. Weights
start from Keras' initializers; `--initializer pytorch` starts them from
PyTorch's defaults, as in the authors' code.
"""

import argparse
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import time

RUN_DIR_HELP = """\
A run dir is locked while a process trains it (an flock on run-dir/lock,
released by the system when the process ends, however it ends); a second
process asking for it stops with an error. A run stopped by a non-finite
loss (NaN or inf: e.g. a λ too large) is recorded as failed: results.json
says "status": "failed" and the reason, the program exits with status 1,
and the same command run again repeats the failure without training: to
retry, delete the run dir (or choose another --run-dir).
"""

MODELS = ("lenet5", "all_cnn_c", "resnet18", "mobilenetv2")
DATASETS = ("mnist", "fashion_mnist", "cifar10")
REGULARIZATIONS = ("none", "l2", "psp")
PAPER_L2 = {"mnist": 1e-4, "fashion_mnist": 1e-4, "cifar10": 5e-4}


class RunInUseError(RuntimeError):
    """Another live process is training the same run directory."""


@contextlib.contextmanager
def run_lock(run_dir):
    """Holds `run_dir/lock` while this process trains the run, so that two
    processes (e.g. two `reproduce.py` sharing a runs dir) never train the
    same run at once.

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


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(
            f"must be a finite number >= 0, got {text}"
        )
    return value


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog=RUN_DIR_HELP,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--model", choices=MODELS, default="lenet5")
    add("--dataset", choices=DATASETS, default="mnist")
    add("--regularization", choices=REGULARIZATIONS, default="psp")
    add(
        "--strength",
        type=_non_negative_float,
        default=None,
        help="λ: PSP 1e-3; L2 1e-4 (MNIST) or 5e-4 (CIFAR-10) by default",
    )
    add(
        "--reduction",
        choices=("mean", "sum"),
        default="mean",
        help="PSP normalization (mean: the authors' code)",
    )
    add("--epochs", type=_positive_int, default=5)
    add(
        "--batch-size",
        type=_positive_int,
        default=None,
        help="100 (MNIST) or 128 (CIFAR-10) by default",
    )
    add("--lr", type=_non_negative_float, default=0.1)
    add(
        "--momentum",
        type=_non_negative_float,
        default=None,
        help="0 (MNIST) or 0.9 (CIFAR-10) by default",
    )
    add(
        "--schedule",
        choices=("constant", "step", "cosine"),
        default=None,
        help="learning rate: constant (MNIST) or step (CIFAR-10) by default",
    )
    add(
        "--strength-schedule",
        choices=("constant", "step", "cosine", "warmup"),
        default="constant",
        help="λ over the epochs (step: ×0.1 at 50%% and 75%%)",
    )
    add("--seed", type=int, default=1)
    add(
        "--initializer",
        choices=("keras", "pytorch"),
        default="keras",
        help="initial weights: Keras' defaults, or PyTorch's (the authors' "
        "code): keras_psp.training.pytorch_initialization",
    )
    add(
        "--backend",
        choices=("tensorflow", "jax", "torch"),
        default=None,
        help="Keras backend (default: KERAS_BACKEND or Keras' own)",
    )
    add("--jit-compile", choices=("auto", "on", "off"), default="auto")
    add(
        "--mixed-precision",
        action="store_true",
        help="mixed_float16 compute (the penalty stays float32)",
    )
    add(
        "--data-dir",
        default=None,
        help="tfds data dir (default: TFDS_DATA_DIR)",
    )
    add(
        "--train-examples",
        type=_positive_int,
        default=None,
        help="use only the first N training images (quick runs)",
    )
    add("--test-examples", type=_positive_int, default=None)
    add(
        "--monitor-examples",
        type=_positive_int,
        default=1000,
        help="held-out test images on which ⟨z²⟩ is measured each epoch",
    )
    add("--run-dir", default=None, help="default: runs/<configuration>")
    add("--verbose", choices=("auto", "0", "1", "2"), default="auto")
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    cifar = args.dataset == "cifar10"
    if args.model == "lenet5" and cifar:
        parser.error("argument --model: lenet5 is for 28×28 MNIST-like data")
    if args.model != "lenet5" and not cifar:
        parser.error(f"argument --model: {args.model} is for CIFAR-10")
    if args.strength is None:
        args.strength = {
            "none": 0.0,
            "l2": PAPER_L2[args.dataset],
            "psp": 1e-3,
        }[args.regularization]
    if args.regularization == "none" and args.strength:
        parser.error(
            "argument --strength: must be 0 with --regularization none"
        )
    if args.regularization != "psp" and args.strength_schedule != "constant":
        parser.error("argument --strength-schedule: needs --regularization psp")
    args.batch_size = args.batch_size or (128 if cifar else 100)
    args.momentum = (
        (0.9 if cifar else 0.0) if args.momentum is None else args.momentum
    )
    args.schedule = args.schedule or ("step" if cifar else "constant")
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend
        if "keras" in sys.modules:
            import keras

            if keras.backend.backend() != args.backend:
                parser.error(
                    f"argument --backend: Keras already runs on "
                    f"{keras.backend.backend()} in this process"
                )
    if args.run_dir is None:
        args.run_dir = os.path.join("runs", run_name(args))
    return args


def run_name(args):
    name = f"{args.model}_{args.dataset}_{args.regularization}"
    if args.regularization != "none":
        name += f"{args.strength:g}"
        if args.regularization == "psp":
            name += f"_{args.reduction}"
            if args.strength_schedule != "constant":
                name += f"_{args.strength_schedule}"
    if args.initializer != "keras":
        name += f"_{args.initializer}init"
    return f"{name}_e{args.epochs}_seed{args.seed}"


# The settings that define a run; a run dir holds one of them.
RUN_KEYS = (
    "model",
    "dataset",
    "regularization",
    "strength",
    "reduction",
    "epochs",
    "batch_size",
    "lr",
    "momentum",
    "schedule",
    "strength_schedule",
    "seed",
    "train_examples",
    "test_examples",
    "mixed_precision",
    "initializer",
)
# Settings added after runs were recorded: at their default they are left
# out of a run's settings, so that those run dirs and records still match.
LATER_KEYS = {"initializer": "keras"}


def run_settings(args):
    """The settings of `args` that define a run (its `args.json`)."""
    settings = {key: getattr(args, key) for key in RUN_KEYS}
    for key, default in LATER_KEYS.items():
        if settings[key] == default:
            del settings[key]
    return settings


def write_atomic(path, write):
    """Creates `path` with `write(file)` atomically: readers see the old
    file or the whole new one, never a part (temporary file, then rename)."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path, data):
    """Writes `data` to `path` as JSON, atomically."""

    def write(f):
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")

    write_atomic(path, write)


def git_commit():
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


def read_history(path):
    """Rows of `history.csv` by epoch; a resumed run's repeated epochs keep
    their last row."""
    import csv

    if not os.path.exists(path):
        return []
    rows = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("epoch", "") != "":
                rows[int(row["epoch"])] = row
    return [rows[epoch] for epoch in sorted(rows)]


def load_splits(args, dataset):
    """`keras_psp.datasets.load` with the arguments of `args`; a missing
    data set ends the program with the library's message."""
    import keras_psp

    try:
        return keras_psp.datasets.load(
            dataset,
            args.batch_size,
            data_dir=args.data_dir,
            seed=args.seed,
            train_examples=args.train_examples,
            test_examples=args.test_examples,
            test_batch_size=1000,
        )
    except keras_psp.datasets.DatasetUnavailableError as error:
        sys.exit(f"error: {error}")


def build_model(args, keras_psp, steps_per_epoch):
    import keras

    builder = {
        "lenet5": keras_psp.models.LeNet5,
        "all_cnn_c": keras_psp.models.AllCNNC,
        "resnet18": keras_psp.models.ResNet18,
        "mobilenetv2": keras_psp.models.MobileNetV2,
    }[args.model]
    # L2 as the authors' SGD weight decay (on all parameters) when that is
    # what SGD does here too, i.e. without momentum; with momentum Keras'
    # decay is decoupled, so L2 goes on the kernels as a loss term.
    l2 = args.strength if args.regularization == "l2" else 0.0
    optimizer_decay = l2 if args.momentum == 0 else 0.0
    model = builder(
        classifier_activation=None,
        weight_decay=l2 - optimizer_decay,
        psp_strength=args.strength if args.regularization == "psp" else 0.0,
        psp_reduction=args.reduction,
    )
    optimizer = keras_psp.training.paper_optimizer(
        steps_per_epoch,
        schedule=args.schedule,
        epochs=args.epochs,
        learning_rate=args.lr,
        momentum=args.momentum,
        weight_decay=optimizer_decay or None,
    )
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile={"auto": "auto", "on": True, "off": False}[
            args.jit_compile
        ],
    )
    return model


def strength_schedule(args, callbacks_module):
    epochs = args.epochs
    return {
        "constant": lambda epoch: 1.0,
        "step": callbacks_module.step_strength(
            [max(1, epochs // 2), max(2, (3 * epochs) // 4)]
        ),
        "cosine": callbacks_module.cosine_strength(epochs),
        "warmup": callbacks_module.warmup_strength(max(1, epochs // 10)),
    }[args.strength_schedule]


def failed(results):
    """Whether `results` (a `results.json`) records a failed run; those
    written before runs could fail have no status and are finished."""
    return results.get("status", "finished") == "failed"


def train(args):
    """Trains the run `args` describes (or reports it, when finished or
    failed). Returns its `results.json`: `"status": "finished"` with the
    test errors, or `"status": "failed"` with the `reason` (a non-finite
    loss stops the run), which `main` turns into an error.

    Raises:
        RunInUseError: another live process is training `args.run_dir`.
    """
    os.makedirs(args.run_dir, exist_ok=True)
    paths = {
        name: os.path.join(args.run_dir, name)
        for name in (
            "args.json",
            "results.json",
            "history.csv",
            "model.keras",
            "backup",
        )
    }
    settings = run_settings(args)
    if os.path.exists(paths["args.json"]):
        with open(paths["args.json"]) as f:
            previous = json.load(f)
        if previous != settings:
            changed = sorted(
                k for k in settings if previous.get(k) != settings[k]
            )
            sys.exit(
                f"error: {args.run_dir} holds a run with other settings "
                f"({', '.join(changed)}); choose another --run-dir"
            )
    with run_lock(args.run_dir):
        if os.path.exists(paths["results.json"]):
            with open(paths["results.json"]) as f:
                results = json.load(f)
            if failed(results):
                print(f"{args.run_dir} failed: {results['reason']}")
            else:
                print(
                    f"{args.run_dir} is finished: test error "
                    f"{results['final_test_error']:.2f}%"
                )
            return results
        write_json(paths["args.json"], settings)
        return _run(args, paths, settings)


def _run(args, paths, settings):
    import keras
    import numpy as np

    import keras_psp

    if args.mixed_precision:
        keras.config.set_dtype_policy("mixed_float16")
    keras.utils.set_random_seed(args.seed)
    splits = load_splits(args, args.dataset)
    info = splits.info
    steps = -(-info["train_examples"] // args.batch_size)
    model = build_model(args, keras_psp, steps)
    if args.initializer == "pytorch":
        keras_psp.training.pytorch_initialization(model, seed=args.seed)
    # The fixed held-out batch for ⟨z²⟩: the first test images. Reading
    # the whole (cached) test set keeps tf.data's cache complete.
    monitor_x = np.concatenate([np.asarray(x) for x, _ in splits.test])[
        : args.monitor_examples
    ]

    callbacks = []
    if args.regularization == "psp":
        callbacks.append(
            keras_psp.callbacks.StrengthScheduler(
                strength_schedule(args, keras_psp.callbacks)
            )
        )
    nan_stop = terminate_on_nan(keras)
    callbacks += [
        nan_stop,
        keras.callbacks.BackupAndRestore(paths["backup"]),
        epoch_timer(keras),
        keras_psp.callbacks.PreActivationMonitor(monitor_x, per_layer=True),
        keras.callbacks.CSVLogger(paths["history.csv"], append=True),
    ]
    verbose = args.verbose if args.verbose == "auto" else int(args.verbose)
    model.fit(
        splits.train,
        validation_data=splits.test,
        epochs=args.epochs,
        callbacks=callbacks,
        shuffle=False,
        verbose=verbose,
    )
    if nan_stop.failure is not None:
        return _record_failure(args, paths, settings, nan_stop.failure)
    model.save(paths["model.keras"])
    rows = read_history(paths["history.csv"])
    errors = [100 * (1 - float(row["val_accuracy"])) for row in rows]
    seconds = sum(float(row["epoch_seconds"]) for row in rows)
    results = {
        **settings,
        "status": "finished",
        "final_test_error": errors[-1],
        "best_test_error": min(errors),
        "best_epoch": errors.index(min(errors)),
        "test_errors": errors,
        "epochs_run": len(rows),
        "train_examples_per_epoch": info["train_examples"],
        "test_examples": info["test_examples"],
        "wall_seconds": seconds,
        "images_per_second": info["train_examples"] * len(rows) / seconds,
        **provenance(),
    }
    write_json(paths["results.json"], results)
    print(
        f"{args.run_dir}: final test error {results['final_test_error']:.2f}% "
        f"(best {results['best_test_error']:.2f}%), "
        f"{results['images_per_second']:.0f} images/s"
    )
    return results


def provenance():
    """What produced a run's numbers: backend, package versions, commit,
    platform and thread settings (a seed repeats a run only with these)."""
    import keras

    return {
        "backend": keras.backend.backend(),
        "versions": versions(),
        "git_commit": git_commit(),
        "platform": platform.platform(),
        "threads": threads(),
    }


def _record_failure(args, paths, settings, reason):
    """Writes the `results.json` of a run that failed for `reason`: no
    test error (there is none to report), no model; the backup is removed
    (its weights are not finite)."""
    import shutil

    rows = read_history(paths["history.csv"])
    results = {
        **settings,
        "status": "failed",
        "reason": reason,
        "epochs_run": len(rows),
        **provenance(),
    }
    write_json(paths["results.json"], results)
    shutil.rmtree(paths["backup"], ignore_errors=True)
    print(f"{args.run_dir} failed: {reason}")
    return results


def terminate_on_nan(keras):
    """`keras.callbacks.TerminateOnNaN` (stops the run at the first batch
    whose loss is not finite), remembering where: its `failure` is then
    "non-finite loss (nan) at epoch E batch B" (both from 1), else None."""

    class TerminateOnNaN(keras.callbacks.TerminateOnNaN):
        failure = None

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_batch_end(self, batch, logs=None):
            super().on_batch_end(batch, logs)
            if self.model.stop_training and self.failure is None:
                loss = float((logs or {}).get("loss", float("nan")))
                self.failure = (
                    f"non-finite loss ({loss}) at epoch {self.epoch + 1} "
                    f"batch {batch + 1}"
                )

    return TerminateOnNaN()


def epoch_timer(keras):
    """A callback adding `epoch_seconds` (train + evaluation) to the logs."""

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs["epoch_seconds"] = time.perf_counter() - self.start

    return EpochTimer()


THREAD_VARIABLES = (
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "OMP_NUM_THREADS",
    "XLA_FLAGS",
)


def threads():
    """The thread settings in force: a seed repeats a run only with these."""
    env = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    return {"cpu_count": os.cpu_count(), **env}


def versions():
    import importlib.metadata

    found = {"python": platform.python_version()}
    for package in (
        "keras",
        "keras-psp",
        "tensorflow",
        "tensorflow-datasets",
        "jax",
        "torch",
        "numpy",
    ):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def main(argv=None):
    args = parse_args(argv)
    try:
        results = train(args)
    except RunInUseError as error:
        sys.exit(f"error: {error}")
    if failed(results):
        sys.exit(
            f"error: {args.run_dir} failed: {results['reason']}; the same "
            f"settings fail again: to retry, delete {args.run_dir}"
        )
    return results


if __name__ == "__main__":
    main()
