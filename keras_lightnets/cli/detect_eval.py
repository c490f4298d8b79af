"""``lightnets detect eval --model RUN_DIR_OR_FILE --data SRC ...``: a trained detector's mAP and its boxes drawn.

Loads the detector with ``training.detector_record.load_detector`` (the run folder's
``best.keras`` and ``detector.json``, or a ``.keras`` file with the record in its folder), reads one split of
``--data`` (``cli._detect``; VOC and COCO boxes are named by the model's classes, so a box of
another class is an error) at the model's input size, runs ``detection.inference_model``
(``--score-threshold``, ``--iou-threshold``, ``--max-detections``) and scores the detections with
``detection.evaluation.score_detections``: COCO box mAP (pycocotools) and VOC2007 11-point
mAP@.5. Writes ``--output``/``eval.json`` (the report: model, data, thresholds, metrics) and
``--output``/``detections.png`` (the first ``--show`` images with the predicted boxes in red and
the ground truth in green, ``detection.drawing.draw_detections_grid``), both or neither.

Exit codes: 0 success, 2 bad input (a missing or garbled model or record, data without
annotations or boxes, a class the model does not know, an unusable output folder), 1 a failure
while working; each with one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from keras_lightnets import errors
from keras_lightnets.cli import _detect, command
from keras_lightnets.cli._args import natural_int, positive_int, unit_interval

HELP = "measure a trained detector's mAP on VOC, COCO, TFDS or digits data and draw its boxes"
INTERRUPTED = "; nothing written"
DESCRIPTION = ("Evaluate a detector trained by `lightnets detect train` (its run folder or .keras file): COCO mAP "
               "and VOC07 mAP@.5 on a split of --data, written to --output/eval.json, and the first --show images "
               "with predicted (red) and true (green) boxes in --output/detections.png.")
REPORT = "eval.json"
PICTURE = "detections.png"
DEFAULT_OUTPUT = "lightnets-detect-eval"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``detect eval``'s arguments to ``parser``."""
    parser.add_argument("--model", required=True, metavar="RUN_DIR_OR_FILE",
                        help="a `lightnets detect train` run folder, or a .keras file with detector.json beside it")
    _detect.add_data_arguments(parser, "eval")
    parser.add_argument("--batch-size", metavar="N", type=positive_int, default=16, help="images per batch (16)")
    _detect.add_threshold_arguments(parser, "keep detections scoring above it (default 0.05, as COCO evaluations do)")
    parser.add_argument("--show", metavar="N", type=natural_int, default=8,
                        help="images drawn in detections.png (default 8; 0: no picture)")
    parser.add_argument("--draw-threshold", metavar="F", type=unit_interval, default=0.3,
                        help="draw detections scoring at least this (default 0.3)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, metavar="DIR",
                        help=f"folder for {REPORT} and {PICTURE} (default {DEFAULT_OUTPUT})")
    parser.add_argument("--quiet", action="store_true", help="no progress lines; stdout is the report's path alone")


def _output_paths(args: argparse.Namespace) -> tuple[str, str]:
    """``(report, picture)`` in ``--output``; ``InputError`` when it is a file or would replace an input."""
    from keras_lightnets.model_files import check_outputs_spare_inputs

    folder = os.path.abspath(args.output)
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise errors.InputError(f"--output {args.output!r} exists and is not a folder")
    report, picture = os.path.join(folder, REPORT), os.path.join(folder, PICTURE)
    check_outputs_spare_inputs({"the report": report, "the picture": picture},
                               {"--model": args.model, "--data": args.data})
    return report, picture


def _truth(arrays) -> list[dict]:
    from keras_lightnets.detection import metrics

    return metrics.ground_truth_from_arrays(arrays.boxes, arrays.classes, arrays.counts)


def run(args: argparse.Namespace) -> int:
    """Evaluate as ``args`` say; prints the main figures and the written paths."""
    from keras_lightnets.cli.console import native_logs_hidden
    from keras_lightnets.files import Staging, remove_stale_temporaries

    say = _detect.progress(args.quiet)

    started = time.perf_counter()
    model_path, record_path, spec, _ = _detect.read_model(args.model)
    height, width = spec.input_size
    if height != width:
        raise errors.InputError(f"--model: the detector's input is {height}x{width}; eval reads square images only")
    report_path, picture_path = _output_paths(args)
    with native_logs_hidden(args.quiet):
        data, arrays = _detect.model_split(args.data, args.split, "eval", spec, limit=args.limit,
                                           data_dir=args.data_dir, what="test data", say=say)
        from keras_lightnets.detection.evaluation import predict_detections, score_detections
        from keras_lightnets.training.detector_record import load_detector

        say(f"loading {model_path} ({spec.kind}{f' on {spec.backbone}' if spec.backbone else ''}, "
            f"{spec.foreground_classes} classes, {height}x{width})")
        detector = load_detector(args.model)
        detections = predict_detections(detector, arrays.images, preprocessing=detector.detector_spec.preprocessing,
                                         batch_size=args.batch_size, score_threshold=args.score_threshold,
                                         iou_threshold=args.iou_threshold, max_detections=args.max_detections)
        truth = _truth(arrays)
        scores = score_detections(truth, detections, spec.class_names)
        report = {
            "model": {"path": str(model_path), "record": str(record_path), **detector.detector_spec.as_record()},
            "data": {**_detect.data_report(data), "input_size": height},
            "thresholds": {"score": args.score_threshold, "iou": args.iou_threshold,
                           "max_detections": args.max_detections},
            **scores,
            "outputs": {"report": report_path, "picture": picture_path if args.show else None},
        }
        Path(report_path).parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(os.path.dirname(report_path), recursive=False)
        with Staging() as staging:
            if args.show:
                from keras_lightnets.detection.drawing import draw_detections_grid

                shown = min(args.show, len(arrays))
                draw_detections_grid(arrays.images[:shown], detections[:shown], truth=truth[:shown],
                                     path=staging.reserve(picture_path), class_names=spec.class_names,
                                     labels=("predicted", ""), min_score=args.draw_threshold)
            report["seconds"] = round(time.perf_counter() - started, 2)
            staging.write_text(report_path, json.dumps(report, indent=1, allow_nan=False) + "\n")
    coco, voc = scores["coco"], scores["voc07"]
    if args.quiet:
        print(report_path)
        return 0

    def text(value) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    print(f"{scores['images']} images, {scores['boxes']} boxes, {scores['detections']} detections: COCO mAP@[.5:.95] "
          f"{text(coco['map'])}, mAP@.5 {text(coco['map50'])}; VOC07 mAP@.5 {text(voc['map'])}")
    print(f"wrote {report_path}")
    if args.show:
        print(f"wrote {picture_path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m keras_lightnets.cli.detect_eval ...`` (the same as ``lightnets detect eval``)."""
    return command.main(sys.modules[__name__], argv, prog=f"{command.PROGRAM} detect eval")


if __name__ == "__main__":
    sys.exit(main())
