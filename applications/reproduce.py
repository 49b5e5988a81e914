"""Reproduce the paper's experiments over several seeds, with statistics.

    python -m applications.reproduce                       # MNIST + Fashion
    python -m applications.reproduce --experiments mnist --seeds 5
    python -m applications.reproduce --experiments cifar10  # GPU + CIFAR-10

The default (MNIST: none, L2 and PSP, 50 epochs; Fashion-MNIST: L2 and
PSP, 150 epochs; 3 seeds each) is 15 runs and takes about 10 hours on a
2-core CPU with the TensorFlow backend (the sum of the wall times recorded
in results/runs/, 2026-11); `--epochs 2 --train-examples 2000` shows the
whole pipeline in a few minutes.

Each configuration is one `applications.train` run in its own run dir
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
(stopped by a non-finite loss, see `python -m applications.train --help`)
is listed as failed, with its reason, in `summary.md` and `summary.json`
(`failed`), and enters no table, mean or plot; it is not retried until its
run dir is deleted; the program then exits with status 1.

The report is written from records (`applications.records`), not from the
run dirs, so it can be rebuilt with `--report-only` after they are gone. A
run whose finished record is in `--out` is not trained again: commit the
report dir (records included) and the same command goes on, on another
machine, with the runs still missing.
"""

import os
import sys

import applications
from applications import arguments
from applications import config
from applications import experiments
from applications import records
from applications import report
from applications import run_dir as run_dirs
from applications import train


def parse_args(argv=None):
    parser = arguments.parser("applications.reproduce", __doc__)
    add = parser.add_argument
    add(
        "--experiments",
        nargs="+",
        choices=sorted(experiments.EXPERIMENTS),
        default=["mnist", "fashion_mnist"],
        metavar="NAME",
        help="experiments to run: "
        + ", ".join(sorted(experiments.EXPERIMENTS))
        + " (default: mnist fashion_mnist)",
    )
    add("--seeds", type=arguments.positive_int, default=3, help="seeds 1..N")
    add(
        "--epochs",
        type=arguments.positive_int,
        default=None,
        help="every run's epochs (default: the paper's, 50 to 400)",
    )
    add("--runs-dir", type=arguments.writable_dir, default="runs")
    add(
        "--out",
        type=arguments.writable_dir,
        default=os.path.join("runs", "report"),
        help="report directory (results/ holds the one of RESULTS.md)",
    )
    arguments.add_data_options(
        parser, "quick runs on the first N training images (default: all)"
    )
    arguments.add_backend_option(parser, config.BACKENDS)
    add(
        "--report-only",
        action="store_true",
        help="write the report from the finished runs only",
    )
    add(
        "--verbose",
        choices=("auto", "0", "1", "2"),
        default="2",
        help="each run's: 0 silent, 1 progress bar, 2 one line per epoch",
    )
    args = parser.parse_args(argv)
    try:
        args.runs = list(runs(args))
    except ValueError as error:
        parser.error(str(error))
    return args


def runs(args):
    """The runs of the reproduction `args`: `(key, seed, run)`."""
    settings = {
        name: getattr(args, name)
        for name in (
            "train_examples",
            "test_examples",
            "data_dir",
            "backend",
            "verbose",
        )
    }
    return experiments.configurations(
        args.experiments,
        args.seeds,
        runs_dir=args.runs_dir,
        epochs=args.epochs,
        **settings,
    )


def write_report(args, command):
    """Writes `summary.md`, `summary.json` and the plots into `args.out`
    from the records of the runs finished so far; returns the table rows,
    the paired differences and the failed runs."""
    found, failures = records.collect(args.runs, args.out)
    if not found and not failures:
        sys.exit("error: no finished run to report on")
    os.makedirs(args.out, exist_ok=True)
    rows, pairs = report.summarize(found)
    text = report.markdown(rows, pairs, command, failures)
    run_dirs.write_atomic(
        os.path.join(args.out, "summary.md"), lambda f: f.write(text)
    )
    run_dirs.write_json(
        os.path.join(args.out, "summary.json"),
        {"rows": rows, "pairs": pairs, "failed": failures},
    )
    from applications import plots

    plots.write(found, args.out)
    print(text)
    return rows, pairs, failures


def train_all(args):
    """Trains every run not finished yet; skips (and says so) those that
    another process trains, whose run dir holds other settings, or whose
    finished record is in `args.out` already."""
    pending = []
    for _, _, run in args.runs:
        if records.recorded(run, args.out):
            print(f"recorded in {args.out}: {os.path.basename(run.run_dir)}")
        else:
            pending.append(run)
    for _ in train.train_each(pending):
        pass


def run(args, command):
    """Trains the runs of `args` not finished yet (unless
    `args.report_only`), then writes the report; returns its table rows,
    paired differences and failed runs."""
    if not args.report_only:
        train_all(args)
    return write_report(args, command)


def main(argv=None):
    args = parse_args(argv)
    applications.quiet_tensorflow()
    command = "python -m applications.reproduce " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    try:
        rows, pairs, failures = run(args, command.strip())
    except train.RunError as error:
        sys.exit(f"error: {error}")
    except KeyboardInterrupt:
        print(
            "\ninterrupted: run the same command again to resume (finished "
            "runs are kept, the current one resumes from its last finished "
            "epoch)",
            file=sys.stderr,
        )
        sys.exit(130)
    if failures:
        sys.exit(f"error: {len(failures)} run(s) failed; see {args.out}")
    return rows, pairs


if __name__ == "__main__":
    main()
