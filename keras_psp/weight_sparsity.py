"""Weight sparsity and the compression it allows."""

import numpy as np
from keras import ops


def weight_sparsity(model, relative_threshold=1e-3):
    """The share of each kernel's weights that are near zero.

    A weight counts as zero when `|w| < relative_threshold · max|w|` of its
    kernel (the kernels: the trainable variables of rank >= 2). The
    compression ratio is the number of kernel weights over the number that
    are left (what storing only the non-zero weights saves, index overhead
    aside), as the related papers report it.

    Args:
        model: a built Keras model.
        relative_threshold: the threshold, relative to each kernel's
            largest magnitude (default 1e-3), in [0, 1).

    Returns:
        A dict: `"per_kernel"` (`{variable path: share}`), `"overall"` (the
        share of all kernel weights) and `"compression_ratio"`.

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> _ = model.layers[0].kernel.assign(
    ...     [[1.0, 0.0], [0.0, 3.0], [0.5, 1e-4], [1e-5, 2.0]]
    ... )
    >>> result = weight_sparsity(model)
    >>> result["overall"], result["compression_ratio"]
    (0.5, 2.0)
    """
    if not 0 <= relative_threshold < 1:
        raise ValueError(
            "Argument `relative_threshold` must be in [0, 1). Received: "
            f"relative_threshold={relative_threshold!r}."
        )
    per_kernel, zeros, total = {}, 0, 0
    for variable in model.trainable_variables:
        if len(variable.shape) < 2:
            continue
        magnitude = np.abs(np.asarray(ops.convert_to_numpy(variable)))
        small = int(np.sum(magnitude < relative_threshold * magnitude.max()))
        per_kernel[variable.path] = small / magnitude.size
        zeros += small
        total += magnitude.size
    if not total:
        raise ValueError("The model has no kernel (no variable of rank >= 2).")
    left = total - zeros
    return {
        "per_kernel": per_kernel,
        "overall": zeros / total,
        "compression_ratio": total / left if left else float("inf"),
    }
