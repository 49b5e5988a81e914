"""Whole-model conversion: `apply_psp`."""

import keras

from keras_psp import cloning
from keras_psp import keras_internals
from keras_psp import pre_activations
from keras_psp.conversion import selectors
from keras_psp.layers.inner_pre_activation_regularizer import (
    InnerPreActivationRegularizer,
)
from keras_psp.layers.pre_activation_regularizer import PreActivationRegularizer
from keras_psp.layers.psp_activation import PSPActivation
from keras_psp.models.psp_model import PSPModel
from keras_psp.models.psp_model import PSPSequential
from keras_psp.penalty import validate_reduction
from keras_psp.penalty import validate_strength


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
    original's. `keras_psp.find_pre_activations` says where z is; in the
    copy:

    - every layer of a class known to apply its `activation` to its affine
      output (Dense, Conv*, EinsumDense, ..., and classes declared with
      `keras_psp.register_pre_activation_layer`) whose activation is not
      linear is wrapped in `PreActivationRegularizer`, which regularizes
      that output;
    - every activation layer (`Activation`, `ReLU` including ReLU6 via
      `max_value`, `LeakyReLU`, `ELU`, `PReLU`, `Softmax`) becomes a
      `PSPActivation`, which regularizes its input (after batch norm and
      residual adds, as in `keras.applications` models);
    - a layer of another class that applies activations in its own code (a
      transformer block such as keras_hub's `TransformerEncoder`, whose
      feed-forward `Dense` has `gelu`; the gated MLP of a Llama, Gemma,
      Mistral or Qwen decoder block, `silu(gate(x)) * up(x)`; a block
      calling `keras.ops.relu` or holding activation layers or Sequential
      sub-blocks, at any depth) is never wrapped whole: it is wrapped in
      `InnerPreActivationRegularizer`, which regularizes the input of each
      activation it applies, one term per call, and leaves its output as it
      is. The softmax of attention (and any non-linearity an attention
      layer applies to its scores) is not a neuron's activation and is
      left out;
    - the output layer's logits are regularized too (`regularize_logits=True`,
      the default, as in the authors' code, which collects z at the last
      layer: the logits are a neuron's potential like any other, and
      penalizing them keeps the softmax from saturating). A linear output
      layer is then wrapped as well, also inside a nested output model.

    An activation applied with a `keras.ops` or `keras.activations` call in
    the graph (`keras.ops.relu(h)`, `keras.activations.gelu(h)`) has its
    input as z, as an activation layer does: it becomes a `PSPActivation`
    holding it (of the call's name), unless its input is itself an
    activation's output (the second call of a hand-written composite
    activation such as `h * tanh(softplus(h))`).

    Padded positions of sequences (a Keras mask, or keras_hub's
    `padding_mask`) add nothing to the penalty.

    Layers that are already PSP layers are kept as they are. `keras.ops`
    calls between layers, shared layers, nested Sequential and functional
    models, and several inputs and outputs (lists, dicts, nesting) are kept.
    Plain Python functions the layers hold (a custom activation, a lambda,
    a `Lambda` layer's function) are kept as the same objects, so they need
    no registration to be converted (saving the copy needs them registered,
    as for any Keras model).
    Every layer's state is copied the way `.keras` saving copies it
    (variables through `save_own_variables`/`load_own_variables`, assets),
    so adapted preprocessing layers (`Normalization`, `StringLookup`, ...)
    predict the same. A layer that cannot be rebuilt from its config (or
    whose copy cannot be called or take its state) is not copied: the
    converted model uses that very layer object (wrapped if it has a
    pre-activation; wrappers never change it) and so shares its weights
    with `model`; a `UserWarning` names each such layer and the reason.
    Non-linearities that cannot be regularized (recurrent layers,
    `TimeDistributed`, activations inside `keras.ops` loops, a layer whose
    call cannot be run symbolically) are left as they are and reported in
    one `UserWarning`, with the reason. Subclassed models cannot be converted:
    their forward pass is code, not a graph. `keras_psp.strip_psp` is the
    inverse.

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
            public code, in which the paper's λ values were set. Each
            records L as its `strength_divisor`, so the model's λ (that
            `StrengthScheduler` schedules and logs) is still λ.
        regularize_logits: whether the layers producing the model's outputs
            are regularized (see above).
        include: a layer name, a layer class, or a list of them: if given,
            only the matching layers are regularized.
        exclude: same form: matching layers are not regularized.

    Raises:
        TypeError: for a model that is not a Sequential or functional model,
            or a malformed `include`/`exclude`.
        ValueError: for a bad `strength` or `reduction`, an unbuilt model,
            an `include`/`exclude` entry that matches no layer with a
            pre-activation (the message names the closest layer names), or
            a model in which nothing would be regularized.

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
    cloning.check_graph_model(model, "apply_psp")
    strength = validate_strength(strength)
    reduction = validate_reduction(reduction)
    found, skipped = selectors.select(
        model, "apply_psp", regularize_logits, include, exclude
    )
    plan = {id(entry.layer): entry.kind for entry in found}
    pre_activations.warn_skipped(skipped)
    # λ/L for each of L layers records L, so that the model's λ (as
    # `StrengthScheduler` sets it) stays the λ given here.
    divisor = len(plan) if divide_by_num_layers and plan else 1
    psp = {
        "strength": strength / divisor,
        "reduction": reduction,
        "strength_divisor": divisor,
    }

    converted, fallbacks = _convert(model, plan, psp)
    cloning.warn_shared(fallbacks, "apply_psp")
    return converted


def _wrap(layer, inner, kind, psp):
    """`inner` (the copy of `layer`, or `layer` itself) in the PSP layer
    for a pre-activation of `kind`, with the PSP settings `psp`."""
    if kind == pre_activations.AFFINE:
        return PreActivationRegularizer(inner, **psp, name=layer.name)
    if kind == pre_activations.ACTIVATION:
        if not isinstance(layer, keras.layers.Layer):
            # A `keras.ops` activation node becomes a layer that holds
            # it, of its name (Keras keeps a graph's names unique).
            inner = keras.layers.Activation(inner, name=layer.name)
        return PSPActivation(inner, **psp, name=layer.name)
    if kind == pre_activations.COMPOSITE:
        return InnerPreActivationRegularizer(inner, **psp, name=layer.name)
    return inner


def _operation_paths(graph, prefix=()):
    """`(path, operation)` for every operation of `graph` and of the graph
    models nested in it; a path is the operation's index at each level."""
    for index, operation in enumerate(keras_internals.operations(graph)):
        path = (*prefix, index)
        yield path, operation
        if keras_internals.is_graph_model(operation):
            yield from _operation_paths(operation, path)


def _saved_from_arguments(graph):
    """`graph` serialized, if it saves itself as its constructor's
    arguments (a keras_hub backbone), or None if it saves itself as its
    layers' configs (a plain functional model) or cannot be saved."""
    if keras_internals.saves_layer_configs(graph):
        return None
    try:
        original = keras.saving.serialize_keras_object(graph)
    except Exception:  # it cannot be saved either way: keep the graph
        return None
    config = original.get("config") or {}
    if all(key in config for key in ("layers", "input_layers")):
        return None
    return original


def _convert(model, plan, psp):
    """`model` converted by the `plan` ({id(operation): kind}), and the
    layers that could not be copied (see `cloning.convert_graph`).

    A functional model that saves itself from its constructor's arguments
    (keras_hub's backbones and the encoders nested in them) is converted
    into a `PSPModel` that also saves a recipe: the original's config and
    where `plan` put PSP, which loading can run again (`reconvert`); the
    weights then load as for any model, since the same recipe gives the
    same layers. Loading uses the recipe when the layers' configs do not
    rebuild them: when a layer of it could not be copied (its config does
    not rebuild it, or rebuilds it with other settings: the layers' configs
    are then not saved at all), or when rebuilding from them raises (BLIP2's
    Q-Former cannot be built from a saved shape). Else it loads from the
    layers' configs, as a copy of the plain model would (some keras_hub
    classes do not rebuild themselves from their own config).
    """

    def convert(layer):
        copy = cloning.copy_layer(layer)
        wrapped = _wrap(layer, copy, plan.get(id(layer)), psp)
        if not isinstance(layer, keras.layers.Layer):  # a `keras.ops` node
            return wrapped, lambda: None
        return wrapped, lambda: cloning.copy_state(layer, copy)

    def on_graph(graph, clone, fallbacks):
        original = _saved_from_arguments(graph)
        if original is None:
            return clone
        recipe = {
            "original": original,
            "regularized": [
                [list(path), plan[id(operation)]]
                for path, operation in _operation_paths(graph)
                if id(operation) in plan
            ],
            "psp": dict(psp),
        }
        converted = PSPModel(clone.input, clone.output, name=graph.name)
        converted.set_conversion_recipe(recipe, layer_configs=not fallbacks)
        return converted

    clone, fallbacks = cloning.convert_graph(
        model,
        convert,
        lambda layer: _wrap(layer, layer, plan.get(id(layer)), psp),
        on_graph,
    )
    converted = cloning.rebuild(model, clone, PSPSequential, PSPModel)
    if isinstance(clone, PSPModel) and clone.conversion_recipe:
        converted.set_conversion_recipe(
            clone.conversion_recipe, clone.saves_layer_configs
        )
    return converted, fallbacks


def reconvert(recipe):
    """The model `_convert` made, from the recipe its copy saved: the
    original model rebuilt from its config and converted again.

    Raises:
        ValueError: if the rebuilt original has no operation where the
            recipe puts PSP (a model class whose graph changed since the
            model was saved).
    """
    original = keras.saving.deserialize_keras_object(recipe["original"])
    kinds = {tuple(path): kind for path, kind in recipe["regularized"]}
    plan = {
        id(operation): kinds[path]
        for path, operation in _operation_paths(original)
        if path in kinds
    }
    if len(plan) != len(kinds):
        raise ValueError(
            f"Cannot rebuild the PSP model '{original.name}': its original "
            f"({type(original).__name__}), rebuilt from its config, lacks "
            f"{len(kinds) - len(plan)} of the {len(kinds)} layers the saved "
            "model regularized (was it saved with another version of the "
            "library that defines that class?)."
        )
    converted, _ = _convert(original, plan, recipe["psp"])
    return converted
