"""Detection data: Pascal VOC folders, COCO JSON, TFDS ``voc``/``coco``, the bundled digit scenes; one format.

Every reader returns a ``DetectionData``: one ``DetectionExample`` per image (the image as a
file path read lazily, encoded bytes, or a uint8 array; x1 y1 x2 y2 pixel boxes; 0-based class
ids), the class names, and ``dropped``: how many boxes or images each rule below touched.
``to_arrays`` decodes and resizes the images into the fixed-size arrays the detection pipeline
trains on (``DetectionArrays``: the fields of ``digit_scenes.DigitScenes``).

Sources (``load_detection_data(source, split)`` picks the reader):

* ``"digits"``: the bundled digit scenes (``digit_scenes.make_digit_scenes``), 128 x 128 pixels,
  ``DIGIT_SCENE_COUNTS`` scenes per split (train 2000, validation 500, test 500), seed 0;
* a Pascal VOC folder (one with ``Annotations/``): ``read_voc``. VOC pixel indices are 1-based
  and inclusive, so a ``<bndbox>`` of ``xmin..xmax`` becomes ``x1 = xmin - 1``, ``x2 = xmax``
  (the box covers columns ``x1 .. x2 - 1``, as the digit scenes' boxes do);
* a COCO instances ``.json`` file: ``read_coco``; ``bbox`` ``[x, y, w, h]`` becomes
  ``x, y, x + w, y + h``;
* ``"tfds:NAME"`` (``"tfds:voc/2007"``, ``"tfds:coco/2017"``): ``read_tfds``, a dataset already
  prepared locally (nothing is downloaded).

Rules for broken or hostile input (the same in every reader):

* a box is clipped to its image (``"box_clipped"`` counts the boxes kept after clipping); a box
  with a coordinate that is NaN or infinite, or with no area after clipping (``x2 <= x1`` or
  ``y2 <= y1``, negative sizes included) is dropped (``"box_degenerate"``); an image left
  without boxes is kept as a negative example (``"image_without_boxes"``). VOC ``difficult``
  boxes are dropped unless ``keep_difficult`` (``"box_difficult"``), COCO/TFDS crowd boxes
  always (``"box_crowd"``). ``dropped`` holds only the reasons that occurred;
* a class name outside ``class_names`` (VOC) or a ``category_id`` outside ``"categories"`` (COCO)
  is an ``InputError`` naming the file and the class, never a silently dropped box;
* a missing folder or file, a folder without annotations, malformed XML or JSON, a missing image
  file, a coordinate or size that is not a number: one-line ``InputError`` naming the path;
* XML with a DOCTYPE or ENTITY declaration is refused (no entity is ever expanded); each XML file
  is read only up to ``MAX_XML_BYTES`` (1 MiB), an ``ImageSets`` list up to ``MAX_LIST_BYTES``
  (16 MiB), a COCO JSON up to ``MAX_JSON_BYTES`` (1 GiB), all before parsing; image paths named
  inside annotations must stay inside the image folder (no absolute paths, no ``..``); image
  files are read and decoded with ``sources``' bounds (``MAX_IMAGE_BYTES``, and a header check
  against ``MAX_IMAGE_PIXELS`` before decoding, which refuses decompression bombs);
* nothing is ever written to the user's folders.

Reading an annotation folder checks every image file exists (a ``stat``) but decodes none;
``to_arrays`` decodes them, and refuses an image whose decoded size is not its annotated size.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from xml.etree import ElementTree
from xml.parsers import expat

import numpy as np

from keras_lightnets.data.digit_scenes import CLASS_NAMES as DIGIT_CLASS_NAMES
from keras_lightnets.data.digit_scenes import make_digit_scenes
from keras_lightnets.data.sources import (
    MAX_IMAGE_BYTES,
    MAX_IMAGE_PIXELS,
    DataNotPreparedError,
    check_image_header,
    convert_channels,
    positive_limit,
    read_image_file,
    resize_image,
)
from keras_lightnets.errors import InputError, one_line
from keras_lightnets.validation import check_bool, check_choice, check_positive_int

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
DIGIT_SPLITS = ("train", "validation", "test")
DIGIT_SCENE_COUNTS = {"train": 2000, "validation": 500, "test": 500}  # scenes per split of the "digits" source
DIGIT_SCENE_SIZE = 128  # pixels, the side of the "digits" source's scenes
MAX_XML_BYTES = 2**20  # one VOC annotation file
MAX_LIST_BYTES = 16 * 2**20  # one VOC ImageSets/Main/<split>.txt
MAX_JSON_BYTES = 2**30  # one COCO annotations file (instances_train2017.json is about 450 MiB)
VOC_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")  # tried after the XML's <filename>, in this order
SOURCE_FORMS = ("'digits', a Pascal VOC folder (with Annotations/), a COCO instances .json file, or 'tfds:NAME' "
                "(e.g. 'tfds:voc/2007')")
_SHOWN_NAMES = 5  # class names quoted in an error message
_FLAGS = {"0": False, "1": True, "false": False, "true": True}  # VOC <difficult> values


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class DetectionExample:
    """One annotated image.

    * ``image``: a file path (``str``, read only by ``to_arrays``), the encoded bytes of a
      PNG/JPEG/GIF/BMP image (``bytes``; TFDS sources, also decoded by ``to_arrays``), or a
      uint8 ``(H, W, 3)`` RGB array;
    * ``boxes``: float32 ``(K, 4)``, x1 y1 x2 y2 in pixels of that image,
      ``0 <= x1 < x2 <= W`` and ``0 <= y1 < y2 <= H``;
    * ``classes``: int32 ``(K,)``, 0-based indices into the data's ``class_names``;
    * ``size``: ``(H, W)`` in pixels, as annotated;
    * ``difficult``: bool ``(K,)``, VOC's "difficult" flag (False for every other source).

    ``InputError`` when the fields disagree (shapes, dtypes, boxes outside ``size``).
    """

    image: str | bytes | np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    size: tuple[int, int]
    difficult: np.ndarray

    def __post_init__(self) -> None:
        boxes, classes, difficult = self.boxes, self.classes, self.difficult
        ok = (isinstance(boxes, np.ndarray) and boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
              and isinstance(classes, np.ndarray) and classes.dtype == np.int32 and classes.shape == boxes.shape[:1]
              and isinstance(difficult, np.ndarray) and difficult.dtype == np.bool_
              and difficult.shape == boxes.shape[:1])
        if not ok:
            raise InputError("DetectionExample needs boxes float32 (K, 4), classes int32 (K,) and difficult bool (K,); "
                             f"received {_describe(boxes)}, {_describe(classes)}, {_describe(difficult)}")
        size = self.size
        if not (isinstance(size, tuple) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)):
            raise InputError(f"DetectionExample `size` must be (height, width), positive ints; received {size!r}")
        height, width = size
        x1, y1, x2, y2 = boxes.T
        inside = (x1 >= 0) & (x1 < x2) & (x2 <= width) & (y1 >= 0) & (y1 < y2) & (y2 <= height)
        if not inside.all():
            raise InputError(f"DetectionExample boxes must satisfy 0 <= x1 < x2 <= {width}, 0 <= y1 < y2 <= {height}; "
                             f"received {boxes[~inside][0].tolist()}")
        if (classes < 0).any():
            raise InputError(f"DetectionExample classes must be >= 0; received {int(classes.min())}")
        image = self.image
        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.shape != (height, width, 3):
                raise InputError(f"DetectionExample image array must be uint8 {(height, width, 3)} (its size); "
                                 f"received {_describe(image)}")
        elif not isinstance(image, str | bytes):
            raise InputError(f"DetectionExample `image` must be a path, encoded bytes or a uint8 array; "
                             f"received {type(image).__name__}")


@dataclass(frozen=True)
class DetectionData:
    """Annotated images of one split: ``examples``, the ``class_names`` their class ids index,
    ``dropped`` (reason -> count, only reasons that occurred; see the module docstring) and
    ``source`` (where they were read from, e.g. ``"voc:/data/VOC2007:trainval"``)."""

    examples: tuple[DetectionExample, ...]
    class_names: tuple[str, ...]
    dropped: Mapping[str, int]
    source: str

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class DetectionArrays:
    """Fixed-size arrays of a ``DetectionData`` (the fields ``digit_scenes.DigitScenes`` has).

    * ``images``: uint8 ``(N, S, S, 3)`` RGB;
    * ``boxes``: float32 ``(N, M, 4)``, x1 y1 x2 y2 in pixels of the resized image; rows past
      ``counts[i]`` are zeros;
    * ``classes``: int32 ``(N, M)``, indices into ``class_names``, ``-1`` past ``counts[i]``;
    * ``counts``: int32 ``(N,)``, the boxes of each image;
    * ``class_names``; ``dropped``: the data's counts plus ``"box_over_max_objects"`` when an
      image had more than ``M`` boxes.
    """

    images: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    counts: np.ndarray
    class_names: tuple[str, ...]
    dropped: Mapping[str, int]

    def __len__(self) -> int:
        return len(self.counts)

    @property
    def max_objects(self) -> int:
        return self.boxes.shape[1]


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} {value.shape}"
    return type(value).__name__


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _frozen(counts: Counter) -> dict[str, int]:
    """``counts`` as a plain dict (picklable) of the reasons that occurred, sorted by name."""
    return {reason: int(n) for reason, n in sorted(counts.items()) if n}


# --------------------------------------------------------------------------- boxes


def _example(image, raw_boxes, classes, size: tuple[int, int], difficult, counts: Counter) -> DetectionExample:
    """A ``DetectionExample`` from raw x1 y1 x2 y2 boxes (float64 ``(K, 4)``, any values), applying
    the clipping and dropping rules and counting what they did in ``counts``."""
    raw = np.asarray(raw_boxes, dtype=np.float64).reshape(-1, 4)
    height, width = size
    with np.errstate(invalid="ignore"):
        within = np.clip(raw, 0.0, [width, height, width, height])
        changed = (within != raw).any(axis=1)
        clipped = within.astype(np.float32)  # validity is judged on the float32 values kept
        finite = np.isfinite(raw).all(axis=1)
        valid = finite & (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    counts["box_clipped"] += int((valid & changed).sum())
    counts["box_degenerate"] += int((~valid).sum())
    if not valid.any():
        counts["image_without_boxes"] += 1
    return DetectionExample(
        image=image, boxes=clipped[valid].reshape(-1, 4), classes=np.asarray(classes, dtype=np.int32)[valid],
        size=size, difficult=np.asarray(difficult, dtype=bool)[valid],
    )


# --------------------------------------------------------------------------- arguments and files


def _check_class_names(class_names, default: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if class_names is None:
        return default
    names = tuple(class_names) if isinstance(class_names, Sequence) and not isinstance(class_names, str) else None
    if not names or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise InputError("`class_names` must be a non-empty sequence of distinct non-empty strings; "
                         f"received class_names={class_names!r}")
    return names


def _allowed(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_SHOWN_NAMES])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _SHOWN_NAMES else "")


def _path_text(path, argument: str) -> str:
    if not isinstance(path, str | os.PathLike) or not os.fspath(path):
        raise InputError(f"`{argument}` must be a path; received {argument}={path!r}")
    return os.fsdecode(os.fspath(path))


def read_bounded(path: str, limit: int, what: str) -> bytes:
    """The bytes of the regular file ``path`` (``what`` names it in errors), refused above ``limit`` bytes."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{what} {path!r} does not exist") from None
    except OSError as err:
        raise InputError(f"cannot read {what} {path!r}: {err.strerror or type(err).__name__}") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{what} {path!r} is not a regular file (only regular files are read)")
    if info.st_size > limit:
        raise InputError(f"{what} {path!r} has {info.st_size} bytes; the limit is {limit} bytes")
    try:  # sources' bounded read (regular file only, never past the limit even if the file grows)
        return read_image_file(path, max_bytes=limit)
    except InputError as err:
        raise InputError(f"cannot read {what} {path!r}: {one_line(err)}") from None


def _check_folder(path: str, what: str) -> None:
    try:
        info = os.stat(path)
    except OSError:
        raise InputError(f"{what} {path!r} does not exist") from None
    if not stat.S_ISDIR(info.st_mode):
        raise InputError(f"{what} {path!r} is not a folder")


def _check_image_file(path: str, annotation: str) -> None:
    """``InputError`` naming ``path`` and the annotation that refers to it unless it is a regular file."""
    try:
        info = os.stat(path)
    except OSError:
        raise InputError(f"image file {path!r} (of {annotation!r}) does not exist") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"image file {path!r} (of {annotation!r}) is not a regular file")


def _relative_name(name, where: str, *, plain: bool) -> str:
    """``name`` (from an annotation file) when it is a relative path that stays inside its folder;
    with ``plain``, a single file name. ``InputError`` naming ``where`` otherwise."""
    ok = isinstance(name, str) and bool(name) and "\x00" not in name
    if ok:
        posix, windows = PurePosixPath(name), PureWindowsPath(name)
        parts = windows.parts if len(windows.parts) > len(posix.parts) else posix.parts
        ok = (not posix.is_absolute() and not windows.is_absolute() and not windows.drive and ".." not in parts
              and (not plain or len(parts) == 1) and parts not in ((), (".",)))
    if not ok:
        kind = "a file name" if plain else "a relative path inside the image folder"
        raise InputError(f"{where}: image name {name!r} is not {kind}")
    return name


# --------------------------------------------------------------------------- XML


class _RefusedError(Exception):
    pass


def _refuse_declaration(*_) -> None:
    raise _RefusedError("DOCTYPE and ENTITY declarations are refused (no entity is expanded)")


def parse_xml(path: str | os.PathLike, *, max_bytes: int = MAX_XML_BYTES) -> ElementTree.Element:
    """The root element of the XML file ``path``, read up to ``max_bytes`` and parsed without a DOCTYPE.

    Any DOCTYPE or ENTITY declaration is refused before its content is read, so no entity
    (internal or external) is ever expanded. ``InputError`` naming the file for a missing,
    oversized or malformed file.
    """
    text = _path_text(path, "path")
    data = read_bounded(text, max_bytes, "annotation file")
    builder = ElementTree.TreeBuilder()
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_declaration
    parser.EntityDeclHandler = _refuse_declaration
    parser.ExternalEntityRefHandler = _refuse_declaration
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    parser.buffer_text = True
    try:
        parser.Parse(data, True)
        return builder.close()
    except _RefusedError as err:
        raise InputError(f"annotation file {text!r}: {err}") from None
    except (expat.ExpatError, ValueError) as err:
        raise InputError(f"annotation file {text!r} is not well-formed XML: {one_line(err)}") from None


def _child_text(element: ElementTree.Element, tag: str, where: str, *, default: str | None = None) -> str:
    child = element.find(tag)
    if child is None or child.text is None or not child.text.strip():
        if default is not None:
            return default
        raise InputError(f"{where}: <{element.tag}> has no <{tag}>")
    return child.text.strip()


def _number(text: str, where: str, field: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{where}: {field} is not a number ({text[:40]!r})") from None


def _image_side(value, where: str, field: str) -> int:
    """``value`` as an int when it is a positive whole number (``5`` or ``5.0``); ``InputError`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value != int(value) or value < 1:
        raise InputError(f"{where}: {field} must be a positive whole number of pixels; received {value!r}")
    return int(value)


# --------------------------------------------------------------------------- Pascal VOC


def _voc_ids(folder: str, split: str | None) -> list[str]:
    annotations = os.path.join(folder, "Annotations")
    if split is None:
        try:
            names = sorted(e.name for e in os.scandir(annotations)
                           if e.name.endswith(".xml") and not e.name.startswith("."))
        except OSError as err:
            raise InputError(f"cannot list {annotations!r}: {err.strerror or type(err).__name__}") from None
        if not names:
            raise InputError(f"VOC folder {folder!r} has no annotations (no .xml file in {annotations!r})")
        return [name[: -len(".xml")] for name in names]
    listing = os.path.join(folder, "ImageSets", "Main", f"{split}.txt")
    data = read_bounded(listing, MAX_LIST_BYTES, "VOC image list")
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"VOC image list {listing!r} is not UTF-8 text") from None
    ids = [line.split()[0] for line in lines if line.strip()]
    if not ids:
        raise InputError(f"VOC image list {listing!r} names no image (no annotations to read)")
    for image_id in ids:
        _relative_name(image_id, listing, plain=True)
    return ids


def _voc_image(folder: str, image_id: str, root: ElementTree.Element, where: str) -> str:
    images = os.path.join(folder, "JPEGImages")
    names = []
    named = root.findtext("filename")
    if named is not None and named.strip():
        names.append(_relative_name(named.strip(), where, plain=True))
    names += [image_id + ext for ext in VOC_IMAGE_EXTENSIONS if image_id + ext not in names]
    for name in names:
        path = os.path.join(images, name)
        if os.path.lexists(path):
            _check_image_file(path, where)
            return path
    raise InputError(f"{where}: image file {os.path.join(images, names[0])!r} does not exist "
                     f"(also tried {', '.join(names[1:])} in {images!r})")


def _read_voc_file(folder, image_id, class_names, index, keep_difficult, counts: Counter) -> DetectionExample:
    path = os.path.join(folder, "Annotations", image_id + ".xml")
    root = parse_xml(path)
    size = root.find("size")
    if size is None:
        raise InputError(f"annotation file {path!r} has no <size>")
    width, height = (_image_side(_number(_child_text(size, tag, path), path, f"<size><{tag}>"), path, f"<size><{tag}>")
                     for tag in ("width", "height"))
    image = _voc_image(folder, image_id, root, path)
    boxes, classes, difficult = [], [], []
    for obj in root.findall("object"):
        name = _child_text(obj, "name", path)
        if name not in index:
            raise InputError(f"annotation file {path!r}: class {name!r} is not one of the class names "
                             f"({_allowed(class_names)}); pass class_names= with every class of the data")
        box = obj.find("bndbox")
        if box is None:
            raise InputError(f"annotation file {path!r}: an <object> ({name!r}) has no <bndbox>")
        xmin, ymin, xmax, ymax = (_number(_child_text(box, tag, path), path, f"<bndbox><{tag}>")
                                  for tag in ("xmin", "ymin", "xmax", "ymax"))
        flag = _child_text(obj, "difficult", path, default="0")
        if flag not in _FLAGS:
            raise InputError(f"annotation file {path!r}: <difficult> is {flag[:20]!r}; expected 0 or 1")
        is_difficult = _FLAGS[flag]
        if is_difficult and not keep_difficult:
            counts["box_difficult"] += 1
            continue
        boxes.append((xmin - 1.0, ymin - 1.0, xmax, ymax))  # 1-based inclusive pixels -> x1 y1 x2 y2
        classes.append(index[name])
        difficult.append(is_difficult)
    return _example(image, boxes, classes, (height, width), difficult, counts)


def read_voc(
    folder: str | os.PathLike, *, split: str | None = "trainval", class_names: Sequence[str] | None = None,
    keep_difficult: bool = False, limit: int | None = None,
) -> DetectionData:
    """A Pascal VOC folder: ``folder/Annotations/<id>.xml``, ``folder/JPEGImages/<image>``.

    Args:
        folder: the VOC year folder (``VOCdevkit/VOC2007``).
        split: the image list ``folder/ImageSets/Main/<split>.txt`` (one id per line; ``"train"``,
            ``"val"``, ``"trainval"``, ``"test"`` in VOC), or ``None`` for every ``.xml`` in
            ``Annotations/`` (sorted by name).
        class_names: the classes, in class-id order; default ``VOC_CLASSES`` (the 20 VOC classes
            in the standard order). A ``<name>`` outside them is an ``InputError``.
        keep_difficult: keep boxes marked ``<difficult>1</difficult>`` (flagged in
            ``difficult``); by default they are dropped and counted (``"box_difficult"``).
        limit: read only the first ``limit`` images of the list (None: all).

    Each image is ``JPEGImages/<filename>`` with the XML's ``<filename>`` (a plain file name),
    else ``<id>.jpg``/``.jpeg``/``.png``, the first that exists; boxes are 0-based half-open
    pixels (``xmin - 1, ymin - 1, xmax, ymax``) of the XML's ``<size>``. Returns a
    ``DetectionData`` whose images are file paths. ``InputError`` (see the module docstring).
    """
    text = _path_text(folder, "folder")
    names = _check_class_names(class_names, VOC_CLASSES)
    check_bool("keep_difficult", keep_difficult)
    limit = check_positive_int("limit", limit, allow_none=True)
    if split is not None and (not isinstance(split, str) or not split.strip()
                              or split != os.path.basename(split) or split.startswith(".")):
        raise InputError(f"`split` must be None or the name of a file in ImageSets/Main/ (e.g. 'trainval'); "
                         f"received split={split!r}")
    _check_folder(text, "VOC folder")
    _check_folder(os.path.join(text, "Annotations"), "VOC annotation folder")
    counts: Counter = Counter()
    index = {name: i for i, name in enumerate(names)}
    examples = tuple(_read_voc_file(text, image_id, names, index, keep_difficult, counts)
                     for image_id in _voc_ids(text, split)[:limit])
    return DetectionData(examples=examples, class_names=names, dropped=_frozen(counts),
                         source=f"voc:{text}:{split or 'all'}")


# --------------------------------------------------------------------------- COCO


def _coco_list(document: dict, key: str, path: str) -> list:
    value = document.get(key)
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise InputError(f"COCO file {path!r}: {key!r} must be a list of objects")
    if not value:
        raise InputError(f"COCO file {path!r} has no {key} (no annotations to read)")
    return value


def _coco_categories(document: dict, path: str, class_names) -> tuple[dict[int, int], tuple[str, ...], dict]:
    """``(category id -> class index, class names, category id -> name)``."""
    names_by_id: dict[int, str] = {}
    for category in _coco_list(document, "categories", path):
        cid, name = category.get("id"), category.get("name")
        if isinstance(cid, bool) or not isinstance(cid, int) or not isinstance(name, str) or not name:
            raise InputError(f"COCO file {path!r}: a category needs an int 'id' and a 'name'; "
                             f"received {_short(category)}")
        if cid in names_by_id:
            raise InputError(f"COCO file {path!r}: category id {cid} is listed twice")
        names_by_id[cid] = name
    if class_names is None:
        ordered = sorted(names_by_id)
        names = tuple(names_by_id[cid] for cid in ordered)
        if len(set(names)) != len(names):
            raise InputError(f"COCO file {path!r}: category names are not distinct; pass class_names=")
        return {cid: i for i, cid in enumerate(ordered)}, names, names_by_id
    return ({cid: class_names.index(name) for cid, name in names_by_id.items() if name in class_names},
            class_names, names_by_id)


def _coco_bbox(annotation: dict, path: str) -> tuple[float, float, float, float]:
    bbox = annotation.get("bbox")
    ok = isinstance(bbox, list) and len(bbox) == 4 and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)
    if not ok:
        raise InputError(f"COCO file {path!r}: annotation {_short(annotation.get('id'))} has bbox {_short(bbox)}; "
                         "expected [x, y, width, height], four numbers")
    x, y, w, h = (float(v) for v in bbox)
    return x, y, x + w, y + h


def read_coco(
    annotations_json: str | os.PathLike, images_dir: str | os.PathLike, *,
    class_names: Sequence[str] | None = None, limit: int | None = None,
) -> DetectionData:
    """A COCO instances file (``instances_val2017.json``) with its images in ``images_dir``.

    Category ids map to class ids ``0..K-1`` in increasing id order, named by ``"categories"``
    (COCO's 80 ids 1..90 become 0..79); with ``class_names``, a category's class id is the index
    of its name there, and an annotation whose category is not among them is an ``InputError``.
    ``bbox`` ``[x, y, w, h]`` (pixels) becomes x1 y1 x2 y2; ``iscrowd`` boxes are dropped and
    counted (``"box_crowd"``). Every image of ``"images"`` is an example, in file order (those
    without annotations as negatives); its ``file_name`` is a relative path under
    ``images_dir`` that must exist. ``limit``: only the first ``limit`` images become examples
    (every annotation is still checked). ``InputError`` (see the module docstring).
    """
    path = _path_text(annotations_json, "annotations_json")
    folder = _path_text(images_dir, "images_dir")
    names = _check_class_names(class_names, None)
    limit = check_positive_int("limit", limit, allow_none=True)
    _check_folder(folder, "COCO image folder")
    data = read_bounded(path, MAX_JSON_BYTES, "COCO file")
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as err:
        raise InputError(f"COCO file {path!r} is not valid JSON: {one_line(err)}") from None
    if not isinstance(document, dict):
        raise InputError(f"COCO file {path!r} is not a JSON object with 'images', 'annotations', 'categories'")
    class_of, names, names_by_id = _coco_categories(document, path, names)
    images = _coco_list(document, "images", path)
    annotations = _coco_list(document, "annotations", path)
    order: dict[int, int] = {}
    for i, image in enumerate(images):
        image_id = image.get("id")
        if isinstance(image_id, bool) or not isinstance(image_id, int | str):
            raise InputError(f"COCO file {path!r}: image {i} has no int 'id'")
        if image_id in order:
            raise InputError(f"COCO file {path!r}: image id {_short(image_id)} is listed twice")
        order[image_id] = i
    per_image: list[list] = [[] for _ in images]
    for annotation in annotations:
        cid, image_id = annotation.get("category_id"), annotation.get("image_id")
        where = f"COCO file {path!r}: annotation {_short(annotation.get('id'))}"
        if cid not in names_by_id or isinstance(cid, bool):
            raise InputError(f"{where} has category_id {_short(cid)}, which is not in 'categories' "
                             f"(ids {_allowed(sorted(names_by_id))})")
        if cid not in class_of:
            raise InputError(f"COCO file {path!r}: class {names_by_id[cid]!r} (category_id {cid}) is not one of the "
                             f"class names ({_allowed(names)}); pass class_names= with every class of the data")
        if image_id not in order or isinstance(image_id, bool):
            raise InputError(f"{where} has image_id {_short(image_id)}, which is not in 'images'")
        per_image[order[image_id]].append(annotation)
    counts: Counter = Counter()
    examples = []
    for image, found in zip(images[:limit], per_image[:limit], strict=True):
        where = f"COCO file {path!r}, image {image.get('id')!r}"
        width = _image_side(image.get("width"), where, "'width'")
        height = _image_side(image.get("height"), where, "'height'")
        file = os.path.join(folder, *PurePosixPath(_relative_name(image.get("file_name"), where, plain=False)).parts)
        _check_image_file(file, path)
        boxes, classes = [], []
        for annotation in found:
            box = _coco_bbox(annotation, path)
            if annotation.get("iscrowd") not in (None, 0, False):
                counts["box_crowd"] += 1
                continue
            boxes.append(box)
            classes.append(class_of[annotation["category_id"]])
        examples.append(_example(file, boxes, classes, (height, width), np.zeros(len(boxes), bool), counts))
    return DetectionData(examples=tuple(examples), class_names=names, dropped=_frozen(counts), source=f"coco:{path}")


def coco_images_dir(annotations_json: str | os.PathLike) -> str:
    """Where ``load_detection_data`` looks for a COCO file's images: the first folder that exists of
    ``<json folder>/images``, ``<json folder>/../<name>`` for a file named ``instances_<name>.json``
    (COCO's own layout: ``annotations/instances_val2017.json`` with ``val2017/``), and the JSON's
    own folder."""
    path = Path(_path_text(annotations_json, "annotations_json"))
    candidates = [path.parent / "images"]
    if path.stem.startswith("instances_") and len(path.stem) > len("instances_"):
        candidates.append(path.parent.parent / path.stem[len("instances_"):])
    for candidate in candidates:
        if candidate.is_dir():
            return str(candidate)
    return str(path.parent)


# --------------------------------------------------------------------------- TFDS


def _tfds_not_prepared(name: str, data_dir, detail: str) -> DataNotPreparedError:
    where = repr(os.fspath(data_dir)) if data_dir else "the default TFDS folder (~/tensorflow_datasets, $TFDS_DATA_DIR)"
    return DataNotPreparedError(
        f"TFDS dataset {name!r} is not prepared in {where} ({detail}); nothing is downloaded here. On a machine "
        f"with internet run `tfds build {name} --data_dir DIR` (or tfds.builder({name!r}, data_dir=DIR)"
        ".download_and_prepare(); VOC and COCO are downloaded by TFDS itself), copy DIR here and pass "
        "data_dir=DIR; or use a VOC folder or a COCO .json file as the source"
    )


def read_tfds(
    name: str, split: str, *, data_dir: str | os.PathLike | None = None, keep_difficult: bool = False,
    limit: int | None = None,
) -> DetectionData:
    """A TFDS object-detection dataset already prepared in ``data_dir`` (``"voc/2007"``, ``"coco/2017"``).

    Nothing is downloaded or prepared: ``DataNotPreparedError`` (an ``InputError``) says how
    to prepare it when it is not there. The dataset needs ``image`` and ``objects`` with
    ``bbox`` (TFDS's ymin xmin ymax xmax relative to the image) and ``label``; boxes become
    pixels of the size the image header declares. Crowd boxes (``objects/is_crowd``) are
    dropped, difficult ones (``objects/is_difficult``) unless ``keep_difficult``. Images stay
    encoded (``bytes``, decoded by ``to_arrays``), so memory holds about the dataset's files.
    ``limit``: read only the split's first ``limit`` examples (None: all).
    """
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"`name` must be a TFDS dataset name such as 'voc/2007'; received name={name!r}")
    if not isinstance(split, str) or not split:
        raise InputError(f"`split` must be a TFDS split name such as 'train'; received split={split!r}")
    check_bool("keep_difficult", keep_difficult)
    limit = check_positive_int("limit", limit, allow_none=True)
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=None if data_dir is None else os.fspath(data_dir))
    except tfds.core.registered.DatasetNotFoundError as err:
        raise _tfds_not_prepared(name, data_dir, "no such dataset is registered or found on disk") from err
    if not builder.is_prepared():
        raise _tfds_not_prepared(name, data_dir, f"no prepared files in {builder.data_dir}")
    features = builder.info.features
    has_objects = "objects" in features  # a FeaturesDict: no .get()
    if "image" not in features or not has_objects or not {"bbox", "label"} <= set(features["objects"].keys()):
        raise InputError(f"TFDS dataset {name!r} is not an object-detection dataset "
                         "(expected the features 'image' and 'objects' with 'bbox' and 'label')")
    splits = sorted(builder.info.splits.keys())
    if split not in splits:
        raise InputError(f"TFDS dataset {name!r} has no split {split!r}; it has {splits}")
    class_names = tuple(features["objects"]["label"].names)
    dataset = builder.as_dataset(split=split, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
    if limit is not None:
        dataset = dataset.take(limit)
    counts: Counter = Counter()
    examples = []
    for index, example in enumerate(tfds.as_numpy(dataset)):
        contents = bytes(example["image"])
        try:
            _, width, height = check_image_header(contents)
        except InputError as err:
            raise InputError(f"TFDS dataset {name!r} split {split!r}, example {index}: {one_line(err)}") from None
        found = example["objects"]
        keep = np.ones(len(found["label"]), dtype=bool)
        if "is_crowd" in found:
            crowd = np.asarray(found["is_crowd"], dtype=bool)
            counts["box_crowd"] += int(crowd.sum())
            keep &= ~crowd
        difficult = np.asarray(found.get("is_difficult", np.zeros(len(keep), bool)), dtype=bool)
        if not keep_difficult:
            counts["box_difficult"] += int((difficult & keep).sum())
            keep &= ~difficult
        relative = np.asarray(found["bbox"], dtype=np.float64).reshape(-1, 4)[keep]
        boxes = relative[:, [1, 0, 3, 2]] * [width, height, width, height]  # ymin xmin ymax xmax -> x1 y1 x2 y2
        examples.append(_example(contents, boxes, np.asarray(found["label"])[keep], (height, width),
                                 difficult[keep], counts))
    if not examples:
        raise InputError(f"TFDS dataset {name!r} split {split!r} is empty")
    return DetectionData(examples=tuple(examples), class_names=class_names, dropped=_frozen(counts),
                         source=f"tfds:{name}:{split}")


# --------------------------------------------------------------------------- digits and dispatch


def _digit_data(split: str, limit: int | None = None) -> DetectionData:
    check_choice("split", split, DIGIT_SPLITS)
    count = DIGIT_SCENE_COUNTS[split] if limit is None else min(limit, DIGIT_SCENE_COUNTS[split])
    scenes = make_digit_scenes(count, image_size=DIGIT_SCENE_SIZE, split=split, seed=0)
    size = (DIGIT_SCENE_SIZE, DIGIT_SCENE_SIZE)
    examples = tuple(
        DetectionExample(image=scenes.images[i], boxes=scenes.boxes[i, :k].copy(),
                         classes=scenes.classes[i, :k].copy(), size=size, difficult=np.zeros(k, bool))
        for i, k in enumerate(scenes.counts.tolist())
    )
    counts = Counter(image_without_boxes=int((scenes.counts == 0).sum()))
    return DetectionData(examples=examples, class_names=DIGIT_CLASS_NAMES, dropped=_frozen(counts),
                         source=f"digits:{split}")


def load_detection_data(
    source: str | os.PathLike, split: str | None = "train", *, data_dir: str | os.PathLike | None = None,
    class_names: Sequence[str] | None = None, limit: int | None = None,
) -> DetectionData:
    """One split of ``source`` (see the module docstring for the forms).

    * ``"digits"``: ``split`` is ``"train"`` (2000 scenes), ``"validation"`` or ``"test"`` (500
      each): ``make_digit_scenes(DIGIT_SCENE_COUNTS[split], 128, split, seed=0)``;
    * a VOC folder: ``read_voc(source, split=...)`` with ``split`` naming
      ``ImageSets/Main/<split>.txt`` (``"validation"`` reads ``val.txt``; ``None`` every XML);
    * a ``.json`` file: ``read_coco(source, coco_images_dir(source))``; the file is one split, so
      ``split`` is not used (pass the training and the validation file as separate sources);
    * ``"tfds:NAME"``: ``read_tfds(NAME, split, data_dir=data_dir)``.

    ``class_names``: the classes in class-id order, for a VOC folder (default ``VOC_CLASSES``) or a
    COCO file (default its categories); the digits and TFDS datasets name their own classes, so
    they refuse it. ``limit``: at most this many images, the first ones of the split (the digit
    scenes of a split do not depend on how many are drawn). ``InputError`` for anything else,
    naming the accepted forms.
    """
    if not isinstance(source, str | os.PathLike) or not os.fspath(source):
        raise InputError(f"`source` must be {SOURCE_FORMS}; received source={source!r}")
    text = os.fsdecode(os.fspath(source))
    if split is not None and not isinstance(split, str):
        raise InputError(f"`split` must be a split name or None; received split={split!r}")
    limit = check_positive_int("limit", limit, allow_none=True)
    if class_names is not None and (text == "digits" or text.startswith("tfds:")):
        raise InputError(f"`class_names` applies to VOC folders and COCO files; source {text!r} names its own "
                         "classes")
    if text == "digits":
        return _digit_data(split, limit)
    if text.startswith("tfds:"):
        if split is None:
            raise InputError("`split` must name a TFDS split (e.g. 'train') for a 'tfds:' source; received None")
        return read_tfds(text[len("tfds:"):], split, data_dir=data_dir, limit=limit)
    if os.path.isdir(text):
        if not os.path.isdir(os.path.join(text, "Annotations")):
            raise InputError(f"`source` folder {text!r} has no Annotations/ folder (not a Pascal VOC folder); "
                             f"expected {SOURCE_FORMS}")
        return read_voc(text, split={"validation": "val"}.get(split, split), class_names=class_names, limit=limit)
    if text.lower().endswith(".json"):
        return read_coco(text, coco_images_dir(text), class_names=class_names, limit=limit)
    what = "does not exist" if not os.path.exists(text) else "is neither a folder nor a .json file"
    raise InputError(f"`source` must be {SOURCE_FORMS}; received source={text!r} ({what})")


# --------------------------------------------------------------------------- arrays


def _pixels(example: DetectionExample, image_size: int, index: int, max_bytes: int, max_pixels: int) -> np.ndarray:
    """uint8 ``(S, S, 3)``: the example's image decoded (bounded) and resized, or its array resized."""
    import tensorflow as tf

    image = example.image
    if isinstance(image, np.ndarray):
        if image.shape[:2] == (image_size, image_size):
            return image
        pixels = image
    else:
        name = repr(image) if isinstance(image, str) else f"example {index} (encoded image)"
        contents = read_image_file(image, max_bytes=max_bytes) if isinstance(image, str) else image
        if len(contents) > max_bytes:
            raise InputError(f"image of {name} has {len(contents)} bytes; the limit is {max_bytes} bytes")
        try:
            _, width, height = check_image_header(contents, max_pixels=max_pixels)
        except InputError as err:
            raise InputError(f"image {name}: {one_line(err)}") from None
        if (height, width) != example.size:
            raise InputError(f"image {name} is {height}x{width} (HxW) but annotated as "
                             f"{example.size[0]}x{example.size[1]}; its boxes would not match it")
        try:
            pixels = tf.io.decode_image(contents, channels=0, expand_animations=False, dtype=tf.uint8)
            pixels = convert_channels(pixels, 3)
        except (tf.errors.OpError, ValueError) as err:
            reason = (getattr(err, "message", None) or str(err)).strip()
            raise InputError(f"cannot decode image {name}: {reason.splitlines()[0] if reason else 'damaged'}") \
                from None
    resized = resize_image(pixels, (image_size, image_size), antialias=True).numpy()
    return np.rint(resized).astype(np.uint8)


def _kept_rows(example: DetectionExample, max_objects: int) -> np.ndarray:
    """Indices of the boxes kept: all, or the ``max_objects`` largest by area (in their order)."""
    k = len(example.classes)
    if k <= max_objects:
        return np.arange(k)
    boxes = example.boxes.astype(np.float64)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return np.sort(np.argsort(-area, kind="stable")[:max_objects])


def to_arrays(
    data: DetectionData, image_size: int, *, max_objects: int | None = None,
    max_image_bytes: int | None = None, max_image_pixels: int | None = None,
) -> DetectionArrays:
    """Decode and resize every image of ``data`` to ``image_size`` x ``image_size`` and scale its boxes.

    The resize is a plain bilinear (antialiased) one to a square: the aspect ratio is not kept,
    and boxes are scaled by ``S / W`` horizontally and ``S / H`` vertically. An array image that
    is already ``S x S`` (the digit scenes at their size) passes through unchanged, boxes too.
    ``max_objects`` (``M``): the padded box count, by default the largest count in ``data`` (at
    least 1); an image with more boxes keeps its ``M`` largest by area and the others are counted
    (``"box_over_max_objects"``). Image files are read only up to ``max_image_bytes`` and decoded
    only when their header declares at most ``max_image_pixels`` (``sources.MAX_IMAGE_BYTES``,
    ``MAX_IMAGE_PIXELS`` by default); an image whose decoded size is not its annotated ``size``
    is an ``InputError``. Memory: ``N * S * S * 3`` bytes of images.
    """
    if not isinstance(data, DetectionData):
        raise InputError(f"`data` must be a DetectionData; received {type(data).__name__}")
    size = check_positive_int("image_size", image_size)
    if not data.examples:
        raise InputError(f"`data` ({data.source}) has no examples")
    largest = max(len(example.classes) for example in data.examples)
    limit = check_positive_int("max_objects", max_objects, allow_none=True)
    limit = max(largest, 1) if limit is None else limit
    max_bytes = positive_limit(max_image_bytes, "max_image_bytes", MAX_IMAGE_BYTES)
    max_pixels = positive_limit(max_image_pixels, "max_image_pixels", MAX_IMAGE_PIXELS)
    count = len(data.examples)
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    boxes = np.zeros((count, limit, 4), dtype=np.float32)
    classes = np.full((count, limit), -1, dtype=np.int32)
    counts = np.zeros(count, dtype=np.int32)
    dropped = Counter(data.dropped)
    for i, example in enumerate(data.examples):
        if len(example.classes) and int(example.classes.max()) >= len(data.class_names):
            raise InputError(f"example {i} of {data.source} has class id {int(example.classes.max())}; "
                             f"the data has {len(data.class_names)} class names")
        images[i] = _pixels(example, size, i, max_bytes, max_pixels)
        rows = _kept_rows(example, limit)
        dropped["box_over_max_objects"] += len(example.classes) - len(rows)
        height, width = example.size
        scale = np.asarray([size / width, size / height, size / width, size / height])
        scaled = np.clip(example.boxes[rows].astype(np.float64) * scale, 0.0, size)
        boxes[i, :len(rows)] = scaled
        classes[i, :len(rows)] = example.classes[rows]
        counts[i] = len(rows)
    return DetectionArrays(images=images, boxes=boxes, classes=classes, counts=counts,
                           class_names=tuple(data.class_names), dropped=_frozen(dropped))


__all__ = [
    "DIGIT_SCENE_COUNTS", "DIGIT_SCENE_SIZE", "MAX_JSON_BYTES", "MAX_LIST_BYTES", "MAX_XML_BYTES", "VOC_CLASSES",
    "DetectionArrays", "DetectionData", "DetectionExample", "coco_images_dir", "load_detection_data", "parse_xml",
    "read_bounded", "read_coco", "read_tfds", "read_voc", "to_arrays",
]
