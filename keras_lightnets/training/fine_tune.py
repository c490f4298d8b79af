"""Transfer learning of a registry model on a new image classification task.

``fine_tune(model_name, data, ...)`` trains ``base + Dropout + Dense(classes)``
(one flat Functional model: the head is built on ``base.output``) in two phases:

1. *frozen*: ``epochs_frozen`` epochs with the whole base frozen (BatchNorm in
   inference mode), only the head learning, at ``learning_rate``;
2. *unfrozen*: ``epochs_unfrozen`` more epochs with the top ``unfreeze_blocks``
   blocks of the base trainable (see ``training.blocks``; BatchNorm layers stay
   frozen) at ``fine_tune_learning_rate`` (default ``learning_rate / 10``).

Without pretrained weights (``weights=None``, or ``"auto"`` with none available
offline) there is nothing to transfer: both phases train every layer, BatchNorm
included (phase 2 at the lower rate), and before each validation the BatchNorm
moving statistics are re-estimated on a few training batches ("precise BN", on one
replica), so that short runs from scratch validate sensibly.

Epochs are counted over both phases (1 .. ``epochs_frozen + epochs_unfrozen``).
After every epoch, atomically: ``checkpoints/epoch-NNN.keras`` (model and optimizer
state) then ``checkpoints/state.json`` (epoch, phase, history, best score) naming
it, ``best.keras`` when validation accuracy improved, and ``history.csv``; at the
end ``history.png``. ``resume=True`` continues after the last complete epoch.

A trained model is never lost: a folder that holds a previous run is refused
unless ``resume=True`` or ``overwrite=True``; with ``overwrite`` the old run's
files stay until the new run has completed its first epoch (a new run that fails
before that leaves them intact). The output folder is checked for writability
before any data is loaded. An epoch whose loss (or weights) became inf/NaN stops
the run with ``TrainingDivergedError`` before anything of it is written, so
``best.keras`` and the resumable checkpoint stay those of the last good epoch.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keras_lightnets import files
from keras_lightnets.errors import InputError, one_line
from keras_lightnets.training.distributed import fit_distributed
from keras_lightnets.training.strategy import make_strategy, resolve_mixed_precision
from keras_lightnets.training.unfreeze import freeze_base, is_batch_norm, unfreeze_top_blocks

HEAD_LAYERS = ("head_dropout", "predictions")
BEST = "best.keras"
HISTORY_CSV = "history.csv"
HISTORY_PNG = "history.png"
CHECKPOINTS = "checkpoints"
STATE = "state.json"
WEIGHT_CHOICES = ("imagenet", "auto", None)
STATE_VERSION = 1
PHASE_NAMES = {  # (pretrained, phase) -> the "phase" column of history.csv
    (True, 1): "frozen_base", (True, 2): "top_blocks", (False, 1): "scratch", (False, 2): "scratch_low_lr",
}
PRECISE_BN_BATCHES = 8
RUN_FILES = (BEST, HISTORY_CSV, HISTORY_PNG, CHECKPOINTS)  # what makes a folder hold a previous run
_CHECKPOINT_NAME = re.compile(r"epoch-\d{3,}\.keras")
_STATE_TYPES = {"version": int, "epoch": int, "phase": int, "checkpoint": str, "best_val_accuracy": (int, float),
                "best_epoch": int, "history": list, "config": dict}
_CONFIG_TYPES = {"model": str, "image_size": int, "class_names": list}
REPLACE_HINT = "--overwrite (overwrite=True)"


class TrainingDivergedError(RuntimeError):
    """The loss or the weights became inf/NaN; the run stopped before recording that epoch."""


@dataclass
class FineTuneResult:
    """What a run produced. ``history``: one dict per epoch (``files.HISTORY_COLUMNS``);
    ``weights``: the starting weights actually used (``"imagenet"``, a path or None);
    ``model``: the model after the last epoch (not necessarily the best)."""

    output_dir: str
    best_path: str
    best_val_accuracy: float
    best_epoch: int
    epochs: int
    history: list[dict]
    class_names: list[str]
    weights: str | None
    strategy: str
    replicas: int
    is_chief: bool
    mixed_precision: bool
    unfrozen_blocks: list[str] = field(default_factory=list)
    resumed_from: int = 0
    model: Any = None


class _NotCachedError(Exception):
    pass


@contextlib.contextmanager
def _cache_only():
    """Let ImageNet weights come from the mirror or the Keras cache, never a download."""
    from keras_lightnets.weights import download

    original = download._download

    def refuse(file_name, *args, **kwargs):
        raise _NotCachedError(file_name)

    download._download = refuse
    try:
        yield
    finally:
        download._download = original


def _build_base(model_name: str, weights, input_tensor):
    """``(base, weights used)`` built on ``input_tensor``; ``weights="auto"``: ImageNet when
    available offline, else None."""
    from keras_lightnets import model_config
    from keras_lightnets.models.registry import create_model

    kwargs = {"include_top": False, "pooling": "avg", "input_tensor": input_tensor}
    if weights == "auto":
        if "imagenet" not in model_config(model_name).weights:
            return create_model(model_name, weights=None, **kwargs), None
        # the attempt's warnings (e.g. "loading the weights trained at 224x224") count only if it loads
        with warnings.catch_warnings(record=True) as attempt:
            warnings.simplefilter("always")
            try:
                with _cache_only():
                    base = create_model(model_name, weights="imagenet", **kwargs)
            except _NotCachedError:
                base = None
        if base is None:
            return create_model(model_name, weights=None, **kwargs), None
        for caught in attempt:
            warnings.warn_explicit(caught.message, caught.category, caught.filename, caught.lineno)
        return base, "imagenet"
    if weights is None or weights == "imagenet":
        return create_model(model_name, weights=weights, **kwargs), weights
    try:
        return create_model(model_name, weights=weights, **kwargs), weights
    except InputError:
        raise
    except ValueError as err:  # the loaders' complaints about the user's weights file
        raise InputError(one_line(err)) from err


def build_classifier(model_name: str, num_classes: int, *, image_size: int, weights="imagenet",
                     dropout: float = 0.2):
    """``(model, weights used)``: [``Rescale`` preprocessing] + the registry base (no top,
    average pooling) + Dropout + Dense(``num_classes``, softmax, float32) as one flat
    Functional model.

    Input float32 ``(batch, image_size, image_size, 3)`` pixels in ``[0, 255]``: the
    model does the registry's preprocessing itself (a ``Rescale`` layer named
    ``"preprocessing"``, or MobileNetV3's own), so a saved model and its ``.tflite``
    take raw pixels. Output ``(batch, num_classes)`` probabilities. Head layers are
    named ``HEAD_LAYERS``. ``weights``: "imagenet", "auto", a weights file or None.
    """
    import keras

    from keras_lightnets import imagenet, model_config
    from keras_lightnets.data.pipeline import PREPROCESS_MODES
    from keras_lightnets.layers import get_layer_class

    inputs = keras.Input((image_size, image_size, 3), name="pixels")
    x = inputs
    mode = PREPROCESS_MODES[model_config(model_name).preprocessing]
    if mode != "none":
        scale, offset = imagenet.rescale_arguments(mode)
        x = get_layer_class("Rescale")(scale, offset, name="preprocessing")(x)
    base, used = _build_base(model_name, weights, x)
    x = keras.layers.Dropout(dropout, name=HEAD_LAYERS[0])(base.output)
    outputs_ = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name=HEAD_LAYERS[1])(x)
    return keras.Model(inputs, outputs_, name=f"{model_name}_classifier"), used


def _check_int(name: str, value, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InputError(f"`{name}` must be an int >= {minimum}; received {name}={value!r}")


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_arguments(model_name, weights, image_size, epochs_frozen, epochs_unfrozen, unfreeze_blocks,
                     learning_rate, fine_tune_learning_rate, batch_size, dropout, limit, resume, overwrite) -> int:
    from keras_lightnets import model_config

    config = model_config(model_name)
    if weights not in WEIGHT_CHOICES and not (isinstance(weights, str | os.PathLike) and os.path.isfile(weights)):
        raise InputError(
            f"`weights` must be 'imagenet', 'auto', None or the path of a weights file; received weights={weights!r}"
        )
    if weights == "imagenet" and "imagenet" not in config.weights:
        raise InputError(f"model {model_name!r} has no ImageNet weights; use weights=None ('none') or 'auto'")
    size = config.input_size if image_size is None else image_size
    _check_int("image_size", size, 32)
    _check_int("epochs_frozen", epochs_frozen, 0)
    _check_int("epochs_unfrozen", epochs_unfrozen, 0)
    if epochs_frozen + epochs_unfrozen < 1:
        raise InputError("at least one epoch is needed: epochs_frozen + epochs_unfrozen >= 1")
    _check_int("unfreeze_blocks", unfreeze_blocks, 0)
    _check_int("batch_size", batch_size, 1)
    if limit is not None:
        _check_int("limit", limit, 1)
    for name, value in (("learning_rate", learning_rate), ("fine_tune_learning_rate", fine_tune_learning_rate)):
        if value is not None and not (_is_number(value) and math.isfinite(value) and value > 0):
            raise InputError(f"`{name}` must be a finite positive number; received {name}={value!r}")
    if not (_is_number(dropout) and 0.0 <= dropout < 1.0):
        raise InputError(f"`dropout` must be a number in [0, 1); received dropout={dropout!r}")
    for name, value in (("resume", resume), ("overwrite", overwrite)):
        if not isinstance(value, bool):
            raise InputError(f"`{name}` must be True or False; received {name}={value!r}")
    if resume and overwrite:
        raise InputError("`resume` and `overwrite` exclude each other: continue the run or replace it, not both")
    return size


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


def _load_data(data, size: int, limit, seed: int, data_dir, say, progress: bool):
    """``(train, validation, kind)``; the source's complaints about ``data`` are ``InputError``s."""
    try:
        return _read_data(data, size, limit, seed, data_dir, say, progress)
    except InputError:
        raise
    except ValueError as err:  # the data source names what is wrong with the user's data
        raise InputError(one_line(err)) from err


def _read_data(data, size: int, limit, seed: int, data_dir, say, progress: bool):
    from keras_lightnets.data.sources import ImageData, StreamData, load_images, source_kind

    if isinstance(data, tuple | list) and len(data) == 2:
        train, validation = data
        for part in (train, validation):
            if not isinstance(part, ImageData | StreamData):
                raise ValueError("`data` pairs must be (train, validation) ImageData or StreamData")
        return train, validation, "custom"
    kind = source_kind(data)
    load_size = min(size, 64) if kind == "digits" else size  # 8x8 digits: upscaled again per batch
    parts = []
    for split in ("train", "validation"):
        say(f"loading {data} ({split}) at {load_size}x{load_size}...")
        parts.append(load_images(data, image_size=(load_size, load_size), split=split, limit=limit, seed=seed,
                                 data_dir=data_dir, progress=progress))
    train, validation = parts
    if train.class_names != validation.class_names:
        raise ValueError(f"train and validation classes differ: {train.class_names} vs {validation.class_names}")
    say(f"{len(train)} training and {len(validation)} validation images, {len(train.class_names)} classes")
    return train, validation, kind


def _count(part) -> int:
    return len(part) if hasattr(part, "__len__") else int(part.count)


class _Run:
    """Mutable bookkeeping of one training run (history, best score, where files go)."""

    def __init__(self, work_dir: Path, config: dict, replacing: bool = False):
        self.work_dir = work_dir
        self.config = config
        self.history: list[dict] = []
        self.best = -math.inf
        self.best_epoch = 0
        self.replacing = replacing  # a previous run's files are here: removed when the first epoch is recorded

    @property
    def checkpoints(self) -> Path:
        return self.work_dir / CHECKPOINTS

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

        ``TrainingDivergedError`` (nothing written) when the epoch's losses or the
        model's weights are not finite.
        """
        _check_finite(model, row)
        epoch = row["epoch"]
        if self.replacing:
            self._remove_previous_run()
        self.history = [r for r in self.history if r["epoch"] < epoch] + [row]
        if row["val_accuracy"] > self.best:
            self.best, self.best_epoch = row["val_accuracy"], epoch
            files.save_model(model, self.work_dir / BEST)
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


def _diverged(what: str, epoch: int, learning_rate: float | None) -> TrainingDivergedError:
    rate = "" if learning_rate is None else f" at learning rate {learning_rate:g}"
    return TrainingDivergedError(
        f"training diverged: {what} became inf/NaN in epoch {epoch}{rate}; that epoch was not recorded (best.keras "
        "and the last checkpoint are from earlier epochs); lower the learning rate (--lr, --fine-tune-lr)"
    )


def _learning_rate(model) -> float | None:
    import keras

    try:
        return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    except (AttributeError, TypeError, ValueError):
        return None


def _check_finite(model, row: dict) -> None:
    """``TrainingDivergedError`` when a loss of ``row`` or any weight of ``model`` is inf/NaN."""
    import numpy as np

    for key in ("loss", "val_loss"):
        if not math.isfinite(row[key]):
            raise _diverged(f"the {key.replace('_', ' ').replace('val', 'validation')}", row["epoch"],
                            row.get("learning_rate"))
    if not all(np.isfinite(w).all() for w in model.get_weights()):
        raise _diverged("a weight", row["epoch"], row.get("learning_rate"))


def _stop_on_non_finite_loss():
    """Callback: stop ``fit`` at the first batch whose running loss is inf/NaN (nothing recorded)."""
    import keras

    class StopOnNonFiniteLoss(keras.callbacks.Callback):
        epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch + 1

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                raise _diverged("the training loss", self.epoch, _learning_rate(self.model))

    return StopOnNonFiniteLoss()


def _record_epoch(run: _Run, model, phase: int, phase_name: str, epoch: int, logs: dict) -> None:
    import keras

    row = {
        "epoch": epoch + 1, "phase": phase_name,
        "loss": float(logs.get("loss", math.nan)), "accuracy": float(logs.get("accuracy", math.nan)),
        "val_loss": float(logs.get("val_loss", math.nan)),
        "val_accuracy": float(logs.get("val_accuracy", math.nan)),
        "learning_rate": float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)),
    }
    run.record(model, row, phase)


def _recorder(run: _Run, phase: int, phase_name: str):
    import keras

    class EpochRecorder(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            _record_epoch(run, self.model, phase, phase_name, epoch, logs or {})

    return EpochRecorder()


def _precise_batch_norm(dataset, batches: int = PRECISE_BN_BATCHES):
    """Callback: before each validation, set every trainable BatchNorm layer's moving
    mean and variance to the average of its batch statistics over ``batches``
    training batches (the model run in training mode, weights unchanged)."""
    import keras
    import tensorflow as tf

    class PreciseBatchNorm(keras.callbacks.Callback):
        forward = None

        def on_test_begin(self, logs=None):
            layers = [layer for layer in self.model.layers if is_batch_norm(layer) and layer.trainable]
            if not layers:
                return
            saved = [layer.momentum for layer in layers]
            for layer in layers:
                layer.momentum = 0.0  # moving statistics := this batch's statistics
            if self.forward is None:
                model = self.model
                self.forward = tf.function(lambda x: model(x, training=True), reduce_retracing=True)
            means = [0.0] * len(layers)
            variances = [0.0] * len(layers)
            seen = 0
            try:
                for images, _ in dataset.take(batches):
                    self.forward(images)
                    seen += 1
                    for i, layer in enumerate(layers):
                        means[i] = means[i] + keras.ops.convert_to_numpy(layer.moving_mean)
                        variances[i] = variances[i] + keras.ops.convert_to_numpy(layer.moving_variance)
                if seen:
                    for i, layer in enumerate(layers):
                        layer.moving_mean.assign(means[i] / seen)
                        layer.moving_variance.assign(variances[i] / seen)
            finally:
                for layer, momentum in zip(layers, saved, strict=True):
                    layer.momentum = momentum

    return PreciseBatchNorm()


def _compile(model, learning_rate: float) -> None:
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])


def _check_workers_agree(strategy, epoch: int) -> None:
    """Every worker must resume from the same epoch (or none would finish: the step
    counts would differ). Equal iff mean(e^2) == mean(e)^2 over the workers."""
    import tensorflow as tf

    value = float(epoch)
    per_replica = strategy.run(lambda: tf.constant([value, value * value], tf.float64))
    mean, mean_square = strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None).numpy()
    if abs(mean_square - mean * mean) > 1e-9:
        raise ValueError(
            f"the workers found different checkpoints to resume from (this one: epoch {epoch}); with "
            "--strategy multiworker every worker reads the chief's --output folder: make it a shared folder "
            "(or copy it to each machine) before --resume"
        )


def fine_tune(
    model_name: str,
    data: Any = "digits",
    *,
    weights: str | os.PathLike | None = "imagenet",
    image_size: int | None = None,
    epochs_frozen: int = 3,
    epochs_unfrozen: int = 3,
    unfreeze_blocks: int = 2,
    learning_rate: float = 1e-3,
    fine_tune_learning_rate: float | None = None,
    batch_size: int = 32,
    output_dir: str | os.PathLike = "lightnets-train",
    strategy: Any = "auto",
    resume: bool = False,
    overwrite: bool = False,
    seed: int = 0,
    mixed_precision: str | bool = "auto",
    quiet: bool = False,
    limit: int | None = None,
    data_dir: str | None = None,
    dropout: float = 0.2,
    augmentation: Any = "default",
) -> FineTuneResult:
    """Fine-tune ``model_name`` on ``data`` and write the outputs to ``output_dir``.

    ``data``: a source for ``data.sources.load_images`` (``"digits"``, a folder,
    ``"tfds:NAME[:SPLIT]"``; its "train" and "validation" splits are used, each
    limited to ``limit`` images) or a ``(train, validation)`` pair of
    ``ImageData``/``StreamData``. Images are resized to ``image_size`` (default:
    the model's ImageNet input size) and preprocessed as the registry says.
    ``weights``: "imagenet", "auto" (ImageNet when in the Keras cache or the
    mirror folder, else random: nothing is downloaded), a weights file, or None.
    ``batch_size`` is per replica. ``strategy``: "auto", "one", "mirrored",
    "multiworker" (``$TF_CONFIG``) or a ``tf.distribute.Strategy``; it is created
    first, before any other TensorFlow op. Only the chief writes ``output_dir``
    (other workers write to a temporary folder, then delete it); with ``resume``
    every worker reads the checkpoint from ``output_dir`` (a shared folder).
    An ``output_dir`` holding a previous run is refused (``InputError``) unless
    ``resume`` (continue it; a malformed ``state.json`` or a missing checkpoint is
    refused too) or ``overwrite`` (replace it: its files are removed only once the
    new run has recorded its first epoch). A loss or weight that becomes inf/NaN
    raises ``TrainingDivergedError`` without recording that epoch.
    ``mixed_precision``: "auto" = float16 compute on GPUs of compute capability
    7.0 or more, never on CPU. ``augmentation``: "default" (per source, see
    ``data.pipeline.default_augmentation``), None, or a ``pipeline.Augmentation``.
    """
    from keras_lightnets.data import pipeline

    size = _check_arguments(model_name, weights, image_size, epochs_frozen, epochs_unfrozen, unfreeze_blocks,
                            learning_rate, fine_tune_learning_rate, batch_size, dropout, limit, resume, overwrite)
    info = make_strategy(strategy)  # before any other TF op (multi-worker collectives)
    output_dir = Path(output_dir)
    if info.is_chief:  # before loading data or building anything: refusals cost nothing
        check_output_dir(output_dir, resume=resume, overwrite=overwrite)
    state = read_run_state(output_dir) if resume else None  # every worker reads the chief's (shared) folder

    import keras

    def say(message: str) -> None:
        if not quiet and info.is_chief:
            print(message, file=sys.stderr, flush=True)

    keras.utils.set_random_seed(seed)
    use_mixed = resolve_mixed_precision(mixed_precision)
    train, validation, kind = _load_data(data, size, limit, seed, data_dir, say, progress=not quiet and info.is_chief)
    class_names = list(train.class_names)
    if augmentation == "default":
        augmentation = pipeline.default_augmentation(kind)
    replicas = info.replicas
    global_batch = batch_size * replicas
    multi = info.workers > 1
    datasets = {}
    for name, part, training in (("train", train, True), ("validation", validation, False)):
        datasets[name] = pipeline.make_dataset(
            # The classifier preprocesses inside (build_classifier): feed it raw pixels.
            part, image_size=size, preprocessing="in_model", batch_size=global_batch, training=training,
            seed=seed, augmentation=augmentation, repeat=multi, shard_by_data=multi,
        )
    steps = {"steps_per_epoch": math.ceil(_count(train) / global_batch),
             "validation_steps": math.ceil(_count(validation) / global_batch)} if multi else {}

    work_dir = output_dir if info.is_chief else Path(tempfile.mkdtemp(prefix="lightnets-worker-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    files.remove_stale_temporaries(work_dir)
    run_config = {"model": model_name, "image_size": size, "class_names": class_names}
    run = _Run(work_dir, run_config, replacing=state is None and bool(previous_run_files(work_dir)))
    if multi:
        _check_workers_agree(info.strategy, state["epoch"] if state else 0)
    if state is not None:
        differs = {k: (state["config"].get(k), v) for k, v in run_config.items() if state["config"].get(k) != v}
        if differs:
            raise InputError(f"cannot resume from {output_dir / CHECKPOINTS}: the run differs in {differs} (saved, "
                             f"now); replace it with {REPLACE_HINT} or choose another folder")
        run.history = [r for r in state["history"] if r["epoch"] <= state["epoch"]]
        run.best, run.best_epoch = state["best_val_accuracy"], state["best_epoch"]
        say(f"resuming after epoch {state['epoch']} (phase {state['phase']}) from "
            f"{output_dir / CHECKPOINTS / state['checkpoint']}")
    elif resume:
        say(f"no checkpoint in {run.checkpoints}; starting from epoch 1")
    if run.replacing:
        say(f"replacing the previous run in {work_dir} once epoch 1 is complete")

    total = epochs_frozen + epochs_unfrozen
    verbose = 0 if quiet or not info.is_chief else 1
    fine_tune_learning_rate = fine_tune_learning_rate or learning_rate / 10
    previous_policy = keras.config.dtype_policy()
    unfrozen: list[str] = []
    used_weights = weights
    try:
        if use_mixed:
            keras.config.set_dtype_policy("mixed_float16")
        with info.strategy.scope():
            if state is not None:
                from keras_lightnets.layers import custom_objects

                checkpoint = output_dir / CHECKPOINTS / state["checkpoint"]
                try:  # safe_mode: a checkpoint never runs code stored in it
                    model = keras.saving.load_model(checkpoint, compile=True, safe_mode=True,
                                                    custom_objects=custom_objects("keras"))
                except (ValueError, TypeError, OSError, KeyError) as err:
                    raise InputError(f"cannot resume: the checkpoint {checkpoint} cannot be loaded "
                                     f"({one_line(err)[:300]}); replace the run with {REPLACE_HINT}") from None
                start, phase = state["epoch"], state["phase"]
                used_weights = state["config"].get("weights")
            else:
                model, used_weights = build_classifier(model_name, len(class_names), image_size=size,
                                                       weights=weights, dropout=dropout)
                start, phase = 0, 0
            pretrained = used_weights is not None
            run.config["weights"] = None if used_weights is None else os.fspath(used_weights)
            if not pretrained and weights is not None and state is None:
                warnings.warn(f"{model_name}: no ImageNet weights offline: training from scratch", stacklevel=2)
            callbacks = [_stop_on_non_finite_loss()]
            if not pretrained and replicas == 1:
                callbacks.append(_precise_batch_norm(datasets["train"]))
            def train(first: int, last: int, phase_: int) -> None:
                name = PHASE_NAMES[pretrained, phase_]
                if multi:  # Keras 3.15's fit() cannot run several workers: the tf.distribute loop
                    fit_distributed(
                        model, info.strategy, datasets["train"], datasets["validation"], initial_epoch=first,
                        epochs=last, verbose=verbose, on_epoch_end=lambda epoch, logs: _record_epoch(
                            run, model, phase_, name, epoch, logs), **steps)
                else:
                    model.fit(datasets["train"], validation_data=datasets["validation"], initial_epoch=first,
                              epochs=last, verbose=verbose, callbacks=[*callbacks, _recorder(run, phase_, name)],
                              shuffle=False)  # the dataset shuffles itself

            if start < epochs_frozen and phase in (0, 1):
                if phase == 0:  # a fresh model (a resumed one comes compiled, with its optimizer state)
                    if pretrained:
                        freeze_base(model, HEAD_LAYERS)
                    _compile(model, learning_rate)
                say(f"phase 1/2: {'base frozen, head trained' if pretrained else 'all layers trained'}, "
                    f"epochs {start + 1}..{epochs_frozen}")
                train(start, epochs_frozen, 1)
                start, phase = epochs_frozen, 1
            if start < total:
                if phase != 2:
                    if pretrained:  # trainable layers change: compile again (a fresh optimizer)
                        unfrozen = unfreeze_top_blocks(model, unfreeze_blocks, HEAD_LAYERS)
                        _compile(model, fine_tune_learning_rate)
                    elif phase == 0:
                        _compile(model, fine_tune_learning_rate)
                    else:  # from scratch nothing is unfrozen: lower the rate, keep the compiled step
                        model.optimizer.learning_rate = fine_tune_learning_rate
                    start = max(start, epochs_frozen)
                what = (f"top {unfreeze_blocks} blocks unfrozen (BatchNorm frozen)" if pretrained
                        else "all layers trained at the lower learning rate")
                say(f"phase 2/2: {what}, epochs {start + 1}..{total}")
                train(start, total, 2)
        if run.history:
            files.write_history_csv(work_dir / HISTORY_CSV, run.history)
            files.write_history_png(work_dir / HISTORY_PNG, run.history,
                                      title=f"{model_name} on {data if isinstance(data, str) else 'custom data'}")
        say(f"best validation accuracy {run.best:.4f} at epoch {run.best_epoch}; wrote {work_dir / BEST}, "
            f"{work_dir / HISTORY_CSV}, {work_dir / HISTORY_PNG}")
    finally:
        keras.config.set_dtype_policy(previous_policy)
        if not info.is_chief:
            shutil.rmtree(work_dir, ignore_errors=True)
    return FineTuneResult(
        output_dir=str(output_dir), best_path=str(output_dir / BEST), best_val_accuracy=float(run.best),
        best_epoch=run.best_epoch, epochs=run.history[-1]["epoch"] if run.history else 0, history=run.history,
        class_names=class_names, weights=run.config.get("weights"), strategy=info.name, replicas=replicas,
        is_chief=info.is_chief, mixed_precision=use_mixed, unfrozen_blocks=unfrozen,
        resumed_from=state["epoch"] if state else 0, model=model,
    )
