"""Regularizers: PSP as an activity regularizer, and the weight and
activity penalties PSP is compared with.

- `PSPRegularizer`: the PSP penalty for `activity_regularizer=`.
- `SoftDiamond`: the negative log of a symmetric alpha-stable weight prior
  (Adigun and Kosko, arXiv 2412.20724), for `kernel_regularizer=`.
- `ActivationSparsity`: penalizes the perplexity-based sparsity of a
  layer's activations (Huesmann et al., arXiv 2002.09237, 2104.06153), for
  `activity_regularizer=`.
"""

from keras_psp.regularizers.activation_sparsity import ActivationSparsity
from keras_psp.regularizers.activation_sparsity import activation_sparsity
from keras_psp.regularizers.psp_regularizer import PSPRegularizer
from keras_psp.regularizers.soft_diamond import SoftDiamond
from keras_psp.regularizers.soft_diamond import soft_diamond_penalty

__all__ = [
    "ActivationSparsity",
    "PSPRegularizer",
    "SoftDiamond",
    "activation_sparsity",
    "soft_diamond_penalty",
]
