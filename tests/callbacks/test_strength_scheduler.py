"""`StrengthScheduler`: λ on the scale the model was built with, whichever
way it was built (PSP layers, `apply_psp` with or without
`divide_by_num_layers`, the builders), logged as `psp_strength`."""

import json

import keras
import numpy as np
import pytest

import keras_psp
from keras_psp import apply_psp
from keras_psp.callbacks import StrengthScheduler
from keras_psp.callbacks import cosine_strength
from keras_psp.callbacks import step_strength
from keras_psp.callbacks import warmup_strength
from keras_psp.conversion.psp_state import PSPState
from keras_psp.models import LeNet5
from keras_psp.models.psp_model import PSPModel
from keras_psp.models.psp_model import model_strength
from keras_psp.models.psp_model import psp_layers
from tests.helpers import to_numpy

L = keras.layers


def _data(n=32):
    x = np.random.randn(n, 28, 28, 1).astype("float32")
    y = np.random.randint(0, 10, size=n)
    return x, y


def _values(schedule, epochs):
    return np.array([float(to_numpy(schedule(e))) for e in range(epochs)])


def _strengths(model):
    return [float(to_numpy(layer.strength)) for layer in psp_layers(model)]


def _plain():
    return keras.Sequential(
        [
            keras.Input((4,)),
            L.Dense(8, activation="relu", name="fc1"),
            L.Dense(8, activation="relu", name="fc2"),
            L.Dense(3, activation="softmax", name="fc3"),
        ]
    )


def _psp_layers(strength):
    inputs = keras.Input((4,))
    x = keras_psp.PSPDense(8, activation="relu", strength=strength)(inputs)
    x = keras_psp.PreActivationRegularizer(
        L.Dense(8, activation="tanh"), strength=strength
    )(x)
    x = L.Dense(3)(x)
    x = keras_psp.PSPActivation("relu", strength=strength)(x)
    return PSPModel(inputs, x)


# Each way of writing λ: the model, and L (each layer's λ is λ/L).
WAYS = {
    "psp_layers": (_psp_layers, 1),
    "apply_psp": (lambda s: apply_psp(_plain(), s), 1),
    "apply_psp_divided": (
        lambda s: apply_psp(_plain(), s, divide_by_num_layers=True),
        3,
    ),
    "builder": (lambda s: LeNet5(psp_strength=s), 4),
    "builder_undivided": (
        lambda s: LeNet5(psp_strength=s, psp_divide_by_num_layers=False),
        1,
    ),
}


@pytest.mark.parametrize("way", sorted(WAYS))
def test_a_schedule_from_the_built_strength_changes_nothing_at_epoch_0(way):
    build, divisor = WAYS[way]
    strength = 3e-3
    model = build(strength)
    built = _strengths(model)
    # What the user wrote is what each layer got (λ/L where asked for).
    np.testing.assert_allclose(built, strength / divisor, rtol=1e-7)
    assert {layer.strength_divisor for layer in psp_layers(model)} == {divisor}
    assert model_strength(model) == pytest.approx(strength, rel=1e-7)
    scheduler = StrengthScheduler(step_strength(strength, [1], 0.1))
    scheduler.set_model(model)
    scheduler.on_train_begin()
    scheduler.on_epoch_begin(0)
    assert _strengths(model) == built  # bit for bit
    logs = {}
    scheduler.on_epoch_end(0, logs)
    assert logs["psp_strength"] == pytest.approx(strength, rel=1e-7)
    scheduler.on_epoch_begin(1)
    np.testing.assert_allclose(
        _strengths(model), strength / divisor / 10, rtol=1e-6
    )
    assert model_strength(model) == pytest.approx(strength / 10, rel=1e-6)


def test_psp_layers_keep_the_strength_they_were_given_during_fit():
    # The case: two PSPDense at λ = 1e-3 got 5e-4 each.
    def build():
        keras.utils.set_random_seed(1)
        inputs = keras.Input((4,))
        x = keras_psp.PSPDense(8, activation="relu", strength=1e-3)(inputs)
        x = keras_psp.PSPDense(8, activation="relu", strength=1e-3)(x)
        model = PSPModel(inputs, L.Dense(1)(x))
        model.compile(keras.optimizers.SGD(0.0), "mse")
        return model

    x, y = np.random.randn(8, 4), np.ones((8, 1))
    unscheduled = build().fit(x, y, epochs=1, verbose=0, shuffle=False)
    model, spy = build(), _StrengthSpy()
    history = model.fit(
        x,
        y,
        epochs=2,
        verbose=0,
        shuffle=False,
        callbacks=[StrengthScheduler(step_strength(1e-3, [1], 0.5)), spy],
    ).history
    np.testing.assert_allclose(spy.strengths[0], [1e-3, 1e-3], rtol=1e-7)
    np.testing.assert_allclose(spy.strengths[1], [5e-4, 5e-4], rtol=1e-7)
    np.testing.assert_allclose(history["psp_strength"], [1e-3, 5e-4])
    np.testing.assert_allclose(
        history["psp_loss"][0], unscheduled.history["psp_loss"][0], rtol=1e-6
    )
    np.testing.assert_allclose(
        history["psp_loss"][1], history["psp_loss"][0] / 2, rtol=1e-5
    )


def test_layers_of_different_strengths_keep_their_ratios():
    # λ/2 on the two terms apply_psp attached with divide_by_num_layers (λ =
    # 1e-3 on the user's scale), beside a PSPDense given 4e-3: the model's λ
    # is the largest, 4e-3, and each PSP layer keeps its ratio to it.
    base = keras.Sequential(
        [
            keras.Input((4,)),
            L.Dense(8, activation="relu", name="fc1"),
            keras_psp.PSPDense(8, "relu", strength=4e-3, name="psp"),
            L.Dense(2, name="logits"),
        ]
    )
    model = apply_psp(base, 1e-3, divide_by_num_layers=True)
    # The PSPDense is regularized already: fc1 and the logits are the 2.
    assert [t.layer.name for t in keras_psp.psp_terms(model)] == [
        "fc1",
        "logits",
    ]
    state, psp = psp_layers(model)
    assert isinstance(state, PSPState) and psp.name == "psp"
    built = _strengths(model)
    np.testing.assert_allclose(built, [5e-4, 4e-3], rtol=1e-7)
    assert [la.strength_divisor for la in (state, psp)] == [2, 1]
    assert model_strength(model) == pytest.approx(4e-3)
    scheduler = StrengthScheduler(step_strength(4e-3, [1], 0.5))
    scheduler.set_model(model)
    scheduler.on_train_begin()
    scheduler.on_epoch_begin(0)
    assert _strengths(model) == built
    x = np.random.rand(2, 4).astype("float32")
    model(x)
    before = [float(to_numpy(t)) for t in model.losses]
    assert len(before) == 3
    scheduler.on_epoch_begin(1)
    np.testing.assert_allclose(_strengths(model), [2.5e-4, 2e-3], rtol=1e-6)
    # Every term follows its layer's λ: halved.
    model(x)
    after = [float(to_numpy(t)) for t in model.losses]
    np.testing.assert_allclose(after, np.array(before) / 2, rtol=1e-6)


def test_a_saved_model_keeps_the_users_scale(tmp_path):
    # Saving keeps the plain model; enable_psp with the same arguments after
    # loading gives each term the same λ/L, and the schedule its scale.
    model = apply_psp(_plain(), 3e-3, "mean", divide_by_num_layers=True)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert not psp_layers(loaded)
    with pytest.raises(ValueError, match="has no PSP layer"):
        model_strength(loaded)
    keras_psp.enable_psp(loaded, 3e-3, "mean", divide_by_num_layers=True)
    assert [la.strength_divisor for la in psp_layers(loaded)] == [3]
    assert _strengths(loaded) == _strengths(model)
    np.testing.assert_allclose(_strengths(loaded), [1e-3], rtol=1e-7)
    assert model_strength(loaded) == pytest.approx(3e-3, rel=1e-7)
    scheduler = StrengthScheduler(step_strength(3e-3, []))
    scheduler.set_model(loaded)
    scheduler.on_train_begin()
    scheduler.on_epoch_begin(0)
    assert _strengths(loaded) == _strengths(model)
    x = np.random.rand(4, 4).astype("float32")
    for m in (model, loaded):
        m(x)
    np.testing.assert_allclose(
        [float(to_numpy(t)) for t in loaded.losses],
        [float(to_numpy(t)) for t in model.losses],
        rtol=1e-6,
    )
    plain = keras_psp.strip_psp(loaded)
    assert not psp_layers(plain)


@pytest.mark.parametrize("divisor", [0, -1, 2.5, True, "2"])
def test_strength_divisor_must_be_a_positive_int(divisor):
    with pytest.raises(ValueError, match="`strength_divisor`"):
        keras_psp.PSPDense(4, strength_divisor=divisor)


def test_model_strength_needs_psp_layers():
    with pytest.raises(ValueError, match="`model` .* has no PSP layer"):
        model_strength(_plain())


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
    # The builder divides λ among its 4 layers: each keeps its quarter.
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


def test_scheduler_keeps_the_ratio_of_layers_given_different_strengths():
    inputs = keras.Input((4,))
    hidden = keras_psp.PSPDense(8, activation="relu", strength=1e-3)(inputs)
    hidden = keras_psp.PSPDense(8, activation="relu", strength=3e-3)(hidden)
    model = PSPModel(inputs, keras.layers.Dense(1)(hidden))
    model.compile(keras.optimizers.SGD(0.0), "mse")
    spy = _StrengthSpy()
    schedule = keras.optimizers.schedules.ExponentialDecay(
        3e-3, decay_steps=1, decay_rate=0.5
    )
    history = model.fit(
        np.ones((8, 4)),
        np.ones((8, 1)),
        epochs=3,
        verbose=0,
        callbacks=[StrengthScheduler(schedule), spy],
    )
    # The model's λ is the largest layer's; the other keeps its third.
    np.testing.assert_allclose(
        history.history["psp_strength"], [3e-3, 1.5e-3, 7.5e-4], rtol=1e-6
    )
    for epoch, strength in enumerate([3e-3, 1.5e-3, 7.5e-4]):
        np.testing.assert_allclose(
            spy.strengths[epoch], [strength / 3, strength], rtol=1e-6
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


def test_scheduler_gives_psp_layers_at_zero_the_schedules_strength():
    model = _psp_layers(0.0)
    scheduler = StrengthScheduler(step_strength(2e-3, []))
    scheduler.set_model(model)
    scheduler.on_train_begin()
    scheduler.on_epoch_begin(0)
    np.testing.assert_allclose(_strengths(model), [2e-3] * 3, rtol=1e-7)


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
