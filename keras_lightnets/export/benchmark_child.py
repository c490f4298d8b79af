"""The benchmark child process: ``python -m keras_lightnets.export.benchmark_child SETTINGS``.

``benchmark_tflite`` runs it in a fresh interpreter so that the numbers are LiteRT's
alone: it imports numpy, ai_edge_litert and this package's light modules, never
TensorFlow or Keras. ``SETTINGS``: JSON ``{"path", "threads", "runs", "warmup"}``.
It prints one JSON line: ``times_ms`` (one per timed ``invoke``, milliseconds),
``peak_kib`` / ``baseline_kib`` (peak resident set after the runs and the resident
set before loading the model, KiB), ``method`` (how memory was read), ``partitions``
and ``outside`` (``delegation.ops_outside_delegates``), and ``modules`` (which of
TensorFlow and Keras were imported after all: none, normally).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from keras_lightnets.export.delegation import ops_outside_delegates
from keras_lightnets.export.litert import open_interpreter


def _status_kib(key: str) -> int | None:
    """A ``/proc/self/status`` memory line (``VmRSS``, ``VmHWM``) in KiB; None where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _peak_kib() -> int:
    """The peak resident set so far, KiB (``VmHWM``, else ``ru_maxrss``)."""
    hwm = _status_kib("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss // 1024 if sys.platform == "darwin" else rss


def _memory_baseline() -> tuple[int | None, str]:
    """``(baseline KiB, method)``: resets the peak to the current resident set where Linux allows it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current resident set
        return _status_kib("VmRSS"), "VmHWM after reset"
    except OSError:
        return _peak_kib(), "VmHWM" if _status_kib("VmHWM") is not None else "ru_maxrss"


def _random_inputs(interpreter: Any) -> None:
    """Fill every input with seeded random values: the full range of int types, 0-255 for floats."""
    rng = np.random.default_rng(0)
    for detail in interpreter.get_input_details():
        dtype = np.dtype(detail["dtype"])
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            value = rng.integers(info.min, info.max, size=detail["shape"], endpoint=True).astype(dtype)
        else:
            value = rng.uniform(0, 255, size=detail["shape"]).astype(dtype)
        interpreter.set_tensor(detail["index"], value)


def measure(settings: dict[str, Any]) -> dict[str, Any]:
    """Load, allocate and run the file ``settings["warmup"]`` times untimed, then ``settings["runs"]``
    times timed; the measurements as printed by ``main``."""
    baseline, method = _memory_baseline()
    interpreter = open_interpreter(settings["path"], settings["threads"])
    partitions, outside = ops_outside_delegates(interpreter)
    _random_inputs(interpreter)
    for _ in range(settings["warmup"]):
        interpreter.invoke()
    times = []
    for _ in range(settings["runs"]):
        start = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - start) * 1000.0)
    return {"times_ms": times, "peak_kib": _peak_kib(), "baseline_kib": baseline, "method": method,
            "partitions": partitions, "outside": outside,
            "modules": sorted(m for m in ("tensorflow", "keras", "tf_keras") if m in sys.modules)}


def main(argv: Sequence[str] | None = None) -> int:
    """Measure with the JSON settings in ``argv[0]`` (default: the first command-line argument)."""
    settings = json.loads((sys.argv[1:] if argv is None else argv)[0])
    print(json.dumps(measure(settings)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
