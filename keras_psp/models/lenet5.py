"""LeNet-5 as in the authors' MNIST scripts."""

import keras

from keras_psp.models.regularization import Regularization
from keras_psp.models.regularization import classifier


def LeNet5(
    input_shape=(28, 28, 1),
    classes=10,
    classifier_activation="softmax",
    name="lenet5",
    weight_decay=0.0,
    psp_strength=0.0,
    psp_reduction="mean",
    psp_divide_by_num_layers=True,
):
    """Builds LeNet-5 as used in the paper's MNIST and Fashion-MNIST runs.

    The architecture of the authors' `LeNet5_stats.py` (github
    enzotarta/PSP): conv 5×5, 20 filters → max-pool 2 → conv 5×5, 50
    filters → max-pool 2 → dense 500 → dense `classes`, ReLU after each
    hidden layer; 431,080 parameters for 28×28×1 inputs and 10 classes. With
    PSP, z is taken before each ReLU and at the logits (4 regularized layers,
    as in their code), using `PSPConv2D` and `PSPDense`.

    Args:
        input_shape: image shape, default `(28, 28, 1)`.
        classes: number of classes.
        classifier_activation: activation applied to the logits
            (`"softmax"`, or `None` to return logits).
        name: the model's name.
        weight_decay: L2 λ on every kernel (0: none); see
            `keras_psp.models.regularization.Regularization`.
        psp_strength: PSP λ (0: none). May be combined with `weight_decay`.
        psp_reduction: `"mean"` (default, the authors' normalization, in
            which the paper's λ = 1e-3 was set) or `"sum"` (paper eq. 7).
        psp_divide_by_num_layers: give each regularized layer λ/L (L = 4),
            as the authors' code does (default True).

    Returns:
        An uncompiled functional model: a `keras_psp.PSPModel` (which logs
        `psp_loss`) when `psp_strength > 0`, else a `keras.Model`.

    Example:

    >>> import numpy as np
    >>> model = LeNet5(psp_strength=1e-3)
    >>> int(sum(np.prod(w.shape) for w in model.trainable_weights))
    431080
    """
    reg = Regularization(
        weight_decay, psp_strength, psp_reduction, psp_divide_by_num_layers
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
