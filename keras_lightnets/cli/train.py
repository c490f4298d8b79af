"""``lightnets train NAME --data SRC ...``: transfer learning of a registry model.

Writes ``best.keras``, ``history.csv``, ``history.png`` and ``checkpoints/`` to
``--output``; a folder holding a previous run is refused unless ``--resume`` or
``--overwrite``. Exit codes: 0 success, 2 bad input (arguments, data, weights or
output folder: ``errors.InputError``), 1 failure while working (including a loss
that became inf/NaN), each with one line on stderr (``lightnets: error: ...``).
Arguments, the data folder's layout and the output folder are checked before
TensorFlow is imported. Runs standalone as ``python -m keras_lightnets.cli.train NAME ...`` too.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from keras_lightnets import errors
from keras_lightnets.cli import command
from keras_lightnets.cli._args import natural_int, positive_float, positive_int

HELP = "fine-tune a registry model on digits, an image folder or a TFDS dataset"
INTERRUPTED = " (completed epochs are checkpointed; continue with --resume)"
DESCRIPTION = ("Fine-tune a registered model on an image data set (phase 1: head, base frozen; phase 2: top "
               "blocks unfrozen) and write best.keras (raw [0, 255] pixels in, preprocessing inside), "
               "history.csv/png and checkpoints/ to --output.")
WEIGHTS_HELP = (
    "starting weights: 'imagenet' (downloaded or cached), 'auto' (ImageNet when already in the Keras cache "
    "or $KERAS_LIGHTNETS_WEIGHTS_DIR, else train from scratch; never downloads), 'none' (from scratch), "
    "or the path of a weights file"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``train`` command's arguments to ``parser``."""
    parser.add_argument("name", help="registered model name (see `lightnets list`)")
    parser.add_argument("--data", default="digits", metavar="SRC",
                        help="'digits' (bundled, default), a folder with one subfolder of images per class, "
                             "or 'tfds:NAME[:SPLIT]' (a TFDS dataset prepared in --data-dir). Validation: "
                             "digits' test split; a folder's or SPLIT's stratified 20%% (drawn with --seed); "
                             "TFDS' validation split, else its test split, else 20%% of train")
    parser.add_argument("--data-dir", default=None, help="TFDS data folder (default: TFDS's own)")
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="use at most this many images of each split (seeded choice)")
    parser.add_argument("--weights", default="imagenet", metavar="imagenet|auto|none|PATH", help=WEIGHTS_HELP)
    parser.add_argument("--epochs", type=natural_int, default=3,
                        help="phase 1 epochs: base frozen, head trained (default 3)")
    parser.add_argument("--fine-tune-epochs", type=natural_int, default=3,
                        help="phase 2 epochs: top blocks unfrozen, lower learning rate (default 3)")
    parser.add_argument("--unfreeze-blocks", type=natural_int, default=2,
                        help="blocks of the base unfrozen in phase 2, counted from the top (default 2)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="per replica (default 32)")
    parser.add_argument("--image-size", type=positive_int, default=None,
                        help="square input side in pixels, at least 32 (default: the model's ImageNet size)")
    parser.add_argument("--lr", type=positive_float, default=1e-3, help="phase 1 learning rate (default 1e-3)")
    parser.add_argument("--fine-tune-lr", type=positive_float, default=None,
                        help="phase 2 learning rate (default: --lr / 10)")
    parser.add_argument("--seed", type=natural_int, default=0,
                        help="seed of splits, shuffling, initialisation (default 0)")
    parser.add_argument("--strategy", choices=("auto", "one", "mirrored", "multiworker"), default="auto",
                        help="tf.distribute strategy; multiworker reads $TF_CONFIG (default auto)")
    parser.add_argument("--mixed-precision", choices=("auto", "on", "off"), default="auto",
                        help="float16 compute; auto = on GPUs with compute capability >= 7.0 only")
    previous = parser.add_mutually_exclusive_group()
    previous.add_argument("--resume", action="store_true",
                          help="continue after the last complete epoch checkpointed in --output")
    previous.add_argument("--overwrite", action="store_true",
                          help="replace a previous run in --output (its files are removed once the new run has "
                               "completed its first epoch); without it such a folder is refused")
    parser.add_argument("--output", default="lightnets-train", metavar="DIR",
                        help="folder for best.keras, history.csv/png and checkpoints/ (default lightnets-train)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress output and no TensorFlow log lines; stdout is the model's path alone")


def check_arguments(args: argparse.Namespace) -> None:
    """``InputError`` naming the first unusable argument, checked without TensorFlow."""
    from keras_lightnets.data.sources import SOURCE_FORMS, list_folder, source_kind
    from keras_lightnets.models.registry import model_config
    from keras_lightnets.training.run_folder import check_output_dir

    config = model_config(args.name)
    try:
        kind = source_kind(args.data)
    except ValueError:
        raise errors.InputError(f"--data must be {SOURCE_FORMS}; received {args.data!r}") from None
    if kind == "folder":
        try:
            list_folder(args.data)  # class subfolders with images: the layout, before TensorFlow
        except (ValueError, OSError) as err:
            raise errors.InputError(f"--data: {errors.one_line(err)}") from None
    if args.weights not in ("imagenet", "auto", "none") and not os.path.isfile(args.weights):
        raise errors.InputError(
            f"--weights must be imagenet, auto, none or an existing weights file; received {args.weights!r}")
    if args.weights == "imagenet" and "imagenet" not in config.weights:
        raise errors.InputError(f"model {args.name!r} has no ImageNet weights; use --weights none (or auto)")
    if args.image_size is not None and args.image_size < 32:
        raise errors.InputError(f"--image-size must be at least 32; received {args.image_size}")
    if args.epochs + args.fine_tune_epochs < 1:
        raise errors.InputError("--epochs plus --fine-tune-epochs must be at least 1")
    if args.strategy != "multiworker":  # there only the chief checks (fine_tune), once it knows it is the chief
        try:
            check_output_dir(args.output, resume=args.resume, overwrite=args.overwrite)
        except errors.InputError as err:
            raise errors.InputError(f"--output: {errors.one_line(err)}") from None


def run(args: argparse.Namespace) -> int:
    """Train as ``args`` say; prints the best model's path (and its accuracy unless ``--quiet``)."""
    check_arguments(args)
    from keras_lightnets.cli.console import native_logs_hidden
    from keras_lightnets.training import fine_tune

    with native_logs_hidden(args.quiet):
        result = fine_tune(
            args.name, args.data, weights=None if args.weights == "none" else args.weights,
            image_size=args.image_size, epochs_frozen=args.epochs, epochs_unfrozen=args.fine_tune_epochs,
            unfreeze_blocks=args.unfreeze_blocks, learning_rate=args.lr, fine_tune_learning_rate=args.fine_tune_lr,
            batch_size=args.batch_size, output_dir=args.output, strategy=args.strategy, resume=args.resume,
            overwrite=args.overwrite, seed=args.seed,
            mixed_precision={"auto": "auto", "on": True, "off": False}[args.mixed_precision],
            quiet=args.quiet, limit=args.limit, data_dir=args.data_dir,
        )
    if result.is_chief:  # --quiet: the model's path alone, one line
        print(result.best_path if args.quiet else f"best validation accuracy {result.best_val_accuracy:.4f} "
              f"(epoch {result.best_epoch} of {result.epochs}); model: {result.best_path}")
    return 0


def error_hint(args: argparse.Namespace, err: BaseException) -> str:
    """What to try when the ImageNet weights could not be downloaded."""
    if args.weights == "imagenet" and isinstance(err, OSError) and "download" in errors.one_line(err):
        return " (offline? use --weights auto or none)"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m keras_lightnets.cli.train NAME ...`` (the same as ``lightnets train``)."""
    return command.main(sys.modules[__name__], argv, prog=f"{command.PROGRAM} train")


if __name__ == "__main__":
    sys.exit(main())
