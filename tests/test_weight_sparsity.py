import keras
import numpy as np
import pytest

from keras_psp import weight_sparsity


def test_counts_weights_below_the_threshold_of_each_kernel():
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(2), keras.layers.Dense(2)]
    )
    first, second = model.layers
    first.kernel.assign([[1.0, 0.0], [5e-4, 2e-3], [-0.5, 1e-3]])
    second.kernel.assign([[100.0, 0.01], [0.2, -0.05]])
    result = weight_sparsity(model)
    # First: |w| < 1e-3 (of max 1): 0 and 5e-4 (1e-3 is not below).
    # Second: < 0.1: 0.01 and -0.05. Biases are not counted.
    assert result["per_kernel"] == {
        first.kernel.path: pytest.approx(2 / 6),
        second.kernel.path: pytest.approx(2 / 4),
    }
    assert result["overall"] == pytest.approx(4 / 10)
    assert result["compression_ratio"] == pytest.approx(10 / 6)
    assert weight_sparsity(model, relative_threshold=0)["overall"] == 0


def test_bad_threshold_and_models_without_kernels_are_refused():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="`relative_threshold` must be in"):
        weight_sparsity(model, relative_threshold=1.5)
    empty = keras.Sequential([keras.Input((3,)), keras.layers.ReLU()])
    with pytest.raises(ValueError, match="no kernel"):
        weight_sparsity(empty)
    # An all-zero kernel: nothing is below 0 · max, nothing is pruned.
    model.layers[0].kernel.assign(np.zeros((3, 2)))
    assert weight_sparsity(model)["overall"] == 0
