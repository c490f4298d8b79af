"""A run whose loss or weights became inf/NaN stops before that epoch is recorded."""

from __future__ import annotations

import math

import numpy as np


class TrainingDivergedError(RuntimeError):
    """The loss or the weights became inf/NaN; the run stopped before recording that epoch."""


def diverged(what: str, epoch: int, learning_rate: float | None) -> TrainingDivergedError:
    """The error for ``what`` (e.g. ``"the training loss"``) in ``epoch`` (counted from 1)."""
    rate = "" if learning_rate is None else f" at learning rate {learning_rate:g}"
    return TrainingDivergedError(
        f"training diverged: {what} became inf/NaN in epoch {epoch}{rate}; that epoch was not recorded (best.keras "
        "and the last checkpoint are from earlier epochs); lower the learning rate (--lr, --fine-tune-lr)"
    )


def check_finite(model, row: dict) -> None:
    """``TrainingDivergedError`` when a loss of the history ``row`` or any weight of ``model`` is inf/NaN."""
    for key in ("loss", "val_loss"):
        if not math.isfinite(row[key]):
            raise diverged(f"the {key.replace('_', ' ').replace('val', 'validation')}", row["epoch"],
                           row.get("learning_rate"))
    if not all(np.isfinite(w).all() for w in model.get_weights()):
        raise diverged("a weight", row["epoch"], row.get("learning_rate"))
