"""The package's file writing: every output goes to a temporary name beside it, then ``os.replace``.

``atomic_path`` / ``write_bytes`` / ``write_text`` / ``write_json`` / ``save_model`` write one
file; ``Staging`` writes a set of files that appear all together or not at all. A crash,
Ctrl-C or kill leaves either the old file or the new one, never half of one.

Every temporary file or folder the package makes beside an output is named
``TEMP_MARK + <pid> + "-" + ...``: it is removed when the write fails, and after a kill
by ``remove_stale_temporaries`` on the next run, which deletes only marked entries whose
process is gone (a concurrent run's temporaries are left alone).
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

TEMP_MARK = ".lightnets-tmp-"
_STALE_NAME = re.compile(re.escape(TEMP_MARK) + r"(\d+)-")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_prefix(name: str) -> str:
    """The name prefix of this process's temporaries for an output called ``name``."""
    return f"{TEMP_MARK}{os.getpid()}-{name}-"


def temp_file_beside(path: str | os.PathLike, suffix: str | None = None) -> tuple[int, str]:
    """``(fd, path)`` of a new marked temporary file in ``path``'s folder (``path``'s suffix by default).

    It has the permissions a plain ``open`` would give (``mkstemp`` makes 0600 files).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path.stem),
                               suffix=path.suffix if suffix is None else suffix)
    os.fchmod(fd, 0o666 & ~_umask())
    return fd, tmp


def temp_dir_beside(path: str | os.PathLike) -> Path:
    """A new marked temporary folder in ``path``'s folder (for multi-file staging)."""
    path = Path(path)
    return Path(tempfile.mkdtemp(dir=path.parent, prefix=temp_prefix(path.name)))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[str]:
    """Yield a temporary path beside ``path`` (``path``'s suffix, or ``suffix`` such as
    ``".weights.h5"``); when the block ends without an error it replaces ``path``, else it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file_beside(path, suffix)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, flushed to disk before the rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf8") as f:
        f.write(text)


def write_json(path: str | os.PathLike, data) -> None:
    write_text(path, json.dumps(data, indent=1) + "\n")


class Staging:
    """A set of output files that appear together or not at all.

    ``reserve(final)`` gives a marked temporary path beside ``final`` to write to;
    ``commit()`` renames every reserved file into place (if a rename fails, the files
    already renamed are removed again); ``discard()`` removes the temporaries. Used as a
    context manager it commits when the block succeeds and discards when it raises::

        with Staging() as staging:
            write_report(staging.reserve("report.json"))
            staging.write_text("labels.txt", "cat\ndog\n")
    """

    def __init__(self) -> None:
        self.pending: list[tuple[str, str]] = []

    def reserve(self, final: str | os.PathLike, suffix: str | None = None) -> str:
        """A new temporary path for ``final`` (``final``'s suffix, or ``suffix``)."""
        final = os.fspath(final)
        Path(final).parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_file_beside(final, suffix)
        os.close(fd)
        self.pending.append((tmp, final))
        return tmp

    def write_text(self, final: str | os.PathLike, text: str) -> None:
        with open(self.reserve(final), "w", encoding="utf-8") as f:
            f.write(text)

    def write_bytes(self, final: str | os.PathLike, data: bytes) -> None:
        with open(self.reserve(final), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def commit(self) -> list[str]:
        """Rename every reserved file into place; returns the final paths."""
        done: list[str] = []
        try:
            for tmp, final in self.pending:
                os.replace(tmp, final)
                done.append(final)
        except BaseException:
            for final in done:
                with contextlib.suppress(OSError):
                    os.remove(final)
            self.discard()
            raise
        self.pending = []
        return done

    def discard(self) -> None:
        for tmp, _ in self.pending:
            with contextlib.suppress(OSError):
                os.remove(tmp)
        self.pending = []

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()


def save_model(model, path: str | os.PathLike) -> None:
    """``model.save`` to ``path`` atomically (``.keras``, or ``.h5`` for a tf_keras model)."""
    with atomic_path(path) as tmp:
        model.save(tmp, overwrite=True)


HISTORY_COLUMNS = ("epoch", "phase", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")


def write_history_csv(path: str | os.PathLike, rows: Sequence[dict]) -> None:
    """One row per epoch: ``HISTORY_COLUMNS`` (epoch counts from 1 over both phases)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def write_history_png(path: str | os.PathLike, rows: Sequence[dict], title: str = "") -> None:
    """Loss and accuracy curves (training and validation) per epoch; phase change marked."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    epochs = [r["epoch"] for r in rows]
    figure = Figure(figsize=(9, 3.6), dpi=100)
    for position, metric in enumerate(("loss", "accuracy")):
        axes = figure.add_subplot(1, 2, position + 1)
        axes.plot(epochs, [r[metric] for r in rows], "o-", label=f"training {metric}")
        axes.plot(epochs, [r[f"val_{metric}"] for r in rows], "s-", label=f"validation {metric}")
        changes = [r["epoch"] - 0.5 for a, r in itertools.pairwise(rows) if r["phase"] != a["phase"]]
        for x in changes:
            axes.axvline(x, color="grey", linestyle=":", label="phase 2")
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except OSError:
        return False
    return True


def is_stale_temporary(name: str) -> bool:
    """Whether ``name`` is a package temporary whose writing process has ended."""
    match = _STALE_NAME.match(name)
    return bool(match) and not _process_alive(int(match.group(1)))


def remove_stale_temporaries(folder: str | os.PathLike, *, recursive: bool = True) -> list[str]:
    """Delete temporary files and folders left in ``folder`` by killed runs; returns their paths.

    Only entries named by this module (``TEMP_MARK`` and a process id) whose
    process no longer runs are removed; links are not followed.
    """
    removed = []
    if not os.path.isdir(folder):
        return removed
    for root, dirs, names in os.walk(folder):
        for name in [*names, *dirs]:
            if not is_stale_temporary(name):
                continue
            full = os.path.join(root, name)
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(full)
            removed.append(full)
        dirs[:] = [d for d in dirs if recursive and not d.startswith(TEMP_MARK)]
    return removed
