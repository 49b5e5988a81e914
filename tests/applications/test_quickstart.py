import contextlib
import re
import time

import pytest
import tensorflow_datasets as tfds

from applications import quickstart


@contextlib.contextmanager
def mnist_available():
    """Real local MNIST when prepared, else tfds' mock data."""
    if tfds.builder("mnist").is_prepared():
        yield
        return
    with tfds.testing.mock_data(num_examples=400):
        original = tfds.core.DatasetBuilder.is_prepared
        tfds.core.DatasetBuilder.is_prepared = lambda self: True
        try:
            yield
        finally:
            tfds.core.DatasetBuilder.is_prepared = original


def test_trains_both_models_and_prints_errors_and_psp_term(capsys):
    with mnist_available():
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
    rows = dict(re.findall(r"^(L2|PSP)\s+([0-9.]+)\s", out, flags=re.M))
    assert set(rows) == {"L2", "PSP"}
    assert all(0 <= float(error) <= 100 for error in rows.values())
    term = re.search(r"PSP term on the test set: ([0-9.]+)", out)
    assert term and float(term.group(1)) > 0


def test_missing_data_fails_fast_with_advice(tmp_path):
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
