"""Benchmark registry models against their ``keras.applications`` twins: one implementation
behind ``lightnets bench`` and ``tools/benchmark.py``.

For every model ``benchmark_models`` reports

* ``params`` and ``macs``: parameter count and multiply-accumulates of the built model
  (1000-class classifier) at the benchmarked input size (``keras_lightnets.count_macs``);
  at the registry's input size they are the registry's facts.
* Keras CPU latency: median milliseconds per batch of a compiled ``predict_on_batch``
  (Keras' traced ``tf.function`` predict step, no XLA on CPU) on a ``(batch, H, W, 3)``
  float32 tensor of random pixels, for each batch size in ``keras_batches`` (default
  1 and 32), after two untimed calls that trace the function. Models are built with
  ``weights=None`` (random weights, nothing downloaded) under ``tf.device("/CPU:0")``.
* LiteRT latency and size for each mode in ``quantizations`` (default ``"none"``, float32,
  and ``"int8"``, full integer): ``to_tflite`` then ``benchmark_tflite`` (a fresh process,
  XNNPACK, ``threads`` threads), median milliseconds per ``invoke`` (batch 1) and the file
  size in bytes. int8 files are calibrated on random images in ``[0, 255]``: fine for
  latency and size, meaningless for accuracy.
* The same numbers for the ``keras.applications`` twin (same architecture, ``weights=None``,
  same input shape), measured right after the model in the same process, and the ratio
  ours / twin of every latency. SqueezeNet, ShuffleNetV2 and MnasNet have no twin. A stage
  that fails (e.g. a twin's int8 conversion) is recorded in ``error`` / ``twin_error``
  instead of stopping the run.

``write_markdown``, ``write_plot`` and ``write_json`` write the results atomically
(``keras_lightnets.files``); ``write_report`` writes the three all or none. TensorFlow,
Keras, LiteRT and matplotlib are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import json
import math
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from keras_lightnets import files
from keras_lightnets.errors import InputError
from keras_lightnets.export import QUANTIZATION_MODES
from keras_lightnets.export.delegation import format_op_counts
from keras_lightnets.validation import check_positive_int

DEFAULT_KERAS_BATCHES = (1, 32)
DEFAULT_QUANTIZATIONS = ("none", "int8")
DEFAULT_RUNS = 20
DEFAULT_CALIBRATION_SAMPLES = 16
KERAS_WARMUP = 2
LITERT_WARMUP = 5
MAX_ERROR_CHARS = 160
QUANTIZATION_LABELS = {"none": "fp32", "float16": "fp16", "dynamic": "dynamic", "int8": "int8"}
_GLOB_CHARS = "*?["


# --------------------------------------------------------------------------- results

@dataclass
class Measurements:
    """Latencies and sizes of one network (a registry model or its twin).

    ``model``: registry name or ``keras.applications.<Builder>``; ``params``: parameter
    count of the built network; ``keras_ms``: ``{batch size: median ms per batch}``;
    ``litert_ms``: ``{quantization: median ms per invoke (batch 1)}``; ``litert_bytes``:
    ``{quantization: .tflite file size in bytes}``; ``litert_outside``: ``{quantization:
    {op: count}}``, the ops XNNPACK left to TFLite's own kernels. A stage that failed has
    no entry.
    """

    model: str
    params: int | None = None
    keras_ms: dict[int, float] = field(default_factory=dict)
    litert_ms: dict[str, float] = field(default_factory=dict)
    litert_bytes: dict[str, int] = field(default_factory=dict)
    litert_outside: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurements:
        """Inverse of ``dataclasses.asdict`` after a JSON round trip (batch keys back to ``int``)."""
        return cls(
            model=data["model"], params=data.get("params"),
            keras_ms={int(k): float(v) for k, v in data.get("keras_ms", {}).items()},
            litert_ms={str(k): float(v) for k, v in data.get("litert_ms", {}).items()},
            litert_bytes={str(k): int(v) for k, v in data.get("litert_bytes", {}).items()},
            litert_outside={str(k): dict(v) for k, v in data.get("litert_outside", {}).items()},
        )


@dataclass
class BenchRow:
    """One benchmarked model: facts, our measurements, the twin's, and the ratios.

    ``input_size``: side of the square ``(input_size, input_size, 3)`` input;
    ``params``/``macs``: of the built model at that size; ``top1``: paper ImageNet
    top-1 (%), ``None`` when unknown; ``ours``/``twin``: ``Measurements`` (``twin`` is
    ``None`` without a twin or when it could not be built); ``twin_name``: e.g.
    ``"MobileNetV2"``, ``None`` when the family has none; ``ratios``:
    ``{"keras_b<batch>" | "litert_<quantization>": ours / twin}`` for each latency both
    have; ``error``/``twin_error``: ``"stage: Type: message"`` of failed stages, ``None``
    when all went well; ``threads``: LiteRT threads; ``keras_threads``: TensorFlow
    intra-op threads in effect (0: TensorFlow's default, all cores); ``runs``: timed
    runs behind each median.
    """

    name: str
    family: str
    input_size: int
    params: int | None
    macs: int | None
    top1: float | None
    ours: Measurements
    twin: Measurements | None = None
    twin_name: str | None = None
    twin_error: str | None = None
    error: str | None = None
    ratios: dict[str, float] = field(default_factory=dict)
    threads: int = 1
    keras_threads: int = 0
    runs: int = DEFAULT_RUNS

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON (``BenchRow.from_dict`` reads it back)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchRow:
        values = dict(data)
        values["ours"] = Measurements.from_dict(data["ours"])
        values["twin"] = None if data.get("twin") is None else Measurements.from_dict(data["twin"])
        values["ratios"] = {str(k): float(v) for k, v in data.get("ratios", {}).items()}
        return cls(**values)


def latency_ratios(ours: Measurements, twin: Measurements | None) -> dict[str, float]:
    """``{"keras_b<batch>" | "litert_<quantization>": ours / twin}`` for every latency both measured."""
    if twin is None:
        return {}
    ratios = {}
    for batch, ms in ours.keras_ms.items():
        if twin.keras_ms.get(batch):
            ratios[f"keras_b{batch}"] = ms / twin.keras_ms[batch]
    for mode, ms in ours.litert_ms.items():
        if twin.litert_ms.get(mode):
            ratios[f"litert_{mode}"] = ms / twin.litert_ms[mode]
    return ratios


# --------------------------------------------------------------------------- names and twins

def resolve_names(names: Iterable[str]) -> list[str]:
    """Registry names for ``names`` (names or shell patterns such as ``"mobilenet_v3*"``), in
    order and without duplicates; ``InputError`` naming ``keras_lightnets.list_models()`` for an
    unknown name or a pattern that matches nothing."""
    from keras_lightnets.models.registry import list_models, model_config

    resolved: list[str] = []
    for entry in names:
        if not isinstance(entry, str) or not entry:
            raise InputError(f"model names must be non-empty strings; received {entry!r}")
        if any(c in entry for c in _GLOB_CHARS):
            matched = list_models(entry)
            if not matched:
                raise InputError(
                    f"no registered model matches {entry!r}; see keras_lightnets.list_models() (`lightnets list`)"
                )
        else:
            model_config(entry)  # InputError naming list_models() for an unknown name
            matched = [entry]
        resolved.extend(n for n in matched if n not in resolved)
    if not resolved:
        raise InputError("no model to benchmark; give registry names or patterns (see keras_lightnets.list_models())")
    return resolved


def twin_of(name: str) -> tuple[str, dict[str, Any]] | None:
    """``(keras.applications builder name, its kwargs)`` of the same architecture, or ``None``:
    the twin the variant's registry record names (``ModelConfig.twin``)."""
    from keras_lightnets.models.registry import model_config

    twin = model_config(name).twin
    return None if twin is None else (twin.builder, dict(twin.kwargs))


# --------------------------------------------------------------------------- machine

def describe_machine() -> dict[str, Any]:
    """CPU model, core counts, platform, date (UTC) and library versions, as strings and ints."""
    from importlib import metadata

    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                cpu = line.split(":", 1)[1].strip()
                break
    cpu = cpu or platform.processor() or platform.machine() or "unknown CPU"
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0

    def version(*distributions: str) -> str:
        for dist in distributions:
            with contextlib.suppress(metadata.PackageNotFoundError):
                return metadata.version(dist)
        return "not installed"

    from keras_lightnets._version import __version__

    return {
        "cpu": cpu, "cores": os.cpu_count() or 0, "usable_cores": usable, "platform": platform.platform(),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "tensorflow": version("tensorflow", "tensorflow-cpu"), "keras": version("keras"),
        "litert": version("ai-edge-litert", "ai-edge-litert-nightly"), "keras_lightnets": __version__,
    }


def machine_label(threads: int, keras_threads: int | None = None, machine: dict[str, Any] | None = None) -> str:
    """One line naming the machine, date, thread counts and versions, for the Markdown table.

    ``threads``: LiteRT threads; ``keras_threads``: TensorFlow intra-op threads (0: all cores).
    """
    m = machine or describe_machine()
    cores = f"{m['cores']} cores" + (f" ({m['usable_cores']} usable)" if m["usable_cores"] != m["cores"] else "")
    tf_threads = "" if keras_threads is None else (
        f", TensorFlow {keras_threads or 'default (all cores)'} intra-op thread(s)"
    )
    return (
        f"{m['cpu']}, {cores}, {m['platform']}; {m['date']}; LiteRT {threads} thread(s){tf_threads}; "
        f"TensorFlow {m['tensorflow']}, Keras {m['keras']}, LiteRT {m['litert']}, keras_lightnets "
        f"{m['keras_lightnets']}"
    )


# --------------------------------------------------------------------------- measuring

def _brief(stage: str, err: BaseException) -> str:
    text = " ".join(str(err).split()) or "no message"
    message = f"{stage}: {type(err).__name__}: {text}"
    return message if len(message) <= MAX_ERROR_CHARS else message[: MAX_ERROR_CHARS - 3] + "..."


def _set_tensorflow_threads(threads: int) -> int:
    """Ask TensorFlow for ``threads`` intra- and inter-op threads; the intra-op count in effect.

    TensorFlow accepts this only before it runs its first op (``RuntimeError`` after): in a
    process that already used TensorFlow the previous setting stays (0 = all cores).
    """
    import tensorflow as tf

    with contextlib.suppress(RuntimeError):
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    return int(tf.config.threading.get_intra_op_parallelism_threads())


@dataclass
class _Network:
    """A network being measured: its built model (``None`` if the build failed), numbers, failed stages."""

    measurements: Measurements
    model: Any = None
    errors: list[str] = field(default_factory=list)


def _build(label: str, build: Callable[[], Any]) -> _Network:
    import tensorflow as tf

    network = _Network(Measurements(model=label))
    try:
        with tf.device("/CPU:0"):
            network.model = build()
        network.measurements.params = int(network.model.count_params())
    except Exception as err:
        network.model = None
        network.errors.append(_brief("build", err))
    return network


def _time_keras(networks: Sequence[_Network], batch: int, size: int, runs: int, seed: int = 0) -> None:
    """Record the median ms per ``model.predict_on_batch`` of a ``(batch, size, size, 3)`` tensor of
    random pixels for each network.

    The calls alternate between the networks (ours, twin, ours, ...), so that load from
    other processes falls on both alike; the first ``KERAS_WARMUP`` rounds (the first call
    traces the predict function) are not timed. A network whose call fails drops out with
    the error recorded.
    """
    import numpy as np
    import tensorflow as tf

    images = np.random.default_rng(seed).uniform(0, 255, (batch, size, size, 3)).astype("float32")
    live = [n for n in networks if n.model is not None]
    times: dict[int, list[float]] = {id(n): [] for n in live}
    with tf.device("/CPU:0"):
        x = tf.constant(images)
        for step in range(KERAS_WARMUP + runs):
            for network in list(live):
                start = time.perf_counter()
                try:
                    network.model.predict_on_batch(x)
                except Exception as err:
                    network.errors.append(_brief(f"keras b{batch}", err))
                    live.remove(network)
                    continue
                if step >= KERAS_WARMUP:
                    times[id(network)].append((time.perf_counter() - start) * 1000.0)
    for network in live:
        network.measurements.keras_ms[batch] = float(statistics.median(times[id(network)]))


def _litert(network: _Network, mode: str, path: str, calibration: Any, threads: int, runs: int) -> None:
    """Convert ``network.model`` with ``mode`` to ``path`` and record median ms and size."""
    from keras_lightnets.export import benchmark_tflite, to_tflite

    if network.model is None:
        return
    try:
        report = to_tflite(network.model, path, mode, calibration if mode == "int8" else None)
        result = benchmark_tflite(path, threads=threads, runs=runs, warmup=min(LITERT_WARMUP, runs))
    except Exception as err:
        network.errors.append(_brief(f"litert {mode}", err))
        return
    network.measurements.litert_ms[mode] = result.median_ms
    network.measurements.litert_bytes[mode] = report.size_bytes
    network.measurements.litert_outside[mode] = result.ops_outside_delegate


def _release() -> None:
    """Drop Keras' global state (layer names, graphs) between models."""
    import keras

    keras.backend.clear_session()
    gc.collect()


def _summary(row: BenchRow) -> str:
    """One progress line: our numbers, then the twin's ratios (or error)."""
    parts = [f"{row.name}:"]
    parts += [f"keras b{b} {ms:.1f} ms" for b, ms in row.ours.keras_ms.items()]
    for mode, ms in row.ours.litert_ms.items():
        parts.append(f"litert {QUANTIZATION_LABELS[mode]} {ms:.2f} ms {row.ours.litert_bytes[mode] / 1e6:.2f} MB")
    if row.twin_name:
        ratios = ", ".join(f"{k} x{v:.2f}" for k, v in row.ratios.items()) or "no ratio"
        parts.append(f"| vs {row.twin_name}: {ratios}")
    line = " ".join(parts)
    if row.error:
        line += f" | error: {row.error}"
    if row.twin_error:
        line += f" | twin error: {row.twin_error}"
    return line


@dataclass(frozen=True)
class BenchSettings:
    """``benchmark_models``' arguments, checked (see there): registry ``names``, the square
    ``input_size`` in pixels (None: each model's own), LiteRT ``threads``, timed ``runs``,
    Keras ``keras_batches``, LiteRT ``quantizations``, ``twins``, int8 ``calibration_samples``."""

    names: tuple[str, ...]
    input_size: int | None = None
    threads: int = 1
    runs: int = DEFAULT_RUNS
    keras_batches: tuple[int, ...] = DEFAULT_KERAS_BATCHES
    quantizations: tuple[str, ...] = DEFAULT_QUANTIZATIONS
    twins: bool = True
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES


def _resolve_settings(
    names: Sequence[str], *, input_size: int | None, threads: int, runs: int, keras_batches: Sequence[int],
    quantizations: Sequence[str], twins: bool, calibration_samples: int,
) -> BenchSettings:
    """``BenchSettings`` of ``benchmark_models``' arguments; ``ValueError`` (``InputError`` for an
    unknown model) naming the first bad one."""
    names = resolve_names(names)
    if input_size is not None:
        input_size = check_positive_int("input_size", input_size)
    threads = check_positive_int("threads", threads)
    runs = check_positive_int("runs", runs)
    calibration_samples = check_positive_int("calibration_samples", calibration_samples)
    keras_batches = tuple(check_positive_int("keras_batches", b) for b in keras_batches)
    quantizations = tuple(quantizations)
    bad = [q for q in quantizations if q not in QUANTIZATION_MODES]
    if bad:
        raise ValueError(f"`quantizations` must be among {QUANTIZATION_MODES}; received {bad}")
    return BenchSettings(tuple(names), input_size, threads, runs, keras_batches, quantizations, twins,
                         calibration_samples)


@contextlib.contextmanager
def _tflite_folder(output_dir: str | os.PathLike | None) -> Iterator[str]:
    """``output_dir`` (created), or a temporary folder removed at the end."""
    if output_dir is not None:
        os.makedirs(output_dir, exist_ok=True)
        yield os.fspath(output_dir)
        return
    folder = tempfile.mkdtemp(prefix="lightnets-bench-")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _build_twin(builder_name: str, kwargs: dict[str, Any], shape: tuple[int, int, int]) -> _Network:
    """The ``keras.applications`` twin, random weights, input ``shape``."""
    import keras

    label = f"keras.applications.{builder_name}"
    builder = getattr(keras.applications, builder_name, None)
    if builder is None:
        twin = _Network(Measurements(model=label))
        twin.errors.append(f"build: keras.applications has no {builder_name}")
        return twin
    return _build(label, partial(builder, weights=None, input_shape=shape, **kwargs))


def _count_macs(network: _Network) -> int | None:
    """MACs of the built model (None when it was not built, or when counting failed: recorded)."""
    from keras_lightnets.macs import count_macs

    if network.model is None:
        return None
    try:
        return count_macs(network.model)
    except Exception as err:
        network.errors.append(_brief("macs", err))
        return None


def _measure(settings: BenchSettings, networks: Sequence[tuple[_Network, str]], size: int, seed: int,
             folder: str) -> None:
    """Keras latency per batch size (the networks alternate), then for each quantization each
    network's ``.tflite`` (``folder/<stem>_<mode>.tflite``) converted and benchmarked in turn."""
    import numpy as np

    for batch in settings.keras_batches:
        _time_keras([n for n, _ in networks], batch, size, settings.runs, seed=seed)
    shape = (settings.calibration_samples, size, size, 3)
    calibration = np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")
    for mode in settings.quantizations:
        for network, stem in networks:
            _litert(network, mode, os.path.join(folder, f"{stem}_{mode}.tflite"), calibration, settings.threads,
                    settings.runs)


def _benchmark_one(settings: BenchSettings, index: int, name: str, folder: str, keras_threads: int,
                   say: Callable[[str], None]) -> BenchRow:
    """The ``BenchRow`` of model ``name`` (the ``index``-th, from 1) and its twin."""
    from keras_lightnets.models.registry import create_model, model_config

    config = model_config(name)
    size = settings.input_size or config.input_size
    shape = (size, size, 3)
    spec = twin_of(name) if settings.twins else None
    twin_name = None if spec is None else spec[0]
    say(f"[{index}/{len(settings.names)}] {name} at {size}x{size}" + (f" (twin {twin_name})" if twin_name else ""))
    ours = _build(name, partial(create_model, name, weights=None, input_shape=shape))
    twin = None if spec is None else _build_twin(*spec, shape)
    networks = [(ours, name)] + ([] if twin is None else [(twin, f"{name}_twin")])
    macs = _count_macs(ours)
    _measure(settings, networks, size, index, folder)
    twin_measurements = None if twin is None or twin.model is None else twin.measurements
    row = BenchRow(
        name=name, family=config.family, input_size=size, params=ours.measurements.params, macs=macs,
        top1=config.top1, ours=ours.measurements, twin=twin_measurements, twin_name=twin_name,
        twin_error=None if twin is None else "; ".join(twin.errors) or None,
        error="; ".join(ours.errors) or None, ratios=latency_ratios(ours.measurements, twin_measurements),
        threads=settings.threads, keras_threads=keras_threads, runs=settings.runs,
    )
    for network, _ in networks:
        network.model = None
    _release()
    return row


def _silent(line: str) -> None:
    """The default ``progress``: says nothing."""


def benchmark_models(
    names: Sequence[str], *, input_size: int | None = None, threads: int = 1, runs: int = DEFAULT_RUNS,
    keras_batches: Sequence[int] = DEFAULT_KERAS_BATCHES, quantizations: Sequence[str] = DEFAULT_QUANTIZATIONS,
    twins: bool = True, output_dir: str | os.PathLike | None = None,
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES, progress: Callable[[str], None] | None = None,
) -> list[BenchRow]:
    """Measure each model (and its ``keras.applications`` twin); one ``BenchRow`` per model.

    ``names``: registry names or shell patterns (``ValueError`` before any work for an
    unknown name). ``input_size``: square input side in pixels (default: each model's
    registry size). ``threads``: LiteRT threads, also requested from TensorFlow for the
    Keras timings (effective only if TensorFlow has not run an op yet in this process;
    the count in effect is in ``BenchRow.keras_threads``). ``runs``: timed runs behind each
    median (Keras: per batch size; LiteRT: per file). ``keras_batches``: batch sizes for
    the Keras latency (may be empty). ``quantizations``: ``to_tflite`` modes (may be
    empty). ``twins``: also measure the ``keras.applications`` twins. ``output_dir``: keep
    the ``.tflite`` files there (``<name>_<mode>.tflite``, twins ``<name>_twin_<mode>.tflite``;
    the folder is created); default: a temporary folder removed at the end.
    ``calibration_samples``: random ``[0, 255]`` images for int8 calibration.
    ``progress``: called with one line per model (its start, then its numbers).

    A model and its twin are built side by side: their Keras calls alternate, and each
    LiteRT file of ours is benchmarked right before the twin's. A stage that fails is
    recorded in the row (``error``, ``twin_error``) and the run goes on.
    """
    settings = _resolve_settings(names, input_size=input_size, threads=threads, runs=runs,
                                 keras_batches=keras_batches, quantizations=quantizations, twins=twins,
                                 calibration_samples=calibration_samples)
    say = progress or _silent
    keras_threads = _set_tensorflow_threads(settings.threads)
    rows: list[BenchRow] = []
    with _tflite_folder(output_dir) as folder:
        for index, name in enumerate(settings.names, 1):
            rows.append(_benchmark_one(settings, index, name, folder, keras_threads, say))
            say(_summary(rows[-1]))
    return rows


# --------------------------------------------------------------------------- writing

def _ms(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 1e6:.2f}"


def _columns(rows: Sequence[BenchRow]) -> tuple[list[int], list[str]]:
    """Batch sizes and quantization modes present in ``rows``, in first-seen order."""
    batches: list[int] = []
    modes: list[str] = []
    for row in rows:
        for m in (row.ours, row.twin):
            if m is None:
                continue
            batches += [b for b in m.keras_ms if b not in batches]
            modes += [q for q in m.litert_ms if q not in modes]
    return batches, modes


_TEXT_COLUMNS = frozenset({"model", "keras.applications", "twin of", "keras.applications twin"}
                          | {f"{label} ops outside XNNPACK" for label in QUANTIZATION_LABELS.values()})


def _table(header: list[str], lines: list[list[str]]) -> list[str]:
    """Markdown table lines: text columns left-aligned, numbers right-aligned."""
    align = ["---" if h in _TEXT_COLUMNS else "---:" for h in header]
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    return out


def _ops(counts: dict[str, int] | None) -> str:
    """``{op: count}`` as ``OP xN, ...`` (``none`` when empty, ``-`` when not measured)."""
    return "-" if counts is None else format_op_counts(counts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[BenchRow], machine_label: str) -> str:
    """The Markdown report: title, machine label, method notes, the model table (one row per
    model), the twins' absolute numbers and the errors, if any."""
    batches, modes = _columns(rows)
    header = ["model", "input", "params (M)", "MACs (M)", "top-1 (%)"]
    for b in batches:
        header += [f"Keras b{b} (ms)", "ours/twin"]
    for q in modes:
        header += [f"LiteRT {QUANTIZATION_LABELS[q]} (ms)", "ours/twin"]
    header += [f"{QUANTIZATION_LABELS[q]} size (MB)" for q in modes] + ["keras.applications twin"]
    header += [f"{QUANTIZATION_LABELS[q]} ops outside XNNPACK" for q in modes if q != "none"]
    lines = []
    for r in rows:
        cells = [
            r.name, str(r.input_size), "-" if r.params is None else f"{r.params / 1e6:.2f}",
            "-" if r.macs is None else f"{r.macs / 1e6:.1f}", "-" if r.top1 is None else f"{r.top1:.1f}",
        ]
        for b in batches:
            cells += [_ms(r.ours.keras_ms.get(b)), _ratio(r.ratios.get(f"keras_b{b}"))]
        for q in modes:
            cells += [_ms(r.ours.litert_ms.get(q)), _ratio(r.ratios.get(f"litert_{q}"))]
        cells += [_mb(r.ours.litert_bytes.get(q)) for q in modes]
        cells.append(r.twin_name or "-")
        cells += [_ops(r.ours.litert_outside.get(q)) for q in modes if q != "none"]
        lines.append([_cell(c) for c in cells])
    runs = sorted({r.runs for r in rows})
    out = [
        "# keras_lightnets benchmark", "",
        f"Machine: {machine_label}", "",
        f"Median of {', '.join(map(str, runs)) or '-'} timed run(s) after warm-up. Keras: compiled "
        "`predict_on_batch` on CPU (ms per batch), random weights. LiteRT: XNNPACK, batch 1 (ms per invoke); "
        "int8 files are calibrated on random images (valid for latency and size, not accuracy). "
        "ours/twin: our latency divided by the keras.applications twin's, measured in the same run "
        "(< 1: ours is faster; '-': no twin). MB = 10^6 bytes. Params and MACs at the benchmarked input size.",
        "",
        *_table(header, lines),
    ]
    twinned = [r for r in rows if r.twin is not None]
    if twinned:
        header = ["keras.applications", "twin of", "params (M)"]
        header += [f"Keras b{b} (ms)" for b in batches] + [f"LiteRT {QUANTIZATION_LABELS[q]} (ms)" for q in modes]
        header += [f"{QUANTIZATION_LABELS[q]} size (MB)" for q in modes]
        header += [f"{QUANTIZATION_LABELS[q]} ops outside XNNPACK" for q in modes if q != "none"]
        lines = []
        for r in twinned:
            t = r.twin
            cells = [r.twin_name or "-", r.name, "-" if t.params is None else f"{t.params / 1e6:.2f}"]
            cells += [_ms(t.keras_ms.get(b)) for b in batches] + [_ms(t.litert_ms.get(q)) for q in modes]
            cells += [_mb(t.litert_bytes.get(q)) for q in modes]
            cells += [_ops(t.litert_outside.get(q)) for q in modes if q != "none"]
            lines.append([_cell(c) for c in cells])
        out += ["", "## keras.applications twins (same run)", "", *_table(header, lines)]
    problems = [f"- {r.name}: {_cell(r.error)}" for r in rows if r.error]
    problems += [f"- {r.name} twin {r.twin_name}: {_cell(r.twin_error)}" for r in rows if r.twin_error]
    if problems:
        out += ["", "## Errors", "", *problems]
    return "\n".join(out) + "\n"


def write_markdown(rows: Sequence[BenchRow], path: str | os.PathLike, machine_label: str) -> str:
    """Write ``markdown_table(rows, machine_label)`` to ``path`` atomically; returns the text."""
    text = markdown_table(rows, machine_label)
    files.write_text(path, text)
    return text


def write_json(rows: Sequence[BenchRow], path: str | os.PathLike, machine: dict[str, Any] | None = None,
               machine_label: str = "") -> None:
    """Write ``{"machine": ..., "label": ..., "rows": [BenchRow.as_dict()]}`` to ``path`` atomically."""
    data = {"machine": machine or {}, "label": machine_label, "rows": [r.as_dict() for r in rows]}
    files.write_json(path, data)


def read_json(path: str | os.PathLike) -> tuple[list[BenchRow], dict[str, Any]]:
    """``(rows, machine)`` from a file written by ``write_json``."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return [BenchRow.from_dict(r) for r in data["rows"]], data.get("machine", {})


def _plot_mode(rows: Sequence[BenchRow]) -> str | None:
    """``"int8"`` when measured, else the first LiteRT mode present (``None``: no LiteRT numbers)."""
    _, modes = _columns(rows)
    return "int8" if "int8" in modes else (modes[0] if modes else None)


def _sizes_text(sizes: Iterable[int]) -> str:
    """``"224 px"`` or ``"160/224 px"``: the input sides of a set of rows."""
    unique = sorted(set(sizes))
    return f"{'/'.join(map(str, unique))} px" if unique else "?"


def _paper_sizes(rows: Sequence[BenchRow]) -> str:
    """The input size(s) at which the papers measured the rows' top-1 (the registry's input size)."""
    from keras_lightnets.models.registry import model_config

    sizes = []
    for r in rows:
        try:
            sizes.append(model_config(r.name).input_size)
        except ValueError:  # a row read back from an older report, its model no longer registered
            continue
    return _sizes_text(sizes)


def write_plot(rows: Sequence[BenchRow], path: str | os.PathLike) -> None:
    """``plot_figure(rows)`` as a PNG at ``path``, written atomically (matplotlib, Agg canvas)."""
    figure = plot_figure(rows)
    with files.atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)


def plot_figure(rows: Sequence[BenchRow]):
    """The two-panel matplotlib ``Figure`` of ``write_plot``.

    Left: LiteRT int8 latency (ms, x) vs paper top-1 (%, y), one labelled point per model
    with a known top-1; twins as open markers joined to their model. Right: int8 file
    size (MB, y) vs int8 latency (ms, x), labelled. The axes say at which input size the
    latency was measured and at which the papers measured top-1 (224 px). Falls back to
    the first measured quantization when int8 was not measured; a panel without data says so.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    mode = _plot_mode(rows)
    label = QUANTIZATION_LABELS.get(mode or "", "")
    figure = Figure(figsize=(13, 5.5), layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    accuracy = [r for r in rows if mode and r.top1 is not None and mode in r.ours.litert_ms]
    for r in accuracy:
        x = r.ours.litert_ms[mode]
        left.scatter([x], [r.top1], color="tab:blue", zorder=3)
        left.annotate(r.name, (x, r.top1), textcoords="offset points", xytext=(4, 4), fontsize=7)
        if r.twin is not None and mode in r.twin.litert_ms:
            tx = r.twin.litert_ms[mode]
            left.scatter([tx], [r.top1], facecolors="none", edgecolors="tab:orange", zorder=3)
            left.plot([x, tx], [r.top1, r.top1], color="0.7", linewidth=0.8, zorder=1)
    if any(r.twin is not None and mode in r.twin.litert_ms for r in accuracy):
        left.scatter([], [], color="tab:blue", label="keras_lightnets")
        left.scatter([], [], facecolors="none", edgecolors="tab:orange", label="keras.applications twin")
        left.legend(loc="lower right", fontsize=8)
    measured_at = _sizes_text(r.input_size for r in rows)
    left.set(xlabel=f"LiteRT {label} latency (ms, batch 1, {measured_at} input)",
             ylabel=f"paper ImageNet top-1 (%, at {_paper_sizes(accuracy or rows)})",
             title=f"LiteRT {label} latency at {measured_at} vs paper top-1 at {_paper_sizes(accuracy or rows)}")
    sized = [r for r in rows if mode and mode in r.ours.litert_ms and mode in r.ours.litert_bytes]
    for r in sized:
        x, y = r.ours.litert_ms[mode], r.ours.litert_bytes[mode] / 1e6
        right.scatter([x], [y], color="tab:green", zorder=3)
        right.annotate(r.name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    right.set(xlabel=f"LiteRT {label} latency (ms, batch 1, {measured_at} input)",
              ylabel=f"{label} .tflite size (MB)", title=f"{label} size vs latency at {measured_at}")
    for axes, points in ((left, accuracy), (right, sized)):
        axes.grid(True, alpha=0.3)
        axes.margins(x=0.2, y=0.08)  # room for the labels of the outermost points
        if not points:
            axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
    return figure


def write_report(
    rows: Sequence[BenchRow], output_dir: str | os.PathLike, machine: dict[str, Any], machine_label: str,
) -> dict[str, str]:
    """Write ``bench.md``, ``bench.png`` and ``bench.json`` into ``output_dir`` (created), all or none.

    The three are written to temporary files beside their final names (``files.Staging``) and
    renamed only when all three succeeded, so a failure leaves none of them (nor a temporary
    file). Returns ``{"markdown" | "plot" | "json": path}``.
    """
    folder = os.path.abspath(os.fspath(output_dir))
    os.makedirs(folder, exist_ok=True)
    final = {k: os.path.join(folder, f"bench.{ext}") for k, ext in (("markdown", "md"), ("plot", "png"),
                                                                       ("json", "json"))}
    with files.Staging() as staging:
        write_markdown(rows, staging.reserve(final["markdown"]), machine_label)
        write_plot(rows, staging.reserve(final["plot"]))
        write_json(rows, staging.reserve(final["json"]), machine, machine_label)
    return final
