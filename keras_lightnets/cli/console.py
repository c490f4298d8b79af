"""What the ``lightnets`` commands write to the terminal besides their results: aligned text tables,
warnings as one line each, and TensorFlow's native log lines hidden while they work.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence


def table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """``rows`` as left-aligned text columns under a header and a dashed rule, no trailing spaces."""
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns), "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def one_line_warnings(name: str) -> Callable[..., None]:
    """A ``warnings.showwarning`` for the command line: ``<name>: warning: <message>`` on one line
    of stderr (no file path, source line or category)."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        if category.__name__ != "SkippedFilesWarning" and text.startswith("`shuffle=True` was passed"):
            return  # Keras' note that a tf.data dataset shuffles itself: it does, on purpose
        print(f"{name}: warning: {text}", file=sys.stderr, flush=True)

    return show


@contextlib.contextmanager
def native_logs_hidden(quiet: bool) -> Iterator[None]:
    """While working: hide TensorFlow's (and LiteRT's) C++ log lines.

    Not ``quiet``: TensorFlow's info and warning lines are hidden unless
    ``$TF_CPP_MIN_LOG_LEVEL`` says otherwise. ``quiet``: all native output to stderr is,
    since TensorFlow 2.21, its converter and LiteRT write some lines (oneDNN, CUDA probing,
    "absl::InitializeLog", "fully_quantize", "Created TensorFlow Lite XNNPACK delegate")
    whatever the level: file descriptor 2 points at ``os.devnull`` and Python's
    ``sys.stderr`` (errors, warnings) keeps writing where stderr went before.
    """
    if not quiet:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        yield
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    python_stderr = sys.stderr
    python_stderr.flush()
    try:
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    except OSError:  # no usable stderr: nothing to hide
        yield
        return
    try:
        own_fd = python_stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # a captured or replaced stream: it does not use fd 2
        own_fd = False
    stream = open(saved, "w", buffering=1, encoding=getattr(python_stderr, "encoding", None) or "utf-8",  # noqa: SIM115
                  errors="backslashreplace", closefd=False) if own_fd else None
    try:
        if stream is not None:
            sys.stderr = stream
        os.dup2(devnull, 2)
        yield
    finally:
        if stream is not None:
            stream.flush()
            sys.stderr = python_stderr
            stream.close()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
