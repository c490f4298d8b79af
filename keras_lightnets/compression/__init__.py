"""Pruning and quantization-aware training for every model, Keras 3 or tf_keras.

>>> from keras_lightnets import compression
>>> pruned = compression.prune(model, target_sparsity=0.5)      # tf_keras, TFMOT wrappers
>>> pruned.fit(..., callbacks=compression.pruning_callbacks())  # at the target from the first step
>>> qat = compression.quantize_aware(compression.strip(pruned))  # keeps the zeros
>>> qat.fit(...)

Keras 3 models are translated to their tf_keras twins first (``to_tf_keras``),
checked to give the same outputs. TFMOT is imported only when a function runs.

Detectors (``keras_lightnets.detection``: SSD, SSDLite, RetinaNet, the presets) compress the
same way: every function keeps their ``anchors`` and ``detector_info``, QAT keeps their layer
names (outputs ``classes`` and ``boxes``), and an inference model (post-processing layers) is
refused: compress the training model, then ``detection.inference_model(compressed)``
(``compression.detectors``).
"""

from keras_lightnets.compression.prune import (
    LayerSparsity,
    below_target,
    is_pruned,
    layer_filter,
    overall_sparsity,
    prune,
    pruning_callbacks,
    sparsity_report,
    strip,
    unwrap,
)
from keras_lightnets.compression.qat import QuantizationError, quantize_aware, quantize_scope
from keras_lightnets.compression.translate import (
    DroppedLayersWarning,
    TranslationError,
    assert_same_outputs,
    to_tf_keras,
)

__all__ = [
    "DroppedLayersWarning", "LayerSparsity", "QuantizationError", "TranslationError", "assert_same_outputs",
    "below_target", "is_pruned", "layer_filter", "overall_sparsity", "prune", "pruning_callbacks",
    "quantize_aware", "quantize_scope", "sparsity_report", "strip", "to_tf_keras", "unwrap",
]
