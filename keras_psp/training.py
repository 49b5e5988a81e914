"""The paper's optimizer, learning-rate schedules and initialization."""

import math

import keras

from keras_psp import keras_internals
from keras_psp.validation import validate_positive_int

# Epochs at which the authors' CIFAR-10 runs divide the learning rate by 10.
PAPER_CIFAR_DECAY_EPOCHS = (150, 250, 350)


def step_decay(
    steps_per_epoch,
    initial_learning_rate=0.1,
    decay_epochs=PAPER_CIFAR_DECAY_EPOCHS,
    factor=0.1,
):
    """Learning rate × `factor` at each of `decay_epochs` (the paper's CIFAR
    schedule: 0.1, ×0.1 at epochs 150, 250 and 350).

    Args:
        steps_per_epoch: optimizer steps per epoch (training examples /
            batch size, rounded up).
        initial_learning_rate: learning rate of the first epochs.
        decay_epochs: increasing epochs (0-based: epoch 150 is the 151st)
            from which the rate is multiplied by `factor`.
        factor: the multiplier.

    Returns:
        A `keras.optimizers.schedules.PiecewiseConstantDecay`.
    """
    validate_positive_int(steps_per_epoch, "steps_per_epoch")
    decay_epochs = list(decay_epochs)
    if (
        decay_epochs != sorted(set(decay_epochs))
        or min(decay_epochs, default=1) < 1
    ):
        raise ValueError(
            "Argument `decay_epochs` must be increasing epochs >= 1. "
            f"Received: decay_epochs={decay_epochs!r}."
        )
    # PiecewiseConstantDecay switches after a boundary step; the optimizer's
    # step counter is 0 on the first step of epoch 0.
    boundaries = [epoch * steps_per_epoch - 1 for epoch in decay_epochs]
    values = [
        initial_learning_rate * factor**i for i in range(len(boundaries) + 1)
    ]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def cosine_decay(
    steps_per_epoch, epochs, initial_learning_rate=0.1, warmup_epochs=0
):
    """Cosine decay to 0 over `epochs`, after an optional linear warm-up:
    the shorter schedule for budget runs.

    Returns:
        A `keras.optimizers.schedules.CosineDecay`.
    """
    validate_positive_int(steps_per_epoch, "steps_per_epoch")
    validate_positive_int(epochs, "epochs")
    if not isinstance(warmup_epochs, int) or not 0 <= warmup_epochs < epochs:
        raise ValueError(
            "Argument `warmup_epochs` must be an integer in [0, epochs). "
            f"Received: warmup_epochs={warmup_epochs!r}."
        )
    warmup_steps = warmup_epochs * steps_per_epoch
    decay_steps = epochs * steps_per_epoch - warmup_steps
    if warmup_steps:
        return keras.optimizers.schedules.CosineDecay(
            0.0,
            decay_steps,
            warmup_target=initial_learning_rate,
            warmup_steps=warmup_steps,
        )
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate, decay_steps
    )


def paper_optimizer(
    steps_per_epoch,
    schedule="step",
    epochs=None,
    learning_rate=0.1,
    momentum=0.9,
    weight_decay=None,
):
    """SGD as in the paper's CIFAR-10 runs: lr 0.1, momentum 0.9.

    Args:
        steps_per_epoch: optimizer steps per epoch.
        schedule: `"step"` (×0.1 at epochs 150, 250, 350, the paper's),
            `"cosine"` (cosine decay over `epochs`, for shorter runs) or
            `"constant"`.
        epochs: length of the cosine schedule (required for `"cosine"`).
        learning_rate: the initial learning rate.
        momentum: SGD momentum (0 for the paper's MNIST runs).
        weight_decay: SGD weight decay applied by the optimizer to every
            variable, as PyTorch's SGD `weight_decay` in the authors' L2
            baseline (None: off).

    Returns:
        A `keras.optimizers.SGD`.

    Example:

    >>> optimizer = paper_optimizer(steps_per_epoch=391)
    >>> round(float(optimizer.learning_rate), 6)
    0.1
    """
    if schedule == "step":
        rate = step_decay(steps_per_epoch, learning_rate)
    elif schedule == "cosine":
        if epochs is None:
            raise ValueError('Argument `epochs` is required for "cosine".')
        rate = cosine_decay(steps_per_epoch, epochs, learning_rate)
    elif schedule == "constant":
        rate = learning_rate
    else:
        raise ValueError(
            "Argument `schedule` must be one of 'step', 'cosine', "
            f"'constant'. Received: schedule={schedule!r}."
        )
    return keras.optimizers.SGD(
        rate, momentum=momentum, weight_decay=weight_decay
    )


# Layers whose PyTorch counterparts (nn.Linear, nn.Conv*d) initialize
# weight and bias from U(-1/√fan_in, 1/√fan_in), and how many trailing axes
# of their kernel are not fan-in (a depthwise kernel's: input channels and
# multiplier; PyTorch's `groups` leaves one input channel per filter).
_PYTORCH_INITIALIZED = (
    (keras.layers.DepthwiseConv1D, 2),
    (keras.layers.DepthwiseConv2D, 2),
    (keras.layers.Dense, 1),
    (keras.layers.Conv1D, 1),
    (keras.layers.Conv2D, 1),
    (keras.layers.Conv3D, 1),
)


def pytorch_initialization(model, seed=None):
    """Re-initializes dense and convolution layers as PyTorch does.

    PyTorch's `nn.Linear` and `nn.Conv*d` draw weight and bias from
    `U(-1/√fan_in, 1/√fan_in)` (`kaiming_uniform_(a=√5)` for the weight);
    Keras starts from Glorot-uniform kernels and zero biases. The paper's
    numbers were obtained with PyTorch's defaults, so a reproduction may
    start from the same distribution. `fan_in` is the kernel's size without
    its output axis (a depthwise kernel: its spatial size, as with PyTorch's
    `groups`). Batch norm starts alike in both (γ = 1, β = 0) and is left as
    it is, as are other layers (`Conv*DTranspose`, `SeparableConv*`,
    `EinsumDense`).

    Args:
        model: a built Keras model or layer; nested layers are included.
        seed: int or None, the seed of the `keras.random.SeedGenerator`
            drawing the values (same seed, same weights).

    Returns:
        The names of the re-initialized layers.

    Example:

    >>> from keras_psp.models import LeNet5
    >>> pytorch_initialization(LeNet5(), seed=1)
    ['conv1', 'conv2', 'fc1', 'predictions_logits']
    """
    generator = keras.random.SeedGenerator(seed)
    names = []
    for layer in [model, *keras_internals.sublayers(model)]:
        kernel = getattr(layer, "kernel", None)
        not_fan_in = next(
            (n for kind, n in _PYTORCH_INITIALIZED if isinstance(layer, kind)),
            None,
        )
        if kernel is None or not_fan_in is None:  # not built, or other kind
            continue
        bound = math.prod(kernel.shape[:-not_fan_in]) ** -0.5
        for variable in (kernel, getattr(layer, "bias", None)):
            if variable is not None:
                variable.assign(
                    keras.random.uniform(
                        variable.shape,
                        -bound,
                        bound,
                        dtype=variable.dtype,
                        seed=generator,
                    )
                )
        names.append(layer.name)
    return names
