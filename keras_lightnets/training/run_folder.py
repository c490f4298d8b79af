"""A training run's folder: what makes it, how a previous run is found, checked and continued.

Layout of ``output_dir``: ``best.keras`` (the best epoch's model), ``history.csv`` and
``history.png`` (one row / point per epoch), ``checkpoints/epoch-NNN.keras`` (the last
epoch's model and optimizer state) and ``checkpoints/state.json`` naming it (epoch,
phase, history, best score, the run's configuration). ``RunRecord.record`` writes them
after every epoch, each atomically (``keras_lightnets.files``); no TensorFlow here.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
from pathlib import Path

from keras_lightnets import files
from keras_lightnets.errors import InputError, one_line
from keras_lightnets.training.divergence import check_finite

BEST = "best.keras"
HISTORY_CSV = "history.csv"
HISTORY_PNG = "history.png"
CHECKPOINTS = "checkpoints"
STATE = "state.json"
STATE_VERSION = 1
RUN_FILES = (BEST, HISTORY_CSV, HISTORY_PNG, CHECKPOINTS)  # what makes a folder hold a previous run
_CHECKPOINT_NAME = re.compile(r"epoch-\d{3,}\.keras")
_STATE_TYPES = {"version": int, "epoch": int, "phase": int, "checkpoint": str, "best_val_accuracy": (int, float),
                "best_epoch": int, "history": list, "config": dict}
_CONFIG_TYPES = {"model": str, "image_size": int, "class_names": list}
REPLACE_HINT = "--overwrite (overwrite=True)"


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def previous_run_files(folder: str | os.PathLike) -> list[str]:
    """The names of a previous run's outputs (``RUN_FILES``) present in ``folder``."""
    return [name for name in RUN_FILES if os.path.lexists(os.path.join(folder, name))]


def _state_problem(state) -> str | None:
    """What is wrong with a parsed ``state.json`` (None when it is usable)."""
    if not isinstance(state, dict):
        return "it is not a JSON object"
    for key, kind in _STATE_TYPES.items():
        if key not in state:
            return f"the key {key!r} is missing"
        value = state[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            return f"{key!r} must be {getattr(kind, '__name__', 'a number')}; it is {value!r:.60}"
    if state["version"] != STATE_VERSION:
        return f"version {state['version']} is not {STATE_VERSION}"
    epoch = state["epoch"]
    if epoch < 1:
        return f"'epoch' must be >= 1; it is {epoch}"
    if state["phase"] not in (1, 2):
        return f"'phase' must be 1 or 2; it is {state['phase']}"
    if not _CHECKPOINT_NAME.fullmatch(state["checkpoint"]):
        name = state["checkpoint"]
        return f"'checkpoint' must be a file name epoch-NNN.keras inside checkpoints/; it is {name!r:.80}"
    if math.isnan(state["best_val_accuracy"]) or not 0 <= state["best_epoch"] <= epoch:
        return "'best_val_accuracy' must be a number and 'best_epoch' in 0..'epoch'"
    for row in state["history"]:
        if not isinstance(row, dict) or any(c not in row for c in files.HISTORY_COLUMNS):
            return f"every 'history' row must hold {list(files.HISTORY_COLUMNS)}"
        numbers = [row[c] for c in files.HISTORY_COLUMNS if c not in ("epoch", "phase")]
        if (isinstance(row["epoch"], bool) or not isinstance(row["epoch"], int) or row["epoch"] < 1
                or not isinstance(row["phase"], str) or not all(_is_number(v) for v in numbers)):
            return f"a 'history' row has a wrong type: {row!r:.80}"
    config = state["config"]
    for key, kind in _CONFIG_TYPES.items():
        if isinstance(config.get(key), bool) or not isinstance(config.get(key), kind):
            return f"config {key!r} must be {kind.__name__}"
    if not all(isinstance(c, str) for c in config["class_names"]):
        return "config 'class_names' must be strings"
    if not isinstance(config.get("weights"), str | None):
        return "config 'weights' must be a string or null"
    return None


def read_run_state(folder: str | os.PathLike) -> dict | None:
    """The validated ``checkpoints/state.json`` of the run in ``folder`` (None when there is none).

    ``InputError`` (one line naming the file) when it is unreadable or malformed
    (not JSON, a missing key, a wrong type, a negative epoch, a checkpoint name
    that is not a plain ``epoch-NNN.keras`` in ``checkpoints/``) or when the
    checkpoint it names does not exist.
    """
    checkpoints = Path(folder) / CHECKPOINTS
    path = checkpoints / STATE
    if not os.path.lexists(path):
        return None
    try:
        with open(path, encoding="utf8") as f:
            state = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise InputError(f"cannot resume: {path} is unreadable ({one_line(err)}); repair it or replace the run "
                         f"with {REPLACE_HINT}") from None
    problem = _state_problem(state)
    if problem:
        raise InputError(f"cannot resume: {path} is malformed ({problem}); repair it or replace the run "
                         f"with {REPLACE_HINT}")
    checkpoint = checkpoints / state["checkpoint"]
    if not checkpoint.is_file():
        raise InputError(f"cannot resume: the checkpoint {checkpoint} named by {path} does not exist; restore it "
                         f"or replace the run with {REPLACE_HINT}")
    return state


def check_output_dir(output_dir: str | os.PathLike, *, resume: bool = False, overwrite: bool = False) -> None:
    """Check ``output_dir`` before a run starts (no TensorFlow; nothing is left changed).

    ``InputError`` (one line) when it is not a folder, cannot be created or written
    (the missing folders and a probe file are created, then removed again), holds
    a previous run (``RUN_FILES``) while neither ``resume`` nor ``overwrite`` is
    set, or (with ``resume``) has a malformed ``state.json`` or one naming a
    missing checkpoint.
    """
    folder = Path(output_dir)
    if os.path.lexists(folder) and not folder.is_dir():
        raise InputError(f"output folder {str(folder)!r} exists and is not a folder")
    if folder.is_dir():
        found = previous_run_files(folder)
        if found and not (resume or overwrite):
            raise InputError(
                f"output folder {str(folder)!r} holds a previous run ({', '.join(found)}); continue it with "
                f"--resume (resume=True), replace it with {REPLACE_HINT}, or choose another folder"
            )
        if resume:
            read_run_state(folder)
    created = [p for p in (folder, *folder.parents) if not os.path.lexists(p)]
    try:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, probe = files.temp_file_beside(folder / "write-probe", ".probe")
            os.close(fd)
            os.remove(probe)
        finally:
            for path in created:  # deepest first
                with contextlib.suppress(OSError):
                    path.rmdir()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise InputError(f"output folder {str(folder)!r} cannot be written: {reason}") from None


def check_documents(documents) -> dict:
    """``documents`` (file name -> JSON-able data) as a dict; ``InputError`` naming the first name that is
    not a plain ``.json`` file name or that is one of the run's own files, or data JSON cannot hold."""
    if documents is None:
        return {}
    if not isinstance(documents, dict):
        raise InputError(f"`run_files` must be a dict of file name -> JSON data; received {type(documents).__name__}")
    for name, data in documents.items():
        if (not isinstance(name, str) or not name.endswith(".json") or os.path.basename(name) != name
                or name.startswith(".") or name in (*RUN_FILES, STATE)):
            raise InputError(f"`run_files` names must be plain .json file names other than {list(RUN_FILES)}; "
                             f"received {name!r}")
        try:
            json.dumps(data, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise InputError(f"`run_files[{name!r}]` is not JSON data: {one_line(err)}") from None
    return dict(documents)


class RunRecord:
    """The bookkeeping of one training run: its history, its best score, and where its files go.

    ``work_dir``: the output folder (a temporary one on workers other than the chief);
    ``config``: what ``state.json`` records of the run (model, image size, class names,
    starting weights); ``replacing``: a previous run's files are in ``work_dir``, removed
    when the first epoch is recorded; ``documents``: more JSON files of the run (file name ->
    JSON-able data, ``check_documents``), written with every recorded epoch right after
    ``best.keras``, so they always describe the models in the folder.
    """

    def __init__(self, work_dir: Path, config: dict, replacing: bool = False, documents: dict | None = None):
        self.work_dir = work_dir
        self.config = config
        self.documents = check_documents(documents)
        self.history: list[dict] = []
        self.best = -math.inf
        self.best_epoch = 0
        self.replacing = replacing

    @property
    def checkpoints(self) -> Path:
        return self.work_dir / CHECKPOINTS

    def continue_from(self, state: dict, output_dir: Path) -> None:
        """Take over the history and best score of the run ``state`` (``read_run_state``) describes;
        ``InputError`` when it was a run of another model, image size or set of classes."""
        differs = {k: (state["config"].get(k), v) for k, v in self.config.items() if state["config"].get(k) != v}
        if differs:
            raise InputError(f"cannot resume from {output_dir / CHECKPOINTS}: the run differs in {differs} (saved, "
                             f"now); replace it with {REPLACE_HINT} or choose another folder")
        self.history = [r for r in state["history"] if r["epoch"] <= state["epoch"]]
        self.best, self.best_epoch = state["best_val_accuracy"], state["best_epoch"]

    def _remove_previous_run(self) -> None:
        """Remove the replaced run's files; ``state.json`` first, so it can never be resumed with
        the new run's files, and ``best.keras`` last of all: the caller replaces it atomically."""
        with contextlib.suppress(FileNotFoundError):
            (self.checkpoints / STATE).unlink()
        shutil.rmtree(self.checkpoints, ignore_errors=True)
        for name in (HISTORY_CSV, HISTORY_PNG):
            with contextlib.suppress(FileNotFoundError):
                (self.work_dir / name).unlink()
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        self.replacing = False

    def record(self, model, row: dict, phase: int) -> None:
        """After an epoch: best model, checkpoint, state, history.csv -- each written atomically.

        ``row``: the epoch's ``files.HISTORY_COLUMNS`` (epoch counted from 1); ``phase``: 1 or 2.
        ``TrainingDivergedError`` (nothing written) when the epoch's losses or the
        model's weights are not finite.
        """
        check_finite(model, row)
        epoch = row["epoch"]
        if self.replacing:
            self._remove_previous_run()
        self.history = [r for r in self.history if r["epoch"] < epoch] + [row]
        if row["val_accuracy"] > self.best:
            self.best, self.best_epoch = row["val_accuracy"], epoch
            files.save_model(model, self.work_dir / BEST)
        for name, data in self.documents.items():
            files.write_json(self.work_dir / name, data)
        name = f"epoch-{epoch:03d}.keras"
        files.save_model(model, self.checkpoints / name)
        files.write_json(self.checkpoints / STATE, {
            "version": STATE_VERSION, "epoch": epoch, "phase": phase, "checkpoint": name,
            "best_val_accuracy": self.best, "best_epoch": self.best_epoch, "history": self.history,
            "config": self.config,
        })
        for old in self.checkpoints.glob("epoch-*.keras"):
            if old.name != name:
                old.unlink()
        files.write_history_csv(self.work_dir / HISTORY_CSV, self.history)

    def write_history(self, title: str) -> None:
        """``history.csv`` and ``history.png`` of every recorded epoch (nothing when none was)."""
        if self.history:
            files.write_history_csv(self.work_dir / HISTORY_CSV, self.history)
            files.write_history_png(self.work_dir / HISTORY_PNG, self.history, title=title)
