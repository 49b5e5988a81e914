import keras
import numpy as np
import pytest

from keras_psp import PreActivationRegularizer
from keras_psp import PSPActivation
from keras_psp import PSPDense
from keras_psp import PSPModel
from keras_psp.models import LeNet5
from keras_psp.models.psp_model import psp_losses
from tests.helpers import to_numpy
from tests.test_penalty import numpy_mean
from tests.test_penalty import numpy_sum


def test_penalty_finite_and_float32_for_large_float16_activations():
    keras.config.set_dtype_policy("mixed_float16")
    layer = PSPDense(8, activation="relu", kernel_initializer="ones")
    x = np.full((4, 16), 30.0, dtype="float32")  # z = 480, z^2 > 65504
    out = layer(x)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    assert layer.strength.dtype == "float32"
    (penalty,) = layer.losses
    assert keras.backend.standardize_dtype(penalty.dtype) == "float32"
    z = np.full((4, 8), 480.0)
    np.testing.assert_allclose(to_numpy(penalty), numpy_sum(z, 1e-3), rtol=1e-3)


def test_fit_with_mixed_precision_stays_finite():
    keras.config.set_dtype_policy("mixed_float16")
    inputs = keras.Input((16,))
    x = PreActivationRegularizer(
        keras.layers.Dense(32, kernel_initializer="ones"), strength=1e-6
    )(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = PSPActivation("relu", strength=1e-6)(x)
    outputs = PSPDense(3, activation="softmax", dtype="float32", strength=1e-6)(
        x
    )
    model = PSPModel(inputs, outputs)
    model.compile(keras.optimizers.SGD(1e-3), "sparse_categorical_crossentropy")
    data = np.full((8, 16), 30.0, dtype="float32")
    labels = np.arange(8) % 3
    history = model.fit(data, labels, epochs=2, verbose=0)
    model(data, training=True)
    assert all(
        keras.backend.standardize_dtype(t.dtype) == "float32"
        for t in psp_losses(model)
    )
    assert np.all(np.isfinite(history.history["loss"]))
    assert np.all(np.isfinite(history.history["psp_loss"]))
    # The first layer's z is ~480 per unit, so its penalty is far above what
    # float16 can hold before λ scales it down.
    assert history.history["psp_loss"][0] > 1e-6 * 0.5 * 32 * 400**2


POLICIES = ["mixed_float16", "mixed_bfloat16"]


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_penalty_is_accumulated_in_float32_under_each_policy(policy, reduction):
    keras.config.set_dtype_policy(policy)
    layer = PSPDense(
        200,
        activation="relu",
        kernel_initializer="ones",
        strength=1e-3,
        reduction=reduction,
    )
    x = np.full((4, 16), 30.0, dtype="float32")  # z = 480, exact in both
    out = layer(x)
    assert keras.backend.standardize_dtype(out.dtype) == policy[6:]
    (penalty,) = layer.losses
    assert keras.backend.standardize_dtype(penalty.dtype) == "float32"
    assert np.isfinite(to_numpy(penalty))
    # z² = 230,400 is inf in float16; 200 of them summed in bfloat16 (8
    # significant bits) would be off by 0.1 % or more: float32 is exact.
    z = np.full((4, 200), 480.0)
    expected = (numpy_sum if reduction == "sum" else numpy_mean)(z, 1e-3)
    np.testing.assert_allclose(to_numpy(penalty), expected, rtol=1e-6)


@pytest.mark.parametrize("policy", POLICIES)
def test_psp_lenet5_trains_with_finite_losses(policy):
    keras.config.set_dtype_policy(policy)
    model = LeNet5(psp_strength=1e-3, classifier_activation=None)
    model.compile(
        keras.optimizers.SGD(1e-5),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.RandomState(0)
    # Inputs far outside MNIST's normalized range: z in the hundreds, so a
    # layer's Σz² is far above float16's largest number (65,504).
    images = (1000 * rng.uniform(size=(8, 28, 28, 1))).astype("float32")
    labels = rng.randint(0, 10, size=8)
    history = model.fit(images, labels, batch_size=4, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert np.all(np.isfinite(history.history["psp_loss"]))
    # λ/4 · mean(z²) per layer: mean(z²) is at least 1e4 somewhere.
    assert history.history["psp_loss"][0] > 1e-3 / 4 * 1e4
    model(images[:4], training=True)
    terms = psp_losses(model)
    assert len(terms) == 4
    assert all(
        keras.backend.standardize_dtype(t.dtype) == "float32" for t in terms
    )
    weights = [to_numpy(w) for w in model.trainable_weights]
    assert all(w.dtype == np.float32 and np.isfinite(w).all() for w in weights)
