"""The images (and labels) the export functions take: calibration data for ``to_tflite``,
test data for ``verify_tflite``.

Data is what the model takes (e.g. float pixels), channels-last: a numpy array or
tensor ``(N, H, W, C)``, an ``(images, labels)`` pair, or an iterable (a
``tf.data.Dataset`` too, batched or not) of batches, single images or such pairs.
Images come out float32 ``(N, H, W, C)``, labels int64 ``(N,)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np


def _as_batch(batch: Any, input_shape: tuple[int, ...], name: str) -> np.ndarray:
    """One ``(n, H, W, C)`` batch as float32, after shape and dtype checks."""
    if isinstance(batch, tuple) and batch:  # (images, labels) pairs, e.g. from tf.data
        batch = batch[0]
    array = np.asarray(batch.numpy() if hasattr(batch, "numpy") else batch)
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(
            f"`{name}` must hold real numbers (float pixels, or integers); received dtype {array.dtype}"
        )
    if array.ndim != 4 or tuple(array.shape[1:]) != tuple(input_shape):
        raise ValueError(
            f"`{name}` must be images of shape (N, {', '.join(map(str, input_shape))}) (N, height, width, "
            f"channels) or an iterable of such batches; received an array of shape {array.shape}"
        )
    array = array.astype(np.float32, copy=False)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` holds NaN or infinite values")
    return array


def _batch_labels(batch: Any, count: int, name: str) -> np.ndarray | None:
    """The labels of an ``(images, labels)`` element as ``(count,)`` ints, None without them."""
    if not (isinstance(batch, tuple) and len(batch) >= 2):
        return None
    labels = np.asarray(batch[1].numpy() if hasattr(batch[1], "numpy") else batch[1]).reshape(-1)
    if len(labels) != count or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"`{name}` pairs (images, labels) need one integer class index per image; received "
                         f"labels of shape {labels.shape} dtype {labels.dtype} for {count} image(s)")
    return labels.astype(np.int64)


def _element(batch: Any, input_shape: tuple[int, ...], name: str, *, single: bool = True,
             ) -> tuple[np.ndarray, np.ndarray | None]:
    """One batch ``(n, H, W, C)`` or (``single``) one image ``(H, W, C)`` (an unbatched ``tf.data``
    element), with its labels when the element is an ``(images, labels)`` pair."""
    images = batch[0] if isinstance(batch, tuple) and batch else batch
    rank = len(getattr(images, "shape", np.shape(images)))
    if single and rank == len(input_shape):  # one image
        images = images[None]
    array = _as_batch(images, input_shape, name)
    return array, _batch_labels(batch, len(array), name)


def collect_images_and_labels(
    data: Any, input_shape: tuple[int, ...], *, limit: int | None, name: str = "data",
) -> tuple[np.ndarray, np.ndarray | None]:
    """At most ``limit`` images of ``data`` as float32 ``(N, H, W, C)``, and their labels when ``data`` has them.

    ``data``: a numpy array (or tensor) ``(N, H, W, C)``, an ``(images, labels)``
    pair, or an iterable (e.g. a ``tf.data.Dataset``, batched or not) of batches,
    single images or such pairs. Labels are int64 ``(N,)`` when every element
    carries them, else None. ``ValueError`` for a wrong rank, shape or dtype, or no image.
    """
    if data is None:
        raise ValueError(f"`{name}` is required")
    if isinstance(data, np.ndarray) or hasattr(data, "shape") or isinstance(data, tuple):
        images, labels = _element(data, input_shape, name, single=False)
    elif isinstance(data, Iterable) and not isinstance(data, str | bytes | dict):
        parts, label_parts, count = [], [], 0
        for batch in data:
            batch_images, batch_labels = _element(batch, input_shape, name)
            parts.append(batch_images)
            label_parts.append(batch_labels)
            count += len(batch_images)
            if limit is not None and count >= limit:
                break
        if not parts:
            raise ValueError(f"`{name}` is empty; it must hold at least one image")
        images = np.concatenate(parts)
        labels = None if any(p is None for p in label_parts) else np.concatenate(label_parts)
    else:
        raise ValueError(
            f"`{name}` must be a numpy array (N, height, width, channels) or an iterable of such batches; "
            f"received {type(data).__name__}"
        )
    if len(images) == 0:
        raise ValueError(f"`{name}` is empty; it must hold at least one image")
    if limit is not None:
        images, labels = images[:limit], None if labels is None else labels[:limit]
    return images, labels


def collect_images(data: Any, input_shape: tuple[int, ...], *, limit: int | None, name: str = "data") -> np.ndarray:
    """At most ``limit`` images of ``data`` as float32 ``(N, H, W, C)`` (``data`` as for
    ``collect_images_and_labels``; labels are ignored)."""
    return collect_images_and_labels(data, input_shape, limit=limit, name=name)[0]


def check_labels(labels: Any, count: int) -> np.ndarray | None:
    """The first ``count`` of ``labels`` (int class indices ``(N,)``, ``N >= count``); None stays None."""
    if labels is None:
        return None
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or len(labels) < count:
        raise ValueError(
            f"`labels` must be {count} (or more) integer class indices, shape (N,); "
            f"received shape {labels.shape} dtype {labels.dtype}"
        )
    return labels[:count]


def channels_last_data(data: Any) -> Any:
    """``data`` for a channels-first model moved to channels-last: an ``(N, C, H, W)``
    array (or ``(C, H, W)`` image), an ``(images, labels)`` pair, or an iterable of those
    (a ``tf.data.Dataset`` too); labels are left as they are."""
    if data is None:
        return None
    if isinstance(data, tuple) and len(data) == 2:
        return channels_last_data(data[0]), data[1]
    if hasattr(data, "shape"):  # numpy arrays and tensors
        array = np.asarray(data)
        return np.moveaxis(array, array.ndim - 3, -1) if array.ndim in (3, 4) else array
    if isinstance(data, Iterable):
        return (channels_last_data(item) for item in data)
    return data
