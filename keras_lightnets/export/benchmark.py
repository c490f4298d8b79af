"""``benchmark_tflite`` (latency and peak memory of a ``.tflite`` file, measured in a child
process) and ``delegate_coverage`` (how XNNPACK partitions it, in this process).

Both run the file with LiteRT (``ai_edge_litert``) and its default XNNPACK delegate,
never with ``tf.lite.Interpreter``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import numpy as np

from keras_lightnets.export.delegation import ops_outside_delegates
from keras_lightnets.export.inputs import check_tflite_path
from keras_lightnets.export.litert import open_interpreter
from keras_lightnets.export.reports import BenchmarkReport, ConversionError
from keras_lightnets.validation import check_positive_int

# Run as ``python -m CHILD_MODULE SETTINGS``; named, never imported here.
CHILD_MODULE = "keras_lightnets.export.benchmark_child"


def delegate_coverage(path: str | os.PathLike, threads: int = 1) -> tuple[int, dict[str, int]]:
    """``(partitions, {op: count})``: how many XNNPACK partitions LiteRT makes of the file, and
    which ops it runs outside them on TFLite's built-in kernels (see ``export.delegation``).
    A file that runs fully in XNNPACK gives ``(1, {})``."""
    path = check_tflite_path(path)
    return ops_outside_delegates(open_interpreter(path, check_positive_int("threads", threads)))


def _run_child(settings: dict[str, Any], timeout: float) -> dict[str, Any]:
    """The child's measurements (see ``benchmark_child``); ``ConversionError`` with its last
    error line when it fails."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-m", CHILD_MODULE, json.dumps(settings)], capture_output=True, text=True,
        timeout=timeout, env=env,
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConversionError(f"benchmark of {settings['path']} failed (exit {result.returncode}): {tail}")
    return json.loads(lines[-1])


def benchmark_tflite(
    path: str | os.PathLike, *, threads: int = 1, runs: int = 50, warmup: int = 5, timeout: float = 600.0,
) -> BenchmarkReport:
    """Median and p90 latency (ms per ``invoke``) and peak memory (KiB) of a ``.tflite`` file.

    Runs in a fresh ``sys.executable`` process with the LiteRT interpreter
    (XNNPACK, ai_edge_litert's default delegate) on ``threads`` threads:
    ``warmup`` untimed invokes, then ``runs`` timed ones on random input.
    ``timeout``: seconds the child may take (``subprocess.TimeoutExpired`` after).
    """
    path = os.path.abspath(check_tflite_path(path))
    threads = check_positive_int("threads", threads)
    runs = check_positive_int("runs", runs)
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
        raise ValueError(f"`warmup` must be an int >= 0; received warmup={warmup!r}")
    measured = _run_child({"path": path, "threads": threads, "runs": runs, "warmup": warmup}, timeout)
    times = np.asarray(measured["times_ms"])
    return BenchmarkReport(
        path=path, threads=threads, runs=runs, warmup=warmup,
        median_ms=float(np.median(times)), p90_ms=float(np.percentile(times, 90)),
        mean_ms=float(times.mean()), min_ms=float(times.min()),
        peak_memory_kib=max(int(measured["peak_kib"]) - int(measured["baseline_kib"]), 0),
        memory_method=measured["method"],
        delegate_partitions=measured["partitions"], ops_outside_delegate=measured["outside"],
        extra={"baseline_kib": measured["baseline_kib"], "child_modules": measured["modules"]},
    )
