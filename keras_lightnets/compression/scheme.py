"""The package's TFMOT 8-bit quantization scheme: TFMOT's default, with three fixes,
per channel (TFMOT's default for Conv2D/DepthwiseConv2D kernels) or per tensor.

TFMOT's ``LayerReLUQuantize`` transform gives every Conv2D/DepthwiseConv2D/Dense
that feeds a ``ReLU`` layer a ``NoOpQuantizeConfig``, so that no fake-quant sits
between the two (TFLite fuses them). That also leaves the layer's *weights*
unquantized during QAT, and outside the prune-preserving scheme's reach (a pruned
SqueezeNet or squeeze-and-excite conv loses its zeros). Here those layers get a
weights-only config instead (kernel quantized, output not), with sparsity
preservation when asked: still no fake-quant between conv and ReLU. Likewise a
conv whose config another transform set (one feeding a ``Concatenate``, as in
NASNet) keeps its zeros.

Per tensor (``per_channel=False``): every kernel gets one symmetric range, as TFMOT's
``disable_per_axis`` registry gives, and the converter writes one scale per weight
tensor (a smaller file: TFLite stores a float32 scale and an int64 zero point per
output channel otherwise). Sparsity preservation then uses TFMOT's per-tensor
prune-preserving quantizer for Conv2D too (TFMOT's registry pairs it with Dense only).

Concatenations: TFLite's int8 ``CONCATENATION`` needs one scale for its inputs and
output. TFMOT's ``ConcatTransform`` means to fake-quantize only the concat's output,
but it matches only when every input feeds the concat alone, and it leaves a
producer's activation fake-quant in place; the others keep a range each, and after
a short fine-tune those ranges are all but equal, which the converter refuses
("same scale constraint"). Here every concatenation's producers, looked for through
layers that only move values (pooling by max, padding, reshapes, ``ChannelSplit``,
nested concatenations), lose their output fake-quant: the concat's own range is
the one range of all of them, whatever the training did.

This module imports TFMOT; it is only imported by ``compression.qat``.
"""

from __future__ import annotations

from tensorflow_model_optimization.python.core.quantization.keras import quantize_aware_activation
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

# Layer class -> (the weight it quantizes, whether TFMOT quantizes it per output channel by default).
_WEIGHTS_ONLY = {
    "Conv2D": ("kernel", True),
    "DepthwiseConv2D": ("depthwise_kernel", True),
    "Dense": ("kernel", False),
}


def weights_only_config(layer, per_channel: bool = True):
    """A TFMOT config quantizing ``layer``'s kernel and nothing else, or ``None`` for other layers."""
    entry = _WEIGHTS_ONLY.get(type(layer).__name__)
    if entry is None:
        return None
    weight, per_axis = entry
    config_class = (default_8bit_quantize_registry.Default8BitConvQuantizeConfig if per_axis and per_channel
                    else default_8bit_quantize_registry.Default8BitQuantizeConfig)
    return config_class([weight], [], False)


def quantize_registry(per_channel: bool):
    """TFMOT's default 8-bit registry, its conv kernels per channel or per tensor."""
    return default_8bit_quantize_registry.Default8BitQuantizeRegistry(disable_per_axis=not per_channel)


class PrunePreserveRegistry(prune_preserve_quantize_registry.Default8bitPrunePreserveQuantizeRegistry):
    """TFMOT's prune-preserving registry over ``quantize_registry(per_channel)``.

    Per tensor, a Conv2D's ``Default8BitQuantizeConfig`` gets TFMOT's per-tensor
    prune-preserving quantizer (TFMOT's own registry accepts that config for Dense only)."""

    def __init__(self, per_channel: bool = True):
        super().__init__()
        self._per_channel = per_channel

    def get_quantize_config(self, layer):
        return self.apply_sparsity_preserve_quantize_config(
            layer, quantize_registry(self._per_channel).get_quantize_config(layer))

    def apply_sparsity_preserve_quantize_config(self, layer, quantize_config):
        if (not self._per_channel and type(layer).__name__ == "Conv2D" and layer.trainable_weights
                and type(quantize_config) is default_8bit_quantize_registry.Default8BitQuantizeConfig):
            quantizer = prune_preserve_quantize_registry.PrunePreserveDefault8BitWeightsQuantizer()
            quantize_config.weight_quantizer = quantizer
            return quantize_config
        return super().apply_sparsity_preserve_quantize_config(layer, quantize_config)


# Layers whose int8 TFLite op keeps its input's scale and that quantize nothing themselves:
# the range of a concatenation fed through them is their input's range too.
SAME_SCALE_LAYERS = frozenset({
    "Concatenate", "MaxPooling2D", "GlobalMaxPooling2D", "ZeroPadding2D", "Cropping2D", "Reshape", "Flatten",
    "Permute", "Dropout", "SpatialDropout2D", "ActivityRegularization", "ChannelSplit", "ChannelShuffle",
})


def _inbound_layers(layer) -> list:
    found = []
    for node in layer.inbound_nodes:
        inbound = node.inbound_layers
        found.extend(inbound if isinstance(inbound, list | tuple) else [inbound])
    return found


class OutputFreeConfig(default_8bit_quantize_configs.quantize_config.QuantizeConfig):
    """A layer's own QuantizeConfig without the fake-quant of its output (weights and
    the values inside the layer stay quantized): used for a layer feeding a concatenation
    whose config is not one of TFMOT's or the package's."""

    def __init__(self, config):
        self.config = config

    def get_weights_and_quantizers(self, layer):
        return self.config.get_weights_and_quantizers(layer)

    def get_activations_and_quantizers(self, layer):
        return self.config.get_activations_and_quantizers(layer)

    def set_quantize_weights(self, layer, quantize_weights):
        self.config.set_quantize_weights(layer, quantize_weights)

    def set_quantize_activations(self, layer, quantize_activations):
        self.config.set_quantize_activations(layer, quantize_activations)

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        import tf_keras

        return {"config": tf_keras.utils.serialize_keras_object(self.config)}

    @classmethod
    def from_config(cls, config):
        import tf_keras

        return cls(tf_keras.utils.deserialize_keras_object(config["config"]))


def _output_quantized(layer, config) -> bool:
    """Whether ``config`` fake-quantizes ``layer``'s output (directly, or after its activation)."""
    if config is None:
        return False
    if config.get_output_quantizers(layer):
        return True
    return isinstance(config, default_8bit_quantize_registry.Default8BitQuantizeConfig) and any(
        _post_quantized(layer, attr) for attr in config.activation_attrs)


def _post_quantized(layer, attr: str) -> bool:
    activation = getattr(layer, attr, None)
    name = getattr(activation, "__name__", None)
    return name not in quantize_aware_activation.QuantizeAwareActivation._PRE_QUANT_ACTIVATIONS


def _without_output(layer, config):
    """``config`` for ``layer`` with its output left to the concatenation it feeds."""
    from keras_lightnets.compression import configs

    if isinstance(config, default_8bit_quantize_registry.Default8BitQuantizeConfig):
        kept = [attr for attr in config.activation_attrs if not _post_quantized(layer, attr)]
        return type(config)(list(config.weight_attrs), kept, False)
    if isinstance(config, default_8bit_quantize_registry.Default8BitActivationQuantizeConfig):
        return default_8bit_quantize_registry.Default8BitActivationQuantizeConfig(quantize_output=False)
    if type(config) is configs.OutputQuantizeConfig:
        return configs.PassThroughQuantizeConfig()  # keeps the values inside the layer quantized
    return OutputFreeConfig(config)


def share_concat_ranges(model, quantize_map, registry) -> list[str]:
    """Leave every concatenation's range to the concatenation itself (see the module
    docstring); returns the names of the layers whose output fake-quant was removed."""
    def config_of(layer):
        entry = quantize_map.get(layer.name)
        if entry is None:
            return None
        config = entry.get("quantize_config")
        if config is None and registry.supports(layer):
            config = registry.get_quantize_config(layer)
        return config

    changed = []
    for concat in model.layers:
        if type(concat).__name__ != "Concatenate" or not _output_quantized(concat, config_of(concat)):
            continue
        seen, pending = set(), _inbound_layers(concat)
        while pending:
            layer = pending.pop()
            if layer.name in seen or type(layer).__name__ == "InputLayer" or layer.name not in quantize_map:
                continue
            seen.add(layer.name)
            config = config_of(layer)
            if _output_quantized(layer, config):
                quantize_map[layer.name]["quantize_config"] = _without_output(layer, config)
                changed.append(layer.name)
            if type(layer).__name__ in SAME_SCALE_LAYERS:
                pending.extend(_inbound_layers(layer))
    return changed


class _LayoutTransform(default_8bit_quantize_layout_transform.Default8BitQuantizeLayoutTransform):
    """TFMOT's default layout transforms, then three repairs of the configs they set:

    * a concatenation's producers lose their output fake-quant (``share_concat_ranges``);
    * a NoOp on a conv/dense layer (``LayerReLUQuantize``) becomes a weights-only config;
    * with ``preserve_sparsity``, a conv/dense config set by a transform (e.g. TFMOT's
      ``ConcatTransform`` for a layer feeding a ``Concatenate``) gets the prune-preserving
      weight quantizer, which TFMOT applies only to configs from its registry.
    """

    def __init__(self, preserve_sparsity: bool, per_channel: bool = True):
        super().__init__()
        self._preserve_sparsity = preserve_sparsity
        self._per_channel = per_channel

    def apply(self, model, layer_quantize_map):
        model, quantize_map = super().apply(model, layer_quantize_map)
        share_concat_ranges(model, quantize_map, quantize_registry(self._per_channel))
        preserve = PrunePreserveRegistry(self._per_channel)
        for name, entry in quantize_map.items():
            config = entry.get("quantize_config")
            if config is None or type(layer := model.get_layer(name)).__name__ not in _WEIGHTS_ONLY:
                continue
            if isinstance(config, default_8bit_quantize_configs.NoOpQuantizeConfig):
                config = weights_only_config(layer, self._per_channel)
            if self._preserve_sparsity and isinstance(config, _PRESERVABLE_CONFIGS):
                config = preserve.apply_sparsity_preserve_quantize_config(layer, config)
            entry["quantize_config"] = config
        return model, quantize_map


_PRESERVABLE_CONFIGS = (default_8bit_quantize_registry.Default8BitQuantizeConfig,)


class QuantizeScheme(default_8bit_quantize_scheme.Default8BitQuantizeScheme):
    """TFMOT's default 8-bit scheme with ``_LayoutTransform``; conv kernels per channel or per tensor."""

    def __init__(self, per_channel: bool = True):
        super().__init__(disable_per_axis=not per_channel)
        self.per_channel = per_channel

    def get_layout_transformer(self):
        return _LayoutTransform(preserve_sparsity=False, per_channel=self.per_channel)


class PrunePreserveQuantizeScheme(prune_preserve_scheme.Default8BitPrunePreserveQuantizeScheme):
    """TFMOT's prune-preserving 8-bit scheme with ``_LayoutTransform``; per channel or per tensor."""

    def __init__(self, per_channel: bool = True):
        super().__init__(disable_per_axis=not per_channel)
        self.per_channel = per_channel

    def get_quantize_registry(self):
        return PrunePreserveRegistry(self.per_channel)

    def get_layout_transformer(self):
        return _LayoutTransform(preserve_sparsity=True, per_channel=self.per_channel)
