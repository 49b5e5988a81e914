import keras
import numpy as np

from keras_psp import PreActivationRegularizer
from keras_psp import PSPActivation
from keras_psp import PSPDense
from keras_psp import PSPModel
from keras_psp.models.psp_model import psp_losses
from tests.helpers import to_numpy
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
