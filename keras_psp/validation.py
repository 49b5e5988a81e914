"""Argument checks shared by the library's public functions."""

import math
import numbers

import numpy as np


def validate_positive_int(value, name, allow_none=False):
    """Raises a `ValueError` naming `name` unless `value` is an int >= 1
    (or None, when `allow_none`). Bools are refused."""
    if allow_none and value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(
            f"Argument `{name}` must be a positive integer"
            + (" or None" if allow_none else "")
            + f". Received: {name}={value!r}."
        )


def validate_axis(axis, name="axis"):
    """Returns `axis`, or raises a `TypeError` naming `name` unless it is
    an int (bools are refused); its range is checked where the rank is
    known."""
    if isinstance(axis, (bool, np.bool_)) or not isinstance(
        axis, numbers.Integral
    ):
        raise TypeError(
            f"Argument `{name}` must be an integer. Received: "
            f"{name}={axis!r} of type {type(axis).__name__}."
        )
    return int(axis)


def validate_bool(value, name):
    """Returns `value`, or raises a `TypeError` naming `name` unless it is
    a bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"Argument `{name}` must be a bool. Received: {name}={value!r} "
            f"of type {type(value).__name__}."
        )
    return bool(value)


def validate_non_negative(value, name):
    """Returns `value` as a float, or raises naming `name` unless it is a
    finite real number >= 0 (bools are refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, numbers.Real
    ):
        raise TypeError(
            f"Argument `{name}` must be a finite real number >= 0. "
            f"Received: {name}={value!r} of type {type(value).__name__}."
        )
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"Argument `{name}` must be a finite real number >= 0. "
            f"Received: {name}={value!r}."
        )
    return value
