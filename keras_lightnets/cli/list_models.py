"""``lightnets list [PATTERN] [--task classification|detection]``: a table of the registered models
(name, parameters, MACs, input size, ImageNet top-1, weights), or of the detector presets (kind,
parameters, MACs, input size, classes, anchors, the reference's published accuracy, checkpoint).
A pattern that matches no model is bad input (exit code 2)."""

from __future__ import annotations

import argparse

from keras_lightnets import errors
from keras_lightnets.cli.console import table

HELP = "list registered models"
DESCRIPTION = "List the registered models matching a shell-style pattern, with their facts."
INTERRUPTED = ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``list``'s argument to ``parser``."""
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'mobilenet_v3*'")
    parser.add_argument("--task", choices=("classification", "detection"), default="classification",
                        help="classifiers (default) or the detector presets")


def registry_rows(pattern: str = "*") -> list[dict]:
    """One row of facts per registered model matching ``pattern`` (MACs in millions, top-1 in %)."""
    from keras_lightnets.models.registry import list_models, model_config

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


def detector_rows(pattern: str = "*") -> list[dict]:
    """One row of facts per detector preset matching ``pattern`` (MACs in millions)."""
    from keras_lightnets.detection.presets import detector_config, list_detectors

    rows = []
    for name in list_detectors(pattern):
        config = detector_config(name)
        published = config.published
        rows.append({
            "name": name, "kind": config.kind, "params": f"{config.params:,}",
            "MACs (M)": f"{config.macs / 1e6:.1f}", "input": config.input_size, "classes": config.num_classes,
            "anchors": config.anchors,
            "published": "-" if published is None else f"{published.value:.1f} {published.metric}",
            "checkpoint": "yes" if config.checkpoint else "-",
        })
    return rows


def run(args: argparse.Namespace) -> int:
    """Print the table; ``InputError`` when no model matches."""
    rows = detector_rows(args.pattern) if args.task == "detection" else registry_rows(args.pattern)
    if not rows:
        raise errors.InputError(f"no model matches {args.pattern!r}")
    print(table(rows, list(rows[0])))
    return 0
