import json

import keras
import numpy as np
import pytest

from applications import convert_keras_hub


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
