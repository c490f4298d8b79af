"""The TFLite converter command line: ``tools/convert_tflite.py`` and ``lightnets export``.

::

    convert_tflite MODEL [-o OUT.tflite] [-q none|float16|dynamic|int8] [--data SRC]
                   [--verify] [--benchmark] [--threads N] [--quiet] ...

``MODEL`` is a ``.keras`` file (Keras 3, loaded with ``safe_mode=True``), a ``.h5``
file or a Keras SavedModel folder (tf_keras, TFMOT QAT models included), or a
registered name (``lightnets list``), built with ``--weights``/``--input-size``/
``--classes``/``--flavour``. ``--data`` gives RGB pixels in ``[0, 255]`` for
int8 calibration and ``--verify``: a ``.npy`` file ``(N, H, W, C)`` of the
model's input size, a folder with one subfolder of images per class, ``digits``,
``tfds:NAME[:SPLIT]`` or ``random``; ``--preprocessing`` maps them to what the
model takes (default: the registry model's mode, ``none`` for model files).
Model files never run Python code stored in them (``Lambda`` layers, unknown
classes) unless ``--unsafe`` is given (see ``keras_lightnets.model_files``).

Writes ``OUT.tflite``, ``OUT.labels.txt`` (one class name per line, when the class
names are known) and ``OUT.json`` (export, verify and benchmark reports), all
through temporary files renamed at the very end: a failed run leaves none of them
(a killed run's temporaries are removed by the next run in that folder). An output
path that is one of the inputs (model, ``--data``, ``--weights``) is refused before
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
from dataclasses import dataclass, field
from typing import Any

from keras_lightnets import errors
from keras_lightnets.cli._args import positive_int
from keras_lightnets.export.delegation import format_op_counts
from keras_lightnets.export.tflite import QUANTIZATION_MODES, ConversionError
from keras_lightnets.files import remove_stale_temporaries, temp_file_beside
from keras_lightnets.model_files import MODEL_SUFFIXES, check_outputs_spare_inputs, load_model_file, model_kind

PROG = "convert_tflite"
DATA_FORMS = "a .npy file (N, H, W, C), a folder of class subfolders, 'digits', 'tfds:NAME[:SPLIT]' or 'random'"
PREPROCESSING = ("auto", "none", "tf", "torch")
_SHOWN_SKIPPED = 20


DESCRIPTION = ("Convert a Keras model (a .keras/.h5 file, a SavedModel folder or a registered name) to TensorFlow "
               "Lite: float32, float16, dynamic-range or full int8 (calibrated on --data), optionally verified "
               "against the Keras model with LiteRT (--verify) and benchmarked (--benchmark). Writes OUT.tflite, "
               "OUT.labels.txt (class names, when known) and OUT.json (the report).")
UNSAFE_HELP = ("load model files even when they may run stored Python code (Lambda layers, unknown classes); "
               "only for files you trust")

__all__ = ["MODEL_SUFFIXES", "LoadError", "Plan", "UsageError", "add_arguments", "build_parser", "load_model",
           "load_model_file", "main", "make_plan", "model_kind", "run"]


class UsageError(errors.InputError):
    """Bad command-line arguments or data (exit code 2)."""


class LoadError(RuntimeError):
    """The model could not be built or loaded (exit code 1)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(message)


# --------------------------------------------------------------------------- arguments

def _input_size(text: str) -> tuple[int, int]:
    """``"N"`` or ``"HxW"`` -> ``(H, W)`` positive ints."""
    parts = text.lower().split("x")
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        sizes = ()
    if len(sizes) not in (1, 2) or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected N or HxW (positive ints); received {text!r}")
    return (sizes[0], sizes[-1])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the converter's arguments to ``parser`` (its own, or the ``lightnets export`` subparser);
    a parser without a description gets ``DESCRIPTION``."""
    from keras_lightnets.data.sources import HELD_OUT

    parser.description = parser.description or DESCRIPTION
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
    parser.add_argument("--input-size", type=_input_size, metavar="N|HxW",
                        help="input size: registry models are built with it (default: the variant's); model files "
                             "with an open input size need it")
    parser.add_argument("--classes", type=positive_int, help="registry models: number of classes (default 1000)")
    parser.add_argument("--flavour", choices=("keras", "tf_keras"), default="keras",
                        help="registry models: build with Keras 3 or tf_keras. Default: keras")
    parser.add_argument("--batch-size", type=positive_int, default=1, help="static batch of the file. Default: 1")
    parser.add_argument("--allow-float-ops", action="store_true",
                        help="int8: keep the file even if some ops stay in float (default: an error naming them)")
    parser.add_argument("--per-tensor", action="store_true",
                        help="int8 of a float model: one scale per weight tensor instead of per output channel "
                             "(smaller file; some accelerators need it)")
    parser.add_argument("--strip-names", action="store_true",
                        help="drop tensor names from the file (debug strings; a smaller file)")
    parser.add_argument("--verify", action="store_true", help="compare the file with the Keras model on --data")
    parser.add_argument("--benchmark", action="store_true", help="measure latency and peak memory with LiteRT")
    parser.add_argument("--threads", type=positive_int, default=1, help="interpreter threads. Default: 1")
    parser.add_argument("--runs", type=positive_int, default=50, help="timed benchmark runs. Default: 50")
    parser.add_argument("--warmup", type=int, default=5, help="untimed benchmark runs first. Default: 5")
    parser.add_argument("--quiet", action="store_true", help="no progress lines or warnings on stderr")
    parser.add_argument("--unsafe", action="store_true", help=UNSAFE_HELP)


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The stand-alone parser (errors raise ``UsageError`` instead of exiting)."""
    parser = _Parser(prog=prog, description=DESCRIPTION)
    add_arguments(parser)
    return parser


# --------------------------------------------------------------------------- the plan (checked before TF loads)

@dataclass
class Plan:
    """What the arguments ask for, after the checks that need no TensorFlow."""

    model_kind: str  # "registry", "keras", "h5" or "saved_model"
    model: str
    output: str
    labels_path: str
    report_path: str
    data_kind: str | None  # "npy", "random", "images" or None
    notes: list[str] = field(default_factory=list)


def _data_kind(data: str | None) -> str | None:
    if data is None:
        return None
    if data == "random":
        return "random"
    if data.lower().endswith(".npy"):
        if not os.path.isfile(data):
            raise UsageError(f"--data file {data!r} does not exist")
        return "npy"
    if data == "digits" or data.startswith("tfds:") or os.path.isdir(data):
        return "images"
    raise UsageError(f"--data must be {DATA_FORMS}; {data!r} is none of these (no such file or folder)")


def _output_paths(args: argparse.Namespace, kind: str) -> tuple[str, str, str]:
    if args.output:
        output = os.path.abspath(args.output)
    else:
        stem = args.model if kind == "registry" else os.path.basename(os.path.normpath(args.model)).split(".")[0]
        output = os.path.abspath(f"{stem}_{args.quantization}.tflite")
    folder = os.path.dirname(output)
    if not os.path.isdir(folder):
        raise UsageError(f"--output folder {folder!r} does not exist")
    if os.path.isdir(output):
        raise UsageError(f"--output {output!r} is a folder; give a file name ending in .tflite")
    base = output[: -len(".tflite")] if output.endswith(".tflite") else output
    return output, f"{base}.labels.txt", f"{base}.json"


def make_plan(args: argparse.Namespace) -> Plan:
    """Check the arguments that need no model (``UsageError`` naming the option)."""
    kind = model_kind(args.model)
    if kind != "registry":
        given = [opt for opt, value in (("--classes", args.classes), ("--weights", args.weights != "auto"),
                                        ("--flavour", args.flavour != "keras")) if value]
        if given:
            raise UsageError(f"{', '.join(given)} only apply to registered model names, not to model files")
    data_kind = _data_kind(args.data)
    if args.quantization == "int8" and data_kind is None and kind == "registry":
        raise UsageError("-q int8 needs --data for calibration (about 100 typical images; --data random only to try)")
    if args.per_tensor and args.quantization != "int8":
        raise UsageError(f"--per-tensor applies to -q int8 only; received -q {args.quantization}")
    if args.verify and data_kind is None:
        raise UsageError("--verify needs --data (--data random for a quick check on random pixels)")
    if args.warmup < 0:
        raise UsageError(f"--warmup must be >= 0; received {args.warmup}")
    output, labels_path, report_path = _output_paths(args, kind)
    inputs = {"--data": args.data if data_kind in ("npy", "images") else None, "--data-dir": args.data_dir,
              "--weights": args.weights if kind == "registry" and args.weights not in ("auto", "none", "imagenet")
              else None, "the model": None if kind == "registry" else args.model}
    check_outputs_spare_inputs({"--output": output, "the labels file": labels_path, "the report": report_path},
                               inputs)
    return Plan(kind, args.model, output, labels_path, report_path, data_kind)


# --------------------------------------------------------------------------- progress and staging

class _Progress:
    """Step lines with timings on stderr (nothing when quiet)."""

    def __init__(self, prog: str, quiet: bool):
        self.prog, self.quiet, self.started = prog, quiet, time.perf_counter()

    def say(self, message: str) -> None:
        if not self.quiet:
            print(f"{self.prog}: {message}", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def step(self, what: str) -> Iterator[None]:
        self.say(f"{what} ...")
        start = time.perf_counter()
        yield
        self.say(f"{what}: done in {time.perf_counter() - start:.1f} s")


class _Staging:
    """Files written next to their final paths under temporary names, renamed only by ``commit``."""

    def __init__(self):
        self.pending: list[tuple[str, str]] = []

    def reserve(self, final: str) -> str:
        fd, tmp = temp_file_beside(final)
        os.close(fd)
        self.pending.append((tmp, final))
        return tmp

    def write(self, final: str, text: str) -> None:
        with open(self.reserve(final), "w", encoding="utf-8") as f:
            f.write(text)

    def commit(self) -> None:
        done = []
        try:
            for tmp, final in self.pending:
                os.replace(tmp, final)
                done.append(final)
        except BaseException:
            for final in done:
                with contextlib.suppress(OSError):
                    os.remove(final)
            raise
        self.pending = []

    def discard(self) -> None:
        for tmp, _ in self.pending:
            with contextlib.suppress(OSError):
                os.remove(tmp)
        self.pending = []


# --------------------------------------------------------------------------- model

def _registry_model(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from keras_lightnets import create_model, model_config

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
        raise UsageError(str(err)) from None
    preprocessing = "none" if config.preprocessing == "in_model" else config.preprocessing
    return model, {"weights": weights, "flavour": args.flavour, "registry_preprocessing": preprocessing}


def load_model(args: argparse.Namespace, plan: Plan) -> tuple[Any, dict[str, Any]]:
    """The Keras model to convert and facts about it for the report."""
    from keras_lightnets.export.tflite import is_qat_model, model_flavour

    if plan.model_kind == "registry":
        model, facts = _registry_model(args)
    else:
        try:
            model = load_model_file(plan.model_kind, plan.model, unsafe=getattr(args, "unsafe", False))
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
        raise UsageError(f"the model's input size is open ({shape}); give --input-size N or HxW")
    if (shape[0] is not None and shape[0] != height) or (shape[1] is not None and shape[1] != width):
        raise UsageError(f"--input-size {height}x{width} does not fit the model's input size {shape[0]}x{shape[1]}")
    return int(height), int(width), int(shape[2])


def _class_count(model: Any) -> int | None:
    outputs = getattr(model, "outputs", None) or []
    if len(outputs) == 1 and len(outputs[0].shape) == 2 and outputs[0].shape[-1]:
        return int(outputs[0].shape[-1])
    return None


# --------------------------------------------------------------------------- data

@dataclass
class Data:
    """Images for calibration or verification: float32 ``(N, H, W, C)`` pixels in ``[0, 255]``
    (mapped by ``--preprocessing`` once loaded); ``which``: the images, in words, for the report."""

    images: Any
    labels: Any = None
    class_names: list[str] | None = None
    skipped: list[str] = field(default_factory=list)
    which: str = ""


PURPOSES = ("calibration", "verification")


def _npy_array(path: str, shape: tuple[int, int, int]):
    import numpy as np

    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise UsageError(f"--data {path!r} is not a readable .npy array ({err})") from None
    if array.ndim != 4 or tuple(array.shape[1:]) != shape:
        raise UsageError(
            f"--data {path!r} has shape {array.shape}; the model takes (N, {', '.join(map(str, shape))}) images"
        )
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise UsageError(f"--data {path!r} has dtype {array.dtype}; expected pixels as float or integers")
    if len(array) == 0:
        raise UsageError(f"--data {path!r} holds no image")
    return array


def _npy_data(path: str, shape: tuple[int, int, int], limit: int, purposes: Sequence[str]) -> dict[str, Data]:
    """The file's first images for one purpose; for both, its first half calibrates and its second
    half verifies (the same single image when the file holds only one)."""
    import numpy as np

    array = _npy_array(path, shape)
    count = len(array)
    half = (count + 1) // 2 if len(purposes) == 2 and count > 1 else 0
    ranges = {"calibration": (0, min(limit, half or count)), "verification": (half, min(count, half + limit))}
    parts = {}
    for purpose in purposes:
        start, stop = ranges[purpose]
        images = np.asarray(array[start:stop], dtype=np.float32)
        if not np.all(np.isfinite(images)):
            raise UsageError(f"--data {path!r} holds NaN or infinite values")
        shared = " (the file holds one image: calibration and verification share it)" if (
            len(purposes) == 2 and count == 1) else ""
        parts[purpose] = Data(images, which=f"images {start}..{stop - 1} of {path}{shared}")
    return parts


def _image_data(args: argparse.Namespace, shape: tuple[int, int, int], purposes: Sequence[str]) -> dict[str, Data]:
    """Calibration from the source's training images, verification from its held-out ones
    (``data.sources.HELD_OUT``): disjoint, and never the images a model from ``lightnets train`` learned."""
    from keras_lightnets.data.sources import load_images

    if shape[2] not in (1, 3):
        raise UsageError(f"--data {args.data!r}: image sources give 1 or 3 channels; the model takes {shape[2]}")
    parts = {}
    for purpose in purposes:
        split = "train" if purpose == "calibration" else "test"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skipped files are counted in the report instead
            try:
                loaded = load_images(args.data, image_size=shape[:2], channels=shape[2], split=split,
                                     limit=args.num_samples, data_dir=args.data_dir)
            except (ValueError, OSError) as err:
                raise UsageError(f"--data {args.data!r}: {errors.one_line(err)}") from None
        which = ("training split" if split == "train" else "held-out split") + f" of {args.data} (seed 0)"
        parts[purpose] = Data(loaded.images, loaded.labels, list(loaded.class_names), list(loaded.skipped), which)
    return parts


def load_data(args: argparse.Namespace, plan: Plan, shape: tuple[int, int, int], preprocessing: str,
              purposes: Sequence[str] = PURPOSES) -> dict[str, Data]:
    """``--data`` read at the model's input size for each of ``purposes`` ("calibration",
    "verification"), disjoint images when both are asked for, mapped by ``preprocessing``."""
    import numpy as np

    from keras_lightnets.imagenet import preprocess_input

    purposes = [p for p in PURPOSES if p in purposes]
    if plan.data_kind is None or not purposes:
        return {}
    if plan.data_kind == "random":
        parts = {p: Data(np.random.default_rng(seed).uniform(0, 255, (args.num_samples, *shape)).astype(np.float32),
                         which=f"random pixels (seed {seed})") for seed, p in enumerate(purposes)}
    elif plan.data_kind == "npy":
        parts = _npy_data(args.data, shape, args.num_samples, purposes)
    else:
        parts = _image_data(args, shape, purposes)
    for data in parts.values():
        data.images = preprocess_input(np.array(data.images, dtype=np.float32), mode=preprocessing)
    return parts


def _imagenet_names() -> list[str]:
    from keras_lightnets.imagenet import class_index

    index = class_index()
    return [index[i][1] for i in range(len(index))]


def _class_names(plan: Plan, data: Data | None, classes: int | None) -> tuple[list[str] | None, str | None]:
    """Names of the model's classes and where they come from ("data" or "imagenet"), if known."""
    if classes is None:
        return None, None
    if data is not None and data.class_names and len(data.class_names) == classes:
        return list(data.class_names), "data"
    if plan.model_kind == "registry" and classes == 1000:
        return _imagenet_names(), "imagenet"
    return None, None


# --------------------------------------------------------------------------- the run

def _convert(args, plan: Plan, progress: _Progress, staging: _Staging) -> dict[str, Any]:
    from keras_lightnets.export.tflite import benchmark_tflite, to_tflite, verify_tflite

    with progress.step(f"loading model {plan.model}"):
        model, facts = load_model(args, plan)
    shape = _input_shape(model, args)
    preprocessing = facts.pop("registry_preprocessing") if args.preprocessing == "auto" else args.preprocessing
    facts.update(input_shape=list(shape), preprocessing=preprocessing)
    if args.quantization == "int8" and plan.data_kind is None and not facts["qat"]:
        raise UsageError("-q int8 of a float (not quantization-aware) model needs --data for calibration")
    if args.per_tensor and facts["qat"]:
        raise UsageError("--per-tensor applies to float models; a quantization-aware model keeps its per-channel "
                         "weight quantization")
    # calibration (int8 of a float model) and verification read disjoint images of --data
    purposes = [p for p, wanted in zip(PURPOSES, (args.quantization == "int8" and not facts["qat"], args.verify),
                                       strict=True) if wanted]
    parts: dict[str, Data] = {}
    if plan.data_kind is not None:
        with progress.step(f"reading --data {args.data}"):
            parts = load_data(args, plan, shape, preprocessing, purposes or ["calibration"])
        for purpose, data in parts.items():
            progress.say(f"{purpose}: {len(data.images)} images, {data.which}"
                         + (f", {len(data.skipped)} unreadable files skipped" if data.skipped else ""))
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
    report: dict[str, Any] = {"model": facts, "export": export.as_dict()}
    skipped = [f for data in parts.values() for f in data.skipped]
    report["data"] = None if first is None else {
        "source": args.data, "samples": sum(len(d.images) for d in parts.values()), "skipped": len(skipped),
        "skipped_files": skipped[:_SHOWN_SKIPPED], "class_names": first.class_names,
        **{p: {"images": parts[p].which, "samples": len(parts[p].images)} if p in purposes else None
           for p in PURPOSES},
    }
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
        staging.write(plan.labels_path, "".join(f"{n}\n" for n in names))
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


def run(args: argparse.Namespace, *, prog: str = PROG) -> int:
    """Carry out parsed arguments; returns the exit code (0, 1 or 2), errors as one stderr line."""
    from keras_lightnets.cli import native_logs_hidden

    progress, staging = _Progress(prog, args.quiet), _Staging()
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            if args.quiet:
                warnings.simplefilter("ignore")
            plan = make_plan(args)
            remove_stale_temporaries(os.path.dirname(plan.output), recursive=False)
            with native_logs_hidden(args.quiet):  # TensorFlow is imported from here on
                report = _convert(args, plan, progress, staging)
            report["seconds"] = round(time.perf_counter() - started, 2)
            staging.write(plan.report_path, json.dumps(report, indent=1, default=str) + "\n")
            staging.commit()
    except KeyboardInterrupt:
        print(f"{prog}: error: interrupted; nothing written", file=sys.stderr)
        return 1
    except (errors.InputError, ValueError, FileNotFoundError) as err:
        print(f"{prog}: error: {errors.one_line(err)}", file=sys.stderr)
        return errors.EXIT_BAD_INPUT
    except (LoadError, ConversionError) as err:
        print(f"{prog}: error: {errors.one_line(err)}", file=sys.stderr)
        return errors.exit_code(err)
    except Exception as err:
        print(f"{prog}: error: {type(err).__name__}: {errors.one_line(err)}", file=sys.stderr)
        return errors.exit_code(err)
    finally:
        staging.discard()
    for line in _summary(report):
        print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``convert_tflite`` entry point: parse ``argv`` (default ``sys.argv[1:]``) and run."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as err:
        print(f"{PROG}: error: {errors.one_line(err)}", file=sys.stderr)
        return errors.EXIT_BAD_INPUT
    except SystemExit as done:  # --help
        return int(done.code or 0)
    return run(args)
