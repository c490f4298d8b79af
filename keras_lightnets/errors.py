"""The package's error vocabulary: what went wrong, and whose input it was.

Every error a user can cause by what they hand in (an argument, a file, a
folder, a URL, a number) is an ``InputError``; the ``lightnets`` commands exit
with code 2 for it and with code 1 for failures while working. ``InputError``
subclasses ``ValueError``, so code that caught ``ValueError`` before still does.

Messages are one line: they name the argument or file and say what is expected.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1  # something failed while working (conversion, training, disk full, ...)
EXIT_BAD_INPUT = 2  # the user's input is unusable: arguments, files, folders, URLs, numbers


class InputError(ValueError):
    """Unusable input from the user (exit code 2)."""


class UnsafeModelError(InputError):
    """A model file holds something that would run stored Python code when loaded.

    Refused unless the caller opts in explicitly (``unsafe=True``, ``--unsafe``).
    """


class IntegrityError(InputError):
    """A downloaded or cached file is not what its manifest entry says (hash, size, truncation)."""


def one_line(err: BaseException) -> str:
    """``err``'s message collapsed to one line (its class name when it has none)."""
    text = " ".join(str(err).split())
    return text or type(err).__name__


def exit_code(err: BaseException) -> int:
    """The ``lightnets`` exit code for an error that ended a command."""
    return EXIT_BAD_INPUT if isinstance(err, InputError) else EXIT_FAILURE
