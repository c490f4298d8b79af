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
  80/20 split drawn with ``seed``, ``None`` = all; ``"test"`` is the same held-out
  20 % as ``"validation"`` (a folder has no third split: what ``lightnets train``
  validates on is what ``compress``/``export`` evaluate on, with the same seed). The folder is untrusted input
  (``scan_folder``): every image is listed once, under the class folder it is in;
  links are followed only to targets inside the folder not listed yet (never out of
  it, never into a folder twice); only regular files of at most ``MAX_IMAGE_BYTES``
  are read and only PNG/JPEG/GIF/BMP whose header declares at most
  ``MAX_IMAGE_PIXELS`` are decoded; other files are skipped and counted;
- ``"tfds:NAME[:SPLIT]"``: a TensorFlow Datasets dataset already prepared in
  ``data_dir`` (nothing is downloaded; see ``DataNotPreparedError``). With a
  ``SPLIT`` in the string, ``split="train"``/``"validation"`` is a stratified 80/20
  split of it drawn with ``seed`` (``"test"``: the same 20 % as ``"validation"``);
  without one, ``split`` names the TFDS split (``"validation"`` falls back to
  ``"test"``, ``"test"`` to ``"validation"``, and when the dataset has neither, both
  are a 20 % stratified part of ``"train"`` whose other 80 % is then ``"train"``).

``HELD_OUT`` says in one line which images each source holds out for evaluation.

``limit`` keeps at most that many images of the selected split, chosen with
``seed`` (original order kept). ``stream_folder`` is the lazy ``tf.data`` variant
of the folder source for data that does not fit in memory.
"""

from __future__ import annotations

import importlib.resources
import math
import os
import stat
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from keras_lightnets import errors
from keras_lightnets.errors import InputError
from keras_lightnets.validation import check_positive_int, is_int

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
VALIDATION_FRACTION = 0.2
SOURCE_FORMS = "'digits', a folder of class subfolders, or 'tfds:NAME[:SPLIT]'"
HELD_OUT = ("held-out images: digits' test split (359); for a folder, a stratified 20% of each class (drawn with "
            "--seed where the command has one, else 0: what `lightnets train` validates on with that seed); for "
            "tfds:NAME its test split (else validation, else 20% of train); for tfds:NAME:SPLIT 20% of SPLIT")
HELD_OUT_SPLITS = (None, "train", "validation", "test")  # "test" = "validation" where a source has no third split
_EXTENSION_TEXT = "/".join(e.lstrip(".") for e in IMAGE_EXTENSIONS)
_SHOWN_SKIPPED = 3  # paths named in the one warning line about unreadable files
MAX_IMAGE_BYTES = 64 * 2**20  # an image file larger than this is not read (64 MiB)
MAX_IMAGE_PIXELS = 50_000_000  # an image whose header declares more pixels than this is not decoded
# JPEG start-of-frame markers (baseline, extended, progressive, lossless; Huffman and arithmetic)
_JPEG_FRAME_MARKERS = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))


class SkippedFilesWarning(UserWarning):
    """Some image files were refused or could not be decoded and were left out (one warning per load)."""


class IgnoredEntriesWarning(UserWarning):
    """Links or duplicate entries of an image folder were not followed (one warning per load)."""


class DataNotPreparedError(InputError, FileNotFoundError):
    """A TFDS dataset is not available locally (and nothing is downloaded).

    An ``InputError`` (exit code 2), still a ``FileNotFoundError`` for code that catches that.
    """


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
    ok = isinstance(image_size, tuple | list) and len(image_size) == 2 and all(is_int(s) and s > 0 for s in image_size)
    if not ok:
        raise InputError(f"`image_size` must be a pair of positive ints (height, width); received {image_size!r}")
    return int(image_size[0]), int(image_size[1])


def _check_common(channels, limit, seed) -> None:
    if channels not in (1, 3) or isinstance(channels, bool):
        raise InputError(f"`channels` must be 1 (grey) or 3 (RGB); received channels={channels!r}")
    check_positive_int("limit", limit, allow_none=True, error=InputError)
    if not is_int(seed):
        raise InputError(f"`seed` must be an int; received seed={seed!r}")


def _check_split(split, allowed: tuple, source: str) -> None:
    if split not in allowed:
        raise InputError(f"`split` for source {source!r} must be one of {allowed}; received split={split!r}")


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


def convert_channels(image, channels: int):
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


def resize_image(image, image_size: tuple[int, int], *, antialias: bool):
    """float32 resize (bilinear) of ``(H, W, C)`` or ``(N, H, W, C)`` to ``image_size``, clipped to [0, 255]."""
    import tensorflow as tf

    image = tf.cast(image, tf.float32)
    if tuple(image.shape[-3:-1]) != tuple(image_size):
        image = tf.image.resize(image, image_size, method="bilinear", antialias=antialias)
    return tf.clip_by_value(image, 0.0, 255.0)


# --------------------------------------------------------------------------- digits

def read_digits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The bundled UCI digits as stored, in NumPy only: ``(levels, labels, test)``.

    ``levels`` uint8 ``(1797, 8, 8)`` grey levels 0..16, ``labels`` int ``(1797,)`` 0..9,
    ``test`` bool ``(1797,)``: the held-out digits of the ``"test"``/``"validation"`` split.
    """
    path = importlib.resources.files("keras_lightnets") / "data" / "digits.npz"
    with path.open("rb") as f, np.load(f, allow_pickle=False) as archive:
        return archive["images"].astype(np.uint8), archive["labels"], archive["test"].astype(bool)


def _load_digits(image_size, channels, split, limit, seed) -> ImageData:
    import tensorflow as tf

    _check_split(split, (None, "train", "test", "validation"), "digits")
    images, labels, test = read_digits()
    if split is not None:
        keep = test if split in ("test", "validation") else ~test
        images, labels = images[keep], labels[keep]
    chosen = _limit_indices(len(labels), limit, seed)
    images, labels = images[chosen], labels[chosen]
    pixels = images.astype(np.float32)[..., None] * (255.0 / 16.0)  # grey levels 0..16 -> 0..255
    resized = resize_image(tf.constant(pixels), image_size, antialias=False)
    if channels == 3:
        resized = tf.repeat(resized, 3, axis=-1)
    return ImageData(
        images=resized.numpy().astype(np.float32), labels=labels.astype(np.int64),
        class_names=[str(d) for d in range(10)],
    )


# --------------------------------------------------------------------------- reading one image file

def positive_limit(value, name: str, default: int) -> int:
    """``value`` as an int, ``default`` for None; ``InputError`` unless a positive int or None."""
    checked = check_positive_int(name, value, allow_none=True, error=InputError)
    return default if checked is None else checked


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((text for test, text in kinds if test(mode)), "not a regular file")


def read_image_file(path: str | os.PathLike, *, max_bytes: int | None = None) -> bytes:
    """The bytes of one image file, read only when it is a regular file of at most ``max_bytes``.

    FIFOs, devices, sockets and folders are refused without being read (a FIFO is
    never waited on); ``max_bytes`` (default ``MAX_IMAGE_BYTES``) bounds what is
    read even when the file grows while it is read. ``InputError`` otherwise.
    """
    limit = positive_limit(max_bytes, "max_bytes", MAX_IMAGE_BYTES)
    text = os.fspath(path)
    try:
        before = os.stat(text)
        if not stat.S_ISREG(before.st_mode):
            raise InputError(f"image file {text!r} is {_file_kind(before.st_mode)}; only regular files are read")
        if before.st_size > limit:
            raise InputError(f"image file {text!r} has {before.st_size} bytes; the limit is {limit} bytes")
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
        fd = os.open(text, flags)
        with os.fdopen(fd, "rb") as f:
            opened = os.fstat(f.fileno())
            if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino):
                raise InputError(f"image file {text!r} changed while it was opened; only regular files are read")
            want = min(limit, before.st_size) + 1  # no buffer of the whole limit for a small file
            contents = f.read(want)
            if len(contents) == want and want <= limit:  # it grew since: read on, to the limit only
                contents += f.read(limit + 1 - want)
    except OSError as err:
        raise InputError(f"cannot read image file {text!r}: {err.strerror or type(err).__name__}") from None
    if len(contents) > limit:
        raise InputError(f"image file {text!r} has more than {limit} bytes (the limit)")
    return contents


def _be16(data: bytes, at: int) -> int:
    return struct.unpack_from(">H", data, at)[0]


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` from the first SOF marker of a JPEG stream (as libjpeg reads it)."""
    i, n = 2, len(data)
    while i < n:
        if data[i] != 0xFF:  # bytes between markers: libjpeg skips to the next 0xFF
            i += 1
            continue
        while i < n and data[i] == 0xFF:
            i += 1
        if i >= n:
            break
        marker = data[i]
        i += 1
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            break
        if i + 2 > n:
            break
        length = _be16(data, i)
        if length < 2:
            raise ValueError("a JPEG segment has a length below 2")
        if marker in _JPEG_FRAME_MARKERS:
            if i + 7 > n:
                break
            return _be16(data, i + 5), _be16(data, i + 3)
        i += length
    raise ValueError("no JPEG frame header (SOF marker) before the image data")


def _skip_gif_sub_blocks(data: bytes, i: int) -> int:
    while i < len(data):
        size = data[i]
        i += 1
        if size == 0:
            break
        i += size
    return i


def _gif_frame_pixels(data: bytes) -> int:
    """The pixels of every frame descriptor in a GIF (giflib holds each frame's raster)."""
    i, n, total = 13, len(data), 0
    if data[10] & 0x80:  # global colour table
        i += 3 << ((data[10] & 7) + 1)
    while i < n:
        block = data[i]
        i += 1
        if block == 0x21:  # extension: label byte, then data sub-blocks
            i = _skip_gif_sub_blocks(data, i + 1)
        elif block == 0x2C:  # image descriptor: left, top, width, height, flags
            if i + 9 > n:
                break
            width, height = struct.unpack_from("<HH", data, i + 4)
            flags = data[i + 8]
            i += 9 + ((3 << ((flags & 7) + 1)) if flags & 0x80 else 0)
            i = _skip_gif_sub_blocks(data, i + 1)  # LZW code size, then the image data
            total += width * height
        else:  # trailer (0x3B) or something giflib stops at
            break
    return total


def image_header(contents: bytes) -> tuple[str, int, int, int]:
    """``(format, width, height, pixels)`` read from the header of an encoded image, without decoding it.

    ``format`` is ``"png"``, ``"jpeg"``, ``"gif"`` or ``"bmp"`` (the formats
    ``tf.io.decode_image`` is given here, recognised by the same signatures);
    ``pixels`` is what decoding allocates: width x height, and for a GIF also the
    area of every frame. ``ValueError`` for anything else or a damaged header.
    """
    data = contents
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ValueError("PNG without an IHDR header chunk")
        fmt, (width, height) = "png", struct.unpack_from(">II", data, 16)
        pixels = width * height
    elif data[:3] == b"\xff\xd8\xff":
        fmt, (width, height) = "jpeg", _jpeg_size(data)
        pixels = width * height
    elif data[:4] == b"GIF8":
        if len(data) < 13:
            raise ValueError("GIF shorter than its logical screen descriptor")
        fmt, (width, height) = "gif", struct.unpack_from("<HH", data, 6)
        pixels = width * height + _gif_frame_pixels(data)
    elif data[:2] == b"BM":
        if len(data) < 26:
            raise ValueError("BMP shorter than its header")
        width, height = struct.unpack_from("<ii", data, 18)  # where TensorFlow's BMP decoder reads them
        fmt, height = "bmp", abs(height)
        pixels = width * height
    else:
        raise ValueError("not a PNG, JPEG, GIF or BMP file (unrecognised header)")
    if width <= 0 or height <= 0:
        raise ValueError(f"{fmt.upper()} header declares a {width}x{height} image")
    return fmt, width, height, pixels


def check_image_header(contents: bytes, *, max_pixels: int | None = None) -> tuple[str, int, int]:
    """``(format, width, height)`` of an encoded image whose decoded size is within ``max_pixels``.

    ``max_pixels`` defaults to ``MAX_IMAGE_PIXELS``. ``InputError`` (one line) when
    the header is not one of the four formats or declares more pixels than allowed.
    """
    limit = positive_limit(max_pixels, "max_pixels", MAX_IMAGE_PIXELS)
    try:
        fmt, width, height, pixels = image_header(contents)
    except (ValueError, struct.error, IndexError) as err:
        raise InputError(str(err) or "damaged image header") from None
    if pixels > limit:
        frames = " in all its frames" if pixels != width * height else ""
        raise InputError(f"{fmt.upper()} of {width}x{height} declares {pixels} pixels{frames}; the limit is {limit}")
    return fmt, width, height


def decode_image_file(
    path: str, image_size: tuple[int, int], channels: int = 3, *,
    max_bytes: int | None = None, max_pixels: int | None = None,
) -> np.ndarray:
    """One image file as float32 ``(H, W, channels)`` pixels in ``[0, 255]`` (first frame of a GIF).

    Only a regular file of at most ``max_bytes`` (default ``MAX_IMAGE_BYTES``) is
    read, and only a PNG/JPEG/GIF/BMP whose header declares at most ``max_pixels``
    (default ``MAX_IMAGE_PIXELS``) is decoded. Raises ``InputError`` (a
    ``ValueError``) when the file is refused or cannot be read or decoded.
    """
    import tensorflow as tf

    contents = read_image_file(path, max_bytes=max_bytes)  # its errors name the file
    try:
        check_image_header(contents, max_pixels=max_pixels)
        image = tf.io.decode_image(contents, channels=0, expand_animations=False, dtype=tf.uint8)
        if image.shape.rank != 3 or 0 in image.shape:
            raise ValueError(f"decoded to shape {image.shape}")
        image = convert_channels(image, channels)
        return resize_image(image, image_size, antialias=True).numpy()
    except (OSError, ValueError, tf.errors.OpError) as err:
        reason = getattr(err, "message", None) or str(err)
        reason = reason.strip().splitlines()[0] if reason.strip() else type(err).__name__
        raise InputError(f"cannot decode {path}: {reason}") from None


# --------------------------------------------------------------------------- folders

@dataclass
class FolderListing:
    """What ``scan_folder`` found in a class-per-subfolder image folder.

    ``files[k]``: the image entries of class ``class_names[k]``, sorted; those in
    ``refused`` (path -> reason) are never opened (links that lead outside the
    folder, broken links, FIFOs and devices) and count as skipped files.
    ``ignored``: links and duplicates not followed (``"path (reason)"``): links to
    folders outside the root, loops, folders or files already listed.
    """

    root: str
    class_names: list[str]
    files: list[list[str]]
    refused: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _entries(folder: str) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as err:
        raise InputError(f"cannot list the image folder {folder!r}: {err.strerror or type(err).__name__}") from None


def _inside(path: str, root: str) -> bool:
    return path == root or os.path.commonpath([path, root]) == root


class _Scan:
    """One walk of an image folder: every folder listed once, every file taken once, no link out of the root."""

    def __init__(self, root: str, classes: list[str], root_id: tuple[int, int]):
        self.real_root = os.path.realpath(root)
        self.visited: set[tuple[int, int]] = {root_id}
        self.seen: dict[tuple[int, int], str] = {}
        self.listing = FolderListing(root, classes, [[] for _ in classes])
        self.links: list[list[str]] = [[] for _ in classes]

    def refuse(self, path: str, label: int, reason: str) -> None:
        self.listing.files[label].append(path)
        self.listing.refused[path] = reason

    def take(self, path: str, info: os.stat_result, label: int) -> None:
        identity = (info.st_dev, info.st_ino)
        if identity in self.seen:
            self.listing.ignored.append(f"{path} (same file as {self.seen[identity]})")
        else:
            self.seen[identity] = path
            self.listing.files[label].append(path)

    def walk(self, top: str, label: int) -> None:
        """List ``top`` and its subfolders (not links: those wait in ``links`` for the second pass)."""
        stack = [top]
        while stack:
            folder = stack.pop()
            try:
                info = os.stat(folder)
            except OSError as err:
                raise InputError(f"cannot list the image folder {folder!r}: {err.strerror}") from None
            if (info.st_dev, info.st_ino) in self.visited:
                self.listing.ignored.append(f"{folder} (folder already listed)")
                continue
            self.visited.add((info.st_dev, info.st_ino))
            subfolders = []
            for entry in _entries(folder):
                if entry.name.startswith("."):
                    continue
                path = os.path.join(folder, entry.name)
                if entry.is_symlink():
                    self.links[label].append(path)
                elif entry.is_dir(follow_symlinks=False):
                    subfolders.append(path)
                elif _is_image_name(entry.name):
                    try:
                        entry_info = entry.stat(follow_symlinks=False)
                    except OSError:  # removed while listed
                        continue
                    if stat.S_ISREG(entry_info.st_mode):
                        self.take(path, entry_info, label)
                    else:
                        self.refuse(path, label, f"{_file_kind(entry_info.st_mode)} (only regular files are read)")
            stack.extend(reversed(subfolders))

    def follow(self, link: str, label: int) -> None:
        """Take a link's target when it is inside the root and not listed yet."""
        image = _is_image_name(os.path.basename(link))
        try:
            target = os.path.realpath(link, strict=True)
            info = os.stat(target)
        except OSError:
            if image:
                self.refuse(link, label, "a broken or looping link")
            else:
                self.listing.ignored.append(f"{link} (broken or looping link)")
            return
        folder = stat.S_ISDIR(info.st_mode)
        if not _inside(target, self.real_root):
            if folder:
                self.listing.ignored.append(f"{link} (leads outside the image folder)")
            elif image:
                self.refuse(link, label, "a link that leads outside the image folder (not followed)")
        elif folder:
            if (info.st_dev, info.st_ino) in self.visited:
                self.listing.ignored.append(f"{link} (folder already listed)")
            else:
                self.walk(link, label)
        elif image:
            if stat.S_ISREG(info.st_mode):
                self.take(link, info, label)
            else:
                self.refuse(link, label, f"a link to {_file_kind(info.st_mode)} (only regular files are read)")


def _folder_error(root: str, what: str) -> InputError:
    return InputError(f"image folder {root!r} {what}; expected one subfolder of images per class "
                      f"({os.path.join(root, '<class>', '<image>')}) and at least two classes")


def scan_folder(root: str | os.PathLike) -> FolderListing:
    """List a class-per-subfolder image folder safely (see ``FolderListing``).

    Classes are the sorted immediate subfolders of ``root`` (hidden ones skipped);
    a class's files are the images (by extension) anywhere below its folder.
    Folders and files physically in a class folder are listed first, each file once
    (by device and inode); links are followed afterwards, class by class, only
    to targets inside ``root`` not listed yet: a link inside the root to another
    class's file or folder, to the root or to a folder above it is not followed,
    so no image is read twice or under another class. Links to files outside the
    root are refused (skipped files), links to folders outside it ignored.
    ``InputError`` when ``root`` is not a folder, has no class subfolder, fewer
    than two classes, or a class without a readable image entry.
    """
    text = os.fspath(root)
    try:
        info = os.stat(text)
    except OSError as err:
        raise InputError(f"image folder {text!r} cannot be read: {err.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise _folder_error(text, f"is {'a file' if stat.S_ISREG(info.st_mode) else _file_kind(info.st_mode)}")
    visible = [e for e in _entries(text) if not e.name.startswith(".")]
    classes = [e.name for e in visible if e.is_dir()]
    if not classes:
        raise _folder_error(text, "is empty" if not visible else f"has no class subfolder ({len(visible)} files)")
    scan = _Scan(text, classes, (info.st_dev, info.st_ino))
    for label, name in enumerate(classes):
        path = os.path.join(text, name)
        if os.path.islink(path):
            scan.links[label].append(path)
        else:
            scan.walk(path, label)
    for label in range(len(classes)):
        pending = scan.links[label]
        i = 0
        while i < len(pending):  # following a link to a folder may queue more links
            scan.follow(pending[i], label)
            i += 1
    listing = scan.listing
    listing.files = [sorted(found) for found in listing.files]
    empty = [name for name, found in zip(classes, listing.files, strict=True)
             if not [p for p in found if p not in listing.refused]]
    if len(empty) == len(classes):
        raise _folder_error(text, f"has no image ({_EXTENSION_TEXT}) that can be read in any class folder")
    if empty:
        raise InputError(
            f"image folder {text!r}: class folder(s) {empty} contain no image ({_EXTENSION_TEXT}) that can be "
            "read (links that lead outside the folder or to images already listed are not followed); "
            "remove them or add images"
        )
    if len(classes) < 2:
        raise _folder_error(text, f"has only the class {classes[0]!r}")
    return listing


def list_folder(root: str | os.PathLike) -> tuple[list[str], list[list[str]]]:
    """``(class_names, files_per_class)`` of a class-per-subfolder image folder (see ``scan_folder``).

    The files are those that will be opened (refused entries left out).
    ``InputError`` (a ``ValueError``) when a class has no image or there are fewer than two classes.
    """
    listing = scan_folder(root)
    return listing.class_names, [[p for p in found if p not in listing.refused] for found in listing.files]


def _folder_selection(root, split, limit, seed, validation_fraction):
    listing = scan_folder(root)
    _warn_ignored(listing)
    paths = [p for files in listing.files for p in files]
    labels = np.asarray([i for i, files in enumerate(listing.files) for _ in files], dtype=np.int64)
    if split is not None:  # "test" is the held-out part, as "validation"
        chosen = stratified_split(labels, "train" if split == "train" else "validation", seed=seed,
                                  fraction=validation_fraction)
        paths, labels = [paths[i] for i in chosen], labels[chosen]
    chosen = _limit_indices(len(paths), limit, seed)
    return listing, [paths[i] for i in chosen], labels[chosen]


def _warn_ignored(listing: FolderListing) -> None:
    if not listing.ignored:
        return
    shown = ", ".join(listing.ignored[:_SHOWN_SKIPPED]) + (", ..." if len(listing.ignored) > _SHOWN_SKIPPED else "")
    warnings.warn(
        f"image folder {listing.root!r}: {len(listing.ignored)} link(s) or duplicate entries not followed "
        f"(each image is read once, under its own class, from inside the folder only): {shown}",
        IgnoredEntriesWarning, stacklevel=4,
    )


def _warn_skipped(notes: list[str], total: int) -> None:
    """One warning line for the skipped files; ``notes`` says why for each (and names it)."""
    if not notes:
        return
    shown = "; ".join(notes[:_SHOWN_SKIPPED]) + ("; ..." if len(notes) > _SHOWN_SKIPPED else "")
    warnings.warn(
        f"skipped {len(notes)} of {total} image files that were refused or could not be decoded: {shown}",
        SkippedFilesWarning, stacklevel=3,
    )


def _progress_bar(total: int, enabled: bool):
    """A Keras progress bar over ``total`` items (None when disabled or too short to matter)."""
    if not enabled or total < 200:
        return None
    import keras

    return keras.utils.Progbar(total, unit_name="image")


def _load_folder(root, image_size, channels, split, limit, seed, validation_fraction, progress,
                 max_bytes=None, max_pixels=None) -> ImageData:
    _check_split(split, HELD_OUT_SPLITS, "<folder>")
    listing, paths, labels = _folder_selection(root, split, limit, seed, validation_fraction)
    images, kept, skipped, notes = [], [], [], []
    bar = _progress_bar(len(paths), progress)
    for i, path in enumerate(paths):
        if bar is not None and (i % 50 == 0 or i == len(paths) - 1):
            bar.update(i + 1)
        if path in listing.refused:
            skipped.append(path)
            notes.append(f"{path}: {listing.refused[path]}")
            continue
        try:
            images.append(decode_image_file(path, image_size, channels, max_bytes=max_bytes, max_pixels=max_pixels))
            kept.append(i)
        except ValueError as err:
            skipped.append(path)
            notes.append(errors.one_line(err))
    _warn_skipped(notes, len(paths))
    if not images:
        first = f" (first: {notes[0]})" if notes else ""
        raise InputError(
            f"image folder {str(root)!r}: none of the {len(paths)} selected image files can be read and "
            f"decoded{first}; expected PNG/JPEG/GIF/BMP images in the class folders"
        )
    return ImageData(
        images=np.stack(images).astype(np.float32), labels=labels[np.asarray(kept)],
        class_names=listing.class_names, skipped=skipped,
    )


@dataclass
class StreamData:
    """A lazily decoded split: ``dataset`` yields ``(image, label)`` pairs, float32
    ``(H, W, C)`` pixels in ``[0, 255]`` and an int64 scalar; ``count`` is the number
    of files in it (undecodable or refused ones are dropped as they are met, with a
    logged warning); ``skipped``: files refused while listing (links out of the folder,
    FIFOs, devices), not in ``dataset``."""

    dataset: Any
    class_names: list[str]
    count: int
    skipped: list[str] = field(default_factory=list)


def stream_folder(
    root: str | os.PathLike, *, image_size: tuple[int, int], channels: int = 3, split: str | None = None,
    limit: int | None = None, seed: int = 0, validation_fraction: float = VALIDATION_FRACTION,
    max_image_bytes: int | None = None, max_image_pixels: int | None = None,
) -> StreamData:
    """The folder source as a ``tf.data`` pipeline that decodes files when iterated.

    Same classes, split and ``limit`` selection as ``load_images(folder, ...)``; for
    folders too big for memory. Files are read in sorted order (shuffle downstream),
    with the same limits as ``decode_image_file`` (``max_image_bytes``,
    ``max_image_pixels``; module defaults ``MAX_IMAGE_BYTES``, ``MAX_IMAGE_PIXELS``).
    """
    import tensorflow as tf

    image_size = _check_image_size(image_size)
    _check_common(channels, limit, seed)
    _check_split(split, HELD_OUT_SPLITS, "<folder>")
    max_bytes = positive_limit(max_image_bytes, "max_image_bytes", MAX_IMAGE_BYTES)
    max_pixels = positive_limit(max_image_pixels, "max_image_pixels", MAX_IMAGE_PIXELS)
    listing, paths, labels = _folder_selection(root, split, limit, seed, validation_fraction)
    keep = [i for i, p in enumerate(paths) if p not in listing.refused]
    skipped = [p for p in paths if p in listing.refused]
    _warn_skipped([f"{p}: {listing.refused[p]}" for p in skipped], len(paths))
    paths, labels = [paths[i] for i in keep], labels[np.asarray(keep, dtype=np.int64)]
    if not paths:
        raise InputError(f"image folder {os.fspath(root)!r}: none of the {len(skipped)} selected image files can be "
                         "read (all refused); expected PNG/JPEG/GIF/BMP images in the class folders")

    def checked_bytes(path):
        name = os.fsdecode(path.numpy())
        contents = read_image_file(name, max_bytes=max_bytes)
        check_image_header(contents, max_pixels=max_pixels)
        return contents

    def decode(path, label):
        contents = tf.py_function(checked_bytes, [path], tf.string)
        contents.set_shape(())
        image = tf.io.decode_image(contents, channels=channels, expand_animations=False)
        image.set_shape((None, None, channels))
        return resize_image(image, image_size, antialias=True), label

    dataset = tf.data.Dataset.from_tensor_slices((tf.constant([os.fsencode(p) for p in paths], tf.string), labels))
    dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.ignore_errors(log_warning=True)
    return StreamData(dataset=dataset, class_names=listing.class_names, count=len(paths), skipped=skipped)


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
        _check_split(split, HELD_OUT_SPLITS, f"tfds with split {tfds_split!r}")
        return tfds_split, {"test": "validation"}.get(split, split)
    _check_split(split, HELD_OUT_SPLITS, "tfds")
    held_out = "validation" if "validation" in available else "test" if "test" in available else None
    if split == "validation" and held_out:
        return held_out, None
    if split == "test" and held_out:
        return "test" if "test" in available else held_out, None
    if split in ("validation", "test") and "train" in available:  # no held-out split: 20 % of "train"
        return "train", "validation"
    if split in (None, "train") and "train" in available:
        # without a held-out split, "train" and "validation" are the two parts of TFDS "train"
        return "train", split if split is not None and held_out is None else None
    wanted = split or "train"
    raise InputError(f"TFDS dataset {builder.info.name!r} has no split {wanted!r}; it has {sorted(available)}")


def _load_tfds(spec: str, image_size, channels, split, limit, seed, data_dir, validation_fraction) -> ImageData:
    name, _, tfds_split = spec.partition(":")
    if not name:
        raise InputError(f"`source` {('tfds:' + spec)!r} names no dataset; expected {SOURCE_FORMS}")
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
        image = convert_channels(example[image_key], channels)
        return resize_image(image, image_size, antialias=True), tf.cast(example[label_key], tf.int64)

    images, labels = [], []
    for batch_images, batch_labels in dataset.map(convert).batch(256):
        images.append(batch_images.numpy())
        labels.append(batch_labels.numpy())
    if not images:
        raise InputError(f"TFDS dataset {name!r} split {read!r} is empty")
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
    max_image_bytes: int | None = None, max_image_pixels: int | None = None,
) -> ImageData:
    """Read one split of ``source`` into memory (see the module docstring for sources and splits).

    ``image_size``: ``(height, width)`` of the returned images; ``channels``: 1 or 3
    (grey images are replicated to RGB, alpha dropped); ``limit``: keep at most this
    many images, drawn with ``seed``; ``seed`` also draws folder/TFDS splits;
    ``data_dir``: the TFDS data folder; ``progress``: show a progress bar while
    decoding a folder of 200 or more files; ``max_image_bytes``/``max_image_pixels``:
    the largest image file read and the most pixels decoded from one (folder
    sources; ``None``: ``MAX_IMAGE_BYTES``/``MAX_IMAGE_PIXELS``); larger files are skipped.
    Bad input (arguments, a folder without usable images) raises ``InputError``.
    """
    image_size = _check_image_size(image_size)
    _check_common(channels, limit, seed)
    if not 0.0 < validation_fraction < 1.0:
        raise InputError(f"`validation_fraction` must be in (0, 1); received {validation_fraction!r}")
    if not isinstance(source, str | os.PathLike) or not str(source):
        raise InputError(f"`source` must be {SOURCE_FORMS}; received source={source!r}")
    text = os.fspath(source)
    if text == "digits":
        return _load_digits(image_size, channels, split, limit, seed)
    if text.startswith("tfds:"):
        return _load_tfds(text[len("tfds:"):], image_size, channels, split, limit, seed, data_dir, validation_fraction)
    max_bytes = positive_limit(max_image_bytes, "max_image_bytes", MAX_IMAGE_BYTES)
    max_pixels = positive_limit(max_image_pixels, "max_image_pixels", MAX_IMAGE_PIXELS)
    if Path(text).is_dir():
        return _load_folder(text, image_size, channels, split, limit, seed, validation_fraction, progress,
                            max_bytes, max_pixels)
    raise _not_a_source(text)


def _not_a_source(text: str) -> InputError:
    what = "a file, not a folder" if os.path.isfile(text) else "not an existing folder"
    return InputError(f"`source` must be {SOURCE_FORMS}; received source={text!r} ({what})")


def source_kind(source: str) -> str:
    """``"digits"``, ``"tfds"`` or ``"folder"`` (``InputError``, a ``ValueError``, for anything else)."""
    text = os.fspath(source) if isinstance(source, str | os.PathLike) else None
    if text == "digits":
        return "digits"
    if text and text.startswith("tfds:"):
        return "tfds"
    if text and Path(text).is_dir():
        return "folder"
    if text:
        raise _not_a_source(text)
    raise InputError(f"`source` must be {SOURCE_FORMS}; received source={source!r}")
