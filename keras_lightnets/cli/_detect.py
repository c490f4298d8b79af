"""What the ``lightnets detect`` subcommands share: the ``--data`` options, reading a split, reporting the data.

``--data`` is ``'digits'`` (the bundled digit scenes), a Pascal VOC folder (with ``Annotations/``),
a COCO folder (an instances ``.json`` file in it or in its ``annotations/`` folder, images found
by ``detection_sources.coco_images_dir``) or such a ``.json`` file, or ``'tfds:NAME'``. The
readers are ``data.detection_sources``' (``load_detection_data``) with their rules: a box partly
outside its image is clipped, one with nothing left inside (or no area, or a coordinate that is
not finite) is dropped, and both are counted; ``report_data`` turns those counts into one
warning line and the report's ``data`` entry. A class name outside the model's or ``--classes``,
a folder without annotations and a split with no box at all are ``InputError``s (exit code 2).
Everything here but ``to_arrays``' decoding runs without TensorFlow (TFDS sources aside).

For the subcommands that take a trained detector (``eval``, ``export``, ``bench``):
``read_model`` (the ``--model`` run folder or ``.keras`` file: its paths, ``DetectorSpec`` and
record), ``add_image_arguments`` and ``image_source`` (``--data`` for calibration and test
images, ``digits`` by default for a detector whose record says it was trained on digits:
``training_source``, ``trained_on_digits``), ``model_split`` (a split in the model's classes,
resized to its input) and ``add_threshold_arguments`` (``--score-threshold``,
``--iou-threshold``, ``--max-detections``).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from keras_lightnets import errors
from keras_lightnets.cli._args import iou_threshold, positive_int, unit_interval

DATA_FORMS = ("'digits', a Pascal VOC folder (with Annotations/), a COCO folder or instances .json file, "
              "or 'tfds:NAME' (e.g. tfds:voc/2007, prepared in --data-dir)")
KINDS = ("digits", "voc", "coco", "tfds")
DIGIT_DEFAULTS = {"train": "train", "validation": "validation", "eval": "test"}
TFDS_DEFAULTS = {"train": "train", "validation": "validation", "eval": "test"}
VOC_DEFAULTS = {"train": "trainval", "validation": "val", "eval": "test"}  # when ImageSets/Main lists them
COCO_HINTS = {"train": "train", "validation": "val", "eval": "val"}  # picks among several instances files
WARNED_DROPS = {"box_clipped": "clipped to its image", "box_degenerate": "outside its image or empty, dropped"}


def progress(quiet: bool):
    """The subcommands' ``say``: one progress line on stderr, none under ``--quiet``."""

    def say(message: str) -> None:
        if not quiet:
            print(message, file=sys.stderr, flush=True)

    return say


def add_data_arguments(parser: argparse.ArgumentParser, purpose: str) -> None:
    """``--data``, ``--data-dir``, ``--split`` and ``--limit`` (``purpose``: "train" or "eval",
    whose split defaults the help states)."""
    parser.add_argument("--data", required=True, metavar="SRC", help=f"the images and boxes: {DATA_FORMS}")
    parser.add_argument("--data-dir", metavar="DIR", help="the TFDS data folder for --data tfds:... "
                                                          "(nothing is downloaded)")
    defaults = ("train" if purpose == "train" else "test") + " for digits and TFDS; for a VOC folder "
    defaults += ("ImageSets/Main/trainval.txt" if purpose == "train" else "ImageSets/Main/test.txt")
    parser.add_argument("--split", metavar="NAME",
                        help=f"the split to read. Default: {defaults} when it exists, else every annotation file; "
                             f"for a COCO folder its instances_NAME.json (default: the only one, or the one "
                             f"named '*{COCO_HINTS[purpose]}*')")
    parser.add_argument("--limit", type=positive_int, metavar="N",
                        help="read at most N images of each split (the first ones)")


def parse_class_names(text: str | None) -> tuple[str, ...] | None:
    """``--classes a,b,c`` as a tuple of names; ``InputError`` for an empty or repeated name."""
    if text is None:
        return None
    names = tuple(n.strip() for n in text.split(","))
    if not all(names) or len(set(names)) != len(names):
        raise errors.InputError(f"--classes must be distinct non-empty names separated by commas; received {text!r}")
    return names


def source_kind(source: str) -> str:
    """``"digits"``, ``"tfds"``, ``"voc"`` or ``"coco"``; ``InputError`` naming ``--data`` otherwise."""
    if source == "digits":
        return "digits"
    if source.startswith("tfds:") and len(source) > len("tfds:"):
        return "tfds"
    if os.path.isdir(source):
        return "voc" if os.path.isdir(os.path.join(source, "Annotations")) else "coco"
    if source.lower().endswith(".json") and os.path.isfile(source):
        return "coco"
    what = "does not exist" if not os.path.exists(source) else "is neither a folder nor a .json file"
    raise errors.InputError(f"--data must be {DATA_FORMS}; received {source!r} ({what})")


def _json_files(folder: Path) -> list[Path]:
    found = []
    for where in (folder, folder / "annotations"):
        if where.is_dir():
            found += sorted(p for p in where.iterdir() if p.suffix.lower() == ".json" and p.is_file()
                            and not p.name.startswith("."))
    return found


def coco_file(source: str, split: str | None, purpose: str) -> str:
    """The instances ``.json`` of a COCO ``source`` (a file, or a folder holding one in it or in
    ``annotations/``): named by ``split`` (``instances_<split>.json`` or ``<split>.json``), else the
    only one, else the one whose name holds ``COCO_HINTS[purpose]``."""
    if os.path.isfile(source):
        if split is not None:
            raise errors.InputError(f"--split does not apply to a COCO .json file ({source!r} is one split); "
                                    "give the file of the split you want")
        return source
    candidates = _json_files(Path(source))
    if not candidates:
        raise errors.InputError(f"--data folder {source!r} has no annotations: no Annotations/ folder (Pascal VOC) "
                                "and no .json file (COCO) in it or in its annotations/ folder")
    names = ", ".join(p.name for p in candidates)
    if split is not None:
        chosen = [p for p in candidates if p.stem in (split, f"instances_{split}")]
        if not chosen:
            raise errors.InputError(f"--split {split!r}: --data folder {source!r} has no instances_{split}.json "
                                    f"(its .json files: {names})")
    else:
        chosen = candidates if len(candidates) == 1 else [p for p in candidates if COCO_HINTS[purpose] in p.stem]
        if len(chosen) != 1:
            raise errors.InputError(f"--data folder {source!r} holds several .json files ({names}); choose one with "
                                    "--split NAME (instances_NAME.json) or give the file")
    return str(chosen[0])


def resolve_split(source: str, kind: str, split: str | None, purpose: str) -> tuple[str, str | None]:
    """``(source, split)`` for ``load_detection_data``: a COCO folder becomes its ``.json`` file, a
    missing ``split`` the default of ``purpose`` ("train", "validation" or "eval")."""
    if kind == "coco":
        return coco_file(source, split, purpose), None
    if split is not None:
        return source, split
    if kind == "digits":
        return source, DIGIT_DEFAULTS[purpose]
    if kind == "tfds":
        return source, TFDS_DEFAULTS[purpose]
    listed = os.path.join(source, "ImageSets", "Main", f"{VOC_DEFAULTS[purpose]}.txt")
    return source, VOC_DEFAULTS[purpose] if os.path.isfile(listed) else None


def add_threshold_arguments(parser: argparse.ArgumentParser, score_help: str) -> None:
    """``--score-threshold`` (default 0.05, ``score_help``), ``--iou-threshold`` (NMS, 0.5) and
    ``--max-detections`` (per image, 100): the post-processing of ``detection.inference_model`` and
    of ``TFLite_Detection_PostProcess``."""
    parser.add_argument("--score-threshold", metavar="F", type=unit_interval, default=0.05, help=score_help)
    parser.add_argument("--iou-threshold", metavar="F", type=iou_threshold, default=0.5,
                        help="NMS IoU threshold (default 0.5)")
    parser.add_argument("--max-detections", metavar="N", type=positive_int, default=100, help="per image (default 100)")


CLASS_HINT = "; pass class_names="  # how the readers end the message about a class outside the names


def read_split(source: str, split: str | None, purpose: str, *, class_names: Sequence[str] | None = None,
               limit: int | None = None, data_dir: str | None = None, option: str = "--data",
               classes_hint: str = "list every class of the data with --classes A,B,..."):
    """One split of ``source`` as a ``detection_sources.DetectionData`` (``resolve_split``); its
    errors are ``InputError``s beginning with ``option``, a box of a class outside ``class_names``
    ending with ``classes_hint`` (what to do about it on the command line)."""
    from keras_lightnets.data.detection_sources import load_detection_data

    kind = source_kind(source)
    path, split = resolve_split(source, kind, split, purpose)
    try:
        return load_detection_data(path, split, data_dir=data_dir, class_names=class_names, limit=limit)
    except errors.InputError as err:
        message = errors.one_line(err)
        if CLASS_HINT in message:
            message = f"{message[:message.index(CLASS_HINT)]}; {classes_hint}"
        raise type(err)(f"{option}: {message}") from None


def read_model(model: str):
    """``(model file, record file, DetectorSpec, record document)`` of ``--model`` (a run folder
    or a ``.keras`` file with ``detector.json`` beside it); ``InputError`` beginning with
    ``--model`` (or naming the record) when either is missing or the record is unusable. No Keras."""
    from keras_lightnets.training.detector_record import DetectorSpec, model_paths, read_record

    try:
        model_path, record_path = model_paths(model)
    except errors.InputError as err:
        raise errors.InputError(f"--model: {errors.one_line(err)}") from None
    record_path, document = read_record(record_path)
    spec = DetectorSpec.from_record(document, f"detector record {str(record_path)!r}")
    return model_path, record_path, spec, document


def add_image_arguments(parser: argparse.ArgumentParser, test_use: str) -> None:
    """``--data`` (optional: ``digits`` for a detector trained on it), ``--data-dir``,
    ``--calibration-split`` and ``--test-split`` (``test_use``: what the test images are for), for
    the subcommands that read calibration and test images of a trained detector."""
    parser.add_argument("--data", metavar="SRC",
                        help=f"images and boxes for int8 calibration and {test_use}: {DATA_FORMS}. Default: digits "
                             "for a detector trained on digits, else none")
    parser.add_argument("--data-dir", metavar="DIR", help="the TFDS data folder for --data tfds:... "
                                                          "(nothing is downloaded)")
    parser.add_argument("--calibration-split", metavar="NAME",
                        help="the split calibration images come from (default: the training split, as --split of "
                             "`detect train`)")
    parser.add_argument("--test-split", metavar="NAME",
                        help=f"the split of the images for {test_use} (default: the test split, as --split of "
                             "`detect eval`)")


def image_source(data: str | None, document: dict[str, Any]) -> str | None:
    """``--data``, or ``"digits"`` when it is not given and the record says the detector was
    trained on digits (``trained_on_digits``), else None. ``InputError`` for a ``--data`` that is
    none of ``DATA_FORMS`` (``source_kind``). No TensorFlow."""
    if data is None:
        return "digits" if trained_on_digits(document) else None
    source_kind(data)
    return data


def training_source(document: dict[str, Any]) -> str | None:
    """The ``source`` of the training data a detector's record names (``"digits:train"``,
    ``"voc:/data/VOC2007:trainval"``...; ``detect train`` writes it), None when it names none."""
    training = document.get("training")
    data = training.get("data") if isinstance(training, dict) else None
    source = data.get("source") if isinstance(data, dict) else None
    return source if isinstance(source, str) and source else None


def trained_on_digits(document: dict[str, Any]) -> bool:
    """Whether a detector's record says it was trained on ``--data digits`` (then ``digits`` is the
    default ``--data`` of the subcommands that need images)."""
    return (training_source(document) or "").startswith("digits:")


def model_split(source: str, split: str | None, purpose: str, spec, *, limit: int | None = None,
                data_dir: str | None = None, what: str, say, option: str = "--data"):
    """``(DetectionData, DetectionArrays)``: one split of ``source`` (``read_split``) in the classes
    of the detector ``spec`` (VOC and COCO boxes named by them; digits or TFDS data must have them),
    reported (``report_data``, ``what`` names it) and resized to the detector's square input
    (``data.detection_sources.to_arrays``: uint8 ``(N, S, S, 3)`` images, boxes in their pixels).
    ``InputError`` beginning with ``option`` for data the detector cannot take."""
    from keras_lightnets.data.detection_sources import to_arrays

    height, width = spec.input_size
    if height != width:
        raise errors.InputError(f"--model: the detector's input is {height}x{width}; only square inputs read data here")
    kind = source_kind(source)
    data = read_split(source, split, purpose, limit=limit, data_dir=data_dir, option=option,
                      class_names=None if kind in ("digits", "tfds") else spec.class_names,
                      classes_hint="the model detects only those classes")
    if tuple(data.class_names) != spec.class_names:
        raise errors.InputError(f"{option} names the classes {list(data.class_names)[:20]}, the model "
                                f"{list(spec.class_names)[:20]}: use data of the model's classes")
    report_data(data, what, say)
    try:
        return data, to_arrays(data, height)
    except errors.InputError as err:
        raise errors.InputError(f"{option}: {errors.one_line(err)}") from None


def box_count(data) -> int:
    """The boxes of a ``DetectionData``."""
    return sum(len(example.classes) for example in data.examples)


def data_report(data) -> dict[str, Any]:
    """The ``data`` entry of a report: source (with its split), images, boxes and the readers' drop counts."""
    return {"source": data.source, "images": len(data), "boxes": box_count(data), "dropped": dict(data.dropped)}


def report_data(data, what: str, say) -> None:
    """``say`` a line on ``data`` (``what`` names it); warn once about boxes clipped or dropped for
    lying outside their image; ``InputError`` when no box is left at all."""
    boxes = box_count(data)
    dropped = ", ".join(f"{n} {k}" for k, n in data.dropped.items())
    say(f"{what}: {len(data)} images, {boxes} boxes of {len(data.class_names)} classes ({data.source})"
        + (f"; {dropped}" if dropped else ""))
    outside = [f"{data.dropped[k]} box{'es' if data.dropped[k] > 1 else ''} {text}"
               for k, text in WARNED_DROPS.items() if data.dropped.get(k)]
    if outside:
        warnings.warn(f"{what} ({data.source}): {'; '.join(outside)}", stacklevel=2)
    if boxes == 0:
        raise errors.InputError(f"{what} ({data.source}) has no object boxes in its {len(data)} images"
                                + (f" (dropped: {dropped})" if dropped else "") + "; nothing to learn or measure")


__all__ = ["DATA_FORMS", "add_data_arguments", "add_image_arguments", "add_threshold_arguments", "box_count",
           "coco_file", "data_report", "image_source", "model_split", "parse_class_names", "read_model", "read_split",
           "report_data", "resolve_split", "source_kind", "trained_on_digits",
           "training_source"]
