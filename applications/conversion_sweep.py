"""What the conversion sweeps share: `convert_applications` (every model of
`keras.applications`) and `convert_keras_hub` (every keras_hub backbone).

A sweep converts one model after another with `keras_psp.apply_psp`, checks
each and writes one row per model. This module holds the common parts:

- the options every sweep takes (`add_arguments`: `--models`, `--output`,
  `--list`, `--resume`, `--backend`, `--strength`, `--jit-compile`) and the
  choice of models (`select`);
- the main loop (`run`): each model checked in turn by the program's own
  `check(name)`, any exception reported in its row by the check, the model
  freed (`clear_session`, `gc`) before the next; the Markdown table and
  the JSON beside it (same name, `.json`) rewritten atomically after every
  model, so a killed sweep keeps its rows, and `--resume` skipping the
  models already in the JSON (same backend);
- the Markdown table's cells and the summary counts of the checks.

The checks themselves are in `applications.conversion_checks`.

Nothing here imports Keras at import time: `--help` stays fast.
"""

import dataclasses
import datetime
import gc
import os
import platform
import shlex
import sys
import time

import applications
from applications import arguments
from applications.provenance import git_commit
from applications.run_dir import write_atomic
from applications.run_dir import write_json


class UnknownNameError(ValueError):
    """A `--models` entry matches no model of the sweep."""


@dataclasses.dataclass(frozen=True)
class Sweep:
    """What makes one sweep program differ from another.

    Attributes:
        program: how it is run (`python -m applications.<module>`), for the
            command line recorded in the table.
        title: the table's Markdown heading.
        key: the name of a row's model in the JSON rows (`"model"`).
        noun: what a row is, plural (`"models"`), for the summary.
        what: what a name is, for an unknown name's error
            (``"`keras.applications` model"``).
        columns: the table's column headings.
        format_row: row (dict) -> its Markdown table line.
        passed: row -> whether every check of the row passed.
        checks: (label, row -> bool) pairs, counted in the summary after
            the rows that pass every check.
        default_output: the Markdown table's path when `--output` is not
            given, a format string of `backend`.
    """

    program: str
    title: str
    key: str
    noun: str
    what: str
    columns: tuple
    format_row: object
    passed: object
    checks: tuple
    default_output: str


def add_arguments(parser, what, default_output):
    """Adds the options every sweep takes: `--models`, `--output`, `--list`,
    `--resume`, `--backend`, `--strength` and `--jit-compile`. `what`
    names the models (`"models"`), `default_output` the default table."""
    parser.add_argument(
        "--models",
        nargs="+",
        default=None,
        metavar="NAME",
        help=f"{what} to check: names or parts of names, any case "
        "(default: all of them; --list shows them)",
    )
    parser.add_argument(
        "--output",
        type=arguments.writable_file,
        default=None,
        help="the Markdown table; the JSON goes beside it "
        f"(default: {default_output.format(backend='<backend>')})",
    )
    parser.add_argument(
        "--list",
        action="store_true",
        help=f"print the {what} and exit",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help=f"keep the rows of the {what} already in the JSON (same "
        "backend) and check only the others",
    )
    arguments.add_backend_option(parser)
    parser.add_argument(
        "--strength",
        type=arguments.non_negative_float,
        default=1e-3,
        help="PSP λ",
    )
    parser.add_argument(
        "--jit-compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="`jit_compile` of the fit step",
    )


def parse_args(parser, argv=None):
    """Parses `argv` and selects the backend of `--backend` (before Keras
    is imported)."""
    args = parser.parse_args(argv)
    arguments.use_backend(args, parser.error)
    return args


def jit_compile(args):
    """`args.jit_compile` as `Model.compile` takes it."""
    return {"auto": "auto", "on": True, "off": False}[args.jit_compile]


def select(patterns, available, what):
    """The names `patterns` match (names or substrings, any case; a name
    matched exactly takes only itself), in the order of `available`;
    raises `UnknownNameError` for a pattern that matches none. `what` says
    what a name is, for the error (``"`keras.applications` model"``)."""
    if not patterns:
        return list(available)
    chosen = set()
    for pattern in patterns:
        exact = [name for name in available if name.lower() == pattern.lower()]
        matches = exact or [
            name for name in available if pattern.lower() in name.lower()
        ]
        if not matches:
            raise UnknownNameError(
                f"Unknown model {pattern!r}: it is neither the name nor part "
                f"of the name of a {what}. Available: "
                f"{', '.join(available)}."
            )
        chosen.update(matches)
    return [name for name in available if name in chosen]


def run(sweep, args, argv, available, check, label=str, versions=None):
    """The sweep over the names `available()` gives (called once Keras is
    imported): with `--list`, prints `label(name)` for each and returns no
    rows; else `check(name)` (returns the row, a dict, with any error in
    it) for each name `--models` selects, in order, the table and JSON
    rewritten after each; returns the rows. `versions` (name -> version)
    are shown in the table's heading after Keras'."""
    keras = quiet_keras()
    available = available()
    if args.list:
        for name in available:
            print(label(name))
        return []
    names = select(args.models, available, sweep.what)
    backend = keras.backend.backend()
    output = args.output or sweep.default_output.format(backend=backend)
    json_path = os.path.splitext(output)[0] + ".json"
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    command = " ".join(
        [
            f"KERAS_BACKEND={backend}",
            sweep.program,
            *map(shlex.quote, sys.argv[1:] if argv is None else argv),
        ]
    )
    info = {
        "command": command,
        "backend": backend,
        "keras": keras.__version__,
        **({"versions": versions} if versions else {}),
        "machine": machine(),
        "git_commit": git_commit(),
        "keras_psp_changed": library_changed(),
        "date": datetime.datetime.now().astimezone().isoformat(" ", "seconds"),
    }
    done = resumed_rows(json_path, backend, sweep.key) if args.resume else {}
    rows = []
    started = time.perf_counter()
    for name in names:
        if name in done:
            rows.append(done[name])
            continue
        print(f"{name} ...", flush=True)
        row = check(name)
        rows.append(row)
        print(f"  {sweep.format_row(row)}", flush=True)
        info["sweep_seconds"] = round(time.perf_counter() - started, 1)
        write_results(sweep, output, json_path, info, rows, len(names))
        keras.utils.clear_session()
        gc.collect()
    info["sweep_seconds"] = round(time.perf_counter() - started, 1)
    write_results(sweep, output, json_path, info, rows, len(names))
    print(summary(sweep, rows, len(names)))
    return rows


def main_guard(main, program):
    """Runs `main()` as a program: an unknown `--models` name ends it with
    one error line."""
    try:
        main()
    except UnknownNameError as error:
        sys.exit(f"{program}: error: {error}")


def machine():
    """The platform, the CPU and how many CPUs this process may use."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line for line in f if line.startswith("model name")]
        if names:
            cpu = f"{names[0].split(':', 1)[1].strip()} ({platform.machine()})"
    except OSError:
        pass
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    return f"{platform.platform()}, {cpu}, {cpus} CPUs"


def library_changed():
    """Whether keras_psp/ differs from the commit checked out (the table
    then comes from code no commit holds); None outside a git checkout."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "keras_psp"],
            capture_output=True,
            text=True,
            cwd=root,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(status.stdout.strip()) if status.returncode == 0 else None


def resumed_rows(json_path, backend, key):
    """The rows of the JSON at `json_path`, by their `key`, if it was
    written on `backend`; else none."""
    import json

    try:
        with open(json_path) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return {}
    if saved.get("backend") != backend:
        return {}
    return {row[key]: row for row in saved.get("rows", []) if key in row}


def summary(sweep, rows, total):
    """One line: how many models pass every check and each check, and the
    time taken."""

    def count(check):
        return sum(1 for row in rows if check(row))

    done = "" if len(rows) == total else f" ({len(rows)} of {total} done)"
    counts = "; ".join(
        f"{label}: {count(check)}"
        for label, check in (
            *sweep.checks,
            ("errors", lambda r: r.get("error")),
        )
    )
    return (
        f"{count(sweep.passed)} of {len(rows)} {sweep.noun} pass every "
        f"check{done}. {counts}. "
        f"{sum(row.get('seconds') or 0 for row in rows):.0f} s of checks."
    )


def write_results(sweep, output, json_path, info, rows, total):
    """Writes the Markdown table and the JSON, each atomically."""
    versions = "".join(
        f", {name} {version}"
        for name, version in info.get("versions", {}).items()
    )
    commit = (info.get("git_commit") or "unknown")[:10]
    if info.get("keras_psp_changed"):
        commit += " with uncommitted changes"
    lines = [
        f"# {sweep.title}",
        "",
        f"`{info['command']}`: backend {info['backend']}, Keras "
        f"{info['keras']}{versions}, keras-psp at commit {commit}, "
        f"{info['machine']}, {info['date']}.",
        "",
        "| " + " | ".join(sweep.columns) + " |",
        "|" + "---|" * len(sweep.columns),
        *(sweep.format_row(row) for row in rows),
        "",
        summary(sweep, rows, total)
        + f" The sweep took {info.get('sweep_seconds', 0):.0f} s (wall clock).",
        "",
    ]
    write_atomic(output, lambda f: f.write("\n".join(lines)))
    write_json(json_path, {**info, "total_models": total, "rows": rows})


def terms_ok(row):
    """Whether the PSP terms are as many as expected."""
    return row.get("psp_terms") is not None and (
        row["psp_terms"] == row.get("expected_psp_terms")
    )


# The checks both sweeps count in their summary, first.
COMMON_CHECKS = (
    ("PSP terms as expected", terms_ok),
    ("predictions equal", lambda row: row.get("predictions_equal")),
)


def terms_cell(row):
    """The PSP terms, with MISMATCH when not as many as expected."""
    text = cell(row, "psp_terms", str(row.get("psp_terms")))
    if row.get("psp_terms") is not None and not terms_ok(row):
        text += " (MISMATCH)"
    return text


def predictions_cell(row):
    return cell(
        row,
        "predictions_equal",
        f"{yes(row, 'predictions_equal')} ({row.get('max_abs_diff', 0):.1e})",
    )


def table_line(row, cells):
    """The Markdown table line of `cells`, then the row's seconds and its
    error and notes."""
    error = "; ".join(filter(None, (row.get("error"), row.get("notes"))))
    cells = [
        *cells,
        cell(row, "seconds", f"{row.get('seconds', 0):.1f}"),
        table_text(error),
    ]
    return "| " + " | ".join(cells) + " |"


def cell(row, key, text):
    """`text`, or a dash where the row has no `key` (not checked)."""
    return "—" if row.get(key) is None else text


def yes(row, key):
    return "yes" if row.get(key) else "NO"


def table_text(text):
    """`text` made safe in a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def quiet_keras():
    """Imports Keras with TensorFlow's start-up logs off the terminal."""
    applications.quiet_tensorflow()
    import keras

    return keras
