"""The only place keras-psp reads Keras internals.

Keras 3 has no public API for these things, and the library needs
them. Each is read here, with the reason, so that a Keras upgrade that
moves one breaks one small module (setup.cfg caps `keras<4`).

Two exceptions, which cannot live here, since they override methods:
`GradientCoherentSGD` overrides the optimizer's private
`_backend_update_step`, the one point where every backend hands over a
step's final gradients (after gradient accumulation and clipping); and the
PSP wrappers (`layers/psp_wrapper.py`) override `Layer._maybe_build`, the
one point where Keras has a call's bound arguments before the call, to
build the wrapped layer from them as it would be built unwrapped (the
work is `build_as_called`, here). Their tests on every backend catch a
Keras that moves them.
"""

import os

import keras

# Public `keras.Model(inputs, outputs)` returns an instance of this class,
# but Keras does not export it: it is the only way to tell a functional
# model (a graph `clone_model` can rebuild) from a subclassed one.
from keras.src.models.functional import Functional


def is_graph_model(model):
    """Whether `model` is a Sequential or functional model (a layer graph)."""
    return isinstance(model, (keras.Sequential, Functional))


def saves_layer_configs(model):
    """Whether `model`'s class saves it as its layers' configs (Keras'
    own functional config), rather than through a `get_config` of its
    own (a keras_hub backbone saves its constructor's arguments)."""
    return type(model).get_config is Functional.get_config


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


def activation_functions():
    """`(holder, attribute)` for every function through which Keras applies
    an element-wise activation at run time, on every backend.

    `keras.ops.relu(x)`, `keras.activations.relu(x)`, an `Activation("relu")`
    layer and a `Dense(activation="relu")` all end in a call of the active
    backend's `relu` (`keras.src.backend.nn.relu`, the backend module itself,
    looked up by attribute at each call), so swapping these attributes sees
    every activation a layer applies in its own code. Keras has no public
    hook for this. Also here: the two activations Keras computes from
    several backend calls (`ReLU.static_call`, with `max_value`,
    `negative_slope` or `threshold`, and mish), seen as one call each.
    Left out on purpose: `glu` (it halves its input's last axis).
    """
    from keras.src import backend
    from keras.src.activations import activations

    names = (
        "celu", "elu", "gelu", "hard_shrink", "hard_sigmoid", "hard_silu",
        "hard_tanh", "leaky_relu", "log_sigmoid", "log_softmax", "relu",
        "relu6", "selu", "sigmoid", "silu", "soft_shrink", "softmax",
        "softplus", "softsign", "sparse_plus", "sparse_sigmoid", "sparsemax",
        "squareplus", "tanh", "tanh_shrink", "threshold",
    )  # fmt: skip
    found = [(backend.nn, name) for name in names if hasattr(backend.nn, name)]
    found.append((backend.numpy, "tanh"))
    found.append((activations.ReLU, "static_call"))
    if hasattr(activations, "Mish"):
        found.append((activations.Mish, "static_call"))
    return found


# The `keras.ops` control flow whose body runs inside a loop, a map or a
# branch: a tensor made there cannot leave it through `add_loss`.
CONTROL_FLOW = frozenset(
    (
        "associative_scan", "cond", "fori_loop", "map", "scan", "switch",
        "vectorized_map", "while_loop",
    )
)  # fmt: skip


def in_keras_control_flow(code):
    """Whether a frame's code object is one of Keras' control flow ops."""
    return code.co_name in CONTROL_FLOW and (
        f"{os.sep}keras{os.sep}src{os.sep}" in code.co_filename
    )


def trace(function, *args, **kwargs):
    """Runs `function` on symbolic stand-ins of `args` and `kwargs` (which
    hold `keras.KerasTensor`s), as Keras does to infer a layer's output
    spec: no graph node is made and no state changes. Keras exports no such
    function (`keras.src.backend.compute_output_spec`)."""
    from keras.src import backend

    return backend.compute_output_spec(function, *args, **kwargs)


def call_arguments(layer):
    """`(args, kwargs)` of the first call of `layer` in a graph, as symbolic
    tensors and plain values (Keras keeps them on the layer's first inbound
    node); None when the layer was never called on symbolic inputs."""
    nodes = getattr(layer, "_inbound_nodes", None)
    if not nodes:
        return None
    arguments = nodes[0].arguments
    return tuple(arguments.args), dict(arguments.kwargs)


def keras_mask(tensor):
    """The Keras mask a tensor carries (`_keras_mask`), or None."""
    from keras.src import backend

    return backend.get_keras_mask(tensor)


def adopt_call_signature(wrapper, layer, add_mask=False):
    """Makes Keras bind `wrapper`'s calls as it binds `layer`'s.

    Keras binds a call's arguments to the signature of `call` it read at
    construction (`_call_signature`), to split tensors from other values,
    fill in `training` and `mask`, and build. A wrapper whose `call` is
    `(*args, **kwargs)` would refuse keyword-only inputs and see a mix of
    tensors and non-tensors in `kwargs`; given the wrapped layer's
    signature, it takes every call the layer takes. With `add_mask`, a
    keyword-only `mask` is added when the layer's `call` has none, so that
    Keras passes the input's mask to the wrapper (which does not pass it
    on).
    """
    import inspect

    signature = layer._call_signature
    parameters = list(signature.parameters.values())
    if add_mask and "mask" not in signature.parameters:
        mask = inspect.Parameter(
            "mask", inspect.Parameter.KEYWORD_ONLY, default=None
        )
        at = len(parameters)
        if parameters and parameters[-1].kind == inspect.Parameter.VAR_KEYWORD:
            at -= 1
        parameters.insert(at, mask)
        signature = signature.replace(parameters=parameters)
    wrapper._call_signature = signature
    wrapper.call_signature_parameters = list(signature.parameters)
    wrapper._call_has_training_arg = "training" in signature.parameters
    wrapper._call_has_mask_arg = "mask" in signature.parameters
    wrapper._call_context_args = set(layer._call_context_args)
    wrapper._call_has_context_arg = {
        name: name in signature.parameters
        for name in wrapper._call_context_args
    }


def keep_variable_paths(wrapper, layer):
    """Gives the variables `layer` makes when it is built inside `wrapper`
    the paths they would have without the wrapper.

    A variable's path (`"decoder_block_0/ffw_gating/kernel"`) is the name
    scope it is made in; a wrapper named as the layer would add its own
    name before it, and layout maps (`keras.distribution.LayoutMap`, e.g.
    keras_hub's `get_layout_map`) match paths exactly. Keras names the
    parent of a layer's scope by its `_parent_path`, set once.
    """
    if getattr(layer, "_parent_path", None) is None:
        layer._parent_path = wrapper._parent_path


def build_as_called(wrapper, layer, call_spec):
    """Builds `layer`, held by `wrapper`, as Keras would build it if the
    call `wrapper` received (bound to `layer`'s signature, see
    `adopt_call_signature`) were made to `layer` itself: `_maybe_build`
    gives its `build` the shapes of the arguments it names, or nothing
    (`def build(self)`), or builds it by a symbolic run of its call. Done in
    `layer`'s own name scope, under the wrapper's parent, so its variables
    get the paths they have unwrapped (see `keep_variable_paths`)."""
    keep_variable_paths(wrapper, layer)
    if not layer.built:
        with layer._open_name_scope():
            layer._maybe_build(call_spec)


def calling_callback_list(callback):
    """The `keras.callbacks.CallbackList` whose hook is calling one of
    `callback`'s right now, or None.

    `fit` calls every callback through a `CallbackList` it makes from the
    list it was given, and no callback is told which one: it is the caller
    a few frames up (`CallbackList.on_train_begin` looping over its
    `callbacks`), recognized by holding `callback` itself.
    """
    import sys

    frame = sys._getframe(1)
    for _ in range(8):
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        if isinstance(owner, keras.callbacks.CallbackList) and any(
            held is callback for held in owner.callbacks
        ):
            return owner
        frame = frame.f_back
    return None


def attach(owner, attribute, value):
    """Sets `owner.<attribute> = value` on a built layer or model, tracked
    as Keras tracks what a layer sets in `__init__` (a layer, a variable,
    a metric), as `Dense.enable_lora` adds its variables: Keras locks a
    built layer's tracker, and has no public way to add state after."""
    tracker = owner._tracker
    locked = tracker.locked
    tracker.unlock()
    try:
        setattr(owner, attribute, value)
    finally:
        if locked:
            tracker.lock()


def detach(owner, attribute):
    """Removes what `attach` set, from the attribute and from the tracker."""
    value = vars(owner).get(attribute, getattr(owner, attribute, None))
    tracker = owner._tracker
    locked = tracker.locked
    tracker.unlock()
    try:
        tracker.untrack(value)
        delattr(owner, attribute)
    finally:
        if locked:
            tracker.lock()


def set_function_attribute(owner, attribute, function):
    """`owner.<attribute> = function`, also where the attribute holds a
    layer: on PyTorch a layer is a `torch.nn.Module`, which refuses a
    function in a child module's place until the child is removed."""
    current = getattr(owner, attribute, None)
    if isinstance(current, keras.layers.Layer):
        detach(owner, attribute)
    setattr(owner, attribute, function)


def model_host(model):
    """The layer of `model` that holds state `keras_psp` adds to the model
    as a whole: the model itself, except for a Sequential model, whose
    tracked layers are its stack (a layer set on it would join the stack):
    there, its `InputLayer`, which every built Sequential model has."""
    if isinstance(model, keras.Sequential):
        first = model._layers[0] if model._layers else None
        if isinstance(first, keras.layers.InputLayer):
            return first
        raise ValueError(
            f"Argument `model` ('{model.name}') is a Sequential model with no "
            "input: start it with `keras.Input(shape)` or build it first."
        )
    return model


def replace_activation_functions(make_shim):
    """Replaces each of `activation_functions()` by `make_shim(name,
    function)`; returns `(holder, attribute, original, shim)` for
    `restore_activation_functions`."""
    replaced = []
    for holder, attribute in activation_functions():
        original = vars(holder)[attribute]
        static = isinstance(original, staticmethod)
        shim = make_shim(attribute, original.__func__ if static else original)
        setattr(holder, attribute, staticmethod(shim) if static else shim)
        replaced.append((holder, attribute, original, vars(holder)[attribute]))
    return replaced


def restore_activation_functions(replaced):
    """Puts back what `replace_activation_functions` replaced; a function
    someone else replaced since is left as they set it."""
    for holder, attribute, original, shim in replaced:
        if vars(holder).get(attribute) is shim:
            setattr(holder, attribute, original)
