"""Argument checks shared by every public function: one copy of each rule.

Each raises ``errors.InputError`` (a ``ValueError``) naming the argument, the allowed values
and what was received: a bad argument is the caller's input, so the ``lightnets`` commands
exit with code 2 for it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from keras_lightnets.errors import InputError


def check_choice(argument: str, value, allowed: Sequence) -> None:
    """Raise ``InputError`` naming ``argument`` and ``allowed`` unless ``value`` is allowed."""
    if value not in allowed:
        raise InputError(
            f"`{argument}` must be one of {', '.join(repr(a) for a in allowed)}; "
            f"received {argument}={value!r}"
        )


def check_rate(argument: str, value) -> None:
    """Raise ``InputError`` naming ``argument`` unless ``value`` is a number in ``[0, 1)`` (a dropout rate)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise InputError(f"`{argument}` must be a number in [0, 1); received {argument}={value!r}")


def check_bool(argument: str, value) -> bool:
    """``value``; ``InputError`` naming ``argument`` unless it is ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise InputError(f"`{argument}` must be True or False; received {argument}={value!r}")
    return value


def is_int(value) -> bool:
    """Whether ``value`` is an int (numpy ints included) and not a bool."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def check_positive_int(argument: str, value, *, allow_none: bool = False, error: type[ValueError] = InputError):
    """``value`` as an int; ``error`` (a ``ValueError``) naming ``argument`` unless it is an
    int >= 1 (not a bool), or ``None`` when ``allow_none``."""
    if allow_none and value is None:
        return None
    if not is_int(value) or value < 1:
        expected = "None or a positive int" if allow_none else "a positive int"
        raise error(f"`{argument}` must be {expected}; received {argument}={value!r}")
    return int(value)


def check_positive_number(argument: str, value) -> float:
    """``value`` as a float; ``InputError`` naming ``argument`` unless a finite real number > 0 (not a bool)."""
    import numpy as np

    if (isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating)
            or not math.isfinite(value) or value <= 0):
        raise InputError(f"`{argument}` must be a finite number > 0; received {argument}={value!r}")
    return float(value)
