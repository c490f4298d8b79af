"""Blocks of a registry model, for unfreezing the top of a pretrained base.

A *block* is a group of layers named alike by a family's builder. Each family declares
how on its records (``ModelConfig.layer_groups``: ``(regex, block key template)`` pairs,
e.g. MobileNetV2's ``block_7_*`` -> ``block_7``, MobileNet V1's ``conv_dw_5``/``conv_pw_5``
-> ``conv_block_5``); this module only applies them. Given the registry name of the
model, its record's groups are used; without one, those of every registered family
(in registration order). A layer no group matches is a block of its own, with BatchNorm
marks removed from its name (``Conv_1`` and ``Conv_1_bn`` together): the stem
convolution and the last 1x1 convolution (``Conv_1``, ``conv5``, ``head_conv``) are one
block each. Only layers with weights are grouped; blocks are in the model's layer order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from keras_lightnets.models.registry import model_config, registered

_BN_MARK = re.compile(r"(^bn_|_bn\d*$|_BN$)")


def layer_groups(model_name: str | None = None) -> tuple[tuple[str, str], ...]:
    """The ``(regex, block key template)`` pairs of registered model ``model_name``, or, for
    ``None``, of every registered family in registration order (duplicates once)."""
    if model_name is not None:
        return model_config(model_name).layer_groups
    return tuple(dict.fromkeys(group for config in registered() for group in config.layer_groups))


def block_key(layer_name: str, model_name: str | None = None) -> str:
    """The block a layer belongs to, from its name (see the module docstring)."""
    for pattern, template in layer_groups(model_name):
        match = re.match(pattern, layer_name)
        if match:
            return match.expand(template)
    return _BN_MARK.sub("", layer_name)


def is_batch_norm(layer) -> bool:
    return type(layer).__name__ in ("BatchNormalization", "SyncBatchNormalization")


def block_groups(model, exclude: Iterable[str] = (), *, model_name: str | None = None) -> list[tuple[str, list]]:
    """``[(block key, [layers])]`` of ``model``'s layers with weights, in layer order.

    ``exclude``: layer names left out (e.g. a classifier head on the base);
    ``model_name``: the registry name of the model's base (its family's groups).
    """
    excluded = set(exclude)
    groups: dict[str, list] = {}
    for layer in model.layers:
        if layer.name in excluded or not layer.weights:
            continue
        groups.setdefault(block_key(layer.name, model_name), []).append(layer)
    return list(groups.items())


def freeze_base(model, head: Iterable[str]) -> None:
    """Make every layer except those named in ``head`` non-trainable.

    Keras 3 runs BatchNormalization layers with ``trainable=False`` in inference
    mode (moving statistics used and not updated).
    """
    head = set(head)
    for layer in model.layers:
        layer.trainable = layer.name in head


def unfreeze_top_blocks(model, blocks: int, head: Iterable[str], *, model_name: str | None = None) -> list[str]:
    """Make the last ``blocks`` blocks of the base trainable, BatchNorm layers excepted.

    The head stays trainable, everything else frozen; BatchNorm layers stay frozen
    (inference mode), as usual when fine-tuning on a small data set. ``model_name``:
    the registry name of the base (see ``block_groups``). Returns the keys of the
    unfrozen blocks, bottom first.
    """
    if not isinstance(blocks, int) or isinstance(blocks, bool) or blocks < 0:
        raise ValueError(f"`unfreeze_blocks` must be an int >= 0; received {blocks!r}")
    head = set(head)
    freeze_base(model, head)
    groups = block_groups(model, exclude=head, model_name=model_name)
    chosen = groups[len(groups) - blocks:] if blocks else []
    for _, layers in chosen:
        for layer in layers:
            if not is_batch_norm(layer):
                layer.trainable = True
    return [key for key, _ in chosen]
