"""Data-parallel training on several devices and machines, with the
frameworks' own engines, equals one device's for the same global batch.

The model (tests/distribution/engines.py) has PSP in `reduction="sum"` with
a large λ, so the PSP term is most of the loss and of the gradient: a PSP
term scaled by 1/replicas (keras-team/keras#19891, fixed by
keras-team/keras#20609) would change the weights after the first step by
about 1e4 times the tolerance (each run also trains one device with λ/2,
and the test checks that it is that far off).

Tolerance: 1e-5 relative (and 1e-6 absolute on the weights). The engines
sum the replicas' gradients of half batches where one device sums one
batch: the same numbers in another order, so float32 rounding (~1e-7
relative per step) is the only difference; measured: at most 1.2e-7 on
the weights after 3 steps.

Each engine needs a fresh process (device counts and `TF_CONFIG` are read
when TensorFlow or JAX starts): the tests run `python -m
tests.distribution.engines` and compare what it writes.
"""

import contextlib
import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TENSORFLOW_ONLY = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="tf.distribute needs the TensorFlow backend; runs in the "
    "TensorFlow pass",
)
JAX_ONLY = pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="keras.distribution on JAX host devices; runs in the JAX pass",
)
RTOL = 1e-5


def engine_process(engine, out, env=None, optimizer="sgd"):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.distribution.engines",
            engine,
            out,
            optimizer,
        ],
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process, timeout=240):
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    assert process.returncode == 0, output[-3000:]


def weights(results, name):
    count = sum(key.startswith(f"{name}_weight") for key in results)
    return [results[f"{name}_weight{i}"] for i in range(count)]


def assert_same_as_one_device(results, name):
    assert int(results[f"{name}_replicas"]) == 2
    single_loss = results["single_loss"]
    single_psp = results["single_psp_loss"]
    # The PSP term dominates: a wrong factor on it cannot hide.
    assert np.all(single_psp > 0.6 * single_loss)
    np.testing.assert_allclose(results[f"{name}_loss"], single_loss, rtol=RTOL)
    np.testing.assert_allclose(
        results[f"{name}_psp_loss"], single_psp, rtol=RTOL
    )
    single = weights(results, "single")
    for got, want in zip(weights(results, name), single, strict=True):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-6)
    # PSP at λ/2 (what a 1/replicas factor gives) is far outside that.
    halved = weights(results, "halved")
    worst = max(
        np.abs(a - b).max() for a, b in zip(halved, single, strict=True)
    )
    assert worst > 1000 * 1e-6


@TENSORFLOW_ONLY
def test_mirrored_strategy_on_two_devices_equals_one(tmp_path):
    out = str(tmp_path / "mirrored.npz")
    finish(engine_process("mirrored", out))
    assert_same_as_one_device(np.load(out), "mirrored")


@JAX_ONLY
def test_data_parallel_on_two_jax_devices_equals_one(tmp_path):
    out = str(tmp_path / "data_parallel.npz")
    finish(engine_process("data_parallel", out))
    assert_same_as_one_device(np.load(out), "data_parallel")


@pytest.mark.parametrize(
    "engine",
    [
        pytest.param("mirrored", marks=TENSORFLOW_ONLY),
        pytest.param("data_parallel", marks=JAX_ONLY),
    ],
)
def test_gradient_coherent_sgd_on_two_devices_equals_one(tmp_path, engine):
    # The coherence test sees the whole batch's gradient and the strong L1
    # is added once, as on one device: same weights, same decisions
    # (the last "weight" is the count of regularized steps per kernel).
    out = str(tmp_path / f"{engine}.npz")
    finish(engine_process(engine, out, optimizer="gradient_coherent"))
    results = np.load(out)
    assert_same_as_one_device(results, engine)
    single = weights(results, "single")
    counts = single[-1]
    assert counts.shape == (3,) and counts.max() > 0
    # An L1 added once per replica would be far off.
    doubled = weights(results, "doubled_l1")
    worst = max(
        np.abs(a - b).max()
        for a, b in zip(doubled[:-1], single[:-1], strict=True)
    )
    assert worst > 1000 * 1e-6


def free_ports(count):
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def tf_config(ports, index):
    workers = [f"127.0.0.1:{port}" for port in ports]
    return json.dumps(
        {
            "cluster": {"worker": workers},
            "task": {"type": "worker", "index": index},
        }
    )


@TENSORFLOW_ONLY
def test_multi_worker_mirrored_strategy_on_two_workers_equals_one(tmp_path):
    ports = free_ports(2)
    outs = [str(tmp_path / f"worker{i}.npz") for i in range(2)]
    workers = [
        engine_process(
            "multi_worker", outs[i], {"TF_CONFIG": tf_config(ports, i)}
        )
        for i in range(2)
    ]
    for worker in workers:
        finish(worker)
    chief, other = np.load(outs[0]), np.load(outs[1])
    assert_same_as_one_device(chief, "multi_worker")
    # Both workers hold the same weights.
    for a, b in zip(
        weights(chief, "multi_worker"),
        weights(other, "multi_worker"),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


# `python -m applications.train --distribution ...`, end to end, on a tiny
# run, against the same run on one device (in this process).
# (lr 0.01: at the default 0.1, float32 rounding differences between the
# engines grow by 1e-3 relative within three epochs of 3 steps.)
TINY = ["--epochs", "1", "--lr", "0.01"]
TINY += ["--train-examples", "200", "--test-examples", "100"]


def program(argv, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "tests.distribution.program", *argv],
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def one_device_run(tmp_path):
    from applications import run_dir as run_dirs
    from applications import train
    from tests.helpers import tfds_data

    run_dir = str(tmp_path / "one")
    with tfds_data("mnist", num_examples=300):
        results = train.main([*TINY, "--verbose", "0", "--run-dir", run_dir])
    assert results["distribution"] == "none" and results["replicas"] == 1
    args = run_dirs.read_json(os.path.join(run_dir, "args.json"))
    assert "distribution" not in args  # not a setting of the run
    return history(run_dir)


def history(run_dir):
    from applications import run_dir as run_dirs

    rows = run_dirs.read_history(os.path.join(run_dir, "history.csv"))
    return {
        key: [float(row[key]) for row in rows]
        for key in ("loss", "psp_loss", "val_loss")
    }


def assert_program_ran_on_two(run_dir, distribution, expected):
    from applications import run_dir as run_dirs

    assert sorted(os.listdir(run_dir)) == [
        "args.json",
        "history.csv",
        "model.keras",
        "results.json",
    ]
    results = run_dirs.read_json(os.path.join(run_dir, "results.json"))
    assert results["status"] == "finished"
    assert results["distribution"] == distribution
    assert results["replicas"] == 2
    got = history(run_dir)
    for key, values in expected.items():
        np.testing.assert_allclose(got[key], values, rtol=RTOL, err_msg=key)


@pytest.mark.parametrize(
    "distribution",
    [
        pytest.param("mirrored", marks=TENSORFLOW_ONLY),
        pytest.param("data_parallel", marks=JAX_ONLY),
    ],
)
def test_train_program_on_two_devices_equals_one(tmp_path, distribution):
    run_dir = str(tmp_path / distribution)
    running = program(
        ["--distribution", distribution, *TINY, "--run-dir", run_dir]
    )
    expected = one_device_run(tmp_path)  # meanwhile
    finish(running)
    assert_program_ran_on_two(run_dir, distribution, expected)


@TENSORFLOW_ONLY
def test_train_program_on_two_workers_equals_one(tmp_path):
    run_dir = str(tmp_path / "multi_worker")
    ports = free_ports(2)
    argv = ["--distribution", "multi_worker", *TINY, "--run-dir", run_dir]
    workers = [
        program(argv, {"TF_CONFIG": tf_config(ports, i)}) for i in range(2)
    ]
    expected = one_device_run(tmp_path)  # meanwhile
    for worker in workers:
        finish(worker)
    # Only the chief (task 0) wrote the run dir; the other worker wrote
    # into a temporary dir, which it removed.
    assert_program_ran_on_two(run_dir, "multi_worker", expected)


@JAX_ONLY
def test_converted_gemma_keeps_its_model_parallel_sharding(tmp_path):
    """keras_hub's Gemma layout map (matched on variable paths) shards the
    converted backbone's variables as it shards the original's, and the
    converted backbone trains with one PSP term per gated MLP."""
    out = str(tmp_path / "model_parallel.json")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.distribution.model_parallel", out],
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    finish(process)
    with open(out) as f:
        result = json.load(f)
    assert result["devices"] == 2
    assert result["paths_equal"]
    # Embedding, attention and feed-forward kernels of both blocks.
    assert len(result["original"]) == 15
    assert result["converted"] == result["original"]
    for spec, axes in result["converted"].values():
        assert spec == f"P{axes}"
    assert result["max_abs_diff"] == 0.0
    assert result["psp_terms"] == 2  # gelu(gate(x)) in each block
    assert result["psp_loss"] > 0
