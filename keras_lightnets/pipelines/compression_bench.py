"""Compression figures on the bundled digits: float vs int8 PTQ vs int8 QAT vs pruned + QAT.

The implementation behind ``tools/benchmark_compression.py`` (its command line:
``keras_lightnets.cli.benchmark_compression``). For each model (default:
MobileNetV2 0.35, MobileNetV3Small, ShuffleNetV2 0.5) it trains a classifier on the
digits' training split (upscaled to ``image_size``) with a fixed recipe (``fine_tune``
from scratch: ``epochs`` frozen-phase epochs then ``fine_tune_epochs``), makes every
variant of ``keras_lightnets.pipelines.variants``, measures each ``.tflite`` with LiteRT
on the held-out split (accuracy, size, gzip size, zeros in conv/dense kernels, latency),
and checks the targets:

* QAT int8 top-1 within 1.0 point of the float Keras model; PTQ int8 within 2 points;
* 50% pruned + sparsity-preserving QAT int8 within 1.5 points, >= 50% zeros in the
  pruned kernels of the .tflite;
* int8 .tflite <= 0.30x the float .tflite (checked for per-channel and per-tensor
  weight scales); 75% pruned int8, gzip-compressed, <= 0.15x;
* int8 latency below float latency (LiteRT, XNNPACK, same threads); the table also
  lists the ops XNNPACK left to TFLite's own kernels.

Writes ``OUTPUT/compression.md`` (table + checks, labelled with the machine and date),
``OUTPUT/compression.json`` and ``OUTPUT/compression.png``, all or none; each model's
training run and ``.tflite`` files go to ``OUTPUT/<model>/``.

    python tools/benchmark_compression.py --output bench-output
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from keras_lightnets import files
from keras_lightnets.export.delegation import format_op_counts
from keras_lightnets.pipelines.variants import Recipe, VariantResult, run_variants

DEFAULT_MODELS = ("mobilenet_v2_035", "mobilenet_v3_small_100", "shufflenet_v2_x0_5")
REPORT_FILES = {"markdown": "compression.md", "json": "compression.json", "plot": "compression.png"}
HELD_OUT_SPLIT = "test"
# The README's table; int8_qat_per_tensor (newer) is made when asked for (--variants)
DEFAULT_VARIANTS = ("float", "int8_ptq", "int8_ptq_per_tensor", "int8_qat", "int8_qat_pruned50", "int8_qat_pruned75")


@dataclass(frozen=True)
class CompressionBenchmark:
    """What one benchmark run does: the ``models`` (registry names), the ``output`` folder,
    the digits' ``image_size`` (pixels, square), the training recipe (``epochs`` +
    ``fine_tune_epochs`` of ``fine_tune`` from scratch), the LiteRT ``threads`` and timed
    ``runs`` per file, the ``variants`` made (names in ``variants.VARIANTS``) and whether the files are
    written without tensor names (``strip_names``)."""

    models: tuple[str, ...] = DEFAULT_MODELS
    output: str = "bench-output"
    image_size: int = 48
    epochs: int = 10
    fine_tune_epochs: int = 5
    threads: int = 1
    runs: int = 100
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    strip_names: bool = False

    @property
    def recipe(self) -> Recipe:
        """The variants' fine-tune and benchmark recipe."""
        return Recipe(threads=self.threads, runs=self.runs, strip_names=self.strip_names)


@dataclass
class ModelFigures:
    """One model's figures: the float Keras model's accuracy (a fraction, held-out split),
    each variant's ``VariantResult``, and the target checks ``(target, met, measured)``."""

    keras_accuracy: float
    results: dict[str, VariantResult]
    checks: list[tuple[str, bool, str]] = field(default_factory=list)


def checks(results: dict[str, VariantResult], keras_accuracy: float) -> list[tuple[str, bool, str]]:
    """``(target, met, measured)`` for one model's variants (targets of variants not run are skipped)."""
    r = results
    points = {name: 100 * (keras_accuracy - v.accuracy) for name, v in r.items()}
    out = []
    if "int8_qat" in r:
        out.append(("QAT int8 within 1.0 pt of float Keras", points["int8_qat"] <= 1.0,
                    f"{points['int8_qat']:+.2f} pt"))
    if "int8_ptq" in r:
        out.append(("PTQ int8 within 2.0 pt", points["int8_ptq"] <= 2.0, f"{points['int8_ptq']:+.2f} pt"))
    if "int8_qat_pruned50" in r:
        p50 = r["int8_qat_pruned50"]
        out.append(("50% pruned + PQAT int8 within 1.5 pt", points["int8_qat_pruned50"] <= 1.5,
                    f"{points['int8_qat_pruned50']:+.2f} pt"))
        out.append((">= 50% zeros in pruned kernels of the .tflite", p50.kernel_sparsity >= 0.5,
                    f"{p50.kernel_sparsity:.6f}"))
    if "int8_ptq_per_tensor" in r:
        out.append(("PTQ int8, per-tensor weights, within 2.0 pt", points["int8_ptq_per_tensor"] <= 2.0,
                    f"{points['int8_ptq_per_tensor']:+.2f} pt"))
    for name, scales in (("int8_ptq", "per-channel"), ("int8_ptq_per_tensor", "per-tensor")):
        if "float" in r and name in r:
            ratio = r[name].size_bytes / r["float"].size_bytes
            out.append((f"int8 size <= 0.30x float ({scales} weights)", ratio <= 0.30, f"{ratio:.3f}x"))
    if "float" in r and "int8_ptq" in r and r["float"].latency_ms and r["int8_ptq"].latency_ms:
        out.append(("int8 latency < float latency", r["int8_ptq"].latency_ms < r["float"].latency_ms,
                    f"{r['int8_ptq'].latency_ms:.3f} vs {r['float'].latency_ms:.3f} ms"))
    if "float" in r and "int8_qat_pruned75" in r:
        ratio = r["int8_qat_pruned75"].gzip_bytes / r["float"].size_bytes
        out.append(("75% pruned int8 gzip <= 0.15x float", ratio <= 0.15, f"{ratio:.3f}x"))
    return out


# --------------------------------------------------------------------------- measuring

def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _trained_model(benchmark: CompressionBenchmark, model_name: str, test):
    """``(model, accuracy)``: the best model of a ``fine_tune`` run from scratch on the digits
    (in ``OUTPUT/<model>/train``) and its Keras accuracy on ``test`` (a fraction)."""
    import keras

    from keras_lightnets.training import fine_tune

    trained = fine_tune(model_name, "digits", weights=None, image_size=benchmark.image_size,
                        epochs_frozen=benchmark.epochs, epochs_unfrozen=benchmark.fine_tune_epochs,
                        output_dir=os.path.join(benchmark.output, model_name, "train"), quiet=True)
    model = keras.saving.load_model(trained.best_path, safe_mode=True)
    probabilities = model.predict(test.images, verbose=0)
    return model, float((probabilities.argmax(-1) == test.labels).mean())


def measure_model(benchmark: CompressionBenchmark, model_name: str, train, test,
                  progress: Callable[[str], None]) -> ModelFigures:
    """Train ``model_name``, make and measure every variant into ``OUTPUT/<model>``, check the targets.

    ``train``/``test``: the digits' ``ImageData`` splits at ``benchmark.image_size``."""
    model, keras_accuracy = _trained_model(benchmark, model_name, test)
    results = run_variants(model, benchmark.variants, os.path.join(benchmark.output, model_name),
                           (train.images, train.labels), (test.images, test.labels), benchmark.recipe,
                           progress=progress)
    return ModelFigures(keras_accuracy, results, checks(results, keras_accuracy))


def run(benchmark: CompressionBenchmark, progress: Callable[[str], None] = _to_stderr) -> dict[str, ModelFigures]:
    """``measure_model`` for each of ``benchmark.models``, in order (``progress``: one line per step)."""
    from keras_lightnets.data.sources import load_images

    os.makedirs(benchmark.output, exist_ok=True)
    size = (benchmark.image_size, benchmark.image_size)
    train = load_images("digits", image_size=size, split="train")
    test = load_images("digits", image_size=size, split=HELD_OUT_SPLIT)
    figures = {}
    for model_name in benchmark.models:
        progress(f"== {model_name}")
        figures[model_name] = measure_model(benchmark, model_name, train, test, lambda m: progress(f"   {m}"))
    return figures


# --------------------------------------------------------------------------- writing

def markdown(figures: dict[str, ModelFigures], label: str, benchmark: CompressionBenchmark) -> str:
    """The report: recipe, one table row per model and variant, then the checks."""
    lines = [f"# Compression on the bundled digits ({benchmark.image_size}x{benchmark.image_size} px)", "",
             f"Machine: {label}.", "",
             f"Recipe: from scratch, {benchmark.epochs}+{benchmark.fine_tune_epochs} epochs (`lightnets train`); "
             "pruning 3 epochs (polynomial ramp) at Adam 2e-4, QAT 2 epochs at Adam 1e-5 (2e-4 after pruning) "
             "(`keras_lightnets.pipelines.variants.Recipe`). "
             "Accuracy: LiteRT on the 359 held-out images. Files "
             + ("without tensor names (`--strip-names`)." if benchmark.strip_names else "with tensor names."), "",
             "| model | variant | accuracy | Δ vs Keras (pt) | size KiB | gzip KiB | size / float | "
             "kernel zeros | latency ms | p90 ms | outside XNNPACK |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for model, entry in figures.items():
        float_size = entry.results["float"].size_bytes if "float" in entry.results else None
        for name, r in entry.results.items():
            ratio = f"{r.size_bytes / float_size:.3f}" if float_size else "-"
            latency = "-" if r.latency_ms is None else f"{r.latency_ms:.3f}"
            p90 = "-" if r.p90_ms is None else f"{r.p90_ms:.3f}"
            outside = format_op_counts(r.ops_outside_delegate, empty="-")
            points = 100 * (entry.keras_accuracy - r.accuracy)
            lines.append(f"| {model} | {name} | {r.accuracy:.4f} | {points:+.2f} | {r.size_bytes / 1024:.1f} | "
                         f"{r.gzip_bytes / 1024:.1f} | {ratio} | {r.kernel_sparsity:.4f} | {latency} | {p90} | "
                         f"{outside} |")
    lines += ["", "| model | target | met | measured |", "|---|---|---|---|"]
    for model, entry in figures.items():
        lines += [f"| {model} | {t} | {'yes' if ok else '**no**'} | {m} |" for t, ok, m in entry.checks]
    return "\n".join(lines) + "\n"


def report_data(figures: dict[str, ModelFigures], label: str, image_size: int) -> dict:
    """The JSON report: machine label, image size, and per model its accuracy, variants and checks."""
    return {
        "machine": label, "image_size": image_size,
        "models": {m: {"keras_accuracy": e.keras_accuracy, "variants": {n: r.as_dict() for n, r in e.results.items()},
                       "checks": [{"target": t, "met": ok, "measured": v} for t, ok, v in e.checks]}
                   for m, e in figures.items()},
    }


def write_plot(figures: dict[str, ModelFigures], path: str | os.PathLike) -> None:
    """Accuracy vs size (left, log size) and latency per variant (right), as a PNG at ``path``."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4))
    left, right = figure.subplots(1, 2)
    for model, entry in figures.items():
        res = entry.results
        names = list(res)
        left.plot([res[n].size_bytes / 1024 for n in names], [res[n].accuracy for n in names], "o-", label=model)
        for n in names:
            left.annotate(n, (res[n].size_bytes / 1024, res[n].accuracy), fontsize=6)
        right.bar([f"{model}\n{n}" for n in names], [res[n].latency_ms or 0 for n in names])
    left.set_xscale("log")
    left.set_xlabel("size (KiB, log)")
    left.set_ylabel("test accuracy (LiteRT)")
    left.legend(fontsize=7)
    right.set_ylabel("median latency (ms)")
    right.tick_params(axis="x", rotation=90, labelsize=5)
    figure.tight_layout()
    with files.atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110)


def write_report(figures: dict[str, ModelFigures], benchmark: CompressionBenchmark, label: str) -> str:
    """Write ``REPORT_FILES`` into ``benchmark.output``, all or none; returns the Markdown text."""
    text = markdown(figures, label, benchmark)
    final = {key: os.path.join(benchmark.output, name) for key, name in REPORT_FILES.items()}
    with files.Staging() as staging:
        files.write_text(staging.reserve(final["markdown"]), text)
        files.write_json(staging.reserve(final["json"]), report_data(figures, label, benchmark.image_size))
        write_plot(figures, staging.reserve(final["plot"]))
    return text
