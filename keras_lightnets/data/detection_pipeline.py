"""``tf.data`` for training detectors: arrays -> checks -> augmentation -> target encoding -> batches.

Data are objects with the fields of ``data.digit_scenes.DigitScenes`` (and of
``data.detection_sources.DetectionArrays``): ``images`` ``(N, H, W, 3)`` (or ``(N, H, W, 1)``)
pixels in ``[0, 255]``, ``boxes`` ``(N, M, 4)`` x1 y1 x2 y2 in pixels of those images,
``classes`` ``(N, M)`` integer class ids counted from 0 with ``-1`` for padding rows, and
optionally ``counts`` ``(N,)`` (rows past ``counts[i]`` are padding whatever their class) and
``class_names``.

``prepare_detection_data`` checks them once, in NumPy, before any training starts:

* a class id ``>= num_classes`` (the detector's foreground classes) or below ``-1`` is an
  ``InputError`` naming the largest (smallest) id and the class count;
* images whose size differs from the detector's input are resized (bilinear, antialiased when
  shrinking) and their boxes scaled by the same factors per axis (so boxes stay on the objects);
* boxes are clipped to the image; a box that is then empty (``x2 <= x1`` or ``y2 <= y1``, or
  not finite) is dropped (its class set to -1, as matching would skip it) and counted, and so
  are the images left without any box (they train as all-background).

``make_detection_dataset`` turns the result into batches ``(images, targets)``: images float32
``(B, S, S, 3)`` scaled as the detector expects (``preprocessing``: ``"in_model"`` keeps raw
``[0, 255]`` pixels; ``"tf"`` / ``"torch"`` as ``imagenet.preprocess_input``), and ``targets``
``{"classes": int32 (B, A), "boxes": float32 (B, A, 5)}`` for the detector's two outputs: the
class targets of ``matching.TargetEncoder`` (SSD rule: 0 background, class + 1 foreground;
RetinaNet rule: the class, -1 background, -2 ignored), and the encoded box targets with the
class target as a fifth column (the box loss reads its foreground anchors from it).

Training batches are shuffled each epoch (``seed``) and augmented (``DetectionAugmentation``)
with Keras 3 image preprocessing layers given ``{"images", "bounding_boxes": {"boxes",
"labels"}}`` dicts (``bounding_box_format="xyxy"``), inside ``tf.data`` (never in the model, so
Keras 3 and tf_keras detectors share the pipeline). Only transforms that keep a digit (or text)
readable are used: random zoom (aspect kept), translation, brightness and contrast; never a
flip or a rotation (a mirrored 2 is no digit). Boxes move with the image and are clipped to it;
a box pushed (nearly) outside, less than ``MIN_AUGMENTED_SIDE`` pixels wide or high, gets class
-1 (dropped by matching).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from keras_lightnets.errors import InputError
from keras_lightnets.validation import check_choice, check_positive_int, is_int

PREPROCESSING_CHOICES = ("in_model", "tf", "torch", "bgr255")
RESIZE_CHUNK = 256  # images resized per call (bounds the float32 copy)
MIN_AUGMENTED_SIDE = 2.0  # pixels: a box augmentation leaves narrower or lower than this is dropped


@dataclass(frozen=True)
class DetectionAugmentation:
    """Random training-time changes of detection images and their boxes (per image).

    ``zoom``: the largest zoom in or out, a fraction of the side (``keras.layers.RandomZoom``,
    both axes alike, so shapes keep their aspect; zooming out fills with black);
    ``translate``: the largest shift, a fraction of the side (``RandomTranslation``, black fill);
    ``brightness``: the largest brightness change, a fraction of 255 (``RandomBrightness``);
    ``contrast``: the largest contrast change, a fraction (``RandomContrast``).
    Each is a number in ``[0, 1)``; 0 turns that transform off.
    """

    zoom: float = 0.15
    translate: float = 0.1
    brightness: float = 0.2
    contrast: float = 0.2

    def __post_init__(self):
        for name in ("zoom", "translate", "brightness", "contrast"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
                raise InputError(f"`{name}` must be a number in [0, 1); received {name}={value!r}")

    @property
    def active(self) -> bool:
        return any(getattr(self, name) > 0 for name in ("zoom", "translate", "brightness", "contrast"))


@dataclass(frozen=True)
class DataReport:
    """What ``prepare_detection_data`` did: ``images``, ``boxes`` (kept), ``dropped_boxes`` (empty
    or non-finite after clipping to the image), ``images_without_boxes`` (after the drops),
    ``clipped_boxes`` (partly outside the image, kept clipped) and ``resized_from`` (the
    data's ``(height, width)`` when it differed from the detector's input, else None)."""

    images: int
    boxes: int
    dropped_boxes: int
    images_without_boxes: int
    clipped_boxes: int
    resized_from: tuple[int, int] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"images": self.images, "boxes": self.boxes, "dropped_boxes": self.dropped_boxes,
                "images_without_boxes": self.images_without_boxes, "clipped_boxes": self.clipped_boxes,
                "resized_from": list(self.resized_from) if self.resized_from else None}


@dataclass(frozen=True)
class PreparedDetections:
    """Checked data at the detector's input size: uint8 ``images`` ``(N, H, W, 3)``, float32
    ``boxes`` ``(N, M, 4)`` x1 y1 x2 y2 in input pixels, int32 ``classes`` ``(N, M)`` (0-based,
    -1 padding or dropped), the ``class_names`` and the ``report``."""

    images: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    class_names: list[str]
    report: DataReport = field(compare=False)

    def __len__(self) -> int:
        return len(self.images)


def _field(data, name: str, argument: str):
    if not hasattr(data, name):
        raise InputError(f"`{argument}` must have the fields images, boxes, classes (as DigitScenes or "
                         f"DetectionArrays); it has no {name!r}: received {type(data).__name__}")
    return getattr(data, name)


def _arrays(data, argument: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(images, boxes, classes)`` of ``data`` with their shapes and dtypes checked; rows past
    ``counts`` (when present) become padding."""
    images = np.asarray(_field(data, "images", argument))
    boxes = np.asarray(_field(data, "boxes", argument))
    classes = np.asarray(_field(data, "classes", argument))
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or min(images.shape) < 1:
        raise InputError(f"`{argument}.images` must have shape (N, height, width, 3) with N >= 1; "
                         f"received shape {images.shape}")
    if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
        raise InputError(f"`{argument}.images` must hold numbers (pixels in [0, 255]); received dtype {images.dtype}")
    count = images.shape[0]
    if boxes.ndim != 3 or boxes.shape[0] != count or boxes.shape[2] != 4:
        raise InputError(f"`{argument}.boxes` must have shape ({count}, M, 4) (x1 y1 x2 y2 pixels, one row "
                         f"per object); received shape {boxes.shape}")
    if classes.shape != boxes.shape[:2]:
        raise InputError(f"`{argument}.classes` must have shape {boxes.shape[:2]} (one class per box row); "
                         f"received shape {classes.shape}")
    if not np.issubdtype(classes.dtype, np.integer):
        raise InputError(f"`{argument}.classes` must hold integer class ids; received dtype {classes.dtype}")
    if not np.issubdtype(boxes.dtype, np.number) or np.issubdtype(boxes.dtype, np.complexfloating):
        raise InputError(f"`{argument}.boxes` must hold real numbers; received dtype {boxes.dtype}")
    classes = classes.astype(np.int64)
    counts = getattr(data, "counts", None)
    if counts is not None:
        counts = np.asarray(counts)
        if counts.shape != (count,) or not np.issubdtype(counts.dtype, np.integer):
            raise InputError(f"`{argument}.counts` must be integers of shape ({count},); received {counts.shape}")
        classes = np.where(np.arange(classes.shape[1])[None, :] < counts[:, None], classes, -1)
    return images, boxes.astype(np.float64), classes


def check_class_ids(classes: np.ndarray, num_classes: int, argument: str = "train") -> None:
    """``InputError`` unless every id in ``classes`` is -1 (padding) or in ``0 .. num_classes - 1``."""
    if classes.size == 0:
        return
    largest, smallest = int(classes.max()), int(classes.min())
    if largest >= num_classes:
        raise InputError(
            f"`{argument}.classes` holds class id {largest}, but the detector has {num_classes} foreground classes "
            f"(ids 0..{num_classes - 1}); build the detector for at least {largest + 1} classes"
        )
    if smallest < -1:
        raise InputError(f"`{argument}.classes` holds class id {smallest}; ids are 0..{num_classes - 1}, "
                         "and -1 marks a padding row")


def _resize(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 ``(N, h, w, 3)`` of ``images`` resized bilinearly (antialiased when shrinking)."""
    import tensorflow as tf

    shrink = size[0] < images.shape[1] or size[1] < images.shape[2]
    parts = []
    for start in range(0, len(images), RESIZE_CHUNK):
        chunk = tf.image.resize(tf.cast(images[start:start + RESIZE_CHUNK], tf.float32), size, method="bilinear",
                                antialias=shrink)
        parts.append(np.clip(np.rint(chunk.numpy()), 0, 255).astype(np.uint8))
    return np.concatenate(parts)


def prepare_detection_data(data, *, input_size: tuple[int, int], num_classes: int,
                           argument: str = "train") -> PreparedDetections:
    """``data`` checked and brought to the detector's input (see the module docstring).

    Args:
        data: an object with ``images``, ``boxes``, ``classes`` (and optionally ``counts``,
            ``class_names``), as ``DigitScenes``.
        input_size: the detector's ``(height, width)`` in pixels.
        num_classes: the detector's foreground classes (ids ``0 .. num_classes - 1``).
        argument: the argument's name in error messages (``"train"``, ``"validation"``).

    Returns a ``PreparedDetections``; ``InputError`` (one line) for malformed data or a class id
    out of range, before anything is trained.
    """
    images, boxes, classes = _arrays(data, argument)
    check_class_ids(classes, num_classes, argument)
    height, width = int(input_size[0]), int(input_size[1])
    source = (images.shape[1], images.shape[2])
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    if np.issubdtype(images.dtype, np.floating):
        if not np.all(np.isfinite(images)):
            raise InputError(f"`{argument}.images` holds inf or NaN pixels")
        images = np.clip(np.rint(images), 0, 255).astype(np.uint8)
    elif images.dtype != np.uint8:
        images = np.clip(images, 0, 255).astype(np.uint8)
    resized_from = None
    if source != (height, width):
        images = _resize(images, (height, width))
        scale = np.asarray([width / source[1], height / source[0]] * 2)
        boxes = boxes * scale
        resized_from = source
    real = classes >= 0
    finite = np.all(np.isfinite(boxes), axis=-1)
    safe = np.where(finite[..., None], boxes, 0.0)
    limits = np.asarray([width, height, width, height], dtype=np.float64)
    clipped = np.clip(safe, 0.0, limits)
    moved = real & finite & np.any(clipped != safe, axis=-1)
    empty = (clipped[..., 2] <= clipped[..., 0]) | (clipped[..., 3] <= clipped[..., 1]) | ~finite
    dropped = real & empty
    kept = real & ~empty
    classes = np.where(kept, classes, -1).astype(np.int32)
    boxes = np.where(kept[..., None], clipped, 0.0).astype(np.float32)
    names = getattr(data, "class_names", None)
    names = [str(n) for n in names] if names is not None else [str(i) for i in range(num_classes)]
    report = DataReport(images=len(images), boxes=int(kept.sum()), dropped_boxes=int(dropped.sum()),
                        images_without_boxes=int((~kept.any(axis=1)).sum()), clipped_boxes=int((moved & kept).sum()),
                        resized_from=resized_from)
    return PreparedDetections(images, boxes, classes, names, report)


def make_augmenter(augmentation: DetectionAugmentation, seed: int = 0):
    """``(images float32 (B, H, W, 3), boxes float32 (B, M, 4) xyxy pixels, classes int32 (B, M)) -> same``:
    the Keras 3 preprocessing layers of ``augmentation`` on one batch (per-image random draws).
    Boxes are clipped to the image; a box left narrower or lower than ``MIN_AUGMENTED_SIDE`` pixels
    (a sliver at the border, or nothing) gets class -1 and zeros."""
    import keras
    import tensorflow as tf

    layers = []
    if augmentation.zoom > 0:
        layers.append(keras.layers.RandomZoom((-augmentation.zoom, augmentation.zoom), None, fill_mode="constant",
                                              bounding_box_format="xyxy", seed=seed + 1))
    if augmentation.translate > 0:
        layers.append(keras.layers.RandomTranslation(augmentation.translate, augmentation.translate,
                                                     fill_mode="constant", bounding_box_format="xyxy", seed=seed + 2))
    if augmentation.brightness > 0:
        layers.append(keras.layers.RandomBrightness(augmentation.brightness, value_range=(0.0, 255.0),
                                                    bounding_box_format="xyxy", seed=seed + 3))
    if augmentation.contrast > 0:
        layers.append(keras.layers.RandomContrast(augmentation.contrast, value_range=(0.0, 255.0),
                                                  bounding_box_format="xyxy", seed=seed + 4))

    def apply(images, boxes, classes):
        data = {"images": images, "bounding_boxes": {"boxes": boxes, "labels": classes}}
        for layer in layers:
            data = layer(data, training=True)
        labels = tf.cast(data["bounding_boxes"]["labels"], tf.int32)
        out = tf.cast(data["bounding_boxes"]["boxes"], tf.float32)
        # A padding row stays padding; a box pushed (nearly) out of the image becomes padding.
        keep = ((classes >= 0) & (labels >= 0) & (out[..., 2] - out[..., 0] >= MIN_AUGMENTED_SIDE)
                & (out[..., 3] - out[..., 1] >= MIN_AUGMENTED_SIDE))
        return (tf.clip_by_value(tf.cast(data["images"], tf.float32), 0.0, 255.0),
                tf.where(keep[..., None], out, 0.0), tf.where(keep, classes, -1))

    return apply


def make_detection_dataset(
    data: PreparedDetections, encoder, *, batch_size: int, training: bool, class_offset: int = 0,
    relative_boxes: bool = False, preprocessing: str = "in_model", seed: int = 0,
    augmentation: DetectionAugmentation | None = None,
):
    """Batches ``(images, {"classes", "boxes"})`` for ``fit`` (see the module docstring).

    Args:
        data: ``prepare_detection_data``'s result.
        encoder: a ``matching.TargetEncoder`` with the detector's anchors, rule and coder.
        batch_size: images per batch (the last batch may be smaller).
        training: shuffle each epoch (``seed``) and apply ``augmentation``.
        class_offset: added to the 0-based class ids before encoding (1 for softmax heads whose
            column 0 is background, 0 for sigmoid heads).
        relative_boxes: divide boxes by the image size before encoding (anchors in fractions of
            the image, pytorch-ssd's priors).
        preprocessing: ``"in_model"`` (raw ``[0, 255]`` pixels), ``"tf"``, ``"torch"`` or ``"bgr255"``.
        seed: shuffling and augmentation seed.
        augmentation: a ``DetectionAugmentation`` or None (none).
    """
    import tensorflow as tf

    from keras_lightnets.imagenet import PREPROCESS_MODES, preprocess_input

    batch_size = check_positive_int("batch_size", batch_size)
    check_choice("preprocessing", preprocessing, PREPROCESSING_CHOICES)
    if not is_int(class_offset) or class_offset not in (0, 1):
        raise InputError(f"`class_offset` must be 0 or 1; received class_offset={class_offset!r}")
    height, width = data.images.shape[1:3]
    scale = tf.constant([width, height, width, height], tf.float32)
    augment = make_augmenter(augmentation, seed) if training and augmentation is not None and augmentation.active \
        else None

    def augmented(images, boxes, classes):
        images = tf.cast(images, tf.float32)
        if augment is not None:
            images, boxes, classes = augment(images, boxes, classes)
        return images, boxes, classes

    def encode(image, boxes, classes):
        classes = tf.where(classes >= 0, classes + class_offset, -1)
        if relative_boxes:
            boxes = boxes / scale
        image, targets = encoder(image, boxes, classes)
        class_targets = targets["classes"]
        packed = tf.concat([targets["boxes"], tf.cast(class_targets, tf.float32)[:, None]], axis=-1)
        return image, {"classes": class_targets, "boxes": packed}

    def scaled(images, targets):
        if preprocessing != "in_model":
            images = preprocess_input(images, mode=PREPROCESS_MODES[preprocessing])
        return images, targets

    dataset = tf.data.Dataset.from_tensor_slices((data.images, data.boxes, data.classes))
    if training:
        dataset = dataset.shuffle(len(data), seed=seed, reshuffle_each_iteration=True)
    plain = tf.autograph.experimental.do_not_convert  # no Python control flow on tensors in these
    dataset = dataset.batch(batch_size).map(plain(augmented), num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.unbatch().map(plain(encode), num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(batch_size).map(plain(scaled), num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(steps_per_epoch(data, batch_size)))
    options = tf.data.Options()
    options.deterministic = True
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(data: PreparedDetections, batch_size: int) -> int:
    """Batches in one pass over ``data``."""
    return math.ceil(len(data) / batch_size)
