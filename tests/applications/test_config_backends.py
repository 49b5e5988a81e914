"""The settings checks that depend on the backend: run on every backend."""

import json
import os
import subprocess
import sys

import pytest

from applications import config
from tests.applications.test_config import ROOT
from tests.applications.test_config import started_run


def test_a_run_of_another_backend_is_neither_resumed_nor_reported(tmp_path):
    import keras

    here = keras.backend.backend()
    other = "jax" if here != "jax" else "torch"
    settings = config.run_settings(config.parse_args(["--run-dir", "x"]))
    run_dir = started_run(tmp_path, settings, backend=other)
    program = subprocess.run(
        [sys.executable, "-m", "applications.train", "--run-dir", run_dir],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "KERAS_BACKEND": here},
    )
    assert program.returncode == 2
    assert (
        program.stderr.strip()
        .splitlines()[-1]
        .endswith(
            f"error: argument --backend: {run_dir} was started on {other}, "
            f"not on {here}; resume it with --backend {other} (or "
            f"KERAS_BACKEND={other}), or choose another --run-dir for a "
            f"run on {here}"
        )
    )
    # Finished: its results are another backend's, not reported as these.
    (tmp_path / "run" / "results.json").write_text(
        json.dumps({"status": "finished", "final_test_error": 0.85})
    )
    with pytest.raises(ValueError) as error:
        config.run_config(run_dir=run_dir)
    assert str(error.value) == (
        f"argument --backend: {run_dir} holds a run finished on {other}, "
        f"not on {here}: its results are {other}'s; see them with "
        f"--backend {other} (or KERAS_BACKEND={other}), or choose another "
        f"--run-dir for a run on {here}"
    )
    # A run recorded before args.json held the backend: results.json's.
    (tmp_path / "run" / "args.json").write_text(json.dumps(settings))
    (tmp_path / "run" / "results.json").write_text(
        json.dumps({"final_test_error": 0.85, "backend": other})
    )
    with pytest.raises(ValueError, match=f"finished on {other}, not on "):
        config.run_config(run_dir=run_dir)
    (tmp_path / "run" / "results.json").write_text(
        json.dumps({"final_test_error": 0.85, "backend": here})
    )
    assert config.run_config(run_dir=run_dir).run_dir == run_dir


def test_default_run_dir_names_the_backend_and_finds_older_runs(tmp_path):
    import keras

    here = keras.backend.backend()
    other = "jax" if here != "jax" else "torch"
    run = config.run_config(runs_dir=str(tmp_path), check=False)
    name = f"lenet5_mnist_psp0.001_mean_e5_seed1_{here}"
    assert run.run_dir == str(tmp_path / name)
    # Another backend's (as a process with --backend names its runs).
    args = config.build_parser().parse_args(["--backend", other])
    config.complete(args, pytest.fail, str(tmp_path))
    assert args.run_dir.endswith(f"_e5_seed1_{other}")
    # A dir named before names held the backend: this backend's run there
    # resumes and reports as before; another backend's is left alone.
    old = tmp_path / "lenet5_mnist_psp0.001_mean_e5_seed1"
    old.mkdir()
    (old / "args.json").write_text(json.dumps({"backend": other}))
    run = config.run_config(runs_dir=str(tmp_path), check=False)
    assert run.run_dir == str(tmp_path / name)
    (old / "args.json").write_text(json.dumps({"backend": here}))
    run = config.run_config(runs_dir=str(tmp_path), check=False)
    assert run.run_dir == str(old)
    # Once a dir of the new name exists, it is the run's.
    (tmp_path / name).mkdir()
    run = config.run_config(runs_dir=str(tmp_path), check=False)
    assert run.run_dir == str(tmp_path / name)


def test_distribution_that_does_not_fit_the_backend_is_an_argparse_error(
    tmp_path, capsys
):
    import keras

    backend = keras.backend.backend()
    argv = ["--run-dir", str(tmp_path / "run")]
    for distribution, needs in [
        ("mirrored", "tensorflow"),
        ("multi_worker", "tensorflow"),
        ("data_parallel", "jax"),
    ]:
        if needs == backend:
            assert config.parse_args([*argv, "--distribution", distribution])
            continue
        with pytest.raises(SystemExit) as error:
            config.parse_args([*argv, "--distribution", distribution])
        assert error.value.code == 2
        message = capsys.readouterr().err.strip().splitlines()[-1]
        assert f"argument --distribution: {distribution} needs the " in message
        assert f"--backend {needs}" in message
        with pytest.raises(ValueError, match="argument --distribution"):
            config.run_config(distribution=distribution, check=False)
    assert not os.path.exists(tmp_path / "run")
    # Not a setting of the run: the same run dir, whatever the engine.
    assert "distribution" not in config.run_settings(config.parse_args(argv))
