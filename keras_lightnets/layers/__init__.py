"""The package's custom layers: the only place where custom ops live.

Every operation a model needs that Keras has no layer for is a small, serializable
layer here, so that a graph never holds raw tensor arithmetic or a ``Lambda`` (models
load under ``safe_mode=True``, and TFMOT sees every op):

=====================  =======================================================
``HardSigmoid``        ``relu6(x + 3) / 6`` (the Keras 3 definition)
``HardSwish``          ``x * relu6(x + 3) / 6``
``Rescale``            ``x * scale + offset``, per tensor or per channel (in-model preprocessing)
``ChannelShuffle``     channels ``(g, c/g)`` -> ``(c/g, g)`` (ShuffleNet)
``ChannelSplit``       equal split of the channel axis into ``groups`` tensors
``DecodeBoxes``        box deltas ``(B, N, 4)`` + anchors (its one, non-trainable weight) ->
                       boxes x1 y1 x2 y2 in pixels (torchvision's or pytorch-ssd's coding)
``ClassScores``        class logits ``(B, N, C)`` -> foreground scores ``(B, N, K)``
                       (softmax less the background column, or sigmoid)
``NonMaxSuppression``  per-class greedy NMS: ``[boxes, scores]`` -> ``[boxes (B, D, 4),
                       scores (B, D), classes (B, D) int32, count (B,) int32]``
=====================  =======================================================

The last three are a detector's float post-processing (``detection.inference``); the
others are weightless.

The layers that know about channels (``Rescale`` per channel, ``ChannelShuffle``,
``ChannelSplit``) take a ``data_format`` like Keras' own image layers:
``"channels_last"`` ``(batch, height, width, channels)`` or ``"channels_first"``
``(batch, channels, height, width)``; ``None`` (the default) means the flavour's
``image_data_format()`` when the layer is created, and the resolved value is saved in
the layer's config. All image layers keep the shape (``ChannelSplit`` returns ``groups``
tensors of ``channels / groups`` channels each).

Layout of this package:

* ``mixins``: each layer's logic, written once (flavour-neutral, no Keras import);
* ``keras3`` / ``tfkeras``: the concrete classes on Keras 3's / tf_keras' ``Layer``
  (Keras 3 ``call`` uses only ``keras.ops``, so it runs on every Keras 3 backend;
  the tf_keras twins use TensorFlow ops), registered as ``"keras_lightnets>HardSwish"`` etc.;
* ``flavours``: ``get_layer_class(name, flavour)``, ``custom_objects(flavour)``, ``register``;
* ``tree``: ``unwrap``, ``nested_layers``, ``int8_graph`` (TFMOT wrappers, nested models);
* ``hook``: registers the Keras 3 layers as soon as ``keras`` is imported.

How TFMOT quantizes each layer is one table, ``compression.configs.QUANTIZE_POLICY``.

The Keras 3 classes are attributes of this package (``keras_lightnets.layers.HardSwish``)
resolved on first access by the module ``__getattr__``: ``import keras_lightnets`` must not
import Keras. The ``TYPE_CHECKING`` import shows them to type checkers and IDEs. The
tf_keras classes are ``keras_lightnets.legacy.HardSwish`` etc.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keras_lightnets.layers import hook
from keras_lightnets.layers.flavours import custom_objects, get_layer_class, register
from keras_lightnets.layers.mixins import DATA_FORMATS, LAYER_NAMES, PACKAGE
from keras_lightnets.layers.tree import QAT_LAYER_CLASSES, WRAPPER_CLASSES, int8_graph, nested_layers, unwrap

if TYPE_CHECKING:
    from keras_lightnets.layers.keras3 import (
        ChannelShuffle,
        ChannelSplit,
        ClassScores,
        DecodeBoxes,
        HardSigmoid,
        HardSwish,
        NonMaxSuppression,
        Rescale,
    )


def __getattr__(name: str) -> type:
    if name in LAYER_NAMES:
        return get_layer_class(name, "keras")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


hook.register_keras_layers()

__all__ = [
    "DATA_FORMATS", "LAYER_NAMES", "PACKAGE", "QAT_LAYER_CLASSES", "WRAPPER_CLASSES",
    "ChannelShuffle", "ChannelSplit", "ClassScores", "DecodeBoxes", "HardSigmoid", "HardSwish", "NonMaxSuppression",
    "Rescale", "custom_objects", "get_layer_class", "int8_graph", "nested_layers", "register", "unwrap",
]
