"""Probe models: a model sharing another's weights whose outputs are
measurements taken at every layer that has a pre-activation."""

import keras

from keras_psp import pre_activations


def probe_model(model, regularize_logits, tap, what):
    """A model sharing `model`'s weights whose outputs are `tap`'s
    measurements at every pre-activation layer, nested models' included;
    and `(key, layer)` for each, in the order of the outputs.

    Args:
        model: a built Keras model.
        regularize_logits: whether the logits count, as in `apply_psp`.
        tap: `tap(layer, index, args, kwargs, output)` returns the
            measurement (a tensor, or a tuple of tensors) of one call of
            `layer`, or `None` to skip it.
        what: what is measured, for the error message.

    Raises:
        ValueError: if the model has no such layer.
    """
    found, _ = pre_activations.find_pre_activations(model, regularize_logits)
    if not found:
        raise ValueError(
            f"The model has no {what} to monitor (no layer with a "
            "non-linear activation, no activation layer, no PSP layer)."
        )
    paths = {id(entry.layer): entry.path for entry in found}
    probes, keys, calls = [], [], {}

    def call_function(layer, *args, **kwargs):
        output = layer(*args, **kwargs)
        if id(layer) in paths:
            key = "/".join(paths[id(layer)] + (layer.name,))
            calls[key] = calls.get(key, 0) + 1
            if calls[key] > 1:
                key = f"{key}_call{calls[key]}"
            probe = tap(layer, len(keys), args, kwargs, output)
            if probe is not None:
                probes.append(probe)
                keys.append((key, layer))
        return output

    inputs = keras.tree.map_structure(
        lambda t: keras.Input(batch_shape=t.shape, dtype=t.dtype), model.input
    )
    pre_activations.run_graph(model, inputs, call_function)
    return keys, keras.Model(inputs, keras.tree.flatten(probes))
