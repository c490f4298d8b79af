"""Training detectors the way ``fine_tune`` trains classifiers: phases, checkpoints, resume.

``fit_detector(detector, train, validation)`` trains a detector of ``detection.builders``
(``SSDLite``, ``RetinaNet``; Keras 3 or tf_keras, whichever it was built in) with ``fit``, in
two phases over one epoch count (1 .. ``epochs_frozen + epochs_unfrozen``):

1. *frozen*: ``epochs_frozen`` epochs with the backbone frozen (its BatchNorm layers in
   inference mode), the detector's own layers (extra levels / FPN and heads) learning, at
   ``learning_rate``;
2. *unfrozen*: ``epochs_unfrozen`` more epochs with the top ``unfreeze_blocks`` blocks of the
   backbone trainable as well (``training.unfreeze`` with the registry's ``layer_groups`` of
   ``detector_info["backbone"]``; BatchNorm stays frozen), at ``fine_tune_learning_rate``
   (default ``learning_rate / 10``).

With ``backbone_pretrained=False`` (a backbone built with ``backbone_weights=None``) there is
nothing to transfer: both phases train every layer (phase 2 at the lower rate) and BatchNorm
statistics are re-estimated before each validation (``callbacks.PreciseBatchNorm``), as
``fine_tune`` does from scratch.

Losses are compiled per output (``model.compile(loss={"classes": ..., "boxes": ...})``):
softmax detectors (``detector_info["score"] == "softmax"``, SSD/SSDLite) use
``detection.losses.multibox_loss`` (hard-negative mining), sigmoid detectors (RetinaNet)
``detection.losses.focal_loss`` (focal classification + L1 box loss); the targets come from
``data.detection_pipeline`` (``matching.TargetEncoder`` with the detector's anchors, the SSD or
RetinaNet rule and its box coder). The history's ``accuracy`` columns are the *foreground
anchor accuracy*: of the anchors matched to an object, the fraction whose highest class logit is
the object's class (background included for softmax heads); ``best.keras`` is the epoch with the
best validation foreground accuracy. Without validation data the training figures stand in for
the validation columns.

The run folder is ``training.run_folder``'s (``RunRecord``, ``check_output_dir``,
``read_run_state``): after every epoch ``best.keras`` when it improved, the ``run_files`` (such
as ``training.detector_record``'s ``detector.json``), ``checkpoints/epoch-NNN.keras`` (model and
optimizer state), ``checkpoints/state.json``, ``history.csv``; at the end ``history.png``. A
folder holding a previous run is refused unless ``resume`` or ``overwrite`` (the old files stay
until the new run's first epoch is recorded). A non-finite loss stops the run with
``TrainingDivergedError`` before that epoch is recorded. ``time_budget`` stops between epochs
once the next epoch would not end within the budget (counted from the call).

The ``.keras`` files load with ``safe_mode=True``; with ``compile=True`` they need
``detection_custom_objects(flavour)`` (the loss and metric classes); ``compile=False`` needs only
the package's layers. Saved files do not carry ``anchors`` / ``detector_info`` (rebuild the
detector with the same arguments, as ``detection.builders`` says;
``training.detector_record.load_detector`` does that from the ``detector.json`` record given in
``run_files``).
"""

from __future__ import annotations

import functools
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keras_lightnets import _backend, files
from keras_lightnets.data.detection_pipeline import (
    PREPROCESSING_CHOICES,
    DetectionAugmentation,
    PreparedDetections,
    make_detection_dataset,
    prepare_detection_data,
)
from keras_lightnets.errors import InputError, one_line
from keras_lightnets.training.fine_tune import PHASE_NAMES
from keras_lightnets.training.run_folder import (
    BEST,
    CHECKPOINTS,
    HISTORY_CSV,
    REPLACE_HINT,
    RunRecord,
    check_documents,
    check_output_dir,
    previous_run_files,
    read_run_state,
)
from keras_lightnets.validation import check_bool, check_choice, is_int

DEFAULT_OUTPUT = "lightnets-detect"
SCHEDULES = ("constant", "cosine")
OPTIMIZERS = ("adam", "sgd")
OUTPUT_NAMES = ("classes", "boxes")
LOSS_OPTIONS = {  # detector_info["score"] -> the loss function's keyword arguments fit_detector accepts
    "softmax": ("negative_ratio",),
    "sigmoid": ("alpha", "gamma", "box_loss", "beta", "normalize"),
}
ACCURACY_NAME = "foreground_accuracy"


# ----------------------------------------------------------------------------- the detector


@dataclass(frozen=True)
class DetectorTargets:
    """How a detector's training targets are made: its ``encoder`` (``matching.TargetEncoder``),
    ``class_offset`` (added to 0-based class ids: 1 where column 0 is background), whether boxes
    are encoded as fractions of the image (``relative_boxes``), its foreground class count
    ``num_classes``, ``score`` (``"softmax"`` / ``"sigmoid"``) and input ``(height, width)``."""

    encoder: Any
    class_offset: int
    relative_boxes: bool
    num_classes: int
    score: str
    input_size: tuple[int, int]


def _info(detector) -> dict:
    info = getattr(detector, "detector_info", None)
    anchors = getattr(detector, "anchors", None)
    names = list(getattr(detector, "output_names", None) or [])
    if not isinstance(info, dict) or anchors is None or names != list(OUTPUT_NAMES):
        raise InputError(
            "`detector` must be a detector of keras_lightnets.detection (SSDLite, RetinaNet): a Keras model with "
            f"outputs {list(OUTPUT_NAMES)} and the attributes `anchors` and `detector_info`; received "
            f"{type(detector).__name__} (a loaded .keras file has neither attribute: rebuild the detector)"
        )
    return info


def detector_targets(detector) -> DetectorTargets:
    """The ``DetectorTargets`` of ``detector`` (from its ``anchors`` and ``detector_info``)."""
    from keras_lightnets.detection.matching import BoxCoder, MatchRule, TargetEncoder

    info = _info(detector)
    score, coding = info.get("score"), info.get("box_coding")
    check_choice("detector_info['score']", score, tuple(LOSS_OPTIONS))
    check_choice("detector_info['box_coding']", coding, ("torchvision", "ssd"))
    if score == "softmax" and info.get("background_class") != 0:
        raise InputError("softmax detectors must have the background in column 0; received "
                         f"detector_info['background_class']={info.get('background_class')!r}")
    rule = MatchRule.ssd() if score == "softmax" else MatchRule.retinanet()
    coder = BoxCoder.torchvision(info["box_weights"]) if coding == "torchvision" else BoxCoder.ssd(*info["variances"])
    height, width = (int(d) for d in info["input_shape"][:2])
    total = int(info["num_classes"])
    return DetectorTargets(
        encoder=TargetEncoder(detector.anchors, rule, coder), class_offset=1 if score == "softmax" else 0,
        relative_boxes=info.get("anchor_format") == "cxcywh_relative",
        num_classes=total - 1 if score == "softmax" else total, score=score, input_size=(height, width),
    )


def head_layer_names(detector) -> list[str]:
    """The layers a detector adds to its backbone (trained in phase 1): the outputs ``classes`` and
    ``boxes`` and every layer named ``<detector_info["type"]>_...`` (the builders' prefix)."""
    prefix = f"{_info(detector)['type']}_"
    return [layer.name for layer in detector.layers if layer.name in OUTPUT_NAMES or layer.name.startswith(prefix)]


def input_preprocessing(detector) -> str:
    """How images are scaled before the detector: ``"in_model"`` when its backbone rescales
    inside (a ``rescaling`` layer), else the backbone's registry preprocessing (``"tf"``, ``"torch"``)."""
    from keras_lightnets.models.builder import PREPROCESSING_LAYER
    from keras_lightnets.models.registry import list_models, model_config

    if any(layer.name == PREPROCESSING_LAYER for layer in detector.layers):
        return "in_model"
    backbone = _info(detector).get("backbone")
    if backbone not in list_models():
        raise InputError(f"cannot tell how detector {detector.name!r} expects its pixels (backbone {backbone!r} is "
                         "not a registry model); pass preprocessing='in_model', 'tf', 'torch' or 'bgr255'")
    return model_config(backbone).preprocessing


# ----------------------------------------------------------------------------- losses and metric


class _LossLogic:
    """One part (``"classification"`` or ``"boxes"``) of a detector's loss, as a Keras ``Loss``.

    ``score``: ``"softmax"`` (``losses.multibox_loss``) or ``"sigmoid"`` (``losses.focal_loss``);
    ``options``: that function's keyword arguments. ``y_true``: the class targets ``(B, A)`` for
    ``"classification"``; for ``"boxes"`` ``(B, A, 5)``: the encoded boxes and the class target.
    Each call returns the batch's loss, a float32 scalar (reduced with ``"sum"``: itself)."""

    def _setup(self, score: str, part: str, options: dict | None) -> None:
        self.score, self.part, self.options = score, part, dict(options or {})

    def call(self, y_true, y_pred):
        import tensorflow as tf

        from keras_lightnets.detection import losses

        function = losses.multibox_loss if self.score == "softmax" else losses.focal_loss
        y_pred = tf.cast(y_pred, tf.float32)
        if self.part == "classification":
            targets = tf.cast(tf.round(tf.cast(y_true, tf.float32)), tf.int32)
            zeros = tf.zeros(tf.concat([tf.shape(targets), [4]], axis=0), tf.float32)
            return function(y_pred, zeros, targets, zeros, **self.options)[0]
        y_true = tf.cast(y_true, tf.float32)
        targets = tf.cast(tf.round(y_true[..., 4]), tf.int32)
        if self.score == "softmax":  # the regression reads only which anchors are foreground
            targets = tf.minimum(targets, 1)
        columns = 2 if self.score == "softmax" else 1
        logits = tf.zeros(tf.concat([tf.shape(targets), [columns]], axis=0), tf.float32)
        return function(logits, y_pred, targets, y_true[..., :4], **self.options)[1]

    def _own_config(self) -> dict:
        return {"score": self.score, "part": self.part, "options": dict(self.options)}


class _AccuracyLogic:
    """Foreground anchor accuracy as a Keras ``Metric`` on the ``classes`` output: of the anchors
    whose class target is an object, the fraction whose largest logit is that class."""

    def _setup(self, score: str) -> None:
        self.score = score
        self.correct = self.add_weight(name="correct", shape=(), initializer="zeros")
        self.total = self.add_weight(name="total", shape=(), initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        import tensorflow as tf

        targets = tf.cast(tf.round(tf.cast(y_true, tf.float32)), tf.int32)
        foreground = targets > 0 if self.score == "softmax" else targets >= 0
        predicted = tf.argmax(y_pred, axis=-1, output_type=tf.int32)
        hits = tf.reduce_sum(tf.cast(foreground & tf.equal(predicted, targets), tf.float32))
        self.correct.assign_add(hits)
        self.total.assign_add(tf.reduce_sum(tf.cast(foreground, tf.float32)))

    def result(self):
        import tensorflow as tf

        return tf.math.divide_no_nan(tf.convert_to_tensor(self.correct), tf.convert_to_tensor(self.total))


@functools.cache
def detection_custom_objects(flavour: str = "keras") -> dict[str, type]:
    """``{"DetectionLoss": ..., "ForegroundAccuracy": ...}`` of ``flavour`` (registered with its
    serialization as ``keras_lightnets>...``), with the package's layers, for ``custom_objects=``."""
    from keras_lightnets.layers import custom_objects

    keras = _backend.keras_module(_backend.check_flavour(flavour))
    register = keras.saving.register_keras_serializable(package="keras_lightnets")

    class DetectionLoss(_LossLogic, keras.losses.Loss):
        def __init__(self, score: str = "softmax", part: str = "classification", options: dict | None = None,
                     name: str | None = None, **kwargs):
            kwargs.pop("reduction", None)
            super().__init__(name=name or f"{part}_loss", reduction="sum", **kwargs)
            self._setup(score, part, options)

        def call(self, y_true, y_pred):
            return _LossLogic.call(self, y_true, y_pred)

        def get_config(self):
            return {**super().get_config(), **self._own_config()}

    class ForegroundAccuracy(_AccuracyLogic, keras.metrics.Metric):
        def __init__(self, score: str = "softmax", name: str = ACCURACY_NAME, **kwargs):
            super().__init__(name=name, **kwargs)
            self._setup(score)

        def update_state(self, y_true, y_pred, sample_weight=None):
            _AccuracyLogic.update_state(self, y_true, y_pred, sample_weight)

        def result(self):
            return _AccuracyLogic.result(self)

        def get_config(self):
            return {**super().get_config(), "score": self.score}

    classes = {"DetectionLoss": register(DetectionLoss), "ForegroundAccuracy": register(ForegroundAccuracy)}
    return {**custom_objects(flavour), **classes}


def _check_loss_options(score: str, options) -> dict:
    """``options`` checked against the loss function of ``score`` (``InputError`` now, not mid-epoch)."""
    import numpy as np

    from keras_lightnets.detection import losses

    options = {} if options is None else options
    if not isinstance(options, dict) or any(key not in LOSS_OPTIONS[score] for key in options):
        raise InputError(f"`loss_options` must be a dict with keys from {list(LOSS_OPTIONS[score])} for a "
                         f"{score} detector; received loss_options={options!r}")
    function = losses.multibox_loss if score == "softmax" else losses.focal_loss
    function(np.zeros((1, 1, 2), np.float32), np.zeros((1, 1, 4), np.float32), np.zeros((1, 1), np.int32),
             np.zeros((1, 1, 4), np.float32), **options)
    return dict(options)


def detection_losses(detector, loss_options: dict | None = None) -> dict[str, Any]:
    """``{"classes": Loss, "boxes": Loss}`` for ``detector.compile`` (its flavour): multibox for
    softmax detectors, focal (+ its box loss) for sigmoid ones; ``loss_options``: that function's
    keyword arguments (see ``LOSS_OPTIONS``)."""
    score = detector_targets(detector).score
    options = _check_loss_options(score, loss_options)
    loss = detection_custom_objects(_backend.flavour_of(detector))["DetectionLoss"]
    return {"classes": loss(score, "classification", options), "boxes": loss(score, "boxes", options)}


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class DetectionSettings:
    """What one ``fit_detector`` run does, resolved (see ``fit_detector`` for each argument)."""

    epochs_frozen: int
    epochs_unfrozen: int
    unfreeze_blocks: int
    backbone_pretrained: bool
    learning_rate: float
    fine_tune_learning_rate: float
    schedule: str
    optimizer: str
    warmup_epochs: int
    batch_size: int
    output_dir: Path
    resume: bool
    overwrite: bool
    augmentation: DetectionAugmentation | None
    seed: int
    time_budget: float | None
    box_weight: float
    clipnorm: float | None
    loss_options: dict
    preprocessing: str | None
    quiet: bool

    @property
    def epochs(self) -> int:
        return self.epochs_frozen + self.epochs_unfrozen


def _int_at_least(name: str, value, minimum: int) -> int:
    if not is_int(value) or value < minimum:
        raise InputError(f"`{name}` must be an int >= {minimum}; received {name}={value!r}")
    return int(value)


def _positive(name: str, value, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        extra = "None or " if allow_none else ""
        raise InputError(f"`{name}` must be {extra}a finite number > 0; received {name}={value!r}")
    return float(value)


def _resolve(arguments: dict, score: str) -> DetectionSettings:
    epochs_frozen = _int_at_least("epochs_frozen", arguments["epochs_frozen"], 0)
    epochs_unfrozen = _int_at_least("epochs_unfrozen", arguments["epochs_unfrozen"], 0)
    if epochs_frozen + epochs_unfrozen < 1:
        raise InputError("at least one epoch is needed: epochs_frozen + epochs_unfrozen >= 1")
    for name in ("backbone_pretrained", "resume", "overwrite", "quiet"):
        check_bool(name, arguments[name])
    if arguments["resume"] and arguments["overwrite"]:
        raise InputError("`resume` and `overwrite` exclude each other: continue the run or replace it, not both")
    augmentation = arguments["augmentation"]
    if augmentation == "default":
        augmentation = DetectionAugmentation()
    elif augmentation is not None and not isinstance(augmentation, DetectionAugmentation):
        raise InputError("`augmentation` must be 'default', None or a DetectionAugmentation; received "
                         f"augmentation={augmentation!r}")
    check_choice("schedule", arguments["schedule"], SCHEDULES)
    check_choice("optimizer", arguments["optimizer"], OPTIMIZERS)
    if arguments["preprocessing"] is not None:
        check_choice("preprocessing", arguments["preprocessing"], PREPROCESSING_CHOICES)
    if not is_int(arguments["seed"]):
        raise InputError(f"`seed` must be an int; received seed={arguments['seed']!r}")
    rate = _positive("learning_rate", arguments["learning_rate"])
    fine_rate = _positive("fine_tune_learning_rate", arguments["fine_tune_learning_rate"], allow_none=True)
    return DetectionSettings(
        epochs_frozen=epochs_frozen, epochs_unfrozen=epochs_unfrozen,
        unfreeze_blocks=_int_at_least("unfreeze_blocks", arguments["unfreeze_blocks"], 0),
        backbone_pretrained=arguments["backbone_pretrained"], learning_rate=rate,
        fine_tune_learning_rate=fine_rate or rate / 10, schedule=arguments["schedule"],
        optimizer=arguments["optimizer"],
        warmup_epochs=_int_at_least("warmup_epochs", arguments["warmup_epochs"], 0),
        batch_size=_int_at_least("batch_size", arguments["batch_size"], 1), output_dir=Path(arguments["output_dir"]),
        resume=arguments["resume"], overwrite=arguments["overwrite"], augmentation=augmentation,
        seed=int(arguments["seed"]), time_budget=_positive("time_budget", arguments["time_budget"], allow_none=True),
        box_weight=_positive("box_weight", arguments["box_weight"]),
        clipnorm=_positive("clipnorm", arguments["clipnorm"], allow_none=True),
        loss_options=_check_loss_options(score, arguments["loss_options"]),
        preprocessing=arguments["preprocessing"], quiet=arguments["quiet"],
    )


# ----------------------------------------------------------------------------- callbacks


@functools.cache
def _callback_classes() -> dict[str, type]:
    """The Keras 3 callbacks of a run (built on ``training.callbacks``) and a tf_keras adapter."""
    import keras

    from keras_lightnets.training.callbacks import EpochRecorder

    class DetectionRecorder(EpochRecorder):
        """``EpochRecorder`` with the detector's logs mapped to the history columns."""

        def __init__(self, run: RunRecord, phase: int, phase_name: str, validated: bool):
            super().__init__(run, phase, phase_name)
            self.validated = validated

        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, history_logs(logs or {}, self.validated))

    class TimeBudget(keras.callbacks.Callback):
        """Stop ``fit`` after an epoch when another epoch as long would end after ``deadline``
        (``time.monotonic()`` seconds); ``stopped`` says whether it did."""

        def __init__(self, deadline: float):
            super().__init__()
            self.deadline, self.started, self.stopped = deadline, 0.0, False

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            now = time.monotonic()
            if now + (now - self.started) > self.deadline:
                self.model.stop_training = True
                self.stopped = True

    return {"DetectionRecorder": DetectionRecorder, "TimeBudget": TimeBudget}


@functools.cache
def _tf_keras_adapter() -> type:
    """A tf_keras callback that forwards ``fit``'s hooks to a Keras 3 callback (tf_keras' ``fit``
    accepts only its own callbacks; the package's are Keras 3)."""
    import tf_keras

    class Forward(tf_keras.callbacks.Callback):
        def __init__(self, callback):
            super().__init__()
            self.callback = callback

        def set_model(self, model):
            super().set_model(model)
            self.callback.set_model(model)

        def set_params(self, params):
            super().set_params(params)
            self.callback.set_params(params)

        def on_epoch_begin(self, epoch, logs=None):
            self.callback.on_epoch_begin(epoch, logs)

        def on_epoch_end(self, epoch, logs=None):
            self.callback.on_epoch_end(epoch, logs)

        def on_train_batch_end(self, batch, logs=None):
            self.callback.on_train_batch_end(batch, logs)

        def on_test_begin(self, logs=None):
            self.callback.on_test_begin(logs)

        def on_test_batch_end(self, batch, logs=None):
            self.callback.on_test_batch_end(batch, logs)

        def on_train_begin(self, logs=None):
            self.callback.on_train_begin(logs)

        def on_train_end(self, logs=None):
            self.callback.on_train_end(logs)

    return Forward


def history_logs(logs: dict, validated: bool) -> dict:
    """``fit``'s epoch ``logs`` of a detector as the history columns ``record_epoch`` reads:
    ``accuracy`` / ``val_accuracy`` are the (validation) foreground anchor accuracy; without
    validation data (``validated=False``) the training loss and accuracy stand in for both."""
    logs = dict(logs)

    def metric(prefix: str) -> float:
        keys = [k for k in logs if k.startswith(prefix) and k.endswith(ACCURACY_NAME)
                and (prefix or not k.startswith("val_"))]
        return float(logs[keys[0]]) if keys else math.nan

    logs["accuracy"] = metric("")
    logs["val_accuracy"] = metric("val_") if validated else logs["accuracy"]
    if not validated:
        logs["val_loss"] = logs.get("loss", math.nan)
    return logs


# ----------------------------------------------------------------------------- the run


@dataclass
class DetectionFitResult:
    """What a run produced.

    ``best_path``: ``best.keras`` (best validation foreground accuracy); ``checkpoint_path``: the
    last epoch's checkpoint (model and optimizer); ``history``: one row per epoch
    (``files.HISTORY_COLUMNS``); ``epochs``: the last epoch recorded (counted over both phases);
    ``epochs_run``: epochs trained by this call (a resumed run counts from ``resumed_from``);
    ``data`` / ``validation_data``: ``DataReport.as_dict()`` (dropped boxes, images without boxes, ...);
    ``stopped_by_budget``: ``time_budget`` ended the run early; ``seconds``: wall-clock time of the
    call; ``model``: the detector after the last epoch (with ``anchors`` / ``detector_info``)."""

    output_dir: str
    best_path: str
    checkpoint_path: str
    best_val_accuracy: float
    best_epoch: int
    epochs: int
    epochs_run: int
    history: list[dict]
    data: dict
    validation_data: dict | None
    class_names: list[str]
    preprocessing: str
    stopped_by_budget: bool
    seconds: float
    unfrozen_blocks: list[str] = field(default_factory=list)
    resumed_from: int = 0
    model: Any = None


@dataclass
class _Training:
    """A run in progress (see ``fine_tune._Training``): ``epoch`` completed epochs, ``phase`` that
    of the last epoch (0 for a new, uncompiled model)."""

    settings: DetectionSettings
    targets: DetectorTargets
    train: Any
    validation: Any
    steps: int
    run: RunRecord
    flavour: str
    head: list[str]
    backbone: str | None
    deadline: float | None
    model: Any = None
    epoch: int = 0
    phase: int = 0
    stopped: bool = False
    unfrozen: list[str] = field(default_factory=list)

    def say(self, message: str) -> None:
        if not self.settings.quiet:
            print(message, file=sys.stderr, flush=True)


def _load_checkpoint(path: Path, flavour: str):
    """The compiled model (with optimizer state) of a checkpoint; ``InputError`` when unloadable."""
    keras = _backend.keras_module(flavour)
    try:  # safe_mode: a checkpoint never runs code stored in it
        return keras.saving.load_model(path, compile=True, safe_mode=True,
                                       custom_objects=detection_custom_objects(flavour))
    except (ValueError, TypeError, OSError, KeyError) as err:
        raise InputError(f"cannot resume: the checkpoint {path} cannot be loaded "
                         f"({one_line(err)[:300]}); replace the run with {REPLACE_HINT}") from None


def _compile(training: _Training, learning_rate: float, epochs: int, warmup_epochs: int = 0) -> None:
    """Compile with a fresh optimizer (``settings.optimizer``) at ``learning_rate`` (``"cosine"``:
    decayed to 1 % over ``epochs``), reached by a linear warmup from 0 over ``warmup_epochs``."""
    settings, model = training.settings, training.model
    keras = _backend.keras_module(training.flavour)
    objects = detection_custom_objects(training.flavour)
    rate: Any = learning_rate
    warmup = min(warmup_epochs, epochs) * training.steps
    if settings.schedule == "cosine" or warmup:
        rate = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else learning_rate, max(1, epochs * training.steps - warmup),
            alpha=0.01 if settings.schedule == "cosine" else 1.0,
            warmup_target=learning_rate if warmup else None, warmup_steps=warmup)
    if settings.optimizer == "adam":
        optimizer = keras.optimizers.Adam(rate, clipnorm=settings.clipnorm)
    else:
        optimizer = keras.optimizers.SGD(rate, momentum=0.9, nesterov=True, clipnorm=settings.clipnorm)
    loss = objects["DetectionLoss"]
    score, options = training.targets.score, settings.loss_options
    model.compile(
        optimizer=optimizer,
        loss={"classes": loss(score, "classification", options), "boxes": loss(score, "boxes", options)},
        loss_weights={"classes": 1.0, "boxes": settings.box_weight},
        metrics={"classes": [objects["ForegroundAccuracy"](score)]},
    )


def _callbacks(training: _Training, phase: int, name: str) -> tuple[list, Any]:
    from keras_lightnets.training.callbacks import PreciseBatchNorm, stop_callbacks

    parts = _callback_classes()
    callbacks = stop_callbacks()
    if not training.settings.backbone_pretrained and training.validation is not None:
        callbacks.append(PreciseBatchNorm(training.train))
    callbacks.append(parts["DetectionRecorder"](training.run, phase, name, training.validation is not None))
    budget = parts["TimeBudget"](training.deadline) if training.deadline is not None else None
    if budget is not None:
        callbacks.append(budget)
    if training.flavour == "tf_keras":
        adapter = _tf_keras_adapter()
        callbacks = [adapter(c) for c in callbacks]
        from keras_lightnets.compression.prune import is_pruned, pruning_callbacks

        if is_pruned(training.model):  # TFMOT's wrappers update their masks from this callback
            callbacks += pruning_callbacks()
    return callbacks, budget


def _fit(training: _Training, last: int, phase: int) -> None:
    """Train epochs ``training.epoch + 1 .. last`` of ``phase``, recording each."""
    name = PHASE_NAMES[training.settings.backbone_pretrained, phase]
    callbacks, budget = _callbacks(training, phase, name)
    training.model.fit(training.train, validation_data=training.validation, initial_epoch=training.epoch,
                       epochs=last, verbose=0 if training.settings.quiet else 2, callbacks=callbacks, shuffle=False)
    recorded = training.run.history[-1]["epoch"] if training.run.history else training.epoch
    training.epoch, training.phase = recorded, phase
    training.stopped = budget is not None and budget.stopped


def _train_head(training: _Training) -> None:
    """Phase 1: pretrained, the detector's own layers on a frozen backbone; from scratch, every layer."""
    from keras_lightnets.training.unfreeze import freeze_base

    settings = training.settings
    if training.epoch >= settings.epochs_frozen or training.phase == 2:
        return
    if training.phase == 0:
        if settings.backbone_pretrained:
            freeze_base(training.model, training.head)
        _compile(training, settings.learning_rate, settings.epochs_frozen, settings.warmup_epochs)
    what = "backbone frozen, heads trained" if settings.backbone_pretrained else "all layers trained"
    training.say(f"phase 1/2: {what}, epochs {training.epoch + 1}..{settings.epochs_frozen}")
    _fit(training, settings.epochs_frozen, 1)


def _train_top_blocks(training: _Training) -> None:
    """Phase 2: the top ``unfreeze_blocks`` backbone blocks join (BatchNorm frozen), or from scratch
    every layer at the lower rate."""
    from keras_lightnets.training.unfreeze import unfreeze_top_blocks

    settings = training.settings
    if training.stopped or training.epoch >= settings.epochs:
        return
    if training.phase != 2:
        if settings.backbone_pretrained:
            training.unfrozen = unfreeze_top_blocks(training.model, settings.unfreeze_blocks, training.head,
                                                    model_name=training.backbone)
            _compile(training, settings.fine_tune_learning_rate, settings.epochs_unfrozen)
        elif training.phase == 0 or settings.schedule == "cosine" or settings.warmup_epochs:
            _compile(training, settings.fine_tune_learning_rate, settings.epochs_unfrozen)
        else:  # from scratch nothing is unfrozen: lower the constant rate, keep the compiled step
            training.model.optimizer.learning_rate = settings.fine_tune_learning_rate
        training.epoch = max(training.epoch, settings.epochs_frozen)
    what = (f"top {settings.unfreeze_blocks} backbone blocks unfrozen (BatchNorm frozen)"
            if settings.backbone_pretrained else "all layers trained at the lower learning rate")
    training.say(f"phase 2/2: {what}, epochs {training.epoch + 1}..{settings.epochs}")
    _fit(training, settings.epochs, 2)


def _start(training: _Training, detector, state: dict | None) -> None:
    """The model to train: the checkpoint's when resuming (compiled, in its phase, with the
    detector's ``anchors`` and ``detector_info``), else ``detector`` itself."""
    if state is None:
        training.model = detector
        return
    path = training.settings.output_dir / CHECKPOINTS / state["checkpoint"]
    model = _load_checkpoint(path, training.flavour)
    shapes = [tuple(t.shape[1:]) for t in model.outputs]
    if shapes != [tuple(t.shape[1:]) for t in detector.outputs]:
        raise InputError(f"cannot resume from {path}: its outputs {shapes} differ from the detector's; rebuild the "
                         f"detector with the run's arguments or replace the run with {REPLACE_HINT}")
    object.__setattr__(model, "anchors", detector.anchors)
    object.__setattr__(model, "detector_info", detector.detector_info)
    training.model = model
    training.epoch, training.phase = state["epoch"], state["phase"]
    training.say(f"resuming after epoch {state['epoch']} (phase {state['phase']}) from {path}")


def _open_run(settings: DetectionSettings, config: dict, state: dict | None, documents: dict) -> RunRecord:
    folder = settings.output_dir
    folder.mkdir(parents=True, exist_ok=True)
    files.remove_stale_temporaries(folder)
    run = RunRecord(folder, config, replacing=state is None and bool(previous_run_files(folder)),
                    documents=documents)
    if state is not None:
        run.continue_from(state, folder)
    return run


def _datasets(settings: DetectionSettings, targets: DetectorTargets, train: PreparedDetections,
              validation: PreparedDetections | None, preprocessing: str):
    common = {"batch_size": settings.batch_size, "class_offset": targets.class_offset,
              "relative_boxes": targets.relative_boxes, "preprocessing": preprocessing, "seed": settings.seed}
    train_set = make_detection_dataset(train, targets.encoder, training=True, augmentation=settings.augmentation,
                                       **common)
    validation_set = None if validation is None else make_detection_dataset(
        validation, targets.encoder, training=False, **common)
    return train_set, validation_set


def fit_detector(
    detector,
    train,
    validation=None,
    *,
    epochs_frozen: int = 3,
    epochs_unfrozen: int = 3,
    unfreeze_blocks: int = 2,
    backbone_pretrained: bool = True,
    learning_rate: float = 1e-3,
    fine_tune_learning_rate: float | None = None,
    schedule: str = "constant",
    optimizer: str = "adam",
    warmup_epochs: int = 0,
    batch_size: int = 16,
    output_dir: str | os.PathLike = DEFAULT_OUTPUT,
    resume: bool = False,
    overwrite: bool = False,
    augmentation: Any = "default",
    seed: int = 0,
    time_budget: float | None = None,
    box_weight: float = 1.0,
    clipnorm: float | None = None,
    loss_options: dict | None = None,
    preprocessing: str | None = None,
    quiet: bool = False,
    run_files: dict[str, Any] | None = None,
) -> DetectionFitResult:
    """Train ``detector`` on ``train`` (validating on ``validation``) and write the run to ``output_dir``.

    Args:
        detector: a model of ``detection.SSDLite`` / ``detection.RetinaNet`` (Keras 3 or tf_keras;
            it is trained in place unless resuming), or what ``compression.prune`` /
            ``quantize_aware`` made of one (a pruned detector trains with TFMOT's
            ``UpdatePruningStep`` added).
        train, validation: objects with the fields of ``DigitScenes`` / ``DetectionArrays``
            (``images`` ``(N, H, W, 3)`` pixels in [0, 255], ``boxes`` ``(N, M, 4)`` x1 y1 x2 y2
            pixels, ``classes`` ``(N, M)`` 0-based ids, -1 padding, optional ``counts`` and
            ``class_names``). Images of another size than the detector's input are resized and
            their boxes scaled alike; boxes are clipped to the image, empty ones dropped and
            counted (``result.data``). A class id >= the detector's foreground classes is an
            ``InputError`` before anything is trained.
        epochs_frozen, epochs_unfrozen, unfreeze_blocks: the two phases (module docstring).
        backbone_pretrained: whether the backbone holds pretrained weights (False: from scratch,
            every layer trains in both phases).
        learning_rate, fine_tune_learning_rate: the rate in phase 1 / phase 2 (default
            ``learning_rate / 10``); ``schedule``: ``"constant"`` or ``"cosine"`` (each phase decays
            its rate to 1 % over its epochs); ``warmup_epochs``: phase 1 starts with a linear
            warmup from 0 to ``learning_rate`` over this many epochs (heads without BatchNorm,
            RetinaNet's, can die under Adam's first full-size steps); ``optimizer``: ``"adam"`` or
            ``"sgd"`` (Nesterov momentum 0.9).
        batch_size: images per step. ``augmentation``: ``"default"`` (``DetectionAugmentation()``),
            None, or a ``DetectionAugmentation``. ``seed``: weights-independent randomness (shuffle,
            augmentation, Keras' seed).
        output_dir, resume, overwrite: the run folder, as ``fine_tune``'s.
        time_budget: seconds (from this call) after which no new epoch starts that would not end
            in time; None: no limit.
        box_weight: the box loss's weight against the classification loss. ``clipnorm``: the
            optimizer's gradient norm clip (None: none). ``loss_options``: keyword arguments of
            ``losses.multibox_loss`` (``negative_ratio``) or ``losses.focal_loss`` (``alpha``,
            ``gamma``, ``box_loss``, ``beta``, ``normalize``).
        preprocessing: how pixels are scaled for the detector; None: ``input_preprocessing(detector)``.
        quiet: no progress lines (stderr) and no per-epoch lines from ``fit``.
        run_files: more JSON files of the run, ``{file name: JSON-able data}``, written into
            ``output_dir`` with every recorded epoch right after ``best.keras`` (so they always
            describe the models there), e.g. ``{training.detector_record.RECORD_NAME: spec.as_record()}``,
            which ``training.detector_record.load_detector`` rebuilds the detector from.

    Returns a ``DetectionFitResult``. ``InputError`` (one line) for a bad argument, bad data or
    an unusable output folder, always before training; ``TrainingDivergedError`` when the
    loss becomes inf/NaN.
    """
    started = time.monotonic()
    targets = detector_targets(detector)
    settings = _resolve(dict(
        epochs_frozen=epochs_frozen, epochs_unfrozen=epochs_unfrozen, unfreeze_blocks=unfreeze_blocks,
        backbone_pretrained=backbone_pretrained, learning_rate=learning_rate,
        fine_tune_learning_rate=fine_tune_learning_rate, schedule=schedule, optimizer=optimizer,
        warmup_epochs=warmup_epochs, batch_size=batch_size, output_dir=output_dir, resume=resume,
        overwrite=overwrite, augmentation=augmentation, seed=seed,
        time_budget=time_budget, box_weight=box_weight, clipnorm=clipnorm, loss_options=loss_options,
        preprocessing=preprocessing, quiet=quiet,
    ), targets.score)
    _backend.require_tensorflow_backend("fit_detector", detector)
    flavour = _backend.flavour_of(detector)
    mode = settings.preprocessing or input_preprocessing(detector)
    documents = check_documents(run_files)
    check_output_dir(settings.output_dir, resume=settings.resume, overwrite=settings.overwrite)
    state = read_run_state(settings.output_dir) if settings.resume else None
    train_data = prepare_detection_data(train, input_size=targets.input_size, num_classes=targets.num_classes,
                                        argument="train")
    validation_data = None if validation is None else prepare_detection_data(
        validation, input_size=targets.input_size, num_classes=targets.num_classes, argument="validation")

    import keras

    keras.utils.set_random_seed(settings.seed)
    info = detector.detector_info
    config = {"model": detector.name, "image_size": targets.input_size[0], "class_names": train_data.class_names,
              "weights": "pretrained backbone" if settings.backbone_pretrained else None, "detector": info["type"],
              "flavour": flavour, "num_classes": int(info["num_classes"]), "anchors": len(detector.anchors),
              "input_shape": [int(d) for d in info["input_shape"]], "preprocessing": mode}
    run = _open_run(settings, config, state, documents)
    train_set, validation_set = _datasets(settings, targets, train_data, validation_data, mode)
    from keras_lightnets.models.registry import list_models

    backbone = info.get("backbone") if info.get("backbone") in list_models() else None
    training = _Training(
        settings=settings, targets=targets, train=train_set, validation=validation_set,
        steps=math.ceil(len(train_data) / settings.batch_size), run=run, flavour=flavour,
        head=head_layer_names(detector), backbone=backbone,
        deadline=None if settings.time_budget is None else started + settings.time_budget,
    )
    report = train_data.report
    training.say(f"{report.images} training images, {report.boxes} boxes ({report.dropped_boxes} dropped, "
                 f"{report.images_without_boxes} images without boxes); {len(detector.anchors)} anchors")
    if run.replacing:
        training.say(f"replacing the previous run in {settings.output_dir} once epoch 1 is complete")
    _start(training, detector, state)
    resumed_from = training.epoch
    _train_head(training)
    _train_top_blocks(training)
    run.write_history(f"{detector.name} on {getattr(train, 'split', 'custom')} data")
    if training.stopped:
        training.say(f"time budget of {settings.time_budget:g} s spent after epoch {training.epoch}")
    training.say(f"best validation foreground accuracy {run.best:.4f} at epoch {run.best_epoch}; wrote "
                 f"{settings.output_dir / BEST}, {settings.output_dir / HISTORY_CSV}")
    checkpoint = run.checkpoints / f"epoch-{training.epoch:03d}.keras"
    return DetectionFitResult(
        output_dir=str(settings.output_dir), best_path=str(settings.output_dir / BEST), checkpoint_path=str(checkpoint),
        best_val_accuracy=float(run.best), best_epoch=run.best_epoch, epochs=training.epoch,
        epochs_run=training.epoch - resumed_from, history=run.history, data=report.as_dict(),
        validation_data=None if validation_data is None else validation_data.report.as_dict(),
        class_names=train_data.class_names, preprocessing=mode, stopped_by_budget=training.stopped,
        seconds=time.monotonic() - started, unfrozen_blocks=training.unfrozen, resumed_from=resumed_from,
        model=training.model,
    )
