"""`find_strength`: a PSP strength λ for a model and its data, from the
share of the data loss the PSP term takes at initialization."""

import math
import numbers

import keras
import numpy as np
from keras import ops

from keras_psp import validation
from keras_psp.conversion import disable_psp
from keras_psp.conversion import enable_psp
from keras_psp.models.psp_model import psp_layers
from keras_psp.models.psp_model import psp_losses
from keras_psp.penalty import validate_reduction


def find_strength(
    model,
    x,
    y=None,
    *,
    loss=None,
    share=1e-4,
    reduction=None,
    divide_by_num_layers=False,
    regularize_logits=True,
    include=None,
    exclude=None,
    batch_size=100,
    steps=1,
):
    """Returns the PSP strength λ at which the PSP term is `share` of the
    data loss, measured on a few batches at the model's current weights.

    The penalty is linear in λ: `psp_loss = λ · R`, with R the PSP term at
    λ = 1 in the normalization the model will be trained with (see
    `keras_psp.psp_penalty` for `reduction`). This function runs the model
    in training mode (as `fit` does) on the first `steps` batches, measures
    the data loss L and R, and returns `λ = share · L / R`. It is cheap (a
    forward pass per batch) and works on any model `apply_psp` converts or
    that already has PSP layers. The model's state (weights, batch-norm
    statistics, λ, random generators) is left as it was.

    What λ means depends on how it is used, so say it:

    - a model without PSP layers is converted as
      `apply_psp(model, λ, reduction, divide_by_num_layers=...,
      regularize_logits=..., include=..., exclude=...)` with these
      arguments (switched on in the model for the measure, and off
      again), and the λ returned is the one to pass there;
    - for a model with PSP layers (from `apply_psp`, a builder such as
      `keras_psp.models.LeNet5(psp_strength=...)`, or PSP layers), λ is the
      model's λ as its user writes it: each layer's `strength` times its
      `strength_divisor` (L where λ is divided among L layers), the value
      to give the builder, `apply_psp` or the layers again. Layers whose λ
      differ keep their ratios, λ being the largest one's. `reduction`,
      when given, must be the layers' own.

    The share at initialization is a scale, not the answer: ⟨z²⟩ changes
    by orders of magnitude during training (it grows without PSP and falls
    with it). Sweep a few λ around this one on a validation split carved
    from the training data (`python -m applications.find_strength` does
    this for the paper's models). On LeNet-5 in the authors'
    normalization the paper's λ = 1e-3 puts the PSP term at 4.6e-5
    (MNIST) and 1.2e-5 (Fashion-MNIST) of the data loss at
    initialization, and the default share suggests 2.2e-3 and 8.5e-3
    (RESULTS.md, "Choosing PSP's λ with the finder").

    Args:
        model: a built Keras model. Without PSP layers: a Sequential or
            functional model, as for `apply_psp`. With PSP layers (from
            `apply_psp`, the builders or PSP layers): any model.
        x: the inputs, as arrays (with `y`), or, with `y` None, an iterable
            of `(x, y)` or `(x, y, sample_weight)` batches (a
            `tf.data.Dataset`, a `keras.utils.PyDataset`, a list or
            generator). Use training data, never the test set.
        y: the targets for array inputs `x`; None when `x` gives batches.
        loss: the data loss: a Keras loss (name, `keras.losses.Loss` or
            function `loss(y_true, y_pred)`); default: the loss `model` was
            compiled with.
        share: the PSP term's share of the data loss, a finite number > 0.
        reduction: `"sum"` or `"mean"` (see `keras_psp.psp_penalty`);
            default: `"sum"` (as `apply_psp`) for a model without PSP
            layers, the layers' own for one with them.
        divide_by_num_layers: whether `apply_psp` splits λ among the L
            layers it regularizes (each gets λ/L), as above (a model
            without PSP layers only: PSP layers record it).
        regularize_logits: as for `apply_psp` (a model without PSP layers
            only).
        include: as for `apply_psp` (a model without PSP layers only).
        exclude: as for `apply_psp` (a model without PSP layers only).
        batch_size: examples per batch for array inputs.
        steps: how many batches to measure on (the ratio of the summed
            data loss to the summed R, weighted by batch size).

    Returns:
        λ, a Python float > 0.

    Raises:
        TypeError: for a `model` that is not a Keras model, `x` that is
            neither arrays nor batches, or a malformed argument.
        ValueError: for a bad `share`, `reduction`, `batch_size` or
            `steps`; an unbuilt model; no `loss` for an uncompiled model (or
            one compiled with several losses); `apply_psp`'s options given
            for a model that already has PSP layers; a `reduction` other
            than the PSP layers'; empty data; a data loss that is not a
            finite number > 0; or a PSP term of 0 at λ = 1 (nothing to
            scale).

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_psp
    >>> keras.utils.set_random_seed(0)
    >>> base = keras.Sequential([
    ...     keras.Input((8,)),
    ...     keras.layers.Dense(16, activation="relu"),
    ...     keras.layers.Dense(1),
    ... ])
    >>> x = np.random.normal(size=(64, 8))
    >>> y = np.random.normal(size=(64, 1))
    >>> strength = keras_psp.find_strength(
    ...     base, x, y, loss="mse", share=0.1, batch_size=64
    ... )
    >>> model = keras_psp.apply_psp(base, strength)
    >>> model.compile("sgd", "mse")
    >>> logs = model.evaluate(x, y, batch_size=64, return_dict=True, verbose=0)
    >>> round(logs["psp_loss"] / (logs["loss"] - logs["psp_loss"]), 4)
    0.1
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Argument `model` must be a Keras model. Received: "
            f"model={model!r} of type {type(model).__name__}."
        )
    if not model.built:
        raise ValueError(
            f"Argument `model` must be built (model '{model.name}' is not): "
            "build it with an `Input`, or call it on data first."
        )
    share = _validate_share(share)
    validation.validate_positive_int(batch_size, "batch_size")
    validation.validate_positive_int(steps, "steps")
    divide_by_num_layers = validation.validate_bool(
        divide_by_num_layers, "divide_by_num_layers"
    )
    if reduction is not None:
        validate_reduction(reduction)
    loss_fn = _data_loss(model, loss)
    batches = _batches(x, y, batch_size, steps)

    layers = psp_layers(model)
    if layers:
        options = {
            "divide_by_num_layers": (divide_by_num_layers, False),
            "regularize_logits": (regularize_logits, True),
            "include": (include, None),
            "exclude": (exclude, None),
        }
        for name, (value, default) in options.items():
            if value is not default and value != default:
                raise ValueError(
                    f"Argument `{name}` is for a model without PSP layers "
                    f"(it is passed to `apply_psp`); model '{model.name}' "
                    f"has {len(layers)} PSP layers. Received: "
                    f"{name}={value!r}."
                )
        if reduction is not None:
            other = sorted(
                {la.name for la in layers if la.reduction != reduction}
            )
            if other:
                raise ValueError(
                    f"Argument `reduction` must be the PSP layers' own for "
                    f"a model with PSP layers: {other[:5]} of model "
                    f"'{model.name}' use another. Received: "
                    f"reduction={reduction!r}; leave it None."
                )
        strengths = _unit_strengths(layers)
        data_loss, penalty = _measure(
            model, layers, strengths, loss_fn, batches
        )
    else:
        # Switched on in the model itself for the measure, then off: a
        # copy would cost a save and a load (and a keras_hub tokenizer's
        # TensorFlow resource may be freed with its copy).
        enable_psp(
            model,
            1.0,
            "sum" if reduction is None else reduction,
            divide_by_num_layers=divide_by_num_layers,
            regularize_logits=regularize_logits,
            include=include,
            exclude=exclude,
        )
        try:
            # λ = 1 as written: enable_psp has set it.
            data_loss, penalty = _measure(
                model, psp_layers(model), None, loss_fn, batches
            )
        finally:
            disable_psp(model)
    if not math.isfinite(data_loss) or data_loss <= 0:
        raise ValueError(
            f"The data loss of model '{model.name}' on the given batches is "
            f"{data_loss!r}: a share of it gives no λ (it must be a finite "
            "number > 0)."
        )
    if not math.isfinite(penalty) or penalty <= 0:
        raise ValueError(
            f"The PSP term of model '{model.name}' at λ = 1 on the given "
            f"batches is {penalty!r}: no λ gives it a share of the data "
            "loss (are the inputs all zero?)."
        )
    return share * data_loss / penalty


def _validate_share(share):
    if isinstance(share, (bool, np.bool_)) or not isinstance(
        share, numbers.Real
    ):
        raise TypeError(
            "Argument `share` must be a finite number > 0 (the PSP term's "
            f"share of the data loss). Received: share={share!r} of type "
            f"{type(share).__name__}."
        )
    share = float(share)
    if not math.isfinite(share) or share <= 0:
        raise ValueError(
            "Argument `share` must be a finite number > 0 (the PSP term's "
            f"share of the data loss, e.g. 1e-4). Received: share={share!r}."
        )
    return share


def _data_loss(model, loss):
    """The data loss as a function `(y, y_pred) -> scalar`."""
    if loss is None:
        loss = getattr(model, "loss", None)
        if loss is None:
            raise ValueError(
                f"Argument `loss` is needed: model '{model.name}' is not "
                "compiled with a loss. Pass the data loss, e.g. "
                'loss="sparse_categorical_crossentropy".'
            )
        if isinstance(loss, (list, tuple, dict)):
            raise ValueError(
                f"Argument `loss` is needed: model '{model.name}' is "
                f"compiled with several losses ({loss!r}). Pass one "
                "function `loss(y_true, y_pred)` giving the data loss."
            )
    try:
        function = keras.losses.get(loss)
    except (ValueError, TypeError) as error:
        raise ValueError(
            "Argument `loss` must be a Keras loss: a name, a "
            "`keras.losses.Loss` or a function `loss(y_true, y_pred)`. "
            f"Received: loss={loss!r} ({error})."
        ) from None
    if not callable(function):
        raise TypeError(
            f"Argument `loss` must be callable. Received: loss={loss!r}."
        )
    return function


def _batches(x, y, batch_size, steps):
    """The first `steps` batches `(x, y)` of the data, as numpy values."""
    if y is not None:
        if not _is_array_like(x):
            raise TypeError(
                "Argument `x` must be arrays when `y` is given (for batches "
                "of a dataset or generator, leave `y` None). Received: "
                f"x of type {type(x).__name__}."
            )
        sizes = {len(a) for a in keras.tree.flatten((x, y))}
        if len(sizes) != 1:
            raise ValueError(
                "Arguments `x` and `y` must hold the same number of "
                f"examples. Received sizes {sorted(sizes)}."
            )
        (size,) = sizes
        batches = [
            keras.tree.map_structure(_rows(start, start + batch_size), (x, y))
            for start in range(0, size, batch_size)[:steps]
        ]
    else:
        if hasattr(x, "shape") or isinstance(x, dict):
            raise TypeError(
                "Argument `y` is needed for array inputs `x` (or pass an "
                "iterable of `(x, y)` batches as `x`)."
            )
        if isinstance(x, keras.utils.PyDataset):
            batches = [x[i] for i in range(min(steps, len(x)))]
        else:
            try:
                iterator = iter(x)
            except TypeError:
                raise TypeError(
                    "Argument `x` must be arrays (with `y`) or an iterable "
                    "of `(x, y)` batches. Received: x of type "
                    f"{type(x).__name__}."
                ) from None
            batches = []
            for batch in iterator:
                batches.append(batch)
                if len(batches) == steps:
                    break
        for batch in batches:
            if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
                raise TypeError(
                    "Argument `x` must give `(x, y)` or `(x, y, sample_"
                    f"weight)` batches. Received a batch of type "
                    f"{type(batch).__name__}."
                )
        batches = [tuple(batch[:2]) for batch in batches]
    if not batches:
        raise ValueError("Argument `x` holds no data: no batch to measure on.")
    return [keras.tree.map_structure(np.asarray, batch) for batch in batches]


def _rows(start, stop):
    return lambda array: array[start:stop]


def _is_array_like(value):
    leaves = keras.tree.flatten(value)
    return bool(leaves) and all(
        hasattr(leaf, "shape") and hasattr(leaf, "__len__") for leaf in leaves
    )


def _unit_strengths(layers):
    """Each PSP layer's λ when the model's λ as written is 1: its λ as
    written (`strength * strength_divisor`) over the largest one (1 each
    when all are 0), divided by its `strength_divisor`."""
    divisors = [getattr(layer, "strength_divisor", 1) for layer in layers]
    written = [
        float(ops.convert_to_numpy(layer.strength)) * divisor
        for layer, divisor in zip(layers, divisors, strict=True)
    ]
    top = max(written)
    return [
        (strength / top if top > 0 else 1.0) / divisor
        for strength, divisor in zip(written, divisors, strict=True)
    ]


def _measure(model, layers, strengths, loss_fn, batches):
    """`(data loss, PSP term)` averaged over `batches` (weighted by batch
    size), in training mode, with the PSP layers' λ set to `strengths`
    (None: as they are); the model's non-trainable state is put back."""
    saved = [
        (v, ops.convert_to_numpy(v)) for v in model.non_trainable_variables
    ]
    try:
        if strengths is not None:
            for layer, strength in zip(layers, strengths, strict=True):
                layer.strength.assign(strength)
        data_total = penalty_total = 0.0
        count = 0
        for x, y in batches:
            y_pred = model(x, training=True)
            data = ops.mean(loss_fn(y, y_pred))
            terms = psp_losses(model)
            penalty = ops.sum(ops.stack(terms)) if terms else 0.0
            size = len(keras.tree.flatten(y)[0])
            data_total += size * float(ops.convert_to_numpy(data))
            penalty_total += size * float(ops.convert_to_numpy(penalty))
            count += size
    finally:
        for variable, value in saved:
            variable.assign(value)
    return data_total / count, penalty_total / count
