import json
import os
import time

from applications import reproduce
from applications import train
from tests.helpers import tfds_data


def test_tiny_reproduction_writes_tables_and_plots(tmp_path, capsys):
    argv = [
        "--experiments",
        "mnist",
        "fashion_mnist",
        "--seeds",
        "2",
        "--epochs",
        "1",
        "--train-examples",
        "200",
        "--test-examples",
        "200",
        "--runs-dir",
        str(tmp_path / "runs"),
        "--out",
        str(tmp_path / "out"),
        "--verbose",
        "0",
    ]
    with tfds_data("mnist", num_examples=200):
        rows, pairs = reproduce.main(argv)
    # MNIST: none, L2, PSP; Fashion-MNIST: L2, PSP; 2 seeds each.
    assert len(os.listdir(tmp_path / "runs")) == 10
    assert {(r["dataset"], r["regime"]) for r in rows} == {
        ("mnist", "none"),
        ("mnist", "l2"),
        ("mnist", "psp"),
        ("fashion_mnist", "l2"),
        ("fashion_mnist", "psp"),
    }
    for row in rows:
        assert row["seeds"] == [1, 2] and 0 <= row["final"][0] <= 100
    assert {p["dataset"] for p in pairs} == {"mnist", "fashion_mnist"}
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| mnist | lenet5 | psp | 0.001 | 1 | 2 |" in summary
    assert "0.57 ± 0.04" in summary  # the authors' logs, beside ours
    assert "Paired PSP − L2" in summary
    data = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert len(data["rows"]) == 5
    for name in ("test_error.png", "z2.png", "parameters.png"):
        content = (tmp_path / "out" / name).read_bytes()
        assert content.startswith(b"\x89PNG") and len(content) > 10_000

    # Finished runs are skipped: a second call only reports.
    start = time.time()
    with tfds_data("mnist", num_examples=200):
        again, _ = reproduce.main(argv)
    assert [r["final"] for r in again] == [r["final"] for r in rows]
    assert time.time() - start < 60
    assert not [n for n in os.listdir(tmp_path / "out") if ".tmp" in n]


def test_runs_held_by_another_process_are_skipped(tmp_path, capsys):
    argv = [
        "--experiments",
        "fashion_mnist",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--train-examples",
        "100",
        "--test-examples",
        "100",
        "--runs-dir",
        str(tmp_path / "runs"),
        "--out",
        str(tmp_path / "out"),
        "--verbose",
        "0",
    ]
    (_, _, held), (_, _, free) = list(
        reproduce.configurations(reproduce.parse_args(argv))
    )
    os.makedirs(held.run_dir)
    with train.run_lock(held.run_dir):
        with tfds_data("fashion_mnist", num_examples=100):
            rows, _ = reproduce.main(argv)
    assert "skipped:" in capsys.readouterr().out
    assert not os.path.exists(os.path.join(held.run_dir, "results.json"))
    assert os.path.exists(os.path.join(free.run_dir, "results.json"))
    assert [(r["regime"], r["seeds"]) for r in rows] == [
        (free.regularization, [1])
    ]
