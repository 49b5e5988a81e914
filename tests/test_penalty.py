import keras
import numpy as np
import pytest

from keras_psp import psp_penalty
from keras_psp.penalty import validate_reduction
from keras_psp.penalty import validate_strength
from tests.helpers import gradients
from tests.helpers import to_numpy


def numpy_sum(z, strength):
    z = np.asarray(z, dtype=np.float64)
    per_example = 0.5 * (z.reshape(z.shape[0], -1) ** 2).sum(axis=1)
    return strength * per_example.mean()


def numpy_mean(z, strength):
    return strength * (np.asarray(z, dtype=np.float64) ** 2).mean()


@pytest.mark.parametrize("shape", [(4, 7), (3, 5, 6, 2), (2, 3, 4, 5, 2)])
@pytest.mark.parametrize("strength", [1.0, 0.37, 0.0])
def test_sum_reduction_matches_numpy(shape, strength):
    z = np.random.randn(*shape).astype("float32") * 3
    value = to_numpy(psp_penalty(z, strength, "sum"))
    np.testing.assert_allclose(value, numpy_sum(z, strength), rtol=1e-5)


@pytest.mark.parametrize("shape", [(4, 7), (3, 5, 6, 2)])
@pytest.mark.parametrize("strength", [1.0, 1e-3])
def test_mean_reduction_matches_numpy(shape, strength):
    z = np.random.randn(*shape).astype("float32") * 3
    value = to_numpy(psp_penalty(z, strength, "mean"))
    np.testing.assert_allclose(value, numpy_mean(z, strength), rtol=1e-5)


def test_sum_is_average_over_batch_not_total():
    z = np.random.randn(5, 3).astype("float32")
    doubled = np.concatenate([z, z])
    np.testing.assert_allclose(
        to_numpy(psp_penalty(doubled, 1.0)),
        to_numpy(psp_penalty(z, 1.0)),
        rtol=1e-6,
    )


def test_conv_units_are_every_position_of_every_filter():
    # One example, a 2x2 map with 3 filters: 12 units.
    z = np.arange(12, dtype="float32").reshape(1, 2, 2, 3)
    expected = 0.5 * float((np.arange(12.0) ** 2).sum())
    np.testing.assert_allclose(to_numpy(psp_penalty(z, 1.0)), expected)
    np.testing.assert_allclose(
        to_numpy(psp_penalty(z, 1.0, "mean")), expected * 2 / 12
    )


def test_result_is_float32_for_float16_input_in_the_hundreds():
    z = (np.random.rand(8, 64) * 600 + 100).astype("float16")
    value = psp_penalty(z, 1.0)
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    value = to_numpy(value)
    assert np.isfinite(value)
    # float16 squares would overflow past 65504; float32 must not.
    assert value > 65504
    np.testing.assert_allclose(value, numpy_sum(z, 1.0), rtol=1e-5)


def test_strength_may_be_a_variable():
    strength = keras.Variable(0.25, dtype="float32", trainable=False)
    z = np.ones((2, 4), dtype="float32")
    np.testing.assert_allclose(to_numpy(psp_penalty(z, strength)), 0.5)
    strength.assign(0.5)
    np.testing.assert_allclose(to_numpy(psp_penalty(z, strength)), 1.0)


@pytest.mark.parametrize("bad", [-1.0, -1e-9, float("nan"), float("inf")])
def test_validate_strength_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="`strength`"):
        validate_strength(bad)


@pytest.mark.parametrize("bad", ["1e-3", None, [1e-3], True, 1j])
def test_validate_strength_rejects_non_numbers(bad):
    with pytest.raises(TypeError, match="`strength`"):
        validate_strength(bad)


def test_validate_strength_accepts_numpy_and_int():
    assert validate_strength(np.float32(0.5)) == 0.5
    assert validate_strength(0) == 0.0


@pytest.mark.parametrize("bad", ["avg", "SUM", None, 1])
def test_unknown_reduction(bad):
    with pytest.raises(ValueError, match="`reduction`"):
        validate_reduction(bad)
    with pytest.raises(ValueError, match="`reduction`"):
        psp_penalty(np.ones((2, 2)), 1.0, bad)


def test_scalar_z_is_refused():
    with pytest.raises(ValueError, match="batch axis"):
        psp_penalty(np.float32(1.0), 1.0)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_gradient_is_exact(reduction, dtype):
    """d penalty / dz = λ z / B (sum) or 2 λ z / (B U) (mean), in z's dtype
    (the squared norm's gradient is written by hand)."""
    z0 = (np.random.randn(3, 4, 5) * 20).astype("float32")
    # The test helper reads gradients as NumPy arrays, which PyTorch's
    # bfloat16 cannot become: a bfloat16 z is a cast of a float32 one.
    variable_dtype = "float32" if dtype == "bfloat16" else dtype
    z = keras.Variable(z0, dtype=variable_dtype, trainable=True)

    def loss():
        return psp_penalty(keras.ops.cast(z.value, dtype), 0.5, reduction)

    (grad,) = gradients(loss, [z])
    assert keras.backend.standardize_dtype(grad.dtype) == variable_dtype
    z_rounded = to_numpy(keras.ops.cast(keras.ops.cast(z0, dtype), "float32"))
    scale = 0.5 / 3 if reduction == "sum" else 2 * 0.5 / z0.size
    expected = scale * z_rounded
    rtol = 1e-6 if dtype == "float32" else 1e-2
    np.testing.assert_allclose(
        np.asarray(grad, dtype="float32"), expected, rtol=rtol, atol=1e-7
    )


def test_gradient_of_a_sum_of_penalties_adds_up():
    z = keras.Variable(np.random.randn(2, 6).astype("float32"))
    (grad,) = gradients(
        lambda: psp_penalty(z.value, 1.0) + psp_penalty(2 * z.value, 1.0),
        [z],
    )
    np.testing.assert_allclose(grad, 5 * to_numpy(z) / 2, rtol=1e-5)
