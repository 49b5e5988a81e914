import keras
import pytest

from applications import experiments

# Backend-independent: the TensorFlow pass runs it (the other passes would
# only repeat it, and CI's time is short).
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="backend-independent experiment table: runs in the TensorFlow pass",
)


def test_comparison_runs_take_the_chosen_strengths_alone_and_with_psp():
    runs = {
        key[2]: run
        for key, _, run in experiments.configurations(["comparison_mnist"], 1)
    }
    assert set(runs) == {
        "none",
        "l2",
        "psp",
        *experiments.COMPARED,
        *(f"psp+{method}" for method in experiments.COMPARED),
    }
    chosen = experiments.COMPARISON_STRENGTH["mnist"]
    for method in experiments.COMPARED:
        for regime, regularization in (
            (method, "none"),
            (f"psp+{method}", "psp"),
        ):
            run = runs[regime]
            assert (run.comparison, run.regularization) == (
                method,
                regularization,
            )
            assert run.comparison_strength == chosen[method]
            assert run.epochs == 50
    # The baselines are the mnist experiment's runs (shared run dirs).
    mnist = {k[2]: r for k, _, r in experiments.configurations(["mnist"], 1)}
    assert {r: runs[r].run_dir for r in mnist} == {
        r: run.run_dir for r, run in mnist.items()
    }


def test_a_data_set_without_chosen_strengths_is_refused(monkeypatch):
    monkeypatch.setattr(experiments, "COMPARISON_STRENGTH", {})
    with pytest.raises(
        ValueError, match="applications.search --datasets mnist"
    ):
        list(experiments.configurations(["comparison_mnist"], 1))
