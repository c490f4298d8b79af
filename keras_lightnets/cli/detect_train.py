"""``lightnets detect train --data SRC --detector KIND --backbone NAME ...``: train an object detector.

Builds the detector (``training.detector_record.DetectorSpec``: ``ssd``, ``ssdlite`` or
``retinanet`` on a registry backbone, or a preset of ``lightnets list --task detection`` from
scratch), reads ``--data`` (``cli._detect``) and trains with ``training.detection.fit_detector``
into ``--output``: ``best.keras``, ``history.csv``/``.png``, ``checkpoints/`` (resume, overwrite:
as ``lightnets train``) and ``detector.json``, the record
``training.detector_record.load_detector`` rebuilds the detector from (written with every
recorded epoch, after ``best.keras``; it also keeps what the data held: images, boxes and the
boxes the readers clipped or dropped). Validation: ``--validation`` (a
split of the same source, a fraction held out of the training images, or none).

Arguments, detector, annotations and the output folder are checked before TensorFlow is
imported (TFDS sources aside). Exit codes: 0 success, 2 bad input (``errors.InputError``: an
unknown detector kind or backbone, an option that does not apply to it, a data folder without
annotations, a class outside ``--classes``, data without any box, an unusable output folder), 1
a failure while working; each with one line on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from keras_lightnets import errors
from keras_lightnets.cli import _detect, command
from keras_lightnets.cli._args import natural_int, positive_float, positive_int

HELP = "train a detector (SSD, SSDLite, RetinaNet or a preset) on digits, VOC, COCO or TFDS data"
INTERRUPTED = " (completed epochs are checkpointed; continue with --resume)"
DESCRIPTION = ("Train an object detector on --data and write best.keras, detector.json (how to rebuild it: "
               "`lightnets detect eval` and export read it), history.csv/png and checkpoints/ to --output.")
DEFAULT_SIZE = {"ssd": 300, "ssdlite": 320, "retinanet": 320}  # the builders' defaults
OPTION_FLAGS = {"anchors_per_location": "--anchors-per-location", "width": "--width",
                "fpn_channels": "--fpn-channels", "num_convs": "--num-convs", "anchor_size": "--anchor-size"}
DEFAULT_HOLD_OUT = "0.1"  # --validation of sources other than the digits


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``detect train``'s arguments to ``parser``."""
    from keras_lightnets.training.detection import DEFAULT_OUTPUT, OPTIMIZERS, SCHEDULES

    _detect.add_data_arguments(parser, "train")
    parser.add_argument("--validation", metavar="SPLIT|FRACTION|none",
                        help="validation data: a split of --data (digits: 'validation', the default), a fraction "
                             f"of the training images held out (seeded; default {DEFAULT_HOLD_OUT} for other "
                             "sources), or 'none' (the training figures stand in)")
    parser.add_argument("--classes", metavar="A,B,...",
                        help="class names in class-id order, for VOC folders (default: the 20 VOC classes) and "
                             "COCO data (default: its categories); a box of another class is an error")
    parser.add_argument("--detector", required=True, metavar="KIND",
                        help="ssd, ssdlite, retinanet (on --backbone) or a preset (`lightnets list --task detection`, "
                             "trained from scratch at its own size)")
    parser.add_argument("--backbone", metavar="NAME", help="registered classifier to build on (`lightnets list`)")
    parser.add_argument("--input-size", type=positive_int, metavar="PX",
                        help="square input side in pixels, at least 32 (default: 300 for ssd, 320 for ssdlite and "
                             "retinanet; a preset's own)")
    parser.add_argument("--weights", choices=("imagenet", "auto", "none"),
                        help="the backbone's starting weights: imagenet (downloaded or cached), auto (ImageNet when "
                             "cached, else from scratch; never downloads), none. Default: imagenet (presets: none)")
    group = parser.add_argument_group("detector options (the builders' arguments)")
    group.add_argument("--anchors-per-location", type=int, choices=(2, 4, 6), help="ssd, ssdlite (default 6)")
    group.add_argument("--width", type=positive_float, metavar="F",
                       help="ssd, ssdlite: channel multiplier of the extra levels (default 1)")
    group.add_argument("--fpn-channels", type=positive_int, metavar="N", help="retinanet: FPN channels (default 256)")
    group.add_argument("--num-convs", type=positive_int, metavar="N", help="retinanet: convs per head (default 4)")
    group.add_argument("--anchor-size", type=positive_int, metavar="PX",
                       help="retinanet: P3 anchor side in pixels (default 32; smaller for small objects)")
    training = parser.add_argument_group("training")
    add = training.add_argument
    add("--epochs", type=natural_int, default=10, metavar="N",
        help="phase 1 epochs: backbone frozen when pretrained (default 10)")
    add("--fine-tune-epochs", type=natural_int, default=0, metavar="N",
        help="phase 2 epochs: top backbone blocks unfrozen, lower learning rate (default 0)")
    add("--unfreeze-blocks", type=natural_int, default=2, metavar="N", help="blocks unfrozen in phase 2 (default 2)")
    add("--batch-size", type=positive_int, default=16, metavar="N", help="images per step (default 16)")
    add("--learning-rate", "--lr", type=positive_float, default=1e-3, metavar="RATE",
        help="phase 1 learning rate (default 1e-3)")
    add("--fine-tune-learning-rate", type=positive_float, metavar="RATE",
        help="phase 2 learning rate (default: --learning-rate / 10)")
    add("--schedule", choices=SCHEDULES, default="constant", help="per phase (default constant)")
    add("--optimizer", choices=OPTIMIZERS, default="adam", help="default adam")
    add("--warmup-epochs", type=natural_int, default=0, metavar="N", help="linear warmup of phase 1 (default 0)")
    add("--no-augment", action="store_true", help="no zoom/translation/brightness/contrast")
    add("--box-weight", type=positive_float, default=1.0, metavar="F", help="box loss weight (default 1)")
    add("--clipnorm", type=positive_float, metavar="F", help="gradient norm clip (default none)")
    add("--time-budget", type=positive_float, metavar="SECONDS",
        help="start no epoch that would end after this many seconds")
    add("--seed", type=natural_int, default=0, metavar="N", help="shuffling, augmentation, hold-out (default 0)")
    previous = parser.add_mutually_exclusive_group()
    previous.add_argument("--resume", action="store_true",
                          help="continue after the last complete epoch checkpointed in --output")
    previous.add_argument("--overwrite", action="store_true",
                          help="replace a previous run in --output (its files are removed once the new run has "
                               "completed its first epoch); without it such a folder is refused")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, metavar="DIR",
                        help=f"the run folder (default {DEFAULT_OUTPUT})")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress output; stdout is the model's path alone")


# --------------------------------------------------------------------------- checks without TensorFlow


@dataclasses.dataclass(frozen=True)
class Plan:
    """The detector the arguments ask for: ``kind``, ``backbone``, ``input_size`` (pixels),
    builder ``options``, backbone ``weights`` ("imagenet", "auto" or "none")."""

    kind: str
    backbone: str | None
    input_size: int
    options: dict
    weights: str


def detector_plan(args: argparse.Namespace) -> Plan:
    """``Plan`` of ``args``; ``InputError`` naming the first option that does not fit."""
    from keras_lightnets.detection.builders import MIN_INPUT
    from keras_lightnets.detection.presets import detector_config
    from keras_lightnets.models.registry import list_models, model_config
    from keras_lightnets.training.detector_record import BUILDER_OPTIONS, BUILDERS, detector_kinds

    kind = args.detector
    if kind not in detector_kinds():
        raise errors.InputError(f"--detector must be one of {', '.join(detector_kinds())}; received {kind!r}")
    options = {key: getattr(args, key) for key in OPTION_FLAGS if getattr(args, key) is not None}
    allowed = BUILDER_OPTIONS.get(kind, {})
    wrong = [OPTION_FLAGS[key] for key in options if key not in allowed]
    if wrong:
        own = ", ".join(OPTION_FLAGS[k] for k in allowed) or "none"
        raise errors.InputError(f"{', '.join(wrong)} does not apply to --detector {kind} (its options: {own})")
    if kind not in BUILDERS:
        size = detector_config(kind).input_size
        if args.backbone is not None:
            raise errors.InputError(f"--backbone does not apply to the preset {kind} (it has its own backbone)")
        if args.input_size not in (None, size):
            raise errors.InputError(f"--input-size: the preset {kind} takes {size}x{size} images; "
                                    f"received {args.input_size}")
        if args.weights not in (None, "none", "auto"):
            raise errors.InputError(f"--weights {args.weights}: the preset {kind} trains from scratch here; "
                                    "use --weights none")
        return Plan(kind, None, size, options, "none")
    if args.backbone is None:
        raise errors.InputError(f"--detector {kind} needs --backbone NAME (a registered classifier, see "
                                "`lightnets list`)")
    if args.backbone not in list_models():
        raise errors.InputError(f"--backbone must be a registered classifier name (see `lightnets list`); received "
                                f"{args.backbone!r}")
    size = args.input_size or DEFAULT_SIZE[kind]
    if size < MIN_INPUT:
        raise errors.InputError(f"--input-size must be at least {MIN_INPUT}; received {size}")
    weights = args.weights or "imagenet"
    if weights == "imagenet" and "imagenet" not in model_config(args.backbone).weights:
        raise errors.InputError(f"backbone {args.backbone!r} has no ImageNet weights; use --weights none (or auto)")
    return Plan(kind, args.backbone, size, options, weights)


def _fraction(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    if not 0.0 < value < 1.0:
        raise errors.InputError(f"--validation as a fraction must be in (0, 1); received {text!r}")
    return value


def _hold_out(data, fraction: float, seed: int):
    """``(train, validation)``: a seeded ``fraction`` of ``data``'s images held out (at least one,
    none when fewer than two images); the readers' drop counts stay with the training part."""
    from keras_lightnets.data.detection_sources import DetectionData

    count = len(data)
    held = min(count - 1, max(1, round(count * fraction))) if count >= 2 else 0
    if held == 0:
        return data, None
    order = np.random.default_rng(seed).permutation(count)
    keep, out = sorted(order[held:].tolist()), sorted(order[:held].tolist())

    def part(indices, dropped, what):
        return DetectionData(examples=tuple(data.examples[i] for i in indices), class_names=data.class_names,
                             dropped=dropped, source=f"{data.source} ({what})")

    return part(keep, data.dropped, "training part"), part(out, {}, f"{fraction:g} held out, seed {seed}")


def read_data(args: argparse.Namespace, say):
    """``(train, validation or None)`` ``DetectionData`` of ``--data`` / ``--validation``, reported."""
    kind = _detect.source_kind(args.data)
    names = _detect.parse_class_names(args.classes)
    if names is not None and kind in ("digits", "tfds"):
        raise errors.InputError(f"--classes applies to VOC and COCO data; {args.data!r} names its own classes")
    common = {"limit": args.limit, "data_dir": args.data_dir}
    train = _detect.read_split(args.data, args.split, "train", class_names=names, **common)
    choice = args.validation or ("validation" if kind == "digits" else DEFAULT_HOLD_OUT)
    fraction = None if choice == "none" else _fraction(choice)
    validation = None
    if fraction is not None:
        train, validation = _hold_out(train, fraction, args.seed)
    elif choice != "none":
        validation = _detect.read_split(args.data, choice, "validation", option="--validation",
                                        class_names=None if kind in ("digits", "tfds") else train.class_names,
                                        **common)
    _detect.report_data(train, "training data", say)
    if validation is not None and _detect.box_count(validation) == 0:
        warnings.warn(f"validation data ({validation.source}) has no boxes; the training figures stand in",
                      stacklevel=2)
        validation = None
    if validation is not None:
        _detect.report_data(validation, "validation data", say)
    return train, validation


def _check_resume(args: argparse.Namespace, spec) -> None:
    """With ``--resume``: the run's ``detector.json`` (when there is one) must describe ``spec``."""
    from keras_lightnets.training.detector_record import RECORD_NAME, read_detector_record

    record = Path(args.output) / RECORD_NAME
    if not (args.resume and record.is_file()):
        return
    saved = dataclasses.replace(read_detector_record(record), preprocessing=None)
    if saved != spec:
        differs = {f.name: (getattr(saved, f.name), getattr(spec, f.name)) for f in dataclasses.fields(spec)
                   if getattr(saved, f.name) != getattr(spec, f.name)}
        raise errors.InputError(f"--resume: the run in {args.output!r} was made with other arguments {differs} "
                                f"(saved, now); use the run's arguments or replace it with --overwrite")


# --------------------------------------------------------------------------- the run


def _build(spec, weights: str, say):
    """``(detector, backbone weights used or None)``; ``"auto"``: ImageNet only when cached."""
    from keras_lightnets.models.registry import model_config
    from keras_lightnets.weights import download

    if weights == "auto":
        if spec.backbone is not None and "imagenet" in model_config(spec.backbone).weights:
            try:
                with download.offline():
                    return spec.build(backbone_weights="imagenet"), "imagenet"
            except download.NotCachedError:
                say(f"no ImageNet weights of {spec.backbone} offline: the backbone starts from scratch")
        weights = "none"
    used = None if weights == "none" else weights
    return spec.build(backbone_weights=used), used


def _arrays(data, size: int, option: str):
    from keras_lightnets.data.detection_sources import to_arrays

    try:
        return to_arrays(data, size)
    except errors.InputError as err:
        raise errors.InputError(f"{option}: {errors.one_line(err)}") from None


def run(args: argparse.Namespace) -> int:
    """Train as ``args`` say; prints the best model's path (and its figures unless ``--quiet``)."""
    from keras_lightnets.cli.console import native_logs_hidden
    from keras_lightnets.training.detector_record import RECORD_NAME, DetectorSpec, num_classes_for
    from keras_lightnets.training.run_folder import check_output_dir

    say = _detect.progress(args.quiet)

    plan = detector_plan(args)
    try:
        check_output_dir(args.output, resume=args.resume, overwrite=args.overwrite)
    except errors.InputError as err:
        raise errors.InputError(f"--output: {errors.one_line(err)}") from None
    with native_logs_hidden(args.quiet):
        train, validation = read_data(args, say)
        spec = DetectorSpec(plan.kind, plan.backbone, num_classes_for(plan.kind, len(train.class_names)),
                            (plan.input_size, plan.input_size),
                            tuple(train.class_names), plan.options)
        _check_resume(args, spec)
        from keras_lightnets.training.detection import fit_detector  # TensorFlow from here on

        train_arrays = _arrays(train, plan.input_size, "--data")
        validation_arrays = None if validation is None else _arrays(validation, plan.input_size, "--validation")
        detector, used = _build(spec, plan.weights, say)
        record = detector.detector_spec.as_record(training={
            "data": _detect.data_report(train),
            "validation": None if validation is None else _detect.data_report(validation),
            "backbone_weights": used})
        result = fit_detector(
            detector, train_arrays, validation_arrays, epochs_frozen=args.epochs,
            epochs_unfrozen=args.fine_tune_epochs, unfreeze_blocks=args.unfreeze_blocks,
            backbone_pretrained=used is not None, learning_rate=args.learning_rate,
            fine_tune_learning_rate=args.fine_tune_learning_rate, schedule=args.schedule, optimizer=args.optimizer,
            warmup_epochs=args.warmup_epochs, batch_size=args.batch_size, output_dir=args.output,
            resume=args.resume, overwrite=args.overwrite, augmentation=None if args.no_augment else "default",
            seed=args.seed, time_budget=args.time_budget, box_weight=args.box_weight, clipnorm=args.clipnorm,
            preprocessing=detector.detector_spec.preprocessing, quiet=args.quiet, run_files={RECORD_NAME: record},
        )
    record_path = Path(result.output_dir) / RECORD_NAME
    print(result.best_path if args.quiet else f"best validation foreground accuracy {result.best_val_accuracy:.4f} "
          f"(epoch {result.best_epoch} of {result.epochs}); model: {result.best_path}; record: {record_path}")
    return 0


def error_hint(args: argparse.Namespace, err: BaseException) -> str:
    """What to try when the backbone's ImageNet weights could not be downloaded."""
    if args.weights in (None, "imagenet") and isinstance(err, OSError) and "download" in errors.one_line(err):
        return " (offline? use --weights auto or none)"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m keras_lightnets.cli.detect_train ...`` (the same as ``lightnets detect train``)."""
    return command.main(sys.modules[__name__], argv, prog=f"{command.PROGRAM} detect train")


if __name__ == "__main__":
    sys.exit(main())
