"""Detector export figures on the digit scenes: float Keras vs float / int8 PTQ / int8 QAT ``.tflite``.

The implementation behind ``tools/benchmark_detection_export.py``. It trains one detector from
scratch as ``detection_bench`` does (default: its SSDLite-MobileNetV2 recipe, same scenes), then
makes each variant with ``to_tflite(postprocess="regular", strip_names=True)`` (TFLite's
``TFLite_Detection_PostProcess`` at the end) and measures it with LiteRT on the held-out scenes:

* ``float``: the float32 file (the baseline a user would otherwise ship);
* ``int8_ptq``: full int8, calibrated on ``calibration`` training scenes;
* ``int8_ptq_per_tensor``: the same with one scale per weight tensor (``per_channel=False``):
  per-channel files also hold a float32 scale and an int64 zero point for every output channel
  of every weight and bias tensor (TFLite's schema), about 0.05x of the float file for
  SSDLite-MobileNetV2, which per-tensor files do without;
* ``int8_qat``: ``compression.quantize_aware`` on the trained detector, ``qat_epochs`` of
  ``fit_detector`` at ``qat_learning_rate``, then full int8;
* ``int8_qat_per_tensor``: the same with ``quantize_aware(per_channel=False)`` (BatchNorms folded
  into their convolutions first, one range per kernel), so the file has one scale per weight tensor.

Per variant: COCO mAP@.5 / mAP@[.5:.95] of the file's detections and of the Keras model's
(``verify_tflite``: the same thresholds, box agreement at IoU 0.9), file size, LiteRT latency
(``benchmark_tflite``, ``threads`` threads, median of ``runs``) and the ops XNNPACK leaves out.
Targets (issue 14): QAT int8 (either) mAP@.5 within 1.0 point of the float Keras model, PTQ int8 (either)
within 2.0 points, int8 file <= 0.30x the float file, int8 latency below float latency.

Writes ``OUTPUT/detection_export.md`` (the table the README includes), ``.json`` and ``.png``,
all or none; the trained detector and the files go to ``OUTPUT/<detector>/``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from keras_lightnets import files
from keras_lightnets.errors import InputError
from keras_lightnets.export.delegation import format_op_counts
from keras_lightnets.pipelines.detection_bench import (
    DEFAULT_RECIPES,
    HELD_OUT_SPLIT,
    DetectionBenchmark,
    DetectorRecipe,
    scenes,
)
from keras_lightnets.pipelines.variants import VARIANTS as SPECS
from keras_lightnets.validation import check_positive_int

# How each is made (quantization, QAT, per channel): the classifier variants' specs of the same names.
VARIANTS = ("float", "int8_ptq", "int8_ptq_per_tensor", "int8_qat", "int8_qat_per_tensor")
INT8_VARIANTS = VARIANTS[1:]
REPORT_FILES = {"markdown": "detection_export.md", "json": "detection_export.json", "plot": "detection_export.png"}
# largest mAP@.5 loss (points) vs float Keras
TARGETS = {"int8_qat": 1.0, "int8_qat_per_tensor": 1.0, "int8_ptq": 2.0, "int8_ptq_per_tensor": 2.0}
MAX_INT8_SIZE_RATIO = 0.30


@dataclass(frozen=True)
class DetectionExportBenchmark:
    """The run's settings: the detector ``recipe`` and scenes (as ``detection_bench``), the
    ``variants``, ``calibration`` scenes for PTQ, the QAT fine-tune (``qat_epochs`` at
    ``qat_learning_rate``), LiteRT ``threads`` and timed ``runs``, and the ``output`` folder."""

    recipe: DetectorRecipe = DEFAULT_RECIPES[0]
    train_scenes: int = 5000
    validation_scenes: int = 100
    test_scenes: int = 500
    time_budget: float = 900.0
    variants: tuple[str, ...] = VARIANTS
    calibration: int = 100
    qat_epochs: int = 2
    qat_learning_rate: float = 1e-4
    threads: int = 1
    runs: int = 50
    seed: int = 0
    output: str = "bench-output/detection_export"
    quiet: bool = False

    def __post_init__(self):
        for name in ("train_scenes", "validation_scenes", "test_scenes", "calibration", "qat_epochs", "threads",
                     "runs"):
            check_positive_int(name, getattr(self, name))
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants:
            raise InputError(f"`variants` must be a non-empty subset of {', '.join(VARIANTS)}; received "
                             f"{list(self.variants)}")

    def training(self) -> DetectionBenchmark:
        """``detection_bench``'s settings for training the detector."""
        return DetectionBenchmark(recipes=(self.recipe,), train_scenes=self.train_scenes,
                                  validation_scenes=self.validation_scenes, test_scenes=self.test_scenes,
                                  time_budget=self.time_budget, seed=self.seed, output=self.output, quiet=self.quiet)


@dataclass
class VariantFigures:
    """One ``.tflite`` variant measured on the held-out scenes (mAP as fractions, size in bytes,
    latency in milliseconds per invoke). ``keras_map50`` and ``box_agreement`` are against the
    Keras model the file was converted from: the float detector, or for ``int8_qat`` the
    quantization-aware model."""

    name: str
    path: str
    size_bytes: int
    tflite_map50: float
    tflite_map: float
    keras_map50: float
    box_agreement: float
    latency_ms: float
    delegate_partitions: int
    ops_outside_delegate: dict[str, int]
    seconds: float


@dataclass
class ExportFigures:
    """The run: the detector, its float Keras mAP, every variant and the target checks
    ``(target, met, measured)``."""

    detector: str
    recipe: dict
    keras_map50: float
    keras_map: float
    epochs: int
    train_seconds: float
    variants: dict[str, VariantFigures] = field(default_factory=dict)
    checks: list[tuple[str, bool, str]] = field(default_factory=list)


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def checks(figures: ExportFigures) -> list[tuple[str, bool, str]]:
    """``(target, met, measured)`` for the variants that were run."""
    v, out = figures.variants, []
    for name, limit in TARGETS.items():
        if name in v:
            loss = 100 * (figures.keras_map50 - v[name].tflite_map50)
            out.append((f"{name} mAP@.5 within {limit:.1f} pt of float Keras", loss <= limit, f"{-loss:+.2f} pt"))
    if "float" in v:
        for name in INT8_VARIANTS:
            if name in v:
                ratio = v[name].size_bytes / v["float"].size_bytes
                out.append((f"{name} file <= {MAX_INT8_SIZE_RATIO:.2f}x float", ratio <= MAX_INT8_SIZE_RATIO,
                            f"{ratio:.3f}x"))
                out.append((f"{name} latency < float", v[name].latency_ms < v["float"].latency_ms,
                            f"{v[name].latency_ms:.2f} vs {v['float'].latency_ms:.2f} ms"))
    return out


def _inputs(split, preprocessing: str) -> np.ndarray:
    from keras_lightnets.detection.evaluation import detector_inputs

    return detector_inputs(split.images, preprocessing)


def _qat_detector(benchmark: DetectionExportBenchmark, detector, data: dict, folder: str,
                  per_channel: bool = True):
    """The trained ``detector`` made quantization-aware (``per_channel`` as ``quantize_aware``
    takes it) and fine-tuned for ``qat_epochs`` at
    ``qat_learning_rate`` (cosine, no warmup), otherwise as the float detector was trained (the
    recipe's optimizer, augmentation, batch, loss: a fine-tune on images the float model never
    saw, augmented ones, moves its BatchNorm statistics away from the test images')."""
    from keras_lightnets.compression import quantize_aware
    from keras_lightnets.training.detection import fit_detector

    qat = quantize_aware(detector, per_channel=per_channel)
    result = fit_detector(
        qat, data["train"], data["validation"], epochs_frozen=benchmark.qat_epochs, epochs_unfrozen=0,
        backbone_pretrained=False, learning_rate=benchmark.qat_learning_rate, schedule="cosine", warmup_epochs=0,
        output_dir=folder, overwrite=True, seed=benchmark.seed, quiet=benchmark.quiet,
        **benchmark.recipe.fit_options(),
    )
    return result.model


def measure_variant(name: str, model, path: str, calibration: np.ndarray, test_images: np.ndarray, truth,
                    benchmark: DetectionExportBenchmark) -> VariantFigures:
    """Convert ``model`` to ``path`` as ``name`` asks, verify it on the test scenes, time it."""
    from keras_lightnets.export import benchmark_tflite, to_tflite, verify_tflite

    started = time.monotonic()
    spec = SPECS[name]
    post_training = spec.quantization == "int8" and not spec.qat
    export = to_tflite(model, path, spec.quantization, calibration if post_training else None, postprocess="regular",
                       strip_names=True, per_channel=spec.per_channel)
    verified = verify_tflite(path, model, test_images, ground_truth=truth)
    timing = benchmark_tflite(path, threads=benchmark.threads, runs=benchmark.runs)
    return VariantFigures(
        name=name, path=path, size_bytes=export.size_bytes, tflite_map50=verified.tflite_map50,
        tflite_map=verified.tflite_map, keras_map50=verified.keras_map50, box_agreement=verified.box_agreement,
        latency_ms=timing.median_ms, delegate_partitions=timing.delegate_partitions,
        ops_outside_delegate=timing.ops_outside_delegate, seconds=round(time.monotonic() - started, 1),
    )


def run(benchmark: DetectionExportBenchmark, progress: Callable[[str], None] = _to_stderr) -> ExportFigures:
    """Train the detector, then make and measure every variant."""
    from keras_lightnets.pipelines import detection_bench

    training = benchmark.training()
    data = scenes(training, benchmark.recipe.image_size, benchmark.recipe.train_scenes)
    progress(f"== {benchmark.recipe.name}: training")
    trained, _, _, _ = detection_bench.train(training, benchmark.recipe, data, progress)
    detector = trained.model
    folder = os.path.join(benchmark.output, benchmark.recipe.name)
    scores = detection_bench.evaluate(detector, data[HELD_OUT_SPLIT], trained.preprocessing)
    progress(f"float Keras: mAP@.5 {scores['map50']:.4f}")
    test_images = _inputs(data[HELD_OUT_SPLIT], trained.preprocessing)
    calibration = _inputs(data["train"], trained.preprocessing)[: benchmark.calibration]
    figures = ExportFigures(detector=benchmark.recipe.name, recipe=asdict(benchmark.recipe),
                            keras_map50=float(scores["map50"]), keras_map=float(scores["map"]),
                            epochs=trained.epochs, train_seconds=trained.seconds)
    for name in benchmark.variants:
        model = detector
        if SPECS[name].qat:
            progress(f"{name}: quantization-aware fine-tune, {benchmark.qat_epochs} epoch(s)")
            model = _qat_detector(benchmark, detector, data, os.path.join(folder, name.replace("int8_", "")),
                                  per_channel=SPECS[name].per_channel)
        result = measure_variant(name, model, os.path.join(folder, f"{name}.tflite"), calibration, test_images,
                                 data[HELD_OUT_SPLIT], benchmark)
        figures.variants[name] = result
        progress(f"{name}: mAP@.5 {result.tflite_map50:.4f} (Keras {result.keras_map50:.4f}), "
                 f"{result.size_bytes / 1e6:.2f} MB, {result.latency_ms:.2f} ms")
    figures.checks = checks(figures)
    return figures


# --------------------------------------------------------------------------- writing


def markdown(figures: ExportFigures, benchmark: DetectionExportBenchmark, label: str) -> str:
    """The report: what was run, one row per variant, the checks."""
    lines = [
        "# Detector export on the bundled digit scenes", "",
        f"Machine: {label}.", "",
        f"{figures.detector} trained from scratch ({figures.epochs} epochs, {figures.train_seconds / 60:.1f} min; "
        f"see the detection benchmark's recipe), float Keras mAP@.5 {figures.keras_map50:.3f}, "
        f"mAP@[.5:.95] {figures.keras_map:.3f} on the {benchmark.test_scenes} held-out `{HELD_OUT_SPLIT}` scenes. "
        "Each file ends with TFLite_Detection_PostProcess (regular NMS, score > 0.05, IoU 0.5, 100 detections) "
        "and is written without tensor names (`strip_names`, as shipped); "
        f"PTQ calibrated on {benchmark.calibration} training scenes; QAT: {benchmark.qat_epochs} epoch(s) at "
        f"{benchmark.qat_learning_rate:g}. LiteRT (XNNPACK) latency: median of {benchmark.runs} runs, "
        f"{benchmark.threads} thread(s), batch 1. Box agreement: share of the Keras model's detections "
        "(score >= 0.5) the file reproduces (same class, IoU >= 0.9).", "",
        "| variant | LiteRT mAP@.5 | vs float Keras | LiteRT mAP@[.5:.95] | box agreement | size (MB) | "
        "size vs float | latency (ms) | ops outside XNNPACK |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    base = figures.variants.get("float")
    for v in figures.variants.values():
        ratio = f"{v.size_bytes / base.size_bytes:.3f}x" if base else "-"
        lines.append(
            f"| {v.name} | {v.tflite_map50:.3f} | {100 * (v.tflite_map50 - figures.keras_map50):+.2f} pt | "
            f"{v.tflite_map:.3f} | {v.box_agreement:.3f} | {v.size_bytes / 1e6:.2f} | {ratio} | {v.latency_ms:.2f} | "
            f"{format_op_counts(v.ops_outside_delegate)} |")
    lines += ["", "Checks:", ""] + [f"- [{'x' if met else ' '}] {target}: {measured}"
                                    for target, met, measured in figures.checks]
    return "\n".join(lines) + "\n"


def write_plot(figures: ExportFigures, path: str | os.PathLike) -> None:
    """mAP@.5 per variant (left, float Keras as a line) and latency vs size (right), a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.6))
    left, right = figure.subplots(1, 2)
    names = list(figures.variants)
    left.bar(names, [figures.variants[n].tflite_map50 for n in names])
    left.axhline(figures.keras_map50, color="grey", linestyle=":", label="float Keras")
    left.set_ylim(0, 1)
    left.tick_params(axis="x", labelrotation=15, labelsize=8)
    left.set_ylabel("LiteRT mAP@.5")
    left.legend(fontsize=7)
    for n in names:
        v = figures.variants[n]
        right.scatter(v.size_bytes / 1e6, v.latency_ms, label=n)
    right.set_xlabel("file size (MB)")
    right.set_ylabel("latency (ms)")
    right.legend(fontsize=7)
    figure.tight_layout()
    with files.atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110)


def write_report(figures: ExportFigures, benchmark: DetectionExportBenchmark, label: str,
                 names: dict[str, str] | None = None) -> str:
    """Write the Markdown, JSON and PNG reports (``names``, default ``REPORT_FILES``) into
    ``benchmark.output``, all or none; returns the Markdown text."""
    text = markdown(figures, benchmark, label)
    final = {key: os.path.join(benchmark.output, name) for key, name in (names or REPORT_FILES).items()}
    data: dict[str, Any] = {"machine": label, "settings": {**asdict(replace(benchmark, recipe=None)),
                                                           "recipe": asdict(benchmark.recipe)},
                            "figures": asdict(figures)}
    with files.Staging() as staging:
        files.write_text(staging.reserve(final["markdown"]), text)
        files.write_json(staging.reserve(final["json"]), data)
        write_plot(figures, staging.reserve(final["plot"]))
    return text


