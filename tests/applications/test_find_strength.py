import inspect
import json

import pytest

import keras_psp
from applications import find_strength
from applications import train
from tests.helpers import in_pytorch_pass
from tests.helpers import tfds_data


def test_choose_takes_the_lowest_validation_error_and_the_smaller_tie():
    assert find_strength.choose({1e-4: 2.0, 1e-3: 1.5, 1e-2: 1.7}) == 1e-3
    assert find_strength.choose({3e-3: 1.5, 1e-3: 1.5, 1e-2: 1.7}) == 1e-3


def test_sweep_is_around_the_suggestion_or_the_grid():
    args = find_strength.parse_args(["--factors", "0.1", "1", "10"])
    assert find_strength.sweep_strengths(args, 2.2347e-3) == [
        2.23e-4,
        2.23e-3,
        2.23e-2,
    ]
    args = find_strength.parse_args(["--grid", "1e-2", "1e-4", "1e-2"])
    assert find_strength.sweep_strengths(args, 2.2347e-3) == [1e-4, 1e-2]


def test_default_share_is_the_finders():
    default = inspect.signature(keras_psp.find_strength).parameters["share"]
    assert find_strength.parse_args([]).share == default.default


@pytest.mark.parametrize(
    "argv, option",
    [
        (["--share", "0"], "--share"),
        (["--factors", "-1"], "--factors"),
        (["--grid", "x"], "--grid"),
        (["--test-seeds", "0"], "--test-seeds"),
        (["--validation-split", "0"], "--validation-split"),
        (["--datasets", "cifar10"], "--datasets"),
        (["--steps", "0"], "--steps"),
    ],
)
def test_bad_arguments_are_argparse_errors(argv, option, capsys):
    with pytest.raises(SystemExit) as error:
        find_strength.parse_args(argv)
    assert error.value.code == 2
    assert option in capsys.readouterr().err.strip().splitlines()[-1]


class _Untouchable:
    """Stands for the test set: any use of it fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"the test set was read ({name})")

    def __iter__(self):
        raise AssertionError("the test set was read")


# Training through `train.train` is tested on every backend in
# test_train.py, the finder in tests/test_strength_finder.py; the
# program's own logic is backend-independent.
@in_pytorch_pass("program logic")
def test_sweep_on_the_validation_split_and_resume(tmp_path, monkeypatch):
    load = keras_psp.datasets.load

    def without_test_set(*args, **kwargs):
        return load(*args, **kwargs)._replace(test=_Untouchable())

    monkeypatch.setattr(keras_psp.datasets, "load", without_test_set)
    out = tmp_path / "out"
    argv = ["--factors", "0.1", "10", "--epochs", "1", "--steps", "2"]
    argv += ["--train-examples", "300", "--runs-dir", str(tmp_path / "runs")]
    argv += ["--out", str(out), "--verbose", "0"]
    with tfds_data("mnist", num_examples=300):
        summary, failed = find_strength.main(argv)
    assert failed == []
    entry = summary["mnist"]
    suggested = entry["suggestion"]["strength"]
    assert [row["strength"] for row in entry["sweep"]] == [
        find_strength.rounded(suggested * 0.1),
        find_strength.rounded(suggested * 10),
    ]
    errors = {}
    for row in entry["sweep"]:
        assert row["evaluated_on"] == "validation"
        errors[row["strength"]] = row["final_validation_error"]
    assert entry["chosen"] == min(sorted(errors), key=errors.get)
    with open(out / "find_strength.json") as f:
        assert json.load(f)["datasets"]["mnist"]["chosen"] == entry["chosen"]
    assert (out / "find_strength.md").read_text().count("| yes |") == 1
    assert (out / "find_strength.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The same command again trains nothing and finds the same.
    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(train, "_run", no_training)
    monkeypatch.setattr(keras_psp, "find_strength", no_training)
    with tfds_data("mnist", num_examples=300):
        again, failed = find_strength.main(argv)
    assert failed == []
    assert again == summary
