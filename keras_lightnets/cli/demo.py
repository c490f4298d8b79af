"""``lightnets demo --output DIR``: the whole pipeline on the bundled digits (what ``make demo`` runs).

1. ``lightnets train`` of ``--model`` (default ``mobilenet_v3_small_100``) on the
   digits upscaled to ``--image-size`` pixels, from ImageNet weights when they
   are in the Keras cache, from scratch otherwise (``weights="auto"``);
2. three ``.tflite`` variants (``keras_lightnets.pipelines.variants``): ``float``,
   ``int8_ptq`` (post-training int8) and ``int8_qat_pruned50`` (50% pruned +
   sparsity-preserving QAT), each evaluated with LiteRT on the held-out split
   and benchmarked;
3. a table on stdout, ``DIR/report.json``
   (``{"variants": {name: {"accuracy", "size_bytes", "latency_ms", ...}}}``,
   accuracy a fraction) and ``DIR/report.png``.

``--task detect``: the detection part (``pipelines.detection_export_bench`` at demo size): SSDLite
on ``--model`` (default MobileNetV2 1.0) trained from scratch on the bundled digit scenes, then
``float``, ``int8_ptq`` and ``int8_qat`` ``.tflite`` files ending in TFLite_Detection_PostProcess,
each measured with LiteRT (mAP@.5 vs the float Keras model, box agreement, size, latency) into
``DIR/report.md``, ``DIR/report.json`` and ``DIR/report.png``.

Re-running into the same ``--output`` replaces the previous demo (its trained
model only once the new training has completed an epoch). Exit codes: 0, 2 bad
input (``errors.InputError``), 1 a failure while working; one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from keras_lightnets import errors
from keras_lightnets.cli._args import natural_int, positive_int
from keras_lightnets.pipelines.detection_export_bench import VARIANTS as DETECT_VARIANTS
from keras_lightnets.pipelines.variants import DEMO_VARIANTS, VARIANTS

HELP = "train on the bundled digits, export float/int8/pruned int8 TFLite, report"
INTERRUPTED = ""
DESCRIPTION = ("Train a registered model on the bundled digits, export float, int8 and pruned int8 TFLite "
               "variants, evaluate and benchmark each with LiteRT, and write report.json and report.png.")


# --task -> the defaults of the arguments whose meaning depends on it.
TASK_DEFAULTS = {
    "classify": {"model": "mobilenet_v3_small_100", "image_size": 48, "epochs": 10, "fine_tune_epochs": 5,
                 "variants": ",".join(DEMO_VARIANTS)},
    "detect": {"model": "mobilenet_v2_100", "image_size": 128, "epochs": 6, "fine_tune_epochs": 0,
               "variants": "float,int8_ptq_per_tensor,int8_qat_per_tensor"},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``demo`` command's arguments to ``parser``."""
    classify, detect = TASK_DEFAULTS["classify"], TASK_DEFAULTS["detect"]
    parser.add_argument("--task", choices=tuple(TASK_DEFAULTS), default="classify",
                        help="classify: the digits classifier (default); detect: SSDLite on the digit scenes")
    parser.add_argument("--output", default="demo-output", help="folder for the models, .tflite files and report")
    parser.add_argument("--model", default=None,
                        help=f"registered model to train (detect: SSDLite's backbone); default {classify['model']} / "
                             f"{detect['model']}")
    parser.add_argument("--image-size", type=positive_int, default=None,
                        help=f"digits are upscaled from 8x8 to this side / the scenes' side (default "
                             f"{classify['image_size']} / {detect['image_size']})")
    parser.add_argument("--epochs", type=natural_int, default=None,
                        help=f"phase 1 epochs (default {classify['epochs']} / {detect['epochs']})")
    parser.add_argument("--fine-tune-epochs", type=natural_int, default=None,
                        help=f"phase 2 epochs (default {classify['fine_tune_epochs']}; detect: none)")
    parser.add_argument("--variants", default=None,
                        help=f"comma-separated variants ({', '.join(VARIANTS)}; detect: {', '.join(DETECT_VARIANTS)}); "
                             f"default: {classify['variants']} / {detect['variants']}")
    parser.add_argument("--train-scenes", type=positive_int, default=2000, help="detect: training scenes (2000)")
    parser.add_argument("--test-scenes", type=positive_int, default=200, help="detect: held-out scenes (200)")
    parser.add_argument("--time-budget", type=positive_int, default=480,
                        help="detect: seconds of training at most (480; stops between epochs)")
    parser.add_argument("--threads", type=positive_int, default=1, help="LiteRT threads for latency (default 1)")
    parser.add_argument("--runs", type=natural_int, default=50, help="timed LiteRT runs per variant (default 50)")
    parser.add_argument("--quiet", action="store_true",
                        help="print only the final table (no progress, no TensorFlow log lines)")


def _table(results: dict) -> str:
    from keras_lightnets.cli.console import table

    rows = [{
        "variant": name, "accuracy": f"{r.accuracy:.4f}", "size (KiB)": f"{r.size_bytes / 1024:.1f}",
        "gzip (KiB)": f"{r.gzip_bytes / 1024:.1f}", "zeros in kernels": f"{r.kernel_sparsity:.2f}",
        "latency (ms)": "-" if r.latency_ms is None else f"{r.latency_ms:.3f}",
    } for name, r in results.items()]
    return table(rows, list(rows[0]))


def plot_figure(results: dict, title: str):
    """A matplotlib ``Figure``: bar charts of accuracy (fraction), ``.tflite`` size (KiB) and
    median latency (ms) per variant, each axis labelled with its unit."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(results)
    panels = (("test accuracy (LiteRT)", "accuracy (fraction)", "%.3g", [results[n].accuracy for n in names]),
              (".tflite size", "size (KiB)", "%.0f", [results[n].size_bytes / 1024 for n in names]),
              ("median latency", "latency (ms)", "%.3g", [results[n].latency_ms or 0.0 for n in names]))
    figure = Figure(figsize=(12, 3.6), layout="tight")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 3)
    for axis, (title_, unit, fmt, values) in zip(axes, panels, strict=True):
        bars = axis.bar(names, values, color=["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b2"][: len(names)])
        axis.set_title(title_)
        axis.set_ylabel(unit)
        axis.bar_label(bars, fmt=fmt, fontsize=8)
        axis.tick_params(axis="x", rotation=20, labelsize=8)
    if panels[0][3]:
        axes[0].set_ylim(max(0.0, min(panels[0][3]) - 0.1), 1.0)
    figure.suptitle(title, fontsize=10)
    return figure


def write_plot(results: dict, path: str, title: str) -> None:
    """``plot_figure`` as a PNG at ``path``, written atomically."""
    from keras_lightnets.files import atomic_path

    figure = plot_figure(results, title)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110)


def demo(args) -> dict:
    """Train, make the variants, write the report; returns the report."""
    import numpy as np

    from keras_lightnets.data.sources import load_images
    from keras_lightnets.files import write_json
    from keras_lightnets.pipelines import variants
    from keras_lightnets.training import fine_tune

    names = variants.check_variant_names([n.strip() for n in args.variants.split(",") if n.strip()])
    say = (lambda message: None) if args.quiet else (lambda m: print(f"[demo] {m}", file=sys.stderr, flush=True))
    started = time.perf_counter()
    os.makedirs(args.output, exist_ok=True)
    say(f"training {args.model} on the bundled digits at {args.image_size}x{args.image_size}")
    trained = fine_tune(  # a demo re-run replaces its own previous training run
        args.model, "digits", weights="auto", image_size=args.image_size, epochs_frozen=args.epochs,
        epochs_unfrozen=args.fine_tune_epochs, output_dir=os.path.join(args.output, "train"), quiet=args.quiet,
        overwrite=True,
    )
    say(f"best validation accuracy {trained.best_val_accuracy:.4f} (epoch {trained.best_epoch}); "
        f"starting weights: {trained.weights or 'none (from scratch)'}")
    import keras

    model = keras.saving.load_model(trained.best_path, safe_mode=True)
    size = (args.image_size, args.image_size)
    train = load_images("digits", image_size=size, split="train")
    test = load_images("digits", image_size=size, split="test")
    recipe = variants.Recipe(threads=args.threads, runs=args.runs)
    results = variants.run_variants(model, names, args.output, (train.images, train.labels),
                                    (test.images, test.labels), recipe, progress=say)
    report = {
        "model": args.model, "image_size": args.image_size, "weights": trained.weights,
        "dataset": {"name": "UCI hand-written digits (bundled)", "train": len(train.labels),
                    "test": len(test.labels), "classes": len(train.class_names)},
        "keras_val_accuracy": trained.best_val_accuracy, "threads": args.threads,
        "variants": {name: r.as_dict() for name, r in results.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    for entry in report["variants"].values():
        entry.pop("export", None)
        entry["path"] = os.path.relpath(entry["path"], args.output)
    write_json(os.path.join(args.output, "report.json"), report)
    write_plot(results, os.path.join(args.output, "report.png"),
               f"{args.model} on digits {args.image_size}px: LiteRT, {args.threads} thread(s)")
    print(_table(results))
    print(f"\nwrote {os.path.join(args.output, 'report.json')} and report.png "
          f"({report['seconds']:.0f} s; Keras float accuracy {np.float64(trained.best_val_accuracy):.4f})")
    return report


def demo_detection(args) -> dict:
    """The detection part: train SSDLite on the digit scenes, make and measure the variants, report."""
    import dataclasses
    import json

    from keras_lightnets.pipelines import detection_export_bench as bench
    from keras_lightnets.pipelines.detection_bench import DEFAULT_RECIPES, machine_label

    say = (lambda message: None) if args.quiet else (lambda m: print(f"[demo] {m}", file=sys.stderr, flush=True))
    started = time.perf_counter()
    recipe = dataclasses.replace(DEFAULT_RECIPES[0], backbone=args.model, image_size=args.image_size,
                                 epochs=args.epochs)
    benchmark = bench.DetectionExportBenchmark(
        recipe=recipe, train_scenes=args.train_scenes, validation_scenes=50, test_scenes=args.test_scenes,
        time_budget=float(args.time_budget), variants=tuple(_variant_names(args)), threads=args.threads,
        runs=max(args.runs, 1), output=args.output, quiet=args.quiet,
    )
    figures = bench.run(benchmark, progress=say)
    names = {"markdown": "report.md", "json": "report.json", "plot": "report.png"}
    print(bench.write_report(figures, benchmark, machine_label(args.threads), names))
    print(f"wrote {os.path.join(args.output, 'report.json')} and report.png ({time.perf_counter() - started:.0f} s)")
    with open(os.path.join(args.output, "report.json"), encoding="utf-8") as f:
        return json.load(f)


def _variant_names(args) -> list[str]:
    return [n.strip() for n in args.variants.split(",") if n.strip()]


def resolve_defaults(args: argparse.Namespace) -> None:
    """Fill the arguments left at None with ``--task``'s defaults."""
    for key, value in TASK_DEFAULTS[args.task].items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def check_arguments(args: argparse.Namespace) -> None:
    """``InputError`` naming the first unusable argument (checked before TensorFlow is imported)."""
    from keras_lightnets.models.registry import list_models
    from keras_lightnets.pipelines.variants import check_variant_names
    from keras_lightnets.training.run_folder import check_output_dir

    resolve_defaults(args)
    if args.model not in list_models():
        raise errors.InputError(f"unknown model {args.model!r}; see `lightnets list`")
    if args.epochs + args.fine_tune_epochs < 1:
        raise errors.InputError("--epochs plus --fine-tune-epochs must be at least 1")
    if args.task == "detect":
        if args.fine_tune_epochs:
            raise errors.InputError("--fine-tune-epochs applies to --task classify only (detect trains from scratch)")
        unknown = [n for n in _variant_names(args) if n not in DETECT_VARIANTS]
        if unknown or not _variant_names(args):
            raise errors.InputError(f"--variants: with --task detect choose from {', '.join(DETECT_VARIANTS)}; "
                                    f"received {args.variants!r}")
    else:
        try:
            check_variant_names(_variant_names(args))
        except ValueError as err:
            raise errors.InputError(f"--variants: {errors.one_line(err)}") from None
    if os.path.lexists(args.output) and not os.path.isdir(args.output):
        raise errors.InputError(f"--output {args.output!r} exists and is not a folder")
    try:
        check_output_dir(os.path.join(args.output, "train"), overwrite=True)
    except errors.InputError as err:
        raise errors.InputError(f"--output: {errors.one_line(err)}") from None


def run(args: argparse.Namespace) -> int:
    """Check ``args``, then run the demo with TensorFlow's log lines hidden under ``--quiet``."""
    check_arguments(args)
    from keras_lightnets.cli.console import native_logs_hidden

    with native_logs_hidden(args.quiet):
        if args.task == "detect":
            demo_detection(args)
        else:
            demo(args)
    return 0
