"""Atomic output files: write to a temporary file in the same folder, then ``os.replace``.

A crash, Ctrl-C or kill leaves either the old file or the new one, never half of
one; temporary files carry ``TEMP_MARK`` in their name and are removed when the
write fails, or by ``remove_stale_temporaries`` on the next run (after a kill).
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

TEMP_MARK = ".lightnets-tmp-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path`` (same suffix); on success it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_MARK}{path.stem}-", suffix=path.suffix)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf8") as f:
        f.write(text)


def write_json(path: str | os.PathLike, data) -> None:
    write_text(path, json.dumps(data, indent=1) + "\n")


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


def remove_stale_temporaries(folder: str | os.PathLike) -> list[str]:
    """Delete temporary files left in ``folder`` (and its subfolders) by a killed run."""
    removed = []
    for root, _, names in os.walk(folder):
        for name in names:
            if name.startswith(TEMP_MARK):
                os.remove(os.path.join(root, name))
                removed.append(os.path.join(root, name))
    return removed
