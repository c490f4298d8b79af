"""``argparse`` types shared by the ``lightnets`` subcommands (one copy each).

Each turns the text of an option into a number or raises
``argparse.ArgumentTypeError`` with the rule and the received text, which
argparse prints as the command's one-line usage error (exit code 2).
Floats must be finite: ``inf`` and ``nan`` are refused by every float option.
"""

from __future__ import annotations

import argparse
import math


def _number(text: str, kind: type, rule: str, ok) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {rule}; received {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {rule}; received {text!r}")
    return value


def positive_int(text: str) -> int:
    """An int >= 1."""
    return _number(text, int, "a positive integer", lambda v: v >= 1)


def natural_int(text: str) -> int:
    """An int >= 0."""
    return _number(text, int, "an integer >= 0", lambda v: v >= 0)


def positive_float(text: str) -> float:
    """A finite float > 0."""
    return _number(text, float, "a finite positive number", lambda v: math.isfinite(v) and v > 0)


def fraction(text: str) -> float:
    """A float strictly between 0 and 1 (so finite)."""
    return _number(text, float, "a fraction in (0, 1)", lambda v: math.isfinite(v) and 0.0 < v < 1.0)


def unit_interval(text: str) -> float:
    """A float in [0, 1) (a score threshold: scores must be above it)."""
    return _number(text, float, "a number in [0, 1)", lambda v: 0.0 <= v < 1.0)


def iou_threshold(text: str) -> float:
    """A float in (0, 1] (an IoU threshold)."""
    return _number(text, float, "a number in (0, 1]", lambda v: 0.0 < v <= 1.0)


def image_size(text: str) -> tuple[int, int]:
    """``"N"`` or ``"HxW"``: ``(height, width)`` in pixels, positive ints."""
    parts = text.lower().split("x")
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        sizes = ()
    if len(sizes) not in (1, 2) or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected N or HxW (positive ints); received {text!r}")
    return (sizes[0], sizes[-1])
