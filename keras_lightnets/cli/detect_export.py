"""``lightnets detect export --model RUN --output OUT.tflite ...``: a trained detector as a TensorFlow Lite file.

Loads the detector of a ``lightnets detect train`` run (``training.detector_record.load_detector``)
and converts it with ``export.to_tflite``: ``--quantization`` none (float32), float16, dynamic or
int8 (everything int8 up to the post-processing; calibrated on ``--calibration`` images of
``--data``'s training split), ``--postprocess`` regular or fast (the file ends with TFLite's
``TFLite_Detection_PostProcess`` and outputs boxes, classes, scores and count in the TF Object
Detection API's order) or raw (the class logits and box deltas). ``--verify`` runs the file with
LiteRT beside the Keras detector on ``--verify-samples`` test images of ``--data``
(``export.verify_tflite``: box agreement, COCO mAP of both) and draws the first ones with both
sets of boxes and the ground truth. Images are scaled as the detector takes them
(``detection.evaluation.detector_inputs`` with the record's preprocessing). ``--data`` defaults to
``digits`` for a detector trained on digits.

Writes, all or none (``files.Staging``):

* ``OUT.tflite``;
* ``OUT.labels.txt``: the foreground class names, one a line, in class-id order (the file's
  ``detection_classes`` index them);
* ``OUT.json``: the report: ``model`` (the run's record), ``data``, ``export`` (``ExportReport``:
  ops, float ops, XNNPACK coverage, the post-processing settings), ``verify``
  (``DetectionVerifyReport`` or null) and ``metadata``, what an app needs beside the file
  (``export.detection_metadata``: input size and normalisation, labels, outputs in order, box
  format, box coding and the anchors);
* with ``--verify``, ``OUT.verify.png``: Keras boxes (red, left) and LiteRT boxes (blue, right)
  of the first test images, ground truth in green (``detection.drawing.draw_detections_grid``).

Exit codes: 0 success, 2 bad input (a missing or garbled model or record, an unknown option
value, int8 or ``--verify`` without data, a data folder without annotations or boxes, classes
the model does not know, an unusable output path), 1 a failure while working; each with one
line on stderr. TensorFlow is imported only after these checks.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from keras_lightnets import errors
from keras_lightnets.cli import _detect, command
from keras_lightnets.cli._args import positive_int
from keras_lightnets.export import MAX_REPRESENTATIVE_SAMPLES, POSTPROCESS_MODES, QUANTIZATION_MODES
from keras_lightnets.export.delegation import format_op_counts

HELP = "convert a trained detector to TensorFlow Lite (float or int8, with its post-processing), verify it"
INTERRUPTED = "; nothing written"
DESCRIPTION = ("Convert a detector trained by `lightnets detect train` (its run folder or .keras file) to TensorFlow "
               "Lite, optionally full int8 and ending with TFLite_Detection_PostProcess; --verify compares it with "
               "the Keras detector on test images. Writes OUT.tflite, OUT.labels.txt, OUT.json (report and app "
               "metadata) and, with --verify, OUT.verify.png.")
SHOWN = 8  # test images drawn in OUT.verify.png


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``detect export``'s arguments to ``parser``."""
    parser.add_argument("--model", required=True, metavar="RUN_DIR_OR_FILE",
                        help="a `lightnets detect train` run folder, or a .keras file with detector.json beside it")
    parser.add_argument("--output", required=True, metavar="OUT.tflite",
                        help="the file to write (in an existing folder); OUT.labels.txt, OUT.json and "
                             "OUT.verify.png go beside it")
    parser.add_argument("-q", "--quantization", choices=QUANTIZATION_MODES, default="none",
                        help="none (float32), float16 (weights), dynamic (int8 weights), int8 (everything int8 up to "
                             "the post-processing, int8 input; calibrated on --data). Default: none")
    parser.add_argument("--postprocess", choices=POSTPROCESS_MODES, default="regular",
                        help="regular: the file ends with TFLite_Detection_PostProcess, per-class NMS (outputs "
                             "boxes, classes, scores, count); fast: its class-agnostic NMS; raw: the class logits "
                             "and box deltas. Default: regular")
    _detect.add_threshold_arguments(parser, "the file's NMS keeps detections scoring above it (default 0.05)")
    parser.add_argument("--detections-per-class", metavar="N", type=positive_int, default=100,
                        help="regular NMS: boxes kept per class before the best --max-detections (default 100)")
    _detect.add_image_arguments(parser, "--verify")
    parser.add_argument("--calibration", metavar="N", type=positive_int, default=MAX_REPRESENTATIVE_SAMPLES,
                        help=f"int8: calibration images (default and at most {MAX_REPRESENTATIVE_SAMPLES})")
    parser.add_argument("--verify", action="store_true",
                        help="run the file with LiteRT beside the Keras detector on test images of --data: box "
                             "agreement and mAP in OUT.json, boxes drawn in OUT.verify.png")
    parser.add_argument("--verify-samples", metavar="N", type=positive_int, default=100,
                        help="test images --verify reads (default 100)")
    parser.add_argument("--threads", metavar="N", type=positive_int, default=1, help="LiteRT threads (default 1)")
    parser.add_argument("--strip-names", action="store_true",
                        help="drop tensor names from the file (a smaller file; outputs are found by index)")
    parser.add_argument("--allow-float-ops", action="store_true",
                        help="int8: keep the file even if ops before the post-processing stay in float")
    parser.add_argument("--quiet", action="store_true", help="no progress lines or warnings on stderr")


@dataclass(frozen=True)
class Outputs:
    """The files a run writes (absolute paths; ``picture`` None without ``--verify``)."""

    tflite: str
    labels: str
    report: str
    picture: str | None


def output_paths(args: argparse.Namespace, inputs: dict[str, str | None]) -> Outputs:
    """``Outputs`` of ``--output``; ``InputError`` when it is not a ``.tflite`` name in an existing
    folder, or one of the files would replace an input."""
    from keras_lightnets.model_files import check_outputs_spare_inputs

    output = os.path.abspath(args.output)
    if os.path.isdir(output):
        raise errors.InputError(f"--output {args.output!r} is a folder; give a file name ending in .tflite")
    if not output.endswith(".tflite") or output == os.path.abspath(".tflite"):
        raise errors.InputError(f"--output must be a file name ending in .tflite; received {args.output!r}")
    folder = os.path.dirname(output)
    if not os.path.isdir(folder):
        raise errors.InputError(f"--output folder {folder!r} does not exist")
    base = output[: -len(".tflite")]
    outputs = Outputs(output, f"{base}.labels.txt", f"{base}.json", f"{base}.verify.png" if args.verify else None)
    check_outputs_spare_inputs({"--output": outputs.tflite, "the labels file": outputs.labels,
                                "the report": outputs.report, "the picture": outputs.picture}, inputs)
    return outputs


def _data_needed(args: argparse.Namespace, source: str | None, document: dict[str, Any]) -> None:
    """``InputError`` when int8 or ``--verify`` has no images to read."""
    if source is not None:
        return
    trained = _detect.training_source(document)
    where = f" (it was trained on {trained})" if trained else ""
    if args.quantization == "int8":
        raise errors.InputError(f"--quantization int8 needs --data for calibration images of the detector's "
                                f"classes{where}: {_detect.DATA_FORMS}")
    if args.verify:
        raise errors.InputError(f"--verify needs --data with test images of the detector's classes{where}")


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with NaN floats as None (JSON has no NaN)."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()}


def _draw(path: str, detector, arrays, inputs, staged: str, threads: int) -> None:
    """The first ``SHOWN`` test images with Keras (a) and LiteRT (b) boxes and the ground truth."""
    from keras_lightnets.detection import metrics
    from keras_lightnets.detection.drawing import draw_detections_grid
    from keras_lightnets.detection.evaluation import predict_detections
    from keras_lightnets.export.verify_detection import file_settings, tflite_detections

    shown = min(SHOWN, len(arrays))
    _, thresholds = file_settings(staged)
    keras = predict_detections(detector, arrays.images[:shown], preprocessing=detector.detector_spec.preprocessing,
                               **thresholds)
    lite = tflite_detections(staged, detector, inputs[:shown], threads=threads)
    truth = metrics.ground_truth_from_arrays(arrays.boxes[:shown], arrays.classes[:shown], arrays.counts[:shown])
    draw_detections_grid(arrays.images[:shown], keras, lite, truth, path=path,
                         class_names=detector.detector_spec.class_names, labels=("Keras", "LiteRT"))


def _summary(report: dict[str, Any]) -> list[str]:
    export, outputs = report["export"], report["outputs"]
    detection = export["detection"]
    ending = ("raw outputs (class logits, box deltas)" if detection["postprocess"] == "raw" else
              f"TFLite_Detection_PostProcess ({detection['postprocess']} NMS, score > {detection['score_threshold']:g}"
              f", IoU {detection['iou_threshold']:g}, {detection['max_detections']} detections)")
    outside = format_op_counts(export["ops_outside_delegate"])
    lines = [f"wrote {outputs['tflite']} ({export['size_bytes'] / 1024:.1f} KiB, {export['quantization']}, input "
             f"{export['inputs'][0]['dtype']} {export['inputs'][0]['shape']}; {ending})",
             f"XNNPACK: {export['delegate_partitions']} partition(s); ops outside: {outside}"]
    if export["representative_samples"]:
        lines.append(f"calibration: {export['representative_samples']} images of "
                     f"{report['data']['calibration']['source']}")
    verify = report["verify"]
    if verify is not None:
        def text(value) -> str:
            return "n/a" if value is None else f"{value:.4f}"

        lines.append(f"verify: {verify['samples']} images of {report['data']['test']['source']}: box agreement "
                     f"{verify['box_agreement']:.3f}; mAP@.5 LiteRT {text(verify['tflite_map50'])}, Keras "
                     f"{text(verify['keras_map50'])}")
    lines += [f"wrote {outputs['labels']}", f"wrote {outputs['report']}"]
    if outputs["picture"]:
        lines.append(f"wrote {outputs['picture']}")
    return lines


def run(args: argparse.Namespace) -> int:
    """Convert (and verify) as ``args`` say, writing every output or none; prints the written paths."""
    import warnings

    from keras_lightnets.cli.console import native_logs_hidden
    from keras_lightnets.files import Staging, remove_stale_temporaries

    say = _detect.progress(args.quiet)

    started = time.perf_counter()
    model_path, record_path, spec, document = _detect.read_model(args.model)
    source = _detect.image_source(args.data, document)
    _data_needed(args, source, document)
    outputs = output_paths(args, {"--model": str(model_path), "the record": str(record_path), "--data": args.data})
    calibrate = args.quantization == "int8"
    with warnings.catch_warnings():
        if args.quiet:
            warnings.simplefilter("ignore")
        if source is not None and not (calibrate or args.verify) and args.data is not None:
            warnings.warn("--data is not used: it gives int8 calibration and --verify images", stacklevel=1)
        with native_logs_hidden(args.quiet):
            calibration = test = None
            if calibrate:
                calibration = _detect.model_split(source, args.calibration_split, "train", spec,
                                                  limit=min(args.calibration, MAX_REPRESENTATIVE_SAMPLES),
                                                  data_dir=args.data_dir, what="calibration data", say=say)
            if args.verify:
                test = _detect.model_split(source, args.test_split, "eval", spec, limit=args.verify_samples,
                                           data_dir=args.data_dir, what="test data", say=say)
            from keras_lightnets.detection.evaluation import detector_inputs
            from keras_lightnets.export import detection_metadata, to_tflite, verify_tflite
            from keras_lightnets.training.detector_record import load_detector

            say(f"loading {model_path} ({spec.kind}{f' on {spec.backbone}' if spec.backbone else ''}, "
                f"{spec.foreground_classes} classes, {spec.input_size[0]}x{spec.input_size[1]})")
            detector = load_detector(args.model)
            preprocessing = detector.detector_spec.preprocessing
            remove_stale_temporaries(os.path.dirname(outputs.tflite), recursive=False)
            with Staging() as staging:
                staged = staging.reserve(outputs.tflite)
                say(f"converting (quantization {args.quantization}, postprocess {args.postprocess}) ...")
                export = to_tflite(
                    detector, staged, args.quantization,
                    None if calibration is None else detector_inputs(calibration[1].images, preprocessing),
                    allow_float_ops=args.allow_float_ops, strip_names=args.strip_names,
                    postprocess=args.postprocess, score_threshold=args.score_threshold,
                    iou_threshold=args.iou_threshold, max_detections=args.max_detections,
                    detections_per_class=args.detections_per_class)
                export.path = outputs.tflite
                verify = None
                if test is not None:
                    say(f"verifying with LiteRT on {len(test[1])} test images ...")
                    inputs = detector_inputs(test[1].images, preprocessing)
                    verified = verify_tflite(staged, detector, inputs, ground_truth=test[1], threads=args.threads)
                    verified.path = outputs.tflite
                    verify = _finite(verified.as_dict())
                    _draw(staging.reserve(outputs.picture), detector, test[1], inputs, staged, args.threads)
                report = {
                    "model": {"path": str(model_path), "record": str(record_path),
                              **detector.detector_spec.as_record()},
                    "data": {"source": source,
                             "calibration": None if calibration is None else _detect.data_report(calibration[0]),
                             "test": None if test is None else _detect.data_report(test[0])},
                    "export": export.as_dict(),
                    "verify": verify,
                    "metadata": detection_metadata(detector, export, labels=spec.class_names),
                    "outputs": {"tflite": outputs.tflite, "labels": outputs.labels, "report": outputs.report,
                                "picture": outputs.picture},
                }
                staging.write_text(outputs.labels, "".join(f"{name}\n" for name in spec.class_names))
                report["seconds"] = round(time.perf_counter() - started, 2)
                staging.write_text(outputs.report, json.dumps(report, indent=1, allow_nan=False, default=str) + "\n")
    for line in _summary(report):
        print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m keras_lightnets.cli.detect_export ...`` (the same as ``lightnets detect export``)."""
    return command.main(sys.modules[__name__], argv, prog=f"{command.PROGRAM} detect export")


if __name__ == "__main__":
    sys.exit(main())
