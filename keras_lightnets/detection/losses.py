"""Detection losses in TensorFlow ops: SSD's multibox loss and RetinaNet's focal loss.

Import it by name: ``from keras_lightnets.detection import losses``. Plain functions of tensors (no Keras):
both Keras flavours can call them from a training step. Inputs are cast to float32 / int32; each
function returns two float32 scalars ``(classification, regression)``.

The targets are ``matching.encode_targets``'s, batched:

* ``multibox_loss`` (softmax, SSD rule): class target > 0 foreground, 0 background, < 0 ignored
  (neither foreground nor a negative; the SSD rule never makes one).
* ``focal_loss`` (sigmoid, RetinaNet rule): class target >= 0 foreground (a column of the logits),
  -1 background (all-zero one-hot), -2 (any value < -1) ignored.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from keras_lightnets.errors import InputError
from keras_lightnets.validation import check_choice

BOX_LOSSES = ("l1", "smooth_l1")
NORMALIZATIONS = ("image", "batch")


def _number(value) -> bool:
    return (not isinstance(value, bool | np.bool_) and isinstance(value, int | float | np.integer | np.floating)
            and math.isfinite(value))


def _tensors(class_logits, box_deltas, class_targets, box_targets):
    """The four inputs as float32 / int32 tensors; ``InputError`` for statically wrong ranks or shapes."""
    logits = tf.cast(tf.convert_to_tensor(class_logits), tf.float32)
    deltas = tf.cast(tf.convert_to_tensor(box_deltas), tf.float32)
    targets = tf.convert_to_tensor(class_targets)
    if not targets.dtype.is_integer:
        raise InputError(f"`class_targets` must hold integers; received dtype {targets.dtype.name}")
    targets = tf.cast(targets, tf.int32)
    box_targets = tf.cast(tf.convert_to_tensor(box_targets), tf.float32)
    for argument, tensor, rank, last in (("class_logits", logits, 3, None), ("box_deltas", deltas, 3, 4),
                                         ("class_targets", targets, 2, None), ("box_targets", box_targets, 3, 4)):
        shape = tensor.shape
        if shape.rank is not None and (shape.rank != rank or (last is not None and shape[-1] not in (None, last))):
            want = {"class_logits": "(batch, N, classes)", "class_targets": "(batch, N)"}.get(argument, "(batch, N, 4)")
            raise InputError(f"`{argument}` must have shape {want}; received shape {shape}")
    return logits, deltas, targets, box_targets


def _smooth_l1(diff: tf.Tensor, beta: float) -> tf.Tensor:
    magnitude = tf.abs(diff)
    return tf.where(magnitude < beta, 0.5 * tf.square(diff) / beta, magnitude - 0.5 * beta)


def multibox_loss(class_logits, box_deltas, class_targets, box_targets, negative_ratio: float = 3):
    """SSD's loss (torchvision ``SSD.compute_loss``, pytorch-ssd ``MultiboxLoss``) with hard-negative mining.

    Per image, every foreground anchor counts, and of the background anchors those whose rank by
    softmax cross-entropy (largest first, stable order on ties) is below ``negative_ratio * positives``
    of that image (an image without foreground contributes no negatives). Classification: the summed
    softmax cross-entropy of those anchors; regression: smooth-L1 (beta 1) summed over the foreground
    anchors' four deltas. Both are divided by the batch's number of foreground anchors (at least 1).

    Unlike torchvision, a foreground anchor never also counts as a negative when an image has fewer
    background anchors than ``negative_ratio * positives`` (pytorch-ssd's behaviour); pytorch-ssd divides
    by the positives without the floor of 1.

    Args:
        class_logits: ``(B, N, C)`` logits, column 0 background.
        box_deltas: ``(B, N, 4)`` regression output.
        class_targets: ``(B, N)`` integers, > 0 foreground, 0 background, < 0 ignored.
        box_targets: ``(B, N, 4)`` encoded boxes (read on foreground anchors only).
        negative_ratio: negatives kept per foreground anchor, a number > 0 (3 in both references).

    Returns:
        ``(classification, regression)`` float32 scalars.
    """
    if not _number(negative_ratio) or negative_ratio <= 0:
        raise InputError(f"`negative_ratio` must be a finite number > 0; received negative_ratio={negative_ratio!r}")
    logits, deltas, targets, box_targets = _tensors(class_logits, box_deltas, class_targets, box_targets)
    positive = targets > 0
    negative = tf.equal(targets, 0)
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.maximum(targets, 0), logits=logits)
    ranking = tf.where(negative, tf.stop_gradient(cross_entropy), -np.inf)
    order = tf.argsort(ranking, axis=1, direction="DESCENDING", stable=True)
    rank = tf.argsort(order, axis=1, stable=True)  # each anchor's place in its image's ranking
    positives = tf.reduce_sum(tf.cast(positive, tf.float32), axis=1, keepdims=True)  # (B, 1)
    hard_negative = negative & (tf.cast(rank, tf.float32) < float(negative_ratio) * positives)
    normaliser = tf.maximum(tf.reduce_sum(positives), 1.0)
    classification = tf.reduce_sum(tf.where(positive | hard_negative, cross_entropy, 0.0)) / normaliser
    diff = tf.where(positive[..., None], deltas - box_targets, 0.0)
    regression = tf.reduce_sum(_smooth_l1(diff, 1.0)) / normaliser
    return classification, regression


def focal_loss(
    class_logits,
    box_deltas,
    class_targets,
    box_targets,
    alpha: float = 0.25,
    gamma: float = 2.0,
    box_loss: str = "l1",
    beta: float = 1.0 / 9.0,
    normalize: str = "image",
):
    """RetinaNet's loss (torchvision ``RetinaNet.compute_loss``): sigmoid focal loss and a box loss.

    Classification: torchvision's ``sigmoid_focal_loss`` ``alpha_t * (1 - p_t) ** gamma * BCE`` summed over
    every class column of every non-ignored anchor, against one-hot targets (all zeros for background).
    Regression: ``box_loss`` summed over the foreground anchors' four deltas: ``"l1"`` (torchvision's
    default for RetinaNet) or ``"smooth_l1"`` with ``beta`` (default 1/9 as Detectron's RetinaNet;
    torchvision's ``smooth_l1`` option uses beta 1 unless configured).

    Args:
        class_logits: ``(B, N, C)`` sigmoid logits.
        box_deltas: ``(B, N, 4)`` regression output.
        class_targets: ``(B, N)`` integers, >= 0 foreground (must be < C), -1 background, -2 ignored.
        box_targets: ``(B, N, 4)`` encoded boxes (read on foreground anchors only).
        alpha: weight of the positive terms, 0 < alpha < 1 (0.25).
        gamma: focusing exponent >= 0 (2).
        box_loss: ``"l1"`` or ``"smooth_l1"``.
        beta: smooth-L1's switch point, > 0 (used with ``"smooth_l1"`` only).
        normalize: ``"image"`` (torchvision: each image's sums divided by its foreground count, at least 1,
            then the mean over the batch) or ``"batch"`` (the batch's sums divided by the batch's
            foreground count, at least 1, as Detectron).

    Returns:
        ``(classification, regression)`` float32 scalars.
    """
    if not _number(alpha) or not 0.0 < alpha < 1.0:
        raise InputError(f"`alpha` must be a number in (0, 1); received alpha={alpha!r}")
    if not _number(gamma) or gamma < 0:
        raise InputError(f"`gamma` must be a finite number >= 0; received gamma={gamma!r}")
    check_choice("box_loss", box_loss, BOX_LOSSES)
    if not _number(beta) or beta <= 0:
        raise InputError(f"`beta` must be a finite number > 0; received beta={beta!r}")
    check_choice("normalize", normalize, NORMALIZATIONS)
    logits, deltas, targets, box_targets = _tensors(class_logits, box_deltas, class_targets, box_targets)
    positive = targets >= 0
    counted = targets >= -1
    one_hot = tf.one_hot(tf.where(positive, targets, -1), tf.shape(logits)[-1], dtype=tf.float32)  # -1: zeros
    probability = tf.sigmoid(logits)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=one_hot, logits=logits)
    p_t = probability * one_hot + (1.0 - probability) * (1.0 - one_hot)
    alpha_t = alpha * one_hot + (1.0 - alpha) * (1.0 - one_hot)
    focal = alpha_t * tf.pow(1.0 - p_t, float(gamma)) * bce
    classification = tf.reduce_sum(tf.where(counted[..., None], focal, 0.0), axis=[1, 2])  # (B,)
    diff = tf.where(positive[..., None], deltas - box_targets, 0.0)
    per_delta = tf.abs(diff) if box_loss == "l1" else _smooth_l1(diff, float(beta))
    regression = tf.reduce_sum(per_delta, axis=[1, 2])  # (B,)
    positives = tf.reduce_sum(tf.cast(positive, tf.float32), axis=1)  # (B,)
    if normalize == "image":
        normaliser = tf.maximum(positives, 1.0)
        return tf.reduce_mean(classification / normaliser), tf.reduce_mean(regression / normaliser)
    normaliser = tf.maximum(tf.reduce_sum(positives), 1.0)
    return tf.reduce_sum(classification) / normaliser, tf.reduce_sum(regression) / normaliser
