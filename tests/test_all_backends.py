"""The side-by-side runner of the suite (tests/all_backends.py)."""

import keras
import pytest

from tests import all_backends

# The runner does not depend on the Keras backend: the TensorFlow pass runs it.
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the test runner, backend-independent: runs in the TensorFlow pass",
)


def _suite(tmp_path, body):
    (tmp_path / "test_one.py").write_text(
        "import os\n\n\ndef test_backend():\n" + body
    )
    return [str(tmp_path), "-p", "no:cacheprovider"]


def test_every_pass_runs_on_its_own_backend(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BACKENDS", "jax torch")
    body = "    assert os.environ['KERAS_BACKEND'] in ('jax', 'torch')\n"
    assert all_backends.main(_suite(tmp_path, body)) == 0
    out = capsys.readouterr().out
    assert "KERAS_BACKEND=jax: passed" in out
    assert "KERAS_BACKEND=torch: passed" in out
    assert "all backends passed" in out


def test_one_failing_pass_fails_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BACKENDS", "jax torch")
    body = "    assert os.environ['KERAS_BACKEND'] == 'jax'\n"
    assert all_backends.main(_suite(tmp_path, body)) == 1
    out = capsys.readouterr().out
    assert "KERAS_BACKEND=torch: FAILED" in out
    assert "FAILED on: torch" in out


@pytest.mark.parametrize("backends", ["jx", ""])
def test_unknown_backends_are_named(monkeypatch, backends):
    monkeypatch.setenv("BACKENDS", backends)
    with pytest.raises(SystemExit, match="BACKENDS must name some of"):
        all_backends.main([])
