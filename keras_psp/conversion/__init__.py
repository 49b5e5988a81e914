"""Putting PSP into a model: in place (`enable_psp`, `disable_psp`) or in
a copy (`apply_psp`)."""

from keras_psp.conversion.copying import apply_psp
from keras_psp.conversion.enable import disable_psp
from keras_psp.conversion.enable import enable_psp
from keras_psp.conversion.enable import psp_terms

__all__ = ["apply_psp", "disable_psp", "enable_psp", "psp_terms"]
