"""The package's TFMOT 8-bit quantization scheme: TFMOT's default, with one fix.

TFMOT's ``LayerReLUQuantize`` transform gives every Conv2D/DepthwiseConv2D/Dense
that feeds a ``ReLU`` layer a ``NoOpQuantizeConfig``, so that no fake-quant sits
between the two (TFLite fuses them). That also leaves the layer's *weights*
unquantized during QAT, and outside the prune-preserving scheme's reach (a pruned
SqueezeNet or squeeze-and-excite conv loses its zeros). Here those layers get a
weights-only config instead (kernel quantized, output not), with sparsity
preservation when asked: still no fake-quant between conv and ReLU. Likewise a
conv whose config another transform set (one feeding a ``Concatenate``, as in
NASNet) keeps its zeros.

This module imports TFMOT; it is only imported by ``compression.qat``.
"""

from __future__ import annotations

from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
    default_8bit_prune_preserve_quantize_scheme as prune_preserve_scheme,
)
from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
    prune_preserve_quantize_registry,
)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_configs,
    default_8bit_quantize_layout_transform,
    default_8bit_quantize_registry,
    default_8bit_quantize_scheme,
)

# Layer class -> (the weight it quantizes, the TFMOT config class the prune-preserve registry accepts).
_WEIGHTS_ONLY = {
    "Conv2D": ("kernel", default_8bit_quantize_registry.Default8BitConvQuantizeConfig),
    "DepthwiseConv2D": ("depthwise_kernel", default_8bit_quantize_registry.Default8BitConvQuantizeConfig),
    "Dense": ("kernel", default_8bit_quantize_registry.Default8BitQuantizeConfig),
}


def weights_only_config(layer):
    """A TFMOT config quantizing ``layer``'s kernel and nothing else, or ``None`` for other layers."""
    entry = _WEIGHTS_ONLY.get(type(layer).__name__)
    if entry is None:
        return None
    weight, config_class = entry
    return config_class([weight], [], False)


class _LayoutTransform(default_8bit_quantize_layout_transform.Default8BitQuantizeLayoutTransform):
    """TFMOT's default layout transforms, then two repairs of the configs they set:

    * a NoOp on a conv/dense layer (``LayerReLUQuantize``) becomes a weights-only config;
    * with ``preserve_sparsity``, a conv/dense config set by a transform (e.g. TFMOT's
      ``ConcatTransform`` for a layer feeding a ``Concatenate``) gets the prune-preserving
      weight quantizer, which TFMOT applies only to configs from its registry.
    """

    def __init__(self, preserve_sparsity: bool):
        super().__init__()
        self._preserve_sparsity = preserve_sparsity

    def apply(self, model, layer_quantize_map):
        model, quantize_map = super().apply(model, layer_quantize_map)
        preserve = prune_preserve_quantize_registry.Default8bitPrunePreserveQuantizeRegistry()
        for name, entry in quantize_map.items():
            config = entry.get("quantize_config")
            if config is None or type(layer := model.get_layer(name)).__name__ not in _WEIGHTS_ONLY:
                continue
            if isinstance(config, default_8bit_quantize_configs.NoOpQuantizeConfig):
                config = weights_only_config(layer)
            if self._preserve_sparsity and isinstance(config, _PRESERVABLE_CONFIGS):
                config = preserve.apply_sparsity_preserve_quantize_config(layer, config)
            entry["quantize_config"] = config
        return model, quantize_map


_PRESERVABLE_CONFIGS = (default_8bit_quantize_registry.Default8BitQuantizeConfig,)


class QuantizeScheme(default_8bit_quantize_scheme.Default8BitQuantizeScheme):
    """TFMOT's default 8-bit scheme with ``_LayoutTransform``."""

    def get_layout_transformer(self):
        return _LayoutTransform(preserve_sparsity=False)


class PrunePreserveQuantizeScheme(prune_preserve_scheme.Default8BitPrunePreserveQuantizeScheme):
    """TFMOT's prune-preserving 8-bit scheme with ``_LayoutTransform``."""

    def get_layout_transformer(self):
        return _LayoutTransform(preserve_sparsity=True)
