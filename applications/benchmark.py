"""Measure what PSP and the ⟨z²⟩ monitor cost in training speed.

    python -m applications.benchmark [--model lenet5] [--rounds 3]

Trains the same model on the same data (synthetic, so no data set is
needed) in several variants, interleaved round by round (in a rotating
order) so that a noisy machine slows them alike, and reports each
variant's training throughput and its ratio to the unregularized model
measured in the same run, from the fastest of its timed epochs (noise on a
shared machine only ever adds time, so the best epoch is the stablest
estimate) and, for comparison, from the median epoch:

- `none`: no regularization;
- `psp`: PSP on every pre-activation (the authors' normalization);
- `psp+monitor`: PSP and `PreActivationMonitor` on a 1000-image batch;
- `l2`: L2 on the kernels, for comparison.

It also times the monitor's own work (its forward pass and reductions)
within each `psp+monitor` epoch and reports it as a share of that epoch.

Prints a markdown table and writes it, with the settings, to `--out`
(JSON) when given. The default (LeNet-5, 6000 images, 3 rounds) takes
about a minute on a 2-core CPU (TensorFlow backend, 2026-11-25: 58 s).
"""

import platform
import statistics
import time

import applications
from applications import arguments
from applications.run_dir import write_json

SHAPES = {
    "lenet5": (28, 28, 1),
    "all_cnn_c": (32, 32, 3),
    "resnet18": (32, 32, 3),
    "mobilenetv2": (32, 32, 3),
}
VARIANTS = ("none", "psp", "psp+monitor", "l2")


def parse_args(argv=None):
    parser = arguments.parser("applications.benchmark", __doc__)
    parser.add_argument("--model", choices=sorted(SHAPES), default="lenet5")
    parser.add_argument(
        "--examples",
        type=arguments.positive_int,
        default=6000,
        help="synthetic training images per epoch",
    )
    parser.add_argument(
        "--batch-size", type=arguments.positive_int, default=100
    )
    parser.add_argument(
        "--rounds",
        type=arguments.positive_int,
        default=3,
        help="timed epochs per variant (after one warm-up)",
    )
    parser.add_argument(
        "--jit-compile", choices=("auto", "on", "off"), default="auto"
    )
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument(
        "--out",
        default=None,
        help="also write the table and settings to this JSON file "
        "(default: print only)",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    applications.quiet_tensorflow()
    import keras
    import numpy as np

    from keras_psp import callbacks
    from keras_psp import models

    if args.mixed_precision:
        keras.config.set_dtype_policy("mixed_float16")
    builder = {
        "lenet5": models.LeNet5,
        "all_cnn_c": models.AllCNNC,
        "resnet18": models.ResNet18,
        "mobilenetv2": models.MobileNetV2,
    }
    shape = SHAPES[args.model]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.examples, *shape), dtype=np.float32)
    y = rng.integers(0, 10, args.examples)
    held_out = x[:1000]
    jit = {"auto": "auto", "on": True, "off": False}[args.jit_compile]

    variants = {}
    monitor_seconds = []
    for name in VARIANTS:
        kwargs = {"psp_strength": 1e-3} if name.startswith("psp") else {}
        if name == "l2":
            kwargs = {"weight_decay": 5e-4}
        keras.utils.set_random_seed(0)
        model = builder[args.model](classifier_activation=None, **kwargs)
        model.compile(
            keras.optimizers.SGD(0.01, momentum=0.9),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=jit,
        )
        extra = []
        if "monitor" in name:
            monitor = callbacks.PreActivationMonitor(held_out)
            monitor.measure = _timed(monitor.measure, monitor_seconds)
            extra.append(monitor)
        model.fit(
            x,
            y,
            batch_size=args.batch_size,
            epochs=1,
            verbose=0,
            callbacks=extra,
        )  # warm-up: compilation
        variants[name] = (model, extra)

    monitor_seconds.clear()  # the warm-up's call compiled the probe
    seconds = {name: [] for name in VARIANTS}
    for round_index in range(args.rounds):
        # Rotate the order each round, so no variant always runs first.
        shift = round_index % len(VARIANTS)
        for name in VARIANTS[shift:] + VARIANTS[:shift]:
            model, extra = variants[name]
            start = time.perf_counter()
            model.fit(
                x,
                y,
                batch_size=args.batch_size,
                epochs=1,
                verbose=0,
                callbacks=extra,
            )
            seconds[name].append(time.perf_counter() - start)

    best = {n: args.examples / min(s) for n, s in seconds.items()}
    median = {
        n: args.examples / statistics.median(s) for n, s in seconds.items()
    }
    rows = [
        {
            "variant": name,
            "images_per_second": best[name],
            "relative_to_none": best[name] / best["none"],
            "median_images_per_second": median[name],
            "median_relative_to_none": median[name] / median["none"],
        }
        for name in VARIANTS
    ]
    # The monitor's own time, as a share of the epochs it ran in: a ratio
    # within each epoch, so not blurred by epoch-to-epoch noise.
    pairs = zip(monitor_seconds, seconds["psp+monitor"], strict=True)
    monitor_share = statistics.median(m / e for m, e in pairs)
    print(
        f"{args.model}, {keras.backend.backend()}, batch {args.batch_size}, "
        f"{args.rounds} rounds, {platform.processor() or platform.machine()}"
    )
    print(
        "| variant | images/s (best epoch) | ratio to none "
        "| images/s (median) | ratio to none |\n|---|---|---|---|---|"
    )
    for row in rows:
        print(
            f"| {row['variant']} | {row['images_per_second']:.0f} "
            f"| {row['relative_to_none']:.3f} "
            f"| {row['median_images_per_second']:.0f} "
            f"| {row['median_relative_to_none']:.3f} |"
        )
    print(
        f"PreActivationMonitor: {statistics.median(monitor_seconds):.3f} s "
        f"per epoch, {100 * monitor_share:.2f}% of the epoch (median)"
    )
    if args.out:
        write_json(
            args.out,
            {
                "settings": vars(args),
                "backend": keras.backend.backend(),
                "rows": rows,
                "seconds": seconds,
                "monitor_seconds": monitor_seconds,
                "monitor_share": monitor_share,
            },
        )
    return rows


def _timed(function, seconds):
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - start)

    return timed


if __name__ == "__main__":
    main()
