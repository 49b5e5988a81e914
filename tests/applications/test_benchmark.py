import json
import math

import keras
import numpy as np
import pytest

from applications import benchmark
from keras_psp import models


def test_benchmark_reports_ratios_and_memory(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rows = benchmark.main(
        [
            "--models",
            "lenet5",
            "--batch-size",
            "4",
            "--steps",
            "3",
            "--steps-per-round",
            "2",
            "--out",
            str(out),
        ]
    )
    assert [r["variant"] for r in rows] == list(benchmark.VARIANTS)
    assert rows[0]["ratio_to_none"] == 1.0
    for row in rows:
        assert row["model"] == "lenet5"
        assert row["backend"] == keras.backend.backend()
        assert row["batch_size"] == 4
        for key in ("ratio_to_none", "median_step_ms", "images_per_second"):
            assert math.isfinite(row[key]) and row[key] > 0, (row, key)
        assert row["peak_mib"] > 0 and row["train_mib"] >= 0
        assert row["peak_mib"] >= row["train_mib"]
    saved = json.loads(out.read_text())
    assert saved["rows"] == rows
    assert saved["backend"] == keras.backend.backend()
    assert "keras" in saved["versions"]
    for row in rows:
        steps = saved["step_seconds"]["lenet5"][row["variant"]]
        assert len(steps) == 3
        median_ms = 1000 * float(np.median(steps))
        assert abs(row["median_step_ms"] - median_ms) < 1e-9
    printed = capsys.readouterr().out
    assert "| model | backend | variant |" in printed
    for variant in benchmark.VARIANTS:
        assert f"| lenet5 | {keras.backend.backend()} | {variant} |" in printed


def test_benchmark_options(capsys):
    rows = benchmark.main(
        [
            "--models",
            "lenet5",
            "--batch-size",
            "2",
            "--steps",
            "1",
            "--memory",
            "off",
            "--jit-compile",
            "off",
        ]
    )
    assert len(rows) == len(benchmark.VARIANTS)
    assert "peak_mib" not in rows[0]
    assert "peak MiB" not in capsys.readouterr().out


_TF_PASS = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the route is built the same way on every backend; LeNet-5 on "
    "all, the larger builders in the TensorFlow pass",
)


@pytest.mark.parametrize(
    "builder, shape",
    [
        (models.LeNet5, (28, 28, 1)),
        # The larger builders build the same layers: once, on TensorFlow.
        pytest.param(models.ResNet18, (32, 32, 3), marks=_TF_PASS),
        pytest.param(models.MobileNetV2, (32, 32, 3), marks=_TF_PASS),
    ],
)
def test_builtin_route_is_the_same_model_and_penalty(builder, shape):
    keras.utils.set_random_seed(0)
    psp = builder(classifier_activation=None, psp_strength=1e-3)
    builtin = benchmark.builtin_route(psp)
    assert not isinstance(builtin, models.PSPModel)
    x = np.random.default_rng(0).standard_normal((2, *shape), "float32")
    expected = keras.ops.convert_to_numpy(psp(x))
    got = keras.ops.convert_to_numpy(builtin(x))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    psp_terms = [float(keras.ops.convert_to_numpy(t)) for t in psp.losses]
    builtin_terms = [
        float(keras.ops.convert_to_numpy(t)) for t in builtin.losses
    ]
    assert len(builtin_terms) == len(psp_terms) > 0
    np.testing.assert_allclose(sum(builtin_terms), sum(psp_terms), rtol=1e-5)
    regularized = [
        layer for layer in builtin.layers if layer.activity_regularizer
    ]
    assert len(regularized) == len(psp_terms)
