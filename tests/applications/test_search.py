import json
import os

import pytest

from applications import search
from tests.helpers import in_pytorch_pass
from tests.helpers import tfds_data


def test_choose_takes_the_lowest_final_validation_error_and_the_smaller_tie():
    found = {
        ("mnist", "soft_diamond", 1e-7): {"final_test_error": 1.2},
        ("mnist", "soft_diamond", 1e-6): {"final_test_error": 0.9},
        ("mnist", "soft_diamond", 1e-5): {"final_test_error": 1.0},
        ("mnist", "activation_sparsity", 1e-2): {"final_test_error": 0.8},
        ("mnist", "activation_sparsity", 1e-3): {"final_test_error": 0.8},
        ("fashion_mnist", "soft_diamond", 1e-5): {"final_test_error": 9.0},
        ("mnist", "psp", 1e-3): {"final_test_error": 0.1},  # not chosen
    }
    assert search.choose(found) == {
        "mnist": {"soft_diamond": 1e-6, "activation_sparsity": 1e-3},
        "fashion_mnist": {"soft_diamond": 1e-5},
    }


@pytest.mark.parametrize(
    "argv, option",
    [
        (["--validation-split", "0"], "--validation-split"),
        (["--methods", "soft_daimond"], "--methods"),
        (["--datasets", "cifar10"], "--datasets"),
        (["--epochs", "0"], "--epochs"),
    ],
)
def test_bad_arguments_are_argparse_errors(argv, option, capsys):
    with pytest.raises(SystemExit) as error:
        search.parse_args(argv)
    assert error.value.code == 2
    assert option in capsys.readouterr().err.strip().splitlines()[-1]


# Training through `train.train` is tested on every backend in
# test_train.py; the search's own logic is backend-independent.
@in_pytorch_pass("program logic")
def test_search_trains_the_grid_on_the_validation_split(tmp_path):
    out = tmp_path / "out"
    argv = ["--methods", "activation_sparsity", "--epochs", "1"]
    argv += ["--train-examples", "300", "--runs-dir", str(tmp_path / "runs")]
    argv += ["--out", str(out), "--verbose", "0"]
    with tfds_data("mnist", num_examples=300):
        chosen, failed = search.main(argv)
    assert failed == []
    assert (
        chosen["mnist"]["activation_sparsity"]
        in search.GRID["activation_sparsity"]
    )
    with open(out / "search.json") as f:
        saved = json.load(f)
    assert saved["chosen"] == chosen
    assert [(r["method"], r["strength"]) for r in saved["runs"]] == [
        ("none", 0.0),
        ("psp", 1e-3),
        ("activation_sparsity", 1e-3),
        ("activation_sparsity", 1e-2),
        ("activation_sparsity", 1e-1),
    ]
    assert all(r["epochs"] == 1 for r in saved["runs"])
    table = (out / "search.md").read_text()
    assert table.count("| yes |") == 1
    for name in os.listdir(tmp_path / "runs"):
        with open(tmp_path / "runs" / name / "results.json") as f:
            assert json.load(f)["evaluated_on"] == "validation"
