"""``fine_tune``'s arguments, checked once and resolved into one frozen record the phases read.

No TensorFlow or Keras: a bad argument costs nothing (``InputError``, one line naming it).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keras_lightnets.errors import InputError
from keras_lightnets.models.registry import model_config
from keras_lightnets.validation import check_bool, check_rate, is_int

WEIGHT_CHOICES = ("imagenet", "auto", None)
MIN_IMAGE_SIZE = 32


@dataclass(frozen=True)
class FineTuneSettings:
    """What one ``fine_tune`` run does, resolved (see ``fine_tune`` for each argument).

    ``image_size``: square input side in pixels (the registry's input size when not given);
    ``epochs_frozen`` / ``epochs_unfrozen``: epochs of phase 1 / phase 2;
    ``learning_rate`` / ``fine_tune_learning_rate``: Adam rates of phase 1 / phase 2
    (``learning_rate / 10`` when not given); ``batch_size``: per replica; ``limit``:
    images per split (``None``: all).
    """

    model_name: str
    data: Any
    weights: str | os.PathLike | None
    image_size: int
    epochs_frozen: int
    epochs_unfrozen: int
    unfreeze_blocks: int
    learning_rate: float
    fine_tune_learning_rate: float
    batch_size: int
    output_dir: Path
    resume: bool
    overwrite: bool
    seed: int
    quiet: bool
    limit: int | None
    data_dir: str | None
    dropout: float
    augmentation: Any

    @property
    def epochs(self) -> int:
        """Epochs over both phases."""
        return self.epochs_frozen + self.epochs_unfrozen

    @property
    def data_title(self) -> str:
        """How the history plot names the data."""
        return self.data if isinstance(self.data, str) else "custom data"


def _int_at_least(name: str, value, minimum: int) -> int:
    if not is_int(value) or value < minimum:
        raise InputError(f"`{name}` must be an int >= {minimum}; received {name}={value!r}")
    return int(value)


def _as_input_error(check, *arguments):
    """Run a ``validation`` check; its ``ValueError`` is the user's: an ``InputError``, same message."""
    try:
        return check(*arguments)
    except ValueError as err:
        raise InputError(str(err)) from None


def _check_weights(model_name: str, weights) -> None:
    if weights not in WEIGHT_CHOICES and not (isinstance(weights, str | os.PathLike) and os.path.isfile(weights)):
        raise InputError(
            f"`weights` must be 'imagenet', 'auto', None or the path of a weights file; received weights={weights!r}"
        )
    if weights == "imagenet" and "imagenet" not in model_config(model_name).weights:
        raise InputError(f"model {model_name!r} has no ImageNet weights; use weights=None ('none') or 'auto'")


def _check_learning_rate(name: str, value) -> None:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if value is not None and not (number and math.isfinite(value) and value > 0):
        raise InputError(f"`{name}` must be a finite positive number; received {name}={value!r}")


def resolve_settings(
    model_name: str, data: Any, *, weights: str | os.PathLike | None, image_size: int | None, epochs_frozen: int,
    epochs_unfrozen: int, unfreeze_blocks: int, learning_rate: float, fine_tune_learning_rate: float | None,
    batch_size: int, output_dir: str | os.PathLike, resume: bool, overwrite: bool, seed: int, quiet: bool,
    limit: int | None, data_dir: str | None, dropout: float, augmentation: Any,
) -> FineTuneSettings:
    """``FineTuneSettings`` of ``fine_tune``'s arguments; ``InputError`` for the first bad one."""
    config = model_config(model_name)
    _check_weights(model_name, weights)
    size = _int_at_least("image_size", config.input_size if image_size is None else image_size, MIN_IMAGE_SIZE)
    epochs_frozen = _int_at_least("epochs_frozen", epochs_frozen, 0)
    epochs_unfrozen = _int_at_least("epochs_unfrozen", epochs_unfrozen, 0)
    if epochs_frozen + epochs_unfrozen < 1:
        raise InputError("at least one epoch is needed: epochs_frozen + epochs_unfrozen >= 1")
    unfreeze_blocks = _int_at_least("unfreeze_blocks", unfreeze_blocks, 0)
    batch_size = _int_at_least("batch_size", batch_size, 1)
    if limit is not None:
        limit = _int_at_least("limit", limit, 1)
    _check_learning_rate("learning_rate", learning_rate)
    _check_learning_rate("fine_tune_learning_rate", fine_tune_learning_rate)
    _as_input_error(check_rate, "dropout", dropout)
    _as_input_error(check_bool, "resume", resume)
    _as_input_error(check_bool, "overwrite", overwrite)
    if resume and overwrite:
        raise InputError("`resume` and `overwrite` exclude each other: continue the run or replace it, not both")
    return FineTuneSettings(
        model_name=model_name, data=data, weights=weights, image_size=size, epochs_frozen=epochs_frozen,
        epochs_unfrozen=epochs_unfrozen, unfreeze_blocks=unfreeze_blocks, learning_rate=learning_rate,
        fine_tune_learning_rate=fine_tune_learning_rate or learning_rate / 10, batch_size=batch_size,
        output_dir=Path(output_dir), resume=resume, overwrite=overwrite, seed=seed, quiet=quiet, limit=limit,
        data_dir=data_dir, dropout=dropout, augmentation=augmentation,
    )
