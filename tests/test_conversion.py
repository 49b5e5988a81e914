import warnings

import keras
import numpy as np
import pytest

import keras_psp
from keras_psp import PreActivationRegularizer
from keras_psp import PSPActivation
from keras_psp import PSPDense
from keras_psp import PSPModel
from keras_psp import PSPSequential
from keras_psp import apply_psp
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


def _kinds(model):
    return {layer.name: type(layer).__name__ for layer in model.layers}


def test_functional_conversion_plan_and_equal_predictions():
    model = _small_functional()
    x = _images()
    expected = model.predict(x, verbose=0)
    converted = apply_psp(model, strength=1e-3)
    assert isinstance(converted, PSPModel)
    kinds = _kinds(converted)
    assert kinds["conv1"] == "Conv2D"  # linear: its z is taken after BN
    assert kinds["bn1"] == "BatchNormalization"
    assert kinds["relu6"] == "PSPActivation"
    assert kinds["conv2"] == "PreActivationRegularizer"
    assert kinds["leaky"] == "PSPActivation"
    assert kinds["fc_linear"] == "Dense"
    assert kinds["prelu"] == "PSPActivation"
    assert kinds["fc"] == "PreActivationRegularizer"
    assert kinds["logits"] == "PreActivationRegularizer"
    assert len(psp_layers(converted)) == 6
    np.testing.assert_allclose(
        converted.predict(x, verbose=0), expected, atol=1e-6
    )
    # The original is untouched.
    assert model.get_layer("conv2").activation is keras.activations.relu
    np.testing.assert_allclose(model.predict(x, verbose=0), expected)


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
    assert isinstance(converted, PSPSequential)
    assert converted.name == "seq"
    assert [type(layer).__name__ for layer in converted.layers] == [
        "PreActivationRegularizer",
        "Dropout",
        "Dense",
        "PSPActivation",
        "PreActivationRegularizer",  # linear logits, regularized
    ]
    assert all(layer.reduction == "mean" for layer in psp_layers(converted))
    np.testing.assert_allclose(
        converted.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )


def test_regularize_logits_false():
    model = _small_functional()
    converted = apply_psp(model, regularize_logits=False)
    assert _kinds(converted)["logits"] == "Dense"
    assert len(psp_layers(converted)) == 5


def test_include_and_exclude_by_name_and_type():
    model = _small_functional()
    only_acts = apply_psp(model, include=L.ReLU)
    assert [layer.name for layer in psp_layers(only_acts)] == ["relu6"]
    no_dense = apply_psp(model, exclude=[L.Dense, "leaky"])
    assert sorted(layer.name for layer in psp_layers(no_dense)) == [
        "conv2",
        "prelu",
        "relu6",
    ]
    with pytest.raises(TypeError, match="`include`"):
        apply_psp(model, include=[3])
    with pytest.raises(TypeError, match="`exclude`"):
        apply_psp(model, exclude=[dict])


def test_divide_by_num_layers():
    model = _small_functional()
    converted = apply_psp(model, 6e-3, divide_by_num_layers=True)
    layers = psp_layers(converted)
    assert len(layers) == 6
    for layer in layers:
        assert float(to_numpy(layer.strength)) == pytest.approx(1e-3)


def test_existing_psp_layers_are_kept():
    model = keras.Sequential(
        [
            keras.Input((4,)),
            PSPDense(3, activation="relu", strength=0.5, name="psp"),
            L.Dense(2, activation="softmax", name="out"),
        ]
    )
    converted = apply_psp(model, 1e-3)
    assert isinstance(converted.get_layer("psp"), PSPDense)
    assert float(to_numpy(converted.get_layer("psp").strength)) == 0.5
    assert isinstance(converted.get_layer("out"), PreActivationRegularizer)


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
    assert sorted(layer.name for layer in psp_layers(converted)) == [
        "head",
        "inner_fc",
    ]
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
    "application", [keras.applications.MobileNetV2, keras.applications.ResNet50]
)
def test_keras_applications_convert_and_train(application):
    model = application(weights=None, input_shape=(32, 32, 3), classes=10)
    x = np.random.rand(8, 32, 32, 3).astype("float32")
    y = np.arange(8) % 10
    expected = model.predict(x, verbose=0)
    converted = apply_psp(model, 1e-3, reduction="mean")
    activations = [
        layer
        for layer in model.layers
        if isinstance(layer, (L.ReLU, L.Activation))
    ]
    # Every activation layer plus the classifier's logits.
    assert len(psp_layers(converted)) == len(activations) + 1
    assert any(isinstance(layer, PSPActivation) for layer in converted.layers)
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
    from keras_psp.models import LeNet5

    model = LeNet5(psp_strength=1e-3)
    converted = apply_psp(model, 1e-3)
    assert isinstance(converted.get_layer("predictions"), L.Activation)
    assert len(psp_layers(converted)) == 4


def test_converting_a_converted_model_changes_nothing():
    model = apply_psp(_small_functional(), 1e-3)
    again = apply_psp(model, 1e-3, divide_by_num_layers=True)
    assert len(psp_layers(again)) == len(psp_layers(model)) == 6
    for layer in psp_layers(again):
        assert float(to_numpy(layer.strength)) == pytest.approx(1e-3)


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
    model = keras.Model(inputs, L.Dense(2)(x))
    x = np.random.randn(3, 4).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing left out
        converted = apply_psp(model)
    # The block's inner relu Dense is regularized inside it, and the gate's
    # sigmoid on the gate's input: neither is wrapped whole.
    for name, cls in (("block", _Block), ("gate", _Gate)):
        layer = converted.get_layer(name)
        assert isinstance(layer, keras_psp.InnerPreActivationRegularizer)
        assert type(layer.layer) is cls
    np.testing.assert_allclose(
        converted.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )


def test_registered_class_is_wrapped():
    @keras_psp.register_pre_activation_layer
    class MyDense(L.Dense):
        pass

    inputs = keras.Input((4,))
    hidden = MyDense(3, activation="relu", name="mine")(inputs)
    model = keras.Model(inputs, L.Dense(2)(hidden))
    converted = apply_psp(model, 1e-3)
    assert isinstance(converted.get_layer("mine"), PreActivationRegularizer)


def test_strength_must_fit_float32():
    with pytest.raises(ValueError, match="`strength`.*float32"):
        apply_psp(_small_functional(), strength=1e300)
