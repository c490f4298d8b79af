"""pytest hooks and fixtures for the whole suite (shared helper functions: helpers.py)."""

from __future__ import annotations

import gc
import os
import sys
import warnings

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
