"""PSP in a copy of a model: `apply_psp`."""

from keras_psp import cloning
from keras_psp.conversion.enable import attach_psp
from keras_psp.conversion.psp_state import PSPState


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

    The copy is of the model's class, with everything the class offers (a
    keras_hub task's preprocessor and `generate`, a subclass's own
    `train_step`), the same weights and the same predictions; the original
    is left unchanged. PSP is then switched on in the copy exactly as
    `keras_psp.enable_psp` switches it on in place: see there for where
    each z gets its term, the arguments, `psp_loss` in the logs, and
    saving (a saved copy holds the plain model). `keras_psp.strip_psp`
    gives back a plain copy.

    A Sequential or functional model of Keras' own class is copied layer
    by layer: every layer's state is copied the way `.keras` saving copies
    it (variables, and assets such as an adapted `StringLookup`'s
    vocabulary), plain Python functions the layers hold (a custom
    activation, a lambda) are kept as the same objects, and a layer that
    cannot be rebuilt from its config is not copied: the copy uses that
    very layer object, and a `UserWarning` names it (the two models then
    share its weights); no term is attached to it, since that would change
    the original model too (the warning of what PSP leaves names it). A
    model of another class (a functional subclass, a keras_hub backbone or
    task) is rebuilt from its config, as `.keras`
    loading rebuilds it; where that fails, the error says so, and
    `enable_psp` changes the model in place instead.

    Args:
        model: a built Sequential or functional `keras.Model`, including
            subclasses of them (keras_hub backbones and tasks).
        strength: λ, a finite float >= 0.
        reduction: `"sum"` (paper eq. 7) or `"mean"` (the authors' code); see
            `keras_psp.psp_penalty`.
        divide_by_num_layers: if True, each of the L terms gets λ/L (the
            normalization of the authors' code with `reduction="mean"`).
        regularize_logits: whether the layers producing the model's outputs
            are regularized.
        include: a layer name, a layer class, or a list of them: if given,
            only the matching layers are regularized.
        exclude: same form: matching layers are not regularized.

    Returns:
        A copy of `model`, of its class, with PSP enabled.

    Raises:
        TypeError: for a model that is not a Sequential or functional model
            (or that cannot be copied), or a malformed `include`/`exclude`.
        ValueError: as `enable_psp`.

    Example:

    >>> import keras
    >>> base = keras.Sequential([
    ...     keras.Input((8,)),
    ...     keras.layers.Dense(16, activation="relu"),
    ...     keras.layers.Dense(3, activation="softmax"),
    ... ])
    >>> model = apply_psp(base, strength=1e-3)
    >>> type(model).__name__, model is base
    ('Sequential', False)
    >>> _ = model(keras.ops.ones((2, 8)))
    >>> len(model.losses)
    2
    """
    cloning.check_graph_model(model, "apply_psp")
    copy, fallbacks = cloning.copy_model(model, "apply_psp", skip=(PSPState,))
    cloning.warn_shared(fallbacks, "apply_psp")
    attach_psp(
        copy,
        strength,
        reduction,
        divide_by_num_layers=divide_by_num_layers,
        regularize_logits=regularize_logits,
        include=include,
        exclude=exclude,
        function="apply_psp",
        shared=[layer for layer, _ in fallbacks],
    )
    return copy
