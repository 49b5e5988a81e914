"""All-CNN-C (Springenberg et al. 2014, model C)."""

import keras

from keras_psp.models.regularization import Regularization
from keras_psp.models.regularization import check_classes
from keras_psp.models.regularization import output_activation
from keras_psp.models.regularization import strided_conv
from keras_psp.models.regularization import with_builder_args


@with_builder_args
def AllCNNC(
    input_shape=(32, 32, 3),
    classes=10,
    classifier_activation="softmax",
    name="all_cnn_c",
    weight_decay=0.0,
    psp_strength=0.0,
    psp_reduction="mean",
    psp_divide_by_num_layers=True,
    kernel_regularizer=None,
    activation_regularizer=None,
):
    """Builds All-CNN-C (Springenberg et al., "Striving for simplicity: the
    all convolutional net", 2014, model C) for 32×32 images.

    As in the authors' `src/models/ALL_CNN_C.py` (github enzotarta/PSP):
    channel dropout 0.2 on the input; 3×3 convs with 96, 96 and 96 filters
    (the last at stride 2) → channel dropout 0.5; 3×3 convs with 192, 192
    and 192 filters (the last at stride 2) → channel dropout 0.5; a 3×3
    "valid" conv with 192 filters, a 1×1 conv with 192 and a 1×1 conv with
    `classes` filters, each followed by ReLU; global average pooling gives
    the logits. Convs have biases and Xavier-normal kernels; 1,369,738
    trainable parameters for 10 classes. Their `Dropout2d` is Keras'
    `SpatialDropout2D`.

    With PSP, z is the output of each of the 9 convs before its ReLU, as in
    the authors' code (the averaged logits are not regularized).

    {builder_args}

    Example:

    >>> import numpy as np
    >>> model = AllCNNC()
    >>> int(sum(np.prod(w.shape) for w in model.trainable_weights))
    1369738
    """
    reg = Regularization(
        weight_decay,
        psp_strength,
        psp_reduction,
        psp_divide_by_num_layers,
        kernel_regularizer,
        activation_regularizer,
    )
    check_classes(classes)
    layers = keras.layers

    def conv(filters, kernel_size, name, strides=1, padding="same"):
        return reg.conv(
            filters,
            kernel_size,
            activation="relu",
            strides=strides,
            padding=padding,
            kernel_initializer="glorot_normal",
            name=name,
        )

    inputs = keras.Input(input_shape)
    x = layers.SpatialDropout2D(0.2, name="input_dropout")(inputs)
    x = conv(96, 3, "conv1")(x)
    x = conv(96, 3, "conv2")(x)
    x = strided_conv(x, conv(96, 3, "conv3", 2, "valid"), 2, "conv3")
    x = layers.SpatialDropout2D(0.5, name="dropout1")(x)
    x = conv(192, 3, "conv4")(x)
    x = conv(192, 3, "conv5")(x)
    x = strided_conv(x, conv(192, 3, "conv6", 2, "valid"), 2, "conv6")
    x = layers.SpatialDropout2D(0.5, name="dropout2")(x)
    x = conv(192, 3, "conv7", padding="valid")(x)
    x = conv(192, 1, "conv8")(x)
    x = conv(classes, 1, "conv9")(x)
    logits = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = output_activation(logits, classifier_activation, "predictions")
    return reg.model(inputs, outputs, name)
