"""Measure what PSP costs per training step, against the alternatives.

    python -m applications.benchmark [--models lenet5 resnet18] [--steps 20]

For each model builder of `keras_psp.models` (synthetic data: 28×28×1 for
LeNet-5, 32×32×3 for the others, so no data set is needed) it trains, on the
current Keras backend (set KERAS_BACKEND; one process per backend), four
variants built by the same builder from the same seed:

- `none`: no regularization;
- `l2`: `weight_decay=5e-4` (L2 on the kernels);
- `psp`: `psp_strength=1e-3` (the builders' default normalization: the
  authors' mean of z², λ divided by the number of regularized layers),
  with keras-psp's layers (`PSPConv2D`, `PSPDense`, `PSPActivation`);
- `builtin`: the same penalty, written by hand with Keras' built-in route:
  every PSP layer becomes its plain Keras layer with a linear activation and
  `activity_regularizer=keras_psp.PSPRegularizer(λ, reduction)`, followed
  by a `keras.layers.Activation` (for a `PSPActivation`, the regularizer
  goes on the layer whose output it regularizes: the batch norm or the add
  before it).

All four are compiled in one process (SGD with momentum, sparse
cross-entropy on logits), warmed up (the first steps compile), then timed
in rounds of a few steps each, the order of the variants rotating from
round to round so that a noisy machine slows them alike. Each step is one
compiled train step on a fixed batch, waited for until done: the
model's compiled train function, as `fit` calls it at each step (on JAX
with the state carried from step to step, as `fit` does). Reported:
the median step time, each variant's throughput ratio to `none` (median
step time of `none` / the variant's), and peak memory. On a CPU no backend
reports device memory, so peak memory is the process's resident
set high-water mark (Linux `VmHWM`) in a child process that builds and
trains one variant alone for a few steps (the four children run at the
same time, after the timings), the mark reset after the imports
(`/proc/self/clear_refs`): `peak MiB` is that mark (framework included),
and `train MiB` its growth over the resident set after the imports (the
model, its compiled step, gradients and activations); `--memory off` skips this.

Prints a Markdown table and writes it, with settings and versions, to
`--out` (JSON) when given. The default run (all four builders, batch 100
for LeNet-5 and 32 for the others, 20 timed steps per variant) takes about
4 minutes on TensorFlow and PyTorch and 9 on JAX on a 2-core CPU
(2026-11-25: 219 s, 233 s and 518 s), memory measurement included
(`--memory off`: about half that). BENCHMARKS.md has the results.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
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
BATCH_SIZES = {"lenet5": 100}  # others: DEFAULT_BATCH_SIZE
DEFAULT_BATCH_SIZE = 32
VARIANTS = ("none", "l2", "psp", "builtin")
WEIGHT_DECAY = 5e-4
PSP_STRENGTH = 1e-3
WARMUP_STEPS = 3
MEMORY_STEPS = 3


def parse_args(argv=None):
    parser = arguments.parser("applications.benchmark", __doc__)
    parser.add_argument(
        "--models",
        nargs="+",
        choices=sorted(SHAPES),
        default=list(SHAPES),
        metavar="MODEL",
        help=f"builders to measure, among {', '.join(sorted(SHAPES))} "
        "(default: all four)",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=VARIANTS,
        default=list(VARIANTS),
        metavar="VARIANT",
        help=f"variants to measure, among {', '.join(VARIANTS)}; ratios "
        "are to the first one given (default: all four)",
    )
    parser.add_argument(
        "--batch-size",
        type=arguments.positive_int,
        default=None,
        help=f"examples per step (default: {BATCH_SIZES['lenet5']} for "
        f"lenet5, {DEFAULT_BATCH_SIZE} for the CIFAR models)",
    )
    parser.add_argument(
        "--steps",
        type=arguments.positive_int,
        default=20,
        help="timed steps per variant and model, after "
        f"{WARMUP_STEPS} warm-up steps",
    )
    parser.add_argument(
        "--steps-per-round",
        type=arguments.positive_int,
        default=5,
        help="steps a variant runs before the next one takes its turn",
    )
    parser.add_argument(
        "--jit-compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="`jit_compile` of `model.compile` (auto: Keras' choice: XLA "
        "on JAX, off on TensorFlow and PyTorch)",
    )
    parser.add_argument(
        "--mixed-precision",
        choices=("none", "mixed_float16", "mixed_bfloat16"),
        default="none",
        help="Keras dtype policy of the models",
    )
    parser.add_argument(
        "--memory",
        choices=("child", "off"),
        default="child",
        help="peak memory: measured in one child process per variant "
        "(child), or not at all (off)",
    )
    parser.add_argument(
        "--out",
        type=arguments.writable_file,
        default=None,
        help="also write the table, settings and step times to this JSON "
        "file (default: print only)",
    )
    # Internal: the child process that measures one variant's memory.
    parser.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def batch_size(args, model_name):
    if args.batch_size is not None:
        return args.batch_size
    return BATCH_SIZES.get(model_name, DEFAULT_BATCH_SIZE)


def build(model_name, variant, args):
    """The compiled model of `variant`, built from seed 0."""
    import keras

    from keras_psp import models

    builders = {
        "lenet5": models.LeNet5,
        "all_cnn_c": models.AllCNNC,
        "resnet18": models.ResNet18,
        "mobilenetv2": models.MobileNetV2,
    }
    builder = builders[model_name]
    keras.utils.set_random_seed(0)
    if variant == "none":
        model = builder(classifier_activation=None)
    elif variant == "l2":
        model = builder(classifier_activation=None, weight_decay=WEIGHT_DECAY)
    else:
        model = builder(classifier_activation=None, psp_strength=PSP_STRENGTH)
        if variant == "builtin":
            model = builtin_route(model)
    jit = {"auto": "auto", "on": True, "off": False}[args.jit_compile]
    model.compile(
        keras.optimizers.SGD(0.01, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit,
    )
    return model


def builtin_route(psp_model):
    """`psp_model` rewritten with Keras' own route to the same penalty.

    Each `PSPConv2D` / `PSPDense` becomes a `Conv2D` / `Dense` with a linear
    activation and `activity_regularizer=PSPRegularizer(λ, reduction)` (its
    own λ), followed by an `Activation`; each `PSPActivation` becomes an
    `Activation` (none for a linear one), and the layer whose output it
    regularized (a batch norm or an add, used by nothing else) gets the
    `activity_regularizer`. The result is a plain `keras.Model` (no
    `psp_loss` log) with the same weights, outputs and penalty terms.
    """
    import keras

    from keras_psp import PSPActivation
    from keras_psp import PSPRegularizer
    from keras_psp import cloning
    from keras_psp import keras_internals
    from keras_psp.layers.psp_layer import PSP_CONFIG_KEYS
    from keras_psp.layers.psp_layer import PSPAffineMixin

    def regularizer(layer):
        strength = float(keras.ops.convert_to_numpy(layer.strength))
        return PSPRegularizer(strength, layer.reduction)

    # The layers whose output a PSPActivation regularizes.
    producers = {}
    for layer in psp_model.layers:
        if isinstance(layer, PSPActivation):
            source = keras_internals.producer(
                keras_internals.first_call_input(layer)
            )
            if len(source._outbound_nodes) != 1:
                raise ValueError(f"{source.name} feeds more than {layer.name}")
            producers[id(source)] = regularizer(layer)
    activations = {}  # id of a cloned layer -> activation to put after it

    def clone(layer):
        if isinstance(layer, PSPAffineMixin):
            config = layer.get_config()
            for key in PSP_CONFIG_KEYS:
                del config[key]
            config["activation"] = "linear"
            new = layer.base_layer_class.from_config(config)
            new.activity_regularizer = regularizer(layer)
            activations[id(new)] = layer.psp_activation
            return new
        if isinstance(layer, PSPActivation):
            new = keras.layers.Activation(layer.activation, name=layer.name)
            if layer.activation is keras.activations.linear:
                activations[id(new)] = None  # nothing to apply
            return new
        new = cloning.copy_layer(layer)
        if id(layer) in producers:
            new.activity_regularizer = producers[id(layer)]
        return new

    def call(layer, *args, **kwargs):
        if id(layer) in activations:
            if activations[id(layer)] is None:  # a linear PSPActivation
                return args[0]
            z = layer(*args, **kwargs)
            return keras.layers.Activation(
                activations[id(layer)], name=f"{layer.name}_activation"
            )(z)
        return layer(*args, **kwargs)

    clone_ = keras.models.clone_model(
        psp_model, clone_function=clone, call_function=call
    )
    model = keras.Model(clone_.input, clone_.output, name=psp_model.name)
    # The same weights: the two models compute the same function and loss.
    for layer in psp_model.layers:
        weights = [w for w in layer.weights if w.name != "strength"]
        if weights:
            target = model.get_layer(layer.name)
            for variable, value in zip(target.weights, weights, strict=True):
                variable.assign(value)
    return model


def data(model_name, args):
    import numpy as np

    rng = np.random.default_rng(0)
    size = batch_size(args, model_name)
    x = rng.standard_normal((size, *SHAPES[model_name]), dtype=np.float32)
    y = rng.integers(0, 10, size).astype("int32")
    return x, y


class Stepper:
    """Runs one training step of `model` on a fixed batch, to completion.

    The step is the model's compiled train function, the one `fit` calls
    at every step (TensorFlow and PyTorch: `model.train_function` on the
    batch, tensors made once; JAX: the same with the state carried from
    step to step in JAX arrays, as `fit` does), without `fit`'s callbacks
    and without what `train_on_batch` adds at every call (resetting the
    metrics; on JAX, copying every variable in and out). It returns the
    loss as a Python float, so the step is done when it returns (JAX:
    `jax.block_until_ready` first).
    """

    def __init__(self, model, x, y):
        import keras

        self.model = model
        self.backend = keras.backend.backend()
        model.train_on_batch(x, y)  # builds; makes train_function
        if self.backend == "jax":
            import jax

            self.data = (jax.device_put(x), jax.device_put(y), None)  # pytrees
            self.state = model._get_jax_state(
                trainable_variables=True,
                non_trainable_variables=True,
                optimizer_variables=True,
                metrics_variables=True,
            )
        else:
            self.data = keras.tree.map_structure(
                keras.ops.convert_to_tensor, (x, y)
            )

    def step(self):
        if self.backend == "jax":
            import jax

            logs, self.state = self.model.train_function(
                self.state, iter([self.data])
            )
            jax.block_until_ready((logs, self.state))
        else:
            logs = self.model.train_function([self.data])
        return float(logs["loss"])


def time_model(model_name, args, variants=VARIANTS, builder=None, batch=None):
    """Step seconds of each variant, all trained in this process.

    `builder(model_name, variant, args)` gives a variant's compiled model
    (default: `build`), `batch(model_name, args)` its fixed batch `(x, y)`
    (default: `data`).
    """
    builder = builder or build
    x, y = (batch or data)(model_name, args)
    steppers = {}
    for variant in variants:
        steppers[variant] = Stepper(builder(model_name, variant, args), x, y)
        for _ in range(WARMUP_STEPS):
            steppers[variant].step()
    seconds = {variant: [] for variant in variants}
    rounds = -(-args.steps // args.steps_per_round)
    for round_index in range(rounds):
        shift = round_index % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            stepper = steppers[variant]
            for _ in range(args.steps_per_round):
                if len(seconds[variant]) == args.steps:
                    break
                start = time.perf_counter()
                loss = stepper.step()
                seconds[variant].append(time.perf_counter() - start)
                if loss != loss:  # NaN
                    raise FloatingPointError(f"{variant}: loss is NaN")
    return seconds


def _status_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_child(args):
    """In the child: train one variant a few steps; print its memory.

    After the imports and the data, the kernel's resident-set high-water
    mark is reset (`/proc/self/clear_refs`, Linux), so the peak is the
    training's, not that of importing the framework; `train_mib` is the
    peak's growth over the resident set at that point.
    """
    model_name, variant = args.memory_of.split(":")
    import keras  # noqa: F401  (imports counted in the baseline)

    x, y = data(model_name, args)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident set
    baseline = _status_mib("VmRSS")
    stepper = Stepper(build(model_name, variant, args), x, y)
    for _ in range(MEMORY_STEPS):
        stepper.step()
    peak = _status_mib("VmHWM")
    print(json.dumps({"peak_mib": peak, "train_mib": peak - baseline}))


def measure_memory(model_name, variants, args):
    """Each variant's memory, from one child process per variant.

    The children run at the same time (only their memory is read, not
    their speed), after this process's timings.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    children = {}
    for variant in variants:
        command = [
            sys.executable,
            "-m",
            "applications.benchmark",
            "--memory-of",
            f"{model_name}:{variant}",
            "--jit-compile",
            args.jit_compile,
            "--mixed-precision",
            args.mixed_precision,
            "--batch-size",
            str(batch_size(args, model_name)),
        ]
        children[variant] = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=root,
        )
    memory = {}
    for variant, child in children.items():
        stdout, stderr = child.communicate()
        if child.returncode != 0:
            raise RuntimeError(
                f"memory of {model_name}/{variant} failed:\n{stderr}"
            )
        memory[variant] = json.loads(stdout.strip().splitlines()[-1])
    return memory


def versions():
    import keras

    found = {"keras": keras.__version__, "python": platform.python_version()}
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
    name = module[keras.backend.backend()]
    found[name] = __import__(name).__version__
    return found


def main(argv=None):
    args = parse_args(argv)
    applications.quiet_tensorflow()
    import keras

    if args.mixed_precision != "none":
        keras.config.set_dtype_policy(args.mixed_precision)
    if args.memory_of:
        return memory_child(args)
    backend = keras.backend.backend()
    rows = []
    all_seconds = {}
    for model_name in args.models:
        variants = tuple(dict.fromkeys(args.variants))
        seconds = time_model(model_name, args, variants)
        all_seconds[model_name] = seconds
        memory = {}
        if args.memory == "child":
            memory = measure_memory(model_name, variants, args)
        reference = variants[0]
        none = statistics.median(seconds[reference])
        for variant in variants:
            median = statistics.median(seconds[variant])
            row = {
                "model": model_name,
                "backend": backend,
                "variant": variant,
                "batch_size": batch_size(args, model_name),
                "median_step_ms": 1000 * median,
                "ratio_to_none": none / median,
                "images_per_second": batch_size(args, model_name) / median,
            }
            if memory:
                row["peak_mib"] = memory[variant]["peak_mib"]
                row["train_mib"] = memory[variant]["train_mib"]
                row["train_memory_ratio_to_none"] = (
                    memory[variant]["train_mib"]
                    / memory[reference]["train_mib"]
                )
            rows.append(row)
        print_rows([r for r in rows if r["model"] == model_name], args)
    if args.out:
        write_json(
            args.out,
            {
                "settings": {
                    k: v for k, v in vars(args).items() if k != "memory_of"
                },
                "backend": backend,
                "versions": versions(),
                "machine": {
                    "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                },
                "warmup_steps": WARMUP_STEPS,
                "rows": rows,
                "step_seconds": all_seconds,
            },
        )
    return rows


def print_rows(rows, args):
    header = (
        "| model | backend | variant | batch | median step ms | ratio to none "
    )
    rule = "|---|---|---|---|---|---"
    if "peak_mib" in rows[0]:
        header += "| peak MiB | train MiB | train MiB ratio "
        rule += "|---|---|---"
    print(f"{header}|\n{rule}|", flush=True)
    for row in rows:
        line = (
            f"| {row['model']} | {row['backend']} | {row['variant']} "
            f"| {row['batch_size']} | {row['median_step_ms']:.1f} "
            f"| {row['ratio_to_none']:.3f} "
        )
        if "peak_mib" in row:
            line += (
                f"| {row['peak_mib']:.0f} | {row['train_mib']:.0f} "
                f"| {row['train_memory_ratio_to_none']:.3f} "
            )
        print(line + "|", flush=True)


if __name__ == "__main__":
    main()
