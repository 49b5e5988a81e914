"""MobileNetV2, CIFAR variant."""

import keras

from keras_psp.models.regularization import Regularization
from keras_psp.models.regularization import batch_norm
from keras_psp.models.regularization import classifier
from keras_psp.models.regularization import strided_conv
from keras_psp.models.regularization import with_builder_args

# (expansion, output filters, blocks, first block's stride); the second
# stage's stride is 1 instead of 2 for 32×32 inputs.
CIFAR_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _inverted_residual(x, expansion, filters, stride, reg, name):
    in_channels = x.shape[-1]
    y = reg.conv(
        expansion * in_channels, 1, use_bias=False, name=f"{name}_expand"
    )(x)
    y = batch_norm(f"{name}_expand_bn")(y)
    y = reg.activation("relu", name=f"{name}_expand_relu")(y)
    y = strided_conv(
        y,
        reg.depthwise_conv(
            3,
            strides=stride,
            padding="same" if stride == 1 else "valid",
            use_bias=False,
            name=f"{name}_depthwise",
        ),
        stride,
        f"{name}_depthwise",
    )
    y = batch_norm(f"{name}_depthwise_bn")(y)
    y = reg.activation("relu", name=f"{name}_depthwise_relu")(y)
    y = reg.conv(filters, 1, use_bias=False, name=f"{name}_project")(y)
    y = batch_norm(f"{name}_project_bn")(y)
    if stride == 1:
        shortcut = x
        if in_channels != filters:
            shortcut = reg.conv(
                filters, 1, use_bias=False, name=f"{name}_shortcut"
            )(x)
            shortcut = batch_norm(f"{name}_shortcut_bn")(shortcut)
        y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    # The linear bottleneck has no activation, but the authors collect its z.
    return reg.linear_point(y, name=f"{name}_out")


@with_builder_args
def MobileNetV2(
    input_shape=(32, 32, 3),
    classes=10,
    classifier_activation="softmax",
    name="mobilenetv2",
    weight_decay=0.0,
    psp_strength=0.0,
    psp_reduction="mean",
    psp_divide_by_num_layers=True,
    kernel_regularizer=None,
    activation_regularizer=None,
):
    """Builds MobileNetV2 for 32×32 images (CIFAR variant).

    As in the authors' `src/models/mobilenetv2.py` (github enzotarta/PSP,
    after github kuangliu/pytorch-cifar): a 3×3 stride-1 stem with 32
    filters, 17 inverted residual blocks (expand 1×1 → BN → ReLU → depthwise
    3×3 → BN → ReLU → project 1×1 → BN, plus a shortcut — a 1×1 conv + BN
    when the filters change — in stride-1 blocks), the second stage at
    stride 1 for 32×32 inputs, a 1×1 conv to 1280 filters → BN → ReLU,
    global average pooling and a dense classifier: 2,296,922 trainable
    parameters for 10 classes. Convs have no bias.

    With PSP, z is every post-BN pre-activation, as in the authors' code:
    the input of every ReLU, each block's (linear) output, and the logits
    (1 + 17·3 + 1 + 1 = 54 regularized layers).

    {builder_args}

    Example:

    >>> import numpy as np
    >>> model = MobileNetV2()
    >>> int(sum(np.prod(w.shape) for w in model.trainable_weights))
    2296922
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
    x = reg.conv(32, 3, padding="same", use_bias=False, name="stem_conv")(
        inputs
    )
    x = batch_norm("stem_bn")(x)
    x = reg.activation("relu", name="stem_relu")(x)
    index = 0
    for expansion, filters, blocks, stride in CIFAR_STAGES:
        for block in range(blocks):
            index += 1
            x = _inverted_residual(
                x,
                expansion,
                filters,
                stride if block == 0 else 1,
                reg,
                f"block{index}",
            )
    x = reg.conv(1280, 1, use_bias=False, name="head_conv")(x)
    x = batch_norm("head_bn")(x)
    x = reg.activation("relu", name="head_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = classifier(x, classes, classifier_activation, reg, "predictions")
    return reg.model(inputs, outputs, name)
