"""`include` and `exclude`: which layers of a model PSP regularizes."""

import difflib

import keras

from keras_psp import pre_activations


def check_selector(selector, argument):
    """Normalizes `include`/`exclude` to a tuple of names and classes."""
    if selector is None:
        return ()
    if isinstance(selector, (str, type)):
        selector = (selector,)
    try:
        selector = tuple(selector)
    except TypeError:
        selector = (selector,)
    for item in selector:
        if not (
            isinstance(item, str)
            or (isinstance(item, type) and issubclass(item, keras.layers.Layer))
        ):
            raise TypeError(
                f"Argument `{argument}` must be a layer name, a Layer class, "
                f"or a list of them. Received an item {item!r}."
            )
    return selector


def matches(layer, selector):
    return any(
        layer.name == item if isinstance(item, str) else isinstance(layer, item)
        for item in selector
    )


def check_selected(selector, argument, candidates, model):
    """Raises unless each `include`/`exclude` entry matches a pre-activation
    (a typo would otherwise silently regularize nothing, or everything)."""
    every_layer = [op for op, _ in pre_activations.graph_operations(model)]
    for item in selector:
        if any(matches(layer, (item,)) for layer in candidates):
            continue
        others = [layer for layer in every_layer if matches(layer, (item,))]
        label = item if isinstance(item, str) else item.__name__
        if others:
            names = ", ".join(f"'{layer.name}'" for layer in others[:5])
            raise ValueError(
                f"Argument `{argument}` has the entry {label!r}, which matches "
                f"only layers with no pre-activation to regularize ({names})."
            )
        hint = selector_hint(item, argument, every_layer, candidates)
        raise ValueError(
            f"Argument `{argument}` has the entry {label!r}, which matches no "
            f"layer of model '{model.name}'.{hint}"
        )


def selector_hint(item, argument, every_layer, candidates):
    """What an `include`/`exclude` entry that matches no layer may have
    meant: the closest layer names and, since a string is a layer name
    only, the closest class names with how to pass a class."""
    if not isinstance(item, str):
        classes = sorted({type(layer).__name__ for layer in candidates})
        return (
            f" Its layers with a pre-activation are of the classes {classes}."
        )
    hint = ""
    close = pre_activations.closest_names(item, every_layer)
    if close:
        hint = f" Closest layer names: {close}."
    classes = sorted({type(layer).__name__ for layer in every_layer})
    close = difflib.get_close_matches(item, classes, n=3, cutoff=0.6)
    if close:
        hint += (
            f" Closest layer classes: {close}; a string selects a layer by "
            f"its name: to select a class, pass the class itself (e.g. "
            f"`{argument}=[{class_path(close[0])}]`)."
        )
    return hint


def class_path(class_name):
    """`keras.layers.Dense` for a class Keras exports, else the name."""
    exported = hasattr(keras.layers, class_name)
    return f"keras.layers.{class_name}" if exported else class_name


def select(model, function, regularize_logits, include, exclude):
    """`(entries, skipped)`: the `find_pre_activations` entries of `model`
    that `include` and `exclude` select (PSP layers left out), and the
    layers PSP cannot regularize.

    Raises:
        TypeError: for a malformed `include`/`exclude`.
        ValueError: for an entry that matches no layer with a
            pre-activation, or when nothing is left to regularize (named
            as called by `function`).
    """
    include = check_selector(include, "include")
    exclude = check_selector(exclude, "exclude")
    found, skipped = pre_activations.find_pre_activations(
        model, regularize_logits
    )
    candidates = [
        entry.layer for entry in found if entry.kind != pre_activations.PSP
    ]
    check_selected(include, "include", candidates, model)
    check_selected(exclude, "exclude", candidates, model)
    selected = [
        entry
        for entry in found
        if entry.kind != pre_activations.PSP
        and (not include or matches(entry.layer, include))
        and not (exclude and matches(entry.layer, exclude))
    ]
    if not selected and not any(e.kind == pre_activations.PSP for e in found):
        left = "".join(
            f"\n  - {entry.layer.name} ({type(entry.layer).__name__}): "
            f"{entry.reason}"
            for entry in skipped
        )
        among = (
            " among the layers `include`/`exclude` select"
            if (include or exclude)
            else ""
        )
        raise ValueError(
            f"`{function}` found no pre-activation to regularize{among} in "
            f"model '{model.name}': no affine layer with a non-linear "
            "activation, no activation layer or op, no layer applying "
            "activations in its own code"
            + (f", and these are left out:{left}" if left else ".")
        )
    return selected, skipped
