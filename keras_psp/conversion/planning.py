"""Which attachments (`terms`, `code_taps`) reach a model's z's."""

import types

import keras

from keras_psp import cloning
from keras_psp import keras_internals
from keras_psp import pre_activations
from keras_psp.conversion import code_taps
from keras_psp.conversion import terms

_ACTIVATION_MODULES = ("keras.src.activations", "keras.src.ops.nn")


def _is_activation_function(value):
    """Whether `value` is one of Keras' element-wise activation functions
    (what a block keeps in an attribute and applies: `self.activation`)."""
    return (
        isinstance(value, types.FunctionType)
        and str(value.__module__).startswith(_ACTIVATION_MODULES)
        and value.__name__ not in code_taps.NORMALIZING
        and not pre_activations.is_linear(value)
    )


def activation_term(layer, take):
    """The term of a layer (or `keras.ops` node) whose input is z."""
    if type(layer) is keras.layers.Activation:
        return terms.AttributeTerm(layer, "activation", take)
    return terms.InputTerm(layer, take)


def affine_terms(layer, take):
    """The term of an affine layer: at its activation function, or, where
    it holds an activation layer, at that layer's input."""
    activation = layer.activation
    if isinstance(activation, keras.layers.Layer):
        return [activation_term(activation, take)]
    return [terms.AttributeTerm(layer, "activation", take)]


def _has_mask(layer):
    arguments = keras_internals.call_arguments(layer)
    if arguments is None:
        return False
    return pre_activations.call_mask(*arguments) is not None


def graph_terms(entry, take):
    """`(terms, skipped)` for one entry of `find_pre_activations`."""
    layer, kind = entry.layer, entry.kind
    if kind == pre_activations.AFFINE:
        found = affine_terms(layer, take)
    elif kind == pre_activations.ACTIVATION:
        found = [activation_term(layer, take)]
    elif kind == pre_activations.COMPOSITE:
        return composite_terms(layer, take)
    else:
        return [], []
    # An `InputTerm` reads the mask its input carries itself.
    attribute = any(isinstance(t, terms.AttributeTerm) for t in found)
    if attribute and isinstance(layer, keras.layers.Layer) and _has_mask(layer):
        found.append(terms.MaskScope(layer, take))
    return found, []


def _walk(layer):
    """The layers inside `layer` whose activations may be neurons', in
    order: not inside PSP layers (regularized already), recurrent layers
    (out of reach) or attention layers (their softmax is not a neuron's)."""
    for inner in layer._flatten_layers(include_self=False, recursive=False):
        if (
            pre_activations.layer_kind(inner) == pre_activations.PSP
            or code_taps.is_recurrent(inner)
            or code_taps.is_attention(inner)
        ):
            continue
        yield inner
        yield from _walk(inner)


def _candidates(layer, take):
    """Terms for every place inside a composite layer that holds an
    activation: affine and activation layers, activation attributes."""
    found = []
    for inner in [layer, *_walk(layer)]:
        kind = pre_activations.layer_kind(inner)
        if kind == pre_activations.AFFINE:
            activation = inner.activation
            if not isinstance(activation, keras.layers.Layer):
                if not pre_activations.is_linear(activation):
                    found.append(terms.AttributeTerm(inner, "activation", take))
        elif kind == pre_activations.ACTIVATION and inner is not layer:
            if not (
                isinstance(inner, keras.layers.Activation)
                and pre_activations.is_linear(inner.activation)
            ):
                found.append(activation_term(inner, take))
        elif kind is None:
            for attribute, value in list(vars(inner).items()):
                if not attribute.startswith("_") and _is_activation_function(
                    value
                ):
                    found.append(terms.AttributeTerm(inner, attribute, take))
    return found


def _stand_in(x, size):
    # Dense stand-ins of a small size where a size is unknown (PyTorch's
    # symbolic run would try 83, past e.g. a position embedding's length).
    if not isinstance(x, keras.KerasTensor):
        return x
    shape = tuple(size if d is None else d for d in x.shape)
    return keras.KerasTensor(shape, x.dtype)


def _symbolic_run(function, arguments):
    """Runs `function` once symbolically on stand-ins of `arguments`
    (`(args, kwargs)`), at sizes 2, 8, then unknown; raises the first
    error when none runs."""
    error = None
    for size in (2, 8, None):
        args, kwargs = keras.tree.map_structure(
            lambda x, size=size: _stand_in(x, size), arguments
        )
        try:
            keras_internals.trace(function, *args, **kwargs)
        except Exception as failure:  # tried again at another size
            error = error or failure
            continue
        return
    raise error


def _run(layer, model):
    """One symbolic run of `layer` on the arguments of its first call in
    the graph, else of the whole `model` (a keras_hub spec of the wrong
    rank, a layer never called in a graph)."""
    arguments = keras_internals.call_arguments(layer)
    if arguments is not None:
        try:
            _symbolic_run(layer.__call__, arguments)
            return
        except Exception:  # tried on the whole model
            if model is None:
                raise
    _symbolic_run(model.__call__, ((model.input,), {}))


def composite_terms(layer, take, model=None):
    """`(terms, skipped)` of a layer that applies activations in its own
    code: the places found by `_candidates` that one symbolic run of it
    calls (on a z that is not another activation's output), and a
    `CodeTaps` for the activations its code applies with no attribute
    holding them. `skipped` lists `(layer, reason)` for activations PSP
    cannot reach."""
    candidates = _candidates(layer, take)
    analysis = code_taps.Analysis(layer)
    seen = {id(term): [] for term in candidates}
    for term in candidates:
        term.take = lambda z, mask, term=term: seen[id(term)].append(z)
        term.outputs = analysis.outputs
    installed = []
    code_taps.acquire()
    try:
        for term in candidates:
            term.install()
            installed.append(term)
        with code_taps.active(analysis):
            _run(layer, model)
    except Exception as error:
        reason = (
            "its call could not be run symbolically "
            f"({cloning.describe(error)}), so PSP cannot see which "
            "activations it applies"
        )
        return [], [(layer, reason)]
    finally:
        for term in reversed(installed):
            term.remove()
        code_taps.release()
    outputs = {id(output) for output in analysis.outputs}
    kept = []
    for term in candidates:
        term.take, term.outputs = take, None
        zs = seen[id(term)]
        if zs and not any(id(z) in outputs for z in zs):
            kept.append(term)
    places = [where for where, taken in analysis.decisions.items() if taken]
    if places:
        kept.append(code_taps.CodeTaps(layer, places, take))
    if kept and _has_mask(layer):
        kept.append(terms.MaskScope(layer, take))
    return kept, analysis.skipped
