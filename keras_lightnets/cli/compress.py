"""``lightnets compress MODEL --prune 0.5 --qat ...``: prune and/or quantization-aware train a model.

``MODEL`` is a ``.keras`` file (e.g. ``best.keras`` from ``lightnets train``), a
tf_keras ``.h5`` / SavedModel, or a registry name (a fresh classifier for the
data's classes, ImageNet weights when cached). The data (``--data``, as for
``train``) fine-tunes the compressed model on its training images; accuracy is
measured on its held-out images (``data.sources.HELD_OUT``: for a folder, the
stratified 20 % ``train`` validates on). The result is a tf_keras ``.h5`` (what
TFMOT produces) plus a JSON report (sparsity per layer, held-out accuracy), and
with ``--export MODE`` also a ``.tflite`` calibrated on training images, verified
on the held-out ones, with ``OUT.labels.txt`` (class names) beside it. Every file is written
under a temporary name and renamed at the end (a killed run's temporaries are
removed by the next run in that folder). Model files never run Python code stored
in them unless ``--unsafe`` is given (see ``keras_lightnets.model_files``); an
output path that is an input (the model, ``--data``) is refused before any work.
Exit codes: 0, 2 bad arguments, data or model file (``errors.InputError``), 1 failure,
each failure one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import warnings

from keras_lightnets import errors, imagenet
from keras_lightnets.cli._args import fraction, natural_int, positive_float, positive_int

HELP = "prune and/or quantization-aware train a model"
INTERRUPTED = ""
DESCRIPTION = ("Prune and/or quantization-aware train a model (a .keras/.h5 file, a SavedModel folder or a "
               "registered name) on --data, write a tf_keras .h5 and a JSON report, and with --export a .tflite "
               "with its labels file.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``compress`` command's arguments to ``parser``."""
    from keras_lightnets.data.sources import HELD_OUT

    parser.add_argument("model", help="a .keras/.h5 model file, a SavedModel folder or a registered name")
    parser.add_argument("--prune", type=fraction, default=None, metavar="SPARSITY",
                        help="magnitude-prune Conv2D/SeparableConv2D/Dense kernels to this sparsity, e.g. 0.5")
    parser.add_argument("--qat", action="store_true",
                        help="quantization-aware training (keeps the zeros of --prune)")
    parser.add_argument("--per-tensor", action="store_true",
                        help="with --qat: one range per kernel (BatchNorms folded into their convolutions), so "
                             "the int8 file has one scale per weight tensor: smaller (default: per output channel)")
    parser.add_argument("--data", default="digits", metavar="SRC",
                        help="training data: 'digits' (default), a folder with one subfolder of images per class "
                             "or 'tfds:NAME[:SPLIT]'. Fine-tunes use its training images; accuracy and --export's "
                             f"verification use its {HELD_OUT.replace('%', '%%')}")
    parser.add_argument("--data-dir", default=None, help="TFDS data folder (for --data tfds:...)")
    parser.add_argument("--limit", type=positive_int, default=None, help="use at most this many images per split")
    parser.add_argument("--preprocessing", choices=("auto", *sorted(imagenet.MODES)), default="auto",
                        help="how [0, 255] pixels become the model's input; 'auto': the registry's mode for a "
                             "registered name, 'none' for files (models from `lightnets train` rescale inside)")
    parser.add_argument("--prune-epochs", type=natural_int, default=3, help="pruning fine-tune epochs (default 3)")
    parser.add_argument("--qat-epochs", type=natural_int, default=2, help="QAT fine-tune epochs (default 2)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="fine-tune batch size (default 32)")
    parser.add_argument("--lr", type=positive_float, default=2e-4,
                        help="Adam learning rate of the pruning fine-tune (default 2e-4)")
    parser.add_argument("--qat-lr", type=positive_float, default=1e-5,
                        help="Adam learning rate of the QAT fine-tune without --prune (default 1e-5; after "
                             "pruning QAT goes on at --lr)")
    parser.add_argument("--image-size", type=positive_int, default=None,
                        help="input side for a registered name (default: the registry's); files keep theirs")
    parser.add_argument("--export", choices=("none", "float16", "dynamic", "int8"), default=None,
                        help="also write OUT.tflite in this mode (int8 calibrated on training images), verified "
                             "on the held-out images, and OUT.labels.txt (class names)")
    parser.add_argument("-o", "--output", default=None,
                        help="output .h5 (default: MODEL's name + '_compressed.h5' in the current folder)")
    parser.add_argument("--seed", type=natural_int, default=0,
                        help="seed of the fine-tunes, of --limit's choice and of a folder's held-out split "
                             "(default 0, as `lightnets train`)")
    parser.add_argument("--quiet", action="store_true",
                        help="print only the result (no progress, no TensorFlow log lines)")
    parser.add_argument("--unsafe", action="store_true",
                        help="load model files even when they may run stored Python code (Lambda layers, unknown "
                             "classes); only for files you trust")


def _say(args, message: str) -> None:
    if not args.quiet:
        print(f"[compress] {message}", file=sys.stderr, flush=True)


def check_arguments(args: argparse.Namespace) -> None:
    """``InputError`` naming the first unusable argument (checked before TensorFlow is imported)."""
    if args.prune is None and not args.qat:
        raise errors.InputError("nothing to do: give --prune SPARSITY and/or --qat")
    if args.per_tensor and not args.qat:
        raise errors.InputError("--per-tensor applies with --qat (for post-training int8 of a float model: "
                                "lightnets export -q int8 --per-tensor)")
    if args.output is not None and not args.output.lower().endswith((".h5", ".hdf5")):
        raise errors.InputError(f"--output must end in .h5 (a tf_keras model file); received {args.output!r}")
    if args.output is not None and not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
        raise errors.InputError(f"--output folder does not exist: {os.path.dirname(os.path.abspath(args.output))!r}")


def output_paths(args) -> dict[str, str]:
    """``{what: path}`` of every file the command writes: the ``.h5``, its ``.json`` report, the ``.tflite``."""
    output = args.output or f"{os.path.splitext(os.path.basename(args.model.rstrip('/')))[0]}_compressed.h5"
    base = os.path.splitext(output)[0]
    paths = {"--output": output, "the report": base + ".json"}
    if args.export:  # named as `lightnets export` names them
        paths["the exported .tflite"] = base + ".tflite"
        paths["the labels file"] = base + ".labels.txt"
    return paths


def _check_paths(args, kind: str) -> dict[str, str]:
    """The outputs, after refusing any that is an input (before any work)."""
    from keras_lightnets.model_files import check_outputs_spare_inputs

    outputs = output_paths(args)
    inputs = {"the model": None if kind == "registry" else args.model,
              "--data": args.data if os.path.exists(args.data) else None, "--data-dir": args.data_dir}
    check_outputs_spare_inputs(outputs, inputs)
    return outputs


def _load(args, kind: str, classes: int | None):
    """``(model, preprocessing mode)`` for a file or a registry name."""
    from keras_lightnets.model_files import load_model_file
    from keras_lightnets.models.registry import model_config

    if kind != "registry":
        model = load_model_file(kind, args.model, unsafe=args.unsafe)
        return model, "none" if args.preprocessing == "auto" else args.preprocessing
    from keras_lightnets.training import build_classifier

    size = args.image_size or model_config(args.model).input_size
    model, _ = build_classifier(args.model, classes, image_size=size, weights="auto")
    return model, "none" if args.preprocessing == "auto" else args.preprocessing


def compress(args) -> dict:
    """Run the command; returns the report written beside the output."""
    import numpy as np

    from keras_lightnets import compression
    from keras_lightnets.data.sources import load_images
    from keras_lightnets.files import Staging, remove_stale_temporaries
    from keras_lightnets.imagenet import preprocess_input
    from keras_lightnets.model_files import model_kind
    from keras_lightnets.pipelines import variants

    kind = model_kind(args.model)
    outputs = _check_paths(args, kind)
    remove_stale_temporaries(os.path.dirname(os.path.abspath(outputs["--output"])), recursive=False)
    started = time.perf_counter()
    _say(args, f"loading {args.data}")
    probe = None
    if kind == "registry":
        from keras_lightnets.models.registry import model_config

        side = args.image_size or model_config(args.model).input_size
        probe = load_images(args.data, image_size=(side, side), split="train", limit=args.limit, seed=args.seed,
                            data_dir=args.data_dir)
    model, mode = _load(args, kind, len(probe.class_names) if probe else None)
    height, width = (int(d) for d in model.inputs[0].shape[1:3])
    parts, class_names = {}, None
    for split in ("train", "test"):  # "test": the source's held-out images (a folder's 20 %, as train's validation)
        data = probe if (split == "train" and probe is not None) else load_images(
            args.data, image_size=(height, width), split=split, limit=args.limit, seed=args.seed,
            data_dir=args.data_dir)
        parts[split] = (np.asarray(preprocess_input(data.images.copy(), mode=mode), dtype="float32"), data.labels)
        class_names = list(data.class_names)
    _say(args, f"{len(parts['train'][0])} training and {len(parts['test'][0])} held-out images, "
               f"model {model.name} ({kind}), preprocessing {mode}")
    spec = variants.VariantSpec("compressed", args.export or "none", qat=args.qat, sparsity=args.prune,
                                per_channel=not args.per_tensor)
    recipe = variants.Recipe(prune_epochs=args.prune_epochs, qat_epochs=args.qat_epochs,
                             batch_size=args.batch_size, learning_rate=args.lr, qat_learning_rate=args.qat_lr,
                             seed=args.seed, runs=0)
    _say(args, " then ".join(filter(None, [f"pruning to {args.prune:.0%}" if args.prune else None,
                                           "quantization-aware training" if args.qat else None])))
    with contextlib.redirect_stdout(sys.stderr):  # fit's epoch lines are progress: stdout is the result
        compressed = variants.make_variant(model, spec, *parts["train"], recipe, verbose=0 if args.quiet else 2,
                                           progress=lambda message: _say(args, message))
    output = outputs["--output"]
    test_images, test_labels = parts["test"]
    probabilities = compressed.predict(test_images, batch_size=64, verbose=0)
    rows = compression.sparsity_report(compressed)
    report = {
        "model": args.model, "output": output, "prune": args.prune, "qat": args.qat, "per_tensor": args.per_tensor,
        "test_accuracy": float(np.mean(np.argmax(probabilities, -1) == test_labels)),
        "overall_sparsity": compression.overall_sparsity(rows), "layers": [r.as_dict() for r in rows],
        "seconds": round(time.perf_counter() - started, 1),
    }
    with Staging() as staging:  # every output, or none of them
        if args.export:
            report["tflite"] = _export(args, compressed, parts, class_names, outputs, staging,
                                       recipe.representative_samples)
        with warnings.catch_warnings():  # an .h5 on purpose: what TFMOT's tf_keras models load from
            warnings.filterwarnings("ignore", message="You are saving your model as an HDF5 file")
            compressed.save(staging.reserve(output), overwrite=True)
        staging.write_text(outputs["the report"], json.dumps(report, indent=1) + "\n")
    return report


def _export(args, compressed, parts: dict, class_names: list[str] | None, outputs: dict[str, str], staging,
            calibration_samples: int) -> dict:
    """Stage ``--export``'s ``.tflite`` (calibrated on training images, verified on the held-out
    ones) and its labels file; returns the report's ``tflite`` entry."""
    from keras_lightnets.export import to_tflite, verify_tflite
    from keras_lightnets.export.describe import tflite_kernel_sparsity

    tflite = outputs["the exported .tflite"]
    _say(args, f"exporting {args.export} TFLite")
    staged = staging.reserve(tflite)
    exported = to_tflite(compressed, staged, args.export, representative_data=parts["train"][0][:calibration_samples])
    test_images, test_labels = parts["test"]
    check = verify_tflite(staged, compressed, test_images, labels=test_labels)
    entry = {"path": tflite, "size_bytes": exported.size_bytes, "per_channel": exported.per_channel,
             "accuracy": check.tflite_accuracy, "top1_agreement": check.top1_agreement,
             "kernel_sparsity": tflite_kernel_sparsity(staged),
             "calibration": {"images": f"training images of {args.data}", "samples": exported.representative_samples}
             if exported.representative_samples else None,  # a QAT model calibrates itself
             "verification": {"images": f"held-out images of {args.data}", "samples": check.samples},
             "labels": None}
    classes = int(compressed.outputs[0].shape[-1]) if len(compressed.outputs) == 1 else None
    if class_names and classes == len(class_names):
        staging.write_text(outputs["the labels file"], "".join(f"{n}\n" for n in class_names))
        entry["labels"] = outputs["the labels file"]
    return entry


def run(args: argparse.Namespace) -> int:
    """Compress as ``args`` say; prints a JSON summary (output, accuracy, sparsity, the .tflite)."""
    check_arguments(args)
    from keras_lightnets.cli.console import native_logs_hidden

    with native_logs_hidden(args.quiet):
        report = compress(args)
    summary = {k: report[k] for k in ("output", "test_accuracy", "overall_sparsity")}
    if "tflite" in report:
        summary["tflite"] = report["tflite"]
    print(json.dumps(summary, indent=1))
    return 0
