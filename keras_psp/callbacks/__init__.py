"""Callbacks: watching pre-activations and activations, scheduling the PSP
strength.

- `PreActivationMonitor` logs the mean squared pre-activation ⟨z²⟩ of every
  layer (and the PSP term) each epoch.
- `ActivationSparsityMonitor` logs every layer's activation sparsity each
  epoch (the overfitting signal of targeted sparsity regularization).
- `StrengthScheduler` sets the PSP strength λ each epoch from a Keras
  schedule object (`keras.optimizers.schedules.LearningRateSchedule`,
  called with the epoch index), logs it as `psp_strength`, and serializes
  with `get_config`; `step_strength`, `cosine_strength` and
  `warmup_strength` build common schedules of λ.
"""

from keras_psp.callbacks.activation_sparsity_monitor import (
    ActivationSparsityMonitor,
)
from keras_psp.callbacks.pre_activation_monitor import PreActivationMonitor
from keras_psp.callbacks.strength_scheduler import StrengthScheduler
from keras_psp.callbacks.strength_schedules import cosine_strength
from keras_psp.callbacks.strength_schedules import step_strength
from keras_psp.callbacks.strength_schedules import warmup_strength

__all__ = [
    "ActivationSparsityMonitor",
    "PreActivationMonitor",
    "StrengthScheduler",
    "cosine_strength",
    "step_strength",
    "warmup_strength",
]
