"""``lightnets export`` and ``tools/convert_tflite.py``: the TFLite converter command line.

::

    convert_tflite MODEL [-o OUT.tflite] [-q none|float16|dynamic|int8] [--data SRC]
                   [--verify] [--benchmark] [--threads N] [--quiet] ...

``MODEL`` is a ``.keras`` file (Keras 3, loaded with ``safe_mode=True``), a ``.h5``
file or a Keras SavedModel folder (tf_keras, TFMOT QAT models included), or a
registered name (``lightnets list``), built with ``--weights``/``--input-size``/
``--classes``/``--flavour``. ``--data`` gives RGB pixels in ``[0, 255]`` for
int8 calibration and ``--verify`` (``keras_lightnets.data.samples``): a ``.npy`` file
``(N, H, W, C)`` of the model's input size, a folder with one subfolder of images per class,
``digits``, ``tfds:NAME[:SPLIT]`` or ``random``; ``--preprocessing`` maps them to what the
model takes (default: the registry model's mode, ``none`` for model files).
Model files never run Python code stored in them (``Lambda`` layers, unknown
classes) unless ``--unsafe`` is given (see ``keras_lightnets.model_files``).

Writes ``OUT.tflite``, ``OUT.labels.txt`` (one class name per line, when the class
names are known) and ``OUT.json`` (export, verify and benchmark reports), all
through temporary files renamed at the very end (``files.Staging``): a failed run leaves
none of them (a killed run's temporaries are removed by the next run in that folder). An
output path that is one of the inputs (model, ``--data``, ``--weights``) is refused before
any work. Progress goes to stderr, the written paths to stdout. Exit codes: 0
success, 2 bad arguments, data or model file, 1 failure; an error is one line on
stderr. TensorFlow is imported only after the arguments are parsed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from keras_lightnets import errors, imagenet
from keras_lightnets.cli import command
from keras_lightnets.cli._args import image_size, natural_int, positive_int
from keras_lightnets.data.samples import PURPOSES, Samples
from keras_lightnets.export import QUANTIZATION_MODES
from keras_lightnets.export.delegation import format_op_counts
from keras_lightnets.files import Staging, remove_stale_temporaries
from keras_lightnets.model_files import check_outputs_spare_inputs, load_model_file, model_kind

PROG = "convert_tflite"  # the tool's name; `lightnets export` reports errors as `lightnets`
HELP = "convert a model to TensorFlow Lite (also tools/convert_tflite.py)"
INTERRUPTED = "; nothing written"
DATA_FORMS = "a .npy file (N, H, W, C), a folder of class subfolders, 'digits', 'tfds:NAME[:SPLIT]' or 'random'"
PREPROCESSING = ("auto", *sorted(imagenet.MODES))
_SHOWN_SKIPPED = 20
DESCRIPTION = ("Convert a Keras model (a .keras/.h5 file, a SavedModel folder or a registered name) to TensorFlow "
               "Lite: float32, float16, dynamic-range or full int8 (calibrated on --data), optionally verified "
               "against the Keras model with LiteRT (--verify) and benchmarked (--benchmark). Writes OUT.tflite, "
               "OUT.labels.txt (class names, when known) and OUT.json (the report).")
UNSAFE_HELP = ("load model files even when they may run stored Python code (Lambda layers, unknown classes); "
               "only for files you trust")


class LoadError(RuntimeError):
    """The model could not be built or loaded (exit code 1)."""


# --------------------------------------------------------------------------- arguments

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the converter's arguments to ``parser`` (the tool's own, or the ``lightnets export``
    subparser, whose ``prog`` then begins the progress lines)."""
    from keras_lightnets.data.sources import HELD_OUT

    parser.set_defaults(prog=parser.prog)
    parser.add_argument("model", help="a .keras / .h5 file, a Keras SavedModel folder, or a registered model name")
    parser.add_argument("-o", "--output", help="the .tflite file to write (default: ./<model>_<quantization>.tflite)")
    parser.add_argument("-q", "--quantization", choices=QUANTIZATION_MODES, default="none",
                        help="none (float32), float16 (weights), dynamic (int8 weights), int8 (int8 everything, "
                             "int8 inputs/outputs; a float model needs --data). Default: none")
    parser.add_argument("--data", metavar="SRC", help=f"RGB pixels in [0, 255] for int8 calibration and --verify: "
                                                      f"{DATA_FORMS}. Image sources calibrate on training images "
                                                      f"and verify on {HELD_OUT.replace('%', '%%')}")
    parser.add_argument("--data-dir", help="the TFDS data folder for --data tfds:... (nothing is downloaded)")
    parser.add_argument("--num-samples", type=positive_int, default=100,
                        help="images read from --data for calibration and as many for --verify (calibration uses "
                             "at most 100). The two sets are disjoint: image sources calibrate on their training "
                             "images and verify on their held-out ones (see --data); a .npy file is halved when "
                             "both are needed. Default: 100")
    parser.add_argument("--preprocessing", choices=PREPROCESSING, default="auto",
                        help="map --data pixels to the model's input: tf ([-1, 1]), torch (ImageNet mean/std), none; "
                             "auto: the registry model's mode, none for model files")
    parser.add_argument("--weights", default="auto",
                        help="registry models: imagenet, none (random) or a weights file. Default auto: imagenet when "
                             "the variant has ImageNet weights and --classes is not given, else none")
    parser.add_argument("--input-size", type=image_size, metavar="N|HxW",
                        help="input size: registry models are built with it (default: the variant's); model files "
                             "with an open input size need it")
    parser.add_argument("--classes", type=positive_int, help="registry models: number of classes (default 1000)")
    parser.add_argument("--flavour", choices=("keras", "tf_keras"), default="keras",
                        help="registry models: build with Keras 3 or tf_keras. Default: keras")
    parser.add_argument("--batch-size", type=positive_int, default=1, help="static batch of the file. Default: 1")
    parser.add_argument("--allow-float-ops", action="store_true",
                        help="int8: keep the file even if some ops stay in float (default: an error naming them)")
    parser.add_argument("--per-tensor", action="store_true",
                        help="int8: one scale per weight tensor instead of per output channel (smaller file; "
                             "some accelerators need it); a quantization-aware model must have been made so")
    parser.add_argument("--strip-names", action="store_true",
                        help="drop tensor names from the file (debug strings; a smaller file)")
    parser.add_argument("--verify", action="store_true", help="compare the file with the Keras model on --data")
    parser.add_argument("--benchmark", action="store_true", help="measure latency and peak memory with LiteRT")
    parser.add_argument("--threads", type=positive_int, default=1, help="interpreter threads. Default: 1")
    parser.add_argument("--runs", type=positive_int, default=50, help="timed benchmark runs. Default: 50")
    parser.add_argument("--warmup", type=natural_int, default=5, help="untimed benchmark runs first. Default: 5")
    parser.add_argument("--quiet", action="store_true", help="no progress lines or warnings on stderr")
    parser.add_argument("--unsafe", action="store_true", help=UNSAFE_HELP)


@dataclass
class Plan:
    """What the arguments ask for, after the checks that need no TensorFlow."""

    model_kind: str  # "registry", "keras", "h5" or "saved_model"
    model: str
    output: str
    labels_path: str
    report_path: str
    data_kind: str | None  # "npy", "random", "images" or None


def _data_kind(data: str | None) -> str | None:
    if data is None:
        return None
    if data == "random":
        return "random"
    if data.lower().endswith(".npy"):
        if not os.path.isfile(data):
            raise errors.InputError(f"--data file {data!r} does not exist")
        return "npy"
    if data == "digits" or data.startswith("tfds:") or os.path.isdir(data):
        return "images"
    raise errors.InputError(f"--data must be {DATA_FORMS}; {data!r} is none of these (no such file or folder)")


def _output_paths(args: argparse.Namespace, kind: str) -> tuple[str, str, str]:
    if args.output:
        output = os.path.abspath(args.output)
    else:
        stem = args.model if kind == "registry" else os.path.basename(os.path.normpath(args.model)).split(".")[0]
        output = os.path.abspath(f"{stem}_{args.quantization}.tflite")
    folder = os.path.dirname(output)
    if not os.path.isdir(folder):
        raise errors.InputError(f"--output folder {folder!r} does not exist")
    if os.path.isdir(output):
        raise errors.InputError(f"--output {output!r} is a folder; give a file name ending in .tflite")
    base = output[: -len(".tflite")] if output.endswith(".tflite") else output
    return output, f"{base}.labels.txt", f"{base}.json"


def make_plan(args: argparse.Namespace) -> Plan:
    """Check the arguments that need no model (``InputError`` naming the option)."""
    kind = model_kind(args.model)
    if kind != "registry":
        given = [opt for opt, value in (("--classes", args.classes), ("--weights", args.weights != "auto"),
                                        ("--flavour", args.flavour != "keras")) if value]
        if given:
            raise errors.InputError(f"{', '.join(given)} only apply to registered model names, not to model files")
    data_kind = _data_kind(args.data)
    if args.quantization == "int8" and data_kind is None and kind == "registry":
        raise errors.InputError(
            "-q int8 needs --data for calibration (about 100 typical images; --data random only to try)")
    if args.per_tensor and args.quantization != "int8":
        raise errors.InputError(f"--per-tensor applies to -q int8 only; received -q {args.quantization}")
    if args.verify and data_kind is None:
        raise errors.InputError("--verify needs --data (--data random for a quick check on random pixels)")
    output, labels_path, report_path = _output_paths(args, kind)
    inputs = {"--data": args.data if data_kind in ("npy", "images") else None, "--data-dir": args.data_dir,
              "--weights": args.weights if kind == "registry" and args.weights not in ("auto", "none", "imagenet")
              else None, "the model": None if kind == "registry" else args.model}
    check_outputs_spare_inputs({"--output": output, "the labels file": labels_path, "the report": report_path},
                               inputs)
    return Plan(kind, args.model, output, labels_path, report_path, data_kind)


# --------------------------------------------------------------------------- progress

class _Progress:
    """Step lines with timings on stderr (nothing when quiet)."""

    def __init__(self, prog: str, quiet: bool):
        self.prog, self.quiet = prog, quiet

    def say(self, message: str) -> None:
        if not self.quiet:
            print(f"{self.prog}: {message}", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def step(self, what: str) -> Iterator[None]:
        self.say(f"{what} ...")
        start = time.perf_counter()
        yield
        self.say(f"{what}: done in {time.perf_counter() - start:.1f} s")


# --------------------------------------------------------------------------- model

def _registry_model(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from keras_lightnets.models.registry import create_model, model_config

    config = model_config(args.model)
    weights = args.weights
    if weights == "auto":
        weights = "imagenet" if "imagenet" in config.weights and args.classes in (None, 1000) else "none"
    kwargs: dict[str, Any] = {"weights": None if weights == "none" else weights}
    if args.input_size:
        kwargs["input_shape"] = (*args.input_size, 3)
    if args.classes:
        kwargs["classes"] = args.classes
    try:
        model = create_model(args.model, flavour=args.flavour, **kwargs)
    except (ValueError, FileNotFoundError) as err:
        raise errors.InputError(str(err)) from None
    preprocessing = imagenet.PREPROCESS_MODES[config.preprocessing]
    return model, {"weights": weights, "flavour": args.flavour, "registry_preprocessing": preprocessing}


def load_model(args: argparse.Namespace, plan: Plan) -> tuple[Any, dict[str, Any]]:
    """The Keras model to convert and facts about it for the report."""
    from keras_lightnets.export.inputs import is_qat_model, model_flavour

    if plan.model_kind == "registry":
        model, facts = _registry_model(args)
    else:
        try:
            model = load_model_file(plan.model_kind, plan.model, unsafe=args.unsafe)
            flavour = model_flavour(model)
        except (KeyboardInterrupt, MemoryError, errors.InputError):
            raise
        except Exception as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise LoadError(f"cannot load {plan.model!r} as a Keras model ({type(err).__name__}: {first})") from None
        facts = {"flavour": flavour, "registry_preprocessing": "none"}
    facts.update(kind=plan.model_kind, source=plan.model, name=model.name, qat=is_qat_model(model))
    return model, facts


def _input_shape(model: Any, args: argparse.Namespace) -> tuple[int, int, int]:
    """``(H, W, C)`` the file is made for: the model's, with ``--input-size`` filling open dims."""
    shape = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else (None, None, 3)
    if len(shape) != 3 or shape[2] is None:
        raise LoadError(f"the model's input {shape} is not (height, width, channels)")
    height, width = args.input_size or (shape[0], shape[1])
    if height is None or width is None:
        raise errors.InputError(f"the model's input size is open ({shape}); give --input-size N or HxW")
    if (shape[0] is not None and shape[0] != height) or (shape[1] is not None and shape[1] != width):
        raise errors.InputError(
            f"--input-size {height}x{width} does not fit the model's input size {shape[0]}x{shape[1]}")
    return int(height), int(width), int(shape[2])


def _class_count(model: Any) -> int | None:
    outputs = getattr(model, "outputs", None) or []
    if len(outputs) == 1 and len(outputs[0].shape) == 2 and outputs[0].shape[-1]:
        return int(outputs[0].shape[-1])
    return None


# --------------------------------------------------------------------------- data

def load_data(args: argparse.Namespace, plan: Plan, shape: tuple[int, int, int], preprocessing: str,
              purposes: Sequence[str] = PURPOSES) -> dict[str, Samples]:
    """``--data`` read at the model's input size ``shape`` (H, W, C) for each of ``purposes``
    ("calibration", "verification"), disjoint images when both are asked for, mapped by
    ``preprocessing``; ``InputError`` naming ``--data`` when it is unusable."""
    import numpy as np

    from keras_lightnets.data import samples
    from keras_lightnets.imagenet import preprocess_input

    purposes = [p for p in PURPOSES if p in purposes]
    if plan.data_kind is None or not purposes:
        return {}
    try:
        if plan.data_kind == "random":
            parts = samples.random_samples(shape, args.num_samples, purposes)
        elif plan.data_kind == "npy":
            parts = samples.npy_samples(args.data, shape, args.num_samples, purposes)
        else:
            parts = samples.image_samples(args.data, shape, args.num_samples, purposes, data_dir=args.data_dir)
    except errors.InputError as err:
        raise errors.InputError(f"--data {errors.one_line(err)}") from None
    for data in parts.values():
        data.images = preprocess_input(np.array(data.images, dtype=np.float32), mode=preprocessing)
    return parts


def _imagenet_names() -> list[str]:
    from keras_lightnets.imagenet import class_index

    index = class_index()
    return [index[i][1] for i in range(len(index))]


def _class_names(plan: Plan, data: Samples | None, classes: int | None) -> tuple[list[str] | None, str | None]:
    """Names of the model's classes and where they come from ("data" or "imagenet"), if known."""
    if classes is None:
        return None, None
    if data is not None and data.class_names and len(data.class_names) == classes:
        return list(data.class_names), "data"
    if plan.model_kind == "registry" and classes == 1000:
        return _imagenet_names(), "imagenet"
    return None, None


def _read_data(args: argparse.Namespace, plan: Plan, shape: tuple[int, int, int], preprocessing: str,
               purposes: list[str], progress: _Progress) -> dict[str, Samples]:
    """``load_data`` for ``purposes`` (calibration for the report alone when none needs images), with progress."""
    if plan.data_kind is None:
        return {}
    with progress.step(f"reading --data {args.data}"):
        parts = load_data(args, plan, shape, preprocessing, purposes or ["calibration"])
    for purpose, data in parts.items():
        progress.say(f"{purpose}: {len(data.images)} images, {data.which}"
                     + (f", {len(data.skipped)} unreadable files skipped" if data.skipped else ""))
    return parts


def _data_report(args: argparse.Namespace, parts: dict[str, Samples], purposes: list[str]) -> dict[str, Any] | None:
    """The report's ``data`` entry: the source, image counts, skipped files, class names and the
    images of each purpose used (``None`` for one not used)."""
    if not parts:
        return None
    skipped = [f for data in parts.values() for f in data.skipped]
    return {"source": args.data, "samples": sum(len(d.images) for d in parts.values()), "skipped": len(skipped),
            "skipped_files": skipped[:_SHOWN_SKIPPED], "class_names": next(iter(parts.values())).class_names,
            **{p: {"images": parts[p].which, "samples": len(parts[p].images)} if p in purposes else None
               for p in PURPOSES}}


# --------------------------------------------------------------------------- the run

def _convert(args, plan: Plan, progress: _Progress, staging: Staging) -> dict[str, Any]:
    from keras_lightnets.export import benchmark_tflite, to_tflite, verify_tflite
    from keras_lightnets.export.inputs import qat_per_channel

    with progress.step(f"loading model {plan.model}"):
        model, facts = load_model(args, plan)
    shape = _input_shape(model, args)
    preprocessing = facts.pop("registry_preprocessing") if args.preprocessing == "auto" else args.preprocessing
    facts.update(input_shape=list(shape), preprocessing=preprocessing)
    if args.quantization == "int8" and plan.data_kind is None and not facts["qat"]:
        raise errors.InputError("-q int8 of a float (not quantization-aware) model needs --data for calibration")
    if args.per_tensor and facts["qat"] and qat_per_channel(model):
        raise errors.InputError("--per-tensor: this quantization-aware model quantizes its weights per channel, "
                                "and its file follows it (make it with quantize_aware(..., per_channel=False))")
    # calibration (int8 of a float model) and verification read disjoint images of --data
    purposes = [p for p, wanted in zip(PURPOSES, (args.quantization == "int8" and not facts["qat"], args.verify),
                                       strict=True) if wanted]
    parts = _read_data(args, plan, shape, preprocessing, purposes, progress)
    first = next(iter(parts.values()), None)
    names, names_from = _class_names(plan, first, _class_count(model))
    calibration = parts.get("calibration")
    staged = staging.reserve(plan.output)
    with progress.step(f"converting to TFLite (quantization={args.quantization})"):
        export = to_tflite(
            model, staged, args.quantization, None if calibration is None else calibration.images,
            batch_size=args.batch_size, input_shape=shape, allow_float_ops=args.allow_float_ops,
            per_channel=not args.per_tensor, strip_names=args.strip_names,
        )
    export.path = plan.output
    report: dict[str, Any] = {"model": facts, "export": export.as_dict(), "data": _data_report(args, parts, purposes)}
    if args.verify:
        data = parts["verification"]
        labels = data.labels if names_from == "data" else None
        with progress.step("verifying with LiteRT"):
            verify = verify_tflite(staged, model, data.images, labels=labels, threads=args.threads)
        verify.path = plan.output
        report["verify"] = {**verify.as_dict(), "images": data.which}
    if args.benchmark:
        with progress.step(f"benchmarking ({args.runs} runs, {args.threads} thread(s))"):
            bench = benchmark_tflite(staged, threads=args.threads, runs=args.runs, warmup=args.warmup)
        bench.path = plan.output
        report["benchmark"] = bench.as_dict()
    if names:
        staging.write_text(plan.labels_path, "".join(f"{n}\n" for n in names))
    report["outputs"] = {"tflite": plan.output, "labels": plan.labels_path if names else None,
                         "labels_from": names_from, "report": plan.report_path}
    return report


def _summary(report: dict[str, Any]) -> list[str]:
    export, outputs = report["export"], report["outputs"]
    lines = [f"wrote {outputs['tflite']} ({export['size_bytes'] / 1024:.1f} KiB, {export['quantization']}, "
             f"input {export['inputs'][0]['dtype']} {export['inputs'][0]['shape']})"]
    calibration = (report.get("data") or {}).get("calibration")
    if calibration and export["representative_samples"]:
        lines.append(f"calibration: {export['representative_samples']} images, {calibration['images']}")
    if "verify" in report:
        v = report["verify"]
        agreement = "" if v["top1_agreement"] is None else f", top-1 agreement {v['top1_agreement']:.3f}"
        accuracy = "" if v["tflite_accuracy"] is None else (
            f", accuracy {v['tflite_accuracy']:.4f} (Keras {v['keras_accuracy']:.4f})")
        lines.append(f"verify: {v['samples']} images, {v['images']}: max |diff| {v['max_abs_diff']:.3g}, "
                     f"mean |diff| {v['mean_abs_diff']:.3g}{agreement}{accuracy}")
    if "benchmark" in report:
        b = report["benchmark"]
        outside = format_op_counts(b["ops_outside_delegate"])
        lines.append(f"benchmark: median {b['median_ms']:.3f} ms, p90 {b['p90_ms']:.3f} ms, "
                     f"peak memory +{b['peak_memory_kib']} KiB ({b['threads']} thread(s)); "
                     f"XNNPACK partitions {b['delegate_partitions']}, ops outside: {outside}")
    if outputs["labels"]:
        lines.append(f"wrote {outputs['labels']} (class names from {outputs['labels_from']})")
    lines.append(f"wrote {outputs['report']}")
    return lines


def run(args: argparse.Namespace) -> int:
    """Convert as ``args`` say, writing every output or none; prints the written paths."""
    from keras_lightnets.cli.console import native_logs_hidden

    progress = _Progress(args.prog, args.quiet)
    started = time.perf_counter()
    with warnings.catch_warnings():
        if args.quiet:
            warnings.simplefilter("ignore")
        plan = make_plan(args)
        remove_stale_temporaries(os.path.dirname(plan.output), recursive=False)
        with Staging() as staging:
            with native_logs_hidden(args.quiet):  # TensorFlow is imported from here on
                report = _convert(args, plan, progress, staging)
            report["seconds"] = round(time.perf_counter() - started, 2)
            staging.write_text(plan.report_path, json.dumps(report, indent=1, default=str) + "\n")
    for line in _summary(report):
        print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``tools/convert_tflite.py``: parse ``argv`` (default ``sys.argv[1:]``) and run; returns the exit code."""
    return command.main(sys.modules[__name__], argv, prog=PROG)
