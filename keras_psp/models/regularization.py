"""Regularization options shared by the model builders."""

import keras

from keras_psp.layers.psp_activation import PSPActivation
from keras_psp.layers.psp_conv2d import PSPConv2D
from keras_psp.layers.psp_dense import PSPDense
from keras_psp.models.psp_model import PSPModel
from keras_psp.models.psp_model import psp_layers
from keras_psp.penalty import validate_reduction
from keras_psp.penalty import validate_strength
from keras_psp.pre_activations import is_linear
from keras_psp.validation import validate_positive_int

# The arguments every builder shares, spliced into their docstrings.
BUILDER_ARGS = """\
    Args:
        input_shape: image shape (height, width, channels).
        classes: number of classes.
        classifier_activation: activation applied to the logits
            (`"softmax"`, or `None` to return logits).
        name: the model's name.
        weight_decay: L2 λ on every kernel (0: none); see
            `keras_psp.models.regularization.Regularization`.
        psp_strength: PSP λ (0: none), the model's λ: what
            `keras_psp.callbacks.StrengthScheduler`'s schedule and its
            `psp_strength` log entry speak of. May be combined with
            `weight_decay`.
        psp_reduction: `"mean"` (default, the authors' normalization, in
            which the paper's λ values were set) or `"sum"` (paper eq. 7).
        psp_divide_by_num_layers: give each of the L regularized layers
            λ/L, as the authors' code does (default True); each records L
            as its `strength_divisor`.
        kernel_regularizer: a Keras regularizer for every kernel instead
            of `weight_decay`'s L2 (e.g.
            `keras_psp.regularizers.SoftDiamond`); None for none.
        activation_regularizer: a Keras regularizer for the activations of
            every hidden layer (the output of each non-linear activation,
            as the `activity_regularizer` of the layer that applies it; e.g.
            `keras_psp.regularizers.ActivationSparsity`); None for none.

    Returns:
        An uncompiled functional model: a `keras_psp.PSPModel` (which logs
        `psp_loss`) when `psp_strength > 0`, else a `keras.Model`.
"""


def with_builder_args(builder):
    """Puts `BUILDER_ARGS` in place of `{builder_args}` in the docstring."""
    builder.__doc__ = builder.__doc__.replace(
        "    {builder_args}\n", BUILDER_ARGS
    )
    return builder


class Regularization:
    """The none / L2 / PSP choice of a builder, and the layers it implies.

    Args:
        weight_decay: L2 λ. Each kernel gets `keras.regularizers.L2(λ/2)`,
            i.e. a penalty `λ/2 · Σ w²` whose gradient `λ·w` is what SGD's
            `weight_decay=λ` adds in the authors' PyTorch code (there it also
            applies to biases and batch-norm parameters; here to kernels).
        psp_strength: PSP λ (0 for none).
        psp_reduction: `"sum"` or `"mean"` (see `keras_psp.psp_penalty`).
        psp_divide_by_num_layers: give each of the L regularized layers λ/L,
            as the authors' code does (each records L as its
            `strength_divisor`, so that the model's λ stays `psp_strength`).
        kernel_regularizer: a regularizer for every kernel, instead of the
            L2 of `weight_decay` (which must then be 0).
        activation_regularizer: a regularizer for the output of every
            non-linear activation.
    """

    def __init__(
        self,
        weight_decay=0.0,
        psp_strength=0.0,
        psp_reduction="mean",
        psp_divide_by_num_layers=True,
        kernel_regularizer=None,
        activation_regularizer=None,
    ):
        self.weight_decay = validate_strength(
            weight_decay, "weight_decay", "the L2 strength"
        )
        for name, value in (
            ("kernel_regularizer", kernel_regularizer),
            ("activation_regularizer", activation_regularizer),
        ):
            if value is not None and not callable(value):
                raise TypeError(
                    f"Argument `{name}` must be a Keras regularizer (e.g. "
                    f"keras.regularizers.L1(1e-4)) or None. Received: "
                    f"{name}={value!r}."
                )
        if kernel_regularizer is not None and self.weight_decay:
            raise ValueError(
                "Arguments `weight_decay` and `kernel_regularizer` cannot "
                "both be given: weight_decay is an L2 kernel regularizer. "
                f"Received: weight_decay={weight_decay!r}, "
                f"kernel_regularizer={kernel_regularizer!r}."
            )
        self._kernel_regularizer = kernel_regularizer
        self.activation_regularizer = activation_regularizer
        self.psp_strength = validate_strength(psp_strength, "psp_strength")
        self.psp_reduction = validate_reduction(psp_reduction, "psp_reduction")
        self.divide = bool(psp_divide_by_num_layers)

    @property
    def psp(self):
        return self.psp_strength > 0

    def kernel_regularizer(self):
        if self._kernel_regularizer is not None:
            return self._kernel_regularizer
        if self.weight_decay == 0:
            return None
        return keras.regularizers.L2(self.weight_decay / 2)

    def _psp_kwargs(self):
        # The final λ is set by `model()`, once L is known.
        return {"strength": self.psp_strength, "reduction": self.psp_reduction}

    def conv(self, filters, kernel_size, activation=None, **kwargs):
        """A Conv2D; with PSP, a PSPConv2D when it has its own activation."""
        kwargs.setdefault("kernel_regularizer", self.kernel_regularizer())
        if activation is not None and not is_linear(activation):
            kwargs.setdefault(
                "activity_regularizer", self.activation_regularizer
            )
        if self.psp and activation is not None:
            return PSPConv2D(
                filters, kernel_size, activation, **self._psp_kwargs(), **kwargs
            )
        return keras.layers.Conv2D(
            filters, kernel_size, activation=activation, **kwargs
        )

    def depthwise_conv(self, kernel_size, **kwargs):
        kwargs.setdefault("depthwise_regularizer", self.kernel_regularizer())
        return keras.layers.DepthwiseConv2D(kernel_size, **kwargs)

    def dense(self, units, activation=None, regularize=True, **kwargs):
        """A Dense; with PSP (and `regularize`), a PSPDense."""
        kwargs.setdefault("kernel_regularizer", self.kernel_regularizer())
        if activation is not None and not is_linear(activation):
            kwargs.setdefault(
                "activity_regularizer", self.activation_regularizer
            )
        if self.psp and regularize:
            return PSPDense(units, activation, **self._psp_kwargs(), **kwargs)
        return keras.layers.Dense(units, activation=activation, **kwargs)

    def activation(self, activation, name=None):
        """The activation after batch norm / add; with PSP, a PSPActivation."""
        regularizer = (
            None if is_linear(activation) else self.activation_regularizer
        )
        if self.psp:
            return PSPActivation(
                activation,
                **self._psp_kwargs(),
                name=name,
                activity_regularizer=regularizer,
            )
        return keras.layers.Activation(
            activation, name=name, activity_regularizer=regularizer
        )

    def linear_point(self, x, name=None):
        """Regularizes `x` as a pre-activation with no activation after it
        (e.g. MobileNetV2's linear bottlenecks); without PSP, returns `x`."""
        if not self.psp:
            return x
        return PSPActivation("linear", **self._psp_kwargs(), name=name)(x)

    def model(self, inputs, outputs, name):
        """Builds the model and sets each PSP layer's final λ: `psp_strength`,
        or `psp_strength / L` with L (recorded as the layers'
        `strength_divisor`) when it is divided among the L layers."""
        if not self.psp:
            return keras.Model(inputs, outputs, name=name)
        model = PSPModel(inputs, outputs, name=name)
        layers = psp_layers(model)
        divisor = len(layers) if self.divide else 1
        for layer in layers:
            layer.strength_divisor = divisor
            layer.strength.assign(self.psp_strength / divisor)
        return model


def batch_norm(name):
    """Batch norm with PyTorch's defaults (momentum 0.1, eps 1e-5)."""
    return keras.layers.BatchNormalization(
        momentum=0.9, epsilon=1e-5, name=name
    )


def strided_conv(x, conv, stride, name):
    """`conv` (padding "valid") after PyTorch-style symmetric padding 1.

    Keras' "same" pads a stride-2 3×3 conv on an even input only at the
    bottom/right; the authors' PyTorch models pad 1 on every side.
    """
    if stride == 1:
        return conv(x)
    return conv(keras.layers.ZeroPadding2D(1, name=f"{name}_pad")(x))


def check_classes(classes):
    validate_positive_int(classes, "classes")


def output_activation(logits, classifier_activation, name):
    """Applies `classifier_activation` (None: return the logits)."""
    if classifier_activation is None:
        return logits
    # float32 output keeps the softmax stable under mixed precision.
    return keras.layers.Activation(
        classifier_activation, dtype="float32", name=name
    )(logits)


def classifier(x, classes, classifier_activation, regularization, name):
    """Dense logits (PSP-regularized, as in the authors' code), activation."""
    check_classes(classes)
    logits = regularization.dense(classes, name=f"{name}_logits")(x)
    return output_activation(logits, classifier_activation, name)
