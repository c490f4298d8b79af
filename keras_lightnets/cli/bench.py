"""``lightnets bench [NAMES...]``: latency, size and MACs of registry models vs their
``keras.applications`` twins (see ``keras_lightnets.pipelines.bench``); also ``tools/benchmark.py``.

Writes ``OUTPUT/bench.md`` (the Markdown table, also printed on stdout),
``OUTPUT/bench.png`` (latency vs top-1, size vs latency) and ``OUTPUT/bench.json``,
all or none. Progress lines go to stderr (one when a model starts, one with its
numbers) unless ``--quiet``. Exit codes: 0 success; 2 bad arguments or an unknown
model name; 1 a failure, including a stage of one of our models that failed (the
files are still written, the failure is in their Errors section). A twin that fails
is reported in the table and does not change the exit code. Errors are one line on
stderr. TensorFlow is imported only after the arguments are checked.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from keras_lightnets import errors
from keras_lightnets.cli import command
from keras_lightnets.cli._args import positive_int
from keras_lightnets.pipelines import bench

PROG = f"{command.PROGRAM} bench"
DEFAULT_MODELS = ("mobilenet_v2_035", "mobilenet_v3_small_100", "shufflenet_v2_x0_5", "squeezenet1_1",
                  "mnasnet_b1_050")
HELP = "parameters, MACs, Keras and LiteRT latency and size, vs keras.applications"
INTERRUPTED = "; no report written"
DESCRIPTION = ("Benchmark registry models against their keras.applications twins: parameters, MACs, Keras and "
               "LiteRT latency and file size; writes bench.md, bench.png and bench.json.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``bench``'s arguments to ``parser`` (the subcommand's parser or a stand-alone one)."""
    parser.add_argument(
        "names", nargs="*", metavar="NAME",
        help=f"registry names or shell patterns (`lightnets list`); default: {' '.join(DEFAULT_MODELS)}",
    )
    parser.add_argument("--all", action="store_true", help="benchmark every registered model")
    parser.add_argument("--input-size", type=positive_int, default=None, metavar="PX",
                        help="square input side in pixels (default: each model's own, 224)")
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="LiteRT threads, also asked of TensorFlow for the Keras timings (default 1)")
    parser.add_argument("--runs", type=positive_int, default=bench.DEFAULT_RUNS,
                        help=f"timed runs behind each median (default {bench.DEFAULT_RUNS})")
    parser.add_argument("--no-twins", action="store_true", help="skip the keras.applications twins")
    parser.add_argument("--output", default="bench-output", metavar="DIR",
                        help="folder for bench.md, bench.png and bench.json (default bench-output)")
    parser.add_argument("--keep-tflite", action="store_true", help="keep the converted files in DIR/tflite/")
    parser.add_argument("--quiet", action="store_true", help="no progress lines or TensorFlow log lines on stderr")


def check_arguments(args: argparse.Namespace) -> list[str]:
    """The registry names to benchmark; ``InputError`` naming the first unusable argument."""
    from keras_lightnets.models.registry import list_models

    if args.all and args.names:
        raise errors.InputError("give model names or --all, not both")
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise errors.InputError(f"--output {args.output!r} exists and is not a folder")
    return bench.resolve_names(list_models() if args.all else (args.names or DEFAULT_MODELS))


def run(args: argparse.Namespace) -> int:
    """Benchmark, write the report, print the Markdown table; 1 (reported here) when a stage of
    one of our models failed."""
    names = check_arguments(args)
    say: Callable[[str], None] = (
        (lambda line: None) if args.quiet else (lambda line: print(f"{PROG}: {line}", file=sys.stderr, flush=True))
    )
    from keras_lightnets.cli.console import native_logs_hidden

    with native_logs_hidden(args.quiet):
        rows = bench.benchmark_models(
            names, input_size=args.input_size, threads=args.threads, runs=args.runs, twins=not args.no_twins,
            output_dir=os.path.join(args.output, "tflite") if args.keep_tflite else None, progress=say,
        )
        machine = bench.describe_machine()
        label = bench.machine_label(args.threads, rows[0].keras_threads if rows else None, machine)
        paths = bench.write_report(rows, args.output, machine, label)
    print(bench.markdown_table(rows, label), end="", flush=True)
    for path in paths.values():
        say(f"wrote {path}")
    failed = [r.name for r in rows if r.error]
    if failed:
        command.report_error(command.PROGRAM, f"{len(failed)} of {len(rows)} model(s) had failed stages (see the "
                                              f"Errors section of {paths['markdown']}): {', '.join(failed)}")
        return errors.EXIT_FAILURE
    return 0


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run; returns the exit code. Errors name
    ``lightnets`` whatever ``prog`` (``tools/benchmark.py`` passes its own for the usage line)."""
    return command.main(sys.modules[__name__], argv, prog=prog, name=command.PROGRAM)
