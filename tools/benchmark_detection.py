#!/usr/bin/env python
"""Detection figures on the bundled digit scenes: SSDLite (MobileNetV2 1.0) and RetinaNet
(ShuffleNetV2 1.0) trained from scratch under a wall-clock budget, then COCO mAP on held-out scenes.

A thin wrapper over ``keras_lightnets.pipelines.detection_bench`` (training, evaluation and the
report): parses the options, pins TensorFlow's threads, writes ``OUTPUT/detection.md``,
``OUTPUT/detection.json`` and ``OUTPUT/detection.png`` and prints the table.
``python tools/benchmark_detection.py --help`` lists the options. Example::

    python tools/benchmark_detection.py --output bench-output --threads 2
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

DESCRIPTION = ("Detection on the bundled digit scenes: SSDLite and RetinaNet from scratch under a time budget, "
               "COCO mAP on the held-out scenes.")
INTERRUPTED = ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from keras_lightnets.pipelines.detection_bench import DetectionBenchmark

    defaults = DetectionBenchmark()
    parser.add_argument("--output", default=defaults.output, help="report folder (and each detector's run)")
    parser.add_argument("--time-budget", type=positive_float, default=defaults.time_budget,
                        help="wall-clock seconds of training per detector (stops between epochs)")
    parser.add_argument("--train-scenes", type=positive_int, default=defaults.train_scenes)
    parser.add_argument("--validation-scenes", type=positive_int, default=defaults.validation_scenes)
    parser.add_argument("--test-scenes", type=positive_int, default=defaults.test_scenes)
    parser.add_argument("--image-size", type=positive_int, default=None, help="override every recipe's input side")
    parser.add_argument("--epochs", type=positive_int, default=None, help="override every recipe's epoch count")
    parser.add_argument("--only", choices=[r.name for r in defaults.recipes], action="append",
                        help="run only this detector (repeatable)")
    parser.add_argument("--threads", type=positive_int, default=2,
                        help="TensorFlow intra-op threads (the published figures: 2)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")


def run(args: argparse.Namespace) -> int:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from keras_lightnets.pipelines import detection_bench

    recipes = [r for r in detection_bench.DEFAULT_RECIPES if not args.only or r.name in args.only]
    overrides = {k: v for k, v in (("image_size", args.image_size), ("epochs", args.epochs)) if v is not None}
    benchmark = detection_bench.DetectionBenchmark(
        recipes=tuple(dataclasses.replace(r, **overrides) for r in recipes), train_scenes=args.train_scenes,
        validation_scenes=args.validation_scenes, test_scenes=args.test_scenes, time_budget=args.time_budget,
        seed=args.seed, output=args.output, quiet=args.quiet,
    )
    figures = detection_bench.run(benchmark)
    print(detection_bench.write_report(figures, benchmark, detection_bench.machine_label(args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(command.main(sys.modules[__name__], prog=Path(__file__).name))
