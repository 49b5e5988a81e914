"""Train one configuration: model, data set, regularization, λ, seed.

    python -m applications.train                      # LeNet-5, MNIST, PSP
    python -m applications.train --regularization l2 --epochs 50
    python -m applications.train --help               # every option

Writes a run directory and resumes it when stopped; the settings, their
paper defaults and the run dir's files are described in `--help`
(`applications.config`). Other programs train runs with `train`:

    import applications
from applications import config, train
    results = train.train(config.run_config(epochs=2, seed=3))
"""

import contextlib
import os
import shutil
import sys
import tempfile

import applications
from applications import config
from applications import distribution
from applications import run_dir as run_dirs
from applications.provenance import provenance

TEST_BATCH = 1000
FILES = ("args.json", "results.json", "history.csv", "model.keras", "backup")


class RunError(RuntimeError):
    """The run cannot go on: a backup or the data cannot be read."""


def train(args):
    """Trains the run `args` describes (a `config.parse_args` or
    `config.run_config` result), or reports it when it is finished or
    failed; resumes it from its backup when it was stopped.

    Returns:
        Its `results.json`: `"status": "finished"` with the test errors, or
        `"status": "failed"` with the `reason` (a non-finite loss stops a
        run).

    Raises:
        run_dir.RunInUseError: another live process trains `args.run_dir`.
        RunError: its backup or its data cannot be read (the message says
            what to do).
    """
    if not distribution.is_chief(args):
        return _train_elsewhere(args)
    return _train(args)


def train_each(runs):
    """Trains each run of `runs` (`config.run_config` results) in turn, as
    `train` does; yields `(run, results)`, with results None for a run
    skipped (and said so on stdout) because another process trains it or
    its run dir holds a run of other settings."""
    import keras

    for run in runs:
        keras.utils.clear_session()
        try:
            config.check_run_dir(run)
            results = train(run)
        except (ValueError, run_dirs.RunInUseError) as error:
            print(f"skipped: {error}")
            results = None
        yield run, results


def _train(args):
    os.makedirs(args.run_dir, exist_ok=True)
    paths = {name: os.path.join(args.run_dir, name) for name in FILES}
    with run_dirs.run_lock(args.run_dir):
        if os.path.exists(paths["results.json"]):
            results = run_dirs.read_json(paths["results.json"])
            _remove_leftovers(args.run_dir)  # a kill after results.json
            backend = run_dirs.recorded_backend(args.run_dir)
            where = f" on {backend}" if backend else ""
            if run_dirs.failed(results):
                print(f"{args.run_dir} failed{where}: {results['reason']}")
            else:
                # A run on a validation split records that error there.
                held_out = results.get("evaluated_on", "test")
                print(
                    f"{args.run_dir} is finished{where}: {held_out} error "
                    f"{results['final_test_error']:.2f}%"
                )
            return results
        _remove_temporary(args.run_dir, paths["backup"])
        if args.discard_backup:
            shutil.rmtree(paths["backup"], ignore_errors=True)
            for name in ("history.csv", "resumes.json"):
                path = os.path.join(args.run_dir, name)
                if os.path.exists(path):
                    os.remove(path)
        settings = config.run_settings(args)
        run_dirs.write_json(
            paths["args.json"],
            {**settings, "backend": config.current_backend()},
        )
        return _run(args, paths, settings)


def _train_elsewhere(args):
    """A multi-worker run's other workers train in step with the chief but
    write into a temporary directory, removed at the end (as Keras' docs
    have non-chief workers do with `ModelCheckpoint` and
    `BackupAndRestore`). Where the run dir is on a file system every worker
    sees, they resume from the chief's backup, as the chief does."""
    import copy

    finished = os.path.join(args.run_dir, "results.json")
    if os.path.exists(finished):  # the chief reports it, and trains nothing
        return run_dirs.read_json(finished)
    mine = copy.copy(args)
    mine.run_dir = tempfile.mkdtemp(prefix="psp-worker-")
    try:
        backup = os.path.join(args.run_dir, "backup")
        if os.path.isdir(backup):
            shutil.copytree(backup, os.path.join(mine.run_dir, "backup"))
        history = os.path.join(args.run_dir, "history.csv")
        if os.path.exists(history):
            shutil.copy(history, mine.run_dir)
        return _train(mine)
    finally:
        shutil.rmtree(mine.run_dir, ignore_errors=True)


def _remove_leftovers(run_dir):
    """Removes what a finished run no longer needs: its backup, and the
    record of its restarts (now in results.json)."""
    shutil.rmtree(os.path.join(run_dir, "backup"), ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(run_dir, "resumes.json"))


def _remove_temporary(*directories):
    """Removes what a killed writer left half-written (never renamed)."""
    for directory in directories:
        if os.path.isdir(directory):
            for name in os.listdir(directory):
                if name.startswith(".tmp"):
                    os.remove(os.path.join(directory, name))


def _run(args, paths, settings):
    import keras
    import numpy as np

    import keras_psp
    from applications import checkpoint
    from applications import run_callbacks

    # First: a multi-worker strategy must exist before TensorFlow runs ops.
    strategy, scope, replicas = distribution.distribute(args)
    if args.mixed_precision != "none":
        keras.config.set_dtype_policy(args.mixed_precision)
    keras.utils.set_random_seed(args.seed)
    done, backup = checkpoint.latest(paths["backup"])
    splits = _load(args, done)
    info = splits.info
    # With --validation-split the held-out part of the training set takes
    # the test set's place: the test set is not looked at.
    held_out = splits.validation if args.validation_split else splits.test
    held_out_examples = info[
        "validation_examples" if args.validation_split else "test_examples"
    ]
    train_data, test_data = splits.train, held_out
    if strategy is not None:
        train_data = distribution.split_batches(strategy, train_data)
        # Repeated, and read for `validation_steps`: Keras cannot count the
        # batches of a distributed dataset, and reads it once per epoch
        # until it ends (warning that it "ran out of data").
        test_data = distribution.split_batches(strategy, test_data.repeat())
        validation_steps = -(-held_out_examples // TEST_BATCH)
    else:
        validation_steps = None
    with scope:
        model = build_model(args, keras_psp, info["steps_per_epoch"])
        if args.initializer == "pytorch":
            keras_psp.training.pytorch_initialization(model, seed=args.seed)
        if backup:
            try:
                checkpoint.restore(model, backup)
            except checkpoint.CorruptBackupError as error:
                raise RunError(
                    f"{error}; run the same command with --discard-backup "
                    f"to start {args.run_dir} over from epoch 1"
                ) from None
    run_dirs.keep_history(paths["history.csv"], done)
    resumes = _record_resume(args.run_dir, done)
    # The fixed held-out batch for ⟨z²⟩: the first test images. Reading
    # the whole (cached) test set keeps tf.data's cache complete.
    with _reading(args, keras_psp):
        monitor_x = np.concatenate([np.asarray(x) for x, _ in held_out])
    monitor_x = monitor_x[: args.monitor_examples]

    callbacks = []
    if args.regularization == "psp":
        scheduler = keras_psp.callbacks.StrengthScheduler(
            strength_schedule(args)
        )
        callbacks.append(scheduler)
    nan_stop = run_callbacks.TerminateOnNaN()
    callbacks += [
        nan_stop,
        run_callbacks.EpochTimer(),
        keras_psp.callbacks.PreActivationMonitor(monitor_x, per_layer=True),
        keras_psp.callbacks.ActivationSparsityMonitor(monitor_x),
        *(
            [run_callbacks.RegularizedShare()]
            if args.comparison.startswith("gradient_coherent")
            else []
        ),
        run_callbacks.ShortProgbar(),
        keras.callbacks.CSVLogger(paths["history.csv"], append=True),
        *_tensorboard(args, keras),
        # Last: the backup says the epoch's records are written.
        checkpoint.EpochBackup(paths["backup"]),
    ]
    verbose = args.verbose if args.verbose == "auto" else int(args.verbose)
    if done < args.epochs:
        with _reading(args, keras_psp):
            model.fit(
                train_data,
                validation_data=test_data,
                validation_steps=validation_steps,
                epochs=args.epochs,
                initial_epoch=done,
                steps_per_epoch=info["steps_per_epoch"],
                callbacks=callbacks,
                shuffle=False,  # the data set orders itself
                verbose=verbose,
            )
    settings = {
        **settings,
        "distribution": args.distribution,
        "replicas": replicas,
    }
    if nan_stop.failure is not None:
        return _record_failure(args, paths, settings, nan_stop)
    with run_dirs.atomic_path(paths["model.keras"]) as tmp:
        model.save(tmp)
    rows = run_dirs.read_history(paths["history.csv"])
    errors = [100 * (1 - float(row["val_accuracy"])) for row in rows]
    seconds = sum(float(row["epoch_seconds"]) for row in rows)
    best = min(range(len(errors)), key=errors.__getitem__)
    results = {
        **settings,
        "status": "finished",
        "final_test_error": errors[-1],
        "best_test_error": errors[best],
        "best_epoch": int(rows[best]["epoch"]) + 1,
        "test_errors": errors,
        "epochs_run": len(rows),
        "strength_schedule_config": (
            scheduler.get_config()["schedule"]
            if args.regularization == "psp"
            else None
        ),
        "resumed": bool(resumes),
        "resumed_after_epochs": resumes,
        "train_examples_per_epoch": info["train_examples"],
        "test_examples": info["test_examples"],
        "evaluated_on": "validation" if args.validation_split else "test",
        "evaluated_examples": held_out_examples,
        "wall_seconds": seconds,
        "images_per_second": info["train_examples"] * len(rows) / seconds,
        **provenance(),
    }
    results.update(_weight_sparsity(model, keras_psp))
    run_dirs.write_json(paths["results.json"], results)
    _remove_leftovers(args.run_dir)  # only now that the results are safe
    print(
        f"{args.run_dir}: final {results['evaluated_on']} error "
        f"{results['final_test_error']:.2f}% "
        f"(best {results['best_test_error']:.2f}%), "
        f"{results['images_per_second']:.0f} images/s"
    )
    return results


def _weight_sparsity(model, keras_psp):
    """The final weights' sparsity (|w| < 1e-3 of each kernel's largest)
    and the compression it allows."""
    sparsity = keras_psp.weight_sparsity(model, relative_threshold=1e-3)
    return {
        "weight_sparsity": sparsity["overall"],
        "weight_sparsity_per_kernel": sparsity["per_kernel"],
        "compression_ratio": sparsity["compression_ratio"],
    }


def _tensorboard(args, keras):
    if not args.tensorboard:
        return []
    directory = os.path.join(args.run_dir, "tensorboard")
    return [keras.callbacks.TensorBoard(directory, write_graph=False)]


def _record_resume(run_dir, done):
    """Notes in `resumes.json` that the run went on after `done` epochs
    (a run started again before its first backup starts over, and is the
    same run: not noted). Returns every such epoch count so far."""
    path = os.path.join(run_dir, "resumes.json")
    resumes = run_dirs.read_json(path) if os.path.exists(path) else []
    if done:
        resumes.append(done)
        run_dirs.write_json(path, resumes)
    return resumes


def _load(args, initial_epoch):
    """The data, in the order of epochs `initial_epoch`... (a function of
    the seed and the epoch, so a resumed run sees what it would have)."""
    import keras_psp

    try:
        with _reading(args, keras_psp):
            return keras_psp.datasets.load(
                args.dataset,
                args.batch_size,
                data_dir=args.data_dir,
                seed=args.seed,
                train_examples=args.train_examples,
                test_examples=args.test_examples,
                validation_split=args.validation_split,
                test_batch_size=TEST_BATCH,
                epochs=args.epochs,
                initial_epoch=initial_epoch,
            )
    except keras_psp.datasets.DatasetUnavailableError as error:
        raise RunError(str(error)) from None


@contextlib.contextmanager
def _reading(args, keras_psp):
    """Reads the run's data: a corrupt data set is a `RunError` whose
    message says which and how to rebuild it."""
    try:
        with keras_psp.datasets.reading(args.dataset, args.data_dir):
            yield
    except keras_psp.datasets.DatasetCorruptError as error:
        raise RunError(str(error)) from None


def build_model(args, keras_psp, steps_per_epoch):
    """The compiled model of the run `args`."""
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
        **comparison_regularizers(args, keras_psp),
    )
    optimizer = keras_psp.training.paper_optimizer(
        steps_per_epoch,
        schedule=args.schedule,
        epochs=args.epochs,
        learning_rate=args.lr,
        momentum=args.momentum,
        weight_decay=optimizer_decay or None,
    )
    if args.comparison.startswith("gradient_coherent"):
        norm = args.comparison.rsplit("_", 1)[1]  # "l1" or "l2"
        optimizer = keras_psp.optimizers.GradientCoherentSGD.from_config(
            {**optimizer.get_config(), norm: args.comparison_strength}
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


def comparison_regularizers(args, keras_psp):
    """The builder arguments of the run's related regularizer, if it is a
    regularizer (gradient_coherent is an optimizer)."""
    regularizers = keras_psp.regularizers
    if args.comparison == "soft_diamond":
        return {
            "kernel_regularizer": regularizers.SoftDiamond(
                args.comparison_strength, args.alpha, args.dispersion
            )
        }
    if args.comparison == "activation_sparsity":
        return {
            "activation_regularizer": regularizers.ActivationSparsity(
                args.comparison_strength
            )
        }
    return {}


def strength_schedule(args):
    """λ over the epochs, as a Keras schedule (called with the epoch)."""
    from keras_psp import callbacks

    epochs, strength = args.epochs, args.strength
    if args.strength_schedule == "step":
        return callbacks.step_strength(
            strength, [max(1, epochs // 2), max(2, (3 * epochs) // 4)]
        )
    if args.strength_schedule == "cosine":
        return callbacks.cosine_strength(strength, epochs)
    if args.strength_schedule == "warmup":
        return callbacks.warmup_strength(strength, max(1, epochs // 10))
    return callbacks.step_strength(strength, [])  # constant


def _record_failure(args, paths, settings, nan_stop):
    """Writes the `results.json` of a run that a non-finite loss stopped:
    the reason, the epochs it finished before (its history also holds the
    epoch it stopped in), no test error and no model."""
    results = {
        **settings,
        "status": "failed",
        "reason": nan_stop.failure,
        "epochs_run": nan_stop.epoch,
        "failed_in_epoch": nan_stop.epoch + 1,
        **provenance(),
    }
    run_dirs.write_json(paths["results.json"], results)
    _remove_leftovers(args.run_dir)  # the backup's weights are not finite
    print(f"{args.run_dir} failed: {nan_stop.failure}")
    return results


def main(argv=None):
    args = config.parse_args(argv)
    applications.quiet_tensorflow()
    try:
        results = train(args)
    except (run_dirs.RunInUseError, RunError) as error:
        sys.exit(f"error: {error}")
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: run the same command again to resume "
            f"{args.run_dir} from its last finished epoch",
            file=sys.stderr,
        )
        sys.exit(130)
    if run_dirs.failed(results):
        sys.exit(
            f"error: {args.run_dir} failed: {results['reason']}; the same "
            f"settings fail again: to retry, delete {args.run_dir}"
        )
    return results


if __name__ == "__main__":
    main()
