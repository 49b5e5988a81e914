"""A reproduction's records: each finished run's few files, copied from
its run dir, from which the report is written.

Each finished or failed run's `args.json`, `results.json`, `history.csv`
and `parameters.json` (per-layer kernel histograms, from `model.keras`)
are copied into `<report dir>/runs/<run>/`: a few tens of kB without
checkpoints, so the records can be committed with the report, which can
then be rebuilt (and extended by later runs, on another machine) after
the run dirs are gone.
"""

import os

from applications import config
from applications import experiments
from applications import run_dir as run_dirs

HISTOGRAM_BINS = 100  # per layer, in each run's parameters.json


def archive_run(run_dir, record_dir):
    """Copies a finished run's record into `record_dir`; a failed run (no
    model) has no `parameters.json`."""
    os.makedirs(record_dir, exist_ok=True)
    results = run_dirs.read_json(os.path.join(run_dir, "results.json"))
    if not run_dirs.failed(results):
        _archive_parameters(run_dir, record_dir)
    with open(os.path.join(run_dir, "history.csv")) as f:
        history = f.read()
    run_dirs.write_atomic(
        os.path.join(record_dir, "history.csv"), lambda f: f.write(history)
    )
    run_dirs.write_json(
        os.path.join(record_dir, "args.json"),
        run_dirs.read_json(os.path.join(run_dir, "args.json")),
    )
    # results.json last: its presence marks a complete record.
    run_dirs.write_json(os.path.join(record_dir, "results.json"), results)


def _archive_parameters(run_dir, record_dir):
    import keras
    import numpy as np

    import keras_psp  # noqa: F401 (registers the PSP classes for loading)

    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    histograms = []  # in the model's layer order
    for weight in model.trainable_weights:
        if weight.path.endswith("kernel"):
            values = np.asarray(weight.numpy(), dtype=np.float64).ravel()
            counts, edges = np.histogram(values, bins=HISTOGRAM_BINS)
            histograms.append(
                {
                    "layer": weight.path.split("/")[0],
                    "counts": counts.tolist(),
                    "edges": edges.tolist(),
                }
            )
    run_dirs.write_json(os.path.join(record_dir, "parameters.json"), histograms)


def _archived(run_dir, record_dir):
    """Whether `record_dir` holds the record of `run_dir` as it is now."""
    record = os.path.join(record_dir, "results.json")
    if not os.path.exists(record) or not os.path.exists(
        os.path.join(record_dir, "args.json")
    ):
        return False
    results = run_dirs.read_json(os.path.join(run_dir, "results.json"))
    if run_dirs.read_json(record) != results:
        return False
    return run_dirs.failed(results) or os.path.exists(
        os.path.join(record_dir, "parameters.json")
    )


def _record_dir(run, out):
    """Where `run`'s record goes: `<out>/runs/<run name>`; records named
    before run names held the backend are read where they are, for runs
    of the backend they record (`config.default_run_dir`)."""
    return config.default_run_dir(os.path.join(out, "runs"), run)


def recorded(run, out):
    """Whether `<out>/runs/` holds the record of `run` (a `config.run_config`
    result) finished with the same settings: such a run needs no training,
    so a reproduction whose records were committed goes on, on another
    machine, from where it was."""
    record_dir = _record_dir(run, out)
    record = os.path.join(record_dir, "results.json")
    return (
        os.path.exists(record)
        and not run_dirs.failed(run_dirs.read_json(record))
        and config.same_run(
            run_dirs.read_json(os.path.join(record_dir, "args.json")), run
        )
    )


def collect(runs, out):
    """The runs to report, from the records in `<out>/runs/`, after
    archiving there every run of `runs` (`experiments.configurations`)
    finished or failed in its run dir (a record of other settings is
    replaced).

    Returns:
        `(found, failures)`: `found` is {(data set, model, regime): {seed:
        (results, history rows, record dir)}} of the finished runs;
        `failures` a list of {dataset, model, regime, seed, run, reason}
        of the failed ones, which are never results.
    """
    found, failures = {}, []
    for key, seed, run in runs:
        record_dir = _record_dir(run, out)
        if os.path.exists(
            os.path.join(run.run_dir, "results.json")
        ) and not _archived(run.run_dir, record_dir):
            archive_run(run.run_dir, record_dir)
        record = os.path.join(record_dir, "results.json")
        if not os.path.exists(record):
            continue
        if not config.same_run(
            run_dirs.read_json(os.path.join(record_dir, "args.json")), run
        ):
            continue
        results = run_dirs.read_json(record)
        if run_dirs.failed(results):
            dataset, model, regime = key
            failures.append(
                {
                    "dataset": dataset,
                    "model": model,
                    "regime": regime,
                    "seed": seed,
                    "run": os.path.basename(record_dir),
                    "reason": results["reason"],
                }
            )
            continue
        rows = run_dirs.read_history(os.path.join(record_dir, "history.csv"))
        found.setdefault(key, {})[seed] = (results, rows, record_dir)
    return found, failures


def order(key):
    """Sort key of `(data set, model, regime)`: regimes in table order."""
    dataset, model, regime = key
    regimes = experiments.REGIME_ORDER
    rank = regimes.index(regime) if regime in regimes else 99
    return dataset, model, rank, regime
