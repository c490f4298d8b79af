"""Ctrl-C during training stops at the end of the current step, not inside TensorFlow.

Python's default SIGINT handler raises ``KeyboardInterrupt`` wherever the main thread is: in a
training step, in a ``tf.function`` being traced, in a checkpoint being written. Unwinding
TensorFlow from there can leave its runtime in a state it does not survive (a process that
dies by SIGSEGV instead of exiting), and what was being written is cut short. Under
``stop_between_steps()`` (the ``lightnets`` commands install it), the first Ctrl-C while a
``fit`` is running only asks it to stop: ``raise_if_requested()`` (``callbacks.StopOnInterrupt``
calls it after every training and validation batch and every epoch) raises the
``KeyboardInterrupt`` there, between steps. A second Ctrl-C, or one while no ``fit`` runs,
raises at once as before.

No Keras or TensorFlow import here: the command line installs it before either is loaded.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

NOTICE = "stopping after the current step (Ctrl-C again to stop at once)"

_requested = threading.Event()
_notice = NOTICE  # the line the first Ctrl-C prints (stop_between_steps' prefix + NOTICE)
_running_fits = 0  # fit() calls in progress (training_started / training_ended)


def training_started() -> None:
    """A ``fit`` began: from now a first Ctrl-C waits for ``raise_if_requested``."""
    global _running_fits
    _running_fits += 1


def training_ended() -> None:
    """A ``fit`` ended (normally or not)."""
    global _running_fits
    _running_fits = max(0, _running_fits - 1)


def raise_if_requested() -> None:
    """Raise ``KeyboardInterrupt`` if Ctrl-C was pressed since ``stop_between_steps`` began."""
    if _requested.is_set():
        raise KeyboardInterrupt


def _handler(signum, frame) -> None:
    if _requested.is_set() or _running_fits == 0:
        raise KeyboardInterrupt
    _requested.set()
    print(_notice, file=sys.stderr, flush=True)


@contextlib.contextmanager
def stop_between_steps(prefix: str = "") -> Iterator[None]:
    """Within: SIGINT is handled as the module docstring says (the first Ctrl-C during a ``fit``
    prints ``prefix + NOTICE`` on stderr). Does nothing off the main thread or where SIGINT is not
    Python's default handler (ignored, or the caller's own)."""
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    global _running_fits, _notice
    _requested.clear()
    _notice = prefix + NOTICE
    _running_fits = 0  # a fit that raised never reported its end
    signal.signal(signal.SIGINT, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _requested.clear()
        _running_fits = 0
