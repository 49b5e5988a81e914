"""What a training run is: its settings, the paper's defaults, its name.

`parse_args` reads a run from the command line (`python -m
applications.train --help`), `run_config` makes one from keyword
arguments (for programs that train several, like `applications.reproduce`);
both check every setting, and the run dir, before anything is written or
loaded, and fill in the paper's defaults.
"""

import os

import applications
from applications import arguments
from applications import run_dir as run_dirs

MODELS = ("lenet5", "all_cnn_c", "resnet18", "mobilenetv2")
DATASETS = ("mnist", "fashion_mnist", "cifar10")
REGULARIZATIONS = ("none", "l2", "psp")
BACKENDS = ("tensorflow", "jax", "torch")
POLICIES = ("none", "mixed_float16", "mixed_bfloat16")
# --distribution: the backend each engine needs.
DISTRIBUTIONS = {
    "none": None,
    "mirrored": "tensorflow",
    "multi_worker": "tensorflow",
    "data_parallel": "jax",
}
PAPER_STRENGTH = {"psp": 1e-3, "none": 0.0}
# The related regularizers (issue 16), alone or with PSP, and their default
# λ: those `applications.search` chose on a validation split of MNIST's
# training set (RESULTS.md); gradient_coherent_l2's was not searched.
COMPARISONS = {
    "none": 0.0,
    "soft_diamond": 1e-6,
    "gradient_coherent_l1": 1e-5,
    "gradient_coherent_l2": 1e-2,
    "activation_sparsity": 1e-3,
}
SOFT_DIAMOND = {"alpha": 0.5, "dispersion": 1e-2}
PAPER_L2 = {"mnist": 1e-4, "fashion_mnist": 1e-4, "cifar10": 5e-4}

# The settings that define a run; a run dir holds one of them.
RUN_KEYS = (
    "model",
    "dataset",
    "regularization",
    "strength",
    "reduction",
    "epochs",
    "batch_size",
    "lr",
    "momentum",
    "schedule",
    "strength_schedule",
    "seed",
    "train_examples",
    "test_examples",
    "mixed_precision",
    "initializer",
    "comparison",
    "comparison_strength",
    "alpha",
    "dispersion",
    "validation_split",
)
# Settings added after runs were recorded: at their default they are left
# out of a run's settings, so that those run dirs and records still match.
LATER_KEYS = {
    "initializer": "keras",
    "comparison": "none",
    "comparison_strength": 0.0,
    "alpha": SOFT_DIAMOND["alpha"],
    "dispersion": SOFT_DIAMOND["dispersion"],
    "validation_split": 0.0,
}
# Settings whose recorded values changed form: `--mixed-precision` was a
# flag (mixed_float16 or not) before it took a policy.
OLD_VALUES = {"mixed_precision": {False: "none", True: "mixed_float16"}}

DESCRIPTION = """\
Train one configuration: model, data set, regularization, λ, seed.

    python -m applications.train                      # LeNet-5, MNIST, PSP
    python -m applications.train --regularization l2 --epochs 50
    python -m applications.train --model resnet18 --dataset cifar10 \\
        --regularization psp --strength 1e-3 --epochs 400

The default run (LeNet-5 on MNIST with PSP, 5 epochs) takes about 1.5 min
on a 2-core CPU (TensorFlow backend, 2026-12-02: 96 s); the paper trains 50
epochs (MNIST), 150 (Fashion-MNIST) and 400 (CIFAR-10, a GPU's job).

Everything goes into a run directory (default
`runs/<configuration>_<backend>`):
`history.csv` (one row per epoch: loss, test error, psp_loss, λ, per-layer
⟨z²⟩, ...), with --tensorboard `tensorboard/` (the same), `results.json`
(written at the end: final and best test error, settings, wall time,
images/s, package versions, git commit, thread settings, whether the run
was resumed, the distribution and its number of replicas), `args.json`,
the final model `model.keras`, and `backup/` (the last finished epoch's
weights and optimizer state).

Defaults follow the paper: SGD lr 0.1, batch 100 and no momentum for
MNIST/Fashion-MNIST (L2: weight decay 1e-4 on all parameters, as SGD's
`weight_decay` in the authors' code); batch 128, momentum 0.9, ×0.1 at
epochs 150/250/350 for CIFAR-10 (L2: 5e-4 on the kernels). PSP uses the
authors' normalization: mean of z² per layer and λ/L per layer. Weights
start from Keras' initializers; `--initializer pytorch` starts them from
PyTorch's defaults, as in the authors' code.
"""

EPILOG = """\
Stopping and resuming: a run stopped at any point (Ctrl-C, kill -9, a
crash) resumes when the same command is run again, from its last finished
epoch, and ends with the same weights and numbers as a run never stopped
(same machine and thread settings): the data order of each epoch is a
function of the seed and the epoch, and every file is written whole or not
at all. A backup that cannot be read (a damaged disk) stops the program
with a message; --discard-backup then starts the run over. A run dir holds
one run: another command on it is refused, unless nothing was trained yet,
and so is another backend (a run is neither resumed nor reported on a
backend it did not run on).

A run dir is locked while a process trains it (an flock on run-dir/lock,
released by the system when the process ends, however it ends); a second
process asking for it stops with an error. A run stopped by a non-finite
loss (NaN or inf: e.g. a λ too large) is recorded as failed: results.json
says "status": "failed" and the reason, the program exits with status 1,
and the same command run again repeats the failure without training: to
retry, delete the run dir (or choose another --run-dir).
"""


def build_parser():
    parser = arguments.parser("applications.train", DESCRIPTION, EPILOG)
    add = parser.add_argument
    add("--model", choices=MODELS, default="lenet5")
    add("--dataset", choices=DATASETS, default="mnist")
    add("--regularization", choices=REGULARIZATIONS, default="psp")
    add(
        "--strength",
        type=arguments.non_negative_float,
        default=None,
        help="λ (default: PSP 1e-3; L2 1e-4 for MNIST and Fashion-MNIST, "
        "5e-4 for CIFAR-10; none 0)",
    )
    add(
        "--reduction",
        choices=("mean", "sum"),
        default="mean",
        help="PSP normalization (mean: the authors' code)",
    )
    add("--epochs", type=arguments.positive_int, default=5)
    add(
        "--batch-size",
        type=arguments.positive_int,
        default=None,
        help="default: 100 (MNIST, Fashion-MNIST) or 128 (CIFAR-10)",
    )
    add("--lr", type=arguments.non_negative_float, default=0.1)
    add(
        "--momentum",
        type=arguments.momentum,
        default=None,
        help="SGD momentum in [0, 1) (default: 0 for MNIST and "
        "Fashion-MNIST, 0.9 for CIFAR-10)",
    )
    add(
        "--schedule",
        choices=("constant", "step", "cosine"),
        default=None,
        help="learning rate (default: constant for MNIST and Fashion-MNIST, "
        "step for CIFAR-10)",
    )
    add(
        "--strength-schedule",
        choices=("constant", "step", "cosine", "warmup"),
        default="constant",
        help="λ over the epochs (step: ×0.1 at 50%% and 75%%)",
    )
    add("--seed", type=arguments.seed, default=1)
    add(
        "--initializer",
        choices=("keras", "pytorch"),
        default="keras",
        help="initial weights: Keras' defaults, or PyTorch's (the authors' "
        "code): keras_psp.training.pytorch_initialization",
    )
    add(
        "--comparison",
        choices=tuple(COMPARISONS),
        default="none",
        help="a related regularizer, alone (with --regularization none) or "
        "with PSP: soft_diamond (an alpha-stable prior on the kernels), "
        "gradient_coherent_l1/_l2 (strong L1/L2 imposed only while the "
        "gradients stay coherent), activation_sparsity (the sparsity of "
        "every hidden activation penalized)",
    )
    add(
        "--comparison-strength",
        type=arguments.non_negative_float,
        default=None,
        help="its λ (default: chosen on a validation split of MNIST, "
        + ", ".join(f"{k} {v:g}" for k, v in COMPARISONS.items() if v)
        + "; gradient_coherent_l2's not searched)",
    )
    add(
        "--alpha",
        type=arguments.tail_index,
        default=SOFT_DIAMOND["alpha"],
        help="soft_diamond: the prior's tail index α",
    )
    add(
        "--dispersion",
        type=arguments.positive_float,
        default=SOFT_DIAMOND["dispersion"],
        help="soft_diamond: the prior's dispersion γ",
    )
    add(
        "--validation-split",
        type=arguments.fraction,
        default=0.0,
        help="hold out this last share of the training set and evaluate on "
        "it instead of the test set (for choosing hyperparameters without "
        "looking at the test set)",
    )
    arguments.add_backend_option(parser, BACKENDS)
    add("--jit-compile", choices=("auto", "on", "off"), default="auto")
    add(
        "--mixed-precision",
        choices=POLICIES,
        default="none",
        help="Keras dtype policy: float16 or bfloat16 compute, float32 "
        "weights (the penalty is accumulated in float32)",
    )
    add(
        "--distribution",
        choices=tuple(DISTRIBUTIONS),
        default="none",
        help="data parallel training, the global batch being --batch-size: "
        "mirrored (TensorFlow: the GPUs of this machine), multi_worker "
        "(TensorFlow: several machines, from TF_CONFIG; task 0 writes the "
        "run dir), data_parallel (JAX: every device keras.distribution "
        "lists)",
    )
    arguments.add_data_options(parser)
    add(
        "--monitor-examples",
        type=arguments.positive_int,
        default=1000,
        help="held-out test images on which ⟨z²⟩ is measured each epoch",
    )
    add(
        "--tensorboard",
        action="store_true",
        help="also write the logs (loss, λ, per-layer ⟨z²⟩) for TensorBoard "
        "into run-dir/tensorboard (needs the tensorboard package)",
    )
    add(
        "--run-dir",
        type=arguments.writable_dir,
        default=None,
        help="default: runs/<configuration>_<backend>",
    )
    add(
        "--discard-backup",
        action="store_true",
        help="start an interrupted run over from epoch 1 (for a backup "
        "that cannot be read)",
    )
    add(
        "--verbose",
        choices=("auto", "0", "1", "2"),
        default="auto",
        help="0 silent, 1 progress bar, 2 one line per epoch",
    )
    return parser


def parse_args(argv=None):
    """The run the command line `argv` describes, checked and completed;
    a bad setting ends the program with argparse's error, naming it."""
    parser = build_parser()
    args = parser.parse_args(argv)
    complete(args, parser.error)
    arguments.use_backend(args, parser.error)
    check_distribution(args, parser.error)
    check_run_dir(args, parser.error)
    if args.tensorboard and not _installed("tensorboard"):
        parser.error(
            "argument --tensorboard: needs the tensorboard package "
            "(pip install tensorboard)"
        )
    return args


def _installed(package):
    import importlib.util

    return importlib.util.find_spec(package) is not None


def run_config(runs_dir="runs", check=True, **settings):
    """The run that `settings` (the options of `parse_args`, by their
    attribute names) describes, checked and completed like the command
    line's; others take their defaults.

    Args:
        runs_dir: where the default run dir (named by `run_name`) goes.
        check: whether to check now that the run dir may take this run; a
            program that trains many runs calls `check_run_dir` before it
            trains each.
        **settings: the run's settings.

    Raises:
        ValueError: a bad setting (the message names it).
    """
    args = build_parser().parse_args([])
    for name, value in settings.items():
        if name not in vars(args):
            raise ValueError(
                f"unknown run setting {name!r}; known: {sorted(vars(args))}"
            )
        setattr(args, name, value)
    complete(args, _raise, runs_dir)
    arguments.use_backend(args, _raise)
    check_distribution(args, _raise)
    if check:
        check_run_dir(args)
    return args


def _raise(message):
    raise ValueError(message)


def complete(args, error, runs_dir="runs"):
    """Checks how the settings of `args` go together and fills in the
    paper's defaults and the run dir; calls `error(message)` (which must
    not return) on a bad setting."""
    cifar = args.dataset == "cifar10"
    if args.model == "lenet5" and cifar:
        error("argument --model: lenet5 is for 28×28 MNIST-like data")
    if args.model != "lenet5" and not cifar:
        error(f"argument --model: {args.model} is for CIFAR-10")
    if args.strength is None:
        args.strength = PAPER_STRENGTH.get(
            args.regularization, PAPER_L2[args.dataset]
        )
    if args.regularization == "none" and args.strength:
        error("argument --strength: must be 0 with --regularization none")
    if args.regularization != "psp" and args.strength_schedule != "constant":
        error("argument --strength-schedule: needs --regularization psp")
    _complete_comparison(args, error)
    if isinstance(args.mixed_precision, bool):  # the old flag's value
        args.mixed_precision = OLD_VALUES["mixed_precision"][
            args.mixed_precision
        ]
    if args.mixed_precision not in POLICIES:
        error(
            f"argument --mixed-precision: invalid choice: "
            f"{args.mixed_precision!r} (choose from {', '.join(POLICIES)})"
        )
    if args.distribution not in DISTRIBUTIONS:
        error(
            f"argument --distribution: invalid choice: "
            f"{args.distribution!r} (choose from {', '.join(DISTRIBUTIONS)})"
        )
    args.batch_size = args.batch_size or (128 if cifar else 100)
    if args.momentum is None:
        args.momentum = 0.9 if cifar else 0.0
    args.schedule = args.schedule or ("step" if cifar else "constant")
    if args.run_dir is None:
        args.run_dir = default_run_dir(runs_dir, args)
    return args


def _complete_comparison(args, error):
    if args.comparison not in COMPARISONS:
        error(
            f"argument --comparison: invalid choice: {args.comparison!r} "
            f"(choose from {', '.join(COMPARISONS)})"
        )
    if args.comparison_strength is None:
        args.comparison_strength = COMPARISONS[args.comparison]
    if args.comparison == "none" and args.comparison_strength:
        error("argument --comparison-strength: needs --comparison")
    if args.comparison != "none" and args.regularization == "l2":
        error(
            "argument --comparison: combines with --regularization none or "
            "psp, not l2"
        )
    if args.comparison != "soft_diamond":
        for name, default in SOFT_DIAMOND.items():
            if getattr(args, name) != default:
                error(f"argument --{name}: needs --comparison soft_diamond")


def check_distribution(args, error=_raise):
    """Checks that `args.distribution` fits the backend."""
    needed = DISTRIBUTIONS.get(args.distribution)
    if needed and current_backend() != needed:
        error(
            f"argument --distribution: {args.distribution} needs the "
            f"{needed} backend (--backend {needed}); Keras runs on "
            f"{current_backend()}"
        )


def check_run_dir(args, error=_raise):
    """Checks that `args.run_dir` may take the run `args`: a writable
    directory (or one that can be made) holding no run of other settings
    and no run of another backend (neither resumed nor reported as this
    backend's: the message names both). Calls `error(message)` (by
    default: raises ValueError) when it may not."""
    reason = run_dirs.check_writable(args.run_dir)
    if reason:
        error(f"argument --run-dir: {reason}")
    path = os.path.join(args.run_dir, "args.json")
    if not os.path.exists(path) or not started(args.run_dir):
        return  # nothing trained yet: any settings may take it
    try:
        previous = recorded_settings(run_dirs.read_json(path))
    except (OSError, ValueError):
        return  # written before atomic writes: rewritten at the start
    settings = run_settings(args)
    changed = {k for k in settings if previous.get(k) != settings[k]}
    changed |= set(previous) - set(settings) - {"backend"}
    if changed:
        error(
            f"argument --run-dir: {args.run_dir} holds a run with other "
            f"settings ({', '.join(sorted(changed))}); choose another "
            "--run-dir"
        )
    finished = os.path.exists(os.path.join(args.run_dir, "results.json"))
    backend = run_dirs.recorded_backend(args.run_dir)
    here = current_backend()
    if backend and backend != here:
        if finished:
            error(
                f"argument --backend: {args.run_dir} holds a run finished on "
                f"{backend}, not on {here}: its results are {backend}'s; "
                f"see them with --backend {backend} (or "
                f"KERAS_BACKEND={backend}), or choose another --run-dir "
                f"for a run on {here}"
            )
        error(
            f"argument --backend: {args.run_dir} was started on {backend}, "
            f"not on {here}; resume it with --backend {backend} (or "
            f"KERAS_BACKEND={backend}), or choose another --run-dir for a "
            f"run on {here}"
        )


def current_backend():
    """The backend Keras runs on (or will, once imported)."""
    applications.quiet_tensorflow()
    import keras

    return keras.backend.backend()


def started(run_dir):
    """Whether a run in `run_dir` has trained anything (kept epochs or a
    backup), or finished."""
    return any(
        os.path.exists(os.path.join(run_dir, name))
        for name in ("history.csv", "backup", "results.json")
    )


def run_backend(args):
    """The backend the run `args` trains on: `--backend`, else Keras'."""
    return args.backend or current_backend()


def default_run_dir(runs_dir, args):
    """The run dir of `args` under `runs_dir` when `--run-dir` is not
    given: `run_name(args)`; or, where only a dir of the name that runs had
    before it held the backend (`settings_name`) exists and holds a run of
    this backend, that dir, so that those runs resume and report as
    before."""
    path = os.path.join(runs_dir, run_name(args))
    old = os.path.join(runs_dir, settings_name(args))
    if not os.path.exists(path) and os.path.isdir(old):
        if run_dirs.recorded_backend(old) == run_backend(args):
            return old
    return path


def run_name(args):
    """The default run dir's name: the settings that differ between runs,
    then the backend (`..._e5_seed1_tensorflow`), so that runs of one
    configuration on two backends never share a dir."""
    return f"{settings_name(args)}_{run_backend(args)}"


def settings_name(args):
    """The settings that differ between runs, as a name (the run dirs'
    names until 2026-12-02, when the backend was added to them)."""
    name = f"{args.model}_{args.dataset}_{args.regularization}"
    if args.regularization != "none":
        name += f"{args.strength:g}"
        if args.regularization == "psp":
            name += f"_{args.reduction}"
            if args.strength_schedule != "constant":
                name += f"_{args.strength_schedule}"
    if args.comparison != "none":
        name += f"_{args.comparison}{args.comparison_strength:g}"
        if args.comparison == "soft_diamond":
            name += f"_a{args.alpha:g}_d{args.dispersion:g}"
    if args.initializer != "keras":
        name += f"_{args.initializer}init"
    if args.validation_split:
        name += f"_val{args.validation_split:g}"
    return f"{name}_e{args.epochs}_seed{args.seed}"


def run_settings(args):
    """The settings of `args` that define a run (its `args.json`, less the
    backend it was started on)."""
    settings = {key: getattr(args, key) for key in RUN_KEYS}
    for key, default in LATER_KEYS.items():
        if settings[key] == default:
            del settings[key]
    return settings


def recorded_settings(recorded):
    """The settings `recorded` (an `args.json`), in today's form."""
    recorded = dict(recorded)
    for key, old in OLD_VALUES.items():
        value = recorded.get(key)
        if isinstance(value, bool):
            recorded[key] = old[value]
    return recorded


def same_run(recorded, args):
    """Whether the settings `recorded` (an `args.json`) are those of
    `args`."""
    recorded = {
        k: v for k, v in recorded_settings(recorded).items() if k != "backend"
    }
    return recorded == run_settings(args)
