"""``tf.distribute`` strategies by name, and mixed precision where it helps.

``make_strategy`` must run before any other TensorFlow op in the process:
``MultiWorkerMirroredStrategy`` configures collective ops at start-up and fails
(or hangs) once the eager context exists.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

STRATEGIES = ("auto", "one", "mirrored", "multiworker")


@dataclass
class StrategyInfo:
    """The strategy, its name, the number of replicas, and whether this process is the chief.

    Only the chief writes outputs; other workers write to a temporary folder
    (deleted afterwards), as the ``tf.distribute`` guides recommend.
    """

    strategy: Any
    name: str
    workers: int
    is_chief: bool

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)


def _tf_config() -> dict:
    text = os.environ.get("TF_CONFIG", "")
    if not text:
        return {}
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"$TF_CONFIG is not valid JSON: {err}") from err
    if not isinstance(config, dict):
        raise ValueError("$TF_CONFIG must be a JSON object with 'cluster' and 'task'")
    return config


def _cluster_workers(config: dict) -> int:
    cluster = config.get("cluster", {})
    return sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))


def _is_chief(config: dict) -> bool:
    task = config.get("task", {})
    kind, index = task.get("type"), task.get("index", 0)
    if kind is None:
        return True
    if kind == "chief":
        return True
    return kind == "worker" and index == 0 and "chief" not in config.get("cluster", {})


def make_strategy(name: str | Any = "auto") -> StrategyInfo:
    """Create the strategy ``name``: ``"one"`` (one device: the first GPU, else the CPU),
    ``"mirrored"`` (all local GPUs), ``"multiworker"`` (``MultiWorkerMirroredStrategy``,
    cluster and task from ``$TF_CONFIG``), or ``"auto"``: multiworker when
    ``$TF_CONFIG`` lists more than one worker, mirrored with several GPUs, else the
    default (one device). A ``tf.distribute.Strategy`` object is wrapped as is.
    """
    import tensorflow as tf

    if isinstance(name, tf.distribute.Strategy):
        config = _tf_config()
        multi = isinstance(name, tf.distribute.MultiWorkerMirroredStrategy)
        return StrategyInfo(name, type(name).__name__, _cluster_workers(config) if multi else 1,
                            _is_chief(config) if multi else True)
    if name not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}; received strategy={name!r}")
    config = _tf_config()
    if name == "auto":
        gpus = tf.config.list_physical_devices("GPU")
        name = "multiworker" if _cluster_workers(config) > 1 else "mirrored" if len(gpus) > 1 else "default"
    if name == "multiworker":
        if not config:
            raise ValueError(
                "--strategy multiworker needs $TF_CONFIG (a JSON object with the cluster's worker addresses "
                "and this process's task), e.g. "
                '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'
            )
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        return StrategyInfo(strategy, "multiworker", max(_cluster_workers(config), 1), _is_chief(config))
    if name == "mirrored":
        return StrategyInfo(tf.distribute.MirroredStrategy(), "mirrored", 1, True)
    if name == "one":
        device = "/gpu:0" if tf.config.list_physical_devices("GPU") else "/cpu:0"
        return StrategyInfo(tf.distribute.OneDeviceStrategy(device), "one", 1, True)
    return StrategyInfo(tf.distribute.get_strategy(), "default", 1, True)


def mixed_precision_helps() -> bool:
    """True when every visible GPU has compute capability 7.0 or more (tensor cores);
    False on CPU, where float16 is slower."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return False
    for gpu in gpus:
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if not capability or tuple(capability) < (7, 0):
            return False
    return True


def resolve_mixed_precision(value: str | bool) -> bool:
    """``"auto"`` -> ``mixed_precision_helps()``; ``True``/``False`` as given."""
    if value == "auto":
        return mixed_precision_helps()
    if isinstance(value, bool):
        return value
    raise ValueError(f"`mixed_precision` must be 'auto', True or False; received {value!r}")
