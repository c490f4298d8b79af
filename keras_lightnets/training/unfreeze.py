"""Blocks of a registry model, for unfreezing the top of a pretrained base.

A *block* is a group of layers named alike by the family builders (their names
follow keras.applications): ``block_7_*`` (MobileNetV2), ``expanded_conv_3_*``
(MobileNetV3), ``conv_dw_5``/``conv_pw_5`` (MobileNet V1, one block),
``stage3_unit2_*`` (ShuffleNetV2), ``stage4_block1_*`` (MnasNet), ``fire5_*``
(SqueezeNet), the cells ``*_3`` / ``*_reduce_4`` / ``*_stem_1`` (NASNet) and
``stem_*``. Any other layer is a block of its own, with BatchNorm marks removed
from its name (``Conv_1`` and ``Conv_1_bn`` together): the stem convolution and
the last 1x1 convolution (``Conv_1``, ``conv5``, ``head_conv``) are one block
each. Only layers with weights are grouped; blocks are in the model's layer order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_PATTERNS = (
    (re.compile(r"^(stage\d+_(?:unit|block)\d+)(?:_|$)"), r"\1"),
    (re.compile(r"^(block_\d+)(?:_|$)"), r"\1"),
    (re.compile(r"^(expanded_conv(?:_\d+)?)(?:_|$)"), r"\1"),
    (re.compile(r"^conv_(?:dw|pw)_(\d+)(?:_|$)"), r"conv_block_\1"),
    (re.compile(r"^(fire\d+)(?:_|$)"), r"\1"),
    (re.compile(r"^(?:normal|reduction|adjust|separable)\w*?_((?:stem_|reduce_)?\d+)$"), r"cell_\1"),
    (re.compile(r"^(stem)(?:_|$)"), r"\1"),
)
_BN_MARK = re.compile(r"(^bn_|_bn\d*$|_BN$)")


def block_key(layer_name: str) -> str:
    """The block a layer belongs to, from its name (see the module docstring)."""
    for pattern, replacement in _PATTERNS:
        match = pattern.search(layer_name)
        if match:
            return match.expand(replacement)
    return _BN_MARK.sub("", layer_name)


def is_batch_norm(layer) -> bool:
    return type(layer).__name__ in ("BatchNormalization", "SyncBatchNormalization")


def block_groups(model, exclude: Iterable[str] = ()) -> list[tuple[str, list]]:
    """``[(block key, [layers])]`` of ``model``'s layers with weights, in layer order.

    ``exclude``: layer names left out (e.g. a classifier head on the base).
    """
    excluded = set(exclude)
    groups: dict[str, list] = {}
    for layer in model.layers:
        if layer.name in excluded or not layer.weights:
            continue
        groups.setdefault(block_key(layer.name), []).append(layer)
    return list(groups.items())


def freeze_base(model, head: Iterable[str]) -> None:
    """Make every layer except those named in ``head`` non-trainable.

    Keras 3 runs BatchNormalization layers with ``trainable=False`` in inference
    mode (moving statistics used and not updated).
    """
    head = set(head)
    for layer in model.layers:
        layer.trainable = layer.name in head


def unfreeze_top_blocks(model, blocks: int, head: Iterable[str]) -> list[str]:
    """Make the last ``blocks`` blocks of the base trainable, BatchNorm layers excepted.

    The head stays trainable, everything else frozen; BatchNorm layers stay frozen
    (inference mode), as usual when fine-tuning on a small data set. Returns the
    keys of the unfrozen blocks, bottom first.
    """
    if not isinstance(blocks, int) or isinstance(blocks, bool) or blocks < 0:
        raise ValueError(f"`unfreeze_blocks` must be an int >= 0; received {blocks!r}")
    head = set(head)
    freeze_base(model, head)
    groups = block_groups(model, exclude=head)
    chosen = groups[len(groups) - blocks:] if blocks else []
    for _, layers in chosen:
        for layer in layers:
            if not is_batch_norm(layer):
                layer.trainable = True
    return [key for key, _ in chosen]
