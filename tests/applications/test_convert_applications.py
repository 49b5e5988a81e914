import json

import keras
import numpy as np
import pytest

import keras_psp
from applications import convert_applications
from keras_psp.models.psp_model import psp_losses


def test_sweep_row_and_resume(tmp_path, monkeypatch):
    output = tmp_path / "table.md"
    argv = ["--models", "MobileNet", "--output", str(output)]
    (row,) = convert_applications.main(argv)
    assert row["model"] == "MobileNet"  # the exact name, not MobileNetV2...
    assert row["input"] == "32x32"
    # 27 ReLU layers (stem, 13 depthwise and 13 pointwise convolutions) and
    # the softmax Activation after the (linear) logits.
    assert row["expected_psp_terms"] == row["psp_terms"] == 28
    assert row["predictions_equal"] and row["max_abs_diff"] <= 1e-5
    assert row["fit_loss_finite"] and np.isfinite(row["fit_loss"])
    assert row["fit_psp_loss"] > 0
    assert row["round_trip"] and row["round_trip_psp_terms"] == 28
    assert row["error"] == "" and row["notes"] == ""
    assert convert_applications.passed(row)

    table = output.read_text()
    assert f"backend {keras.backend.backend()}" in table
    assert "python -m applications.convert_applications --models" in table
    assert "| MobileNet | 32x32 | 91 | 28 | 28 | yes (" in table
    assert "1 of 1 models pass every check" in table
    saved = json.loads((tmp_path / "table.json").read_text())
    assert saved["backend"] == keras.backend.backend()
    assert saved["rows"] == [row]

    # --resume keeps the saved row and checks nothing again.
    def no_check(name, args):
        raise AssertionError(f"{name} checked again")

    monkeypatch.setattr(convert_applications, "check_model", no_check)
    assert convert_applications.main([*argv, "--resume"]) == [row]


def test_unknown_model_raises(tmp_path):
    output = tmp_path / "table.md"
    with pytest.raises(
        convert_applications.UnknownModelError,
        match="'NoSuchNet'.*Available: .*MobileNetV3Small",
    ):
        convert_applications.main(
            ["--models", "MobileNet", "NoSuchNet", "--output", str(output)]
        )
    assert not output.exists()


def test_select_models_by_name_or_part():
    available = convert_applications.available_models()
    assert len(available) >= 40
    select = convert_applications.select_models
    assert select(["mobilenet"], available) == ["MobileNet"]
    assert select(["mobilenetv3", "VGG1"], available) == [
        "MobileNetV3Large",
        "MobileNetV3Small",
        "VGG16",
        "VGG19",
    ]
    assert select(None, available) == available


def test_expected_terms_follow_the_rules():
    # relu Dense (1); linear Dense (0); BN then ReLU (1); a linear
    # Activation (0); linear PSP logits (1) and the softmax they feed (0:
    # counted already); a second output, a linear Dense (1: logits).
    inputs = keras.Input((4,))
    x = keras.layers.Dense(8, activation="relu")(inputs)
    x = keras.layers.Dense(8)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Activation("linear")(x)
    first = keras_psp.PSPDense(3, strength=1e-3)(x)
    first = keras.layers.Activation("softmax")(first)
    second = keras.layers.Dense(2)(x)
    model = keras.Model(inputs, [first, second])
    converted = keras_psp.apply_psp(model)
    assert convert_applications.expected_psp_terms(model) == 4
    converted(np.ones((2, 4), "float32"))
    assert len(psp_losses(converted)) == 4
