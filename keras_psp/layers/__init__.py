"""PSP layers."""

from keras_psp.layers.inner_pre_activation_regularizer import (
    InnerPreActivationRegularizer,
)
from keras_psp.layers.pre_activation_regularizer import PreActivationRegularizer
from keras_psp.layers.psp_activation import PSPActivation
from keras_psp.layers.psp_conv2d import PSPConv2D
from keras_psp.layers.psp_dense import PSPDense
from keras_psp.layers.psp_layer import PSPLayerMixin

__all__ = [
    "InnerPreActivationRegularizer",
    "PSPActivation",
    "PSPConv2D",
    "PSPDense",
    "PSPLayerMixin",
    "PreActivationRegularizer",
]
