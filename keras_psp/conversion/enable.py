"""PSP switched on and off in place: `enable_psp`, `disable_psp`."""

import collections
import re
import types

import keras

from keras_psp import cloning
from keras_psp import keras_internals
from keras_psp import pre_activations
from keras_psp.conversion import loss_logging
from keras_psp.conversion import planning
from keras_psp.conversion import selectors
from keras_psp.conversion.psp_state import PSPState
from keras_psp.models.psp_model import psp_layers
from keras_psp.penalty import validate_reduction
from keras_psp.penalty import validate_strength

RECORD = "_psp_enabled"
SHARED = (
    "the copy shares this layer with the original model (it could not be "
    "copied), so a term attached to it would change the original too; "
    "`keras_psp.enable_psp` on the original model reaches it"
)
STATE = "_psp_state"


PSPTerm = collections.namedtuple("PSPTerm", ["layer", "route", "count"])
PSPTerm.__doc__ = """Where `enable_psp` attached PSP terms in a model.

Attributes:
    layer: the layer (or `keras.ops` node) that holds them.
    route: how the z's are reached: `"activation attribute"` (the
        activation function the layer holds and applies to z),
        `"layer input"` (an activation layer or op: z is its input) or
        `"code"` (activations the layer applies in its own code, seen at
        the places one symbolic run found).
    count: the number of z's, so of terms per call (1 but for `"code"`).
"""


def attachments(model):
    """Everything `enable_psp` attached to `model` (terms and mask scopes,
    see `keras_psp.conversion.terms`), or None when PSP is not enabled."""
    record = vars(model).get(RECORD)
    return None if record is None else list(record.terms)


def psp_terms(model):
    """Returns where `keras_psp.enable_psp` (or `apply_psp`) put PSP terms.

    Args:
        model: a model.

    Returns:
        A list of `PSPTerm(layer, route, count)` in the model's order, empty
        when PSP is not enabled in `model`.

    Example:

    >>> import keras
    >>> model = keras.Sequential([
    ...     keras.Input((4,)), keras.layers.Dense(3, activation="relu")])
    >>> [t.route for t in psp_terms(enable_psp(model))]
    ['activation attribute']
    """
    return [
        PSPTerm(term.holder, term.route, len(getattr(term, "places", (1,))))
        for term in attachments(model) or ()
        if term.route != "mask"
    ]


def enable_psp(
    model,
    strength=1e-3,
    reduction="sum",
    *,
    divide_by_num_layers=False,
    regularize_logits=True,
    include=None,
    exclude=None,
):
    """Switches PSP on in `model`, in place, on every pre-activation.

    The model keeps its class and all it offers (a keras_hub task's
    preprocessor, `generate` and presets; a subclass's own `train_step`),
    as `model.quantize` and keras_hub's `backbone.enable_lora` keep it.
    Nothing in the forward pass changes. Each z gets its term
    `psp_penalty(z, strength, reduction)` where the model's structure
    reaches it, attached once (`keras_psp.find_pre_activations` says where
    z is):

    - a layer that applies an activation function it holds (`Dense`,
      `Conv*`, `EinsumDense`, ... and classes declared with
      `keras_psp.register_pre_activation_layer`; an `Activation` layer; a
      block's `self.activation`, as in the gated MLP of Llama, Mistral
      and Qwen): that function is replaced by one that adds the term of
      its input, then applies it;
    - an activation layer that holds no function (`ReLU`, `LeakyReLU`,
      ...) or a `keras.ops` activation in a functional graph: its call, on
      that instance only, adds the term of its input first;
    - an activation a block applies in its own code
      (`keras.activations.gelu(x) * y` in Gemma's block): seen as it runs,
      at the places one symbolic run of the block found to apply a
      neuron's activation (`keras_psp.conversion.code_taps`).

    A layer whose own activation is softmax (Dense, Conv, EinsumDense, at
    any depth) is a layer of neurons and gets its term; the softmax a
    layer applies in code to attention scores does not, nor does any
    non-linearity inside an attention layer. An activation of another
    activation's output has no z of its own. Padded positions of sequences
    (a Keras mask, keras_hub's `padding_mask`) add nothing.

    The terms are added with `add_loss` by a `PSPState` layer the model
    tracks (its `strength` is a non-trainable variable), and `fit` and
    `evaluate` log their sum as `psp_loss`. Where the model has its own
    `train_step`, it runs as before; it must add `self.losses` to its loss
    (as Keras' `compute_loss` does) for PSP to act.

    PSP enabled in place is a training-time change, as LoRA is: saving
    (`.keras`, `save_weights`, keras_hub's `save_to_preset`) keeps the
    plain model, which loads without keras_psp; call `enable_psp` with the
    same arguments after loading to train on with the same terms.
    `disable_psp` undoes it.

    Args:
        model: a built Sequential or functional `keras.Model`, including
            subclasses of them (keras_hub backbones and tasks).
        strength: λ, a finite float >= 0.
        reduction: `"sum"` (paper eq. 7) or `"mean"` (the authors' code); see
            `keras_psp.psp_penalty`.
        divide_by_num_layers: if True, each of the L terms gets λ/L (the
            normalization of the authors' code with `reduction="mean"`);
            the model's λ (`StrengthScheduler`'s) is still λ.
        regularize_logits: whether the layers producing the model's outputs
            are regularized (their logits, as in the authors' code).
        include: a layer name, a layer class, or a list of them: if given,
            only the matching layers are regularized.
        exclude: same form: matching layers are not regularized.

    Returns:
        `model` itself.

    Raises:
        TypeError: for a model that is not a Sequential or functional model,
            or a malformed `include`/`exclude`.
        ValueError: for a bad `strength` or `reduction`, an unbuilt model, a
            model with PSP already enabled, an `include`/`exclude` entry
            that matches no layer with a pre-activation, or a model in which
            nothing would be regularized.

    Example:

    >>> import keras
    >>> model = keras.Sequential([
    ...     keras.Input((8,)),
    ...     keras.layers.Dense(16, activation="relu"),
    ...     keras.layers.Dense(3),
    ... ])
    >>> enable_psp(model, strength=1e-3) is model
    True
    >>> _ = model(keras.ops.ones((2, 8)))
    >>> len(model.losses)
    2
    >>> disable_psp(model) is model
    True
    """
    return attach_psp(
        model,
        strength,
        reduction,
        divide_by_num_layers=divide_by_num_layers,
        regularize_logits=regularize_logits,
        include=include,
        exclude=exclude,
    )


def attach_psp(
    model,
    strength,
    reduction,
    *,
    divide_by_num_layers,
    regularize_logits,
    include,
    exclude,
    function="enable_psp",
    shared=(),
):
    """`enable_psp`, called as `function`; the layers in `shared` (layers
    a copy shares with its original, see `apply_psp`) get no term: a term
    attached to one would change the original model too."""

    cloning.check_graph_model(model, function)
    strength = validate_strength(strength)
    reduction = validate_reduction(reduction)
    if RECORD in vars(model):
        raise ValueError(
            f"Argument `model` ('{model.name}') has PSP enabled already; call "
            "`keras_psp.disable_psp(model)` first to enable it again with "
            "other settings."
        )
    host = keras_internals.model_host(model)
    selected, skipped = selectors.select(
        model, function, regularize_logits, include, exclude
    )
    shared_ids = {id(layer) for layer in shared}
    skipped.extend(
        pre_activations.SkippedLayer(entry.layer, SHARED, entry.path)
        for entry in selected
        if id(entry.layer) in shared_ids
    )
    selected = [e for e in selected if id(e.layer) not in shared_ids]
    # A variable's path may not hold "." on PyTorch ("mobilenetv2_1.00").
    name = re.sub(r"[^A-Za-z0-9_]", "_", f"{model.name}_psp")
    state = PSPState(strength, reduction, name=name)
    found = []
    for entry in selected:
        if entry.kind == pre_activations.COMPOSITE:
            attached, left = planning.composite_terms(
                entry.layer, state.add_psp_loss, model
            )
        else:
            attached, left = planning.graph_terms(entry, state.add_psp_loss)
        found.extend(attached)
        skipped.extend(
            pre_activations.SkippedLayer(layer, reason, entry.path)
            for layer, reason in left
        )
    count = sum(term.route != "mask" for term in found)
    if count == 0 and not psp_layers(model):
        raise ValueError(
            f"`{function}` found no pre-activation it can reach in model "
            f"'{model.name}'."
            + pre_activations.describe_skipped(
                [(entry.layer, entry.reason) for entry in skipped]
            )
        )
    pre_activations.warn_skipped(skipped)
    # A model whose pre-activations are all PSP layers already needs no
    # state: only `psp_loss` in its logs.
    if not count:
        host = None
    divisor = count if divide_by_num_layers and count else 1
    state.strength.assign(strength / divisor)
    state.strength_divisor = divisor
    if host is not None:
        keras_internals.attach(host, STATE, state)
    installed = []
    try:
        for term in found:
            term.install()
            installed.append(term)
        loss_logging.install(model)
    except Exception:
        for term in reversed(installed):
            term.remove()
        if host is not None:
            keras_internals.detach(host, STATE)
        raise
    # Not tracked by Keras (a namespace): what `disable_psp` undoes.
    setattr(model, RECORD, types.SimpleNamespace(terms=installed, host=host))
    return model


def disable_psp(model):
    """Switches off the PSP `enable_psp` switched on in `model`, in place.

    Every attachment is undone: the model computes, trains and saves as
    before `enable_psp`, with the weights it has now.

    Args:
        model: a model with PSP enabled by `keras_psp.enable_psp`.

    Returns:
        `model` itself.

    Raises:
        ValueError: if PSP is not enabled in `model`.
    """
    record = vars(model).get(RECORD) if isinstance(model, keras.Model) else None
    if record is None:
        raise ValueError(
            f"Argument `model` ({model!r}) has no PSP enabled by "
            "`keras_psp.enable_psp`. (A model made by `apply_psp` holds PSP "
            "layers: `keras_psp.strip_psp` removes them.)"
        )
    loss_logging.remove(model)
    for term in reversed(record.terms):
        term.remove()
    if record.host is not None:
        keras_internals.detach(record.host, STATE)
    delattr(model, RECORD)
    return model
