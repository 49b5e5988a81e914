"""Probe models: a model sharing another's weights whose outputs are
measurements taken at every layer that has a pre-activation; and the
checks of the fixed batch that feeds them."""

import keras
import numpy as np

from keras_psp import keras_internals
from keras_psp import pre_activations


def fixed_batch(x, owner):
    """`x` as NumPy arrays (in its structure), checked to be a batch.

    NumPy feeds `predict_on_batch` on every backend; a `tf.Tensor` (e.g. a
    batch taken from a `tf.data` pipeline) would not on JAX or PyTorch.

    Raises:
        TypeError: if `x` does not hold numbers.
        ValueError: if an array of `x` is not a batch or is empty.
    """
    x = keras.tree.map_structure(keras.ops.convert_to_numpy, x)
    sizes = set()
    for array in keras.tree.flatten(x):
        array = np.asarray(array)
        if array.dtype.kind not in "biuf":
            raise TypeError(
                f"Argument `x` of {owner} must hold numbers (a batch of the "
                f"model's inputs). Received an array of dtype {array.dtype}."
            )
        if array.ndim == 0:
            raise ValueError(
                f"Argument `x` of {owner} must be a batch of the model's "
                "inputs, of shape (batch, ...). Received an array of shape "
                "()."
            )
        sizes.add(array.shape[0])
    if not sizes or 0 in sizes:
        raise ValueError(
            f"Argument `x` of {owner} must hold at least one example."
        )
    return x


def check_batch_fits(model, x, owner):
    """Raises a ValueError naming `x` when it cannot feed `model`."""
    structure = model_input(model)
    inputs = keras.tree.flatten(structure)
    arrays = keras.tree.flatten(x)
    if len(arrays) != len(inputs):
        raise ValueError(
            f"Argument `x` of {owner} holds {len(arrays)} arrays; the model "
            f"takes {len(inputs)} input(s), of shape(s) "
            f"{[tuple(t.shape) for t in inputs]}."
        )
    if isinstance(x, dict) != isinstance(structure, dict):
        return  # Keras matches a dict to the inputs by name
    for array, tensor in zip(arrays, inputs, strict=True):
        expected = tuple(tensor.shape)
        if len(array.shape) != len(expected) or any(
            want is not None and want != got
            for want, got in zip(expected[1:], array.shape[1:], strict=True)
        ):
            raise ValueError(
                f"Argument `x` of {owner} has an array of shape "
                f"{tuple(array.shape)}; the model's input "
                f"`{_input_name(tensor)}` takes shape {expected} (None: any "
                "size)."
            )


def check_graph_model(model, owner):
    """Raises a clear error unless `model` is a layer graph (Sequential or
    functional), the only kind whose layers a probe can be built on."""
    if not keras_internals.is_graph_model(model):
        raise TypeError(
            f"{owner} measures Sequential and functional models, whose layer "
            f"graph it reads; {type(model).__name__} is a subclassed model. "
            "Build the model with `keras.Sequential` or `keras.Model(inputs, "
            "outputs)`, or log the values from the model's own `call`."
        )


def can_probe_now(model):
    """Whether a probe can be built (or refused) at `on_train_begin`: not
    for a Sequential model without an `Input`, which gets its input when
    `fit` builds it, on the first batch. A subclassed model can: it is
    refused."""
    if not keras_internals.is_graph_model(model):
        return True
    try:
        model_input(model)
    except (AttributeError, ValueError):
        return False
    return True


def model_input(model):
    """The model's symbolic input(s), in the structure it is called with.

    A Sequential model's `input` raises until the model is called on a
    symbolic tensor; its `inputs` holds its one input.
    """
    if isinstance(model, keras.Sequential):
        return model.inputs[0]
    return model.input


def _input_name(tensor):
    """The name of the input layer that made `tensor`, by which Keras
    feeds a dict batch."""
    layer = keras_internals.producer(tensor)
    return tensor.name if layer is None else layer.name


def _probe_input(tensor):
    return keras.Input(
        batch_shape=tensor.shape, dtype=tensor.dtype, name=_input_name(tensor)
    )


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

    inputs = keras.tree.map_structure(_probe_input, model_input(model))
    pre_activations.run_graph(model, inputs, call_function)
    return keys, keras.Model(inputs, keras.tree.flatten(probes))


def run_ahead(callback):
    """Moves `callback` (a monitor that adds entries to the epoch's logs)
    ahead of the other callbacks of the `fit` calling its `on_train_begin`,
    so that every callback after it (`CSVLogger`, `TensorBoard`, yours)
    gets its entries whatever the order of the list `fit` was given; only
    the monitors already at the front stay ahead of it, in their order.

    `fit` calls each epoch's callbacks in list order with one logs dict:
    a monitor after `CSVLogger` came too late for it (the CSV had no
    ⟨z²⟩ column). The list moved is the one `fit` made (the caller's own
    list is left as it was); a loop over it still calls each callback
    once, since the monitor moves from where the loop is to before it.
    """
    callback_list = keras_internals.calling_callback_list(callback)
    if callback_list is None:
        return  # called by hand, or through another callback
    callbacks = callback_list.callbacks
    index = next(i for i, held in enumerate(callbacks) if held is callback)
    front = 0
    while front < index and getattr(callbacks[front], "_runs_ahead", False):
        front += 1
    if front < index:
        callbacks.insert(front, callbacks.pop(index))
