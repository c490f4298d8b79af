"""Image sources for training: the bundled digits, a folder of images, a TFDS dataset.

``load_images(source, image_size=(H, W), ...)`` reads a whole split into memory as
an ``ImageData``: float32 pixels in ``[0, 255]`` of shape ``(N, H, W, C)``, int64
labels, the class names and the files that could not be read. ``source`` is one of

- ``"digits"``: the UCI hand-written digits bundled with the package
  (``data/digits.npz``, CC BY 4.0, see ``data/ATTRIBUTION.md``): 1797 grey 8x8
  images, upscaled bilinearly; splits ``"train"`` (1438) and ``"test"`` (359, a
  fixed stratified 20 %; ``"validation"`` is the same images), ``None`` = all;
- a folder with one subfolder per class (``root/<class>/**/<image>``: images in
  nested folders belong to the class folder they are in), JPEG/PNG/BMP/GIF files
  recognised by extension; ``split="train"``/``"validation"`` is a stratified
  80/20 split drawn with ``seed``, ``None`` = all;
- ``"tfds:NAME[:SPLIT]"``: a TensorFlow Datasets dataset already prepared in
  ``data_dir`` (nothing is downloaded; see ``DataNotPreparedError``). With a
  ``SPLIT`` in the string, ``split="train"``/``"validation"`` is a stratified 80/20
  split of it drawn with ``seed``; without one, ``split`` names the TFDS split
  (``"validation"`` falls back to ``"test"``, and when the dataset has neither, to
  a 20 % stratified part of ``"train"`` whose other 80 % is then ``"train"``).

``limit`` keeps at most that many images of the selected split, chosen with
``seed`` (original order kept). ``stream_folder`` is the lazy ``tf.data`` variant
of the folder source for data that does not fit in memory.
"""

from __future__ import annotations

import importlib.resources
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
VALIDATION_FRACTION = 0.2
SOURCE_FORMS = "'digits', a folder of class subfolders, or 'tfds:NAME[:SPLIT]'"
_SHOWN_SKIPPED = 3  # paths named in the one warning line about unreadable files


class SkippedFilesWarning(UserWarning):
    """Some image files could not be decoded and were left out (one warning per load)."""


class DataNotPreparedError(FileNotFoundError):
    """A TFDS dataset is not available locally (and nothing is downloaded)."""


@dataclass
class ImageData:
    """Images of one split in memory.

    ``images``: float32 ``(N, H, W, C)`` RGB (or grey, ``C == 1``) pixel values in
    ``[0, 255]``; ``labels``: int64 ``(N,)`` in ``0..len(class_names) - 1``;
    ``class_names``: the name of each label; ``skipped``: paths of files that could
    not be decoded (folder sources only).
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


# --------------------------------------------------------------------------- arguments

def _check_image_size(image_size) -> tuple[int, int]:
    ok = (
        isinstance(image_size, tuple | list) and len(image_size) == 2
        and all(isinstance(s, int | np.integer) and not isinstance(s, bool) and s > 0 for s in image_size)
    )
    if not ok:
        raise ValueError(f"`image_size` must be a pair of positive ints (height, width); received {image_size!r}")
    return int(image_size[0]), int(image_size[1])


def _check_common(channels, limit, seed) -> None:
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ValueError(f"`channels` must be 1 (grey) or 3 (RGB); received channels={channels!r}")
    if limit is not None and (not isinstance(limit, int | np.integer) or isinstance(limit, bool) or limit < 1):
        raise ValueError(f"`limit` must be None or a positive int; received limit={limit!r}")
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool):
        raise ValueError(f"`seed` must be an int; received seed={seed!r}")


def _check_split(split, allowed: tuple, source: str) -> None:
    if split not in allowed:
        raise ValueError(f"`split` for source {source!r} must be one of {allowed}; received split={split!r}")


# --------------------------------------------------------------------------- shared helpers

def stratified_split(labels: np.ndarray, part: str, *, seed: int, fraction: float = VALIDATION_FRACTION) -> np.ndarray:
    """Sorted indices of ``part`` ("train" or "validation") of a stratified split.

    Per class (in label order) a ``numpy.random.default_rng(seed)`` permutation
    puts ``round(fraction * n)`` images in validation, at least one and at most
    ``n - 1`` when the class has two or more; the rest are training images.
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    validation = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n = len(members)
        count = min(max(round(fraction * n), 1), n - 1) if n >= 2 else 0
        validation[rng.permutation(members)[:count]] = True
    return np.flatnonzero(validation if part == "validation" else ~validation)


def _limit_indices(count: int, limit: int | None, seed: int) -> np.ndarray:
    """At most ``limit`` of ``range(count)`` drawn with ``seed``, in increasing order."""
    if limit is None or limit >= count:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).permutation(count)[:limit])


def _convert_channels(image, channels: int):
    """``(..., c)`` uint8/float tensor with c in {1, 2, 3, 4} -> ``channels`` (1 or 3)."""
    import tensorflow as tf

    have = image.shape[-1]
    if have in (2, 4):  # grey+alpha or RGBA: drop alpha
        image = image[..., : have - 1]
        have -= 1
    if have == channels:
        return image
    if channels == 3:  # grey -> RGB
        return tf.repeat(image, 3, axis=-1)
    return tf.image.rgb_to_grayscale(image)


def _resize(image, image_size: tuple[int, int], *, antialias: bool):
    """float32 resize (bilinear) of ``(H, W, C)`` or ``(N, H, W, C)`` to ``image_size``, clipped to [0, 255]."""
    import tensorflow as tf

    image = tf.cast(image, tf.float32)
    if tuple(image.shape[-3:-1]) != tuple(image_size):
        image = tf.image.resize(image, image_size, method="bilinear", antialias=antialias)
    return tf.clip_by_value(image, 0.0, 255.0)


# --------------------------------------------------------------------------- digits

def _load_digits(image_size, channels, split, limit, seed) -> ImageData:
    import tensorflow as tf

    _check_split(split, (None, "train", "test", "validation"), "digits")
    path = importlib.resources.files("keras_lightnets") / "data" / "digits.npz"
    with path.open("rb") as f, np.load(f) as archive:
        images, labels, test = archive["images"], archive["labels"], archive["test"]
    if split is not None:
        keep = test if split in ("test", "validation") else ~test
        images, labels = images[keep], labels[keep]
    chosen = _limit_indices(len(labels), limit, seed)
    images, labels = images[chosen], labels[chosen]
    pixels = images.astype(np.float32)[..., None] * (255.0 / 16.0)  # grey levels 0..16 -> 0..255
    resized = _resize(tf.constant(pixels), image_size, antialias=False)
    if channels == 3:
        resized = tf.repeat(resized, 3, axis=-1)
    return ImageData(
        images=resized.numpy().astype(np.float32), labels=labels.astype(np.int64),
        class_names=[str(d) for d in range(10)],
    )


# --------------------------------------------------------------------------- folders

def list_folder(root: str | os.PathLike) -> tuple[list[str], list[list[str]]]:
    """``(class_names, files_per_class)`` of a class-per-subfolder image folder.

    Classes are the sorted immediate subfolders of ``root`` (hidden ones skipped);
    a class's files are the images (by extension) anywhere below its folder, sorted.
    ``ValueError`` when a class has no image or there are fewer than two classes.
    """
    root = Path(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files: list[list[str]] = []
    for name in classes:
        found = []
        for folder, subfolders, names in os.walk(root / name, followlinks=True):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            found += [
                os.path.join(folder, n) for n in names
                if not n.startswith(".") and n.lower().endswith(IMAGE_EXTENSIONS)
            ]
        files.append(sorted(found))
    empty = [name for name, found in zip(classes, files, strict=True) if not found]
    if empty:
        raise ValueError(
            f"image folder {str(root)!r}: class folder(s) {empty} contain no image "
            f"({'/'.join(e.lstrip('.') for e in IMAGE_EXTENSIONS)}); remove them or add images"
        )
    if len(classes) < 2:
        found = f"only the class {classes[0]!r}" if classes else "no class subfolder"
        raise ValueError(
            f"image folder {str(root)!r} has {found}; a classifier needs at least two classes, "
            "one subfolder of images per class (root/<class>/<image>)"
        )
    return classes, files


def _folder_selection(root, split, limit, seed, validation_fraction):
    classes, per_class = list_folder(root)
    paths = [p for files in per_class for p in files]
    labels = np.asarray([i for i, files in enumerate(per_class) for _ in files], dtype=np.int64)
    if split is not None:
        chosen = stratified_split(labels, split, seed=seed, fraction=validation_fraction)
        paths, labels = [paths[i] for i in chosen], labels[chosen]
    chosen = _limit_indices(len(paths), limit, seed)
    return classes, [paths[i] for i in chosen], labels[chosen]


def decode_image_file(path: str, image_size: tuple[int, int], channels: int = 3) -> np.ndarray:
    """One image file as float32 ``(H, W, channels)`` pixels in ``[0, 255]`` (first frame of a GIF).

    Raises ``ValueError`` when the file cannot be read or decoded.
    """
    import tensorflow as tf

    try:
        with open(path, "rb") as f:
            contents = f.read()
        image = tf.io.decode_image(contents, channels=0, expand_animations=False, dtype=tf.uint8)
        if image.shape.rank != 3 or 0 in image.shape:
            raise ValueError(f"decoded to shape {image.shape}")
        image = _convert_channels(image, channels)
        return _resize(image, image_size, antialias=True).numpy()
    except (OSError, ValueError, tf.errors.OpError) as err:
        reason = getattr(err, "message", None) or str(err)
        raise ValueError(f"cannot decode {path}: {reason.splitlines()[0] if reason else type(err).__name__}") from err


def _warn_skipped(skipped: list[str], total: int) -> None:
    if not skipped:
        return
    shown = ", ".join(skipped[:_SHOWN_SKIPPED]) + (", ..." if len(skipped) > _SHOWN_SKIPPED else "")
    warnings.warn(
        f"skipped {len(skipped)} of {total} image files that could not be decoded: {shown}",
        SkippedFilesWarning, stacklevel=3,
    )


def _progress_bar(total: int, enabled: bool):
    """A Keras progress bar over ``total`` items (None when disabled or too short to matter)."""
    if not enabled or total < 200:
        return None
    import keras

    return keras.utils.Progbar(total, unit_name="image")


def _load_folder(root, image_size, channels, split, limit, seed, validation_fraction, progress) -> ImageData:
    _check_split(split, (None, "train", "validation"), "<folder>")
    classes, paths, labels = _folder_selection(root, split, limit, seed, validation_fraction)
    images, kept, skipped = [], [], []
    bar = _progress_bar(len(paths), progress)
    for i, path in enumerate(paths):
        if bar is not None and (i % 50 == 0 or i == len(paths) - 1):
            bar.update(i + 1)
        try:
            images.append(decode_image_file(path, image_size, channels))
            kept.append(i)
        except ValueError:
            skipped.append(path)
    _warn_skipped(skipped, len(paths))
    if not images:
        raise ValueError(f"image folder {str(root)!r}: none of the {len(paths)} selected image files could be decoded")
    return ImageData(
        images=np.stack(images).astype(np.float32), labels=labels[np.asarray(kept)],
        class_names=classes, skipped=skipped,
    )


@dataclass
class StreamData:
    """A lazily decoded split: ``dataset`` yields ``(image, label)`` pairs, float32
    ``(H, W, C)`` pixels in ``[0, 255]`` and an int64 scalar; ``count`` is the number
    of files (undecodable ones are dropped as they are met, with a logged warning)."""

    dataset: Any
    class_names: list[str]
    count: int


def stream_folder(
    root: str | os.PathLike, *, image_size: tuple[int, int], channels: int = 3, split: str | None = None,
    limit: int | None = None, seed: int = 0, validation_fraction: float = VALIDATION_FRACTION,
) -> StreamData:
    """The folder source as a ``tf.data`` pipeline that decodes files when iterated.

    Same classes, split and ``limit`` selection as ``load_images(folder, ...)``; for
    folders too big for memory. Files are read in sorted order (shuffle downstream).
    """
    import tensorflow as tf

    image_size = _check_image_size(image_size)
    _check_common(channels, limit, seed)
    _check_split(split, (None, "train", "validation"), "<folder>")
    if not Path(root).is_dir():
        raise ValueError(f"`root` must be an existing folder; received {str(root)!r}")
    classes, paths, labels = _folder_selection(root, split, limit, seed, validation_fraction)

    def decode(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
        image.set_shape((None, None, channels))
        return _resize(image, image_size, antialias=True), label

    dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
    dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.ignore_errors(log_warning=True)
    return StreamData(dataset=dataset, class_names=classes, count=len(paths))


# --------------------------------------------------------------------------- TFDS

def _not_prepared(name: str, data_dir: str | None, detail: str) -> DataNotPreparedError:
    where = data_dir or "the default TFDS folder (~/tensorflow_datasets or $TFDS_DATA_DIR)"
    return DataNotPreparedError(
        f"TFDS dataset {name!r} is not prepared in {where} ({detail}); nothing is downloaded here. "
        f"On a machine with internet run `tfds build {name} --data_dir DIR` (or "
        f"tfds.builder({name!r}, data_dir=DIR).download_and_prepare()), copy DIR here and pass "
        "--data-dir DIR (data_dir=DIR); or use a folder of class subfolders as the source"
    )


def _tfds_plan(builder, tfds_split: str | None, split: str | None) -> tuple[str, str | None]:
    """``(tfds split to read, portion of it)``; portion is "train"/"validation" of a stratified split or None."""
    available = set(builder.info.splits.keys())
    if tfds_split:
        _check_split(split, (None, "train", "validation"), f"tfds with split {tfds_split!r}")
        return tfds_split, split
    _check_split(split, (None, "train", "validation", "test"), "tfds")
    held_out = "validation" if "validation" in available else "test" if "test" in available else None
    if split == "validation" and held_out:
        return held_out, None
    if split == "test" and "test" in available:
        return "test", None
    if split in (None, "train", "validation") and "train" in available:
        # without a held-out split, "train" and "validation" are the two parts of TFDS "train"
        return "train", split if split is not None and held_out is None else None
    wanted = split or "train"
    raise ValueError(f"TFDS dataset {builder.info.name!r} has no split {wanted!r}; it has {sorted(available)}")


def _load_tfds(spec: str, image_size, channels, split, limit, seed, data_dir, validation_fraction) -> ImageData:
    name, _, tfds_split = spec.partition(":")
    if not name:
        raise ValueError(f"`source` {('tfds:' + spec)!r} names no dataset; expected {SOURCE_FORMS}")
    import tensorflow as tf
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as err:
        raise _not_prepared(name, data_dir, "no such dataset is registered or found on disk") from err
    if not builder.is_prepared():
        raise _not_prepared(name, data_dir, f"no prepared files in {builder.data_dir}")
    read, portion = _tfds_plan(builder, tfds_split or None, split)
    keys = builder.info.supervised_keys
    image_key, label_key = keys if isinstance(keys, tuple) and len(keys) == 2 else ("image", "label")
    label_feature = builder.info.features[label_key]
    dataset = builder.as_dataset(split=read, shuffle_files=False)
    if limit is not None:  # the stratified portion keeps about `fraction`; read a little more than needed
        fraction = {None: 1.0, "validation": validation_fraction}.get(portion, 1.0 - validation_fraction)
        dataset = dataset.take(math.ceil(limit / fraction) + 10 * (portion is not None))

    def convert(example):
        image = _convert_channels(example[image_key], channels)
        return _resize(image, image_size, antialias=True), tf.cast(example[label_key], tf.int64)

    images, labels = [], []
    for batch_images, batch_labels in dataset.map(convert).batch(256):
        images.append(batch_images.numpy())
        labels.append(batch_labels.numpy())
    if not images:
        raise ValueError(f"TFDS dataset {name!r} split {read!r} is empty")
    images, labels = np.concatenate(images), np.concatenate(labels)
    if portion is not None:
        chosen = stratified_split(labels, portion, seed=seed, fraction=validation_fraction)
        images, labels = images[chosen], labels[chosen]
    chosen = _limit_indices(len(labels), limit, seed)
    names = getattr(label_feature, "names", None) or [str(i) for i in range(int(labels.max()) + 1)]
    return ImageData(images=images[chosen].astype(np.float32), labels=labels[chosen].astype(np.int64),
                     class_names=list(names))


# --------------------------------------------------------------------------- entry point

def load_images(
    source: str, *, image_size: tuple[int, int], channels: int = 3, split: str | None = None,
    limit: int | None = None, seed: int = 0, data_dir: str | None = None,
    validation_fraction: float = VALIDATION_FRACTION, progress: bool = False,
) -> ImageData:
    """Read one split of ``source`` into memory (see the module docstring for sources and splits).

    ``image_size``: ``(height, width)`` of the returned images; ``channels``: 1 or 3
    (grey images are replicated to RGB, alpha dropped); ``limit``: keep at most this
    many images, drawn with ``seed``; ``seed`` also draws folder/TFDS splits;
    ``data_dir``: the TFDS data folder; ``progress``: show a progress bar while
    decoding a folder of 200 or more files.
    """
    image_size = _check_image_size(image_size)
    _check_common(channels, limit, seed)
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"`validation_fraction` must be in (0, 1); received {validation_fraction!r}")
    if not isinstance(source, str | os.PathLike) or not str(source):
        raise ValueError(f"`source` must be {SOURCE_FORMS}; received source={source!r}")
    text = os.fspath(source)
    if text == "digits":
        return _load_digits(image_size, channels, split, limit, seed)
    if text.startswith("tfds:"):
        return _load_tfds(text[len("tfds:"):], image_size, channels, split, limit, seed, data_dir, validation_fraction)
    if Path(text).is_dir():
        return _load_folder(text, image_size, channels, split, limit, seed, validation_fraction, progress)
    raise ValueError(f"`source` must be {SOURCE_FORMS}; received source={text!r} (not an existing folder)")


def source_kind(source: str) -> str:
    """``"digits"``, ``"tfds"`` or ``"folder"`` (``ValueError`` for anything else)."""
    text = os.fspath(source) if isinstance(source, str | os.PathLike) else None
    if text == "digits":
        return "digits"
    if text and text.startswith("tfds:"):
        return "tfds"
    if text and Path(text).is_dir():
        return "folder"
    raise ValueError(f"`source` must be {SOURCE_FORMS}; received source={source!r}")
