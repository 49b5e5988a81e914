"""Optimizers: `GradientCoherentSGD`, strong L1/L2 regularization imposed
only while the gradients stay coherent (Park et al., arXiv 1811.08056)."""

from keras_psp.optimizers.gradient_coherent_sgd import GradientCoherentSGD

__all__ = ["GradientCoherentSGD"]
