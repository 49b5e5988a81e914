"""What the PSP wrappers share: they are called exactly as the layer they
wrap, and build it as it would be built unwrapped."""

import keras

from keras_psp import keras_internals
from keras_psp.layers.psp_layer import PSPLayerMixin


class PSPWrapperMixin(PSPLayerMixin):
    """Makes a `keras.layers.Wrapper` with PSP transparent to its callers.

    - Keras binds the wrapper's calls to the wrapped layer's `call`
      signature, so the wrapper takes every call the layer takes
      (keyword-only inputs, tensors beside other values, `training`,
      masks) and passes them on unchanged.
    - The wrapped layer is built as Keras builds it unwrapped (from the
      arguments its own `build` names, none for `def build(self)`), with
      the variable paths it has unwrapped (layout maps match them).
    - Output specs are the wrapped layer's (its `compute_output_shape`, or
      a symbolic run of its `call` when it has none), in the wrapper's
      compute dtype.
    """

    def _init_wrapper(self, strength, reduction, strength_divisor=1):
        self._init_psp(strength, reduction, strength_divisor)
        self.supports_masking = self.layer.supports_masking
        keras_internals.adopt_call_signature(self, self.layer)

    def _maybe_build(self, call_spec):
        if not self.built:
            keras_internals.build_as_called(self, self.layer, call_spec)
        super()._maybe_build(call_spec)

    def build(self, *args, **kwargs):
        # Keras calls it with no argument (see `_maybe_build`); by hand, it
        # takes the wrapped layer's build arguments.
        keras_internals.keep_variable_paths(self, self.layer)
        if (args or kwargs) and not self.layer.built:
            self.layer.build(*args, **kwargs)
        self.built = True

    def compute_output_spec(self, *args, **kwargs):
        spec = self.layer.compute_output_spec(*args, **kwargs)
        return keras.tree.map_structure(
            lambda x: (
                keras.KerasTensor(x.shape, self.compute_dtype)
                if keras.backend.is_float_dtype(x.dtype)
                else x
            ),
            spec,
        )

    def compute_mask(self, *args, **kwargs):
        return self.layer.compute_mask(*args, **kwargs)
