import json

from applications import benchmark


def test_benchmark_reports_ratios(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rows = benchmark.main(
        [
            "--examples",
            "200",
            "--batch-size",
            "50",
            "--rounds",
            "1",
            "--out",
            str(out),
        ]
    )
    assert [r["variant"] for r in rows] == list(benchmark.VARIANTS)
    assert rows[0]["relative_to_none"] == 1.0
    assert rows[0]["median_relative_to_none"] == 1.0
    for row in rows:
        assert row["images_per_second"] > 0
        assert row["relative_to_none"] > 0
    saved = json.loads(out.read_text())
    assert saved["rows"] == rows
    for row in rows:
        epochs = saved["seconds"][row["variant"]]
        assert len(epochs) == 1
        assert abs(row["images_per_second"] - 200 / min(epochs)) < 1e-6
    assert len(saved["monitor_seconds"]) == 1  # one timed epoch
    share = saved["monitor_seconds"][0] / saved["seconds"]["psp+monitor"][0]
    assert 0 < saved["monitor_share"] == share < 1
    out = capsys.readouterr().out
    assert "| psp+monitor |" in out and "PreActivationMonitor:" in out
