import json
import os

import keras
import pytest

from applications import config

# Backend-independent: the TensorFlow pass runs it (the other passes would
# only repeat it, and CI's time is short).
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="backend-independent settings logic: runs in the TensorFlow pass",
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


@pytest.mark.parametrize(
    "argv, argument",
    [
        (["--epochs", "0"], "--epochs"),
        (["--strength", "-1"], "--strength"),
        (["--strength", "nan"], "--strength"),
        (["--strength", "1e300"], "--strength"),  # inf in float32
        (["--lr", "1e39"], "--lr"),
        (["--batch-size", "ten"], "--batch-size"),
        (["--momentum", "2"], "--momentum"),
        (["--momentum", "-0.1"], "--momentum"),
        (["--momentum", "1"], "--momentum"),
        (["--seed", "-1"], "--seed"),
        (["--seed", "2147483648"], "--seed"),
        (["--seed", "1.5"], "--seed"),
        (["--model", "resnet18"], "--model"),
        (["--dataset", "cifar10"], "--model"),
        (["--regularization", "none", "--strength", "0.1"], "--strength"),
        (
            ["--regularization", "l2", "--strength-schedule", "cosine"],
            "--strength-schedule",
        ),
        (["--model", "vgg"], "--model"),
        (["--epocs", "3"], "--epocs"),  # a typo
        (["--comparison", "soft_daimond"], "--comparison"),
        (["--comparison-strength", "1e-4"], "--comparison-strength"),
        (
            ["--regularization", "l2", "--comparison", "soft_diamond"],
            "--comparison",
        ),
        (["--comparison", "soft_diamond", "--alpha", "3"], "--alpha"),
        (["--comparison", "soft_diamond", "--dispersion", "0"], "--dispersion"),
        (["--alpha", "1"], "--alpha"),  # without soft_diamond
        (["--validation-split", "1"], "--validation-split"),
    ],
)
def test_bad_arguments_are_argparse_errors(argv, argument, tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    with pytest.raises(SystemExit) as error:
        config.parse_args([*argv, "--run-dir", run_dir])
    assert error.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert argument in message and "error:" in message
    assert not os.path.exists(run_dir)  # checked before anything is written


def test_paper_defaults(tmp_path):
    os.chdir(tmp_path)
    mnist = config.parse_args([])
    assert (mnist.batch_size, mnist.momentum, mnist.schedule) == (
        100,
        0.0,
        "constant",
    )
    assert mnist.strength == 1e-3 and mnist.reduction == "mean"
    assert mnist.run_dir == os.path.join(
        "runs", "lenet5_mnist_psp0.001_mean_e5_seed1_tensorflow"
    )
    cifar = config.parse_args(
        [
            "--model",
            "resnet18",
            "--dataset",
            "cifar10",
            "--regularization",
            "l2",
        ]
    )
    assert (cifar.batch_size, cifar.momentum, cifar.schedule) == (
        128,
        0.9,
        "step",
    )
    assert cifar.strength == 5e-4
    assert not os.path.exists("runs")


@pytest.mark.parametrize("kind", ["file", "inside a file"])
def test_run_dir_that_cannot_be_a_dir_is_an_argparse_error(
    tmp_path, capsys, kind
):
    a_file = tmp_path / "file"
    a_file.write_text("")
    run_dir = a_file if kind == "file" else a_file / "run"
    with pytest.raises(SystemExit) as error:
        config.parse_args(["--run-dir", str(run_dir)])
    assert error.value.code == 2
    assert "argument --run-dir:" in capsys.readouterr().err
    assert a_file.read_text() == ""


def started_run(tmp_path, settings, backend=None):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    recorded = dict(settings)
    if backend:
        recorded["backend"] = backend
    (run_dir / "args.json").write_text(json.dumps(recorded))
    (run_dir / "history.csv").write_text("epoch,loss\n0,1.0\n")
    return str(run_dir)


def test_run_dir_of_a_started_run_with_other_settings_is_refused(
    tmp_path, capsys
):
    settings = config.run_settings(config.parse_args(["--run-dir", "x"]))
    run_dir = started_run(tmp_path, {**settings, "seed": 99})
    with pytest.raises(SystemExit) as error:
        config.parse_args(["--run-dir", run_dir])
    assert error.value.code == 2
    message = capsys.readouterr().err
    assert "argument --run-dir:" in message and "(seed)" in message
    # The same settings resume it.
    config.parse_args(["--run-dir", run_dir, "--seed", "99"])


def test_args_json_of_a_run_that_trained_nothing_does_not_bind(tmp_path):
    # A run that stopped before its first epoch (bad data, Ctrl-C) leaves
    # args.json: the corrected command takes the dir.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "args.json").write_text(json.dumps({"momentum": 2.0}))
    args = config.parse_args(["--run-dir", str(run_dir)])
    assert args.momentum == 0.0


def test_run_config_checks_like_the_command_line(tmp_path):
    run = config.run_config(
        runs_dir=str(tmp_path), dataset="fashion_mnist", regularization="l2"
    )
    assert run.strength == 1e-4 and run.batch_size == 100
    assert run.run_dir == str(
        tmp_path / "lenet5_fashion_mnist_l20.0001_e5_seed1_tensorflow"
    )
    with pytest.raises(ValueError, match="argument --model: resnet18"):
        config.run_config(model="resnet18")
    with pytest.raises(ValueError, match="unknown run setting 'epoch'"):
        config.run_config(epoch=3)


def test_same_run_ignores_the_backend():
    args = config.parse_args(["--run-dir", "x"])
    settings = config.run_settings(args)
    assert config.same_run({**settings, "backend": "jax"}, args)
    assert not config.same_run({**settings, "seed": 2}, args)


def test_mixed_precision_takes_a_policy_and_old_records_still_match(
    tmp_path, capsys
):
    for policy in config.POLICIES:
        args = config.parse_args(
            ["--mixed-precision", policy, "--run-dir", "x"]
        )
        assert config.run_settings(args)["mixed_precision"] == policy
    with pytest.raises(SystemExit):
        config.parse_args(["--mixed-precision", "float16", "--run-dir", "x"])
    assert "argument --mixed-precision" in capsys.readouterr().err
    # Runs recorded when --mixed-precision was a flag (mixed_float16).
    default = config.parse_args(["--run-dir", "x"])
    settings = config.run_settings(default)
    float16 = config.parse_args(
        ["--mixed-precision", "mixed_float16", "--run-dir", "x"]
    )
    bfloat16 = config.parse_args(
        ["--mixed-precision", "mixed_bfloat16", "--run-dir", "x"]
    )
    old_off = {**settings, "mixed_precision": False}
    old_on = {**settings, "mixed_precision": True}
    assert config.same_run(old_off, default)
    assert config.same_run(old_on, float16)
    assert not config.same_run(old_on, default)
    assert not config.same_run(old_on, bfloat16)
    # A run dir started before: resumed by the same settings only.
    run_dir = started_run(tmp_path, old_off)
    config.parse_args(["--run-dir", run_dir])
    with pytest.raises(SystemExit):
        config.parse_args(
            ["--run-dir", run_dir, "--mixed-precision", "mixed_bfloat16"]
        )
    assert "(mixed_precision)" in capsys.readouterr().err


def test_run_config_takes_the_old_mixed_precision_flag_and_checks_choices():
    assert config.run_config(
        mixed_precision=True, check=False
    ).mixed_precision == ("mixed_float16")
    assert config.run_config(
        mixed_precision=False, check=False
    ).mixed_precision == ("none")
    with pytest.raises(ValueError, match="argument --mixed-precision"):
        config.run_config(mixed_precision="float16", check=False)
    with pytest.raises(ValueError, match="argument --distribution"):
        config.run_config(distribution="mirror", check=False)


def test_comparison_settings_name_the_run_and_old_records_still_match():
    default = config.parse_args(["--run-dir", "x"])
    # Runs recorded before the comparison options are the same runs.
    assert not {
        "comparison",
        "comparison_strength",
        "alpha",
        "dispersion",
        "validation_split",
    } & set(config.run_settings(default))
    args = config.run_config(
        check=False,
        comparison="soft_diamond",
        alpha=1.0,
        validation_split=0.1,
    )
    assert args.comparison_strength == config.COMPARISONS["soft_diamond"]
    settings = config.run_settings(args)
    assert (settings["comparison"], settings["alpha"]) == ("soft_diamond", 1.0)
    assert not config.same_run(config.run_settings(default), args)
    assert "_soft_diamond1e-06_a1_d0.01_" in args.run_dir
    assert "_val0.1_" in args.run_dir
    alone = config.run_config(
        check=False, regularization="none", comparison="activation_sparsity"
    )
    strength = config.COMPARISONS["activation_sparsity"]
    assert f"lenet5_mnist_none_activation_sparsity{strength:g}_e5" in (
        alone.run_dir
    )
