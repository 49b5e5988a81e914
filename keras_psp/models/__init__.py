"""Models: PSP-aware model classes (and, later, the paper's architectures)."""

from keras_psp.models.psp_model import PSPModel
from keras_psp.models.psp_model import PSPSequential

__all__ = ["PSPModel", "PSPSequential"]
