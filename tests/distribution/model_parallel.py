"""A keras_hub Gemma backbone, converted with `apply_psp` under
`keras.distribution.ModelParallel` with Gemma's own layout map, on two JAX
host devices; writes what the test checks as JSON.

    python -m tests.distribution.model_parallel OUT.json

Set before JAX starts: a fresh process (see tests/test_distribution.py).
"""

import json
import os
import sys


def _sharded(model, layout_map):
    """`{path: spec}` for the variables the layout map shards."""
    found = {}
    for variable in model.variables:
        layout = layout_map[variable.path]
        if layout is None or all(axis is None for axis in layout.axes):
            continue
        found[variable.path] = [
            str(variable.value.sharding.spec),
            str(tuple(layout.axes)),
        ]
    return found


def main(out):
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    os.environ["KERAS_BACKEND"] = "jax"
    import keras
    import keras_hub
    import numpy as np

    import keras_psp
    from keras_psp.models.psp_model import psp_losses

    devices = keras.distribution.list_devices()
    mesh = keras.distribution.DeviceMesh((1, 2), ["batch", "model"], devices)
    layout_map = keras_hub.models.GemmaBackbone.get_layout_map(mesh)
    keras.distribution.set_distribution(
        keras.distribution.ModelParallel(
            layout_map=layout_map, batch_dim_name="batch"
        )
    )
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=64,
        num_layers=2,
        num_query_heads=2,
        num_key_value_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        head_dim=16,
    )
    converted = keras_psp.apply_psp(backbone, strength=1e-3)
    x = {
        "token_ids": np.random.default_rng(0).integers(0, 64, (2, 8)),
        "padding_mask": np.ones((2, 8), "int32"),
    }
    expected = keras.ops.convert_to_numpy(backbone(x))
    got = keras.ops.convert_to_numpy(converted(x))
    terms = len(psp_losses(converted))
    converted.compile(optimizer=keras.optimizers.SGD(1e-2))
    history = converted.fit(x, epochs=1, batch_size=2, verbose=0).history
    result = {
        "devices": len(devices),
        "original": _sharded(backbone, layout_map),
        "converted": _sharded(converted, layout_map),
        "paths_equal": sorted(v.path for v in backbone.variables)
        == sorted(
            v.path
            for v in converted.variables
            if not v.path.endswith("strength")
        ),
        "max_abs_diff": float(np.max(np.abs(expected - got))),
        "psp_terms": terms,
        "psp_loss": float(history["psp_loss"][-1]),
    }
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1])
