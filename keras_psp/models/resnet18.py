"""ResNet-18, CIFAR variant."""

import keras

from keras_psp.models.regularization import Regularization
from keras_psp.models.regularization import batch_norm
from keras_psp.models.regularization import classifier
from keras_psp.models.regularization import strided_conv
from keras_psp.models.regularization import with_builder_args


def _basic_block(x, filters, stride, reg, name):
    in_channels = x.shape[-1]
    shortcut = x
    if stride != 1 or in_channels != filters:
        shortcut = reg.conv(
            filters, 1, strides=stride, use_bias=False, name=f"{name}_proj"
        )(x)
        shortcut = batch_norm(f"{name}_proj_bn")(shortcut)
    padding = "same" if stride == 1 else "valid"
    y = strided_conv(
        x,
        reg.conv(
            filters,
            3,
            strides=stride,
            padding=padding,
            use_bias=False,
            name=f"{name}_conv1",
        ),
        stride,
        f"{name}_conv1",
    )
    y = batch_norm(f"{name}_bn1")(y)
    y = reg.activation("relu", name=f"{name}_relu1")(y)
    y = reg.conv(
        filters, 3, padding="same", use_bias=False, name=f"{name}_conv2"
    )(y)
    y = batch_norm(f"{name}_bn2")(y)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return reg.activation("relu", name=f"{name}_relu2")(y)


@with_builder_args
def ResNet18(
    input_shape=(32, 32, 3),
    classes=10,
    classifier_activation="softmax",
    name="resnet18",
    weight_decay=0.0,
    psp_strength=0.0,
    psp_reduction="mean",
    psp_divide_by_num_layers=True,
    kernel_regularizer=None,
    activation_regularizer=None,
):
    """Builds ResNet-18 for 32×32 images (CIFAR variant).

    As in the authors' `src/models/resnet.py` (github enzotarta/PSP, after
    github kuangliu/pytorch-cifar): a 3×3 stride-1 stem with 64 filters and
    no max-pool, four stages of two basic blocks (64, 128, 256, 512 filters;
    strides 1, 2, 2, 2), each `conv → BN → ReLU → conv → BN → (+) → ReLU`
    with a 1×1 conv + BN projection where the shape changes, global average
    pooling and a dense classifier: 11,173,962 trainable parameters for 10
    classes. Convs have no bias; batch norm uses PyTorch's momentum and
    epsilon; stride-2 convs pad 1 on every side as in PyTorch.

    With PSP, z is the input of every ReLU (after batch norm, and after the
    residual add where there is one), regularized by `PSPActivation`, plus
    the logits: 17 ReLUs + 1 = 18 regularized layers.

    {builder_args}

    Example:

    >>> import numpy as np
    >>> model = ResNet18()
    >>> int(sum(np.prod(w.shape) for w in model.trainable_weights))
    11173962
    """
    reg = Regularization(
        weight_decay,
        psp_strength,
        psp_reduction,
        psp_divide_by_num_layers,
        kernel_regularizer,
        activation_regularizer,
    )
    inputs = keras.Input(input_shape)
    x = reg.conv(64, 3, padding="same", use_bias=False, name="stem_conv")(
        inputs
    )
    x = batch_norm("stem_bn")(x)
    x = reg.activation("relu", name="stem_relu")(x)
    for stage, (filters, stride) in enumerate(
        [(64, 1), (128, 2), (256, 2), (512, 2)], start=1
    ):
        for block in range(2):
            x = _basic_block(
                x,
                filters,
                stride if block == 0 else 1,
                reg,
                f"stage{stage}_block{block + 1}",
            )
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = classifier(x, classes, classifier_activation, reg, "predictions")
    return reg.model(inputs, outputs, name)
