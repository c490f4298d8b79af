"""The images a ``fine_tune`` run learns from and validates on, as ``tf.data`` batches.

``load_data`` reads the two splits (or takes the caller's pair); ``make_inputs`` turns
them into datasets of global batches of raw pixels (the classifier preprocesses
inside), float32 ``(batch, image_size, image_size, 3)`` in ``[0, 255]`` with int64
labels ``(batch,)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from keras_lightnets.errors import InputError, one_line
from keras_lightnets.training.settings import FineTuneSettings
from keras_lightnets.training.strategy import StrategyInfo

DIGITS_LOAD_SIZE = 64  # the 8x8 digits are loaded at most this large, then upscaled per batch


@dataclass
class Inputs:
    """The run's datasets (global batches), its class names, and ``fit``'s step counts
    (``steps_per_epoch`` / ``validation_steps``: only with several workers, whose datasets repeat)."""

    train: Any
    validation: Any
    class_names: list[str]
    steps: dict[str, int] = field(default_factory=dict)


def load_data(settings: FineTuneSettings, say: Callable[[str], None], progress: bool):
    """``(train, validation, kind)`` of ``settings.data`` (``ImageData``/``StreamData`` splits and
    the source kind); the source's complaints about the data are ``InputError``s."""
    try:
        return _read_data(settings, say, progress)
    except InputError:
        raise
    except ValueError as err:  # the data source names what is wrong with the user's data
        raise InputError(one_line(err)) from err


def _read_data(settings: FineTuneSettings, say: Callable[[str], None], progress: bool):
    from keras_lightnets.data.sources import ImageData, StreamData, load_images, source_kind

    data, size = settings.data, settings.image_size
    if isinstance(data, tuple | list) and len(data) == 2:
        train, validation = data
        for part in (train, validation):
            if not isinstance(part, ImageData | StreamData):
                raise ValueError("`data` pairs must be (train, validation) ImageData or StreamData")
        return train, validation, "custom"
    kind = source_kind(data)
    load_size = min(size, DIGITS_LOAD_SIZE) if kind == "digits" else size
    parts = []
    for split in ("train", "validation"):
        say(f"loading {data} ({split}) at {load_size}x{load_size}...")
        parts.append(load_images(data, image_size=(load_size, load_size), split=split, limit=settings.limit,
                                 seed=settings.seed, data_dir=settings.data_dir, progress=progress))
    train, validation = parts
    if train.class_names != validation.class_names:
        raise ValueError(f"train and validation classes differ: {train.class_names} vs {validation.class_names}")
    say(f"{len(train)} training and {len(validation)} validation images, {len(train.class_names)} classes")
    return train, validation, kind


def _count(part) -> int:
    return len(part) if hasattr(part, "__len__") else int(part.count)


def make_inputs(settings: FineTuneSettings, info: StrategyInfo, train, validation, kind: str) -> Inputs:
    """Batches of ``settings.batch_size`` images per replica; the training split shuffled and
    augmented (``settings.augmentation``; ``"default"``: per source kind)."""
    from keras_lightnets.data import pipeline

    augmentation = settings.augmentation
    if augmentation == "default":
        augmentation = pipeline.default_augmentation(kind)
    global_batch = settings.batch_size * info.replicas
    multi = info.workers > 1
    datasets = [
        pipeline.make_dataset(
            # The classifier preprocesses inside (build_classifier): feed it raw pixels.
            part, image_size=settings.image_size, preprocessing="in_model", batch_size=global_batch,
            training=training, seed=settings.seed, augmentation=augmentation, repeat=multi, shard_by_data=multi,
        )
        for part, training in ((train, True), (validation, False))
    ]
    steps = {"steps_per_epoch": math.ceil(_count(train) / global_batch),
             "validation_steps": math.ceil(_count(validation) / global_batch)} if multi else {}
    return Inputs(*datasets, class_names=list(train.class_names), steps=steps)
