"""Deployment variants of a trained classifier, each a verified ``.tflite`` with its numbers.

One implementation behind ``lightnets demo``, ``lightnets compress`` and
``tools/benchmark_compression.py``:

=======================  ============================================================
``float``                float32 TFLite of the trained model
``int8_ptq``             full int8, post-training quantization (calibrated on train images)
``int8_ptq_per_tensor``  the same with one scale per weight tensor (smaller file)
``int8_qat``             full int8 after quantization-aware training
``int8_qat_per_tensor``  the same with one range per kernel (BatchNorms folded first)
``int8_qat_pruned50``    50% magnitude pruning, then sparsity-preserving QAT, full int8
``int8_qat_pruned75``    the same at 75%
=======================  ============================================================

Images are what the model takes (already preprocessed), ``(N, H, W, C)`` float32;
labels ``(N,)`` int class ids. Accuracy is measured on the ``.tflite`` with LiteRT.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from keras_lightnets.errors import InputError


@dataclass(frozen=True)
class VariantSpec:
    """How to make one variant: optional pruning, optional QAT, then TFLite conversion."""

    name: str
    quantization: str
    qat: bool = False
    sparsity: float | None = None
    per_channel: bool = True


VARIANTS = {
    spec.name: spec for spec in (
        VariantSpec("float", "none"),
        VariantSpec("int8_ptq", "int8"),
        VariantSpec("int8_ptq_per_tensor", "int8", per_channel=False),
        VariantSpec("int8_qat", "int8", qat=True),
        VariantSpec("int8_qat_per_tensor", "int8", qat=True, per_channel=False),
        VariantSpec("int8_qat_pruned50", "int8", qat=True, sparsity=0.5),
        VariantSpec("int8_qat_pruned75", "int8", qat=True, sparsity=0.75),
    )
}
DEMO_VARIANTS = ("float", "int8_ptq", "int8_qat_pruned50")


@dataclass(frozen=True)
class Recipe:
    """The fixed training recipe for the compressed variants (Adam, tf_keras).

    ``prune_epochs``: pruning fine-tune (sparsity ramps up over the first half, then
    holds); ``learning_rate``: its Adam rate; ``qat_epochs``: quantization-aware
    fine-tune, at ``qat_learning_rate`` from a trained model (QAT only has to adapt to
    the quantization: on the digits benchmark 2e-4 lost 1.1-1.4 points, 1e-5 none), at
    ``learning_rate`` right after pruning (the pruned model is still recovering: at
    1e-5 the 50%-pruned variants lost up to 2 points, at 2e-4 at most 1.4).
    ``threads`` / ``runs``: the LiteRT latency benchmark (0 runs: no benchmark).
    ``strip_names``: write the files without tensor names (``to_tflite(strip_names=True)``).
    """

    prune_epochs: int = 3
    qat_epochs: int = 2
    batch_size: int = 32
    learning_rate: float = 2e-4
    qat_learning_rate: float = 1e-5
    representative_samples: int = 100
    threads: int = 1
    runs: int = 50
    seed: int = 0
    strip_names: bool = False


@dataclass
class VariantResult:
    """One variant's file and figures. ``accuracy`` is a fraction (LiteRT on the test split);
    ``kernel_sparsity``: zeros in the CONV_2D/FULLY_CONNECTED weights of the file;
    ``delegate_partitions`` / ``ops_outside_delegate``: how XNNPACK covers the file
    (``export.delegate_coverage``)."""

    name: str
    path: str
    size_bytes: int
    gzip_bytes: int
    accuracy: float
    keras_accuracy: float
    top1_agreement: float | None
    kernel_sparsity: float
    latency_ms: float | None = None
    p90_ms: float | None = None
    peak_memory_kib: int | None = None
    delegate_partitions: int | None = None
    ops_outside_delegate: dict = field(default_factory=dict)
    export: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def check_variant_names(names: Sequence[str]) -> list[str]:
    """``names`` if every one is in ``VARIANTS`` (else ``InputError`` listing them)."""
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise InputError(f"`variants` must be a non-empty list of {', '.join(VARIANTS)}; received {list(names)!r}")
    return list(names)


def freeze_batch_norm(model) -> None:
    """Put every BatchNormalization (inside TFMOT wrappers too) in inference mode.

    The compressed variants fine-tune briefly from a trained model: batch statistics
    of a few epochs would move the moving averages away from what the weights were
    trained with (MobileNetV3's momentum is 0.999), so they stay as trained.
    """
    from keras_lightnets.compression import unwrap

    for layer in model.layers:
        inner = unwrap(layer)
        if type(inner).__name__ == "BatchNormalization":
            inner.trainable = False


def _fit(model, images, labels, epochs: int, learning_rate: float, recipe: Recipe, callbacks=(),
         verbose: int = 0) -> None:
    import tf_keras

    freeze_batch_norm(model)
    model.compile(optimizer=tf_keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images, labels, batch_size=recipe.batch_size, epochs=epochs, shuffle=True, verbose=verbose,
              callbacks=list(callbacks))


def make_variant(model, spec: VariantSpec, images: np.ndarray, labels: np.ndarray, recipe: Recipe, *,
                 verbose: int = 0, progress: Callable[[str], None] | None = None):
    """The model to convert for ``spec``: ``model`` itself, or a pruned and/or QAT copy trained
    on ``images``/``labels`` with ``recipe`` (a tf_keras model).

    ``verbose``: tf_keras' ``fit`` verbosity of the fine-tunes (0 silent, 1 a progress bar,
    2 one line per epoch; on stdout); ``progress``: told in one line when each fine-tune starts."""
    say = progress or (lambda message: None)
    import tensorflow as tf

    from keras_lightnets import compression

    tf.keras.utils.set_random_seed(recipe.seed)
    current = model
    if spec.sparsity:
        steps = max(1, int(np.ceil(len(images) / recipe.batch_size)))
        ramp_end = max(1, steps * max(1, recipe.prune_epochs // 2))
        pruned = compression.prune(model, spec.sparsity, begin_step=0, end_step=ramp_end,
                                   frequency=max(1, steps // 4))
        epochs = max(recipe.prune_epochs, 1)
        say(f"pruning fine-tune to {spec.sparsity:.0%} sparsity: {epochs} epoch(s) on {len(images)} images")
        _fit(pruned, images, labels, epochs, recipe.learning_rate, recipe, compression.pruning_callbacks(),
             verbose=verbose)
        current = compression.strip(pruned)
    if spec.qat:
        current = compression.quantize_aware(current, per_channel=spec.per_channel)
        learning_rate = recipe.learning_rate if spec.sparsity else recipe.qat_learning_rate
        if recipe.qat_epochs:  # 0: the QAT model as annotated, ranges from its initial values
            say(f"quantization-aware fine-tune: {recipe.qat_epochs} epoch(s) on {len(images)} images")
            _fit(current, images, labels, recipe.qat_epochs, learning_rate, recipe, verbose=verbose)
    return current


def export_variant(
    model, spec: VariantSpec, folder: str, train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray], recipe: Recipe = Recipe(),
) -> VariantResult:
    """Make, convert, evaluate (LiteRT, test split) and benchmark one variant into ``folder``."""
    from keras_lightnets.export import benchmark_tflite, delegate_coverage, to_tflite, verify_tflite
    from keras_lightnets.export.describe import tflite_kernel_sparsity

    variant = make_variant(model, spec, *train, recipe)
    path = os.path.join(folder, f"{spec.name}.tflite")
    report = to_tflite(variant, path, spec.quantization, per_channel=spec.per_channel, strip_names=recipe.strip_names,
                       representative_data=train[0][: recipe.representative_samples])
    check = verify_tflite(path, variant, test[0], labels=test[1])
    with open(path, "rb") as f:
        gzip_bytes = len(gzip.compress(f.read(), compresslevel=9))
    result = VariantResult(
        name=spec.name, path=path, size_bytes=report.size_bytes, gzip_bytes=gzip_bytes,
        accuracy=float(check.tflite_accuracy), keras_accuracy=float(check.keras_accuracy),
        top1_agreement=check.top1_agreement, kernel_sparsity=tflite_kernel_sparsity(path),
        export=report.as_dict(),
    )
    if recipe.runs:  # the benchmark reports the XNNPACK coverage too
        bench = benchmark_tflite(path, threads=recipe.threads, runs=recipe.runs)
        result.latency_ms, result.p90_ms, result.peak_memory_kib = bench.median_ms, bench.p90_ms, bench.peak_memory_kib
        result.delegate_partitions, result.ops_outside_delegate = bench.delegate_partitions, bench.ops_outside_delegate
    else:
        result.delegate_partitions, result.ops_outside_delegate = delegate_coverage(path, recipe.threads)
    return result


def run_variants(
    model, names: Sequence[str], folder: str, train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray], recipe: Recipe = Recipe(),
    progress: Callable[[str], None] = lambda message: None,
) -> dict[str, VariantResult]:
    """``export_variant`` for each of ``names`` (see ``VARIANTS``), in order."""
    os.makedirs(folder, exist_ok=True)
    results = {}
    for name in check_variant_names(names):
        progress(f"variant {name}: {'prune, ' if VARIANTS[name].sparsity else ''}"
                 f"{'QAT, ' if VARIANTS[name].qat else ''}convert, evaluate")
        results[name] = export_variant(model, VARIANTS[name], folder, train, test, recipe)
        r = results[name]
        progress(f"variant {name}: accuracy {r.accuracy:.4f}, {r.size_bytes / 1024:.0f} KiB"
                 + (f", {r.latency_ms:.2f} ms" if r.latency_ms is not None else ""))
    return results
