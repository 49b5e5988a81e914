"""The activations a block applies in its own code, where no structure
reaches their z (`keras.activations.gelu(x) * y` in Gemma's block).

Each element-wise activation Keras applies ends in a call of one of the
backend's activation functions (`keras_internals.activation_functions`).
Those functions are replaced once, while any block needs it, by shims
that do nothing but call the original unless a block with taps is running
in this thread. Inside such a block, a call is recognized by where it is
made (the code object and line of the first frame outside Keras' ops,
activations and backend): `analyse` decided, once, in a symbolic run of
the block, which of those places apply an activation to a neuron's z
(not the softmax of attention scores, not an activation of another
activation's output, ...). At run time a call costs a dict lookup.
"""

import contextlib
import os
import sys
import threading
import weakref

import keras

from keras_psp import keras_internals
from keras_psp.activation_taps import MAPPED
from keras_psp.activation_taps import NORMALIZING
from keras_psp.activation_taps import RECURRENT
from keras_psp.activation_taps import callers
from keras_psp.activation_taps import is_attention
from keras_psp.activation_taps import is_recurrent
from keras_psp.conversion import terms
from keras_psp.layers.psp_layer import PSPLayerMixin

_KERAS_PLUMBING = tuple(
    f"{os.sep}keras{os.sep}src{os.sep}{folder}{os.sep}"
    for folder in ("ops", "activations", "backend")
)

_local = threading.local()
_lock = threading.Lock()
_installed = {"users": 0, "shims": []}


def location(frame):
    """Where a backend activation call was made: `(code, line)` of the
    first frame outside Keras' ops, activations and backend."""
    while frame is not None:
        filename = frame.f_code.co_filename
        if not any(part in filename for part in _KERAS_PLUMBING):
            break
        frame = frame.f_back
    if frame is None:
        return None
    return frame.f_code, frame.f_lineno


def _stack():
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


def _shim(name, original):
    def shim(*args, **kwargs):
        stack = _stack()
        if not stack or terms.in_term() or getattr(_local, "depth", 0):
            return original(*args, **kwargs)
        _local.depth = 1
        try:
            output = original(*args, **kwargs)
        finally:
            _local.depth = 0
        z = args[0] if args else next(iter(kwargs.values()))
        stack[-1].seen(name, sys._getframe(1), z, output)
        return output

    shim.__wrapped__ = original
    return shim


def acquire():
    """Installs the shims, if no block had them installed."""
    with _lock:
        if _installed["users"] == 0:
            _installed["shims"] = keras_internals.replace_activation_functions(
                _shim
            )
        _installed["users"] += 1


def release():
    """Removes the shims once no block needs them; a function someone else
    replaced since is left as they set it."""
    with _lock:
        if _installed["users"] == 0:
            return
        _installed["users"] -= 1
        if _installed["users"] == 0:
            keras_internals.restore_activation_functions(_installed["shims"])
            _installed["shims"] = []


@contextlib.contextmanager
def active(watcher):
    """Makes `watcher.seen` receive the activations applied in this thread
    (the innermost active watcher gets them)."""
    stack = _stack()
    stack.append(watcher)
    try:
        yield
    finally:
        stack.pop()


class Analysis:
    """Watches one symbolic run of `root`: decides, for each place that
    applies an activation in its code, whether it is a neuron's z
    (`decisions`), and why those PSP cannot reach are left (`skipped`).
    `outputs` holds every activation's output seen, terms' included, for
    the rule that an activation of another's output has no z of its own.
    """

    def __init__(self, root):
        self.root = root
        self.decisions = {}
        self.skipped = []
        self.outputs = []
        self.chained = set()

    def _skip(self, layer, reason):
        if all(layer is not other for other, _ in self.skipped):
            self.skipped.append((layer, reason))

    def seen(self, name, frame, z, output):
        where = location(frame)
        take = self._decide(name, frame, z)
        chained = any(z is earlier for earlier in self.outputs)
        self.outputs.append(output)
        if where is None:
            return
        if chained or not take:
            self.decisions[where] = False
        else:
            self.decisions.setdefault(where, True)

    def _decide(self, name, frame, z):
        layers, loop = callers(frame, self.root)
        if not layers or layers[-1] is not self.root:
            return False
        if any(isinstance(layer, PSPLayerMixin) for layer in layers):
            return False
        for layer in layers:
            if is_recurrent(layer):
                self._skip(layer, RECURRENT)
                return False
            if isinstance(layer, keras.layers.TimeDistributed):
                self._skip(layer, MAPPED)
                return False
        if loop is not None:
            self._skip(
                layers[0],
                f"it applies an activation inside `keras.ops.{loop}`, out "
                "of reach of `add_loss`",
            )
            return False
        if name in NORMALIZING or is_attention(layers[0]):
            return False
        # Of a weight (a learned scale), not of a neuron.
        return not (
            isinstance(z, keras.Variable) or len(getattr(z, "shape", ())) < 1
        )


class CodeTaps(terms.Term):
    """The activations `holder` applies in its own code, at the places
    `analyse` decided are neurons' z's."""

    route = "code"

    def __init__(self, holder, places, take):
        super().__init__(holder, take)
        self.places = frozenset(places)

    def seen(self, name, frame, z, output):
        if location(frame) in self.places:
            self.take(z, terms.current_mask())

    def install(self):
        acquire()
        # Released with `remove`, or when the block is garbage collected
        # (a model with PSP enabled, thrown away without `disable_psp`).
        self._release = weakref.finalize(self.holder, release)

        def make(original):
            def call(*args, **kwargs):
                with active(self):
                    return original(*args, **kwargs)

            return call

        self._restore = terms._wrap_call(self.holder, make)

    def remove(self):
        self._restore()
        self._release()
