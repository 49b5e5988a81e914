"""An independent count of the non-linearities a model applies, for the
keras_hub sweep (`applications.convert_keras_hub`): it watches the active
backend's activation functions run (`count_activations`), without asking
keras-psp, so that the PSP terms a conversion adds can be checked against
what the model really calls.
"""

import os
import sys

# The activation functions of a Keras backend, by name: those whose code is
# in keras/src/backend/<backend>/nn.py, and `tanh` of its numpy.py.
ACTIVATIONS = (
    "relu",
    "relu6",
    "sigmoid",
    "tanh",
    "silu",
    "gelu",
    "elu",
    "selu",
    "celu",
    "softplus",
    "softsign",
    "leaky_relu",
    "hard_sigmoid",
    "hard_silu",
    "hard_tanh",
    "log_sigmoid",
    "sparse_sigmoid",
    "sparse_plus",
    "squareplus",
    "soft_shrink",
    "hard_shrink",
    "tanh_shrink",
    "threshold",
)


def activation_functions(backend):
    """The code objects of `backend`'s activation functions, by code: each
    of `ACTIVATIONS` whose code is in keras/src/backend/<backend>/nn.py,
    `tanh` of keras/src/backend/<backend>/numpy.py, and the `static_call`
    of the classes of keras/src/activations/activations.py (ReLU with
    options, Mish) that `keras.activations` runs in Python."""
    import importlib
    import inspect

    from keras.src.activations import activations

    codes = {}
    for module_name, names in (
        (f"keras.src.backend.{backend}.nn", ACTIVATIONS),
        (f"keras.src.backend.{backend}.numpy", ("tanh",)),
    ):
        module = importlib.import_module(module_name)
        for name in names:
            function = getattr(module, name, None)
            code = getattr(inspect.unwrap(function or len), "__code__", None)
            if code is not None and os.path.samefile(
                code.co_filename, module.__file__
            ):
                codes[code] = name
    for name, value in vars(activations).items():
        static_call = (
            vars(value).get("static_call") if isinstance(value, type) else None
        )
        if isinstance(static_call, staticmethod):
            codes[static_call.__func__.__code__] = f"{name}.static_call"
    return codes


def is_attention(layer):
    """Whether `layer` is an attention layer: its non-linearities (the
    softmax of the scores, a soft cap's tanh) are no neuron's activation."""
    import keras

    attention = (
        keras.layers.MultiHeadAttention,
        keras.layers.GroupQueryAttention,
        keras.layers.Attention,
        keras.layers.AdditiveAttention,
    )
    return isinstance(layer, attention) or type(layer).__name__.endswith(
        "Attention"
    )


def innermost_layer(frame):
    """The Keras layer whose code runs `frame`: the nearest frame, from
    `frame` outwards, whose `self` is a `keras.layers.Layer`; or None."""
    import keras

    while frame is not None:
        if "self" in frame.f_code.co_varnames:
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, keras.layers.Layer):
                return candidate
        frame = frame.f_back
    return None


def count_activations(call):
    """Runs `call()` once, eagerly, and counts the non-linearities it
    applies; returns `(count, call's result)`.

    Counted: each call of one of the active backend's activation functions
    (`activation_functions`: relu, gelu, silu, tanh, ..., whatever called
    it: a Dense's `activation`, an activation layer, `keras.ops.silu` in a
    gated MLP, a `keras.ops` node of a functional model), except:

    - a call made while another counted function runs (only the outermost
      call counts: `keras.activations.mish` runs softplus and tanh inside
      `Mish.static_call`, one non-linearity);
    - a call whose innermost enclosing Keras layer (`innermost_layer`) is
      an attention layer (`is_attention`: the softmax of the scores, a
      soft cap's tanh);
    - a call whose input (its first argument) is the very object (`is`)
      that an earlier call of one of these functions returned, counted or
      not: an activation of an activation's output (`tanh(softplus(x))`
      written out) has no potential of its own;
    - a call whose input is a variable (`softplus(self.scale)`): a
      reparametrized weight, no neuron's potential.

    Softmax, log_softmax and sparsemax are not activation functions here.
    `call` must really run (an eager call, not a symbolic one: under
    PyTorch a symbolic call runs no backend function); the count uses
    `sys.setprofile`, so it counts this thread's calls only.
    """
    import keras

    codes = activation_functions(keras.backend.backend())
    returned = {}  # id -> object each call returned (kept alive: ids stay)
    depth = 0  # how many counted functions are running
    count = 0

    def profile(frame, event, result):
        nonlocal depth, count
        if frame.f_code not in codes or event not in ("call", "return"):
            return
        if event == "return":
            depth -= 1
            if result is not None:
                returned[id(result)] = result
            return
        if depth == 0:
            code = frame.f_code
            x = (
                frame.f_locals.get(code.co_varnames[0])
                if code.co_argcount
                else None
            )
            again = x is not None and returned.get(id(x)) is x
            weight = isinstance(x, keras.Variable) or _is_backend_variable(x)
            attention = is_attention(innermost_layer(frame.f_back))
            if not (again or weight or attention):
                count += 1
        depth += 1

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        result = call()
    finally:
        sys.setprofile(previous)
    return count, result


def _is_backend_variable(x):
    """Whether `x` is a TensorFlow variable or a `torch.nn.Parameter` (the
    value a Keras variable holds)."""
    return type(x).__name__ in ("ResourceVariable", "Variable", "Parameter")
