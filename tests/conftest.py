"""pytest hooks and fixtures for the whole suite (shared helper functions: helpers.py)."""

from __future__ import annotations

import gc
import os
import sys
import warnings

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def real_manifest(monkeypatch):
    """The manifest shipped in the package (``KERAS_LIGHTNETS_MANIFEST`` unset, the cache cleared around)."""
    from keras_lightnets.weights import download

    monkeypatch.delenv(download.MANIFEST_ENV, raising=False)
    download._load_manifest.cache_clear()
    yield download.manifest()
    download._load_manifest.cache_clear()


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


_COLLECT_AFTER_GROWTH = 256 * 1024 * 1024  # bytes of resident memory gained since the last collection
_resident_after_collect = 0


def _resident_bytes() -> int:
    """This process's resident memory (0 where /proc is missing: then every test collects)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """Free the models a test built before the next one runs (keeps each worker's memory flat).

    Keras' global state (name counters, the tf_keras graph) is reset only between
    tests that share no module-scoped model, since resetting it under a shared
    model would make later layer names collide. Models are reference cycles, so
    only the garbage collector frees them; a full collection walks every live
    object (about half a second in a worker holding both Keras flavours), so it
    runs once per test at most, and only after the worker has grown by
    ``_COLLECT_AFTER_GROWTH`` since the last one (or when /proc cannot say).
    """
    global _resident_after_collect
    if not _shares_state_across_tests(item) and (nextitem is None or not _shares_state_across_tests(nextitem)):
        keras = sys.modules.get("keras")  # never import a flavour only to clear it
        if keras is not None:
            keras.backend.clear_session(free_memory=False)
        tf_keras = sys.modules.get("tf_keras")
        if tf_keras is not None:
            tf_keras.backend.clear_session()
    resident = _resident_bytes()
    if resident == 0 or resident - _resident_after_collect > _COLLECT_AFTER_GROWTH:
        gc.collect()
        _resident_after_collect = _resident_bytes()
