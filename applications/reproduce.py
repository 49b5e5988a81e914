"""Reproduce the paper's experiments over several seeds, with statistics.

    python applications/reproduce.py                       # MNIST + Fashion
    python applications/reproduce.py --experiments mnist --seeds 5
    python applications/reproduce.py --experiments cifar10  # GPU + CIFAR-10

Each configuration is one `applications/train.py` run in its own run dir
under `--runs-dir`; finished runs are skipped and interrupted ones resume,
so this can be stopped and started again at any time. Several of these
processes may share one `--runs-dir` (on a machine with spare cores, start
two or three with the same arguments): each run dir is locked while it
trains, and a process skips the runs another one holds. When the runs are
done (or with `--report-only`, from those that are), it writes into
`--out`: `summary.md` (mean ± std of the final-epoch test error per
configuration beside the paper's number and the authors' logs, best-epoch
error as a secondary column, and the paired PSP − L2 difference over the
same seeds), `summary.json`, and the plots `test_error.png`, `z2.png`
(⟨z²⟩ per epoch, the paper's Fig. 2b) and `parameters.png` (per-layer
parameter histograms, L2 vs PSP, the paper's Fig. 3). A run that failed
(stopped by a non-finite loss, see `train.py --help`) is listed as failed,
with its reason, in `summary.md` and `summary.json` (`failed`), and enters
no table, mean or plot; it is not retried until its run dir is deleted.

The report is written from records, not from the run dirs: each finished
run's `args.json`, `results.json`, `history.csv` and `parameters.json`
(kernel histograms) are copied into `<out>/runs/<run>/`, a few tens of kB
without checkpoints. Committed with the report, they let it be rebuilt
(`--report-only`) and extended by later runs on another machine after the
run dirs are gone.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from applications import train  # noqa: E402

# experiment: (data set, model, epochs, {regime: λ}); the paper's settings.
EXPERIMENTS = {
    "mnist": [("mnist", "lenet5", 50, {"none": 0.0, "l2": 1e-4, "psp": 1e-3})],
    "fashion_mnist": [
        ("fashion_mnist", "lenet5", 150, {"l2": 1e-4, "psp": 1e-3})
    ],
    "cifar10": [
        ("cifar10", model, 400, {"l2": 5e-4, "psp": 1e-3})
        for model in ("resnet18", "mobilenetv2", "all_cnn_c")
    ],
    # The paper's future work: λ decayed during training (×0.1 at 50% and
    # 75% of the epochs) against constant λ; shares the MNIST runs of
    # `mnist` for constant λ and L2.
    "mnist_strength_decay": [
        ("mnist", "lenet5", 50, {"l2": 1e-4, "psp": 1e-3, "psp_step": 1e-3})
    ],
    # Weights from PyTorch's default initialization, as in the authors'
    # code, against Keras' (sharing the runs of `mnist` / `fashion_mnist`).
    **{
        f"{dataset}_pytorch_init": [
            (
                dataset,
                "lenet5",
                epochs,
                {
                    "l2": 1e-4,
                    "psp": 1e-3,
                    "l2_pytorch_init": 1e-4,
                    "psp_pytorch_init": 1e-3,
                },
            )
        ]
        for dataset, epochs in (("mnist", 50), ("fashion_mnist", 150))
    },
}
# Each regime: train.py's --regularization and further train.py arguments.
REGIMES = {
    "none": ("none", []),
    "l2": ("l2", []),
    "psp": ("psp", []),
    "psp_step": ("psp", ["--strength-schedule", "step"]),
    "l2_pytorch_init": ("l2", ["--initializer", "pytorch"]),
    "psp_pytorch_init": ("psp", ["--initializer", "pytorch"]),
}
REGIME_ORDER = tuple(REGIMES)
# Paired comparisons: (regime, baseline).
PAIRS = (
    ("psp", "l2"),
    ("psp_step", "l2"),
    ("psp_step", "psp"),
    ("psp_pytorch_init", "l2_pytorch_init"),
    ("psp_pytorch_init", "psp"),
    ("l2_pytorch_init", "l2"),
)
HISTOGRAM_BINS = 100  # per layer, in each run's parameters.json
# Test error (%) in the paper (single runs) and in the authors' public logs
# (10 seeds, final epoch: mean, std).
PAPER = {
    ("mnist", "lenet5"): {"none": 0.71, "l2": 0.64, "psp": 0.50},
    ("fashion_mnist", "lenet5"): {"l2": 8.9, "psp": 8.0},
    ("cifar10", "resnet18"): {"l2": 5.1, "psp": 4.6},
    ("cifar10", "mobilenetv2"): {"l2": 7.0, "psp": 6.4},
    ("cifar10", "all_cnn_c"): {"l2": 9.1, "psp": 8.6},
}
AUTHORS_LOGS = {
    ("mnist", "lenet5"): {
        "none": (0.74, 0.06),
        "l2": (0.76, 0.03),
        "psp": (0.57, 0.04),
    },
    # PSP: save/logs/LeNet5_FashionMNIST_PSP.log of github enzotarta/PSP
    # (10 runs, 150 epochs; sample std).
    ("fashion_mnist", "lenet5"): {"l2": (8.14, 0.21), "psp": (7.80, 0.20)},
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--experiments",
        nargs="+",
        choices=sorted(EXPERIMENTS),
        default=["mnist", "fashion_mnist"],
    )
    parser.add_argument("--seeds", type=train._positive_int, default=3)
    parser.add_argument(
        "--epochs",
        type=train._positive_int,
        default=None,
        help="override every experiment's epochs (quick runs)",
    )
    parser.add_argument(
        "--train-examples",
        type=train._positive_int,
        default=None,
        help="quick runs on part of the data",
    )
    parser.add_argument(
        "--test-examples", type=train._positive_int, default=None
    )
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument(
        "--out",
        default=os.path.join("runs", "report"),
        help="report directory (results/ holds the one of RESULTS.md)",
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="write the report from the finished runs only",
    )
    parser.add_argument(
        "--verbose", choices=("auto", "0", "1", "2"), default="2"
    )
    return parser.parse_args(argv)


def configurations(args):
    # Seed-major order: each finished seed completes a paired comparison,
    # so a run stopped half-way still reports like for like.
    seen = set()
    for experiment in args.experiments:
        for dataset, model, epochs, regimes in EXPERIMENTS[experiment]:
            for seed in range(1, args.seeds + 1):
                for regime, strength in regimes.items():
                    regularization, extra = REGIMES[regime]
                    argv = [
                        *extra,
                        "--model",
                        model,
                        "--dataset",
                        dataset,
                        "--regularization",
                        regularization,
                        "--strength",
                        str(strength),
                        "--epochs",
                        str(args.epochs or epochs),
                        "--seed",
                        str(seed),
                        "--verbose",
                        args.verbose,
                    ]
                    for flag in ("train_examples", "test_examples", "data_dir"):
                        if getattr(args, flag) is not None:
                            argv += [
                                f"--{flag.replace('_', '-')}",
                                str(getattr(args, flag)),
                            ]
                    run_args = train.parse_args(argv)
                    run_args.run_dir = os.path.join(
                        args.runs_dir, train.run_name(run_args)
                    )
                    key = (dataset, model, regime)
                    if (key, seed) not in seen:  # experiments share runs
                        seen.add((key, seed))
                        yield key, seed, run_args


def _settings_match(record_dir, run_args):
    settings = _read_json(os.path.join(record_dir, "args.json"))
    return settings == train.run_settings(run_args)


def archive_run(run_dir, record_dir):
    """Copies a finished run's record into `record_dir`: `args.json`,
    `results.json`, `history.csv` and `parameters.json` (per-layer kernel
    histograms, from
    `model.keras`): a few tens of kB that the report needs, without the
    checkpoints, so the record can be committed and the report rebuilt
    after the run dir is gone. A failed run (no model) has no
    `parameters.json`."""
    os.makedirs(record_dir, exist_ok=True)
    if not train.failed(_read_json(os.path.join(run_dir, "results.json"))):
        _archive_parameters(run_dir, record_dir)
    _archive_files(run_dir, record_dir)


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
    train.write_json(os.path.join(record_dir, "parameters.json"), histograms)


def _archive_files(run_dir, record_dir):
    with open(os.path.join(run_dir, "history.csv")) as f:
        history = f.read()
    train.write_atomic(
        os.path.join(record_dir, "history.csv"), lambda f: f.write(history)
    )
    train.write_json(
        os.path.join(record_dir, "args.json"),
        _read_json(os.path.join(run_dir, "args.json")),
    )
    # results.json last: its presence marks a complete record.
    train.write_json(
        os.path.join(record_dir, "results.json"),
        _read_json(os.path.join(run_dir, "results.json")),
    )


def collect(args):
    """The runs to report, from the records in `<out>/runs/`, after
    archiving there every run finished or failed in `--runs-dir` (a record
    of other settings is replaced): `found`, {(dataset, model, regime):
    {seed: (results, history rows, record dir)}} of the finished runs, and
    `failed`, a list of {dataset, model, regime, seed, run, reason} of the
    failed ones, which are never results."""
    found, failures = {}, []
    for key, seed, run_args in configurations(args):
        record_dir = os.path.join(
            args.out, "runs", os.path.basename(run_args.run_dir)
        )
        record = os.path.join(record_dir, "results.json")
        finished = os.path.join(run_args.run_dir, "results.json")
        if os.path.exists(finished):
            results = _read_json(finished)
            if not (
                os.path.exists(record)
                and _read_json(record) == results
                and os.path.exists(os.path.join(record_dir, "args.json"))
                and (
                    train.failed(results)
                    or os.path.exists(
                        os.path.join(record_dir, "parameters.json")
                    )
                )
            ):
                archive_run(run_args.run_dir, record_dir)
        if not os.path.exists(record):
            continue
        if not _settings_match(record_dir, run_args):
            continue
        results = _read_json(record)
        if train.failed(results):
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
        rows = train.read_history(os.path.join(record_dir, "history.csv"))
        found.setdefault(key, {})[seed] = (results, rows, record_dir)
    return found, failures


def _read_json(path):
    with open(path) as f:
        return json.load(f)


def mean_std(values):
    import numpy as np

    values = np.asarray(values, dtype=float)
    std = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    return float(values.mean()), std


def _order(item):
    (dataset, model, regime), _ = item
    rank = REGIME_ORDER.index(regime) if regime in REGIME_ORDER else 99
    return dataset, model, rank, regime


def summarize(found):
    rows, pairs = [], []
    for (dataset, model, regime), runs in sorted(found.items(), key=_order):
        final = [r["final_test_error"] for r, _, _ in runs.values()]
        best = [r["best_test_error"] for r, _, _ in runs.values()]
        any_result = next(iter(runs.values()))[0]
        rows.append(
            {
                "dataset": dataset,
                "model": model,
                "regime": regime,
                "strength": any_result["strength"],
                "epochs": any_result["epochs"],
                "seeds": sorted(runs),
                "final": mean_std(final),
                "best": mean_std(best),
                "per_seed": {
                    seed: {
                        "final": r["final_test_error"],
                        "best": r["best_test_error"],
                        "run": os.path.basename(run_dir),
                    }
                    for seed, (r, _, run_dir) in sorted(runs.items())
                },
                "paper": PAPER.get((dataset, model), {}).get(regime),
                "authors_logs": AUTHORS_LOGS.get((dataset, model), {}).get(
                    regime
                ),
            }
        )
    for (dataset, model, regime), runs in sorted(found.items()):
        for first, baseline in PAIRS:
            other = found.get((dataset, model, baseline))
            if regime != first or not other:
                continue
            seeds = sorted(set(runs) & set(other))
            if not seeds:
                continue
            diffs = [
                runs[s][0]["final_test_error"] - other[s][0]["final_test_error"]
                for s in seeds
            ]
            pairs.append(
                {
                    "dataset": dataset,
                    "model": model,
                    "regime": first,
                    "baseline": baseline,
                    "seeds": seeds,
                    "difference": mean_std(diffs),
                    "better": sum(d < 0 for d in diffs),
                }
            )
    return rows, pairs


def _pm(pair, digits=2):
    mean, std = pair
    if std != std:  # one seed: no spread
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown(rows, pairs, command, failures=()):
    lines = [
        "| data set | model | regime | λ | epochs | seeds | final test error % "
        "| best-epoch error % | paper | authors' logs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        logs, paper = row["authors_logs"], row["paper"]
        lines.append(
            f"| {row['dataset']} | {row['model']} | {row['regime']} "
            f"| {row['strength']:g} | {row['epochs']} | {len(row['seeds'])} "
            f"| {_pm(row['final'])} | {_pm(row['best'])} "
            f"| {'' if paper is None else f'{paper:.2f}'} "
            f"| {'' if logs is None else f'{logs[0]:.2f} ± {logs[1]:.2f}'} |"
        )
    lines += [
        "",
        "Paired comparisons (final test error, same seeds; e.g. PSP − L2):",
        "",
        "| data set | model | comparison | seeds | difference (pp) "
        "| seeds where lower |",
        "|---|---|---|---|---|---|",
    ]
    for pair in pairs:
        lines.append(
            f"| {pair['dataset']} | {pair['model']} "
            f"| {pair['regime']} − {pair['baseline']} | {len(pair['seeds'])} "
            f"| {_pm(pair['difference'], 3)} "
            f"| {pair['better']}/{len(pair['seeds'])} |"
        )
    seeds = sorted({seed for row in rows for seed in row["per_seed"]})
    lines += [
        "",
        "Final test error % per seed:",
        "",
        "| data set | model | regime | "
        + " | ".join(f"seed {seed}" for seed in seeds)
        + " |",
        "|---|---|---|" + "---|" * len(seeds),
    ]
    for row in rows:
        values = [
            f"{row['per_seed'][seed]['final']:.2f}"
            if seed in row["per_seed"]
            else ""
            for seed in seeds
        ]
        lines.append(
            f"| {row['dataset']} | {row['model']} | {row['regime']} | "
            + " | ".join(values)
            + " |"
        )
    if failures:
        lines += [
            "",
            "Failed runs (stopped by a non-finite loss; in no table or "
            "mean above):",
            "",
            "| data set | model | regime | seed | run | reason |",
            "|---|---|---|---|---|---|",
        ]
        for failure in failures:
            lines.append(
                f"| {failure['dataset']} | {failure['model']} "
                f"| {failure['regime']} | {failure['seed']} "
                f"| {failure['run']} | {failure['reason']} |"
            )
    lines += ["", f"Command: `{command}`", ""]
    return "\n".join(lines)


def plot(found, out):
    """Writes test_error.png, z2.png and parameters.png; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    def save(figure, name):
        path = os.path.join(out, name)
        tmp = f"{path}.tmp{os.getpid()}.png"
        figure.savefig(tmp, dpi=110, bbox_inches="tight")
        plt.close(figure)
        os.replace(tmp, path)
        return path

    groups = sorted({(d, m) for d, m, _ in found})
    written = []
    for metric, name, ylabel in [
        ("val_accuracy", "test_error.png", "test error (%)"),
        ("z2_mean", "z2.png", "⟨z²⟩ on a held-out batch (mean over layers)"),
    ]:
        figure, axes = plt.subplots(
            1, len(groups), figsize=(5 * len(groups), 4), squeeze=False
        )
        for axis, (dataset, model) in zip(axes[0], groups, strict=True):
            for regime in REGIME_ORDER:
                runs = found.get((dataset, model, regime))
                if not runs:
                    continue
                curves = [
                    [float(r[metric]) for r in rows]
                    for _, rows, _ in runs.values()
                ]
                length = min(len(c) for c in curves)
                curves = np.array([c[:length] for c in curves])
                if metric == "val_accuracy":
                    curves = 100 * (1 - curves)
                epochs = np.arange(1, length + 1)
                mean = curves.mean(axis=0)
                seeds = f"{len(curves)} seed{'s' if len(curves) > 1 else ''}"
                axis.plot(epochs, mean, label=f"{regime} ({seeds}, mean)")
                axis.fill_between(
                    epochs, curves.min(axis=0), curves.max(axis=0), alpha=0.2
                )
            axis.set_title(f"{model} on {dataset}")
            axis.set_xlabel("epoch")
            axis.set_ylabel(ylabel)
            if metric == "z2_mean":
                axis.set_yscale("log")
            axis.legend()
        written.append(save(figure, name))

    pairs = [
        (d, m)
        for d, m in groups
        if (d, m, "l2") in found and (d, m, "psp") in found
    ]
    if pairs:
        # One row per data set and model: each layer's kernel values, L2
        # against PSP, on the lowest seed both have (the paper's Fig. 3).
        histograms = {}
        for dataset, model in pairs:
            seed = min(
                set(found[(dataset, model, "l2")])
                & set(found[(dataset, model, "psp")])
                or found[(dataset, model, "psp")]
            )
            for regime in ("l2", "psp"):
                runs = found[(dataset, model, regime)]
                _, _, record_dir = runs.get(seed, runs[min(runs)])
                layers = _read_json(os.path.join(record_dir, "parameters.json"))
                histograms[(dataset, model, regime)] = (seed, layers)
        columns = max(len(h[1]) for h in histograms.values())
        figure, axes = plt.subplots(
            len(pairs),
            columns,
            figsize=(4 * columns, 3.5 * len(pairs)),
            squeeze=False,
        )
        for row, (dataset, model) in zip(axes, pairs, strict=True):
            for regime in ("l2", "psp"):
                seed, layers = histograms[(dataset, model, regime)]
                for axis, layer in zip(row, layers, strict=False):
                    counts = np.asarray(layer["counts"], dtype=float)
                    edges = np.asarray(layer["edges"])
                    density = counts / (counts.sum() * np.diff(edges))
                    axis.stairs(
                        density,
                        edges,
                        fill=True,
                        alpha=0.5,
                        label=f"{regime}, seed {seed}",
                    )
                    axis.set_title(f"{dataset}: {layer['layer']}")
                    axis.set_yscale("log")
                    axis.set_xlabel("kernel value")
            for axis in row:
                axis.legend()
        figure.suptitle("kernel values per layer, L2 vs PSP")
        written.append(save(figure, "parameters.png"))
    return written


def report(args, command):
    found, failures = collect(args)
    if not found and not failures:
        sys.exit("error: no finished run to report on")
    os.makedirs(args.out, exist_ok=True)
    rows, pairs = summarize(found)
    text = markdown(rows, pairs, command, failures)
    train.write_atomic(
        os.path.join(args.out, "summary.md"), lambda f: f.write(text)
    )
    train.write_json(
        os.path.join(args.out, "summary.json"),
        {"rows": rows, "pairs": pairs, "failed": failures},
    )
    if found:
        plot(found, args.out)
    print(text)
    return rows, pairs


def main(argv=None):
    args = parse_args(argv)
    command = "python applications/reproduce.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    if not args.report_only:
        import keras

        for _, _, run_args in configurations(args):
            keras.utils.clear_session()
            try:
                train.train(run_args)  # a failed run is reported as such
            except train.RunInUseError as error:
                # Another reproduce.py on the same runs dir has this one.
                print(f"skipped: {error}")
    return report(args, command.strip())


if __name__ == "__main__":
    main()
