"""Whole-model conversion: `apply_psp`."""

import keras
from keras.src.models.functional import Functional

from keras_psp.layers.pre_activation_regularizer import PreActivationRegularizer
from keras_psp.layers.psp_activation import PSPActivation
from keras_psp.layers.psp_layer import PSPLayerMixin
from keras_psp.models.psp_model import PSPModel
from keras_psp.models.psp_model import PSPSequential
from keras_psp.penalty import validate_reduction
from keras_psp.penalty import validate_strength

# Layers whose whole job is an activation: their input is the pre-activation.
ACTIVATION_LAYERS = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.PReLU,
    keras.layers.Softmax,
)


def _check_selector(selector, argument):
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


def _matches(layer, selector):
    return any(
        layer.name == item if isinstance(item, str) else isinstance(layer, item)
        for item in selector
    )


def _is_linear(activation):
    return activation is None or activation is keras.activations.linear


def _kind(layer, is_output, regularize_logits):
    """How to regularize `layer`: "activation", "wrap" or None."""
    if isinstance(layer, (PSPLayerMixin, keras.layers.InputLayer, keras.Model)):
        return None
    if is_output and not regularize_logits:
        return None
    if isinstance(layer, ACTIVATION_LAYERS):
        if isinstance(layer, keras.layers.Activation) and _is_linear(
            layer.activation
        ):
            return None
        return "activation"
    if not hasattr(layer, "activation") or hasattr(
        layer, "recurrent_activation"
    ):
        return None
    if isinstance(layer, keras.layers.RNN):
        return None
    # A linear output layer produces the logits: the authors regularize them.
    if _is_linear(layer.activation) and not is_output:
        return None
    return "wrap"


def _output_layers(model):
    return {id(tensor._keras_history[0]) for tensor in model.outputs}


def pre_activation_layers(model, regularize_logits=True):
    """Returns the layers of `model` that have a pre-activation z.

    These are the layers `apply_psp` regularizes (before `include` and
    `exclude`) and the PSP layers already there, as `(layer, kind)` pairs
    in graph order; `kind` is `"psp"` for a PSP layer, `"activation"` for an
    activation layer (z is its input) and `"wrap"` for a layer with its own
    activation (z is its affine part's output).
    """
    outputs = _output_layers(model)
    found = []
    for layer in _all_layers(model):
        if isinstance(layer, PSPLayerMixin):
            found.append((layer, "psp"))
            continue
        kind = _kind(layer, id(layer) in outputs, regularize_logits)
        if kind == "activation" and _fed_by_linear_psp_layer(layer):
            continue  # its z, the PSP layer's output, is regularized already
        if kind is not None:
            found.append((layer, kind))
    return found


def _fed_by_linear_psp_layer(layer):
    try:
        source = layer.input._keras_history[0]
    except (AttributeError, ValueError):
        return False
    activation = getattr(
        source, "psp_activation", getattr(source, "activation", None)
    )
    return isinstance(source, PSPLayerMixin) and _is_linear(activation)


def _all_layers(model):
    """The layers of the model's graph, nested models' included (but not
    the sublayers inside a layer, e.g. the layer a wrapper wraps)."""
    layers = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            layers.extend(_all_layers(layer))
        else:
            layers.append(layer)
    return layers


def apply_psp(
    model,
    strength=1e-3,
    reduction="sum",
    *,
    divide_by_num_layers=False,
    regularize_logits=True,
    include=None,
    exclude=None,
):
    """Returns a copy of `model` with PSP on every pre-activation.

    The model is cloned layer by layer (the original is left unchanged) and
    its weights are copied, so the converted model's predictions equal the
    original's. In the copy:

    - every layer with a non-linear `activation` (Dense, Conv*, EinsumDense,
      ...) is wrapped in `PreActivationRegularizer`, which regularizes the
      output of its affine part;
    - every activation layer (`Activation`, `ReLU` including ReLU6 via
      `max_value`, `LeakyReLU`, `ELU`, `PReLU`, `Softmax`) becomes a
      `PSPActivation`, which regularizes its input (after batch norm and
      residual adds, as in `keras.applications` models);
    - the output layer's logits are regularized too (`regularize_logits=True`,
      the default, as in the authors' code, which collects z at the last
      layer: the logits are a neuron's potential like any other, and
      penalizing them keeps the softmax from saturating). A linear output
      layer is then wrapped as well.

    Layers that are already PSP layers are kept as they are. Nested
    Sequential and functional models are converted recursively. Subclassed
    models cannot be converted: their forward pass is code, not a graph.

    Args:
        model: a built `keras.Sequential` or functional `keras.Model`
            (including `keras.applications` models, e.g.
            `keras.applications.MobileNetV2(weights=None)`).
        strength: λ, a finite float >= 0.
        reduction: `"sum"` (paper eq. 7) or `"mean"` (the authors' code); see
            `keras_psp.psp_penalty`.
        divide_by_num_layers: if True, each regularized layer gets λ/L, with
            L the number of layers this call regularizes: with
            `reduction="mean"` this is the normalization of the authors'
            public code, in which the paper's λ values were set.
        regularize_logits: whether the layers producing the model's outputs
            are regularized (see above).
        include: a layer name, a layer class, or a list of them: if given,
            only the matching layers are regularized.
        exclude: same form: matching layers are not regularized.

    Returns:
        A `keras_psp.PSPModel` (for a functional model) or
        `keras_psp.PSPSequential` (for a Sequential model), uncompiled, whose
        `fit` logs show the PSP term as `psp_loss`.

    Example:

    >>> import keras
    >>> base = keras.Sequential([
    ...     keras.Input((8,)),
    ...     keras.layers.Dense(16, activation="relu"),
    ...     keras.layers.Dense(3, activation="softmax"),
    ... ])
    >>> model = apply_psp(base, strength=1e-3)
    >>> [type(layer).__name__ for layer in model.layers]
    ['PreActivationRegularizer', 'PreActivationRegularizer']
    """
    is_sequential = isinstance(model, keras.Sequential)
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Argument `model` must be a `keras.Sequential` or functional "
            f"`keras.Model`. Received: model={model!r}."
        )
    if not (is_sequential or isinstance(model, Functional)):
        raise TypeError(
            "Argument `model` is a subclassed model "
            f"({type(model).__name__}); `apply_psp` needs a Sequential or "
            "functional model, whose layer graph it can rebuild. In a "
            "subclassed model, use `keras_psp.PSPDense`/`PSPConv2D` in place "
            "of Dense/Conv2D, wrap other layers with "
            "`keras_psp.PreActivationRegularizer`, and replace activations "
            "after batch norm with `keras_psp.PSPActivation`."
        )
    if not model.built or not model.inputs:
        raise ValueError(
            "Argument `model` must be built with a known input shape: start "
            "the Sequential model with `keras.Input(shape)` or call "
            "`model.build(input_shape)` first."
        )
    strength = validate_strength(strength)
    reduction = validate_reduction(reduction)
    include = _check_selector(include, "include")
    exclude = _check_selector(exclude, "exclude")

    plan = {}
    for layer, kind in pre_activation_layers(model, regularize_logits):
        if kind == "psp":
            continue
        if include and not _matches(layer, include):
            continue
        if exclude and _matches(layer, exclude):
            continue
        plan[id(layer)] = kind
    if divide_by_num_layers and plan:
        strength = strength / len(plan)

    copies = []

    def clone_layer(layer):
        copy = layer.__class__.from_config(layer.get_config())
        copies.append((layer, copy))
        kind = plan.get(id(layer))
        if kind == "wrap":
            return PreActivationRegularizer(
                copy, strength=strength, reduction=reduction, name=layer.name
            )
        if kind == "activation":
            return PSPActivation(
                copy, strength=strength, reduction=reduction, name=layer.name
            )
        return copy

    clone = keras.models.clone_model(
        model, clone_function=clone_layer, recursive=True
    )
    for layer, copy in copies:
        copy.set_weights(layer.get_weights())

    if is_sequential:
        (spec,) = model.inputs
        inputs = keras.Input(batch_shape=spec.shape, dtype=spec.dtype)
        return PSPSequential([inputs, *clone.layers], name=model.name)
    return PSPModel(clone.inputs, clone.outputs, name=model.name)
