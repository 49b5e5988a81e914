"""Check `keras_psp.apply_psp` on every keras_hub backbone, at a tiny size.

    python -m applications.convert_keras_hub                # all backbones
    python -m applications.convert_keras_hub --models BertBackbone Gemma
    python -m applications.convert_keras_hub --list
    python -m applications.convert_keras_hub --backend jax

The whole sweep (97 configurations) took 842 s on a 2-core CPU with the
TensorFlow backend (2026-12-02; results/keras_hub_tensorflow.md).

Each configuration of `applications.keras_hub_backbones` (every
`keras_hub.models.*Backbone` class, some in several variants, e.g.
`DINOV2Backbone[swiglu]`) is built with random weights at a tiny size,
with its batch of 2 sample inputs, converted with `apply_psp` (the first
line of each `UserWarning` it gives goes to the notes: layers it could not
copy and shares, non-linearities left unregularized), and checked:

- PSP terms: the penalties one forward pass of the converted model adds,
  against the number expected: the non-linearities the original backbone
  applies in one eager forward pass, counted by watching the backend's
  activation functions, without asking keras-psp
  (`applications.activation_count` says the rules), plus one per model
  output that a linear affine layer (Dense, EinsumDense, Conv*, ...)
  makes: the logits, which `apply_psp` regularizes by default
  (`regularize_logits=True`);
- predictions: the converted model's equal the backbone's (same output
  structure, float32, `atol` 1e-5), both called with `training=False`;
  the table shows the largest absolute difference;
- .keras round trip: saved and loaded, the model predicts the same and adds
  the same number of PSP terms; when it does not, the plain backbone's own
  functional copy, `keras.Model(backbone.input, backbone.output)`, is put
  through the same round trip, and the row says whether that fails too (a
  round trip that fails as the plain copy's does is not held against
  keras-psp: it counts as passed, and the summary counts them apart);
- strip: `strip_psp` gives a model with no PSP layer left that predicts as
  the backbone does;
- fit: one `fit` step (SGD 1e-3, no loss: the loss is the PSP terms
  alone) on the sample batch gives a finite loss and a PSP loss > 0 (the
  table shows both). It runs last: it changes the weights.

Any exception is caught and reported in its row (type and first line), and
the sweep goes on. The default table is `runs/keras_hub_<backend>.md` (not
the committed results), with its JSON beside it; the sweep's machinery
(`--resume`, atomic writes, the summary) is `applications.conversion_sweep`
and its checks `applications.conversion_checks`, both shared with
`applications.convert_applications`.
"""

import functools
import importlib.metadata
import math
import time
import warnings

from applications import activation_count
from applications import arguments
from applications import conversion_checks
from applications import conversion_sweep
from applications.conversion_sweep import cell

WHAT = "keras_hub backbone configuration"


def available_backbones():
    """The configuration names of `applications.keras_hub_backbones`."""
    from applications import keras_hub_backbones

    return keras_hub_backbones.configurations()


def parse_args(argv=None):
    parser = arguments.parser("applications.convert_keras_hub", __doc__)
    conversion_sweep.add_arguments(parser, "backbones", SWEEP.default_output)
    return conversion_sweep.parse_args(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    return conversion_sweep.run(
        SWEEP,
        args,
        argv,
        available_backbones,
        lambda name: check_backbone(name, args),
        versions={"keras-hub": importlib.metadata.version("keras-hub")},
    )


# === One backbone ===


def check_backbone(name, args):
    """Builds, converts and checks one backbone configuration; returns its
    row (a dict)."""
    import keras

    from applications import keras_hub_backbones
    from keras_psp import apply_psp

    row = {"backbone": name}
    errors, notes = [], []
    started = time.perf_counter()
    try:
        backbone, inputs = keras_hub_backbones.build(name)
        row["layers"] = len(backbone.layers)
        count, expected = activation_count.count_activations(
            functools.partial(backbone, inputs, training=False)
        )
        row["nonlinearities"] = count
        row["logits"] = conversion_checks.linear_outputs(backbone)
        row["expected_psp_terms"] = count + row["logits"]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            converted = apply_psp(backbone, strength=args.strength)
        notes += _warning_notes(caught)
        outputs = converted(inputs, training=False)
        row["psp_terms"] = conversion_checks.count_psp_terms(converted)
        try:
            keras.tree.assert_same_structure(expected, outputs)
        except (TypeError, ValueError) as error:
            errors.append(
                f"output structure: {conversion_checks.describe(error)}"
            )
        expected = conversion_checks.numpy_outputs(expected)
        predicted = conversion_checks.numpy_outputs(outputs)
        diff, equal = conversion_checks.compare(expected, predicted)
        row.update(max_abs_diff=diff, predictions_equal=equal)
        for label, step, step_args in (
            (
                "round trip",
                _round_trip,
                (converted, backbone, inputs, predicted, args.strength),
            ),
            ("strip", _strip, (converted, inputs, expected)),
            ("fit", _fit_step, (converted, inputs, args)),
        ):
            try:
                step(row, *step_args)
            except Exception as error:  # reported in the row
                errors.append(f"{label}: {conversion_checks.describe(error)}")
        del converted, backbone
    except Exception as error:  # reported; the sweep goes on
        errors.append(conversion_checks.describe(error))
    row["seconds"] = round(time.perf_counter() - started, 1)
    row["error"] = "; ".join(errors)
    row["notes"] = "; ".join(notes)
    return row


def _warning_notes(caught):
    """The first line of each `UserWarning` of `caught`, with the layers it
    lists (keras-psp's warnings list them as "  - name (Class): reason"),
    once each, with how many times it came when more than once."""
    notes = []
    for w in caught:
        lines = str(w.message).strip().splitlines()
        if not issubclass(w.category, UserWarning) or not lines:
            continue
        items = [
            line.strip()[2:][:200]
            for line in lines[1:]
            if line.strip().startswith("- ")
        ]
        notes.append(" ".join([lines[0], "; ".join(items)]).strip())
    counts = dict.fromkeys(notes, 0)
    for note in notes:
        counts[note] += 1
    return [
        f"warning: {note}" + (f" ({n} times)" if n > 1 else "")
        for note, n in counts.items()
    ]


def _round_trip(row, converted, backbone, inputs, predicted, strength):
    """The converted model's `.keras` round trip; where it fails, the plain
    backbone's functional copy's, for comparison. A failure is told in the
    round trip's cell, not as an error of the row."""
    import keras

    try:
        conversion_checks.round_trip(
            row, converted, inputs, predicted, strength
        )
    except Exception as error:
        row["round_trip"] = False
        row["round_trip_error"] = conversion_checks.describe(error)
    if not row["round_trip"]:
        plain = keras.Model(backbone.input, backbone.output)
        _plain_round_trip(row, plain, inputs)


def _plain_round_trip(row, plain, inputs):
    """Whether `plain` (no PSP) survives the same round trip: recorded as
    `row["plain_round_trip"]`, with the reason it fails."""
    try:
        checks = conversion_checks
        expected = checks.numpy_outputs(plain(inputs, training=False))
        loaded = checks.save_and_load(plain)
        again = checks.numpy_outputs(loaded(inputs, training=False))
        diff, equal = checks.compare(expected, again)
        row["plain_round_trip"] = equal
        if not equal:
            row["plain_round_trip_error"] = f"predictions differ by {diff:.1e}"
    except Exception as error:
        row["plain_round_trip"] = False
        row["plain_round_trip_error"] = conversion_checks.describe(error)


def _strip(row, converted, inputs, expected):
    import keras_psp
    from keras_psp.models.psp_model import psp_layers

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stripped = keras_psp.strip_psp(converted)
    outputs = conversion_checks.numpy_outputs(stripped(inputs, training=False))
    diff, equal = conversion_checks.compare(expected, outputs)
    left = len(psp_layers(stripped))
    row.update(strip_max_abs_diff=diff, strip_psp_layers=left)
    row["strip"] = equal and left == 0


def _fit_step(row, model, inputs, args):
    import keras

    from applications import keras_hub_backbones

    model.compile(
        optimizer=keras.optimizers.SGD(1e-3),
        jit_compile=conversion_sweep.jit_compile(args),
    )
    with warnings.catch_warnings():
        # The layers after the last activation get no gradient: the loss is
        # the PSP terms alone.
        warnings.filterwarnings("ignore", "Gradients do not exist")
        logs = model.fit(
            inputs, epochs=1, batch_size=keras_hub_backbones.BATCH, verbose=0
        ).history
    row["fit_loss"] = float(logs["loss"][-1])
    row["fit_psp_loss"] = float(logs["psp_loss"][-1])
    row["fit"] = math.isfinite(row["fit_loss"]) and row["fit_psp_loss"] > 0


# === The table ===


def _round_trip_ok(row):
    """The round trip passed, or failed as the plain backbone's does."""
    return bool(row.get("round_trip")) or _fails_as_plain(row)


def _fails_as_plain(row):
    return (
        row.get("round_trip") is False and row.get("plain_round_trip") is False
    )


def passed(row):
    """Whether every check of the row passed (a round trip that fails as
    the plain backbone's does counts as passed)."""
    return (
        conversion_sweep.terms_ok(row)
        and bool(row.get("predictions_equal"))
        and _round_trip_ok(row)
        and bool(row.get("strip"))
        and bool(row.get("fit"))
        and not row.get("error")
    )


def format_row(row):
    """The row as a Markdown table line, in the order of `SWEEP.columns`."""
    nonlinearities = cell(row, "nonlinearities", str(row.get("nonlinearities")))
    if row.get("logits"):
        nonlinearities += f" + {row['logits']} logits"
    if row.get("round_trip"):
        trip = "ok"
    elif row.get("round_trip") is None:
        trip = "—"
    else:
        trip = "FAILED: " + row.get(
            "round_trip_error",
            f"diff {row.get('round_trip_max_abs_diff', math.nan):.1e}, "
            f"{row.get('round_trip_psp_terms')} terms",
        )
        if row.get("plain_round_trip"):
            trip += "; plain backbone round-trips"
        elif row.get("plain_round_trip") is False:
            trip += (
                "; plain backbone fails too: "
                f"{row.get('plain_round_trip_error', '')}"
            )
    strip = cell(
        row,
        "strip",
        "ok"
        if row.get("strip")
        else f"FAILED (diff {row.get('strip_max_abs_diff', 0):.1e}, "
        f"{row.get('strip_psp_layers')} PSP layers left)",
    )
    fit = cell(
        row,
        "fit",
        f"{'ok' if row.get('fit') else 'NO'} (loss "
        f"{row.get('fit_loss', 0):.3g}, psp {row.get('fit_psp_loss', 0):.3g})",
    )
    return conversion_sweep.table_line(
        row,
        [
            row["backbone"],
            cell(row, "layers", str(row.get("layers"))),
            conversion_sweep.terms_cell(row),
            nonlinearities,
            conversion_sweep.predictions_cell(row),
            fit,
            trip,
            strip,
        ],
    )


SWEEP = conversion_sweep.Sweep(
    program="python -m applications.convert_keras_hub",
    title="`apply_psp` on the keras_hub backbones",
    key="backbone",
    noun="backbones",
    what=WHAT,
    columns=(
        "backbone",
        "layers",
        "PSP terms",
        "non-linearities",
        "predictions equal (max abs diff)",
        "fit step",
        ".keras round trip",
        "strip",
        "seconds",
        "error/notes",
    ),
    format_row=format_row,
    passed=passed,
    checks=(
        *conversion_sweep.COMMON_CHECKS,
        ("fit step", lambda r: r.get("fit")),
        ("round trip", lambda r: r.get("round_trip")),
        ("round trip failing as the plain backbone's", _fails_as_plain),
        ("strip", lambda r: r.get("strip")),
    ),
    default_output="runs/keras_hub_{backend}.md",
)


if __name__ == "__main__":
    conversion_sweep.main_guard(main, "convert_keras_hub.py")
