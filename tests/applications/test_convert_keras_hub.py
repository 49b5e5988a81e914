import json

import keras
import numpy as np
import pytest

from applications import convert_keras_hub


def _count(model, x):
    count, _ = convert_keras_hub.count_activations(
        lambda: model(x, training=False)
    )
    return count


class GatedMLP(keras.layers.Layer):
    """`down(silu(gate(x)) * up(x))`, as in a Llama decoder block."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.gate = keras.layers.Dense(8)
        self.up = keras.layers.Dense(8)
        self.down = keras.layers.Dense(4)

    def call(self, x):
        return self.down(keras.ops.silu(self.gate(x)) * self.up(x))


def test_counts_a_gated_mlp_and_dense_activations():
    inputs = keras.Input((4,))
    x = GatedMLP()(inputs)
    x = keras.layers.Dense(4, activation="gelu")(x)  # 1
    x = keras.layers.Dense(4)(x)  # linear: 0
    outputs = keras.layers.ReLU(max_value=6.0)(x)  # ReLU.static_call: 1
    model = keras.Model(inputs, outputs)
    assert _count(model, np.ones((2, 4), "float32")) == 3


def test_an_activation_of_an_activation_counts_once():
    inputs = keras.Input((4,))
    x = keras.ops.relu(keras.ops.relu(inputs))  # 1
    y = inputs * keras.ops.tanh(keras.ops.softplus(inputs))  # 1: softplus
    z = keras.layers.Activation("mish")(inputs)  # 1: Mish.static_call
    model = keras.Model(inputs, [x, y, z])
    assert _count(model, np.ones((2, 4), "float32")) == 3


class Scale(keras.layers.Layer):
    """`x * softplus(w)`: a reparametrized weight, no neuron."""

    def build(self, shape):
        self.w = self.add_weight(shape=shape[-1:], initializer="zeros")

    def call(self, x):
        return x * keras.ops.softplus(self.w)


def test_an_activation_of_a_weight_is_not_counted():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.ops.tanh(Scale()(inputs)))
    assert _count(model, np.ones((2, 4), "float32")) == 1


def test_attention_is_not_counted():
    # MultiHeadAttention's softmax is no neuron's activation; the
    # feed-forward relu Dense after it is.
    inputs = keras.Input((3, 4))
    x = keras.layers.MultiHeadAttention(2, 2)(inputs, inputs)
    outputs = keras.layers.Dense(4, activation="relu")(x)
    model = keras.Model(inputs, outputs)
    assert _count(model, np.ones((2, 3, 4), "float32")) == 1


def test_linear_outputs_are_the_logits():
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(4, activation="relu")(inputs)
    inner = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    outer_inputs = keras.Input((4,))
    model = keras.Model(
        outer_inputs,
        {
            "logits": inner(outer_inputs),  # a linear Dense, nested: 1
            "hidden": keras.layers.Dense(3, activation="tanh")(outer_inputs),
        },
    )
    from applications import conversion_checks

    assert conversion_checks.linear_outputs(model) == 1


def test_sweep_row_and_resume(tmp_path, monkeypatch):
    output = tmp_path / "table.md"
    argv = ["--models", "BertBackbone", "--output", str(output)]
    (row,) = convert_keras_hub.main(argv)
    assert row["backbone"] == "BertBackbone"
    # One gelu feed-forward Dense per block (2) and the pooler's tanh.
    assert row["nonlinearities"] == row["psp_terms"] == 3
    assert row["logits"] == 0 and row["expected_psp_terms"] == 3
    assert row["predictions_equal"] and row["max_abs_diff"] <= 1e-5
    assert row["fit"] and np.isfinite(row["fit_loss"])
    assert row["fit_psp_loss"] > 0
    assert row["round_trip"] and row["round_trip_psp_terms"] == 3
    assert row["strip"] and row["strip_psp_layers"] == 0
    assert row["error"] == ""
    assert convert_keras_hub.passed(row)

    table = output.read_text()
    assert f"backend {keras.backend.backend()}" in table
    assert "python -m applications.convert_keras_hub --models" in table
    assert "| BertBackbone | 12 | 3 | 3 | yes (" in table
    assert "1 of 1 backbones pass every check" in table
    saved = json.loads((tmp_path / "table.json").read_text())
    assert saved["rows"] == [row]

    def no_check(name, args):
        raise AssertionError(f"{name} checked again")

    monkeypatch.setattr(convert_keras_hub, "check_backbone", no_check)
    assert convert_keras_hub.main([*argv, "--resume"]) == [row]


def test_unknown_backbone_raises(tmp_path):
    output = tmp_path / "table.md"
    with pytest.raises(ValueError, match="'NoSuchNet'.*Available: .*Bert"):
        convert_keras_hub.main(
            ["--models", "NoSuchNet", "--output", str(output)]
        )
    assert not output.exists()


def test_default_output_is_under_runs():
    assert convert_keras_hub.SWEEP.default_output.startswith("runs/")


def test_a_round_trip_failing_as_the_plain_backbone_does_passes():
    row = {
        "backbone": "XBackbone",
        "layers": 3,
        "psp_terms": 2,
        "expected_psp_terms": 2,
        "nonlinearities": 2,
        "logits": 0,
        "predictions_equal": True,
        "max_abs_diff": 0.0,
        "round_trip": False,
        "round_trip_error": "TypeError: cannot load",
        "plain_round_trip": False,
        "plain_round_trip_error": "TypeError: cannot load",
        "strip": True,
        "fit": True,
        "fit_loss": 0.1,
        "fit_psp_loss": 0.1,
        "seconds": 1.0,
        "error": "",
        "notes": "",
    }
    assert convert_keras_hub.passed(row)
    line = convert_keras_hub.format_row(row)
    assert "FAILED: TypeError: cannot load; plain backbone fails too" in line
    # The converted model fails where the plain backbone does not.
    row["plain_round_trip"] = True
    assert not convert_keras_hub.passed(row)
    assert "plain backbone round-trips" in convert_keras_hub.format_row(row)
    row.update(plain_round_trip=False, psp_terms=1)
    assert "| 1 (MISMATCH) | 2 |" in convert_keras_hub.format_row(row)
    assert not convert_keras_hub.passed(row)
