"""Which ops of a ``.tflite`` file the interpreter's delegate (XNNPACK in LiteRT) took.

LiteRT hands every op XNNPACK supports to it and replaces each connected run of
them with one ``DELEGATE`` node (a *partition*); the other ops run on TFLite's
built-in kernels, and every switch between the two costs time. A file that runs
fully in XNNPACK has one partition and no op outside it. (XNNPACK in LiteRT 2.3
has, for example, no int8 ``HARD_SWISH``, ``RELU`` or ``AVERAGE_POOL_2D``.)

Pure Python over the interpreter's node table (``litert.op_table``), so that the
benchmark child process can use it without TensorFlow.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from keras_lightnets.export.litert import op_table

DELEGATE_OP = "DELEGATE"


def ops_outside_delegates(interpreter: Any) -> tuple[int, dict[str, int]]:
    """``(partitions, {op name: count})`` for an interpreter after ``allocate_tensors()``.

    ``partitions``: number of ``DELEGATE`` nodes. The ops inside partition *k* are
    found by walking back from its outputs to its inputs through the original
    nodes; every original node not reached that way runs outside the delegate.
    """
    nodes = op_table(interpreter)
    originals = [node for node in nodes if node["op_name"] != DELEGATE_OP]
    delegates = [node for node in nodes if node["op_name"] == DELEGATE_OP]
    producer = {int(t): node["index"] for node in originals for t in node["outputs"]}
    by_index = {node["index"]: node for node in originals}
    inside: set[int] = set()
    for delegate in delegates:
        stop = {int(t) for t in delegate["inputs"]}
        pending = [int(t) for t in delegate["outputs"]]
        while pending:
            tensor = pending.pop()
            index = producer.get(tensor)
            if tensor in stop or index is None or index in inside:
                continue
            inside.add(index)
            pending.extend(int(t) for t in by_index[index]["inputs"] if t >= 0)
    outside = Counter(node["op_name"] for node in originals if node["index"] not in inside)
    return len(delegates), dict(sorted(outside.items()))


def format_op_counts(counts: dict[str, int], empty: str = "none") -> str:
    """``{op: count}`` as ``"OP xN, OP xN"`` for tables and reports; ``empty`` when there is none."""
    return ", ".join(f"{op} x{count}" for op, count in counts.items()) or empty
