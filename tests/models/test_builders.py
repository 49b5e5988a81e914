import keras
import numpy as np
import pytest

from keras_psp import PSPActivation
from keras_psp import PSPModel
from keras_psp.models import AllCNNC
from keras_psp.models import LeNet5
from keras_psp.models import MobileNetV2
from keras_psp.models import ResNet18
from keras_psp.models.psp_model import psp_layers
from keras_psp.models.psp_model import psp_losses
from keras_psp.models.regularization import Regularization
from keras_psp.pre_activations import is_linear
from keras_psp.regularizers import ActivationSparsity
from keras_psp.regularizers import SoftDiamond
from keras_psp.regularizers import activation_sparsity
from tests.helpers import to_numpy

# builder: (input shape, trainable parameters for 10 classes, PSP terms).
# Parameter counts are those of the authors' PyTorch models (github
# enzotarta/PSP: LeNet5_stats.py, src/models/ALL_CNN_C.py, resnet.py and
# mobilenetv2.py; the last two are github kuangliu/pytorch-cifar's), i.e.
# PyTorch's `sum(p.numel() for p in model.parameters())`.
BUILDERS = {
    "lenet5": (LeNet5, (28, 28, 1), 431_080, 4),
    "all_cnn_c": (AllCNNC, (32, 32, 3), 1_369_738, 9),
    "resnet18": (ResNet18, (32, 32, 3), 11_173_962, 18),
    "mobilenetv2": (MobileNetV2, (32, 32, 3), 2_296_922, 54),
}


def _trainable_parameters(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def _kernels(model):
    return [
        w
        for w in model.trainable_weights
        if w.path.endswith("kernel") and len(w.shape) > 1
    ]


@pytest.mark.parametrize("arch", sorted(BUILDERS))
def test_parameter_count_matches_authors_model(arch):
    builder, _, parameters, _ = BUILDERS[arch]
    assert _trainable_parameters(builder()) == parameters
    # PSP adds no trainable parameter.
    assert _trainable_parameters(builder(psp_strength=1e-3)) == parameters


@pytest.mark.parametrize("arch", sorted(BUILDERS))
def test_output_shape_and_classifier_activation(arch):
    builder, shape, _, _ = BUILDERS[arch]
    x = np.random.rand(2, *shape).astype("float32")
    model = builder(classes=7, name="net")
    assert model.name == "net"
    probabilities = to_numpy(model(x))
    assert probabilities.shape == (2, 7)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    logits = to_numpy(builder(classes=7, classifier_activation=None)(x))
    assert logits.shape == (2, 7)
    assert not np.allclose(logits.sum(axis=1), 1.0)


@pytest.mark.parametrize("arch", sorted(BUILDERS))
def test_psp_variant_has_one_term_per_pre_activation(arch):
    builder, shape, _, terms = BUILDERS[arch]
    model = builder(psp_strength=1e-3)
    assert isinstance(model, PSPModel)
    model(np.random.rand(2, *shape).astype("float32"))
    assert len(psp_losses(model)) == terms
    assert len(model.losses) == terms
    for layer in psp_layers(model):
        assert float(to_numpy(layer.strength)) == pytest.approx(1e-3 / terms)
        assert layer.reduction == "mean"
    summed = builder(
        psp_strength=1e-3, psp_reduction="sum", psp_divide_by_num_layers=False
    )
    for layer in psp_layers(summed):
        assert float(to_numpy(layer.strength)) == pytest.approx(1e-3)
        assert layer.reduction == "sum"


@pytest.mark.parametrize("arch", sorted(BUILDERS))
def test_l2_variant_has_one_term_per_kernel(arch):
    builder, shape, _, terms = BUILDERS[arch]
    x = np.random.rand(2, *shape).astype("float32")
    model = builder(weight_decay=5e-4)
    assert not isinstance(model, PSPModel)
    model(x)
    kernels = _kernels(model)
    assert len(model.losses) == len(kernels)
    # λ/2·Σw², whose gradient λ·w is SGD's weight decay.
    expected = sum(2.5e-4 * (to_numpy(k) ** 2).sum() for k in kernels)
    actual = sum(float(to_numpy(loss)) for loss in model.losses)
    np.testing.assert_allclose(actual, expected, rtol=1e-4)
    both = builder(weight_decay=5e-4, psp_strength=1e-3)
    both(x)
    assert len(both.losses) == len(kernels) + terms
    plain = builder()
    plain(x)
    assert plain.losses == []


def test_activation_layers_after_batch_norm_take_the_activation_regularizer():
    # ResNet-18's and MobileNetV2's activations after batch norm / add.
    activations = ActivationSparsity(1e-2)
    for psp_strength in (0.0, 1e-3):
        regularization = Regularization(
            psp_strength=psp_strength, activation_regularizer=activations
        )
        relu = regularization.activation("relu", name="relu")
        assert relu.activity_regularizer is activations
        assert isinstance(relu, PSPActivation) == bool(psp_strength)
        linear = regularization.activation("linear", name="linear")
        assert linear.activity_regularizer is None


@pytest.mark.parametrize("arch", ["lenet5"])
def test_kernel_and_activation_regularizers_go_where_they_belong(arch):
    builder, shape, _, _ = BUILDERS[arch]
    x = np.random.rand(2, *shape).astype("float32")
    kernel = SoftDiamond(1e-4, alpha=1.0, dispersion=0.1)
    activations = ActivationSparsity(1e-2)
    model = builder(
        kernel_regularizer=kernel, activation_regularizer=activations
    )
    model(x)
    kernels = _kernels(model)
    # Every kernel: the Cauchy penalty λ Σ log(1 + w²/γ²).
    expected = sum(
        1e-4 * np.log1p((to_numpy(k) / 0.1) ** 2).sum() for k in kernels
    )
    regularized = [
        layer
        for layer in model.layers
        if getattr(layer, "activity_regularizer", None) is activations
    ]
    assert len(model.losses) == len(kernels) + len(regularized)
    # Only the outputs of non-linear activations (not the logits).
    assert regularized and all(
        not is_linear(layer.activation) for layer in regularized
    )
    # Their outputs' sparsity penalty, and the kernels', is the loss.
    outputs = keras.Model(model.input, [la.output for la in regularized])(x)
    expected += sum(
        1e-2 * float(np.mean(to_numpy(activation_sparsity(out))))
        for out in outputs
    )
    actual = sum(float(to_numpy(loss)) for loss in model.losses)
    assert actual == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("arch", sorted(BUILDERS))
def test_one_fit_step(arch):
    builder, shape, _, _ = BUILDERS[arch]
    model = builder(weight_decay=5e-4, psp_strength=1e-3)
    model.compile(
        keras.optimizers.SGD(0.1, momentum=0.9),
        "sparse_categorical_crossentropy",
    )
    x = np.random.rand(4, *shape).astype("float32")
    y = np.array([0, 1, 2, 3])
    before = [to_numpy(w) for w in model.trainable_weights[:2]]
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert history.history["psp_loss"][0] > 0
    after = [to_numpy(w) for w in model.trainable_weights[:2]]
    assert any(
        not np.array_equal(a, b) for a, b in zip(after, before, strict=True)
    )


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"classes": 0}, ValueError, "`classes`"),
        ({"classes": 2.5}, ValueError, "`classes`"),
        ({"weight_decay": -1e-4}, ValueError, "`weight_decay`.*L2 strength"),
        ({"psp_strength": float("nan")}, ValueError, "`psp_strength`"),
        ({"psp_strength": "1e-3"}, TypeError, "`psp_strength`"),
        ({"psp_reduction": "avg"}, ValueError, "`psp_reduction`"),
        ({"kernel_regularizer": "l1"}, TypeError, "`kernel_regularizer`"),
        ({"activation_regularizer": 1.0}, TypeError, "`activation_reg"),
        (
            {"weight_decay": 1e-4, "kernel_regularizer": SoftDiamond()},
            ValueError,
            "`weight_decay` and `kernel_regularizer` cannot both",
        ),
    ],
)
@pytest.mark.parametrize("builder", [LeNet5, AllCNNC])
def test_bad_arguments(builder, kwargs, error, match):
    with pytest.raises(error, match=match):
        builder(**kwargs)
