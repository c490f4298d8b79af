"""The one place that chooses between Keras 3 (``keras``) and ``tf_keras``.

Every builder in the package asks this module for its Keras namespace instead of
importing ``keras`` directly. The default flavour is Keras 3; inside
``with use_flavour("tf_keras"):`` the very same builder code produces a tf_keras
model (what TFMOT needs). ``keras_lightnets.legacy`` is a thin wrapper over this.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
from collections.abc import Iterator
from types import ModuleType

FLAVOURS = ("keras", "tf_keras")

_current = contextvars.ContextVar("keras_lightnets_flavour", default="keras")


def current_flavour() -> str:
    """Return the active flavour: ``"keras"`` (Keras 3) or ``"tf_keras"``."""
    return _current.get()


def check_flavour(flavour: str) -> str:
    """Return ``flavour`` if it is known, else raise a ``ValueError`` naming the choices."""
    if flavour not in FLAVOURS:
        raise ValueError(f"`flavour` must be one of {FLAVOURS}; received flavour={flavour!r}")
    return flavour


@contextlib.contextmanager
def use_flavour(flavour: str) -> Iterator[None]:
    """Build models with ``flavour`` ("keras" or "tf_keras") inside the block."""
    token = _current.set(check_flavour(flavour))
    try:
        yield
    finally:
        _current.reset(token)


def keras_module(flavour: str | None = None) -> ModuleType:
    """The ``keras`` or ``tf_keras`` module for ``flavour`` (default: the active one)."""
    return importlib.import_module(check_flavour(flavour or current_flavour()))


def flavour_of(obj: object) -> str:
    """Which flavour a model, layer or Keras tensor belongs to.

    Raises ``TypeError`` when ``obj`` is neither a Keras 3 nor a tf_keras object.
    """
    for cls in type(obj).__mro__:
        root = cls.__module__.split(".", 1)[0]
        if root == "tf_keras":
            return "tf_keras"
        if root == "keras":
            return "keras"
    raise TypeError(f"expected a Keras 3 or tf_keras object; received {type(obj).__name__}")


def is_keras_tensor(obj: object, flavour: str | None = None) -> bool:
    """True when ``obj`` is a symbolic tensor of the given flavour's Functional API."""
    try:
        return bool(keras_module(flavour).backend.is_keras_tensor(obj))
    except ValueError:
        return False


def source_inputs(tensor: object) -> list:
    """The ``Input`` tensors that ``tensor`` was computed from (active flavour)."""
    return keras_module().utils.get_source_inputs(tensor)


def keras_backend() -> str:
    """The Keras 3 backend of this process (``"tensorflow"``, ``"jax"``, ``"torch"``, ...).

    Fixed when Keras is first imported, from ``KERAS_BACKEND`` or ``~/.keras/keras.json``.
    Models built with the Keras 3 flavour run on any of them; tf_keras always runs on TensorFlow.
    """
    import keras

    return keras.config.backend()


def require_tensorflow_backend(what: str, model: object = None) -> None:
    """``InputError`` (one line) unless ``what`` can run: a Keras 3 model (or, without
    ``model``, the Keras 3 flavour) needs Keras' TensorFlow backend for TFMOT and the
    TFLite converter. tf_keras models always pass."""
    if model is not None:
        try:
            if flavour_of(model) == "tf_keras":
                return
        except TypeError:
            pass
    backend = keras_backend()
    if backend != "tensorflow":
        from keras_lightnets.errors import InputError

        raise InputError(
            f"{what} needs Keras' TensorFlow backend; this process runs KERAS_BACKEND={backend!r} "
            "(set KERAS_BACKEND=tensorflow before Python starts; building, predict and fit work on every backend)"
        )
