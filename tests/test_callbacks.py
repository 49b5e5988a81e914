import json

import keras
import numpy as np
import pytest

import keras_psp
from keras_psp import apply_psp
from keras_psp.callbacks import PreActivationMonitor
from keras_psp.callbacks import StrengthScheduler
from keras_psp.callbacks import cosine_strength
from keras_psp.callbacks import step_strength
from keras_psp.callbacks import warmup_strength
from keras_psp.models import LeNet5
from keras_psp.models.psp_model import PSPModel
from keras_psp.models.psp_model import psp_layers
from tests.helpers import to_numpy
from tests.test_penalty import numpy_mean

L = keras.layers


def _data(n=32):
    x = np.random.randn(n, 28, 28, 1).astype("float32")
    y = np.random.randint(0, 10, size=n)
    return x, y


def _expected_z2(model, x):
    """⟨z²⟩ per layer, computed directly from the weights in numpy."""
    conv1 = model.get_layer("conv1")
    inputs = keras.Input((28, 28, 1))
    conv = L.Conv2D(20, 5)
    z1 = keras.Model(inputs, conv(inputs))
    conv.set_weights([to_numpy(conv1.kernel), to_numpy(conv1.bias)])
    return {"conv1": numpy_mean(to_numpy(z1(x)), 1.0)}


@pytest.mark.parametrize("regime", ["none", "l2", "psp"])
def test_monitor_logs_z2_for_every_regime(regime, tmp_path):
    kwargs = {
        "none": {},
        "l2": {"weight_decay": 1e-4},
        "psp": {"psp_strength": 1e-3},
    }
    model = LeNet5(**kwargs[regime])
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    x, y = _data()
    held_out = np.random.randn(16, 28, 28, 1).astype("float32")
    monitor = PreActivationMonitor(held_out)
    csv = tmp_path / "history.csv"
    history = model.fit(
        x,
        y,
        epochs=2,
        batch_size=16,
        verbose=0,
        callbacks=[monitor, keras.callbacks.CSVLogger(str(csv))],
    )
    keys = {"z2/conv1", "z2/conv2", "z2/fc1", "z2_mean"}
    assert keys <= set(history.history)
    # The logits are the softmax layer's input (none/L2) or the PSP dense.
    logits = "z2/predictions" if regime != "psp" else "z2/predictions_logits"
    assert logits in history.history
    assert ("psp_term" in history.history) == (regime == "psp")
    header = csv.read_text().splitlines()[0].split(",")
    assert "z2/conv1" in header and "z2_mean" in header
    # The last epoch's value is that of the final weights.
    np.testing.assert_allclose(
        history.history["z2/conv1"][-1],
        _expected_z2(model, held_out)["conv1"],
        rtol=1e-4,
    )


@pytest.mark.parametrize("name", ["per_layer", "regularize_logits"])
def test_monitor_refuses_a_flag_that_is_not_a_bool(name):
    with pytest.raises(TypeError, match=f"`{name}` must be a bool"):
        PreActivationMonitor(np.zeros((2, 28, 28, 1)), **{name: "no"})


def test_monitor_psp_term_equals_the_models_penalty():
    model = LeNet5(psp_strength=1e-3)
    x = np.random.randn(16, 28, 28, 1).astype("float32")
    values = PreActivationMonitor(x)
    values.set_model(model)
    measured = values.measure()
    model(x, training=False)
    expected = sum(float(to_numpy(loss)) for loss in model.losses)
    np.testing.assert_allclose(measured["psp_term"], expected, rtol=1e-5)
    assert len([k for k in measured if k.startswith("z2/")]) == 4


def test_monitor_measures_activations_applied_with_keras_ops():
    from tests.test_conversion_graphs import activation_ops

    model, _, _ = activation_ops()
    x = np.random.randn(8, 4).astype("float32")
    values = PreActivationMonitor(x)
    values.set_model(model)
    measured = values.measure()
    keys = {"relu", "gelu", "leaky_relu", "softplus", "softmax"}
    assert {k for k in measured if k.startswith("z2/")} == {
        f"z2/{k}" for k in keys
    }
    fc3 = to_numpy(keras.Model(model.input, model.get_layer("fc3").output)(x))
    np.testing.assert_allclose(
        measured["z2/leaky_relu"], np.mean((fc3 + 1.0) ** 2), rtol=1e-5
    )


def test_monitor_takes_a_batch_from_a_tf_data_pipeline():
    # As in the notebooks: the held-out batch is a tf.Tensor, on any backend.
    import tensorflow as tf

    x = np.random.randn(16, 28, 28, 1).astype("float32")
    batch = next(iter(tf.data.Dataset.from_tensor_slices(x).batch(16)))
    assert isinstance(batch, tf.Tensor)
    model = LeNet5(psp_strength=1e-3)
    from_numpy, from_tf = PreActivationMonitor(x), PreActivationMonitor(batch)
    from_numpy.set_model(model)
    from_tf.set_model(model)
    expected = from_numpy.measure()
    measured = from_tf.measure()
    assert set(measured) == set(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(measured[key], value, rtol=1e-6)


def test_monitor_on_converted_keras_application():
    base = keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), classes=4
    )
    x = np.random.rand(4, 32, 32, 3).astype("float32")
    plain = PreActivationMonitor(x)
    plain.set_model(base)
    converted = PreActivationMonitor(x)
    converted.set_model(apply_psp(base, 1e-3))
    before, after = plain.measure(), converted.measure()
    z2 = {k: v for k, v in before.items() if k.startswith("z2/")}
    assert len(z2) == 36  # 35 ReLU6 + the logits
    for key, value in z2.items():
        np.testing.assert_allclose(after[key], value, rtol=1e-4)


# The factor functions StrengthScheduler took before λ schedules: the new
# helpers must give exactly strength × these.
def _old_step(epoch, decay_epochs, factor):
    return factor ** sum(epoch >= e for e in decay_epochs)


def _old_cosine(epoch, epochs, final_factor):
    progress = min(epoch / max(epochs - 1, 1), 1.0)
    return final_factor + (1 - final_factor) * 0.5 * (
        1 + np.cos(np.pi * progress)
    )


def _old_warmup(epoch, epochs):
    return min((epoch + 1) / epochs, 1.0)


def _values(schedule, epochs):
    return np.array([float(to_numpy(schedule(e))) for e in range(epochs)])


def _assert_strengths(schedule, expected, strength):
    # λ is float32; near 0 (a cosine's end) compare against λ's scale.
    np.testing.assert_allclose(
        _values(schedule, len(expected)),
        expected,
        rtol=1e-6,
        atol=1e-6 * strength,
    )


@pytest.mark.parametrize(
    "decay_epochs, factor",
    [([2, 4], 0.1), ([4, 2], 0.5), ([0, 3, 3], 0.5), ([1], 0.0), ([], 0.1)],
)
def test_step_strength_is_the_old_factor_times_strength(decay_epochs, factor):
    strength = 3e-3
    schedule = step_strength(strength, decay_epochs, factor)
    assert isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule)
    if decay_epochs:
        assert isinstance(
            schedule, keras.optimizers.schedules.PiecewiseConstantDecay
        )
    expected = [strength * _old_step(e, decay_epochs, factor) for e in range(8)]
    _assert_strengths(schedule, expected, strength)


@pytest.mark.parametrize("epochs", [1, 2, 5, 50])
@pytest.mark.parametrize("final_factor", [0.0, 0.2])
def test_cosine_strength_is_the_old_factor_times_strength(epochs, final_factor):
    strength = 2e-3
    schedule = cosine_strength(strength, epochs, final_factor=final_factor)
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    expected = [
        strength * _old_cosine(e, epochs, final_factor)
        for e in range(epochs + 5)
    ]
    _assert_strengths(schedule, expected, strength)
    # Keras' CosineDecay reaches alpha × initial at step decay_steps.
    np.testing.assert_allclose(
        float(to_numpy(schedule(max(epochs - 1, 1)))),
        strength * final_factor,
        rtol=1e-6,
        atol=1e-6 * strength,
    )


@pytest.mark.parametrize("epochs", [1, 2, 4, 10])
def test_warmup_strength_is_the_old_factor_times_strength(epochs):
    strength = 1e-3
    schedule = warmup_strength(strength, epochs)
    expected = [strength * _old_warmup(e, epochs) for e in range(epochs + 5)]
    _assert_strengths(schedule, expected, strength)


def test_strength_helpers_bad_arguments():
    with pytest.raises(ValueError, match="`strength`"):
        step_strength(-1e-3, [1])
    with pytest.raises(TypeError, match="`strength`"):
        cosine_strength("1e-3", 10)
    with pytest.raises(ValueError, match="`decay_epochs`"):
        step_strength(1e-3, [-1])
    with pytest.raises(ValueError, match="`decay_epochs`"):
        step_strength(1e-3, 5)
    with pytest.raises(ValueError, match="`decay_epochs`"):
        step_strength(1e-3, [1.5])
    with pytest.raises(ValueError, match="`factor`"):
        step_strength(1e-3, [1], factor=float("nan"))
    with pytest.raises(ValueError, match="`epochs`"):
        cosine_strength(1e-3, 0)
    with pytest.raises(ValueError, match="`final_factor`"):
        cosine_strength(1e-3, 10, final_factor=-0.1)
    with pytest.raises(ValueError, match="`epochs`"):
        warmup_strength(1e-3, 2.5)


class _StrengthSpy(keras.callbacks.Callback):
    """Records each PSP layer's λ (during the epoch) and the train function."""

    def __init__(self):
        super().__init__()
        self.strengths, self.functions = {}, []

    def on_epoch_end(self, epoch, logs=None):
        self.functions.append(self.model.train_function)
        self.strengths[epoch] = [
            float(to_numpy(layer.strength)) for layer in psp_layers(self.model)
        ]


def _lenet(strength=4e-3, lr=0.0):
    model = LeNet5(psp_strength=strength)  # 4 PSP layers: λ/4 each
    model.compile(keras.optimizers.SGD(lr), "sparse_categorical_crossentropy")
    return model


def test_scheduler_sets_and_logs_the_schedules_strength():
    model = _lenet(4e-3)
    x, y = _data(16)
    spy = _StrengthSpy()
    schedule = step_strength(4e-3, [1, 2], 0.5)
    history = model.fit(
        x,
        y,
        epochs=3,
        batch_size=16,
        verbose=0,
        callbacks=[StrengthScheduler(schedule), spy],
    )
    expected = [4e-3, 2e-3, 1e-3]
    logged = history.history["psp_strength"]
    assert all(isinstance(value, float) for value in logged)
    np.testing.assert_allclose(logged, _values(schedule, 3), rtol=0)
    np.testing.assert_allclose(logged, expected, rtol=1e-6)
    # The model's λ is the sum of the layers': each keeps its quarter.
    for epoch, strength in enumerate(expected):
        np.testing.assert_allclose(
            spy.strengths[epoch], [strength / 4] * 4, rtol=1e-6
        )
    first, second, third = history.history["psp_loss"]
    # lr=0: the weights are fixed, so the term follows λ exactly.
    np.testing.assert_allclose(
        [second, third], [first / 2, first / 4], rtol=1e-4
    )
    # The train step reads the variables: nothing is recompiled.
    assert spy.functions[0] is spy.functions[1] is spy.functions[2]


def test_scheduler_keeps_each_layers_share_of_the_strength():
    inputs = keras.Input((4,))
    hidden = keras_psp.PSPDense(8, activation="relu", strength=1e-3)(inputs)
    hidden = keras_psp.PSPDense(8, activation="relu", strength=3e-3)(hidden)
    model = PSPModel(inputs, keras.layers.Dense(1)(hidden))
    model.compile(keras.optimizers.SGD(0.0), "mse")
    spy = _StrengthSpy()
    schedule = keras.optimizers.schedules.ExponentialDecay(
        8e-3, decay_steps=1, decay_rate=0.5
    )
    history = model.fit(
        np.ones((8, 4)),
        np.ones((8, 1)),
        epochs=3,
        verbose=0,
        callbacks=[StrengthScheduler(schedule), spy],
    )
    np.testing.assert_allclose(
        history.history["psp_strength"], [8e-3, 4e-3, 2e-3], rtol=1e-6
    )
    for epoch, strength in enumerate([8e-3, 4e-3, 2e-3]):
        np.testing.assert_allclose(
            spy.strengths[epoch], [strength / 4, 3 * strength / 4], rtol=1e-6
        )


def test_scheduler_shares_a_zero_strength_equally():
    model = _lenet(4e-3)
    for layer in psp_layers(model):
        layer.strength.assign(0.0)
    spy = _StrengthSpy()
    x, y = _data(16)
    model.fit(
        x,
        y,
        epochs=1,
        batch_size=16,
        verbose=0,
        callbacks=[StrengthScheduler(step_strength(2e-3, [])), spy],
    )
    np.testing.assert_allclose(spy.strengths[0], [5e-4] * 4, rtol=1e-6)


@pytest.mark.parametrize(
    "schedule",
    [
        step_strength(1e-3, [2, 5], 0.1),
        cosine_strength(1e-3, 8, final_factor=0.1),
        warmup_strength(1e-3, 4),
        keras.optimizers.schedules.ExponentialDecay(1e-3, 2, 0.5),
        keras.optimizers.schedules.CosineDecay(
            1e-4, 6, alpha=0.1, warmup_target=1e-3, warmup_steps=3
        ),
    ],
    ids=["step", "cosine", "warmup", "exponential", "keras_cosine_warmup"],
)
def test_scheduler_config_round_trip(schedule):
    scheduler = StrengthScheduler(schedule, verbose=1)
    config = scheduler.get_config()
    assert set(config) == {"schedule", "verbose"}
    assert config["schedule"] == keras.optimizers.schedules.serialize(schedule)
    text = json.dumps(config)
    rebuilt = StrengthScheduler.from_config(json.loads(text))
    assert isinstance(rebuilt, StrengthScheduler)
    assert rebuilt.verbose == 1
    assert type(rebuilt.schedule) is type(schedule)
    assert rebuilt.schedule is not schedule
    for epoch in range(12):
        assert rebuilt.strength(epoch) == scheduler.strength(epoch)


@pytest.mark.parametrize(
    "schedule",
    [0.5, None, "cosine", lambda epoch: 1e-3, step_strength],
    ids=["float", "none", "string", "function", "helper_not_called"],
)
def test_scheduler_refuses_what_is_not_a_schedule(schedule):
    with pytest.raises(TypeError, match=r"Argument `schedule` must be .*"):
        StrengthScheduler(schedule)


class _Listed(keras.optimizers.schedules.LearningRateSchedule):
    """λ from a list, by epoch (Python floats, as a user's schedule may)."""

    def __init__(self, values):
        self.values = values

    def __call__(self, step):
        return self.values[int(step)]

    def get_config(self):
        return {"values": self.values}


@pytest.mark.parametrize(
    "values, epoch, shown",
    [
        ([-1e-3], 0, "-0.001"),
        ([1e-3, float("nan")], 1, "nan"),
        ([1e-3, 1e-3, 1e39], 2, "1e+39"),  # finite in float64, not float32
        ([1e-3, float("inf")], 1, "inf"),
        ([1e-3, np.ones(2)], 1, "array"),
    ],
    ids=["negative", "nan", "not_float32", "inf", "not_scalar"],
)
def test_scheduler_refuses_a_bad_strength_at_its_epoch(values, epoch, shown):
    model = _lenet(1e-3)
    x, y = _data(4)
    spy = _StrengthSpy()
    with pytest.raises(
        ValueError, match=rf"Argument `schedule` .* epoch {epoch} "
    ) as info:
        model.fit(
            x,
            y,
            epochs=3,
            verbose=0,
            callbacks=[StrengthScheduler(_Listed(values)), spy],
        )
    assert f"gave {shown}" in str(info.value)
    # It stops before that epoch, with λ untouched since the last good one.
    assert sorted(spy.strengths) == list(range(epoch))
    for layer in psp_layers(model):
        assert np.isfinite(float(to_numpy(layer.strength)))


def test_scheduler_needs_psp_layers():
    plain = LeNet5()
    plain.compile("sgd", "sparse_categorical_crossentropy")
    x, y = _data(4)
    with pytest.raises(ValueError, match="PSP layers"):
        plain.fit(
            x,
            y,
            epochs=1,
            verbose=0,
            callbacks=[StrengthScheduler(step_strength(1e-3, []))],
        )


def test_resumed_run_gets_the_uninterrupted_runs_strength(tmp_path):
    x, y = _data(16)
    schedule = step_strength(4e-3, [1, 3], 0.1)
    scheduler = StrengthScheduler(schedule)
    # Uninterrupted: 4 epochs.
    whole, whole_spy = _lenet(4e-3, lr=0.01), _StrengthSpy()
    whole_history = whole.fit(
        x,
        y,
        epochs=4,
        batch_size=16,
        verbose=0,
        callbacks=[scheduler, whole_spy],
    )
    # Interrupted after 2 epochs: the weights saved hold the decayed λ.
    first = _lenet(4e-3, lr=0.01)
    first.fit(
        x,
        y,
        epochs=2,
        batch_size=16,
        verbose=0,
        callbacks=[StrengthScheduler(schedule)],
    )
    path = str(tmp_path / "run.weights.h5")
    first.save_weights(path)
    resumed = _lenet(4e-3, lr=0.01)
    resumed.load_weights(path)
    restored = [float(to_numpy(la.strength)) for la in psp_layers(resumed)]
    np.testing.assert_allclose(restored, [1e-4] * 4, rtol=1e-6)  # 4e-4 / 4
    # Resumed from the recorded config, as a run would.
    config = json.loads(json.dumps(scheduler.get_config()))
    resumed_spy = _StrengthSpy()
    resumed_history = resumed.fit(
        x,
        y,
        initial_epoch=2,
        epochs=4,
        batch_size=16,
        verbose=0,
        callbacks=[StrengthScheduler.from_config(config), resumed_spy],
    )
    assert resumed_history.epoch == [2, 3]
    assert (
        resumed_history.history["psp_strength"]
        == (whole_history.history["psp_strength"][2:])
    )
    np.testing.assert_allclose(
        whole_history.history["psp_strength"],
        [4e-3, 4e-4, 4e-4, 4e-5],
        rtol=1e-6,
    )
    for epoch in (2, 3):
        assert resumed_spy.strengths[epoch] == whole_spy.strengths[epoch]


def test_backup_and_restore_resumes_with_the_schedules_strength(tmp_path):
    x, y = _data(16)
    schedule = step_strength(4e-3, [1, 3], 0.1)

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("interrupted")

    backup = str(tmp_path / "backup")
    model = _lenet(4e-3, lr=0.01)
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(
            x,
            y,
            epochs=4,
            batch_size=16,
            verbose=0,
            callbacks=[
                StrengthScheduler(schedule),
                keras.callbacks.BackupAndRestore(backup),
                Interrupt(),
            ],
        )
    resumed, spy = _lenet(4e-3, lr=0.01), _StrengthSpy()
    history = resumed.fit(
        x,
        y,
        epochs=4,
        batch_size=16,
        verbose=0,
        callbacks=[
            StrengthScheduler(schedule),
            keras.callbacks.BackupAndRestore(backup),
            spy,
        ],
    )
    assert history.epoch == [2, 3]
    np.testing.assert_allclose(
        history.history["psp_strength"], [4e-4, 4e-5], rtol=1e-6
    )
    np.testing.assert_allclose(spy.strengths[2], [1e-4] * 4, rtol=1e-6)
    np.testing.assert_allclose(spy.strengths[3], [1e-5] * 4, rtol=1e-6)


def test_monitor_measures_layers_inside_nested_models_and_shared_layers():
    inner = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(5, activation="relu", name="fc"),
        ],
        name="inner",
    )
    a, b = keras.Input((4,)), keras.Input((4,))
    shared = keras.layers.Dense(4, activation="tanh", name="shared")
    merged = keras.layers.Concatenate()([inner(shared(a)), shared(b)])
    model = keras.Model([a, b], keras.layers.Dense(2, name="logits")(merged))
    x = [np.random.randn(8, 4).astype("float32") for _ in range(2)]
    before = model.predict(x, verbose=0)
    monitor = PreActivationMonitor(x)
    monitor.set_model(model)
    values = monitor.measure()
    assert set(values) == {
        "z2/shared",
        "z2/shared_call2",
        "z2/inner/fc",
        "z2/logits",
        "z2_mean",
    }
    # Each value is ⟨z²⟩ of that call's pre-activation, computed by hand.
    kernel, bias = (to_numpy(w) for w in shared.weights)
    z_a, z_b = x[0] @ kernel + bias, x[1] @ kernel + bias
    np.testing.assert_allclose(values["z2/shared"], np.mean(z_a**2), rtol=1e-5)
    np.testing.assert_allclose(
        values["z2/shared_call2"], np.mean(z_b**2), rtol=1e-5
    )
    fc_kernel, fc_bias = (to_numpy(w) for w in inner.get_layer("fc").weights)
    z_fc = np.tanh(z_a) @ fc_kernel + fc_bias
    np.testing.assert_allclose(
        values["z2/inner/fc"], np.mean(z_fc**2), rtol=1e-5
    )
    # The model's own graph is unchanged: it still predicts as before.
    np.testing.assert_array_equal(model.predict(x, verbose=0), before)
