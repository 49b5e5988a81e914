import json
import math

import keras
import numpy as np

from applications import benchmark_keras_hub
from keras_psp.models.psp_model import psp_losses


def test_the_hand_written_terms_are_psps(monkeypatch):
    # The `hand` variant measures the same penalty as `psp`: checked on
    # one forward pass of the tiny model.
    monkeypatch.setattr(benchmark_keras_hub, "LAYERS", 2)
    x, _ = benchmark_keras_hub.batch("llama", None)
    psp = benchmark_keras_hub.build("llama", "psp", None)
    hand = benchmark_keras_hub.build("llama", "hand", None)
    psp(x)
    hand(x)
    expected = sum(float(keras.ops.convert_to_numpy(t)) for t in hand.losses)
    got = sum(float(keras.ops.convert_to_numpy(t)) for t in psp_losses(psp))
    assert len(hand.losses) == len(psp_losses(psp)) == 2
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_benchmark_reports_ratios(tmp_path, monkeypatch):
    monkeypatch.setattr(benchmark_keras_hub, "LAYERS", 1)
    out = tmp_path / "bench.json"
    rows = benchmark_keras_hub.main(
        ["--steps", "2", "--steps-per-round", "1", "--out", str(out)]
    )
    assert [(r["model"], r["variant"]) for r in rows] == [
        ("llama", "none"),
        ("llama", "psp"),
        ("llama", "hand"),
        ("gemma", "none"),
        ("gemma", "psp"),
    ]
    for row in rows:
        assert row["backend"] == keras.backend.backend()
        assert math.isfinite(row["ratio_to_none"]) and row["ratio_to_none"] > 0
    assert json.loads(out.read_text())["rows"] == rows
