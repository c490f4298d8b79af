"""The ``lightnets`` command: ``list``, ``info``, ``train``, ``compress``, ``export``, ``bench``, ``demo``.

Each subcommand beyond ``list``/``info`` lives in its own module with
``add_arguments(parser)`` and ``run(args) -> int``.

Exit codes: 0 success, 2 bad input (arguments, files, folders, numbers:
``errors.InputError``), 1 a failure while working; errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"lightnets: error: {message}\n")


def _table(rows: list[dict], columns: Sequence[str]) -> str:
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns), "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


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

    try:
        config = model_config(args.name)
    except ValueError as err:
        print(f"lightnets: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(config.as_dict(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``lightnets`` parser with every subcommand (usage errors exit 2 with one line)."""
    parser = _Parser(prog="lightnets", description="Lightweight image classifiers for Keras.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = commands.add_parser("list", help="list registered models")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'mobilenet_v3*'")
    p.set_defaults(run=_cmd_list)
    p = commands.add_parser("info", help="facts of one model as JSON")
    p.add_argument("name")
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lightnets`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
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
