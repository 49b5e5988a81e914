"""LeNet-5 as in the authors' MNIST scripts."""

import keras

from keras_psp.models.regularization import Regularization
from keras_psp.models.regularization import classifier
from keras_psp.models.regularization import with_builder_args


@with_builder_args
def LeNet5(
    input_shape=(28, 28, 1),
    classes=10,
    classifier_activation="softmax",
    name="lenet5",
    weight_decay=0.0,
    psp_strength=0.0,
    psp_reduction="mean",
    psp_divide_by_num_layers=True,
    kernel_regularizer=None,
    activation_regularizer=None,
):
    """Builds LeNet-5 as used in the paper's MNIST and Fashion-MNIST runs.

    The architecture of the authors' `LeNet5_stats.py` (github
    enzotarta/PSP): conv 5×5, 20 filters → max-pool 2 → conv 5×5, 50
    filters → max-pool 2 → dense 500 → dense `classes`, ReLU after each
    hidden layer; 431,080 parameters for 28×28×1 inputs and 10 classes. With
    PSP, z is taken before each ReLU and at the logits (4 regularized layers,
    as in their code), using `PSPConv2D` and `PSPDense`.

    {builder_args}

    Example:

    >>> import numpy as np
    >>> model = LeNet5(psp_strength=1e-3)
    >>> int(sum(np.prod(w.shape) for w in model.trainable_weights))
    431080
    """
    reg = Regularization(
        weight_decay,
        psp_strength,
        psp_reduction,
        psp_divide_by_num_layers,
        kernel_regularizer,
        activation_regularizer,
    )
    layers = keras.layers
    inputs = keras.Input(input_shape)
    x = reg.conv(20, 5, activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = reg.conv(50, 5, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = reg.dense(500, activation="relu", name="fc1")(x)
    outputs = classifier(x, classes, classifier_activation, reg, "predictions")
    return reg.model(inputs, outputs, name)
