"""The package's layers for tf_keras (what TFMOT accepts): ``tf_keras.layers.Layer`` with the
bodies of ``layers.mixins``, computing with TensorFlow ops.

Importing this module registers them with tf_keras serialization under
``"keras_lightnets>HardSwish"`` etc. (``layers.register("tf_keras")``); they are also
``keras_lightnets.legacy.HardSwish`` etc.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras

from keras_lightnets.layers import mixins

OPS = mixins.Ops(
    relu6=tf.nn.relu6, reshape=tf.reshape, transpose=tf.transpose, shape=tf.shape, split=tf.split,
    constant=lambda value: tf.constant(value, tf.float32), linear=tf_keras.activations.linear,
    image_data_format=tf_keras.backend.image_data_format,
    exp=tf.exp, minimum=tf.minimum, maximum=tf.maximum, softmax=tf.nn.softmax, sigmoid=tf.sigmoid,
    concatenate=tf.concat, stack=tf.stack, cast=tf.cast, where=tf.where, zeros_like=tf.zeros_like,
    top_k=lambda x, k: tuple(tf.math.top_k(x, k, sorted=True)),
    take_last=lambda x, indices: tf.gather(x, indices, axis=-1, batch_dims=len(x.shape) - 1),
    while_loop=lambda cond, body, loop_vars, maximum_iterations=None: tf.while_loop(
        cond, body, loop_vars, maximum_iterations=maximum_iterations),
    arange=lambda n: tf.range(n, dtype=tf.int32), sum=tf.reduce_sum, max=tf.reduce_max,
    pad=lambda x, widths, value: tf.pad(x, widths, constant_values=value),
)
_register = tf_keras.saving.register_keras_serializable(package=mixins.PACKAGE)


@_register
class HardSigmoid(mixins.HardSigmoidMixin, tf_keras.layers.Layer):
    ops = OPS


@_register
class HardSwish(mixins.HardSwishMixin, tf_keras.layers.Layer):
    ops = OPS


@_register
class Rescale(mixins.RescaleMixin, tf_keras.layers.Layer):
    ops = OPS


@_register
class ChannelShuffle(mixins.ChannelShuffleMixin, tf_keras.layers.Layer):
    ops = OPS


@_register
class ChannelSplit(mixins.ChannelSplitMixin, tf_keras.layers.Layer):
    ops = OPS


@_register
class DecodeBoxes(mixins.DecodeBoxesMixin, tf_keras.layers.Layer):
    ops = OPS


@_register
class ClassScores(mixins.ClassScoresMixin, tf_keras.layers.Layer):
    ops = OPS


@_register
class NonMaxSuppression(mixins.NonMaxSuppressionMixin, tf_keras.layers.Layer):
    ops = OPS
