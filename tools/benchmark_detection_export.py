#!/usr/bin/env python
"""Detector export figures on the bundled digit scenes: a detector trained from scratch (default:
the detection benchmark's SSDLite-MobileNetV2 recipe), then its float, int8 PTQ and int8 QAT
``.tflite`` files (TFLite_Detection_PostProcess at the end) measured with LiteRT: mAP@.5 against the
float Keras model, box agreement, size and latency.

A thin wrapper over ``keras_lightnets.pipelines.detection_export_bench``: parses the options, pins
TensorFlow's threads, writes ``OUTPUT/detection_export.md``, ``.json`` and ``.png`` and prints the
table. ``python tools/benchmark_detection_export.py --help`` lists the options. Example::

    python tools/benchmark_detection_export.py --output bench-output/detection_export --threads 2
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

try:
    from keras_lightnets.cli import command
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from keras_lightnets.cli import command

from keras_lightnets.cli._args import positive_float, positive_int

DESCRIPTION = ("Detector export on the bundled digit scenes: float vs int8 PTQ vs int8 QAT .tflite files with "
               "TFLite_Detection_PostProcess, LiteRT mAP, size and latency.")
INTERRUPTED = ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from keras_lightnets.pipelines.detection_bench import DEFAULT_RECIPES
    from keras_lightnets.pipelines.detection_export_bench import VARIANTS, DetectionExportBenchmark

    defaults = DetectionExportBenchmark()
    parser.add_argument("--output", default=defaults.output, help="report folder (and the detector's run)")
    parser.add_argument("--detector", choices=[r.name for r in DEFAULT_RECIPES], default=defaults.recipe.name,
                        help="which of the detection benchmark's recipes to train")
    parser.add_argument("--time-budget", type=positive_float, default=defaults.time_budget,
                        help="wall-clock seconds of training (stops between epochs)")
    parser.add_argument("--train-scenes", type=positive_int, default=defaults.train_scenes)
    parser.add_argument("--test-scenes", type=positive_int, default=defaults.test_scenes)
    parser.add_argument("--epochs", type=positive_int, default=None, help="override the recipe's epoch count")
    parser.add_argument("--variant", choices=VARIANTS, action="append", help="measure only this variant (repeatable)")
    parser.add_argument("--qat-epochs", type=positive_int, default=defaults.qat_epochs)
    parser.add_argument("--runs", type=positive_int, default=defaults.runs, help="timed LiteRT runs per file")
    parser.add_argument("--threads", type=positive_int, default=2,
                        help="TensorFlow intra-op threads for training (LiteRT is timed on 1 thread)")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")


def run(args: argparse.Namespace) -> int:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from keras_lightnets.pipelines import detection_export_bench as bench
    from keras_lightnets.pipelines.detection_bench import DEFAULT_RECIPES, machine_label

    recipe = next(r for r in DEFAULT_RECIPES if r.name == args.detector)
    if args.epochs is not None:
        recipe = dataclasses.replace(recipe, epochs=args.epochs)
    benchmark = bench.DetectionExportBenchmark(
        recipe=recipe, train_scenes=args.train_scenes, test_scenes=args.test_scenes, time_budget=args.time_budget,
        variants=tuple(args.variant or bench.VARIANTS), qat_epochs=args.qat_epochs, runs=args.runs,
        output=args.output, quiet=args.quiet,
    )
    figures = bench.run(benchmark)
    print(bench.write_report(figures, benchmark, machine_label(args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(command.main(sys.modules[__name__], prog=Path(__file__).name))
