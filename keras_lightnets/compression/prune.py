"""Magnitude pruning with TFMOT, for Keras 3 and tf_keras models.

``prune`` wraps the chosen layers in TFMOT's ``PruneLowMagnitude`` (a Keras 3
model is first translated to its tf_keras twin, see ``translate``); train the
result with ``pruning_callbacks()`` (TFMOT's ``UpdatePruningStep``), then
``strip`` the wrappers. ``sparsity_report`` measures the zeros per layer of any
model, pruned, stripped, quantization-aware or plain, in either flavour.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from keras_lightnets.compression.detectors import check_training_model, keep_detector
from keras_lightnets.compression.translate import to_tf_keras
from keras_lightnets.errors import InputError
from keras_lightnets.layers import unwrap

DEFAULT_PRUNED = ("Conv2D", "SeparableConv2D", "Dense")
# The weight TFMOT prunes in each layer class (a SeparableConv2D's 1x1 part).
PRUNABLE_WEIGHT = {"Conv2D": "kernel", "Dense": "kernel", "SeparableConv2D": "pointwise_kernel",
                   "DepthwiseConv2D": "depthwise_kernel"}

LayerFilter = Callable[[object], bool] | Sequence[str | type] | None


def layer_filter(layers: LayerFilter, model) -> Callable[[object], bool]:
    """``layers`` as a predicate over ``model``'s layers.

    ``None``: Conv2D, SeparableConv2D (its 1x1 kernel) and Dense layers (exact
    classes: depthwise convs are left alone, they hold few weights); a callable
    ``layer -> bool``; or a sequence of layer names, class names and classes.
    Every name in the sequence must match a layer of ``model``.
    """
    if layers is None:
        return lambda layer: type(layer).__name__ in DEFAULT_PRUNED
    if callable(layers):
        return layers
    if isinstance(layers, str) or not isinstance(layers, Sequence):
        raise ValueError(
            "`layers` must be None, a callable layer -> bool, or a list of layer names, "
            f"class names or classes; received layers={layers!r}"
        )
    names = {s for s in layers if isinstance(s, str)}
    classes = tuple(c for c in layers if isinstance(c, type))
    known = {layer.name for layer in model.layers} | {type(layer).__name__ for layer in model.layers}
    unknown = sorted(names - known)
    if unknown:
        raise ValueError(
            f"`layers` names {unknown[0]!r}, which is neither a layer name nor a layer class of model "
            f"{model.name!r}; allowed values: its layer names or classes, e.g. {', '.join(DEFAULT_PRUNED)}"
        )
    return lambda layer: layer.name in names or type(layer).__name__ in names or isinstance(layer, classes)


def _check_schedule(target_sparsity, begin_step, end_step, frequency) -> None:
    if not isinstance(target_sparsity, int | float) or not 0.0 <= target_sparsity < 1.0:
        raise ValueError(f"`target_sparsity` must be a number in [0, 1); received target_sparsity={target_sparsity!r}")
    if not isinstance(begin_step, int) or begin_step < 0:
        raise ValueError(f"`begin_step` must be an int >= 0; received begin_step={begin_step!r}")
    if end_step is not None and (not isinstance(end_step, int) or end_step <= begin_step):
        raise ValueError(f"`end_step` must be None or an int > begin_step={begin_step}; received end_step={end_step!r}")
    if not isinstance(frequency, int) or frequency < 1:
        raise ValueError(f"`frequency` must be an int >= 1 (steps between mask updates); received {frequency!r}")


def prune(
    model, target_sparsity: float = 0.5, begin_step: int = 0, end_step: int | None = None,
    frequency: int = 100, layers: LayerFilter = None,
):
    """A tf_keras copy of ``model`` whose chosen layers are pruned while it trains.

    With ``end_step=None`` the sparsity is ``target_sparsity`` from the first training
    step at or after ``begin_step`` on (constant schedule: the first mask is applied at
    that step, then updated every ``frequency`` steps), so even a run of one step ends
    at the target. Otherwise it ramps up polynomially from 0 at ``begin_step`` to
    ``target_sparsity`` at ``end_step`` at the latest, with masks updated every
    ``frequency`` steps (fewer than ``end_step - begin_step``: lowered to that; an
    ``end_step`` between two updates moves down to the previous one, so the ramp ends
    on an update and a run of ``end_step`` steps reaches the target). ``layers``
    chooses what to prune (see ``layer_filter``); by default every Conv2D/Dense kernel
    and SeparableConv2D pointwise kernel. Each layer ends with at least
    ``target_sparsity`` zeros (``layer_target``; TFMOT's own rounding can leave an
    odd-sized kernel one weight short). Train with ``callbacks=pruning_callbacks()``;
    ``strip`` warns when a layer has not reached its target (a ramp longer than the run).

    A detector (``keras_lightnets.detection``) prunes alike and keeps its ``anchors`` and
    ``detector_info`` (``compression.detectors``); its inference model (post-processing layers)
    is refused with ``InputError``: prune the training model, then rebuild the inference model.
    """
    import tensorflow_model_optimization as tfmot

    check_training_model(model, "prune")
    _check_schedule(target_sparsity, begin_step, end_step, frequency)
    if end_step is not None:
        # TFMOT updates masks only every `frequency` steps and never after `end_step`: an
        # end_step off that grid would stop the ramp short of the target, and one past
        # the end of a run of `end_step` steps would never be reached.
        frequency = min(frequency, end_step - begin_step)
        end_step = begin_step + (end_step - begin_step) // frequency * frequency
    source = to_tf_keras(model)
    chosen = layer_filter(layers, source)
    sparsity = tfmot.sparsity.keras

    def schedule(final: float):
        if end_step is None:
            # TFMOT counts training steps from 1 and updates masks only on steps `begin_step`
            # + k * frequency: from 0, the first mask would come at step `frequency`.
            return sparsity.ConstantSparsity(final, max(begin_step, 1), frequency=frequency)
        return sparsity.PolynomialDecay(0.0, final, begin_step, end_step, frequency=frequency)

    selected = [layer.name for layer in source.layers if type(layer).__name__ != "InputLayer" and chosen(layer)]
    if not selected:
        raise ValueError(f"`layers` selects no layer of model {model.name!r}; nothing to prune")
    tf_keras = _tf_keras()

    def wrap(layer):
        if layer.name not in selected:
            return layer
        final = layer_target(float(target_sparsity), _prunable_sizes(layer))
        try:
            return sparsity.prune_low_magnitude(layer, pruning_schedule=schedule(final))
        except ValueError as err:
            raise ValueError(f"cannot prune layer {layer.name!r} ({type(layer).__name__}): {err}") from None

    return keep_detector(model, tf_keras.models.clone_model(source, clone_function=wrap))


def layer_target(target_sparsity: float, sizes: Sequence[int]) -> float:
    """The sparsity to ask TFMOT for in a layer whose prunable weights have ``sizes`` elements,
    so that each really reaches ``target_sparsity``.

    TFMOT keeps ``round(size * (1 - sparsity))`` weights, which for an odd size at 50%
    keeps one weight too many (49.99% zeros), and also every weight tied with the
    threshold. This asks for ``floor(size * (1 - target)) - 1`` kept weights: at least
    ``target`` zeros even with a tie at the threshold, two weights at most above the
    exact fraction. A weight keeps at least one element; a target of 0 stays 0.
    """
    sizes = [size for size in sizes if size > 0]
    if not sizes or target_sparsity == 0:
        return target_sparsity
    kept = [max(math.floor(size * (1.0 - target_sparsity) + 1e-9) - 1, 1) for size in sizes]
    return max(1.0 - k / size for k, size in zip(kept, sizes, strict=True))


def _prunable_sizes(layer) -> list[int]:
    """Element counts of the weights TFMOT will prune in ``layer`` (a built tf_keras layer)."""
    name = PRUNABLE_WEIGHT.get(type(layer).__name__)
    if name is not None and getattr(layer, name, None) is not None:
        weights = [getattr(layer, name)]
    elif hasattr(layer, "get_prunable_weights"):  # a user's tfmot PrunableLayer
        weights = layer.get_prunable_weights()
    else:
        weights = []
    return [int(np.prod(weight.shape)) for weight in weights]


def _tf_keras():
    from keras_lightnets import _backend

    return _backend.keras_module("tf_keras")


def pruning_callbacks(log_dir: str | None = None) -> list:
    """The callbacks a pruned model trains with: TFMOT's ``UpdatePruningStep``
    (and ``PruningSummaries`` for TensorBoard when ``log_dir`` is given)."""
    import tensorflow_model_optimization as tfmot

    callbacks = [tfmot.sparsity.keras.UpdatePruningStep()]
    if log_dir is not None:
        callbacks.append(tfmot.sparsity.keras.PruningSummaries(log_dir=log_dir))
    return callbacks


def strip(model):
    """``model`` without pruning wrappers (the pruned weights stay zero).

    Warns (one ``UserWarning`` line naming them) when pruned layers are below the final
    sparsity of their schedule, e.g. a ramp (``end_step``) longer than the training run;
    ``below_target`` lists them. A detector keeps its ``anchors`` and ``detector_info``.
    """
    import tensorflow_model_optimization as tfmot

    short = below_target(model)
    stripped = tfmot.sparsity.keras.strip_pruning(model)
    if short:
        shown = ", ".join(f"{name} {reached:.1%} < {final:.0%}" for name, reached, final in short[:8])
        more = f" and {len(short) - 8} more" if len(short) > 8 else ""
        warnings.warn(
            f"strip: {len(short)} pruned layer(s) below their target sparsity: {shown}{more}; the pruning "
            "schedule did not finish (train at least `end_step` steps with pruning_callbacks())",
            UserWarning, stacklevel=2,
        )
    return keep_detector(model, stripped)


def below_target(model) -> list[tuple[str, float, float]]:
    """``(layer name, sparsity reached, final sparsity of its schedule)`` for every pruned layer
    of ``model`` (TFMOT wrappers) with fewer zeros than its schedule ends with (one weight
    tied with the threshold allowed, as TFMOT keeps ties)."""
    short = []
    for wrapper in model.layers:
        if type(wrapper).__name__ != "PruneLowMagnitude":
            continue
        schedule = wrapper.pruning_schedule
        final = getattr(schedule, "final_sparsity", getattr(schedule, "target_sparsity", None))
        if not isinstance(final, int | float) or final <= 0:
            continue
        size = zeros = 0
        for weight, mask, _ in wrapper.pruning_vars:
            values = np.asarray(weight) * np.asarray(mask)
            size += values.size
            zeros += int(np.count_nonzero(values == 0))
        if size and zeros < round(final * size) - 1:
            short.append((wrapper.layer.name, zeros / size, float(final)))
    return short


def is_pruned(model) -> bool:
    """True when ``model`` still carries TFMOT pruning wrappers."""
    return any(type(layer).__name__ == "PruneLowMagnitude" for layer in model.layers)


@dataclass(frozen=True)
class LayerSparsity:
    """Zeros in one kernel: ``zeros / size`` is the layer's sparsity (``layer``: the
    name of the layer itself, not of a TFMOT wrapper around it)."""

    layer: str
    kind: str
    weight: str
    size: int
    zeros: int

    @property
    def sparsity(self) -> float:
        return self.zeros / self.size if self.size else 0.0

    def as_dict(self) -> dict:
        return {"layer": self.layer, "class": self.kind, "weight": self.weight, "size": self.size,
                "zeros": self.zeros, "sparsity": round(self.sparsity, 6)}


def sparsity_report(model, layers: LayerFilter = None) -> list[LayerSparsity]:
    """Per layer, the fraction of exact zeros in the weight pruning acts on
    (``PRUNABLE_WEIGHT``: a conv or dense kernel, a separable conv's 1x1 kernel).

    ``layers`` filters as in ``prune`` (default: ``DEFAULT_PRUNED``); layers inside
    TFMOT wrappers are looked through.
    """
    chosen = layer_filter(layers, model)
    rows = []
    for wrapper in model.layers:
        layer = unwrap(wrapper)
        weight = PRUNABLE_WEIGHT.get(type(layer).__name__)
        if weight is None or not (chosen(layer) or chosen(wrapper)):
            continue
        # Read the variables, not the attributes: inside a QuantizeWrapper ``layer.kernel``
        # is the fake-quantized tensor.
        for variable in wrapper.weights:
            if _short_name(variable) != weight:
                continue
            values = np.asarray(variable)
            rows.append(LayerSparsity(layer.name, type(layer).__name__, weight, int(values.size),
                                      int(np.count_nonzero(values == 0))))
    return rows


def _is_model(value) -> bool:
    return any(f"{cls.__module__}.{cls.__name__}" in _MODEL_CLASSES for cls in type(value).__mro__)


_MODEL_CLASSES = ("keras.src.models.model.Model", "tf_keras.src.engine.training.Model")


def _kind(value) -> str:
    return f"{type(value).__name__} {value!r}"[:80]


def _short_name(variable) -> str:
    """``kernel`` from tf_keras' ``conv/kernel:0`` or Keras 3's ``kernel``."""
    return variable.name.rsplit("/", 1)[-1].split(":", 1)[0]


def overall_sparsity(rows) -> float:
    """Zeros over all weights of a ``sparsity_report``, or of the report of a model
    (Keras 3 or tf_keras, pruned or not: ``sparsity_report(model)``)."""
    if _is_model(rows):
        rows = sparsity_report(rows)
    elif isinstance(rows, str | bytes) or not isinstance(rows, Sequence | Iterable):
        raise InputError(f"`rows` must be a model or the rows of sparsity_report(model); received {_kind(rows)}")
    rows = list(rows)
    if not all(isinstance(row, LayerSparsity) for row in rows):
        bad = next(row for row in rows if not isinstance(row, LayerSparsity))
        raise InputError(f"`rows` must be a model or the rows of sparsity_report(model); received a row {_kind(bad)}")
    size = sum(r.size for r in rows)
    return sum(r.zeros for r in rows) / size if size else 0.0
