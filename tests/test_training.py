import keras
import numpy as np
import pytest

from keras_psp import training
from keras_psp.models import LeNet5
from keras_psp.models.psp_model import psp_losses


def _rate(schedule, step):
    return float(keras.ops.convert_to_numpy(schedule(step)))


def test_step_decay_switches_on_the_first_step_of_each_decay_epoch():
    steps = 391  # CIFAR-10 at batch 128
    schedule = training.step_decay(steps)
    for epoch, expected in [
        (0, 0.1),
        (149, 0.1),
        (150, 0.01),
        (249, 0.01),
        (250, 1e-3),
        (350, 1e-4),
        (400, 1e-4),
    ]:
        first_step = epoch * steps
        assert _rate(schedule, first_step) == pytest.approx(expected)
        assert _rate(schedule, first_step + steps - 1) == pytest.approx(
            expected
        )


def test_cosine_decay_with_warmup():
    schedule = training.cosine_decay(10, epochs=5, warmup_epochs=1)
    assert _rate(schedule, 0) == pytest.approx(0.0)
    assert _rate(schedule, 10) == pytest.approx(0.1)
    assert _rate(schedule, 30) == pytest.approx(0.05, rel=1e-3)
    assert _rate(schedule, 50) == pytest.approx(0.0, abs=1e-7)
    plain = training.cosine_decay(10, epochs=5)
    assert _rate(plain, 0) == pytest.approx(0.1)


def test_paper_optimizer():
    optimizer = training.paper_optimizer(391)
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert optimizer.momentum == 0.9
    assert float(optimizer.learning_rate) == pytest.approx(0.1)
    mnist = training.paper_optimizer(600, "constant", momentum=0.0)
    assert float(mnist.learning_rate) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"steps_per_epoch": 0}, "`steps_per_epoch`"),
        ({"steps_per_epoch": 10, "schedule": "linear"}, "`schedule`"),
        ({"steps_per_epoch": 10, "schedule": "cosine"}, "`epochs`"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        training.paper_optimizer(**kwargs)
    with pytest.raises(ValueError, match="`decay_epochs`"):
        training.step_decay(10, decay_epochs=(250, 150))
    with pytest.raises(ValueError, match="`warmup_epochs`"):
        training.cosine_decay(10, epochs=5, warmup_epochs=5)


def test_compiled_mixed_precision_step_keeps_penalty_in_float32():
    """The GPU path (XLA / jit / torch.compile + mixed_float16), on CPU."""
    keras.config.set_dtype_policy("mixed_float16")
    model = LeNet5(input_shape=(32, 32, 3), psp_strength=1e-3)
    model.compile(
        training.paper_optimizer(2, "cosine", epochs=2),
        "sparse_categorical_crossentropy",
        jit_compile=True,
    )
    assert model.jit_compile
    x = np.random.rand(8, 32, 32, 3).astype("float32")
    y = np.arange(8)
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert np.all(np.asarray(history.history["psp_loss"]) > 0)
    model(x[:2])
    dtypes = {
        keras.backend.standardize_dtype(t.dtype) for t in psp_losses(model)
    }
    assert dtypes == {"float32"}


def _values(variable):
    return np.asarray(keras.ops.convert_to_numpy(variable))


def test_pytorch_initialization_draws_from_pytorchs_bounds():
    model = LeNet5(psp_strength=1e-3)
    names = training.pytorch_initialization(model, seed=3)
    assert names == ["conv1", "conv2", "fc1", "predictions_logits"]
    fan_ins = {"conv1": 5 * 5, "conv2": 5 * 5 * 20, "fc1": 800}
    fan_ins["predictions_logits"] = 500
    for name, fan_in in fan_ins.items():
        layer = model.get_layer(name)
        bound = fan_in**-0.5
        for variable in (layer.kernel, layer.bias):
            values = _values(variable)
            # Uniform over the whole interval (Keras' biases start at 0).
            assert np.abs(values).max() <= bound
            assert np.abs(values).max() > 0.8 * bound
        kernel = _values(layer.kernel)
        assert kernel.std() == pytest.approx(bound / np.sqrt(3), rel=0.1)
        assert abs(kernel.mean()) < 0.1 * bound
        # λ (a PSP layer's variable) is left as it was.
        assert float(_values(layer.strength)) == pytest.approx(1e-3 / 4)

    again = LeNet5(psp_strength=1e-3)
    training.pytorch_initialization(again, seed=3)
    other = LeNet5(psp_strength=1e-3)
    training.pytorch_initialization(other, seed=4)
    first = _values(model.get_layer("fc1").kernel)
    np.testing.assert_array_equal(first, _values(again.get_layer("fc1").kernel))
    assert not np.allclose(first, _values(other.get_layer("fc1").kernel))


def test_pytorch_initialization_of_depthwise_and_nested_layers():
    depthwise = keras.layers.DepthwiseConv2D(3, depth_multiplier=2)
    transpose = keras.layers.Conv2DTranspose(4, 3)
    inner = keras.Sequential([keras.Input((8, 8, 4)), depthwise], name="inner")
    model = keras.Sequential([keras.Input((8, 8, 4)), inner, transpose])
    before = _values(transpose.kernel)
    assert training.pytorch_initialization(model, seed=0) == [depthwise.name]
    # PyTorch's groups: a depthwise filter sees one channel, 3×3 inputs.
    values = _values(depthwise.kernel)
    assert 0.8 / 3 < np.abs(values).max() <= 1 / 3
    np.testing.assert_array_equal(before, _values(transpose.kernel))
