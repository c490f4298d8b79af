"""Quantization-aware training (TFMOT 8-bit) for every model of the package.

``quantize_aware`` annotates each layer of the model's tf_keras twin: the
package's layers and the Keras layers TFMOT has no config for (``Multiply``,
``Rescaling``, ...) with the config ``configs.QUANTIZE_POLICY`` gives them, a
``BatchNormalization`` no conv precedes frozen into a per-channel ``Rescale``
(``frozen_batch_norm``), everything else with TFMOT's default 8-bit registry,
then applies TFMOT with the package's scheme (``compression.scheme``: TFMOT's,
plus quantized weights for a conv that feeds a ReLU). A model that was pruned keeps its zeros through QAT
(TFMOT's prune-preserving weight quantizers).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

from keras_lightnets.compression.detectors import check_training_model, keep_detector, qat_layer_prefix
from keras_lightnets.compression.folding import batch_norm_affine, fold_batch_norms, normalizes_channels
from keras_lightnets.compression.prune import is_pruned, overall_sparsity, sparsity_report, strip
from keras_lightnets.compression.translate import to_tf_keras
from keras_lightnets.validation import check_bool

# Layers TFMOT's layout transforms replace or fold before its registry is asked.
_HANDLED_BY_TRANSFORMS = ("SeparableConv2D", "BatchNormalization")
# A model at least this sparse (Conv2D/Dense kernels) keeps its zeros by default.
SPARSE_ENOUGH = 0.2


class QuantizationError(ValueError):
    """A layer has no 8-bit quantization config."""


@contextlib.contextmanager
def quantize_scope() -> Iterator[None]:
    """Everything needed to load a saved QAT model (tf_keras ``load_model``): TFMOT's
    scope plus the package's layers and QuantizeConfigs."""
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
        prune_preserve_quantize_registry as prune_preserve,
    )

    from keras_lightnets.compression import configs
    from keras_lightnets.compression.scheme import OutputFreeConfig
    from keras_lightnets.layers import custom_objects

    quantizers = {name: getattr(prune_preserve, name) for name in (
        "PrunePreserveDefaultWeightsQuantizer", "PrunePreserveDefault8BitWeightsQuantizer",
        "PrunePreserveDefault8BitConvWeightsQuantizer")}
    with tfmot.quantization.keras.quantize_scope({**custom_objects("tf_keras"), **configs.CONFIG_CLASSES,
                                                  "OutputFreeConfig": OutputFreeConfig, **quantizers}):
        yield


def _annotator(quantize_configs: Mapping[str, object]):
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry,
    )

    from keras_lightnets.compression import configs

    registry = default_8bit_quantize_registry.Default8BitQuantizeRegistry()
    annotate = tfmot.quantization.keras.quantize_annotate_layer

    def annotate_layer(layer):
        if type(layer).__name__ == "InputLayer":
            return layer
        if configs.is_stray_batch_norm(layer):
            layer = frozen_batch_norm(layer)
        config = quantize_configs.get(layer.name) or configs.config_for(layer)
        if config is not None:
            return annotate(layer, quantize_config=config)
        if registry.supports(layer) or type(layer).__name__ in _HANDLED_BY_TRANSFORMS:
            return annotate(layer)
        raise QuantizationError(
            f"layer {layer.name!r} ({type(layer).__name__}) has no 8-bit QuantizeConfig: TFMOT's default "
            "scheme does not support it. Pass quantize_aware(..., quantize_configs={"
            f"{layer.name!r}: a tfmot QuantizeConfig}}), or replace the layer."
        )

    return annotate_layer


def frozen_batch_norm(layer):
    """A tf_keras ``Rescale`` computing ``layer``'s inference-time map, per channel:
    ``gamma * (x - moving_mean) / sqrt(moving_variance + epsilon) + beta``.

    Used for a BatchNormalization no conv precedes (NASNet's ``adjust_bn_*``):
    TFMOT cannot fold it, and as a ``Rescale`` it quantizes to int8 MUL + ADD with
    a range for the value between them. Its statistics stay fixed during QAT.
    """
    from keras_lightnets.layers import get_layer_class

    if not normalizes_channels(layer):
        raise QuantizationError(f"layer {layer.name!r} (BatchNormalization) normalizes axis {layer.axis}, "
                                "not the channels; it cannot be quantized")
    scale, offset = batch_norm_affine(layer)
    return get_layer_class("Rescale", "tf_keras")(scale.tolist(), offset.tolist(), name=layer.name)


def quantize_aware(model, *, preserve_sparsity: bool | None = None, per_channel: bool = True,
                   quantize_configs: Mapping[str, object] | None = None):
    """A tf_keras QAT model of ``model`` (Keras 3 or tf_keras, pruned or not).

    ``preserve_sparsity``: keep pruned zeros through QAT (TFMOT's
    ``Default8BitPrunePreserveQuantizeScheme``); ``None`` chooses it when the model
    was pruned (wrappers are stripped first) or its Conv2D/Dense kernels are at
    least 20% zeros. ``per_channel``: a range per output channel of each Conv2D and
    DepthwiseConv2D kernel (TFMOT's default), or one per kernel (``False``: the int8
    file is smaller, as ``to_tflite(per_channel=False)`` for post-training int8; Dense
    kernels are per tensor either way; each BatchNormalization after a convolution is
    then folded into it first, ``compression.folding``). ``quantize_configs`` maps layer names to your own TFMOT
    ``QuantizeConfig``s for layers the package does not know. Compile and train
    the result as usual, then export it with ``keras_lightnets.export.to_tflite``.

    A detector (``keras_lightnets.detection``) keeps its ``anchors``, ``detector_info`` and
    layer names (TFMOT's wrappers are named as the layers they wrap, not ``quant_<name>``),
    so its outputs stay ``classes`` and ``boxes`` and ``fit_detector`` trains it; its
    inference model (post-processing layers) is refused with ``InputError``: quantize the
    training model, then rebuild the inference model (``compression.detectors``).
    """
    import tensorflow_model_optimization as tfmot

    check_training_model(model, "quantize_aware")
    if preserve_sparsity not in (None, True, False):
        raise ValueError(f"`preserve_sparsity` must be None, True or False; received {preserve_sparsity!r}")
    check_bool("per_channel", per_channel)
    source = to_tf_keras(model)
    if is_pruned(source):
        source = strip(source)
        preserve_sparsity = True if preserve_sparsity is None else preserve_sparsity
    if preserve_sparsity is None:
        preserve_sparsity = overall_sparsity(sparsity_report(source)) >= SPARSE_ENOUGH
    from keras_lightnets import _backend

    if not per_channel:
        from keras_lightnets.layers import custom_objects

        source = fold_batch_norms(source, custom_objects("tf_keras"))

    tf_keras = _backend.keras_module("tf_keras")
    annotated = tf_keras.models.clone_model(source, clone_function=_annotator(dict(quantize_configs or {})))
    from keras_lightnets.compression import scheme as schemes

    scheme_class = schemes.PrunePreserveQuantizeScheme if preserve_sparsity else schemes.QuantizeScheme
    scheme = scheme_class(per_channel=per_channel)
    with quantize_scope():
        try:
            quantized = tfmot.quantization.keras.quantize_apply(
                annotated, scheme, quantized_layer_name_prefix=qat_layer_prefix(model))
        except (RuntimeError, ValueError, TypeError) as err:
            raise QuantizationError(f"TFMOT could not quantize model {model.name!r}: {err}") from err
    return keep_detector(model, quantized)
