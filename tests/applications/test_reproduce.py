import json
import os
import shutil
import subprocess
import sys
import time

import keras
import pytest

from applications import experiments
from applications import plots
from applications import report
from applications import reproduce
from applications import run_dir as run_dirs
from tests.helpers import tfds_data

# Backend-independent: the TensorFlow pass runs it (the other passes would
# only repeat it, and CI's time is short).
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="backend-independent report logic: runs in the TensorFlow pass",
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _tiny_argv(tmp_path, experiments, seeds, examples):
    """`applications.reproduce` arguments for 1-epoch runs on `examples`
    training images (the whole test split: the mock data sets are
    small)."""
    return [
        "--experiments",
        *experiments,
        "--seeds",
        str(seeds),
        "--epochs",
        "1",
        "--train-examples",
        str(examples),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--out",
        str(tmp_path / "out"),
        "--verbose",
        "0",
    ]


# The report's logic (tables, pairs, plots, records) is the same on every
# backend, and its longest test trains 12 runs; training through
# `train.train` on every backend is tested by the other tests here and in
# test_train.py.
@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="backend-independent report logic: runs in the TensorFlow pass",
)
def test_tiny_reproduction_writes_tables_and_plots(tmp_path, capsys):
    experiments = ["mnist", "mnist_strength_decay", "mnist_pytorch_init"]
    argv = _tiny_argv(tmp_path, experiments, 2, 200)
    with tfds_data("mnist", num_examples=200):
        rows, pairs = reproduce.main(argv)
    # None, L2, PSP, PSP with λ decay, and L2 and PSP from PyTorch's
    # initialization (the experiments share their L2 and PSP runs, which
    # are not run twice); 2 seeds each.
    runs = sorted(os.listdir(tmp_path / "runs"))
    assert len(runs) == 12
    decayed = [name for name in runs if "_step_" in name]
    assert len(decayed) == 2
    with open(tmp_path / "runs" / decayed[0] / "args.json") as f:
        assert json.load(f)["strength_schedule"] == "step"
    pytorch_init = [name for name in runs if "_pytorchinit_" in name]
    assert len(pytorch_init) == 4
    for name in pytorch_init:
        with open(tmp_path / "runs" / name / "args.json") as f:
            assert json.load(f)["initializer"] == "pytorch"
    assert [r["regime"] for r in rows] == [
        "none",
        "l2",
        "psp",
        "psp_step",
        "l2_pytorch_init",
        "psp_pytorch_init",
    ]
    for row in rows:
        assert row["seeds"] == [1, 2] and 0 <= row["final"][0] <= 100
        per_seed = [row["per_seed"][seed]["final"] for seed in (1, 2)]
        assert abs(row["final"][0] - sum(per_seed) / 2) < 1e-9
    assert {(p["regime"], p["baseline"]) for p in pairs} == {
        ("psp", "l2"),
        ("l2", "none"),
        ("psp", "none"),
        ("psp_step", "l2"),
        ("psp_step", "psp"),
        ("psp_pytorch_init", "l2_pytorch_init"),
        ("psp_pytorch_init", "psp"),
        ("l2_pytorch_init", "l2"),
    }
    final = {(r["dataset"], r["regime"]): r["final"][0] for r in rows}
    for pair in pairs:
        assert pair["seeds"] == [1, 2] and 0 <= pair["better"] <= 2
        # Same seeds on both sides: the mean difference is that of means.
        expected = (
            final[(pair["dataset"], pair["regime"])]
            - final[(pair["dataset"], pair["baseline"])]
        )
        assert abs(pair["difference"][0] - expected) < 1e-9
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| mnist | lenet5 | psp | 0.001 | 1 | 2 |" in summary
    assert "0.57 ± 0.04" in summary  # the authors' logs, beside ours
    assert "| mnist | lenet5 | psp_step − psp | 2 |" in summary
    assert "| data set | model | regime | seed 1 | seed 2 |" in summary
    # Weight sparsity, compression, ⟨z²⟩ and activation sparsity of the
    # final epoch: in every row and in their table.
    for row in rows:
        assert 0 <= row["weight_sparsity"][0] <= 100
        assert row["compression_ratio"][0] >= 1
        assert row["z2"][0] > 0
        assert 0 <= row["activation_sparsity"][0] <= 1
    table = summary.split("Weight sparsity, compression and ⟨z²⟩")[1]
    table = table.split("Final test error % per seed")[0]
    lines = [line for line in table.splitlines() if line.startswith("| mnist")]
    assert len(lines) == 6
    for line in lines:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        sparsity, compression, z2, activation = (
            float(cell.split(" ± ")[0]) for cell in cells[3:]
        )
        assert 0 <= sparsity <= 100 and compression >= 1 and z2 > 0
        assert 0 <= activation <= 1
    data = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert len(data["rows"]) == 6
    for name in plots.NAMES:
        content = (tmp_path / "out" / name).read_bytes()
        assert content.startswith(b"\x89PNG") and len(content) > 10_000

    # Every finished run has a small record beside the report.
    records = sorted(os.listdir(tmp_path / "out" / "runs"))
    assert records == runs
    for name in records:
        record = tmp_path / "out" / "runs" / name
        assert sorted(os.listdir(record)) == [
            "args.json",
            "history.csv",
            "parameters.json",
            "results.json",
        ]
        layers = json.loads((record / "parameters.json").read_text())
        assert [layer["layer"] for layer in layers] == [
            "conv1",
            "conv2",
            "fc1",
            "predictions_logits",
        ]
        assert all(
            len(layer["edges"]) == len(layer["counts"]) + 1 for layer in layers
        )
    # conv1's 5x5x1x20 kernel: every value is counted once.
    assert sum(layers[0]["counts"]) == 5 * 5 * 1 * 20

    # A fresh process can report, and archive a run again (loading its
    # PSP model for the kernel histograms).
    (tmp_path / "out" / "parameters.png").unlink()
    psp_record = tmp_path / "out" / "runs" / decayed[0]
    shutil.rmtree(psp_record)
    fresh = subprocess.run(
        [
            sys.executable,
            "-m",
            "applications.reproduce",
            "--report-only",
            *argv,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert (tmp_path / "out" / "parameters.png").exists()
    assert (psp_record / "parameters.json").exists()

    # With the run dirs gone, the records give the same report.
    shutil.move(tmp_path / "runs", tmp_path / "runs_moved")
    from_records, _ = reproduce.main(["--report-only", *argv])
    assert from_records == rows
    # ... and a run recorded there is not trained again (on another
    # machine, say): no run dir is made.
    again_elsewhere, _ = reproduce.main(argv)
    assert again_elsewhere == rows
    assert not (tmp_path / "runs").exists()
    # A record of other settings (here: other --train-examples) is not
    # mistaken for the run asked for.
    other = _tiny_argv(tmp_path, ["fashion_mnist"], 1, 100)
    with pytest.raises(SystemExit, match="no finished run"):
        reproduce.main(["--report-only", *other])
    shutil.move(tmp_path / "runs_moved", tmp_path / "runs")

    # Finished runs are skipped: a second call only reports.
    start = time.time()
    with tfds_data("mnist", num_examples=200):
        again, _ = reproduce.main(argv)
    assert [r["final"] for r in again] == [r["final"] for r in rows]
    assert time.time() - start < 60
    assert not [n for n in os.listdir(tmp_path / "out") if ".tmp" in n]


def _fake_run(seed, error, extra=None, history_extra=None):
    results = {
        "strength": 1e-3,
        "epochs": 2,
        "final_test_error": error,
        "best_test_error": error - 0.1,
        **(extra or {}),
    }
    history = [
        {"epoch": str(epoch), "val_accuracy": "0.99", "z2_mean": z2}
        for epoch, z2 in ((0, "5.0"), (1, str(seed)))
    ]
    for row in history:
        row.update(history_extra or {})
    return results, history, f"/records/run_{seed}"


def _section(text, start, end):
    """The part of `text` between the headings `start` and `end`."""
    return text.split(start)[1].split(end)[0]


def test_report_of_old_and_new_records_without_training(tmp_path):
    def new(seed, error, sparsity, ratio, activation):
        return _fake_run(
            seed,
            error,
            {
                "weight_sparsity": sparsity,
                "compression_ratio": ratio,
                "weight_sparsity_per_kernel": {"fc1/kernel": sparsity},
                "comparison_strength": 1e-4,
            },
            {"sparsity/fc1": str(activation), "sparsity_mean": str(activation)},
        )

    found = {
        # Old records: none of the new keys, nor activation sparsity.
        ("mnist", "lenet5", "none"): {
            1: _fake_run(1, 0.8),
            2: _fake_run(2, 0.7),
        },
        # A regime measured on one seed only: no mean of the other.
        ("mnist", "lenet5", "l2"): {
            1: new(1, 0.7, 0.1, 1.5, 0.2),
            2: _fake_run(2, 0.6),
        },
        ("mnist", "lenet5", "psp"): {
            1: new(1, 0.6, 0.2, 1.25, 0.3),
            2: new(2, 0.5, 0.4, 2.0, 0.5),
        },
        ("mnist", "lenet5", "psp+soft_diamond"): {
            1: new(1, 0.5, 0.5, 2.0, 0.4),
            2: new(2, 0.6, 0.3, 1.5, 0.6),
        },
    }
    rows, pairs = report.summarize(found)
    by_regime = {row["regime"]: row for row in rows}
    for regime in ("none", "l2"):
        assert by_regime[regime]["weight_sparsity"] is None
        assert by_regime[regime]["compression_ratio"] is None
        assert by_regime[regime]["activation_sparsity"] is None
        assert by_regime[regime]["z2"] == pytest.approx((1.5, 0.5**0.5))
    assert by_regime["none"]["comparison_strength"] is None
    psp = by_regime["psp"]
    assert psp["comparison_strength"] == 1e-4
    assert psp["weight_sparsity"] == pytest.approx((30.0, 200**0.5))
    assert psp["compression_ratio"] == pytest.approx((1.625, 0.375 * 2**0.5))
    assert psp["activation_sparsity"] == pytest.approx((0.4, 0.02**0.5))
    summary = report.markdown(rows, pairs, "command")
    assert "| mnist | lenet5 | psp+soft_diamond − psp | 2 |" in summary
    # λ: the regime's own, then the comparison regularizer's.
    both = "| mnist | lenet5 | psp+soft_diamond | 0.001 + 0.0001 | 2 |"
    assert both in summary
    assert "| mnist | lenet5 | none | 0.001 | 2 |" in summary
    table = summary.split("Weight sparsity, compression and ⟨z²⟩")[1]
    table = table.split("Final test error % per seed")[0]
    # Only rows with a measure; the old records' cells are left empty.
    assert "| mnist | lenet5 | none |  |  | 1.5 ± 0.707 |  |" in table
    assert "| mnist | lenet5 | l2 |  |  | 1.5 ± 0.707 |  |" in table
    assert (
        "| mnist | lenet5 | psp | 30.00 ± 14.14 | 1.62 ± 0.53 "
        "| 1.5 ± 0.707 | 0.400 ± 0.141 |"
    ) in table
    assert (
        "| mnist | lenet5 | psp+soft_diamond | 40.00 ± 14.14 | 1.75 ± 0.35 "
        "| 1.5 ± 0.707 | 0.500 ± 0.141 |"
    ) in table
    # The comparison table: differences to PSP and to none, either way
    # round, with the seeds where the regime was lower.
    comparison = _section(
        summary, "Comparison on mnist, lenet5", "Weight sparsity, compression"
    )
    assert "| none | 0.001 | 2 | 0.75 ± 0.07 | +0.20 ± 0.00, 0/2 |  |" in (
        comparison
    )
    assert (
        "| psp+soft_diamond | 0.001 + 0.0001 | 2 | 0.55 ± 0.07 "
        "| +0.00 ± 0.14, 1/2 |  | 40.00 ± 14.14 |"
    ) in comparison
    # Per layer: the regimes whose every run measured it.
    per_layer = _section(
        summary,
        "Weight sparsity per layer on mnist, lenet5",
        "Final test error % per seed",
    )
    assert "| regime | fc1 |" in per_layer
    assert "| psp | 30.00 ± 14.14 |" in per_layer
    assert "| psp+soft_diamond | 40.00 ± 14.14 |" in per_layer
    assert "| l2 |" not in per_layer and "| none |" not in per_layer
    no_l2 = {key: runs for key, runs in found.items() if key[2] != "l2"}
    written = plots.write(no_l2, str(tmp_path))  # no parameters.json to read
    assert os.path.join(str(tmp_path), "weight_sparsity.png") in written
    # Old records only, without ⟨z²⟩ either: no table, no error.
    old = {
        key: {
            seed: (results, [{"val_accuracy": "0.99"}], record)
            for seed, (results, _, record) in runs.items()
        }
        for key, runs in found.items()
        if key[2] == "none"
    }
    old_rows, old_pairs = report.summarize(old)
    assert old_rows[0]["z2"] is None
    assert "Weight sparsity" not in report.markdown(old_rows, old_pairs, "")
    # No activation sparsity in the records: an older sparsity.png goes.
    (tmp_path / "sparsity.png").write_bytes(b"an earlier report's plot")
    old = {key: runs for key, runs in found.items() if key[2] == "none"}
    written = plots.write(old, str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["test_error.png", "z2.png"]
    assert len(written) == 2


def test_runs_held_by_another_process_are_skipped(tmp_path, capsys):
    argv = _tiny_argv(tmp_path, ["fashion_mnist"], 1, 100)
    (_, _, held), (_, _, free) = reproduce.parse_args(argv).runs
    os.makedirs(held.run_dir)
    with run_dirs.run_lock(held.run_dir):
        with tfds_data("fashion_mnist", num_examples=100):
            rows, _ = reproduce.main(argv)
    assert "skipped:" in capsys.readouterr().out
    assert not os.path.exists(os.path.join(held.run_dir, "results.json"))
    assert os.path.exists(os.path.join(free.run_dir, "results.json"))
    assert [(r["regime"], r["seeds"]) for r in rows] == [
        (free.regularization, [1])
    ]


def test_failed_runs_are_reported_as_failed_not_as_results(
    tmp_path, monkeypatch, capsys
):
    # PSP with λ = 1e4 diverges in its first batches: a failed run.
    monkeypatch.setitem(
        experiments.EXPERIMENTS,
        "diverging",
        [("mnist", "lenet5", 1, {"l2": 1e-4, "psp": 1e4})],
    )
    argv = _tiny_argv(tmp_path, ["diverging"], 1, 300)
    with tfds_data("mnist", num_examples=300):
        with pytest.raises(SystemExit) as error:
            reproduce.main(argv)
    assert error.value.code == f"error: 1 run(s) failed; see {tmp_path}/out"
    rows, pairs, _ = reproduce.run(reproduce.parse_args(argv), "command")
    assert [r["regime"] for r in rows] == ["l2"] and pairs == []
    summary = (tmp_path / "out" / "summary.md").read_text()
    tables, listed = summary.split("Failed runs")
    assert "| mnist | lenet5 | l2 |" in tables
    assert "| mnist | lenet5 | psp |" not in tables  # in no table
    failed = json.loads((tmp_path / "out" / "summary.json").read_text())[
        "failed"
    ]
    assert [(f["regime"], f["seed"]) for f in failed] == [("psp", 1)]
    assert failed[0]["reason"].startswith("non-finite loss")
    assert f"| mnist | lenet5 | psp | 1 | {failed[0]['run']} |" in listed
    record = tmp_path / "out" / "runs" / failed[0]["run"]
    assert sorted(os.listdir(record)) == [
        "args.json",
        "history.csv",
        "results.json",
    ]

    # Run again: the failed run is not retried, nor turned into a result;
    # the records alone give the same report.
    def per_seed(rows):  # one seed: the std is nan, which equals nothing
        return [(r["regime"], r["per_seed"]) for r in rows]

    with tfds_data("mnist", num_examples=300):
        again, no_pairs, _ = reproduce.run(reproduce.parse_args(argv), "")
    assert per_seed(again) == per_seed(rows) and no_pairs == []
    shutil.rmtree(tmp_path / "runs")
    report_only = reproduce.parse_args(["--report-only", *argv])
    from_records, no_pairs, _ = reproduce.run(report_only, "")
    assert per_seed(from_records) == per_seed(rows) and no_pairs == []
    assert (
        json.loads((tmp_path / "out" / "summary.json").read_text())["failed"]
        == failed
    )


def test_when_every_run_failed_no_old_plot_is_left(tmp_path, monkeypatch):
    monkeypatch.setitem(
        experiments.EXPERIMENTS,
        "all_diverge",
        [("mnist", "lenet5", 1, {"psp": 1e4})],
    )
    argv = _tiny_argv(tmp_path, ["all_diverge"], 1, 300)
    out = tmp_path / "out"
    out.mkdir()
    for name in plots.NAMES:
        (out / name).write_bytes(b"an earlier report's plot")
    with tfds_data("mnist", num_examples=300):
        with pytest.raises(SystemExit, match="1 run\\(s\\) failed"):
            reproduce.main(argv)
    assert sorted(os.listdir(out)) == ["runs", "summary.json", "summary.md"]


@pytest.mark.parametrize("option", ["--runs-dir", "--out"])
def test_a_dir_that_cannot_be_written_is_an_argparse_error(
    tmp_path, capsys, option
):
    a_file = tmp_path / "file"
    a_file.write_text("")
    argv = _tiny_argv(tmp_path, ["mnist"], 1, 100)
    argv[argv.index(option) + 1] = str(a_file / "dir")
    with pytest.raises(SystemExit) as error:
        reproduce.parse_args(argv)
    assert error.value.code == 2
    assert f"argument {option}: " in capsys.readouterr().err


def test_report_names_each_regimes_strengths():
    """A comparison regularizer alone shows its own λ, not PSP's 0."""
    alone = {"strength": 0.0, "comparison_strength": 1e-6}
    found = {
        ("mnist", "lenet5", "soft_diamond"): {1: _fake_run(1, 0.8, alone)},
        ("mnist", "lenet5", "l2"): {1: _fake_run(1, 0.7, {"strength": 1e-4})},
    }
    summary = report.markdown(*report.summarize(found), "command")
    assert "| mnist | lenet5 | soft_diamond | 1e-06 | 2 | 1 |" in summary
    assert "| mnist | lenet5 | l2 | 0.0001 | 2 | 1 |" in summary


def test_committed_records_named_before_the_backend_are_still_found(tmp_path):
    """results/runs/ holds records named without the backend (before
    2026-12-02): a TensorFlow reproduction reads them where they are and
    trains none of them again."""
    from applications import records

    out = os.path.join(ROOT, "results")
    argv = ["--experiments", "mnist", "--out", out, "--report-only"]
    args = reproduce.parse_args([*argv, "--runs-dir", str(tmp_path)])
    assert all(records.recorded(run, out) for _, _, run in args.runs)
    found, failures = records.collect(args.runs, out)
    assert not failures and sorted(found) == [
        ("mnist", "lenet5", regime) for regime in ("l2", "none", "psp")
    ]
    assert all(sorted(seeds) == [1, 2, 3] for seeds in found.values())
    assert all(
        os.path.basename(run.run_dir).endswith("_tensorflow")
        for _, _, run in args.runs
    )
