"""The non-linearities a layer applies in its own code, seen as they run.

A composite layer (a transformer block, a gated MLP, a residual block)
applies its activations in its `call`: `keras.activations.silu(gate(x)) *
up(x)`, `keras.ops.gelu(h)`, an `Activation` layer or a `Dense(...,
activation="relu")` it holds, a Sequential sub-block. Each of these ends in
a call of one of the backend's activation functions
(`keras_internals.activation_functions`), on every backend. While a
`watch(root, take)` block is active in a thread, each such call made
inside a call of `root` hands its input z to `take(z)`, then returns the
activation's output, unchanged.

Which calls count (one rule, also written in `find_pre_activations`):

- an activation whose input is the output of another activation (the
  second call of `tanh(softplus(x))`, `relu(relu(x))`) has no z of its own;
- a call made inside another (`hard_silu` calling `hard_sigmoid`, the
  clipping of `relu(x, max_value=...)`) is part of it;
- softmax, log-softmax and sparsemax are not a neuron's activation (they
  normalize over an axis), nor is an activation of a weight (keras_hub's
  `softplus(per_dim_scale)`), nor any non-linearity that an
  attention layer (`MultiHeadAttention` and its subclasses, and any layer
  class whose name ends in `Attention`) applies in its own `call` (the
  scores' softmax, soft-capping `tanh`): these are left out;
- a call inside a PSP layer is regularized by that layer already;
- a call inside a recurrent layer, `TimeDistributed`, or a `keras.ops`
  loop, map or branch (`scan`, `map`, `cond`, ...) cannot be regularized
  (a tensor made there cannot leave it through `add_loss`): it is
  recorded in `skipped`, with the layer and the reason, and not taken.
"""

import contextlib
import sys
import threading

import keras

from keras_psp import keras_internals
from keras_psp.layers.psp_layer import PSPLayerMixin

NORMALIZING = frozenset(("softmax", "log_softmax", "sparsemax"))
RECURRENT = (
    "recurrent layer: it applies its activations inside the recurrence, "
    "out of reach of `add_loss`, so it has no single pre-activation"
)
MAPPED = "it calls its inner layer inside a map, out of reach of `add_loss`"

_ATTENTION_LAYERS = (
    keras.layers.MultiHeadAttention,
    keras.layers.GroupQueryAttention,
    keras.layers.Attention,
    keras.layers.AdditiveAttention,
)

_local = threading.local()
_lock = threading.Lock()
_installed = {"count": 0, "originals": []}


def is_attention(layer):
    """Whether `layer` is an attention layer (see the module docstring)."""
    return isinstance(layer, _ATTENTION_LAYERS) or type(
        layer
    ).__name__.endswith("Attention")


def is_recurrent(layer):
    return isinstance(layer, keras.layers.RNN) or hasattr(
        layer, "recurrent_activation"
    )


class Watch:
    """What one `watch` block saw: `count` (the z's taken) and `skipped`,
    `(layer, reason)` for the activations that could not be regularized,
    one entry per layer."""

    def __init__(self, root, take):
        self.root = root
        self.take = take
        self.count = 0
        self.skipped = []
        # For a model: `id(layer) -> (count, skipped)` of each layer of its
        # graph (nested Sequential and functional models entered).
        self.by_layer = {}
        self._outputs = []
        self._depth = 0

    def _skip(self, top, layer, reason):
        for skipped in (self.skipped, self.by_layer[id(top)][1]):
            if all(layer is not other for other, _ in skipped):
                skipped.append((layer, reason))

    def _seen(self, name, frame, z, output):
        layers, loop = callers(frame, self.root)
        if not layers or layers[-1] is not self.root:
            return  # not applied inside a call of `root`
        graph_layers = [
            layer
            for layer in layers[:-1]
            if not keras_internals.is_graph_model(layer)
        ]
        top = graph_layers[-1] if graph_layers else self.root
        tally = self.by_layer.setdefault(id(top), [0, []])
        if any(isinstance(layer, PSPLayerMixin) for layer in layers):
            return
        for layer in layers:
            if is_recurrent(layer):
                self._skip(top, layer, RECURRENT)
                return
            if isinstance(layer, keras.layers.TimeDistributed):
                self._skip(top, layer, MAPPED)
                return
        if loop is not None:
            self._skip(
                top,
                layers[0],
                f"it applies an activation inside `keras.ops.{loop}`, out "
                "of reach of `add_loss`",
            )
            return
        if name in NORMALIZING or (layers and is_attention(layers[0])):
            return
        if isinstance(z, keras.Variable) or len(getattr(z, "shape", ())) < 1:
            return  # of a weight (a learned scale), not of a neuron
        chained = any(z is earlier for earlier in self._outputs)
        self._outputs.append(output)
        if not chained:
            self.count += 1
            tally[0] += 1
            self.take(z)


def callers(frame, root):
    """The layers whose calls are running at `frame`, innermost first, up
    to `root`, and the first Keras control flow op found on the way."""
    layers, loop = [], None
    while frame is not None:
        if loop is None and keras_internals.in_keras_control_flow(frame.f_code):
            loop = frame.f_code.co_name
        owner = frame.f_locals.get("self")
        if isinstance(owner, keras.layers.Layer):
            if not layers or layers[-1] is not owner:
                layers.append(owner)
            if owner is root:
                break
        frame = frame.f_back
    return layers, loop


def _active():
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else None


def _shim(name, original):
    def shim(*args, **kwargs):
        watch = _active()
        if watch is None or watch._depth:
            return original(*args, **kwargs)
        watch._depth += 1
        try:
            output = original(*args, **kwargs)
        finally:
            watch._depth -= 1
        z = args[0] if args else next(iter(kwargs.values()))
        watch._seen(name, sys._getframe(1), z, output)
        return output

    shim.__wrapped__ = original
    return shim


def _install():
    with _lock:
        if _installed["count"] == 0:
            _installed["originals"] = (
                keras_internals.replace_activation_functions(_shim)
            )
        _installed["count"] += 1


def _uninstall():
    with _lock:
        _installed["count"] -= 1
        if _installed["count"] == 0:
            keras_internals.restore_activation_functions(
                _installed["originals"]
            )
            _installed["originals"] = []


@contextlib.contextmanager
def watch(root, take):
    """While active in this thread, the activations applied inside calls of
    `root` hand their z to `take` (see the module docstring). Yields the
    `Watch` that records them."""
    watched = Watch(root, take)
    _install()
    if not hasattr(_local, "stack"):
        _local.stack = []
    _local.stack.append(watched)
    try:
        yield watched
    finally:
        _local.stack.pop()
        watched._outputs.clear()
        _uninstall()
