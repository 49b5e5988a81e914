"""Command-line argument types and the help formatter of the programs.

Each type is an `argparse` `type=` function: it returns the value or raises
`argparse.ArgumentTypeError`, which argparse turns into a one-line error
naming the option, before the program writes or loads anything.
"""

import argparse
import copy
import math
import os

FLOAT32_MAX = 3.4028234663852886e38


def positive_int(text):
    """An integer >= 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def seed(text):
    """A random seed: an integer in [0, 2**31)."""
    value = _int(text)
    if not 0 <= value < 2**31:
        raise argparse.ArgumentTypeError(
            f"must be an integer in [0, 2147483647], got {value}"
        )
    return value


def non_negative_float(text):
    """A finite number >= 0 that float32 holds (weights, λ and learning
    rates live in float32 variables: 1e300 would be inf there)."""
    value = _float(text)
    if not (math.isfinite(value) and 0 <= value <= FLOAT32_MAX):
        raise argparse.ArgumentTypeError(
            f"must be a finite number >= 0 (at most {FLOAT32_MAX:.4g}, "
            f"float32's largest), got {text}"
        )
    return value


def positive_float(text):
    """A finite number > 0 that float32 holds."""
    value = _float(text)
    if not (math.isfinite(value) and 0 < value <= FLOAT32_MAX):
        raise argparse.ArgumentTypeError(
            f"must be a finite number > 0 (at most {FLOAT32_MAX:.4g}), "
            f"got {text}"
        )
    return value


def fraction(text):
    """A share in [0, 1)."""
    value = _float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def tail_index(text):
    """A tail index α of a symmetric alpha-stable law: in [0.5, 2]."""
    value = _float(text)
    if not 0.5 <= value <= 2:
        raise argparse.ArgumentTypeError(
            f"must be in [0.5, 2] (2: Gaussian, 1: Cauchy), got {text}"
        )
    return value


def momentum(text):
    """SGD momentum: a number in [0, 1)."""
    value = _float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def writable_dir(text):
    """A directory this process may write, or one it can make (a run dir,
    a runs dir, a report dir): tried at once (`run_dir.check_writable`),
    so that `/proc/x` or a path inside a file is an argparse error, not a
    traceback once training starts."""
    from applications import run_dir

    reason = run_dir.check_writable(text)
    if reason:
        raise argparse.ArgumentTypeError(reason)
    return text


def writable_file(text):
    """A file this process may write (a table, a JSON record): not a
    directory, in a directory that is or can be made writable."""
    from applications import run_dir

    if not text:
        raise argparse.ArgumentTypeError("the path is empty")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text} is a directory, not a file")
    reason = run_dir.check_writable(os.path.dirname(os.path.abspath(text)))
    if reason:
        raise argparse.ArgumentTypeError(f"cannot write {text}: {reason}")
    return text


def data_dir(text):
    """A tfds data dir: an existing directory, or one that can be made
    (tfds downloads into it)."""
    from applications import run_dir

    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text} is not a directory")
    if not os.path.exists(text):
        reason = run_dir.check_writable(text)
        if reason:
            raise argparse.ArgumentTypeError(reason)
    return text


def _int(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _float(text):
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


class HelpFormatter(
    argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter
):
    """Shows every option's default, except where there is none to show
    (None, or the help already says it); keeps the description's and
    epilog's line breaks."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is None or "default" in text:
            return text
        if action.default is argparse.SUPPRESS or not action.option_strings:
            return text
        if isinstance(action.default, bool) and not action.default:
            return text  # a store_true flag: off unless given
        return super()._get_help_string(action)

    def _expand_help(self, action):
        # A list default as it is typed: `(default: mnist fashion_mnist)`,
        # not Python's `['mnist', 'fashion_mnist']`.
        if isinstance(action.default, (list, tuple)):
            action = copy.copy(action)
            action.default = " ".join(map(str, action.default))
        return super()._expand_help(action)


class ArgumentParser(argparse.ArgumentParser):
    """Gives an option added without help a help line saying its default
    (argparse shows no default on a line without help)."""

    def add_argument(self, *args, **kwargs):
        default = kwargs.get("default")
        if "help" not in kwargs and default not in (None, False):
            kwargs["help"] = "default: %(default)s"
        return super().add_argument(*args, **kwargs)


def check_writable_dirs(parser, args, options):
    """Ends the program with argparse's error naming the first of `options`
    (attribute names of `args`) that is not a writable directory (or one
    that can be made)."""
    from applications import run_dir

    for option in options:
        reason = run_dir.check_writable(getattr(args, option))
        if reason:
            parser.error(f"argument --{option.replace('_', '-')}: {reason}")


def add_data_options(
    parser, train_help="use only the first N training images (default: all)"
):
    """Adds `--data-dir`, `--train-examples` and `--test-examples`, the
    options of every program that reads a data set."""
    parser.add_argument(
        "--data-dir",
        type=data_dir,
        default=None,
        help="tfds data dir (default: TFDS_DATA_DIR, else tfds' own)",
    )
    parser.add_argument(
        "--train-examples",
        type=positive_int,
        default=None,
        help=train_help,
    )
    parser.add_argument(
        "--test-examples",
        type=positive_int,
        default=None,
        help="use only the first N test images (default: all)",
    )


def add_backend_option(parser, backends=("tensorflow", "jax", "torch")):
    """Adds `--backend`, the Keras backend of a program's runs."""
    parser.add_argument(
        "--backend",
        choices=backends,
        default=None,
        help="Keras backend (default: KERAS_BACKEND, else Keras' own)",
    )


def use_backend(args, error):
    """Makes `args.backend` (from `add_backend_option`), if given, the
    backend Keras runs on: sets KERAS_BACKEND before Keras is imported.
    Calls `error(message)` (which must not return) when Keras already runs
    on another backend in this process."""
    import os
    import sys

    if not args.backend:
        return
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != args.backend:
            error(
                f"argument --backend: Keras already runs on "
                f"{keras.backend.backend()} in this process"
            )
    os.environ["KERAS_BACKEND"] = args.backend


def parser(module, doc, epilog=None):
    """The `ArgumentParser` of the program `module` (run as `python -m
    module`), whose description is the program's docstring (its usage
    lines and what it does) and whose help shows defaults."""
    return ArgumentParser(
        prog=f"python -m {module}",
        description=doc,
        epilog=epilog,
        formatter_class=HelpFormatter,
    )
