"""Argument checks shared by the library's public functions."""


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
