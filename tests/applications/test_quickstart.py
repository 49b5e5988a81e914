import re
import time

import pytest

from applications import quickstart
from keras_psp import datasets
from tests.applications.test_train import progress_lines
from tests.helpers import tfds_data


def test_trains_both_models_and_prints_errors_and_psp_term(capsys):
    with tfds_data("mnist", num_examples=400):
        quickstart.main(
            [
                "--epochs",
                "1",
                "--train-examples",
                "400",
                "--test-examples",
                "400",
            ]
        )
    out = capsys.readouterr().out
    # The progress bar fits 100 columns (it was 160: every log entry).
    lines = progress_lines(out)
    assert len(lines) >= 2 and max(map(len, lines)) <= 100, max(lines, key=len)
    assert "psp_loss: " in lines[-1] and "val_psp_loss" not in lines[-1]
    rows = dict(re.findall(r"^(L2|PSP)\s+([0-9.]+)\s", out, flags=re.M))
    assert set(rows) == {"L2", "PSP"}
    assert all(0 <= float(error) <= 100 for error in rows.values())
    term = re.search(r"PSP term on the test set: ([0-9.]+)", out)
    assert term and float(term.group(1)) > 0


def test_missing_data_fails_fast_with_advice(tmp_path, monkeypatch):
    # As on a machine without network.
    monkeypatch.setattr(datasets, "_reachable", lambda host, timeout=5: False)
    start = time.time()
    with pytest.raises(SystemExit, match="TFDS_DATA_DIR"):
        quickstart.main(["--data-dir", str(tmp_path)])
    assert time.time() - start < 30


@pytest.mark.parametrize("argv", [["--epochs", "0"], ["--batch-size", "x"]])
def test_bad_arguments_are_argparse_errors(argv, capsys):
    with pytest.raises(SystemExit) as error:
        quickstart.main(argv)
    assert error.value.code == 2
    assert argv[0] in capsys.readouterr().err
