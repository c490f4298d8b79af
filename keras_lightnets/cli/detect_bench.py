"""``lightnets detect bench --model RUN [--data SRC] [--output DIR]``: a detector's float and int8 files compared.

Loads the detector of a ``lightnets detect train`` run and makes two TensorFlow Lite files of it,
both ending with TFLite's ``TFLite_Detection_PostProcess`` (regular NMS, score > 0.05, IoU 0.5, 100
detections): ``float`` (float32) and ``int8_ptq`` (full int8, post-training quantization
calibrated on ``--calibration`` images of ``--data``'s training split). Each is measured as
``pipelines.detection_export_bench.measure_variant`` measures the benchmark's variants: COCO
mAP@.5 and mAP@[.5:.95] of its LiteRT detections on ``--samples`` test images, the Keras
detector's mAP@.5 with the same thresholds, the box agreement of the two (``export.verify_tflite``),
file size, LiteRT latency (``export.benchmark_tflite``: median of ``--runs`` invokes on
``--threads`` threads, batch 1, in a child process) and the ops XNNPACK leaves to TFLite's own
kernels. ``--data`` defaults to ``digits`` for a detector trained on digits; other detectors need
it (calibration and mAP both need images of the detector's classes).

Writes ``--output``/``bench.json`` (settings, data, every figure), ``bench.md`` (the table, also
printed on stdout), ``float.tflite`` and ``int8_ptq.tflite``, all or none. Exit codes: 0 success, 2
bad input (a missing or garbled model or record, no usable ``--data``, classes the model does not
know, an output path that is a file), 1 a failure while working; each with one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from keras_lightnets import errors
from keras_lightnets.cli import _detect, command
from keras_lightnets.cli._args import positive_int
from keras_lightnets.export import MAX_REPRESENTATIVE_SAMPLES
from keras_lightnets.export.delegation import format_op_counts

HELP = "compare a trained detector's float and int8 TFLite files: LiteRT mAP, size, latency, XNNPACK coverage"
INTERRUPTED = "; nothing written"
DESCRIPTION = ("Convert a detector trained by `lightnets detect train` to float32 and int8 (post-training "
               "quantization) TensorFlow Lite files and measure both with LiteRT: mAP on test images of --data, "
               "file size, latency and XNNPACK coverage. Writes --output/bench.json, bench.md (also printed) and "
               "the two files.")
VARIANTS = ("float", "int8_ptq")  # pipelines.detection_export_bench's names
FILES = {"json": "bench.json", "markdown": "bench.md"}
DEFAULT_OUTPUT = "lightnets-detect-bench"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``detect bench``'s arguments to ``parser``."""
    parser.add_argument("--model", required=True, metavar="RUN_DIR_OR_FILE",
                        help="a `lightnets detect train` run folder, or a .keras file with detector.json beside it")
    _detect.add_image_arguments(parser, "mAP")
    parser.add_argument("--calibration", metavar="N", type=positive_int, default=MAX_REPRESENTATIVE_SAMPLES,
                        help=f"int8 calibration images (default and at most {MAX_REPRESENTATIVE_SAMPLES})")
    parser.add_argument("--samples", metavar="N", type=positive_int, default=100,
                        help="test images the mAP is measured on (default 100)")
    parser.add_argument("--threads", metavar="N", type=positive_int, default=1, help="LiteRT threads (default 1)")
    parser.add_argument("--runs", metavar="N", type=positive_int, default=50,
                        help="timed invokes per file (default 50)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, metavar="DIR",
                        help=f"folder for bench.json, bench.md and the .tflite files (default {DEFAULT_OUTPUT})")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def output_paths(args: argparse.Namespace, inputs: dict[str, str | None]) -> dict[str, str]:
    """``{"json", "markdown", <variant>...: path}`` in ``--output``; ``InputError`` when it is a
    file or one of them would replace an input."""
    from keras_lightnets.model_files import check_outputs_spare_inputs

    folder = os.path.abspath(args.output)
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise errors.InputError(f"--output {args.output!r} exists and is not a folder")
    paths = {key: os.path.join(folder, name) for key, name in FILES.items()}
    paths.update({name: os.path.join(folder, f"{name}.tflite") for name in VARIANTS})
    check_outputs_spare_inputs(paths, inputs)
    return paths


def markdown(report: dict[str, Any]) -> str:
    """``bench.md``: what was measured, then one row per file."""
    data, settings, model = report["data"], report["settings"], report["model"]
    detector = model["kind"] + (f" on {model['backbone']}" if model["backbone"] else "")
    lines = [
        f"# {detector} ({model['input_size'][0]} px): float vs int8 TFLite", "",
        f"Model: `{model['path']}`. mAP (COCO) on {data['test']['images']} test images of "
        f"`{data['test']['source']}`; int8 calibrated on {data['calibration']['images']} images of "
        f"`{data['calibration']['source']}`. Files end with TFLite_Detection_PostProcess (regular NMS, score > 0.05, "
        f"IoU 0.5, 100 detections). LiteRT (XNNPACK) latency: median of {settings['runs']} runs, "
        f"{settings['threads']} thread(s), batch 1. Box agreement: share of the Keras detector's detections "
        "(score >= 0.5) the file reproduces (same class, IoU >= 0.9).", "",
        "| file | LiteRT mAP@.5 | Keras mAP@.5 | LiteRT mAP@[.5:.95] | box agreement | size (KiB) | size vs float | "
        "latency (ms) | XNNPACK partitions | ops outside XNNPACK |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    base = report["variants"].get("float")
    for name, v in report["variants"].items():
        ratio = f"{v['size_bytes'] / base['size_bytes']:.3f}x" if base else "-"
        lines.append(f"| {name} | {v['tflite_map50']:.3f} | {v['keras_map50']:.3f} | {v['tflite_map']:.3f} | "
                     f"{v['box_agreement']:.3f} | {v['size_bytes'] / 1024:.1f} | {ratio} | {v['latency_ms']:.2f} | "
                     f"{v['delegate_partitions']} | {format_op_counts(v['ops_outside_delegate'])} |")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Make and measure both files as ``args`` say, writing every output or none; prints the table."""
    from keras_lightnets.cli.console import native_logs_hidden
    from keras_lightnets.files import Staging, remove_stale_temporaries

    say = _detect.progress(args.quiet)

    started = time.perf_counter()
    model_path, record_path, spec, document = _detect.read_model(args.model)
    source = _detect.image_source(args.data, document)
    if source is None:
        trained = _detect.training_source(document)
        raise errors.InputError("bench needs --data: test images for mAP and calibration images for int8, of the "
                                f"detector's classes{f' (it was trained on {trained})' if trained else ''}")
    paths = output_paths(args, {"--model": str(model_path), "the record": str(record_path), "--data": args.data})
    with native_logs_hidden(args.quiet):
        calibration = _detect.model_split(source, args.calibration_split, "train", spec,
                                          limit=min(args.calibration, MAX_REPRESENTATIVE_SAMPLES),
                                          data_dir=args.data_dir, what="calibration data", say=say)
        test = _detect.model_split(source, args.test_split, "eval", spec, limit=args.samples,
                                   data_dir=args.data_dir, what="test data", say=say)
        from keras_lightnets.detection.evaluation import detector_inputs
        from keras_lightnets.pipelines.detection_export_bench import DetectionExportBenchmark, measure_variant
        from keras_lightnets.training.detector_record import load_detector

        say(f"loading {model_path}")
        detector = load_detector(args.model)
        preprocessing = detector.detector_spec.preprocessing
        calibration_inputs = detector_inputs(calibration[1].images, preprocessing)
        test_inputs = detector_inputs(test[1].images, preprocessing)
        settings = DetectionExportBenchmark(variants=VARIANTS, calibration=len(calibration_inputs),
                                            threads=args.threads, runs=args.runs, output=args.output,
                                            quiet=args.quiet)
        folder = os.path.dirname(paths["json"])
        if os.path.isdir(folder):
            remove_stale_temporaries(folder, recursive=False)
        report: dict[str, Any] = {
            "model": {"path": str(model_path), "record": str(record_path), **detector.detector_spec.as_record()},
            "data": {"source": source, "calibration": _detect.data_report(calibration[0]),
                     "test": _detect.data_report(test[0])},
            "settings": {"threads": args.threads, "runs": args.runs, "postprocess": "regular"},
            "variants": {},
        }
        with Staging() as staging:
            for name in VARIANTS:
                say(f"{name}: converting, verifying on {len(test_inputs)} test images, timing ...")
                figures = measure_variant(name, detector, staging.reserve(paths[name]), calibration_inputs,
                                          test_inputs, test[1], settings)
                figures.path = paths[name]
                report["variants"][name] = asdict(figures)
                say(f"{name}: LiteRT mAP@.5 {figures.tflite_map50:.4f} (Keras {figures.keras_map50:.4f}), "
                    f"{figures.size_bytes / 1024:.1f} KiB, {figures.latency_ms:.2f} ms")
            report["outputs"] = dict(paths)
            report["seconds"] = round(time.perf_counter() - started, 2)
            text = markdown(report)
            staging.write_text(paths["markdown"], text)
            staging.write_text(paths["json"], json.dumps(report, indent=1, allow_nan=False, default=str) + "\n")
    print(text, end="")
    for key in (*FILES, *VARIANTS):
        print(f"wrote {paths[key]}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m keras_lightnets.cli.detect_bench ...`` (the same as ``lightnets detect bench``)."""
    return command.main(sys.modules[__name__], argv, prog=f"{command.PROGRAM} detect bench")


if __name__ == "__main__":
    sys.exit(main())
