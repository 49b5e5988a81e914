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
