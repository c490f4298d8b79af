"""The ``lightnets`` command: ``list``, ``info``, ``train``, ``compress``, ``export``, ``bench``, ``demo``.

Each subcommand beyond ``list``/``info`` lives in its own module with
``add_arguments(parser)`` and ``run(args) -> int``.

Exit codes: 0 success, 2 bad input (arguments, files, folders, numbers:
``errors.InputError``), 1 a failure while working; errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import warnings
from collections.abc import Iterator, Sequence


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"lightnets: error: {message}\n")


def _table(rows: list[dict], columns: Sequence[str]) -> str:
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns), "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def registry_rows(pattern: str = "*") -> list[dict]:
    """One row of facts per registered model matching ``pattern``."""
    from keras_lightnets import list_models, model_config

    rows = []
    for name in list_models(pattern):
        config = model_config(name)
        rows.append({
            "name": name,
            "params": f"{config.params:,}",
            "MACs (M)": f"{config.macs / 1e6:.1f}",
            "input": config.input_size,
            "top-1": "-" if config.top1 is None else f"{config.top1:.1f}",
            "weights": ",".join(config.weights) or "-",
        })
    return rows


def _cmd_list(args) -> int:
    rows = registry_rows(args.pattern)
    if not rows:
        print(f"lightnets: error: no model matches {args.pattern!r}", file=sys.stderr)
        return 2
    print(_table(rows, list(rows[0])))
    return 0


def _cmd_info(args) -> int:
    from keras_lightnets import model_config
    from keras_lightnets.models.registry import weight_sources

    try:
        config = model_config(args.name)
        sources = weight_sources(args.name)
    except ValueError as err:
        print(f"lightnets: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({**config.as_dict(), "weight_files": sources}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``lightnets`` parser with every subcommand (usage errors exit 2 with one line)."""
    from keras_lightnets import __version__

    parser = _Parser(prog="lightnets", description="Lightweight image classifiers for Keras.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = commands.add_parser("list", help="list registered models")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'mobilenet_v3*'")
    p.set_defaults(run=_cmd_list)
    p = commands.add_parser(
        "info", help="facts of one model as JSON, with its weight files (URL, license) and notes"
    )
    p.add_argument("name", help="registered model name (see `lightnets list`)")
    p.set_defaults(run=_cmd_info)
    from keras_lightnets.cli import bench, compress, demo, export, train

    for name, module, text in (
        ("train", train, "fine-tune a registry model on digits, an image folder or a TFDS dataset"),
        ("compress", compress, "prune and/or quantization-aware train a model"),
        ("export", export, "convert a model to TensorFlow Lite (also tools/convert_tflite.py)"),
        ("bench", bench, "parameters, MACs, Keras and LiteRT latency and size, vs keras.applications"),
        ("demo", demo, "train on the bundled digits, export float/int8/pruned int8 TFLite, report"),
    ):
        p = commands.add_parser(name, help=text)
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` for the command line: ``lightnets: warning: <message>`` on one
    line of stderr (no file path, source line or category)."""
    text = " ".join(str(message).split())
    if category.__name__ != "SkippedFilesWarning" and text.startswith("`shuffle=True` was passed"):
        return  # Keras' note that a tf.data dataset shuffles itself: it does, on purpose
    print(f"lightnets: warning: {text}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def native_logs_hidden(quiet: bool) -> Iterator[None]:
    """While working: hide TensorFlow's (and LiteRT's) C++ log lines.

    Not ``quiet``: TensorFlow's info and warning lines are hidden unless
    ``$TF_CPP_MIN_LOG_LEVEL`` says otherwise. ``quiet``: all native output to stderr is,
    since TensorFlow 2.21, its converter and LiteRT write some lines (oneDNN, CUDA probing,
    "absl::InitializeLog", "fully_quantize", "Created TensorFlow Lite XNNPACK delegate")
    whatever the level: file descriptor 2 points at ``os.devnull`` and Python's
    ``sys.stderr`` (errors, warnings) keeps writing where stderr went before.
    """
    if not quiet:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        yield
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    python_stderr = sys.stderr
    python_stderr.flush()
    try:
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    except OSError:  # no usable stderr: nothing to hide
        yield
        return
    try:
        own_fd = python_stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # a captured or replaced stream: it does not use fd 2
        own_fd = False
    stream = open(saved, "w", buffering=1, encoding=getattr(python_stderr, "encoding", None) or "utf-8",  # noqa: SIM115
                  errors="backslashreplace", closefd=False) if own_fd else None
    try:
        if stream is not None:
            sys.stderr = stream
        os.dup2(devnull, 2)
        yield
    finally:
        if stream is not None:
            stream.flush()
            sys.stderr = python_stderr
            stream.close()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lightnets`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = one_line_warning
            return args.run(args)
    except KeyboardInterrupt:
        print("lightnets: interrupted", file=sys.stderr)
        return 1
    except Exception as err:  # one line, not a traceback; 2 for bad input, 1 for a failure while working
        from keras_lightnets import errors

        kind = "" if isinstance(err, errors.InputError) else f"{type(err).__name__}: "
        print(f"lightnets: error: {kind}{errors.one_line(err)}", file=sys.stderr)
        return errors.exit_code(err)


if __name__ == "__main__":
    sys.exit(main())
