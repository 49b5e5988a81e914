"""Models: PSP-aware model classes and the paper's four architectures."""

from keras_psp.models.all_cnn_c import AllCNNC
from keras_psp.models.lenet5 import LeNet5
from keras_psp.models.mobilenet_v2 import MobileNetV2
from keras_psp.models.psp_model import PSPModel
from keras_psp.models.psp_model import PSPSequential
from keras_psp.models.resnet18 import ResNet18

__all__ = [
    "AllCNNC",
    "LeNet5",
    "MobileNetV2",
    "PSPModel",
    "PSPSequential",
    "ResNet18",
]
