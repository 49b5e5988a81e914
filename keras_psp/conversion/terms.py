"""The places where `enable_psp` attaches a PSP term to a model in place.

A term is attached once, where the model's structure reaches its z:

- `AttributeTerm`: an attribute holding the activation function that a
  layer applies to z (`Dense.activation`, `Activation.activation`, a
  block's `self.activation` in a gated MLP). The function is replaced by
  one that hands z to the term, then returns the same activation. It
  saves as the function it replaces, so saving keeps the plain model.
- `InputTerm`: a layer or `keras.ops` node whose whole job is an
  activation (`ReLU`, `keras.ops.relu(h)` in a graph) and holds no
  activation function: its `call`, on that instance only, hands its input
  to the term first.
- `MaskScope`: no term of its own; a layer that receives a padding mask
  (a Keras mask on its input, or a `padding_mask` argument) makes it the
  mask of the terms applied inside its call, so padded positions add
  nothing.

Where no structure reaches a z (an activation a block calls in its own
code), `code_taps` attaches it. Every attachment is undone by `remove`,
in the reverse order of `install`.
"""

import contextlib
import functools
import threading

from keras_psp import keras_internals
from keras_psp import pre_activations

_local = threading.local()


def _masks():
    if not hasattr(_local, "masks"):
        _local.masks = []
    return _local.masks


@contextlib.contextmanager
def mask_scope(mask):
    """Makes `mask` the padding mask of the terms applied in the block."""
    masks = _masks()
    masks.append(mask)
    try:
        yield
    finally:
        masks.pop()


def current_mask():
    """The padding mask of the innermost `mask_scope`, or None."""
    masks = _masks()
    return masks[-1] if masks else None


@contextlib.contextmanager
def inside_term():
    """Marks the activation of a term running: the backend calls it makes
    are that term's, not activations of their own (see `code_taps`)."""
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1


def in_term():
    """Whether a term's activation is running in this thread."""
    return getattr(_local, "depth", 0) > 0


class Term:
    """One attachment to a model; `take(z, mask)` is what it does with a z
    (add its PSP term, or record it while the model is analysed)."""

    route = None

    def __init__(self, holder, take):
        self.holder = holder
        self.take = take
        # While the model is analysed, a list receiving the activation's
        # outputs (an activation of one of them has no z of its own).
        self.outputs = None

    @property
    def name(self):
        return getattr(self.holder, "name", type(self.holder).__name__)

    def install(self):
        raise NotImplementedError

    def remove(self):
        raise NotImplementedError


class AttributeTerm(Term):
    """z is the input of the activation function in `holder.<attribute>`."""

    route = "activation attribute"

    def __init__(self, holder, attribute, take):
        super().__init__(holder, take)
        self.attribute = attribute
        self.original = getattr(holder, attribute)

    def install(self):
        original = self.original

        @functools.wraps(original)
        def activation(x, *args, **kwargs):
            self.take(x, current_mask())
            _local.depth = getattr(_local, "depth", 0) + 1
            try:
                output = original(x, *args, **kwargs)
            finally:
                _local.depth -= 1
            if self.outputs is not None:
                self.outputs.append(output)
            return output

        # Saved as the function it replaces (`functools.wraps` copies its
        # module and name): the file holds the plain model.
        activation.psp_term = self
        keras_internals.set_function_attribute(
            self.holder, self.attribute, activation
        )

    def remove(self):
        keras_internals.set_function_attribute(
            self.holder, self.attribute, self.original
        )


def _wrap_call(holder, make):
    """Replaces `holder.call`, on this instance only, by `make(original)`;
    returns the function that puts the original back."""
    own = vars(holder).get("call")
    original = holder.call
    call = functools.wraps(original)(make(original))
    keras_internals.set_function_attribute(holder, "call", call)

    def restore():
        if own is None:
            delattr(holder, "call")
        else:
            keras_internals.set_function_attribute(holder, "call", own)

    return restore


class InputTerm(Term):
    """z is the input of a layer (or `keras.ops` node) that applies an
    activation and holds no activation function."""

    route = "layer input"

    def install(self):
        def make(original):
            def call(*args, **kwargs):
                z = args[0] if args else next(iter(kwargs.values()))
                mask = keras_internals.keras_mask(z)
                self.take(z, current_mask() if mask is None else mask)
                with inside_term():
                    output = original(*args, **kwargs)
                if self.outputs is not None:
                    self.outputs.append(output)
                return output

            return call

        self._restore = _wrap_call(self.holder, make)

    def remove(self):
        self._restore()


class MaskScope(Term):
    """The padding mask `holder`'s calls receive applies to the terms
    inside them."""

    route = "mask"

    def install(self):
        def make(original):
            def call(*args, **kwargs):
                mask = pre_activations.call_mask(args, kwargs)
                if mask is None:
                    return original(*args, **kwargs)
                with mask_scope(mask):
                    return original(*args, **kwargs)

            return call

        self._restore = _wrap_call(self.holder, make)

    def remove(self):
        self._restore()
