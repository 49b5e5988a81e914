"""The settings checks that depend on the backend: run on every backend."""

import os
import subprocess
import sys

import pytest

from applications import config
from tests.applications.test_config import ROOT
from tests.applications.test_config import started_run


def test_resuming_on_another_backend_is_an_argparse_error(tmp_path):
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
            f"error: argument --backend: {run_dir} was started on {other}; "
            f"resume it with --backend {other} (or KERAS_BACKEND={other})"
        )
    )
    # A finished run is reported on any backend.
    (tmp_path / "run" / "results.json").write_text("{}")
    config.parse_args(["--run-dir", run_dir])


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
