"""Choose the related regularizers' λ on a validation split, never the test set.

    python -m applications.search                      # MNIST, 11 runs
    python -m applications.search --datasets mnist fashion_mnist

For each data set and each related regularizer of the reproduction
(`applications.experiments.COMPARED`), it trains LeNet-5 with each λ of
its grid (`GRID`: three values a decade apart around the usual scale of
the method), alone (no PSP, no L2), with the paper's optimizer settings,
on the training set less its last `--validation-split` share, and
evaluates on that held-out share. The search budget is therefore 3 λ × 3
methods × 1 seed × `--epochs` epochs per data set (default 10 epochs, a
fifth of MNIST's 50: 9 runs, and 2 baselines). The default run takes
about 30 minutes on a 2-core CPU with the TensorFlow backend (2026-11-25,
with other work beside it). The λ with the lowest final-epoch validation
error is chosen (ties: the smaller λ). No regularization and PSP (λ 1e-3)
are trained on the same split, for comparison.

Runs go into `--runs-dir` like `applications.reproduce`'s (resumable,
lockable, shareable between processes); the result goes into `--out`:
`search.md` (every run's validation error, the choice marked) and
`search.json` (the same, and `chosen`: {data set: {method: λ}}). The
chosen values are those of `applications.config.COMPARISONS`, recorded
with the search in RESULTS.md.
"""

import os
import sys

import applications
from applications import arguments
from applications import config
from applications import experiments
from applications import run_dir as run_dirs
from applications import train

BASELINES = ("none", "psp")
GRID = {
    "soft_diamond": (1e-7, 1e-6, 1e-5),
    "gradient_coherent_l1": (1e-5, 1e-4, 1e-3),
    "activation_sparsity": (1e-3, 1e-2, 1e-1),
}


def parse_args(argv=None):
    parser = arguments.parser("applications.search", __doc__)
    add = parser.add_argument
    add(
        "--methods",
        nargs="+",
        choices=experiments.COMPARED,
        default=list(experiments.COMPARED),
        metavar="NAME",
        help="methods: " + ", ".join(experiments.COMPARED),
    )
    add_split_options(parser, os.path.join("runs", "search"), epochs=10)
    args = parser.parse_args(argv)
    check_split_options(parser, args)
    try:
        args.runs = list(runs(args))
    except ValueError as error:
        parser.error(str(error))
    return args


def add_split_options(parser, out, epochs):
    """Adds the options of a program that trains runs on a validation
    split of the training set: `--epochs`, `--validation-split`, `--seed`,
    `--runs-dir`, `--out` (default `out`), the data options, `--backend`
    and `--verbose`, and `--datasets` (MNIST, Fashion-MNIST)."""
    add = parser.add_argument
    add(
        "--datasets",
        nargs="+",
        choices=("mnist", "fashion_mnist"),
        default=["mnist"],
        metavar="NAME",
        help="data sets: mnist, fashion_mnist",
    )
    add("--epochs", type=arguments.positive_int, default=epochs)
    add(
        "--validation-split",
        type=arguments.fraction,
        default=1 / 6,
        help="the held-out last share of the training set (default: 1/6, "
        "10,000 of MNIST's 60,000)",
    )
    add("--seed", type=arguments.seed, default=1)
    add("--runs-dir", default="runs")
    add("--out", default=out)
    arguments.add_data_options(
        parser, "quick runs on the first N training images (default: all)"
    )
    arguments.add_backend_option(parser, config.BACKENDS)
    add(
        "--verbose",
        choices=("auto", "0", "1", "2"),
        default="2",
        help="each run's: 0 silent, 1 progress bar, 2 one line per epoch",
    )


def check_split_options(parser, args):
    """Checks the options `add_split_options` added (argparse errors)."""
    if args.validation_split == 0:
        parser.error("argument --validation-split: must be > 0")
    arguments.check_writable_dirs(parser, args, ("runs_dir", "out"))


def run_settings(args, validation=True):
    """The settings every run of such a program shares (for
    `config.run_config`): on the validation split, or, with `validation`
    False, on the whole training set and evaluated on the test set."""
    return {
        "runs_dir": args.runs_dir,
        "check": False,
        "validation_split": args.validation_split if validation else 0.0,
        "epochs": args.epochs,
        "train_examples": args.train_examples,
        "test_examples": args.test_examples,
        "data_dir": args.data_dir,
        "backend": args.backend,
        "verbose": args.verbose,
    }


def train_runs(keyed_runs):
    """Trains each `(key, run)` of `keyed_runs` in turn (`train.train_each`:
    a finished run is read back, a stopped one resumed, one that another
    process trains skipped).

    Returns:
        `(found, failed)`: {key: results} of the finished runs, and the run
        dirs of the failed ones.
    """
    keyed_runs = list(keyed_runs)
    found, failed = {}, []
    keys = {id(run): key for key, run in keyed_runs}
    for run, results in train.train_each(run for _, run in keyed_runs):
        if results is None:
            continue
        if run_dirs.failed(results):
            failed.append(run.run_dir)
        else:
            found[keys[id(run)]] = results
    return found, failed


def runs(args):
    """`((data set, method, λ), run)` for every run of the search, and
    for the baselines none and PSP (method "none", "psp") on the same
    split, to compare with (not chosen among)."""
    common = {**run_settings(args), "seed": args.seed}
    for dataset in args.datasets:
        for baseline in BASELINES:
            run = config.run_config(
                dataset=dataset, regularization=baseline, **common
            )
            yield (dataset, baseline, run.strength), run
        for method in args.methods:
            for strength in GRID[method]:
                run = config.run_config(
                    dataset=dataset,
                    regularization="none",
                    comparison=method,
                    comparison_strength=strength,
                    **common,
                )
                yield (dataset, method, strength), run


def choose(found):
    """{data set: {method: λ}}: the λ of lowest final validation error
    (ties: the smaller λ) among the runs `found` {(data set, method, λ):
    results}."""
    best = {}
    for (dataset, method, strength), results in sorted(found.items()):
        if method not in GRID:
            continue  # a baseline
        error = results["final_test_error"]
        current = best.setdefault(dataset, {}).get(method)
        if current is None or error < current[1]:
            best[dataset][method] = (strength, error)
    return {
        dataset: {method: value[0] for method, value in methods.items()}
        for dataset, methods in best.items()
    }


def _order(key):
    dataset, method, strength = key
    methods = (*BASELINES, *GRID)
    return dataset, methods.index(method), strength


def markdown(found, chosen, command):
    lines = [
        "| data set | method | λ | epochs | final validation error % "
        "| best-epoch validation error % | weight sparsity % | chosen |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, method, strength), results in sorted(
        found.items(), key=lambda item: _order(item[0])
    ):
        mark = "yes" if chosen[dataset].get(method) == strength else ""
        lines.append(
            f"| {dataset} | {method} | {strength:g} | {results['epochs']} "
            f"| {results['final_test_error']:.2f} "
            f"| {results['best_test_error']:.2f} "
            f"| {100 * results['weight_sparsity']:.1f} | {mark} |"
        )
    lines += ["", f"Command: `{command}`", ""]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    applications.quiet_tensorflow()
    found, failed = train_runs(args.runs)
    if not found:
        sys.exit("error: no finished run to choose from")
    chosen = choose(found)
    command = "python -m applications.search " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    os.makedirs(args.out, exist_ok=True)
    text = markdown(found, chosen, command.strip())
    run_dirs.write_atomic(
        os.path.join(args.out, "search.md"), lambda f: f.write(text)
    )
    run_dirs.write_json(
        os.path.join(args.out, "search.json"),
        {
            "runs": [
                {
                    "dataset": d,
                    "method": m,
                    "strength": s,
                    "final_validation_error": r["final_test_error"],
                    "best_validation_error": r["best_test_error"],
                    "weight_sparsity": r["weight_sparsity"],
                    "epochs": r["epochs"],
                }
                for (d, m, s), r in sorted(
                    found.items(), key=lambda item: _order(item[0])
                )
            ],
            "chosen": chosen,
            "failed": failed,
        },
    )
    print(text)
    return chosen, failed


if __name__ == "__main__":
    sys.exit(1 if main()[1] else 0)
