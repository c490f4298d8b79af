"""Argument checks shared by every public function: one copy of each rule.

Each raises ``ValueError`` naming the argument, the allowed values and what was received
(``errors.InputError`` is a ``ValueError`` too, so callers map both to exit code 2).
"""

from __future__ import annotations

from collections.abc import Sequence


def check_choice(argument: str, value, allowed: Sequence) -> None:
    """Raise ``ValueError`` naming ``argument`` and ``allowed`` unless ``value`` is allowed."""
    if value not in allowed:
        raise ValueError(
            f"`{argument}` must be one of {', '.join(repr(a) for a in allowed)}; "
            f"received {argument}={value!r}"
        )


def check_rate(argument: str, value) -> None:
    """Raise ``ValueError`` naming ``argument`` unless ``value`` is a number in ``[0, 1)`` (a dropout rate)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{argument}` must be a number in [0, 1); received {argument}={value!r}")


def check_bool(argument: str, value) -> bool:
    """``value``; ``ValueError`` naming ``argument`` unless it is ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise ValueError(f"`{argument}` must be True or False; received {argument}={value!r}")
    return value


def check_positive_int(argument: str, value) -> int:
    """``value``; ``ValueError`` naming ``argument`` unless it is an int >= 1 (not a bool)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{argument}` must be a positive int; received {argument}={value!r}")
    return value
