"""``tools/benchmark_compression.py``: compression figures on the bundled digits (the benchmark
itself: ``keras_lightnets.pipelines.compression_bench``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from keras_lightnets.cli import command
from keras_lightnets.cli._args import natural_int, positive_int

PROG = "benchmark_compression"
HELP = "float vs int8 PTQ vs QAT vs pruned int8 on the bundled digits"
DESCRIPTION = "Compression figures on the bundled digits: float vs int8 PTQ vs int8 QAT vs pruned + QAT."
INTERRUPTED = ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from keras_lightnets.pipelines.compression_bench import CompressionBenchmark

    defaults = CompressionBenchmark()
    parser.add_argument("models", nargs="*", default=list(defaults.models), help="registry names")
    parser.add_argument("--output", default=defaults.output, help="report folder")
    parser.add_argument("--image-size", type=positive_int, default=defaults.image_size, help="pixels, square")
    parser.add_argument("--epochs", type=natural_int, default=defaults.epochs, help="frozen-phase epochs")
    parser.add_argument("--fine-tune-epochs", type=natural_int, default=defaults.fine_tune_epochs,
                        help="epochs with the top blocks unfrozen")
    parser.add_argument("--threads", type=positive_int, default=defaults.threads, help="LiteRT threads")
    parser.add_argument("--runs", type=positive_int, default=defaults.runs, help="timed runs per file")
    parser.add_argument("--variants", default=",".join(defaults.variants), help="comma-separated variant names")
    parser.add_argument("--strip-names", action="store_true",
                        help="write every .tflite without tensor names (as deployed to small devices)")


def run(args: argparse.Namespace) -> int:
    from keras_lightnets.pipelines import compression_bench
    from keras_lightnets.pipelines.bench import machine_label
    from keras_lightnets.pipelines.variants import check_variant_names

    benchmark = compression_bench.CompressionBenchmark(
        models=tuple(args.models), output=args.output, image_size=args.image_size, epochs=args.epochs,
        fine_tune_epochs=args.fine_tune_epochs, threads=args.threads, runs=args.runs,
        variants=tuple(check_variant_names(args.variants.split(","))), strip_names=args.strip_names,
    )
    figures = compression_bench.run(benchmark)
    print(compression_bench.write_report(figures, benchmark, machine_label(benchmark.threads)))
    return 0


def main(argv: Sequence[str] | None = None, *, prog: str = PROG) -> int:
    """Run as a program of its own called ``prog`` (a tool script); returns the exit code."""
    return command.main(sys.modules[__name__], argv, prog=prog)
