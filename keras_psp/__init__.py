"""keras-psp: post-synaptic potential (PSP) regularization for Keras 3.

Tartaglione, Perlo, Grangetto, "Post-synaptic potential regularization has
potential", ICANN 2019. PSP adds `λ · ½ Σ z²` to the training loss, where `z`
is every neuron's pre-activation.
"""

# First: without a backend, fails in one line naming the extra to install.
from keras_psp import backend_check  # noqa: F401
from keras_psp import callbacks
from keras_psp import datasets
from keras_psp import models
from keras_psp import optimizers
from keras_psp import regularizers
from keras_psp import training
from keras_psp.conversion import apply_psp
from keras_psp.conversion import disable_psp
from keras_psp.conversion import enable_psp
from keras_psp.conversion import psp_terms
from keras_psp.layers import InnerPreActivationRegularizer
from keras_psp.layers import PreActivationRegularizer
from keras_psp.layers import PSPActivation
from keras_psp.layers import PSPConv2D
from keras_psp.layers import PSPDense
from keras_psp.models import PSPModel
from keras_psp.models import PSPSequential
from keras_psp.penalty import psp_penalty
from keras_psp.pre_activations import find_pre_activations
from keras_psp.pre_activations import register_pre_activation_layer
from keras_psp.regularizers import PSPRegularizer
from keras_psp.strength_finder import find_strength
from keras_psp.stripping import strip_psp
from keras_psp.weight_sparsity import weight_sparsity

__version__ = "0.1.0"

__all__ = [
    "InnerPreActivationRegularizer",
    "PSPActivation",
    "PSPConv2D",
    "PSPDense",
    "PSPModel",
    "PSPRegularizer",
    "PSPSequential",
    "PreActivationRegularizer",
    "apply_psp",
    "disable_psp",
    "enable_psp",
    "find_pre_activations",
    "find_strength",
    "psp_terms",
    "register_pre_activation_layer",
    "strip_psp",
    "callbacks",
    "datasets",
    "models",
    "optimizers",
    "regularizers",
    "training",
    "psp_penalty",
    "weight_sparsity",
]
