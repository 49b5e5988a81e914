import keras
import numpy as np
import pytest

import keras_psp
from keras_psp.models.psp_model import psp_layers


def _base(bias=True):
    keras.utils.set_random_seed(3)
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(5, activation="relu", use_bias=bias),
            keras.layers.Dense(2, use_bias=bias),
        ]
    )


def _data(examples=40):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(examples, 6)).astype("float32")
    y = rng.normal(size=(examples, 2)).astype("float32")
    return x, y


def _terms(model, x, y):
    """The MSE data loss and each layer's z, computed in numpy from the
    weights (independent of keras_psp)."""
    (w1, b1), (w2, b2) = [
        [np.asarray(v) for v in layer.weights] for layer in model.layers
    ]
    z1 = x @ w1 + b1
    z2 = np.maximum(z1, 0) @ w2 + b2
    return np.mean((z2 - y) ** 2), [z1, z2]


def _penalty(zs, reduction):
    if reduction == "sum":
        return sum(0.5 * np.sum(z**2) / len(z) for z in zs)
    return sum(np.mean(z**2) for z in zs)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("divide", [False, True])
def test_plain_model_gets_the_share_of_the_data_loss(reduction, divide):
    base = _base()
    x, y = _data()
    strength = keras_psp.find_strength(
        base,
        x,
        y,
        loss="mse",
        share=0.2,
        reduction=reduction,
        divide_by_num_layers=divide,
        batch_size=20,
        steps=2,
    )
    data_loss, zs = _terms(base, x, y)
    per_layer = strength / 2 if divide else strength
    penalty = per_layer * _penalty(zs, reduction)
    np.testing.assert_allclose(penalty / data_loss, 0.2, rtol=1e-4)


def test_first_steps_batches_only():
    base = _base()
    x, y = _data()
    strength = keras_psp.find_strength(
        base, x, y, loss="mse", share=0.1, batch_size=10, steps=1
    )
    data_loss, zs = _terms(base, x[:10], y[:10])
    expected = 0.1 * data_loss / _penalty(zs, "sum")
    np.testing.assert_allclose(strength, expected, rtol=1e-4)
    batches = [(x[:10], y[:10]), (x[10:20], y[10:20]), (x[20:], y[20:])]
    from_batches = keras_psp.find_strength(
        base, batches, loss="mse", share=0.1, steps=1
    )
    np.testing.assert_allclose(from_batches, strength, rtol=1e-6)


def test_psp_model_keeps_ratios_and_its_written_strength():
    base = _base()
    x, y = _data()
    model = keras_psp.PSPSequential(
        [
            keras.Input((6,)),
            keras_psp.PSPDense(5, activation="relu", strength=1e-3),
            keras_psp.PSPDense(2, strength=2e-3),
        ]
    )
    for target, source in zip(model.layers, base.layers, strict=True):
        target.kernel.assign(source.kernel)
        target.bias.assign(source.bias)
    model.compile("sgd", "mse")
    strength = keras_psp.find_strength(model, x, y, share=0.3, batch_size=40)
    data_loss, (z1, z2) = _terms(base, x, y)
    # λ is the largest layer's; the first keeps half of it.
    penalty = strength * (0.5 * _penalty([z1], "sum") + _penalty([z2], "sum"))
    np.testing.assert_allclose(penalty / data_loss, 0.3, rtol=1e-4)
    # The model is left as it was.
    assert [float(la.strength.numpy()) for la in psp_layers(model)] == [
        pytest.approx(1e-3),
        pytest.approx(2e-3),
    ]


def test_divided_strength_is_the_written_one():
    base = _base()
    x, y = _data()
    converted = keras_psp.apply_psp(
        base, 5e-3, "mean", divide_by_num_layers=True
    )
    from_plain = keras_psp.find_strength(
        base, x, y, loss="mse", reduction="mean", divide_by_num_layers=True
    )
    from_converted = keras_psp.find_strength(converted, x, y, loss="mse")
    np.testing.assert_allclose(from_converted, from_plain, rtol=1e-5)
    # A builder gives each of its 4 layers λ/4 and records it.
    small = {"input_shape": (16, 16, 1), "classes": 3}
    small["classifier_activation"] = None
    plain = keras_psp.models.LeNet5(**small)
    built = keras_psp.models.LeNet5(psp_strength=1e-3, **small)
    for target, source in zip(
        [v for v in built.weights if not v.path.endswith("strength")],
        plain.weights,
        strict=True,
    ):
        target.assign(source)
    images = np.random.default_rng(1).normal(size=(4, 16, 16, 1))
    labels = np.arange(4) % 3
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    np.testing.assert_allclose(
        keras_psp.find_strength(built, images, labels, loss=loss),
        keras_psp.find_strength(
            plain,
            images,
            labels,
            loss=loss,
            reduction="mean",
            divide_by_num_layers=True,
        ),
        rtol=1e-5,
    )


def test_model_state_is_left_as_it_was():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras_psp.PSPDense(5, strength=1e-3),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.5),
            keras_psp.PSPActivation("relu", strength=1e-3),
            keras.layers.Dense(2),
        ]
    )
    x, y = _data()
    before = [np.array(v) for v in model.variables]
    strength = keras_psp.find_strength(model, x, y, loss="mse")
    assert strength > 0
    for variable, value in zip(model.variables, before, strict=True):
        np.testing.assert_array_equal(np.array(variable), value)


def test_the_compiled_loss_is_the_default():
    base = _base()
    x, y = _data()
    base.compile("sgd", loss="mae")
    data_loss, zs = _terms(base, x, y)
    mae = np.mean(np.abs(_terms_prediction(base, x) - y))
    strength = keras_psp.find_strength(base, x, y, batch_size=40)
    np.testing.assert_allclose(
        strength, 1e-4 * mae / _penalty(zs, "sum"), rtol=1e-4
    )
    assert data_loss != pytest.approx(mae)


def _terms_prediction(model, x):
    (w1, b1), (w2, b2) = [
        [np.asarray(v) for v in layer.weights] for layer in model.layers
    ]
    return np.maximum(x @ w1 + b1, 0) @ w2 + b2


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"share": 0}, ValueError, "share"),
        ({"share": -0.1}, ValueError, "share"),
        ({"share": float("nan")}, ValueError, "share"),
        ({"share": "0.1"}, TypeError, "share"),
        ({"share": True}, TypeError, "share"),
        ({"steps": 0}, ValueError, "steps"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"reduction": "max"}, ValueError, "reduction"),
        ({"divide_by_num_layers": "yes"}, TypeError, "divide_by_num_layers"),
        ({"loss": "no_such_loss"}, ValueError, "loss"),
        ({"include": "Dens"}, ValueError, "Dens"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    x, y = _data()
    kwargs = {"loss": "mse", **kwargs}
    with pytest.raises(error, match=match):
        keras_psp.find_strength(_base(), x, y, **kwargs)


def test_bad_models_and_data():
    x, y = _data()
    with pytest.raises(TypeError, match="model"):
        keras_psp.find_strength(keras.layers.Dense(2), x, y, loss="mse")
    unbuilt = keras.Sequential([keras.layers.Dense(2, activation="relu")])
    with pytest.raises(ValueError, match="built"):
        keras_psp.find_strength(unbuilt, x, y, loss="mse")
    with pytest.raises(ValueError, match="loss"):
        keras_psp.find_strength(_base(), x, y)  # not compiled
    with pytest.raises(TypeError, match="`y` is needed"):
        keras_psp.find_strength(_base(), x, loss="mse")
    with pytest.raises(ValueError, match="same number"):
        keras_psp.find_strength(_base(), x, y[:5], loss="mse")
    with pytest.raises(ValueError, match="no batch"):
        keras_psp.find_strength(_base(), [], loss="mse")
    with pytest.raises(TypeError, match=r"\(x, y\)"):
        keras_psp.find_strength(_base(), [x], loss="mse")
    # Nothing to scale: z is 0 everywhere.
    with pytest.raises(ValueError, match="PSP term"):
        keras_psp.find_strength(
            _base(bias=False), np.zeros_like(x), y, loss="mse"
        )


def test_psp_models_refuse_apply_psp_options():
    x, y = _data()
    model = keras_psp.apply_psp(_base(), 1e-3, "mean")
    for kwargs in (
        {"divide_by_num_layers": True},
        {"include": "dense"},
        {"regularize_logits": False},
    ):
        (name,) = kwargs
        with pytest.raises(ValueError, match=f"`{name}` is for a model"):
            keras_psp.find_strength(model, x, y, loss="mse", **kwargs)
    with pytest.raises(ValueError, match="layers' own"):
        keras_psp.find_strength(model, x, y, loss="mse", reduction="sum")
    assert keras_psp.find_strength(model, x, y, loss="mse", reduction="mean")


def test_strength_page_example_runs():
    import pathlib
    import re

    # The user guide's page on choosing λ (docs/guide/strength.md).
    root = pathlib.Path(__file__).resolve().parent.parent
    page = root / "docs" / "guide" / "strength.md"
    (code,) = [
        block
        for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
        if "find_strength(" in block
    ]
    namespace = {}
    exec(compile(code, "docs/guide/strength.md", "exec"), namespace)
    base, model = namespace["base"], namespace["model"]
    x, y = namespace["x"], namespace["y"]
    model.compile("sgd", base.loss)
    logs = model.evaluate(x[:100], y[:100], return_dict=True, verbose=0)
    share = logs["psp_loss"] / (logs["loss"] - logs["psp_loss"])
    # The λ found on 2 batches of 100 in training mode, read back on one.
    assert 0.5e-4 < share < 2e-4
    assert namespace["strength_mean"] > namespace["strength"]
