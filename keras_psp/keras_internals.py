"""The only place keras-psp reads Keras internals.

Keras 3 has no public API for these things, and the library needs
them. Each is read here, with the reason, so that a Keras upgrade that
moves one breaks one small module (setup.cfg caps `keras<4`).

One exception, which cannot live here: `GradientCoherentSGD` overrides
the optimizer's private `_backend_update_step`, the one point where every
backend hands over a step's final gradients (after gradient accumulation
and clipping); its tests on every backend catch a Keras that moves it.
"""

import keras

# Public `keras.Model(inputs, outputs)` returns an instance of this class,
# but Keras does not export it: it is the only way to tell a functional
# model (a graph `clone_model` can rebuild) from a subclassed one.
from keras.src.models.functional import Functional


def is_graph_model(model):
    """Whether `model` is a Sequential or functional model (a layer graph)."""
    return isinstance(model, (keras.Sequential, Functional))


def activation_operation_classes():
    """The classes of the graph nodes that `keras.ops` and
    `keras.activations` calls make for element-wise activations
    (`keras.ops.relu(h)` in a functional model is a node of class `Relu`).

    Keras does not export them; they are found by name, and those a Keras
    version lacks are left out. Left out on purpose: `Glu`, which halves
    its input's last axis (an activation layer keeps the shape).
    """
    from keras.src.activations import activations
    from keras.src.ops import nn
    from keras.src.ops import numpy as numpy_ops

    names = (
        "Celu", "Elu", "Gelu", "HardShrink", "HardSigmoid", "HardSilu",
        "HardTanh", "LeakyRelu", "LogSigmoid", "LogSoftmax", "Relu", "Relu6",
        "Selu", "Sigmoid", "Silu", "SoftShrink", "Softmax", "Softplus",
        "Softsign", "SparsePlus", "SparseSigmoid", "Sparsemax", "Squareplus",
        "TanhShrink", "Threshold",
    )  # fmt: skip
    found = [getattr(nn, name) for name in names if hasattr(nn, name)]
    found.append(numpy_ops.Tanh)
    # What `keras.activations.relu(h, max_value=6.0)` makes.
    found.append(activations.ReLU)
    return tuple(found)


def operations(model):
    """A functional model's graph nodes' operations, layers and `keras.ops`
    nodes alike, in graph order (a Sequential model's are its layers)."""
    if isinstance(model, Functional):
        return list(model.operations)
    return list(model.layers)


def producer(tensor):
    """The operation (layer or `keras.ops` node) that made a symbolic tensor.

    Keras records it on the tensor as `_keras_history`; there is no public
    accessor. Returns None for a tensor that no operation made.
    """
    history = getattr(tensor, "_keras_history", None)
    return history[0] if history else None


def output_index(tensor):
    """Which of its producer's outputs a symbolic tensor is (0 for the
    first), from the same `_keras_history`."""
    history = getattr(tensor, "_keras_history", None)
    return history[2] if history else 0


def first_call_input(layer):
    """The first input tensor of the first call of `layer` in a graph.

    `layer.input` raises once the layer has been called twice (e.g. by the
    monitor's probe graph, which calls the model's layers again); the first
    call is the one of the model it was built in.
    """
    nodes = getattr(layer, "_inbound_nodes", None)
    if not nodes or not nodes[0].input_tensors:
        return None
    return nodes[0].input_tensors[0]


def sublayers(layer):
    """Every layer tracked inside `layer`, recursively (not `layer` itself).

    `Model.layers` lists only a model's top-level graph layers; the layers
    inside a layer (a wrapper's, a composite layer's) are reachable only
    through Keras' tracker.
    """
    return list(layer._flatten_layers(include_self=False, recursive=True))


def own_losses(model, layers):
    """The losses `layers` added during `model`'s last forward pass.

    On JAX, the trainer hands the forward pass's losses to `compute_loss`
    through `model._losses_override` and each layer remembers the ids of the
    ones it added (`_loss_ids`); on TensorFlow and PyTorch each layer keeps
    its own (`_get_own_losses`). Keras offers only the total (`model.losses`),
    so the PSP term is read from this bookkeeping to report it apart.
    """
    override = getattr(model, "_losses_override", None)
    if override:
        ids = set()
        for layer in layers:
            ids.update(getattr(layer, "_loss_ids", ()))
        return [loss for loss in override if id(loss) in ids]
    return [loss for layer in layers for loss in layer._get_own_losses()]
