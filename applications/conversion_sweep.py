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
- the checks both programs make: predictions compared (`compare`), the PSP
  terms counted (`count_psp_terms`), the `.keras` round trip
  (`round_trip`), the outputs a linear affine layer makes (the logits,
  which `apply_psp` regularizes by default: `linear_outputs`), and an
  exception as one line (`describe`).

Nothing here imports Keras at import time: `--help` stays fast.
"""

import dataclasses
import datetime
import gc
import os
import platform
import shlex
import sys
import tempfile
import time

import applications
from applications import arguments
from applications.provenance import git_commit
from applications.run_dir import write_atomic
from applications.run_dir import write_json

ATOL = 1e-5


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


# === Checks ===


def numpy_outputs(outputs):
    """A model's outputs as a flat list of numpy arrays."""
    import keras
    import numpy as np

    return [
        np.asarray(keras.ops.convert_to_numpy(t))
        for t in keras.tree.flatten(outputs)
    ]


def compare(expected, actual):
    """`(max abs diff, whether assert_allclose(atol=ATOL) passes)` of two
    flat lists of arrays."""
    import numpy as np

    def number(array):  # booleans and integers compared as numbers
        array = np.asarray(array)
        return array if array.dtype.kind in "fc" else array.astype("float64")

    pairs = [
        (number(a), number(b)) for a, b in zip(expected, actual, strict=True)
    ]
    diff = max(
        (float(np.max(np.abs(a - b), initial=0.0)) for a, b in pairs),
        default=0.0,
    )
    try:
        for a, b in pairs:
            np.testing.assert_allclose(b, a, atol=ATOL)
    except AssertionError:
        return diff, False
    return diff, True


def count_psp_terms(model):
    """The PSP terms `model`'s last forward pass added."""
    from keras_psp.models.psp_model import psp_losses

    return len(psp_losses(model))


def save_and_load(model):
    """`model` saved to `.keras` in a temporary directory and loaded (the
    file is deleted at once: some are over a gigabyte)."""
    import keras

    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
        os.remove(path)
    return loaded


def round_trip(row, model, x, predicted):
    """Saves and loads `model`, and records in `row` whether the loaded
    model predicts `predicted` (flat numpy outputs) on `x` and adds the
    same number of PSP terms (`row["psp_terms"]`)."""
    loaded = save_and_load(model)
    again = numpy_outputs(loaded(x, training=False))
    terms = count_psp_terms(loaded)
    del loaded
    diff, equal = compare(predicted, again)
    row.update(round_trip_max_abs_diff=diff, round_trip_psp_terms=terms)
    row["round_trip"] = equal and terms == row["psp_terms"]


def describe(error):
    """An exception as one line: its type and its message's first line (and
    the cause's, for the "Exception encountered when calling ..." that
    Keras puts first, or the innermost "Exception encountered: ..." of a
    deserialization error)."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    head = lines[0] if lines else ""
    causes = [
        line.removeprefix("Exception encountered: ")
        for line in lines
        if line.startswith("Exception encountered: ")
    ]
    if causes:
        head = f"{head.split('. ')[0]}: {causes[-1]}"
    elif head.startswith("Exception encountered when calling") and lines[1:]:
        head = f"{head} {lines[1]}"
    return f"{type(error).__name__}: {head}".strip(" :")


def affine_layer_classes():
    """Keras' affine layers (they apply `activation` to their affine
    output), listed here apart from keras-psp's registry, so that the
    expected counts do not come from the code under test."""
    from keras import layers

    return (
        layers.Dense,
        layers.EinsumDense,
        layers.Conv1D,
        layers.Conv2D,
        layers.Conv3D,
        layers.Conv1DTranspose,
        layers.Conv2DTranspose,
        layers.Conv3DTranspose,
        layers.DepthwiseConv1D,
        layers.DepthwiseConv2D,
        layers.SeparableConv1D,
        layers.SeparableConv2D,
    )


def is_linear(activation):
    import keras

    return (
        activation is None
        or keras.activations.get(activation) is keras.activations.linear
    )


def output_calls(model):
    """`(layer, node index)` of each call that makes an output of `model`,
    looking into nested Sequential and functional models, each once."""
    import keras

    from keras_psp import keras_internals

    found = {}
    for tensor in keras.tree.flatten(model.outputs):
        history = getattr(tensor, "_keras_history", None)
        if not history:
            continue
        layer, node_index = history[0], history[1]
        if keras_internals.is_graph_model(layer):
            calls = output_calls(layer)
        else:
            calls = [(layer, node_index)]
        for call in calls:
            found[(id(call[0]), call[1])] = call
    return list(found.values())


def linear_outputs(model):
    """How many calls of a linear affine layer (exact class, as listed in
    `affine_layer_classes`: a subclass may do more) make an output of
    `model`: the logits, which `apply_psp` regularizes by default
    (`regularize_logits=True`), also inside a nested output model."""
    affine = affine_layer_classes()
    return sum(
        1
        for layer, _ in output_calls(model)
        if type(layer) in affine and is_linear(layer.activation)
    )


def quiet_keras():
    """Imports Keras with TensorFlow's start-up logs off the terminal."""
    applications.quiet_tensorflow()
    import keras

    return keras
