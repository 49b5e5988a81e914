import warnings

import keras
import numpy as np
import pytest

import keras_psp
from keras_psp import PSPDense
from keras_psp import apply_psp
from keras_psp import psp_terms
from keras_psp.models.psp_model import model_strength
from keras_psp.models.psp_model import psp_layers
from tests.helpers import to_numpy

L = keras.layers


def _small_functional():
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same", use_bias=False, name="conv1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(max_value=6.0, name="relu6")(x)
    y = L.Conv2D(4, 1, activation="relu", name="conv2")(x)
    x = L.Add(name="add")([x, y])
    x = L.LeakyReLU(negative_slope=0.1, name="leaky")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(8, name="fc_linear")(x)
    x = L.PReLU(name="prelu")(x)
    x = L.Dense(5, activation="elu", name="fc")(x)
    outputs = L.Dense(3, activation="softmax", name="logits")(x)
    return keras.Model(inputs, outputs, name="small")


def _images(n=4, size=8):
    return np.random.rand(n, size, size, 3).astype("float32")


def _classes(model):
    return [type(layer) for layer in model.layers]


def _routes(model):
    """`{layer name: route}` of the places `apply_psp` put a PSP term."""
    return {term.layer.name: term.route for term in psp_terms(model)}


def _num_terms(model, x):
    """The number of PSP terms one forward pass of `model` adds."""
    model(x)
    return len(model.losses)


def _total(model, x):
    model(x)
    return float(sum(to_numpy(loss) for loss in model.losses))


def test_functional_conversion_plan_and_equal_predictions():
    model = _small_functional()
    x = _images()
    expected = model.predict(x, verbose=0)
    converted = apply_psp(model, strength=1e-3)
    assert type(converted) is type(model)
    assert converted is not model
    assert _classes(converted) == _classes(model)  # no wrapper layers
    # conv1 is linear (its z is taken after BN, at relu6) and fc_linear's
    # z is prelu's input: neither gets a term of its own.
    assert _routes(converted) == {
        "relu6": "layer input",
        "conv2": "activation attribute",
        "leaky": "layer input",
        "prelu": "layer input",
        "fc": "activation attribute",
        "logits": "activation attribute",
    }
    for term in psp_terms(converted):
        assert term.layer is converted.get_layer(term.layer.name)
        assert term.layer is not model.get_layer(term.layer.name)
    assert _num_terms(converted, x) == 6
    np.testing.assert_allclose(
        converted.predict(x, verbose=0), expected, atol=1e-6
    )
    # The original is untouched.
    assert model.get_layer("conv2").activation is keras.activations.relu
    assert "call" not in vars(model.get_layer("relu6"))
    assert not psp_terms(model)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected)
    model(x)
    assert not model.losses


def test_sequential_conversion():
    model = keras.Sequential(
        [
            keras.Input((6,)),
            L.Dense(8, activation="relu"),
            L.Dropout(0.1),
            L.Dense(4),
            L.Activation("tanh"),
            L.Dense(2),
        ],
        name="seq",
    )
    x = np.random.randn(5, 6).astype("float32")
    converted = apply_psp(model, 1e-2, reduction="mean")
    assert type(converted) is keras.Sequential
    assert converted.name == "seq"
    assert _classes(converted) == _classes(model)
    layers = converted.layers
    assert [(term.layer, term.route) for term in psp_terms(converted)] == [
        (layers[0], "activation attribute"),
        (layers[3], "activation attribute"),
        (layers[4], "activation attribute"),  # linear logits, regularized
    ]
    assert [layer.reduction for layer in psp_layers(converted)] == ["mean"]
    assert _num_terms(converted, x) == 3
    np.testing.assert_allclose(
        converted.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )


def test_regularize_logits_false():
    model = _small_functional()
    converted = apply_psp(model, regularize_logits=False)
    assert "logits" not in _routes(converted)
    assert len(_routes(converted)) == 5
    assert _num_terms(converted, _images()) == 5


def test_include_and_exclude_by_name_and_type():
    model = _small_functional()
    only_acts = apply_psp(model, include=L.ReLU)
    assert list(_routes(only_acts)) == ["relu6"]
    assert _num_terms(only_acts, _images()) == 1
    no_dense = apply_psp(model, exclude=[L.Dense, "leaky"])
    assert sorted(_routes(no_dense)) == ["conv2", "prelu", "relu6"]
    with pytest.raises(TypeError, match="`include`"):
        apply_psp(model, include=[3])
    with pytest.raises(TypeError, match="`exclude`"):
        apply_psp(model, exclude=[dict])


def test_divide_by_num_layers():
    model = _small_functional()
    x = _images()
    converted = apply_psp(model, 6e-3, divide_by_num_layers=True)
    (state,) = psp_layers(converted)
    assert float(to_numpy(state.strength)) == pytest.approx(1e-3)
    assert state.strength_divisor == 6
    assert model_strength(converted) == pytest.approx(6e-3)
    # Each of the 6 terms gets λ/6: a sixth of the undivided penalty.
    undivided = _total(apply_psp(model, 6e-3), x)
    assert undivided > 0
    np.testing.assert_allclose(_total(converted, x), undivided / 6, rtol=1e-5)


def test_existing_psp_layers_are_kept():
    model = keras.Sequential(
        [
            keras.Input((4,)),
            PSPDense(3, activation="relu", strength=0.5, name="psp"),
            L.Dense(2, activation="softmax", name="out"),
        ]
    )
    x = np.random.randn(3, 4).astype("float32")
    converted = apply_psp(model, 1e-3)
    assert type(converted.get_layer("psp")) is PSPDense
    assert float(to_numpy(converted.get_layer("psp").strength)) == 0.5
    # Not regularized twice: the PSPDense adds its own term, `out` gets one.
    assert _routes(converted) == {"out": "activation attribute"}
    assert _num_terms(converted, x) == 2
    np.testing.assert_allclose(
        to_numpy(converted(x)), to_numpy(model(x)), atol=1e-6
    )


def test_nested_model_is_converted():
    inner = keras.Sequential(
        [keras.Input((4,)), L.Dense(4, activation="relu", name="inner_fc")],
        name="inner",
    )
    inputs = keras.Input((4,))
    outputs = L.Dense(2, name="head")(inner(inputs))
    model = keras.Model(inputs, outputs)
    x = np.random.randn(3, 4).astype("float32")
    converted = apply_psp(model)
    copied_inner = converted.get_layer("inner")
    assert type(copied_inner) is keras.Sequential
    assert copied_inner is not inner
    assert sorted(_routes(converted)) == ["head", "inner_fc"]
    holders = [term.layer for term in psp_terms(converted)]
    assert copied_inner.get_layer("inner_fc") in holders
    assert inner.get_layer("inner_fc").activation is keras.activations.relu
    assert _num_terms(converted, x) == 2
    np.testing.assert_allclose(
        converted.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )


def test_subclassed_model_refused_with_advice():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.fc = L.Dense(2, activation="relu")

        def call(self, x):
            return self.fc(x)

    net = Net()
    net(np.ones((1, 3), dtype="float32"))
    with pytest.raises(TypeError, match="subclassed.*PSPDense"):
        apply_psp(net)


def test_bad_arguments():
    model = _small_functional()
    with pytest.raises(TypeError, match="`model`"):
        apply_psp(L.Dense(3))
    with pytest.raises(ValueError, match="`strength`"):
        apply_psp(model, strength=-1)
    with pytest.raises(TypeError, match="`strength`"):
        apply_psp(model, strength="1e-3")
    with pytest.raises(ValueError, match="`reduction`"):
        apply_psp(model, reduction="avg")
    with pytest.raises(ValueError, match="built"):
        apply_psp(keras.Sequential([L.Dense(2, activation="relu")]))


@pytest.mark.parametrize(
    "application",
    [
        # Named 'mobilenetv2_1.00_32': PyTorch refuses a "." in a
        # variable's name (the PSP state's is made of the model's).
        keras.applications.MobileNetV2,
        keras.applications.ResNet50,
    ],
)
def test_keras_applications_convert_and_train(application):
    model = application(weights=None, input_shape=(32, 32, 3), classes=10)
    x = np.random.rand(8, 32, 32, 3).astype("float32")
    y = np.arange(8) % 10
    expected = model.predict(x, verbose=0)
    converted = apply_psp(model, 1e-3, reduction="mean")
    assert type(converted) is type(model)
    assert _classes(converted) == _classes(model)
    activations = [
        layer.name
        for layer in model.layers
        if isinstance(layer, (L.ReLU, L.Activation))
    ]
    # Every activation layer plus the classifier's logits.
    assert sorted(_routes(converted)) == sorted([*activations, "predictions"])
    assert _num_terms(converted, x) == len(activations) + 1
    np.testing.assert_allclose(
        converted.predict(x, verbose=0), expected, atol=1e-5
    )
    converted.compile(
        keras.optimizers.Adam(1e-3),
        "sparse_categorical_crossentropy",
    )
    history = converted.fit(x, y, batch_size=8, epochs=5, verbose=0)
    losses = history.history["loss"]
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    assert history.history["psp_loss"][0] > 0


def test_softmax_after_linear_psp_logits_is_not_regularized_twice():
    # LeNet5's head (linear PSPDense logits, then a softmax layer) after a
    # plain hidden layer: the softmax's input is the PSP logits' z.
    inputs = keras.Input((6,))
    hidden = L.Dense(5, activation="relu", name="hidden")(inputs)
    logits = PSPDense(3, strength=1e-3, name="logits")(hidden)
    outputs = L.Activation("softmax", name="predictions")(logits)
    model = keras.Model(inputs, outputs)
    converted = apply_psp(model, 1e-3)
    assert isinstance(converted.get_layer("predictions"), L.Activation)
    assert _routes(converted) == {"hidden": "activation attribute"}
    x = np.random.randn(3, 6).astype("float32")
    assert _num_terms(converted, x) == 2  # hidden's, and the PSP logits'


def test_a_model_of_psp_layers_only_converts_and_keeps_them():
    from keras_psp.models import LeNet5

    model = LeNet5(psp_strength=1e-3)
    converted = apply_psp(model, 1e-3)
    assert isinstance(converted.get_layer("predictions"), L.Activation)
    assert not psp_terms(converted)
    x = np.random.rand(2, 28, 28, 1).astype("float32")
    assert _num_terms(converted, x) == 4


def test_converting_a_converted_model_regularizes_each_z_once():
    model = apply_psp(_small_functional(), 1e-3)
    x = _images()
    again = apply_psp(model, 1e-3, divide_by_num_layers=True)
    assert _routes(again) == _routes(model)
    assert _num_terms(again, x) == _num_terms(model, x) == 6
    # The copy has the settings of its own call; the first is unchanged.
    (state,) = psp_layers(again)
    assert state.strength_divisor == 6
    assert float(to_numpy(state.strength)) == pytest.approx(1e-3 / 6)
    (first,) = psp_layers(model)
    assert float(to_numpy(first.strength)) == pytest.approx(1e-3)
    np.testing.assert_allclose(
        _total(again, x), _total(model, x) / 6, rtol=1e-5
    )
    # Calling the copy adds nothing to the first model's terms.
    model(x)
    before = len(first.losses)
    again(x)
    assert len(first.losses) == before


def test_include_typo_raises_naming_the_closest_layers():
    model = _small_functional()
    with pytest.raises(ValueError, match=r"'leakk'.*matches no layer.*leaky"):
        apply_psp(model, include="leakk")
    with pytest.raises(ValueError, match=r"`exclude`.*'conv3'.*conv1"):
        apply_psp(model, exclude=["conv2", "conv3"])
    with pytest.raises(ValueError, match=r"`include`.*Conv3D.*matches no"):
        apply_psp(model, include=L.Conv3D)


def test_class_name_typo_suggests_the_class_and_how_to_pass_it():
    model = _small_functional()
    classes = sorted({type(layer).__name__ for layer in model.layers})
    assert "Conv2D" in classes  # what the suggestions below come from
    with pytest.raises(
        ValueError,
        match=r"'Conv2d'.*Closest layer classes: \['Conv2D'.*"
        r"`include=\[keras.layers.Conv2D\]`",
    ):
        apply_psp(model, include=["Conv2d"])
    with pytest.raises(ValueError, match=r"`exclude=\[keras.layers.Dense\]`"):
        apply_psp(model, exclude="Dens")
    with pytest.raises(ValueError, match=r"Conv3D.*the classes \[.*'Conv2D'"):
        apply_psp(model, include=L.Conv3D)


def test_include_of_a_layer_without_pre_activation_raises():
    model = _small_functional()
    with pytest.raises(ValueError, match=r"'bn1'.*no pre-activation.*'bn1'"):
        apply_psp(model, include=["conv2", "bn1"])


def test_skipped_layers_are_reported():
    inputs = keras.Input((5, 3))
    x = L.LSTM(4, return_sequences=True, name="lstm")(inputs)
    x = L.GRU(4, name="gru")(x)
    model = keras.Model(inputs, L.Dense(2, activation="softmax")(x))
    with pytest.warns(UserWarning, match=r"(?s)2 layer.*lstm.*recurrent.*gru"):
        converted = apply_psp(model)
    assert len(psp_layers(converted)) == 1


class _Block(L.Layer):
    """A composite layer keeping its inner Dense's activation."""

    def __init__(self, activation="relu", **kwargs):
        super().__init__(**kwargs)
        self.activation = keras.activations.get(activation)
        self.inner = L.Dense(4, activation=self.activation)
        self.out = L.Dense(4)

    def call(self, x):
        return self.out(self.inner(x)) + x

    def get_config(self):
        config = super().get_config()
        config["activation"] = keras.activations.serialize(self.activation)
        return config


class _Gate(L.Layer):
    """Has an `activation` but no affine part: it applies it in its own
    code, to its input, which is then z."""

    def __init__(self, activation="sigmoid", **kwargs):
        super().__init__(**kwargs)
        self.activation = keras.activations.get(activation)

    def call(self, x):
        return x * self.activation(x)


def test_layer_of_unknown_class_with_activation_is_not_wrapped_whole():
    inputs = keras.Input((4,))
    x = _Block(name="block")(inputs)
    x = _Gate(name="gate")(x)
    model = keras.Model(inputs, L.Dense(2, name="logits")(x))
    x = np.random.randn(3, 4).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing left out
        converted = apply_psp(model)
    # The block's inner relu Dense is regularized inside it, and the gate's
    # sigmoid on the gate's input: neither whole layer is a z.
    for name, cls in (("block", _Block), ("gate", _Gate)):
        assert type(converted.get_layer(name)) is cls
    block, gate = converted.get_layer("block"), converted.get_layer("gate")
    assert [(term.layer, term.route) for term in psp_terms(converted)] == [
        (block.inner, "activation attribute"),
        (gate, "activation attribute"),
        (converted.get_layer("logits"), "activation attribute"),
    ]
    assert _num_terms(converted, x) == 3
    np.testing.assert_allclose(
        converted.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )


def test_registered_class_is_regularized():
    @keras_psp.register_pre_activation_layer
    class MyDense(L.Dense):
        pass

    inputs = keras.Input((4,))
    hidden = MyDense(3, activation="relu", name="mine")(inputs)
    model = keras.Model(inputs, L.Dense(2, name="out")(hidden))
    converted = apply_psp(model, 0.1)
    mine = converted.get_layer("mine")
    assert type(mine) is MyDense
    assert _routes(converted) == {
        "mine": "activation attribute",
        "out": "activation attribute",
    }
    x = np.random.randn(5, 4).astype("float32")
    kernel, bias = (to_numpy(w) for w in mine.weights)
    z1 = x @ kernel + bias
    kernel, bias = (to_numpy(w) for w in converted.get_layer("out").weights)
    z2 = np.maximum(z1, 0) @ kernel + bias
    expected = sum(0.1 * 0.5 * (z**2).sum() / len(x) for z in (z1, z2))
    np.testing.assert_allclose(_total(converted, x), expected, rtol=1e-5)


def test_strength_must_fit_float32():
    with pytest.raises(ValueError, match="`strength`.*float32"):
        apply_psp(_small_functional(), strength=1e300)
