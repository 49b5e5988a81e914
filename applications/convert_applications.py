"""Check `keras_psp.apply_psp` on every model of `keras.applications`.

    python -m applications.convert_applications            # all models
    python -m applications.convert_applications --models MobileNet ResNet50
    python -m applications.convert_applications --list
    python -m applications.convert_applications --backend jax

The whole sweep (40 models) took 891 s on a 2-core CPU with the TensorFlow
backend (2026-11-25), and 1844 s with another sweep running beside it
(2026-12-02; results/applications_tensorflow.md).

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
The sweep's machinery is `applications.conversion_sweep` and its checks
`applications.conversion_checks`, both shared with
`applications.convert_keras_hub`.
"""

import math
import sys
import time
import warnings

from applications import arguments
from applications import conversion_checks
from applications import conversion_sweep
from applications.conversion_sweep import cell
from applications.conversion_sweep import yes

DEFAULT_SIZE = 32
# The models whose input check in Keras (`obtain_input_shape`'s `min_size`)
# asks for more than 32x32; every other model accepts 32x32.
MIN_SIZES = {"InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71}
WHAT = "`keras.applications` model"
# A `--models` entry matches no model (a ValueError).
UnknownModelError = conversion_sweep.UnknownNameError


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
    return conversion_sweep.select(patterns, available, WHAT)


def input_size(name):
    return MIN_SIZES.get(name, DEFAULT_SIZE)


def parse_args(argv=None):
    parser = arguments.parser("applications.convert_applications", __doc__)
    conversion_sweep.add_arguments(parser, "models", SWEEP.default_output)
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
    return conversion_sweep.parse_args(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    return conversion_sweep.run(
        SWEEP,
        args,
        argv,
        available_models,
        lambda name: check_model(name, args),
        label=lambda name: f"{name} {input_size(name)}x{input_size(name)}",
    )


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
            (
                "round trip",
                _round_trip,
                (converted, x, predicted, args.strength),
            ),
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


def _activation_layer_classes():
    """Keras' activation layers, listed here apart from keras-psp's
    registry, as `conversion_checks.affine_layer_classes` lists the affine
    ones."""
    from keras import layers

    return (
        layers.Activation,
        layers.ReLU,
        layers.LeakyReLU,
        layers.ELU,
        layers.PReLU,
        layers.Softmax,
    )


def expected_psp_terms(model):
    """The PSP terms a converted `model` should add in one forward pass.

    One per call of a layer with a non-linear pre-activation (an affine
    layer with a non-linear `activation`, an activation layer other than a
    linear `Activation`), plus one per call of a linear affine output layer
    (the logits, which `apply_psp` regularizes by default). An activation
    layer whose input is another activation's output (an activation
    layer's, an affine layer's with a non-linear `activation`) or a PSP
    layer's is not counted: it has no z of its own, or that z is counted
    already. PSP layers already in `model` count once per call.

    Calls the model's layers on new symbolic inputs, which adds nodes to
    them: count after converting the model, not before.
    """
    import keras

    from keras_psp import keras_internals
    from keras_psp.layers.psp_layer import PSPLayerMixin
    from keras_psp.pre_activations import run_graph

    affine = conversion_checks.affine_layer_classes()
    activation = _activation_layer_classes()
    outputs = {id(layer) for layer, _ in conversion_checks.output_calls(model)}
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
            source_activation = getattr(source, "activation", None)
            counted = (
                isinstance(source, PSPLayerMixin)
                or (
                    type(source) in activation
                    and not (
                        type(source) is keras.layers.Activation
                        and _is_linear(source_activation)
                    )
                )
                or (
                    type(source) in affine and not _is_linear(source_activation)
                )
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


count_psp_terms = conversion_checks.count_psp_terms
_numpy = conversion_checks.numpy_outputs
_compare = conversion_checks.compare
_round_trip = conversion_checks.round_trip
_describe = conversion_checks.describe
_is_linear = conversion_checks.is_linear


def _fit_step(row, model, x, y, args):
    import keras

    model.compile(
        keras.optimizers.SGD(0.01),
        "sparse_categorical_crossentropy",
        jit_compile=conversion_sweep.jit_compile(args),
    )
    logs = model.fit(x, y, batch_size=len(x), epochs=1, verbose=0).history
    row["fit_loss"] = float(logs["loss"][-1])
    row["fit_psp_loss"] = float(logs["psp_loss"][-1])
    row["fit_loss_finite"] = math.isfinite(row["fit_loss"])


def passed(row):
    """Whether every check of the row passed."""
    return (
        conversion_sweep.terms_ok(row)
        and bool(row.get("predictions_equal"))
        and bool(row.get("fit_loss_finite"))
        and bool(row.get("round_trip"))
        and not row.get("error")
    )


def format_row(row):
    """The row as a Markdown table line, in the order of `SWEEP.columns`."""
    trip = cell(
        row,
        "round_trip",
        "ok"
        if row.get("round_trip")
        else f"FAILED (diff {row.get('round_trip_max_abs_diff', 0):.1e}, "
        f"{row.get('round_trip_psp_terms')} terms)",
    )
    fit = f"{yes(row, 'fit_loss_finite')} ({row.get('fit_loss', 0):.4g})"
    return conversion_sweep.table_line(
        row,
        [
            row["model"],
            row["input"],
            cell(row, "layers", str(row.get("layers"))),
            cell(row, "expected_psp_terms", str(row.get("expected_psp_terms"))),
            conversion_sweep.terms_cell(row),
            conversion_sweep.predictions_cell(row),
            cell(row, "fit_loss_finite", fit),
            trip,
        ],
    )


SWEEP = conversion_sweep.Sweep(
    program="python -m applications.convert_applications",
    title="`apply_psp` on `keras.applications`",
    key="model",
    noun="models",
    what=WHAT,
    columns=(
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
    ),
    format_row=format_row,
    passed=passed,
    checks=(
        *conversion_sweep.COMMON_CHECKS,
        ("fit loss finite", lambda r: r.get("fit_loss_finite")),
        ("round trip", lambda r: r.get("round_trip")),
    ),
    default_output="runs/applications_{backend}.md",
)


def summary(rows, total):
    """One line: how many models pass each check, and the time taken."""
    return conversion_sweep.summary(SWEEP, rows, total)


if __name__ == "__main__":
    conversion_sweep.main_guard(main, "convert_applications.py")
