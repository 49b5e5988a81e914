"""Check `keras_psp.apply_psp` on every model of `keras.applications`.

    python -m applications.convert_applications            # all models
    python -m applications.convert_applications --models MobileNet ResNet50
    python -m applications.convert_applications --list
    KERAS_BACKEND=jax python -m applications.convert_applications

The whole sweep (40 models) took 891 s on a 2-core CPU with the TensorFlow
backend (2026-11-25; results/applications_tensorflow.md).

Each model is built with `weights=None`, the smallest input it accepts
(32x32, or the minimum Keras' own input check sets: 75 for InceptionV3
and InceptionResNetV2, 71 for Xception), `--classes` classes and its
default softmax classifier, then converted with `apply_psp`, and checked:

- PSP terms: the penalties one forward pass of the converted model adds,
  against the number expected, counted on the original model's graph
  without asking keras-psp's plan: one per call of a layer with a
  non-linear pre-activation (a Keras affine layer, Dense, Conv*,
  EinsumDense, ..., with a non-linear `activation`; or an activation
  layer, ReLU, non-linear Activation, ...), plus the logits when the
  output layer is a linear affine one;
- predictions: the converted model's equal the original's (float32,
  `atol` 1e-5), on random images run through the model's own
  `preprocess_input`; the table shows the largest absolute difference;
- fit: one `fit` step (SGD, sparse categorical cross-entropy, one batch of
  random images and labels) gives a finite loss (shown);
- round trip: saved to `.keras` in a temporary directory and loaded, the
  model predicts the same and adds the same number of PSP terms (the file
  is deleted at once: some are over a gigabyte).

Any exception is caught and reported in its row (type and first line), and
the sweep goes on. The Markdown table (`--output`) and a JSON beside it
(same name, `.json`) are rewritten atomically after every model, so a
killed sweep keeps its rows, and `--resume` skips the models already in
the JSON. Each model is freed before the next (big ones take gigabytes).
"""

import datetime
import gc
import math
import os
import platform
import shlex
import sys
import tempfile
import time
import warnings

import applications
from applications import arguments
from applications.provenance import git_commit
from applications.run_dir import write_atomic
from applications.run_dir import write_json

DEFAULT_SIZE = 32
# The models whose input check in Keras (`obtain_input_shape`'s `min_size`)
# asks for more than 32x32; every other model accepts 32x32.
MIN_SIZES = {"InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71}
ATOL = 1e-5
PROGRAM = "python -m applications.convert_applications"
COLUMNS = (
    "model",
    "input",
    "layers",
    "expected PSP terms",
    "PSP terms",
    "predictions equal (max abs diff)",
    "fit loss finite",
    "round trip",
    "seconds",
    "error",
)


def available_models():
    """The model builders of `keras.applications`, by name."""
    import keras

    return sorted(
        name
        for name in dir(keras.applications)
        if name[:1].isupper() and callable(getattr(keras.applications, name))
    )


def select_models(patterns, available):
    """The models named by `patterns` (names or substrings, any case), in
    the order of `available`; raises `UnknownModelError` (a ValueError)
    for a pattern that matches none."""
    if not patterns:
        return list(available)
    chosen = set()
    for pattern in patterns:
        exact = [name for name in available if name.lower() == pattern.lower()]
        matches = exact or [
            name for name in available if pattern.lower() in name.lower()
        ]
        if not matches:
            raise UnknownModelError(
                f"Unknown model {pattern!r}: it is neither the name nor part "
                "of the name of a `keras.applications` model. Available: "
                f"{', '.join(available)}."
            )
        chosen.update(matches)
    return [name for name in available if name in chosen]


def input_size(name):
    return MIN_SIZES.get(name, DEFAULT_SIZE)


class UnknownModelError(ValueError):
    """A `--models` entry matches no `keras.applications` model."""


def parse_args(argv=None):
    parser = arguments.parser("applications.convert_applications", __doc__)
    parser.add_argument(
        "--models",
        nargs="+",
        default=None,
        metavar="NAME",
        help="models to check: names or parts of names, any case "
        "(default: all of them; --list shows them)",
    )
    parser.add_argument(
        "--output",
        default=None,
        help="the Markdown table; the JSON goes beside it "
        "(default: results/applications_<backend>.md)",
    )
    parser.add_argument(
        "--list",
        action="store_true",
        help="print the models and their input sizes, and exit",
    )
    parser.add_argument(
        "--classes",
        type=arguments.positive_int,
        default=3,
        help="classes of each model's classifier",
    )
    parser.add_argument(
        "--batch-size",
        type=arguments.positive_int,
        default=2,
        help="images in the prediction batch and in the fit step",
    )
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
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the rows of the models already in the JSON (same "
        "backend) and check only the others",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    applications.quiet_tensorflow()
    import keras

    available = available_models()
    if args.list:
        for name in available:
            print(f"{name} {input_size(name)}x{input_size(name)}")
        return []
    models = select_models(args.models, available)
    backend = keras.backend.backend()
    output = args.output or os.path.join(
        "results", f"applications_{backend}.md"
    )
    json_path = os.path.splitext(output)[0] + ".json"
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    command = " ".join(
        [
            f"KERAS_BACKEND={backend}",
            PROGRAM,
            *map(shlex.quote, sys.argv[1:] if argv is None else argv),
        ]
    )
    info = {
        "command": command,
        "backend": backend,
        "keras": keras.__version__,
        "machine": machine(),
        "git_commit": git_commit(),
        "date": datetime.datetime.now().astimezone().isoformat(" ", "seconds"),
    }
    done = _resumed_rows(json_path, backend) if args.resume else {}
    rows = []
    started = time.perf_counter()
    for name in models:
        if name in done:
            rows.append(done[name])
            continue
        print(f"{name} ...", flush=True)
        row = check_model(name, args)
        rows.append(row)
        print(f"  {format_row(row)}", flush=True)
        info["sweep_seconds"] = round(time.perf_counter() - started, 1)
        write_results(output, json_path, info, rows, len(models))
        keras.utils.clear_session()
        gc.collect()
    info["sweep_seconds"] = round(time.perf_counter() - started, 1)
    write_results(output, json_path, info, rows, len(models))
    print(summary(rows, len(models)))
    return rows


def machine():
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


def _resumed_rows(json_path, backend):
    import json

    try:
        with open(json_path) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return {}
    if saved.get("backend") != backend:
        return {}
    return {row["model"]: row for row in saved.get("rows", [])}


def check_model(name, args):
    """Builds, converts and checks one model; returns its row (a dict)."""
    import keras
    import numpy as np

    from keras_psp import apply_psp

    size = input_size(name)
    row = {"model": name, "input": f"{size}x{size}"}
    errors, notes = [], []
    started = time.perf_counter()
    try:
        keras.utils.set_random_seed(0)
        builder = getattr(keras.applications, name)
        model = builder(
            weights=None, input_shape=(size, size, 3), classes=args.classes
        )
        row["layers"] = len(model.layers)
        x = sample_images(builder, args.batch_size, size)
        y = np.arange(args.batch_size) % args.classes
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            converted = apply_psp(model, strength=args.strength)
        notes += [
            "warning: " + str(w.message).splitlines()[0]
            for w in caught
            if "unregularized" in str(w.message)
        ]
        # After the conversion: counting calls the model's layers again.
        row["expected_psp_terms"] = expected_psp_terms(model)
        expected = _numpy(model(x, training=False))
        del model
        predicted = _numpy(converted(x, training=False))
        row["psp_terms"] = count_psp_terms(converted)
        diff, equal = _compare(expected, predicted)
        row.update(max_abs_diff=diff, predictions_equal=equal)
        for label, step, step_args in (
            ("round trip", _round_trip, (converted, x, predicted)),
            ("fit", _fit_step, (converted, x, y, args)),
        ):
            try:
                step(row, *step_args)
            except Exception as error:  # reported in the row
                errors.append(f"{label}: {_describe(error)}")
        del converted
    except Exception as error:  # reported; the sweep goes on
        errors.append(_describe(error))
    row["seconds"] = round(time.perf_counter() - started, 1)
    row["error"] = "; ".join(errors)
    row["notes"] = "; ".join(notes)
    return row


def sample_images(builder, batch_size, size):
    """Random pixel images in [0, 255), through the model's own
    `preprocess_input`, as a user would feed them."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch_size, size, size, 3)).astype("float32")
    preprocess = sys.modules[builder.__module__].preprocess_input
    return np.asarray(preprocess(x), dtype="float32")


def _layer_classes():
    """Keras' affine layers (they apply `activation` to their affine
    output) and activation layers, listed here apart from keras-psp's
    registry, so that the expected count does not come from the code under
    test."""
    from keras import layers

    affine = (
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
    activation = (
        layers.Activation,
        layers.ReLU,
        layers.LeakyReLU,
        layers.ELU,
        layers.PReLU,
        layers.Softmax,
    )
    return affine, activation


def _is_linear(activation):
    import keras

    return (
        activation is None
        or keras.activations.get(activation) is keras.activations.linear
    )


def _output_layers(model):
    from keras_psp import keras_internals

    found = []
    for tensor in model.outputs:
        layer = keras_internals.producer(tensor)
        if keras_internals.is_graph_model(layer):
            found.extend(_output_layers(layer))
        elif layer is not None:
            found.append(layer)
    return found


def expected_psp_terms(model):
    """The PSP terms a converted `model` should add in one forward pass.

    One per call of a layer with a non-linear pre-activation (an affine
    layer with a non-linear `activation`, an activation layer other than a
    linear `Activation`), plus one per call of a linear affine output layer
    (the logits, which `apply_psp` regularizes by default). An activation
    layer whose input a linear PSP layer made is not counted: that z is
    counted already. PSP layers already in `model` count once per call.

    Calls the model's layers on new symbolic inputs, which adds nodes to
    them: count after converting the model, not before.
    """
    import keras

    from keras_psp import keras_internals
    from keras_psp.layers.psp_layer import PSPLayerMixin
    from keras_psp.pre_activations import run_graph

    affine, activation = _layer_classes()
    outputs = {id(layer) for layer in _output_layers(model)}
    count = 0

    def counter(layer, *args, **kwargs):
        nonlocal count
        kind = type(layer)  # exact classes: a subclass may do more
        if isinstance(layer, PSPLayerMixin):
            count += 1
        elif kind in affine:
            if id(layer) in outputs or not _is_linear(layer.activation):
                count += 1
        elif kind in activation:
            source = keras_internals.producer(keras.tree.flatten(args)[0])
            source_activation = getattr(
                source, "psp_activation", getattr(source, "activation", None)
            )
            counted = isinstance(source, PSPLayerMixin) and _is_linear(
                source_activation
            )
            linear = kind is keras.layers.Activation and _is_linear(
                layer.activation
            )
            if not counted and not linear:
                count += 1
        return layer(*args, **kwargs)

    inputs = [
        keras.Input(batch_shape=spec.shape, dtype=spec.dtype)
        for spec in model.inputs
    ]
    run_graph(model, inputs[0] if len(inputs) == 1 else inputs, counter)
    return count


def count_psp_terms(model):
    """The PSP terms `model`'s last forward pass added."""
    from keras_psp.models.psp_model import psp_losses

    return len(psp_losses(model))


def _numpy(outputs):
    import keras
    import numpy as np

    return [
        np.asarray(keras.ops.convert_to_numpy(t))
        for t in keras.tree.flatten(outputs)
    ]


def _compare(expected, actual):
    """`(max abs diff, whether assert_allclose(atol=ATOL) passes)`."""
    import numpy as np

    pairs = list(zip(expected, actual, strict=True))
    diff = max(float(np.max(np.abs(a - b), initial=0.0)) for a, b in pairs)
    try:
        for a, b in pairs:
            np.testing.assert_allclose(b, a, atol=ATOL)
    except AssertionError:
        return diff, False
    return diff, True


def _round_trip(row, model, x, predicted):
    import keras

    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
        os.remove(path)  # at once: the file may be gigabytes
    again = _numpy(loaded(x, training=False))
    terms = count_psp_terms(loaded)
    del loaded
    diff, equal = _compare(predicted, again)
    row.update(round_trip_max_abs_diff=diff, round_trip_psp_terms=terms)
    row["round_trip"] = equal and terms == row["psp_terms"]


def _fit_step(row, model, x, y, args):
    import keras

    jit = {"auto": "auto", "on": True, "off": False}[args.jit_compile]
    model.compile(
        keras.optimizers.SGD(0.01),
        "sparse_categorical_crossentropy",
        jit_compile=jit,
    )
    logs = model.fit(x, y, batch_size=len(x), epochs=1, verbose=0).history
    row["fit_loss"] = float(logs["loss"][-1])
    row["fit_psp_loss"] = float(logs["psp_loss"][-1])
    row["fit_loss_finite"] = math.isfinite(row["fit_loss"])


def _describe(error):
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}".strip(" :")


def _terms_ok(row):
    return row.get("psp_terms") is not None and (
        row["psp_terms"] == row.get("expected_psp_terms")
    )


def passed(row):
    """Whether every check of the row passed."""
    return (
        _terms_ok(row)
        and bool(row.get("predictions_equal"))
        and bool(row.get("fit_loss_finite"))
        and bool(row.get("round_trip"))
        and not row.get("error")
    )


def format_row(row):
    """The row as a Markdown table line, in the order of `COLUMNS`."""

    def cell(key, text):
        return "—" if row.get(key) is None else text

    def yes(key):
        return "yes" if row.get(key) else "NO"

    terms = cell("psp_terms", str(row.get("psp_terms")))
    if row.get("psp_terms") is not None and not _terms_ok(row):
        terms += " (MISMATCH)"
    trip = cell(
        "round_trip",
        "ok"
        if row.get("round_trip")
        else f"FAILED (diff {row.get('round_trip_max_abs_diff', 0):.1e}, "
        f"{row.get('round_trip_psp_terms')} terms)",
    )
    error = "; ".join(filter(None, (row.get("error"), row.get("notes"))))
    cells = [
        row["model"],
        row["input"],
        cell("layers", str(row.get("layers"))),
        cell("expected_psp_terms", str(row.get("expected_psp_terms"))),
        terms,
        cell(
            "predictions_equal",
            f"{yes('predictions_equal')} ({row.get('max_abs_diff', 0):.1e})",
        ),
        cell(
            "fit_loss_finite",
            f"{yes('fit_loss_finite')} ({row.get('fit_loss', 0):.4g})",
        ),
        trip,
        cell("seconds", f"{row.get('seconds', 0):.1f}"),
        error.replace("|", "\\|"),
    ]
    return "| " + " | ".join(cells) + " |"


def summary(rows, total):
    """One line: how many models pass each check, and the time taken."""

    def count(check):
        return sum(1 for row in rows if check(row))

    done = "" if len(rows) == total else f" ({len(rows)} of {total} done)"
    return (
        f"{count(passed)} of {len(rows)} models pass every check{done}. "
        f"PSP terms as expected: {count(_terms_ok)}; predictions equal: "
        f"{count(lambda r: r.get('predictions_equal'))}; fit loss finite: "
        f"{count(lambda r: r.get('fit_loss_finite'))}; round trip: "
        f"{count(lambda r: r.get('round_trip'))}; errors: "
        f"{count(lambda r: r.get('error'))}. "
        f"{sum(row.get('seconds') or 0 for row in rows):.0f} s of checks."
    )


def write_results(output, json_path, info, rows, total):
    """Writes the Markdown table and the JSON, each atomically."""
    lines = [
        "# `apply_psp` on `keras.applications`",
        "",
        f"`{info['command']}`: backend {info['backend']}, Keras "
        f"{info['keras']}, keras-psp at commit "
        f"{(info.get('git_commit') or 'unknown')[:10]}, {info['machine']}, "
        f"{info['date']}.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        *(format_row(row) for row in rows),
        "",
        summary(rows, total)
        + f" The sweep took {info.get('sweep_seconds', 0):.0f} s (wall clock).",
        "",
    ]
    write_atomic(output, lambda f: f.write("\n".join(lines)))
    write_json(json_path, {**info, "total_models": total, "rows": rows})


if __name__ == "__main__":
    try:
        main()
    except UnknownModelError as error:
        sys.exit(f"convert_applications.py: error: {error}")
