"""The Keras callbacks of a ``fine_tune`` run: stop on a non-finite loss or a Ctrl-C between steps, record
each epoch, precise BatchNorm.

This module imports Keras (and TensorFlow): ``fine_tune`` imports it only once the
``tf.distribute`` strategy exists.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from keras_lightnets.training import interrupt
from keras_lightnets.training.divergence import diverged
from keras_lightnets.training.run_folder import RunRecord
from keras_lightnets.training.unfreeze import is_batch_norm

PRECISE_BN_BATCHES = 8


def learning_rate(model) -> float | None:
    """The optimizer's current learning rate (None when the model has none)."""
    try:
        return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    except (AttributeError, TypeError, ValueError):
        return None


def record_epoch(run: RunRecord, model, phase: int, phase_name: str, epoch: int, logs: dict) -> None:
    """``run.record`` the history row of the 0-based ``epoch`` from ``fit``'s ``logs``."""
    row = {
        "epoch": epoch + 1, "phase": phase_name,
        "loss": float(logs.get("loss", math.nan)), "accuracy": float(logs.get("accuracy", math.nan)),
        "val_loss": float(logs.get("val_loss", math.nan)),
        "val_accuracy": float(logs.get("val_accuracy", math.nan)),
        "learning_rate": float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)),
    }
    run.record(model, row, phase)


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop ``fit`` at the first batch whose running loss is inf/NaN (nothing recorded)."""

    epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise diverged("the training loss", self.epoch, learning_rate(self.model))


class StopOnInterrupt(keras.callbacks.Callback):
    """Raise ``KeyboardInterrupt`` after the batch or epoch during which Ctrl-C was pressed
    (``interrupt.stop_between_steps``); while ``fit`` runs, a first Ctrl-C waits for it."""

    def on_train_begin(self, logs=None):
        interrupt.training_started()

    def on_train_end(self, logs=None):
        interrupt.training_ended()

    def on_train_batch_end(self, batch, logs=None):
        interrupt.raise_if_requested()

    def on_test_batch_end(self, batch, logs=None):
        interrupt.raise_if_requested()

    def on_epoch_end(self, epoch, logs=None):
        interrupt.raise_if_requested()


def stop_callbacks() -> list:
    """The callbacks every training run starts with: ``StopOnInterrupt`` and ``StopOnNonFiniteLoss``."""
    return [StopOnInterrupt(), StopOnNonFiniteLoss()]


class EpochRecorder(keras.callbacks.Callback):
    """``record_epoch`` after every epoch of ``phase`` (1 or 2), named ``phase_name`` in the history."""

    def __init__(self, run: RunRecord, phase: int, phase_name: str):
        super().__init__()
        self.run, self.phase, self.phase_name = run, phase, phase_name

    def on_epoch_end(self, epoch, logs=None):
        record_epoch(self.run, self.model, self.phase, self.phase_name, epoch, logs or {})


class PreciseBatchNorm(keras.callbacks.Callback):
    """Before each validation, set every trainable BatchNorm layer's moving mean and variance
    to the average of its batch statistics over ``batches`` batches of ``dataset`` (the
    model run in training mode, weights unchanged)."""

    def __init__(self, dataset, batches: int = PRECISE_BN_BATCHES):
        super().__init__()
        self.dataset, self.batches = dataset, batches
        self.forward = None

    def _forward_training(self, images):
        return self.model(images, training=True)

    def on_test_begin(self, logs=None):
        layers = [layer for layer in self.model.layers if is_batch_norm(layer) and layer.trainable]
        if not layers:
            return
        saved = [layer.momentum for layer in layers]
        for layer in layers:
            layer.momentum = 0.0  # moving statistics := this batch's statistics
        if self.forward is None:
            self.forward = tf.function(self._forward_training, reduce_retracing=True)
        try:
            self._average_statistics(layers)
        finally:
            for layer, momentum in zip(layers, saved, strict=True):
                layer.momentum = momentum

    def _average_statistics(self, layers: list) -> None:
        means = [0.0] * len(layers)
        variances = [0.0] * len(layers)
        seen = 0
        for images, _ in self.dataset.take(self.batches):
            self.forward(images)
            seen += 1
            for i, layer in enumerate(layers):
                means[i] = means[i] + keras.ops.convert_to_numpy(layer.moving_mean)
                variances[i] = variances[i] + keras.ops.convert_to_numpy(layer.moving_variance)
        if seen:
            for i, layer in enumerate(layers):
                layer.moving_mean.assign(means[i] / seen)
                layer.moving_variance.assign(variances[i] / seen)
