import math

import keras
import numpy as np
import pytest

from keras_psp import PSPDense
from keras_psp import PSPRegularizer
from keras_psp import psp_penalty
from keras_psp.regularizers.psp_regularizer import _keras_divides_activity_loss
from tests.helpers import to_numpy
from tests.test_penalty import numpy_mean
from tests.test_penalty import numpy_sum

# Multiplying by a batch size that is not a power of 2 and Keras' division
# by it may change the last bit of the float32 penalty.
RTOL = 1e-6


def _regularized_model(strength, reduction):
    """Input -> Dense(linear, PSPRegularizer) -> ReLU -> Dense."""
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(
                4,
                activity_regularizer=PSPRegularizer(strength, reduction),
                name="hidden",
            ),
            keras.layers.Activation("relu"),
            keras.layers.Dense(2, name="out"),
        ]
    )


def _psp_dense_model(strength, reduction, weights):
    model = keras.Sequential(
        [
            keras.Input((6,)),
            PSPDense(
                4,
                activation="relu",
                strength=strength,
                reduction=reduction,
                name="hidden",
            ),
            keras.layers.Dense(2, name="out"),
        ]
    )
    # PSPDense also holds λ: copy only the kernels and biases.
    for name in ("hidden", "out"):
        layer = model.get_layer(name)
        layer.kernel.assign(weights[name][0])
        layer.bias.assign(weights[name][1])
    return model


def _weights(model):
    return {
        name: [to_numpy(v) for v in (layer.kernel, layer.bias)]
        for name, layer in ((n, model.get_layer(n)) for n in ("hidden", "out"))
    }


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("batch_size", [3, 8])
def test_recorded_loss_is_psp_penalty_and_psp_dense_loss(reduction, batch_size):
    x = np.random.randn(batch_size, 6).astype("float32") * 2
    y = np.random.randn(batch_size, 2).astype("float32")
    model = _regularized_model(0.3, reduction)
    model(x)
    weights = _weights(model)
    kernel, bias = weights["hidden"]
    z = x @ kernel + bias
    expected = to_numpy(psp_penalty(z, 0.3, reduction))
    reference = numpy_sum if reduction == "sum" else numpy_mean
    np.testing.assert_allclose(expected, reference(z, 0.3), rtol=1e-5)

    # The loss recorded by a forward call.
    (loss,) = model.losses
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    np.testing.assert_allclose(to_numpy(loss), expected, rtol=RTOL)

    # ... equals PSPDense's, with the same weights.
    psp_model = _psp_dense_model(0.3, reduction, weights)
    psp_model(x)
    np.testing.assert_allclose(
        to_numpy(model.losses[0]), to_numpy(psp_model.losses[0]), rtol=RTOL
    )

    # The training loss: data loss plus the penalty, in compute_loss and in
    # evaluate's compiled step.
    for m in (model, psp_model):
        m.compile(keras.optimizers.SGD(0.1), loss="mse")
    y_pred = model(x)
    mse = np.mean((to_numpy(y_pred) - y) ** 2)
    computed = model.compute_loss(x=x, y=y, y_pred=y_pred)
    np.testing.assert_allclose(to_numpy(computed), mse + expected, rtol=1e-5)
    evaluated = model.evaluate(x, y, batch_size=batch_size, verbose=0)
    np.testing.assert_allclose(evaluated, mse + expected, rtol=1e-5)
    np.testing.assert_allclose(
        evaluated,
        psp_model.evaluate(x, y, batch_size=batch_size, verbose=0),
        rtol=RTOL,
    )

    # One SGD step moves both models' weights alike: same gradients.
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
    psp_model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
    others = _weights(psp_model)
    for name, values in _weights(model).items():
        for value, other in zip(values, others[name], strict=True):
            np.testing.assert_allclose(value, other, rtol=1e-5, atol=1e-6)


def test_rank_4_activations_of_a_convolution():
    x = np.random.randn(3, 5, 5, 2).astype("float32")
    conv = keras.layers.Conv2D(
        4, 3, activity_regularizer=PSPRegularizer(0.1, "sum")
    )
    z = to_numpy(conv(x))
    np.testing.assert_allclose(
        to_numpy(conv.losses[0]), numpy_sum(z, 0.1), rtol=1e-5
    )


def test_save_and_load_keras_file(tmp_path):
    x = np.random.randn(5, 6).astype("float32")
    model = _regularized_model(0.25, "mean")
    expected = to_numpy(model(x))
    expected_loss = to_numpy(model.losses[0])
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects
    regularizer = loaded.get_layer("hidden").activity_regularizer
    assert isinstance(regularizer, PSPRegularizer)
    assert regularizer.strength == 0.25
    assert regularizer.reduction == "mean"
    np.testing.assert_allclose(to_numpy(loaded(x)), expected, rtol=1e-6)
    (loss,) = loaded.losses
    np.testing.assert_allclose(to_numpy(loss), expected_loss, rtol=1e-6)


def test_config_round_trip():
    regularizer = PSPRegularizer(strength=0.02, reduction="mean")
    config = regularizer.get_config()
    assert config == {"strength": 0.02, "reduction": "mean"}
    clone = PSPRegularizer.from_config(config)
    assert (clone.strength, clone.reduction) == (0.02, "mean")
    serialized = keras.regularizers.serialize(regularizer)
    restored = keras.regularizers.deserialize(serialized)
    assert isinstance(restored, PSPRegularizer)
    assert restored.get_config() == config
    assert PSPRegularizer().get_config() == {
        "strength": 1e-3,
        "reduction": "sum",
    }


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        ({"reduction": "Sum"}, ValueError, "`reduction`.*'Sum'"),
        ({"reduction": "none"}, ValueError, "`reduction`"),
        ({"strength": -1e-3}, ValueError, "`strength`.*-0.001"),
        ({"strength": math.nan}, ValueError, "`strength`"),
        ({"strength": math.inf}, ValueError, "`strength`"),
        ({"strength": True}, TypeError, "`strength`.*bool"),
        ({"strength": "1e-3"}, TypeError, "`strength`"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        PSPRegularizer(**kwargs)


def test_float32_and_finite_for_large_float16_activations():
    keras.config.set_dtype_policy("mixed_float16")
    dense = keras.layers.Dense(
        8, kernel_initializer="ones", activity_regularizer=PSPRegularizer()
    )
    z = dense(np.full((4, 16), 30.0, dtype="float32"))  # z = 480
    assert keras.backend.standardize_dtype(z.dtype) == "float16"
    (loss,) = dense.losses
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    np.testing.assert_allclose(
        to_numpy(loss), numpy_sum(np.full((4, 8), 480.0), 1e-3), rtol=1e-3
    )


@pytest.mark.parametrize(
    "version, divides",
    [
        ("3.8.0", False),
        ("3.13.2", False),
        ("3.14.0", True),
        ("3.14.0.dev2026012303", True),
        ("3.15.1", True),
        ("4.0.0", True),
    ],
)
def test_keras_versions_that_divide_activity_losses(version, divides):
    assert _keras_divides_activity_loss(version) is divides
