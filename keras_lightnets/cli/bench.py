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

Wiring, in ``keras_lightnets.cli.build_parser``::

    p = commands.add_parser("bench", help="latency/size of models vs their keras.applications twins")
    bench.add_arguments(p)
    p.set_defaults(run=bench.run)
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from keras_lightnets import errors
from keras_lightnets.cli._args import positive_int
from keras_lightnets.pipelines import bench

PROG = "lightnets bench"
DEFAULT_MODELS = ("mobilenet_v2_035", "mobilenet_v3_small_100", "shufflenet_v2_x0_5", "squeezenet1_1",
                  "mnasnet_b1_050")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"lightnets: error: {message}\n")


DESCRIPTION = ("Benchmark registry models against their keras.applications twins: parameters, MACs, Keras and "
               "LiteRT latency and file size; writes bench.md, bench.png and bench.json.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``bench``'s arguments to ``parser`` (the subcommand's parser or a stand-alone one; one
    without a description gets ``DESCRIPTION``)."""
    parser.description = parser.description or DESCRIPTION
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


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """A stand-alone parser (for ``tools/benchmark.py``); usage errors exit 2 with one line."""
    parser = _Parser(prog=prog, description=DESCRIPTION)
    add_arguments(parser)
    return parser


def _error(message: str) -> None:
    print(f"lightnets: error: {' '.join(str(message).split())}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Carry out parsed arguments: benchmark, write the report, print the Markdown table."""
    say: Callable[[str], None] = (
        (lambda line: None) if args.quiet else (lambda line: print(f"{PROG}: {line}", file=sys.stderr, flush=True))
    )
    if args.all and args.names:
        _error("give model names or --all, not both")
        return 2
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        _error(f"--output {args.output!r} exists and is not a folder")
        return 2
    try:
        from keras_lightnets.models.registry import list_models

        names = bench.resolve_names(list_models() if args.all else (args.names or DEFAULT_MODELS))
    except ValueError as err:
        _error(err)
        return 2
    from keras_lightnets.cli import native_logs_hidden

    try:
        with native_logs_hidden(args.quiet):
            rows = bench.benchmark_models(
                names, input_size=args.input_size, threads=args.threads, runs=args.runs, twins=not args.no_twins,
                output_dir=os.path.join(args.output, "tflite") if args.keep_tflite else None, progress=say,
            )
            machine = bench.describe_machine()
            label = bench.machine_label(args.threads, rows[0].keras_threads if rows else None, machine)
            paths = bench.write_report(rows, args.output, machine, label)
    except KeyboardInterrupt:
        _error("interrupted; no report written")
        return 1
    except Exception as err:  # 2 for bad input (errors.InputError), 1 for a failure while working
        _error(errors.one_line(err) if isinstance(err, errors.InputError) else f"{type(err).__name__}: {err}")
        return errors.exit_code(err)
    print(bench.markdown_table(rows, label), end="", flush=True)
    for path in paths.values():
        say(f"wrote {path}")
    failed = [r.name for r in rows if r.error]
    if failed:
        _error(f"{len(failed)} of {len(rows)} model(s) had failed stages (see the Errors section of "
               f"{paths['markdown']}): {', '.join(failed)}")
        return 1
    return 0


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run; returns the exit code."""
    try:
        args = build_parser(prog).parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return run(args)
