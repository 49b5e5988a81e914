"""Smoke test of an installed keras-psp wheel, run from outside the checkout.

`.ci/check_wheel` installs the built wheel (not the checkout) into a fresh
virtual environment with one Keras backend and runs this script there with
`python -I` from an empty directory, so nothing of the repository can be
imported by accident. It checks that:

- `keras_psp` is imported from the environment's site-packages, and its
  `__version__` is the wheel's version;
- the description (the README) links to the repository's files by absolute
  URLs (setup.py makes them so), which resolve on PyPI;
- the README's first usage example runs as written (its text is read from
  the installed package's metadata, which holds the README);
- `apply_psp` and `strip_psp` keep a small functional model's class and
  predictions, and the converted model takes a `fit` step that logs
  `psp_loss`; its `.keras` file loads, and `enable_psp` on it gives the
  same terms;
- the converted model loads back from `.keras` without `custom_objects`
  with equal predictions.

`.ci/check_wheel` runs it with the oldest Keras that setup.cfg allows.

Usage (inside the environment): `python -I smoke_wheel.py`.
"""

import importlib.metadata
import os
import re
import sys
import sysconfig
import tempfile

import numpy as np


def check(condition, message):
    if not condition:
        raise SystemExit(f"smoke_wheel: FAILED: {message}")
    print(f"smoke_wheel: ok: {message}")


def main():
    import keras

    import keras_psp

    site_packages = os.path.realpath(sysconfig.get_paths()["purelib"])
    location = os.path.realpath(keras_psp.__file__)
    check(
        location.startswith(site_packages + os.sep),
        f"keras_psp imported from site-packages ({location})",
    )
    version = importlib.metadata.version("keras-psp")
    check(
        keras_psp.__version__ == version,
        f"__version__ {keras_psp.__version__} is the wheel's {version}",
    )

    readme = importlib.metadata.metadata("keras-psp")["Description"]
    # Every link target, whatever setup.py's rewriting matched.
    targets = re.findall(r"\]\(([^)\s]+)\)", readme)
    relative = [t for t in targets if not t.startswith(("https://", "#"))]
    check(
        not relative and "/blob/main/docs/guide/" in readme,
        f"the description's links are absolute (relative: {relative})",
    )
    example = re.findall(r"```python\n(.*?)```", readme, flags=re.S)[0]
    namespace = {}
    exec(compile(example, "README.md", "exec"), namespace)
    check(
        isinstance(namespace["model"], keras.Model),
        "the README's first usage example runs",
    )

    keras.utils.set_random_seed(0)
    # Functional (the README's example is Sequential): its converted copy
    # is functional too, with PSP enabled in place.
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    hidden = keras.layers.Flatten()(hidden)
    hidden = keras.layers.Dense(16, activation="relu")(hidden)
    plain = keras.Model(inputs, keras.layers.Dense(3)(hidden))
    x = np.random.default_rng(0).normal(size=(6, 8, 8, 1)).astype("float32")
    y = np.array([0, 1, 2, 0, 1, 2])
    expected = plain.predict(x, verbose=0)

    model = keras_psp.apply_psp(plain, strength=1e-3)
    terms = len(keras_psp.psp_terms(model))
    check(
        terms == 3 and type(model) is type(plain),
        f"apply_psp regularizes the 3 activated layers ({terms}), class kept",
    )
    check(
        np.array_equal(model.predict(x, verbose=0), expected),
        "apply_psp keeps the predictions",
    )
    stripped = keras_psp.strip_psp(model)
    check(
        np.array_equal(stripped.predict(x, verbose=0), expected),
        "strip_psp keeps the predictions",
    )

    model.compile(
        keras.optimizers.SGD(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    logs = model.fit(x, y, epochs=1, verbose=0).history
    check(
        np.isfinite(logs["loss"][0]) and logs["psp_loss"][0] > 0,
        f"a fit step logs psp_loss ({logs['psp_loss'][0]:.3g})",
    )

    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
    check(
        np.array_equal(
            loaded.predict(x, verbose=0), model.predict(x, verbose=0)
        ),
        ".keras round trip keeps the predictions",
    )
    keras_psp.enable_psp(loaded, strength=1e-3)
    check(
        len(keras_psp.psp_terms(loaded)) == 3,
        "enable_psp on the loaded (plain) model gives the same 3 terms",
    )
    print(
        f"smoke_wheel: keras-psp {version} from the wheel works on "
        f"{keras.backend.backend()} (Python {sys.version.split()[0]})"
    )


if __name__ == "__main__":
    main()
