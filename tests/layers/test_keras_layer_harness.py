"""Every PSP layer passes Keras' own layer test harness.

`keras.src.testing.TestCase.run_layer_test` builds the layer from its
arguments several times and checks: config and serialization round trips,
`supports_masking`, weight counts after `build` and after a symbolic call,
output shapes, the number of losses of an eager call, one compiled
`model.fit` step (`run_training_check`) and a `mixed_float16` instance
(`run_mixed_precision_check`: output dtype as `compute_output_spec` says,
float weights in float32). Keras skips the mixed precision check on torch
without CUDA; there the same check runs here (`_check_mixed_precision`),
with the penalty's dtype (float32) besides.

The wrapper is given a fresh inner layer on every instantiation, built from
a layer config (`_wrap`), so the instances the harness makes never share
weights.
"""

import keras
import numpy as np
import pytest
from absl.testing import parameterized
from keras.src import testing
from keras.src.utils import traceback_utils

from keras_psp import InnerPreActivationRegularizer
from keras_psp import PreActivationRegularizer
from keras_psp import PSPActivation
from keras_psp import PSPConv2D
from keras_psp import PSPDense
from keras_psp import pre_activations

L = keras.layers
STRENGTH = 1e-2

pytestmark = [
    # The harness's training step feeds a generator and, for
    # `PSPActivation("relu")`, a model without trainable weights.
    pytest.mark.filterwarnings("ignore:`shuffle=True` was passed"),
    pytest.mark.filterwarnings("ignore:The model does not have any trainable"),
]


def _harness_skips_mixed_precision():
    """Whether `run_layer_test` skips its mixed precision check (it does on
    torch without CUDA)."""
    if keras.backend.backend() != "torch":
        return False
    import torch

    return not torch.cuda.is_available()


def _wrap(layer, dtype=None, **kwargs):
    """`PreActivationRegularizer` around a fresh layer made from `layer`, a
    `keras.layers.serialize` config. `dtype` goes to the inner layer (the
    wrapper takes its policy), as when a whole model is mixed precision."""
    if dtype is not None:
        layer = {**layer, "config": {**layer["config"], "dtype": dtype}}
    return PreActivationRegularizer(keras.layers.deserialize(layer), **kwargs)


def _wrap_dtype_on_wrapper(layer, **kwargs):
    """As `_wrap`, but `dtype` goes to the wrapper only (the inner layer
    keeps float32)."""
    return PreActivationRegularizer(keras.layers.deserialize(layer), **kwargs)


# name: (inner layer, input shape, output shape, trainable weights).
AFFINE_CASES = {
    "Dense": (L.Dense(3, activation="relu"), (2, 4), (2, 3), 2),
    "EinsumDense": (
        L.EinsumDense(
            "ab,bc->ac", output_shape=3, bias_axes="c", activation="relu"
        ),
        (2, 4),
        (2, 3),
        2,
    ),
    "Conv1D": (L.Conv1D(2, 3, activation="relu"), (2, 6, 3), (2, 4, 2), 2),
    "Conv2D": (
        L.Conv2D(2, 3, activation="relu"),
        (2, 5, 5, 3),
        (2, 3, 3, 2),
        2,
    ),
    "Conv3D": (
        L.Conv3D(2, 3, activation="relu"),
        (2, 4, 4, 4, 2),
        (2, 2, 2, 2, 2),
        2,
    ),
    "Conv1DTranspose": (
        L.Conv1DTranspose(2, 3, activation="relu"),
        (2, 4, 3),
        (2, 6, 2),
        2,
    ),
    "Conv2DTranspose": (
        L.Conv2DTranspose(2, 3, activation="relu"),
        (2, 3, 3, 3),
        (2, 5, 5, 2),
        2,
    ),
    "Conv3DTranspose": (
        L.Conv3DTranspose(2, 3, activation="relu"),
        (2, 2, 2, 2, 2),
        (2, 4, 4, 4, 2),
        2,
    ),
    "DepthwiseConv1D": (
        L.DepthwiseConv1D(3, depth_multiplier=2, activation="relu"),
        (2, 6, 3),
        (2, 4, 6),
        2,
    ),
    "DepthwiseConv2D": (
        L.DepthwiseConv2D(3, activation="relu"),
        (2, 5, 5, 3),
        (2, 3, 3, 3),
        2,
    ),
    "SeparableConv1D": (
        L.SeparableConv1D(2, 3, activation="relu"),
        (2, 6, 3),
        (2, 4, 2),
        3,
    ),
    "SeparableConv2D": (
        L.SeparableConv2D(2, 3, activation="relu"),
        (2, 5, 5, 3),
        (2, 3, 3, 2),
        3,
    ),
}


class KerasLayerHarnessTest(testing.TestCase):
    def setUp(self):
        # Keras' TestCase turns traceback filtering off for good; turn it
        # back on after the test so that the rest of the suite is unchanged.
        filtering = traceback_utils.is_traceback_filtering_enabled()
        super().setUp()
        if filtering:
            self.addCleanup(traceback_utils.enable_traceback_filtering)

    def _run_harness(
        self,
        layer_cls,
        init_kwargs,
        input_shape,
        output_shape,
        trainable,
        supports_masking,
    ):
        """`run_layer_test` with its training and mixed precision checks, for
        a PSP layer: one loss, λ its only non-trainable weight."""
        self.run_layer_test(
            layer_cls,
            init_kwargs=init_kwargs,
            input_shape=input_shape,
            expected_output_shape=output_shape,
            expected_num_trainable_weights=trainable,
            expected_num_non_trainable_weights=1,
            expected_num_non_trainable_variables=1,
            expected_num_seed_generators=0,
            expected_num_losses=1,
            supports_masking=supports_masking,
            run_training_check=True,
            run_mixed_precision_check=True,
        )
        if _harness_skips_mixed_precision():
            self._check_mixed_precision(layer_cls, init_kwargs, input_shape)

    def _check_mixed_precision(self, layer_cls, init_kwargs, input_shape):
        """The harness's mixed precision check, and a float32 penalty."""
        layer = layer_cls(**{**init_kwargs, "dtype": "mixed_float16"})
        inputs = np.random.uniform(-1.0, 1.0, input_shape).astype("float32")
        outputs = layer(inputs)
        spec = layer.compute_output_spec(
            keras.KerasTensor(input_shape, dtype=layer.compute_dtype)
        )
        dtype = keras.backend.standardize_dtype(outputs.dtype)
        self.assertEqual(dtype, "float16")
        self.assertEqual(dtype, spec.dtype)
        for weight in layer.weights:
            self.assertEqual(weight.dtype, "float32", msg=weight.path)
        self.assertLen(layer.losses, 1)
        penalty = layer.losses[0]
        self.assertEqual(
            keras.backend.standardize_dtype(penalty.dtype), "float32"
        )
        self.assertTrue(np.isfinite(keras.ops.convert_to_numpy(penalty)))

    def test_affine_cases_cover_every_supported_layer_class(self):
        covered = {type(case[0]) for case in AFFINE_CASES.values()}
        self.assertEqual(covered, set(pre_activations.AFFINE_LAYERS))

    def test_psp_dense(self):
        self._run_harness(
            PSPDense,
            {"units": 3, "activation": "relu", "strength": STRENGTH},
            input_shape=(2, 4),
            output_shape=(2, 3),
            trainable=2,
            supports_masking=True,
        )

    def test_psp_conv2d(self):
        self._run_harness(
            PSPConv2D,
            {
                "filters": 2,
                "kernel_size": 3,
                "activation": "relu",
                "strength": STRENGTH,
                "reduction": "mean",
            },
            input_shape=(2, 5, 5, 3),
            output_shape=(2, 3, 3, 2),
            trainable=2,
            supports_masking=False,
        )

    @parameterized.named_parameters(
        ("name", "relu", 0),
        ("relu6_instance", L.ReLU(max_value=6.0), 0),
        ("relu6_config", keras.layers.serialize(L.ReLU(max_value=6.0)), 0),
        ("prelu_config", keras.layers.serialize(L.PReLU()), 1),
    )
    def test_psp_activation(self, activation, trainable):
        self._run_harness(
            PSPActivation,
            {"activation": activation, "strength": STRENGTH},
            input_shape=(2, 3, 4),
            output_shape=(2, 3, 4),
            trainable=trainable,
            supports_masking=True,
        )

    @parameterized.named_parameters(
        (name, *case) for name, case in AFFINE_CASES.items()
    )
    def test_pre_activation_regularizer(
        self, layer, input_shape, output_shape, trainable
    ):
        self._run_harness(
            _wrap,
            {"layer": keras.layers.serialize(layer), "strength": STRENGTH},
            input_shape=input_shape,
            output_shape=output_shape,
            trainable=trainable,
            # Only Dense, of these, supports masking; the wrapper follows.
            supports_masking=isinstance(layer, L.Dense),
        )

    def test_pre_activation_regularizer_dtype_on_wrapper_only(self):
        self._run_harness(
            _wrap_dtype_on_wrapper,
            {
                "layer": keras.layers.serialize(L.Dense(3, activation="relu")),
                "strength": STRENGTH,
                "reduction": "mean",
            },
            input_shape=(2, 4),
            output_shape=(2, 3),
            trainable=2,
            supports_masking=True,
        )


@keras.saving.register_keras_serializable(package="keras_psp_tests")
class HarnessResidual(L.Layer):
    """A composite layer: a relu Dense inside, a residual add."""

    def build(self, input_shape):
        self.fc = L.Dense(
            input_shape[-1],
            activation="relu",
            name="fc",
            dtype=self.dtype_policy,
        )
        self.fc.build(input_shape)

    def call(self, x):
        return x + self.fc(x)


def _wrap_inner(dtype=None, **kwargs):
    """`InnerPreActivationRegularizer` around a fresh `HarnessResidual`."""
    return InnerPreActivationRegularizer(HarnessResidual(dtype=dtype), **kwargs)


class InnerPreActivationHarnessTest(KerasLayerHarnessTest):
    def test_inner_pre_activation_regularizer(self):
        self._run_harness(
            _wrap_inner,
            {"strength": STRENGTH},
            input_shape=(2, 4),
            output_shape=(2, 4),
            trainable=2,
            supports_masking=False,
        )
