"""A one-shot import hook: registers the Keras 3 layers the moment ``import keras`` finishes.

``import keras_lightnets`` stays free of TensorFlow (fast CLI, one-line errors), yet Keras 3
resolves a saved ``"keras_lightnets>Rescale"`` only through its registry (it never imports
our module): so ``.keras`` files load in a fresh process whatever the import order of
``keras`` and ``keras_lightnets``.
"""

from __future__ import annotations

import importlib.abc
import sys
import warnings

from keras_lightnets.layers.flavours import register


class _RegisterWhenImported(importlib.abc.MetaPathFinder):
    """Finds nothing itself: it asks the other finders for ``keras`` and wraps the loader
    so that registration runs right after Keras' own module code, then steps aside."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "keras":
            return None
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            if finder is self or find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _RegisteringLoader(spec.loader)
        return spec


class _RegisteringLoader(importlib.abc.Loader):
    """``keras``' own loader, then ``register("keras")``; puts the original loader back."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        module.__loader__ = self.loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self.loader
        _stop_watching()
        try:
            register("keras")
        except Exception as err:  # never break `import keras`; loading a file will name the layer
            warnings.warn(f"keras_lightnets could not register its layers with Keras: {err}", stacklevel=2)

    def __getattr__(self, name: str):
        return getattr(self.loader, name)


def _stop_watching() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _RegisterWhenImported)]


def register_keras_layers() -> None:
    """Register the Keras 3 layers now when Keras is loaded (it costs nothing then), else as
    soon as ``keras`` is imported (once, however often this is called)."""
    if "keras" in sys.modules:
        register("keras")
    elif not any(isinstance(f, _RegisterWhenImported) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterWhenImported())
