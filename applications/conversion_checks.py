"""The checks both conversion sweeps make on a converted model
(`convert_applications`, `convert_keras_hub`): predictions compared
(`compare`), the PSP terms counted (`count_psp_terms`), the `.keras` round
trip (`round_trip`), the outputs a linear affine layer makes (the logits,
which `apply_psp` regularizes by default: `linear_outputs`), and an
exception as one line (`describe`).

What a check expects is counted here apart from keras-psp's own registry
(`affine_layer_classes`), so that it does not come from the code under
test. Nothing here imports Keras at import time: `--help` stays fast.
"""

import os
import tempfile

ATOL = 1e-5


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


def round_trip(row, model, x, predicted, strength):
    """Saves and loads `model`, and records in `row` whether the loaded
    model predicts `predicted` (flat numpy outputs) on `x`, is the plain
    model (PSP enabled in place is not saved: `round_trip_plain`), and,
    with PSP enabled again at `strength`, adds the same number of PSP
    terms (`row["psp_terms"]`)."""
    import keras_psp

    loaded = save_and_load(model)
    again = numpy_outputs(loaded(x, training=False))
    plain = count_psp_terms(loaded) == 0
    keras_psp.enable_psp(loaded, strength=strength)
    loaded(x, training=False)
    terms = count_psp_terms(loaded)
    del loaded
    diff, equal = compare(predicted, again)
    row.update(
        round_trip_max_abs_diff=diff,
        round_trip_plain=plain,
        round_trip_psp_terms=terms,
    )
    row["round_trip"] = equal and plain and terms == row["psp_terms"]


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
