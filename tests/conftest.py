"""Shared test helpers: deterministic random weights and small input batches."""

from __future__ import annotations

import gc
import os
import sys
import warnings

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def randomize_weights(model, seed: int = 0) -> None:
    """Give every weight a reproducible random value that keeps BatchNorm well-behaved.

    Moving variances are in [0.5, 1.5] and gammas near 1, so activations neither
    vanish nor explode and output comparisons are meaningful.
    """
    rng = np.random.default_rng(seed)
    values = []
    for weight in model.weights:
        name = weight.path if hasattr(weight, "path") else weight.name
        shape = tuple(weight.shape)
        if "moving_variance" in name:
            values.append(rng.uniform(0.5, 1.5, shape))
        elif "gamma" in name:
            values.append(rng.uniform(0.8, 1.2, shape))
        elif "moving_mean" in name or "beta" in name or "bias" in name:
            values.append(rng.normal(0.0, 0.1, shape))
        else:
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
            values.append(rng.normal(0.0, 1.0 / np.sqrt(max(fan_in, 1)), shape))
    model.set_weights([v.astype("float32") for v in values])


def image_batch(size: int, batch: int = 2, channels: int = 3, seed: int = 1) -> np.ndarray:
    """``(batch, size, size, channels)`` float32 pixels in [0, 255]."""
    return np.random.default_rng(seed).uniform(0, 255, (batch, size, size, channels)).astype("float32")


@pytest.fixture(autouse=True)
def _quiet_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def _shares_state_across_tests(item) -> bool:
    """Whether ``item`` uses a module- or session-scoped fixture (a model other tests reuse)."""
    info = getattr(item, "_fixtureinfo", None)
    definitions = getattr(info, "name2fixturedefs", {}) if info is not None else {}
    return any(d.scope in ("module", "package", "session") for defs in definitions.values() for d in defs)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """Free the models a test built before the next one runs (keeps each worker's memory flat).

    Keras' global state (name counters, the tf_keras graph) is reset only between
    tests that share no module-scoped model, since resetting it under a shared
    model would make later layer names collide; garbage is collected after every test.
    """
    if not _shares_state_across_tests(item) and (nextitem is None or not _shares_state_across_tests(nextitem)):
        for name in ("keras", "tf_keras"):
            module = sys.modules.get(name)  # never import a flavour only to clear it
            if module is not None:
                module.backend.clear_session()
    gc.collect()
