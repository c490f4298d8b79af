"""Transfer learning of a registry model on a new image classification task.

``fine_tune(model_name, data, ...)`` trains ``base + Dropout + Dense(classes)``
(one flat Functional model: the head is built on ``base.output``) in two phases:

1. *frozen*: ``epochs_frozen`` epochs with the whole base frozen (BatchNorm in
   inference mode), only the head learning, at ``learning_rate``;
2. *unfrozen*: ``epochs_unfrozen`` more epochs with the top ``unfreeze_blocks``
   blocks of the base trainable (see ``training.unfreeze``; BatchNorm layers stay
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

The run is a sequence of short phases over one ``_Training`` record: the settings
are resolved (``settings.resolve_settings``), the strategy made, the folder checked
(``run_folder``), the data loaded (``inputs``); then ``_start`` (a new classifier, or
the checkpoint to resume), ``_train_head`` (phase 1), ``_train_top_blocks`` (phase 2)
and ``_finish`` (history files).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from keras_lightnets import files
from keras_lightnets.errors import InputError, one_line
from keras_lightnets.training.classifier import HEAD_LAYERS, build_classifier
from keras_lightnets.training.distributed import fit_distributed
from keras_lightnets.training.inputs import Inputs, load_data, make_inputs
from keras_lightnets.training.run_folder import (
    BEST,
    CHECKPOINTS,
    HISTORY_CSV,
    HISTORY_PNG,
    REPLACE_HINT,
    RunRecord,
    check_output_dir,
    previous_run_files,
    read_run_state,
)
from keras_lightnets.training.settings import FineTuneSettings, resolve_settings
from keras_lightnets.training.strategy import StrategyInfo, make_strategy, resolve_mixed_precision
from keras_lightnets.training.unfreeze import freeze_base, unfreeze_top_blocks

PHASE_NAMES = {  # (pretrained, phase) -> the "phase" column of history.csv
    (True, 1): "frozen_base", (True, 2): "top_blocks", (False, 1): "scratch", (False, 2): "scratch_low_lr",
}


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


@dataclass(frozen=True)
class _Messages:
    """Progress lines on stderr, when ``on`` (the chief of a run that is not quiet)."""

    on: bool

    def __call__(self, message: str) -> None:
        if self.on:
            print(message, file=sys.stderr, flush=True)


@dataclass
class _Training:
    """A run in progress: what its phases share. ``epoch``: epochs completed (counted over
    both phases); ``phase``: that of the last epoch run, 0 for a new, uncompiled model."""

    settings: FineTuneSettings
    info: StrategyInfo
    inputs: Inputs
    run: RunRecord
    say: _Messages
    model: Any = None
    epoch: int = 0
    phase: int = 0
    pretrained: bool = False
    callbacks: list = field(default_factory=list)
    unfrozen: list[str] = field(default_factory=list)

    @property
    def verbose(self) -> int:
        """``fit``'s verbosity: a progress bar on the chief unless quiet."""
        return 0 if self.settings.quiet or not self.info.is_chief else 1


def _check_folder(settings: FineTuneSettings, info: StrategyInfo) -> dict | None:
    """The state of the run to resume (None for a new run), before any data is loaded or model built:
    the chief checks the output folder; with ``resume`` every worker reads the chief's (shared) folder."""
    if info.is_chief:
        check_output_dir(settings.output_dir, resume=settings.resume, overwrite=settings.overwrite)
    return read_run_state(settings.output_dir) if settings.resume else None


def _check_workers_agree(strategy, epoch: int) -> None:
    """Every worker must resume from the same epoch (or none would finish: the step
    counts would differ). Equal iff mean(e^2) == mean(e)^2 over the workers."""
    import tensorflow as tf

    value = float(epoch)
    per_replica = strategy.run(partial(tf.constant, [value, value * value], tf.float64))
    mean, mean_square = strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None).numpy()
    if abs(mean_square - mean * mean) > 1e-9:
        raise ValueError(
            f"the workers found different checkpoints to resume from (this one: epoch {epoch}); with "
            "--strategy multiworker every worker reads the chief's --output folder: make it a shared folder "
            "(or copy it to each machine) before --resume"
        )


def _open_run(settings: FineTuneSettings, info: StrategyInfo, class_names: list[str], state: dict | None,
              say: _Messages) -> RunRecord:
    """The run's bookkeeping, in the output folder (on workers other than the chief: a temporary
    folder), continuing ``state`` when resuming."""
    work_dir = settings.output_dir if info.is_chief else Path(tempfile.mkdtemp(prefix="lightnets-worker-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    files.remove_stale_temporaries(work_dir)
    config = {"model": settings.model_name, "image_size": settings.image_size, "class_names": class_names}
    run = RunRecord(work_dir, config, replacing=state is None and bool(previous_run_files(work_dir)))
    if info.workers > 1:
        _check_workers_agree(info.strategy, state["epoch"] if state else 0)
    if state is not None:
        run.continue_from(state, settings.output_dir)
        say(f"resuming after epoch {state['epoch']} (phase {state['phase']}) from "
            f"{settings.output_dir / CHECKPOINTS / state['checkpoint']}")
    elif settings.resume:
        say(f"no checkpoint in {run.checkpoints}; starting from epoch 1")
    if run.replacing:
        say(f"replacing the previous run in {work_dir} once epoch 1 is complete")
    return run


def _load_checkpoint(path: Path):
    """The compiled model, with its optimizer state, of a checkpoint (``InputError`` when unloadable)."""
    import keras

    from keras_lightnets.layers import custom_objects

    try:  # safe_mode: a checkpoint never runs code stored in it
        return keras.saving.load_model(path, compile=True, safe_mode=True, custom_objects=custom_objects("keras"))
    except (ValueError, TypeError, OSError, KeyError) as err:
        raise InputError(f"cannot resume: the checkpoint {path} cannot be loaded "
                         f"({one_line(err)[:300]}); replace the run with {REPLACE_HINT}") from None


def _start(training: _Training, state: dict | None) -> None:
    """Phase 0: the model to train -- the checkpoint's when resuming (compiled, in its phase),
    else a new classifier -- and the callbacks of ``fit``."""
    settings = training.settings
    if state is not None:
        training.model = _load_checkpoint(settings.output_dir / CHECKPOINTS / state["checkpoint"])
        training.epoch, training.phase = state["epoch"], state["phase"]
        used = state["config"].get("weights")
    else:
        training.model, used = build_classifier(settings.model_name, len(training.inputs.class_names),
                                                image_size=settings.image_size, weights=settings.weights,
                                                dropout=settings.dropout)
    training.pretrained = used is not None
    training.run.config["weights"] = None if used is None else os.fspath(used)
    if not training.pretrained and settings.weights is not None and state is None:
        warnings.warn(f"{settings.model_name}: no ImageNet weights offline: training from scratch", stacklevel=3)
    training.callbacks = _callbacks(training)


def _callbacks(training: _Training) -> list:
    """``fit``'s callbacks: stop at a non-finite loss or between steps on Ctrl-C; from scratch on
    one replica, precise BatchNorm (moving statistics re-estimated on a few training batches
    before each validation)."""
    from keras_lightnets.training.callbacks import PreciseBatchNorm, stop_callbacks

    callbacks = stop_callbacks()
    if not training.pretrained and training.info.replicas == 1:
        callbacks.append(PreciseBatchNorm(training.inputs.train))
    return callbacks


def _compile(model, learning_rate: float) -> None:
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])


def _fit(training: _Training, last: int, phase: int) -> None:
    """Train epochs ``training.epoch + 1 .. last`` (counted from 1) of ``phase``, recording each."""
    from keras_lightnets.training.callbacks import EpochRecorder, record_epoch

    name = PHASE_NAMES[training.pretrained, phase]
    model, inputs = training.model, training.inputs
    if training.info.workers > 1:  # Keras 3.15's fit() cannot run several workers: the tf.distribute loop
        fit_distributed(model, training.info.strategy, inputs.train, inputs.validation,
                        initial_epoch=training.epoch, epochs=last, verbose=training.verbose,
                        on_epoch_end=partial(record_epoch, training.run, model, phase, name), **inputs.steps)
    else:
        model.fit(inputs.train, validation_data=inputs.validation, initial_epoch=training.epoch, epochs=last,
                  verbose=training.verbose, callbacks=[*training.callbacks, EpochRecorder(training.run, phase, name)],
                  shuffle=False)  # the dataset shuffles itself
    training.epoch, training.phase = last, phase


def _train_head(training: _Training) -> None:
    """Phase 1, epochs up to ``epochs_frozen``: pretrained, only the head learns on a frozen base;
    from scratch, every layer. At ``learning_rate``."""
    settings = training.settings
    if training.epoch >= settings.epochs_frozen or training.phase == 2:
        return
    if training.phase == 0:  # a new model (a resumed one comes compiled, with its optimizer state)
        if training.pretrained:
            freeze_base(training.model, HEAD_LAYERS)
        _compile(training.model, settings.learning_rate)
    what = "base frozen, head trained" if training.pretrained else "all layers trained"
    training.say(f"phase 1/2: {what}, epochs {training.epoch + 1}..{settings.epochs_frozen}")
    _fit(training, settings.epochs_frozen, 1)


def _unfreeze(training: _Training) -> None:
    """The switch to phase 2: pretrained, the top blocks become trainable (a new optimizer);
    from scratch, the learning rate drops to ``fine_tune_learning_rate``."""
    settings = training.settings
    if training.pretrained:  # trainable layers change: compile again (a fresh optimizer)
        training.unfrozen = unfreeze_top_blocks(training.model, settings.unfreeze_blocks, HEAD_LAYERS,
                                                model_name=settings.model_name)
        _compile(training.model, settings.fine_tune_learning_rate)
    elif training.phase == 0:
        _compile(training.model, settings.fine_tune_learning_rate)
    else:  # from scratch nothing is unfrozen: lower the rate, keep the compiled step
        training.model.optimizer.learning_rate = settings.fine_tune_learning_rate
    training.epoch = max(training.epoch, settings.epochs_frozen)


def _train_top_blocks(training: _Training) -> None:
    """Phase 2, the remaining epochs: the top ``unfreeze_blocks`` blocks (BatchNorm frozen), or
    from scratch every layer, at ``fine_tune_learning_rate``."""
    settings = training.settings
    if training.epoch >= settings.epochs:
        return
    if training.phase != 2:
        _unfreeze(training)
    what = (f"top {settings.unfreeze_blocks} blocks unfrozen (BatchNorm frozen)" if training.pretrained
            else "all layers trained at the lower learning rate")
    training.say(f"phase 2/2: {what}, epochs {training.epoch + 1}..{settings.epochs}")
    _fit(training, settings.epochs, 2)


def _finish(training: _Training) -> None:
    """``history.csv`` and ``history.png`` of the whole run, and the closing line."""
    settings, run = training.settings, training.run
    run.write_history(f"{settings.model_name} on {settings.data_title}")
    training.say(f"best validation accuracy {run.best:.4f} at epoch {run.best_epoch}; wrote {run.work_dir / BEST}, "
                 f"{run.work_dir / HISTORY_CSV}, {run.work_dir / HISTORY_PNG}")


def _result(training: _Training, state: dict | None, mixed_precision: bool) -> FineTuneResult:
    settings, info, run = training.settings, training.info, training.run
    return FineTuneResult(
        output_dir=str(settings.output_dir), best_path=str(settings.output_dir / BEST),
        best_val_accuracy=float(run.best), best_epoch=run.best_epoch,
        epochs=run.history[-1]["epoch"] if run.history else 0, history=run.history,
        class_names=training.inputs.class_names, weights=run.config.get("weights"), strategy=info.name,
        replicas=info.replicas, is_chief=info.is_chief, mixed_precision=mixed_precision,
        unfrozen_blocks=training.unfrozen, resumed_from=state["epoch"] if state else 0, model=training.model,
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
    settings = resolve_settings(
        model_name, data, weights=weights, image_size=image_size, epochs_frozen=epochs_frozen,
        epochs_unfrozen=epochs_unfrozen, unfreeze_blocks=unfreeze_blocks, learning_rate=learning_rate,
        fine_tune_learning_rate=fine_tune_learning_rate, batch_size=batch_size, output_dir=output_dir,
        resume=resume, overwrite=overwrite, seed=seed, quiet=quiet, limit=limit, data_dir=data_dir,
        dropout=dropout, augmentation=augmentation,
    )
    info = make_strategy(strategy)  # before any other TF op (multi-worker collectives)
    state = _check_folder(settings, info)

    import keras

    say = _Messages(not quiet and info.is_chief)
    keras.utils.set_random_seed(seed)
    use_mixed = resolve_mixed_precision(mixed_precision)
    train, validation, kind = load_data(settings, say, progress=say.on)
    inputs = make_inputs(settings, info, train, validation, kind)
    run = _open_run(settings, info, inputs.class_names, state, say)
    training = _Training(settings, info, inputs, run, say)
    previous_policy = keras.config.dtype_policy()
    try:
        if use_mixed:
            keras.config.set_dtype_policy("mixed_float16")
        with info.strategy.scope():
            _start(training, state)
            _train_head(training)
            _train_top_blocks(training)
        _finish(training)
    finally:
        keras.config.set_dtype_policy(previous_policy)
        if not info.is_chief:
            shutil.rmtree(run.work_dir, ignore_errors=True)
    return _result(training, state, use_mixed)
