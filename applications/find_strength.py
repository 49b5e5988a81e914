"""Suggest PSP's λ for LeNet-5 on MNIST or Fashion-MNIST, on a validation
split carved from the training set, never the test set.

    python -m applications.find_strength                 # MNIST, 5 runs
    python -m applications.find_strength --datasets mnist fashion_mnist
    python -m applications.find_strength --grid 1e-5 1e-4 1e-3 1e-2 1e-1 \\
        --out runs/find_strength_grid                     # a fixed grid
    python -m applications.find_strength --test-seeds 3   # then test error

For each data set:

1. The suggestion: `keras_psp.find_strength` on LeNet-5 as a training run
   builds it (`--seed`; PSP in the authors' normalization, the reduction
   "mean" and λ/L for each of its L = 4 layers, or `--reduction sum`), on
   the first `--steps` batches of the training part: the λ at which the
   PSP term is `--share` of the data loss at initialization. It takes
   seconds; it is kept in `<out>/suggestion_<data set>.json`.
2. The sweep: LeNet-5 trained with each λ of the suggestion times each of
   `--factors` (rounded to 3 significant digits), or each λ of `--grid`,
   with the paper's optimizer settings, on the training set less its last
   `--validation-split` share, evaluated on that share. The λ of lowest
   final-epoch validation error is chosen (ties: the smaller λ).
3. With `--test-seeds N` only: the suggestion, the choice and the
   `--compare` λ's (default: the paper's 1e-3) trained on the whole
   training set (or its first `--train-examples`) with seeds 1..N and
   evaluated on the test set, to judge the choice; steps 1 and 2 never
   read the test set.

Runs go into `--runs-dir` like `applications.reproduce`'s (resumable,
lockable, shareable between processes: the same command again resumes and
trains only what is missing); the result goes into `--out`:
`find_strength.md` (every run, the choice marked), `find_strength.json`
(the same, the suggestions and their cost in seconds) and
`find_strength.png` (validation error against λ), each written whole or
not at all. RESULTS.md ("Choosing λ") has the measured outcome on MNIST
and Fashion-MNIST, with the commands and their run times: with
`--train-examples 10000 --epochs 5`, the suggestion took seconds and the
5-run sweep 278 s of training on MNIST (2-core CPU shared with other work,
TensorFlow, 2026-12-02). The default run (the whole training set, more
epochs) was not timed: it trains proportionally longer.
"""

import math
import os
import sys
import time

import applications
from applications import arguments
from applications import config
from applications import run_dir as run_dirs
from applications import search

DEFAULT_FACTORS = (0.1, 0.3, 1.0, 3.0, 10.0)
SHARE = 1e-4  # keras_psp.find_strength's default (not imported: --help is fast)


def parse_args(argv=None):
    parser = arguments.parser("applications.find_strength", __doc__)
    add = parser.add_argument
    add(
        "--share",
        type=arguments.positive_float,
        default=SHARE,
        help="the PSP term's share of the data loss at initialization "
        "(keras_psp.find_strength's default: %(default)g)",
    )
    add(
        "--steps",
        type=arguments.positive_int,
        default=10,
        help="training batches the suggestion is measured on",
    )
    add(
        "--reduction",
        choices=("mean", "sum"),
        default="mean",
        help="PSP normalization (mean: the authors' code), λ/L per layer",
    )
    add(
        "--factors",
        nargs="+",
        type=arguments.positive_float,
        default=list(DEFAULT_FACTORS),
        metavar="F",
        help="the sweep: the suggestion times each of these",
    )
    add(
        "--grid",
        nargs="+",
        type=arguments.positive_float,
        default=None,
        metavar="λ",
        help="the sweep: these λ's instead of --factors",
    )
    add(
        "--test-seeds",
        type=arguments.positive_int,
        default=None,
        metavar="N",
        help="also train the suggestion, the choice and --compare on the "
        "whole training set with seeds 1..N, evaluated on the test set "
        "(default: none)",
    )
    add(
        "--compare",
        nargs="+",
        type=arguments.positive_float,
        default=[config.PAPER_STRENGTH["psp"]],
        metavar="λ",
        help="λ's to compare the choice with in --test-seeds runs (default: "
        "the paper's 1e-3)",
    )
    search.add_split_options(parser, os.path.join("runs", "find_strength"), 10)
    args = parser.parse_args(argv)
    search.check_split_options(parser, args)
    return args


def rounded(strength):
    """`strength` to 3 significant digits: run dirs are named by λ."""
    return float(f"{strength:.3g}")


def sweep_strengths(args, suggestion):
    """The λ's of the sweep, in increasing order."""
    if args.grid:
        return sorted(set(args.grid))
    return sorted({rounded(suggestion * factor) for factor in args.factors})


def run(args, dataset, strength, seed, validation=True):
    """The training run of λ `strength` (`config.run_config`)."""
    return config.run_config(
        dataset=dataset,
        regularization="psp",
        strength=strength,
        reduction=args.reduction,
        seed=seed,
        **search.run_settings(args, validation),
    )


def suggestion_settings(args, dataset):
    return {
        "dataset": dataset,
        "share": args.share,
        "steps": args.steps,
        "reduction": args.reduction,
        "seed": args.seed,
        "train_examples": args.train_examples,
        "validation_split": args.validation_split,
        "backend": config.current_backend(),
    }


def suggest(args, dataset):
    """`keras_psp.find_strength` on the run's LeNet-5 and its first
    training batches (the validation share carved off; never the test
    set): {"strength", "seconds" (the finder's call), "total_seconds"
    (data, model and call), "settings"}. Kept in
    `<out>/suggestion_<data set>.json` and read back from there while
    the settings are the same."""
    path = os.path.join(args.out, f"suggestion_{dataset}.json")
    settings = suggestion_settings(args, dataset)
    if os.path.exists(path):
        kept = run_dirs.read_json(path)
        if kept.get("settings") == settings:
            return kept
    import keras

    import keras_psp
    from applications import train

    started = time.perf_counter()
    # The run's LeNet-5 without PSP (the builder's PSP layers are what
    # apply_psp puts on it: the same 4 layers, logits included).
    plain = config.run_config(
        dataset=dataset,
        regularization="none",
        seed=args.seed,
        **search.run_settings(args),
    )
    keras.utils.clear_session()
    keras.utils.set_random_seed(args.seed)
    with keras_psp.datasets.reading(dataset, args.data_dir):
        splits = keras_psp.datasets.load(
            dataset,
            plain.batch_size,
            data_dir=args.data_dir,
            seed=args.seed,
            train_examples=args.train_examples,
            validation_split=args.validation_split,
            epochs=1,
        )
        batches = list(splits.train.take(args.steps))
    model = train.build_model(plain, keras_psp, splits.info["steps_per_epoch"])
    called = time.perf_counter()
    strength = keras_psp.find_strength(
        model,
        batches,
        share=args.share,
        reduction=args.reduction,
        divide_by_num_layers=True,  # as the runs' builder does
    )
    finished = time.perf_counter()
    found = {
        "strength": strength,
        "seconds": finished - called,
        "total_seconds": finished - started,
        "settings": settings,
    }
    os.makedirs(args.out, exist_ok=True)
    run_dirs.write_json(path, found)
    return found


def choose(errors):
    """The λ of lowest validation error in {λ: error} (ties: the smaller)."""
    return min(sorted(errors), key=lambda strength: errors[strength])


def summarize(args, suggestions, found):
    """The result per data set, from the finished runs `found` {(data
    set, role, λ, seed): results}."""
    summary = {}
    for dataset, suggestion in suggestions.items():
        sweep = {
            strength: results
            for (d, role, strength, _), results in found.items()
            if d == dataset and role == "sweep"
        }
        entry = {"suggestion": suggestion, "sweep": [], "chosen": None}
        if sweep:
            errors = {s: r["final_test_error"] for s, r in sweep.items()}
            entry["chosen"] = choose(errors)
            entry["sweep"] = [
                {
                    "strength": strength,
                    "final_validation_error": sweep[strength][
                        "final_test_error"
                    ],
                    "best_validation_error": sweep[strength]["best_test_error"],
                    "wall_seconds": sweep[strength]["wall_seconds"],
                    "epochs": sweep[strength]["epochs"],
                    "evaluated_on": sweep[strength]["evaluated_on"],
                }
                for strength in sorted(sweep)
            ]
            entry["sweep_seconds"] = math.fsum(
                r["wall_seconds"] for r in sweep.values()
            )
        tests = {}
        for (d, role, strength, seed), results in found.items():
            if d == dataset and role == "test":
                tests.setdefault(strength, {})[seed] = results
        entry["test"] = [
            _test_entry(strength, tests[strength]) for strength in sorted(tests)
        ]
        summary[dataset] = entry
    return summary


def _test_entry(strength, runs):
    import numpy as np

    errors = [runs[seed]["final_test_error"] for seed in sorted(runs)]
    return {
        "strength": strength,
        "seeds": sorted(runs),
        "final_test_errors": errors,
        "mean": float(np.mean(errors)),
        "std": float(np.std(errors, ddof=1)) if len(errors) > 1 else None,
        "epochs": runs[min(runs)]["epochs"],
    }


def markdown(summary, command):
    lines = []
    for dataset, entry in summary.items():
        suggestion = entry["suggestion"]
        lines += [
            f"## {dataset}",
            "",
            f"Suggested λ (share {suggestion['settings']['share']:g} of the "
            f"data loss at initialization): {suggestion['strength']:.3g}, "
            f"in {suggestion['seconds']:.2f} s "
            f"({suggestion['total_seconds']:.1f} s with data and model).",
            "",
            "| λ | epochs | final validation error % "
            "| best-epoch validation error % | chosen |",
            "|---|---|---|---|---|",
        ]
        for row in entry["sweep"]:
            mark = "yes" if row["strength"] == entry["chosen"] else ""
            lines.append(
                f"| {row['strength']:.3g} | {row['epochs']} "
                f"| {row['final_validation_error']:.2f} "
                f"| {row['best_validation_error']:.2f} | {mark} |"
            )
        if entry["sweep"]:
            lines += [
                "",
                f"Sweep: {len(entry['sweep'])} runs, "
                f"{entry['sweep_seconds']:.0f} s of training.",
            ]
        if entry["test"]:
            lines += [
                "",
                "| λ | epochs | seeds | final test error % (per seed) "
                "| mean ± std |",
                "|---|---|---|---|---|",
            ]
            for row in entry["test"]:
                each = " / ".join(f"{e:.2f}" for e in row["final_test_errors"])
                spread = (
                    f" ± {row['std']:.2f}" if row["std"] is not None else ""
                )
                lines.append(
                    f"| {row['strength']:.3g} | {row['epochs']} "
                    f"| {len(row['seeds'])} | {each} "
                    f"| {row['mean']:.2f}{spread} |"
                )
        lines.append("")
    lines += [f"Command: `{command}`", ""]
    return "\n".join(lines)


def plot(summary, path, epochs, compare=()):
    """Writes validation error against λ (log axis), one panel per data
    set, the suggestion, the choice and the `compare` λ's marked, to
    `path` (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = [d for d, entry in summary.items() if entry["sweep"]]
    figure, axes = plt.subplots(
        1,
        len(datasets),
        figsize=(max(6.5, 5 * len(datasets)), 4.2),
        squeeze=False,
        layout="constrained",
    )
    names = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}
    for axis, dataset in zip(axes[0], datasets, strict=True):
        entry = summary[dataset]
        strengths = [row["strength"] for row in entry["sweep"]]
        errors = [row["final_validation_error"] for row in entry["sweep"]]
        axis.plot(strengths, errors, "o-", label="validation error per λ")
        suggested = entry["suggestion"]["strength"]
        axis.axvline(
            suggested,
            color="tab:gray",
            linestyle="--",
            label=f"finder's suggestion {suggested:.2g}",
        )
        colors = ("tab:green", "tab:purple", "tab:brown", "tab:olive")
        for index, strength in enumerate(compare):
            axis.axvline(
                strength,
                color=colors[index % len(colors)],
                linestyle=":",
                label=(
                    f"the paper's λ = {strength:g}"
                    if strength == config.PAPER_STRENGTH["psp"]
                    else f"compared with: λ = {strength:g}"
                ),
            )
        chosen = entry["chosen"]
        axis.plot(
            [chosen],
            [errors[strengths.index(chosen)]],
            "*",
            markersize=14,
            color="tab:red",
            label=f"lowest: λ = {chosen:.2g}",
        )
        axis.set_xscale("log")
        axis.set_xlabel("PSP strength λ (log scale)")
        axis.set_ylabel("final-epoch validation error (%)")
        axis.set_title(names.get(dataset, dataset))
        axis.grid(True, which="major", alpha=0.3)
        axis.legend(fontsize="small")
    figure.suptitle(
        f"LeNet-5: validation error after {epochs} "
        f"epoch{'s' if epochs != 1 else ''} against PSP's λ\n"
        "(trained on the training set less its held-out share, "
        "evaluated on that share)"
    )
    tmp = run_dirs.temporary_path(path)
    try:
        figure.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    finally:
        plt.close(figure)
        if os.path.exists(tmp):
            os.remove(tmp)


def main(argv=None):
    args = parse_args(argv)
    applications.quiet_tensorflow()
    suggestions, found, failed = {}, {}, []
    for dataset in args.datasets:
        suggestion = suggest(args, dataset)
        suggestions[dataset] = suggestion
        print(
            f"{dataset}: suggested λ {suggestion['strength']:.3g} "
            f"({suggestion['seconds']:.2f} s)"
        )
        keyed = [
            ((dataset, "sweep", s, args.seed), run(args, dataset, s, args.seed))
            for s in sweep_strengths(args, suggestion["strength"])
        ]
        done, lost = search.train_runs(keyed)
        found.update(done)
        failed += lost
        if args.test_seeds:
            errors = {
                s: r["final_test_error"] for (_, _, s, _), r in done.items()
            }
            strengths = {rounded(suggestion["strength"]), *args.compare}
            if errors:
                strengths.add(choose(errors))
            keyed = [
                ((dataset, "test", s, seed), run(args, dataset, s, seed, False))
                for seed in range(1, args.test_seeds + 1)
                for s in sorted(strengths)
            ]
            done, lost = search.train_runs(keyed)
            found.update(done)
            failed += lost
    summary = summarize(args, suggestions, found)
    command = "python -m applications.find_strength " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    os.makedirs(args.out, exist_ok=True)
    text = markdown(summary, command.strip())
    run_dirs.write_atomic(
        os.path.join(args.out, "find_strength.md"), lambda f: f.write(text)
    )
    run_dirs.write_json(
        os.path.join(args.out, "find_strength.json"),
        {"datasets": summary, "failed": failed, "command": command.strip()},
    )
    if any(entry["sweep"] for entry in summary.values()):
        plot(
            summary,
            os.path.join(args.out, "find_strength.png"),
            args.epochs,
            args.compare,
        )
    print(text)
    return summary, failed


if __name__ == "__main__":
    sys.exit(1 if main()[1] else 0)
