"""``lightnets info NAME``: one model's registry facts as JSON, with its weight files (URL,
license) and notes; for a detector preset (``lightnets list --task detection``) its record,
whose ``checkpoint`` names the reference's published file. An unknown name is bad input (exit code 2)."""

from __future__ import annotations

import argparse
import json

HELP = "facts of one model as JSON, with its weight files (URL, license) and notes"
DESCRIPTION = "Print a registered model's facts as JSON, with its weight files (URL, license) and notes."
INTERRUPTED = ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``info``'s argument to ``parser``."""
    parser.add_argument("name", help="registered model name (see `lightnets list`)")


def run(args: argparse.Namespace) -> int:
    """Print the JSON; ``InputError`` for an unknown name."""
    from keras_lightnets.models.registry import model_config, weight_sources

    config = model_config(args.name)
    facts = config.as_dict()
    if facts.get("task") != "detection":
        facts["weight_files"] = weight_sources(args.name)
    print(json.dumps(facts, indent=2))
    return 0
