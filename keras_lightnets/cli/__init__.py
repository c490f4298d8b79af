"""The ``lightnets`` command: ``list``, ``info`` and ``demo``.

Exit codes: 0 success, 2 bad arguments, 1 failure; errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
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


def _cmd_demo(args) -> int:
    """Print the registry, run one forward pass per model, write ``OUTPUT/registry.json``."""
    import os
    import tempfile

    import numpy as np

    from keras_lightnets import create_model, list_models, model_config

    names = list_models(args.models)
    if not names:
        print(f"lightnets: error: no model matches --models {args.models!r}", file=sys.stderr)
        return 2
    table = registry_rows(args.models)
    print(_table(table, list(table[0])))
    print("\nOne forward pass per model (random weights, batch of 1, default input size):")
    rows = []
    rng = np.random.default_rng(0)
    for name in names:
        config = model_config(name)
        model = create_model(name, weights=None)
        image = rng.uniform(0, 255, (1, *config.input_shape)).astype("float32")
        start = time.perf_counter()
        output = model.predict(image, verbose=0)
        rows.append({
            "name": name, "output": str(tuple(output.shape)),
            "sum of probabilities": f"{float(output.sum()):.4f}",
            "first call (s)": f"{time.perf_counter() - start:.2f}",
        })
        print(_table(rows[-1:], list(rows[-1])).splitlines()[-1], flush=True)
    os.makedirs(args.output, exist_ok=True)
    report = {"models": [model_config(n).as_dict() for n in names], "forward_pass": rows}
    fd, tmp = tempfile.mkstemp(dir=args.output, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(report, f, indent=1)
    os.replace(tmp, os.path.join(args.output, "registry.json"))
    print(f"\nwrote {os.path.join(args.output, 'registry.json')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lightnets", description="Lightweight image classifiers for Keras.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = commands.add_parser("list", help="list registered models")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'mobilenet_v3*'")
    p.set_defaults(run=_cmd_list)
    p = commands.add_parser("info", help="facts of one model as JSON")
    p.add_argument("name")
    p.set_defaults(run=_cmd_info)
    p = commands.add_parser("demo", help="print the registry and run every model once")
    p.add_argument("--output", default="demo-output", help="folder for registry.json")
    p.add_argument("--models", default="*", help="shell-style pattern of the models to run (default: all)")
    p.set_defaults(run=_cmd_demo)
    from keras_lightnets.cli import export, train

    p = commands.add_parser("train", help="fine-tune a registry model on digits, an image folder or a TFDS dataset")
    train.add_arguments(p)
    p.set_defaults(run=train.run)
    p = commands.add_parser("export", help="convert a model to TensorFlow Lite (also tools/convert_tflite.py)")
    export.add_arguments(p)
    p.set_defaults(run=export.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("lightnets: interrupted", file=sys.stderr)
        return 1
    except Exception as err:  # one line, not a traceback
        print(f"lightnets: error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
