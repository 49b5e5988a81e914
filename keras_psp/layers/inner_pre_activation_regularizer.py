"""PSP on the pre-activations inside a composite layer (e.g. a transformer
block), leaving its output unchanged."""

import warnings

import keras
from keras import ops

from keras_psp import activation_taps
from keras_psp import pre_activations
from keras_psp.layers.psp_wrapper import PSPWrapperMixin


@keras.saving.register_keras_serializable(package="keras_psp")
class InnerPreActivationRegularizer(PSPWrapperMixin, keras.layers.Wrapper):
    """Adds PSP to the pre-activations inside a composite layer.

    A composite layer (a transformer block such as keras_hub's
    `TransformerEncoder` or `LlamaTransformerDecoder`, a residual block, your
    own block) applies activations in its own code: an inner
    `Dense(..., activation="gelu")`, a gated MLP's
    `keras.activations.silu(gate(x)) * up(x)`, `keras.ops.relu(h)`, an
    `Activation` layer or a Sequential sub-block it holds, at any depth. Its
    own output is not `activation(z)`, so it cannot be wrapped whole. This
    wrapper regularizes the input z of each of those activations instead,
    one term per activation call: while the wrapped layer runs, the
    backend's activation functions hand their input to
    `psp_penalty(z, strength, reduction)` before they compute the same
    output (see `keras_psp.activation_taps` for the rule: the softmax and
    soft-capping of attention scores are not neurons' activations and are
    left out, an activation of another activation's output has no z of its
    own). Nothing in the layer changes; its output is the same.

    The wrapper takes every call the wrapped layer takes (keyword-only
    arguments, tensors beside other values, `training`, masks). When the
    call has a padding mask (a `mask`, `padding_mask` or
    `decoder_padding_mask` argument, or the Keras mask of its first input),
    padded positions add nothing to the terms whose z has the mask's
    leading shape. `apply_psp` uses this wrapper for every layer that
    applies activations in its own code and is not itself an affine or
    activation layer.

    Args:
        layer: a `keras.layers.Layer` that applies activations in its
            call (a call that applies none adds no term, and the first such
            call warns).
        strength: λ, a finite float >= 0 (finite in float32), shared by all
            the inner pre-activations, in the non-trainable float32 variable
            `self.strength`.
        reduction: `"sum"` (paper eq. 7) or `"mean"` (the authors' code);
            see `keras_psp.psp_penalty`. Applied to each inner
            pre-activation.
        strength_divisor: the number L of layers over which a model's λ
            was divided (recorded by `apply_psp(...,
            divide_by_num_layers=True)` and the builders of
            `keras_psp.models`; 1, the default, for a λ given to this layer
            itself): `strength` is the model's λ / L, and
            `keras_psp.callbacks.StrengthScheduler` sets it to
            `schedule(epoch) / L`.
        **kwargs: base layer arguments (`name`, `dtype`, ...). `dtype`
            defaults to the wrapped layer's dtype policy; float outputs are
            cast to the wrapper's compute dtype.

    Example:

    >>> import numpy as np
    >>> import keras
    >>> class Residual(keras.layers.Layer):
    ...     def build(self, input_shape):
    ...         self.fc = keras.layers.Dense(input_shape[-1], "relu")
    ...     def call(self, x):
    ...         return x + self.fc(x)
    >>> layer = InnerPreActivationRegularizer(Residual(), strength=1e-3)
    >>> tuple(layer(np.ones((2, 5))).shape)
    (2, 5)
    >>> len(layer.losses)
    1
    """

    def __init__(
        self,
        layer,
        strength=1e-3,
        reduction="sum",
        strength_divisor=1,
        **kwargs,
    ):
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(
                "Argument `layer` must be a `keras.layers.Layer` instance. "
                f"Received: layer={layer!r} of type {type(layer).__name__}."
            )
        if pre_activations.layer_kind(layer) is not None:
            raise ValueError(
                f"Argument `layer` ('{layer.name}', a "
                f"{type(layer).__name__}) has a pre-activation of its own: "
                "use `keras_psp.PreActivationRegularizer` or "
                "`keras_psp.PSPActivation`."
            )
        if kwargs.get("dtype") is None:
            kwargs["dtype"] = layer.dtype_policy
        super().__init__(layer, **kwargs)
        self._init_wrapper(strength, reduction, strength_divisor)
        self._warned = [False]  # a plain holder: not tracked state

    def call(self, *args, **kwargs):
        mask = pre_activations.call_mask(args, kwargs)
        with activation_taps.watch(
            self.layer, lambda z: self.add_psp_loss(z, mask)
        ) as watched:
            outputs = self.layer(*args, **kwargs)
        if not watched.count and not self._warned[0]:
            # Some layers apply activations only for some inputs (SAM's
            # prompt encoder, for masks): said once, never silent.
            self._warned[0] = True
            warnings.warn(
                f"InnerPreActivationRegularizer '{self.name}': the "
                f"{type(self.layer).__name__} it wraps applied no activation "
                "PSP can regularize in this call, so it adds no PSP term."
                + pre_activations.describe_skipped(watched.skipped),
                UserWarning,
                stacklevel=2,
            )
        return self._in_compute_dtype(outputs)

    def _in_compute_dtype(self, outputs):
        """Float outputs in the wrapper's compute dtype (the wrapped layer's,
        unless `dtype` was given), as the output spec says."""
        return keras.tree.map_structure(
            lambda x: (
                ops.cast(x, self.compute_dtype)
                if x is not None and keras.backend.is_float_dtype(x.dtype)
                else x
            ),
            outputs,
        )

    def pre_activation(self, *args, **kwargs):
        """Returns the list of inner pre-activations z for these inputs."""
        return pre_activations.inner_pre_activations(
            self.layer, *args, **kwargs
        )

    def get_config(self):
        config = super().get_config()
        config.update(self._psp_config())
        return config
