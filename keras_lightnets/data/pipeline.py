"""``tf.data`` input pipelines for training and evaluating a registry model.

``make_dataset`` turns an ``ImageData`` (in memory) or a ``StreamData`` /
``tf.data.Dataset`` of ``(image, label)`` pairs (pixels in ``[0, 255]``) into
batches ``(images, labels)``: images float32 ``(B, S, S, 3)`` resized (bilinear)
to the model's input size ``S`` and scaled by the model's own preprocessing,
labels int64 ``(B,)``. Training batches are shuffled (with ``seed``) and
augmented (small random translation and zoom, optional horizontal flip).

Preprocessing, by the registry's ``ModelConfig.preprocessing``:
``"tf"`` -> ``[-1, 1]``; ``"torch"`` -> ImageNet mean/std; ``"in_model"`` -> raw
``[0, 255]`` (the model rescales itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from keras_lightnets.data.sources import ImageData, StreamData
from keras_lightnets.errors import InputError
from keras_lightnets.imagenet import PREPROCESS_MODES
from keras_lightnets.validation import check_positive_int

FILL_MODES = ("reflect", "wrap", "nearest", "constant")


@dataclass(frozen=True)
class Augmentation:
    """Random training-time changes, applied per image after resizing.

    ``translate``: the largest shift as a fraction of height/width; ``zoom``: the
    largest zoom in or out as a fraction; ``flip``: random left-right flips (off for
    digits and text, where a mirror image is another symbol); ``fill_mode``: how
    pixels moved in from outside are filled (``"constant"`` fills with 0).
    """

    translate: float = 0.1
    zoom: float = 0.1
    flip: bool = False
    fill_mode: str = "reflect"

    def __post_init__(self):
        for name in ("translate", "zoom"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 <= value < 1.0:
                raise InputError(f"`{name}` must be a number in [0, 1); received {name}={value!r}")
        if self.fill_mode not in FILL_MODES:
            raise InputError(f"`fill_mode` must be one of {FILL_MODES}; received fill_mode={self.fill_mode!r}")

    @property
    def active(self) -> bool:
        return self.flip or self.translate > 0 or self.zoom > 0


def default_augmentation(source_kind: str) -> Augmentation:
    """Digits: no flip, black fill (a mirrored digit is not that digit); photos: flip, reflect."""
    if source_kind == "digits":
        return Augmentation(flip=False, fill_mode="constant")
    return Augmentation(flip=True, fill_mode="reflect")


def preprocess_batch(images, preprocessing: str):
    """Scale a float32 batch of ``[0, 255]`` pixels as the model expects (see the module docstring)."""
    from keras_lightnets.imagenet import preprocess_input

    if preprocessing not in PREPROCESS_MODES:
        raise InputError(f"`preprocessing` must be one of {sorted(PREPROCESS_MODES)}; received {preprocessing!r}")
    return preprocess_input(images, mode=PREPROCESS_MODES[preprocessing])


def _augmenter(augmentation: Augmentation, seed: int):
    """A function ``(B, H, W, C) float32 -> same`` built from Keras 3 random layers."""
    import keras

    layers = []
    if augmentation.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if augmentation.translate > 0:
        layers.append(keras.layers.RandomTranslation(
            augmentation.translate, augmentation.translate, fill_mode=augmentation.fill_mode, seed=seed + 1))
    if augmentation.zoom > 0:
        layers.append(keras.layers.RandomZoom(
            augmentation.zoom, augmentation.zoom, fill_mode=augmentation.fill_mode, seed=seed + 2))

    def apply(images):
        for layer in layers:
            images = layer(images, training=True)
        return images

    return apply


def make_dataset(
    data: ImageData | StreamData | Any, *, image_size: int | tuple[int, int], preprocessing: str, batch_size: int,
    training: bool, seed: int = 0, augmentation: Augmentation | None = None, cache: bool | str = True,
    repeat: bool = False, shard_by_data: bool = False,
):
    """Batches ``(images float32 (B, H, W, 3), labels int64 (B,))`` ready for ``model.fit``.

    ``image_size``: the model's input side (or ``(H, W)``); ``preprocessing``: the
    registry's mode; ``training``: shuffle each epoch with ``seed`` and apply
    ``augmentation`` (``None`` = none); ``cache``: keep decoded images of a
    stream in memory (``True``) or in a cache file (a path); in-memory data needs
    no cache. ``repeat``: repeat forever (pass ``steps_per_epoch`` to fit);
    ``shard_by_data``: multi-worker auto-sharding by element instead of by file.
    """
    import tensorflow as tf

    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    batch_size = check_positive_int("batch_size", batch_size, error=InputError)
    preprocess_batch(np.zeros((1, 1, 1, 3), np.float32), preprocessing)  # validates `preprocessing`

    if isinstance(data, ImageData):
        # uint8 in memory (a quarter of float32); pixels are whole grey levels to within rounding
        pixels = np.clip(np.round(data.images), 0, 255).astype(np.uint8)
        if pixels.shape[-1] == 1:
            pixels = np.repeat(pixels, 3, axis=-1)
        dataset = tf.data.Dataset.from_tensor_slices((pixels, data.labels.astype(np.int64)))
        count = len(data)
    else:
        stream = data.dataset if isinstance(data, StreamData) else data
        count = data.count if isinstance(data, StreamData) else None
        dataset = stream.map(lambda x, y: (tf.cast(x, tf.float32), tf.cast(y, tf.int64)),
                             num_parallel_calls=tf.data.AUTOTUNE)
        if cache:
            dataset = dataset.cache(cache if isinstance(cache, str) else "")
    if training:
        buffer = count if count is not None else 10_000
        dataset = dataset.shuffle(min(buffer, 50_000), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(batch_size, drop_remainder=False)
    augment = _augmenter(augmentation, seed) if training and augmentation is not None and augmentation.active else None

    def finish(images, labels):
        images = tf.cast(images, tf.float32)
        if images.shape[-1] == 1:
            images = tf.repeat(images, 3, axis=-1)
        if tuple(images.shape[1:3]) != size:
            images = tf.image.resize(images, size, method="bilinear")
        if augment is not None:
            images = augment(images)
        images = tf.clip_by_value(images, 0.0, 255.0)
        return preprocess_batch(images, preprocessing), labels

    dataset = dataset.map(finish, num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = True
    if shard_by_data:
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
