"""The logic of every package layer, written once and flavour-neutral.

Each ``*Mixin`` holds a layer's whole body (``__init__`` checks, ``call``, shapes,
config); ``keras3.py`` and ``tfkeras.py`` put it in front of their flavour's
``Layer`` base and set ``ops`` (the flavour's tensor functions), in two lines per
layer. Nothing here imports Keras or TensorFlow.

Shapes: ``(batch, height, width, channels)`` for ``data_format="channels_last"``,
``(batch, channels, height, width)`` for ``"channels_first"``; every image layer keeps the
shape except ``ChannelSplit`` (``groups`` tensors of ``channels / groups`` channels).
``call`` accepts (and ignores) the ``mask`` Keras or TFMOT wrappers pass after a
masking-aware layer such as ``Concatenate``.

The detection post-processing layers (``DecodeBoxes``, ``ClassScores``,
``NonMaxSuppression``) work on per-anchor rows ``(batch, anchors, ...)``; they are float
layers that end a detector's inference graph (``detection.inference``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from keras_lightnets.errors import InputError
from keras_lightnets.validation import check_bool, check_choice, check_positive_int, check_positive_number, is_int

PACKAGE = "keras_lightnets"
LAYER_NAMES = (
    "HardSigmoid", "HardSwish", "Rescale", "ChannelShuffle", "ChannelSplit",
    "DecodeBoxes", "ClassScores", "NonMaxSuppression",
)
DATA_FORMATS = ("channels_last", "channels_first")
BOX_CODINGS = ("torchvision", "ssd")
ANCHOR_FORMATS = ("xyxy_pixels", "cxcywh_relative")
SCORE_FUNCTIONS = ("softmax", "sigmoid")
# torchvision's bbox_xform_clip (``detection.box_coding.BBOX_XFORM_CLIP``, which imports nothing
# of this floor): the largest unweighted dw / dh that exp() sees when decoding.
BBOX_XFORM_CLIP = math.log(1000.0 / 16)


@dataclasses.dataclass(frozen=True)
class Ops:
    """The flavour's functions a layer body calls: ``keras.ops`` (Keras 3, every backend) or
    TensorFlow (tf_keras)."""

    relu6: Callable[[Any], Any]
    reshape: Callable[[Any, Any], Any]
    transpose: Callable[[Any, Any], Any]
    shape: Callable[[Any], Any]
    split: Callable[..., Any]
    constant: Callable[[Any], Any]  # array-like -> float32 tensor
    linear: Callable[[Any], Any]  # the flavour's identity activation (marks a value for QAT)
    image_data_format: Callable[[], str]
    # Detection post-processing (DecodeBoxes, ClassScores, NonMaxSuppression).
    exp: Callable[[Any], Any]
    minimum: Callable[[Any, Any], Any]
    maximum: Callable[[Any, Any], Any]
    softmax: Callable[[Any], Any]  # over the last axis
    sigmoid: Callable[[Any], Any]
    concatenate: Callable[[list, int], Any]  # (tensors, axis)
    stack: Callable[[list, int], Any]  # (tensors, axis)
    cast: Callable[[Any, str], Any]  # (x, dtype name)
    where: Callable[[Any, Any, Any], Any]  # broadcasting select
    zeros_like: Callable[[Any], Any]
    top_k: Callable[[Any, int], tuple]  # last axis, sorted descending; equal values: lower index first
    take_last: Callable[[Any, Any], Any]  # numpy take_along_axis(x, indices, axis=-1), same leading axes
    while_loop: Callable[..., Any]  # (cond, body, loop_vars, maximum_iterations), tf.while_loop's contract
    arange: Callable[[int], Any]  # int32 0 .. n-1
    sum: Callable[[Any, int], Any]  # (x, axis)
    max: Callable[[Any], Any]  # over every axis
    pad: Callable[[Any, list, Any], Any]  # (x, [[before, after], ...], constant)


class LayerMixin:
    """Base of every package layer: nothing to prune (TFMOT's ``PrunableLayer`` API); the only
    weight of any package layer is ``DecodeBoxes``' non-trainable anchors.

    How TFMOT quantizes each layer is ``compression.configs.QUANTIZE_POLICY``.
    """

    ops: ClassVar[Ops]
    # True while the layer is traced for an int8 graph (set by its QuantizeConfig in QAT
    # and by ``int8_graph`` during int8 export); not serialized.
    int8_graph = False

    def get_prunable_weights(self) -> list:
        return []


class ElementwiseMixin(LayerMixin):
    """Base of the shape-preserving layers."""

    def compute_output_shape(self, input_shape):
        return input_shape


class TwoStepMixin(ElementwiseMixin):
    """A layer of two TFLite ops. ``self.intermediate`` (identity) marks the value between
    them, so that quantization-aware training can fake-quantize it too (see
    ``compression.configs``): a full-int8 file needs a range for every tensor."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.intermediate = self.ops.linear


class LayoutMixin:
    """Mixin of the layers that find the channel axis from ``data_format``: ``None`` means the
    flavour's ``image_data_format()`` at creation; the resolved value is saved in the config
    (a config without one is channels-last: every file before it was)."""

    def _set_data_format(self, data_format) -> None:
        if data_format is None:
            data_format = self.ops.image_data_format()
        if data_format not in DATA_FORMATS:
            raise ValueError(
                f"{type(self).__name__}: `data_format` must be None, 'channels_last' or "
                f"'channels_first'; received data_format={data_format!r}"
            )
        self.data_format = data_format
        self.channel_axis = 1 if data_format == "channels_first" else -1

    @classmethod
    def from_config(cls, config):
        # Files written before `data_format` existed were all channels-last.
        return super().from_config({"data_format": "channels_last", **config})

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


class HardSigmoidMixin(TwoStepMixin):
    """``relu6(x + 3) / 6``, elementwise; any shape in, same shape out."""

    def call(self, inputs, mask=None):
        return self.intermediate(self.ops.relu6(inputs + 3.0)) * (1.0 / 6.0)


class HardSwishMixin(ElementwiseMixin):
    """``x * relu6(x + 3) / 6``, elementwise; any shape in, same shape out.

    Written ``x * (relu6(x + 3) * (1/6))``, which the TFLite converter fuses into one
    ``HARD_SWISH`` op: the fastest float form. XNNPACK has no int8 ``HARD_SWISH``, so
    for an int8 graph (``int8_graph``) the layer is written ``(x / 6) * relu6(x + 3)``
    instead: ``MUL``, ``ADD`` with a fused ``RELU6``, ``MUL``, all run by XNNPACK
    (about 3x faster than the unfused int8 ``HARD_SWISH`` kernel on MobileNetV3).
    ``self.scaled`` and ``self.gate`` (identities) mark its two inner values for QAT.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.scaled = self.ops.linear
        self.gate = self.ops.linear

    def call(self, inputs, mask=None):
        if self.int8_graph:
            return self.scaled(inputs * (1.0 / 6.0)) * self.gate(self.ops.relu6(inputs + 3.0))
        return inputs * (self.ops.relu6(inputs + 3.0) * (1.0 / 6.0))


class RescaleMixin(LayoutMixin, TwoStepMixin):
    """``x * scale + offset`` with constants (no weights): Python floats, or one
    float per channel (lists as long as the input's channel axis, the last one or,
    with ``data_format="channels_first"``, axis 1).

    Used for in-model preprocessing, e.g. ``scale=1/127.5, offset=-1`` maps
    pixels in ``[0, 255]`` to ``[-1, 1]``.
    """

    def __init__(self, scale: float | list[float], offset: float | list[float] = 0.0,
                 data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.scale = _floats("scale", scale)
        self.offset = _floats("offset", offset)
        self._set_data_format(data_format)

    def call(self, inputs, mask=None):
        if self.channel_axis == 1:
            rank = len(inputs.shape)
            return (self.intermediate(inputs * self._channels_first_constant(self.scale, rank))
                    + self._channels_first_constant(self.offset, rank))
        width = _narrow_image_width(inputs.shape)
        return self.intermediate(inputs * self._constant(self.scale, width)) + self._constant(self.offset, width)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}

    def _constant(self, value, width: int | None = None):
        """A per-channel list as a constant ``(C,)``, or tiled to ``(width, C)``; a float as is."""
        if not isinstance(value, list):
            return value
        return self.ops.constant([value] * width if width else value)

    def _channels_first_constant(self, value, rank: int):
        """A per-channel list as a constant ``(C, 1, ..., 1)`` broadcasting over axis 1; a float as is."""
        if not isinstance(value, list):
            return value
        return self.ops.constant(np.asarray(value, np.float32).reshape((len(value),) + (1,) * max(rank - 2, 0)))


def _floats(argument: str, value) -> float | list[float]:
    if isinstance(value, list | tuple):
        if not value or not all(isinstance(v, int | float) for v in value):
            raise ValueError(f"Rescale: `{argument}` must be a float or a list of floats; received {value!r}")
        return [float(v) for v in value]
    if not isinstance(value, int | float):
        raise ValueError(f"Rescale: `{argument}` must be a float or a list of floats; received {value!r}")
    return float(value)


def _narrow_image_width(shape) -> int | None:
    """The width of an image batch with few channels (``(B, H, W, C)``, ``C`` < 8), else None.

    LiteRT/XNNPACK broadcasts a per-channel constant one innermost row at a time: for
    a 3-channel image that is one tiny call per pixel (doubling the int8 latency of a
    small ShuffleNet). A constant tiled to ``(W, C)`` makes the rows ``W * C`` long.
    """
    if len(shape) == 4 and shape[2] is not None and shape[3] is not None and shape[3] < 8:
        return int(shape[2])
    return None


class GroupsMixin(LayoutMixin):
    """Mixin of the layers that cut the channel axis into ``groups`` equal parts."""

    def _set_groups(self, groups: int) -> None:
        if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
            raise ValueError(f"{type(self).__name__}: `groups` must be a positive int; received groups={groups!r}")
        self.groups = groups

    def _check_channels(self, input_shape) -> int:
        """The input's channel count; ``ValueError`` unless a 4-D shape with channels divisible by ``groups``."""
        channels = input_shape[self.channel_axis] if len(input_shape) == 4 else None
        if channels is None or channels % self.groups:
            layout = ("(batch, channels, height, width)" if self.channel_axis == 1
                      else "(batch, height, width, channels)")
            raise ValueError(
                f"{type(self).__name__} expects {layout} with channels divisible "
                f"by groups={self.groups}; received input shape {tuple(input_shape)}"
            )
        return channels

    def build(self, input_shape):
        self._check_channels(input_shape)
        super().build(input_shape)

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}


class ChannelShuffleMixin(GroupsMixin, ElementwiseMixin):
    """Shuffle channels across ``groups``: channel ``g * (C/groups) + k`` moves to
    ``k * groups + g`` (torchvision's ``channel_shuffle``), on ``(N, H, W, C)``
    (``(N, C, H, W)`` with ``data_format="channels_first"``)."""

    def __init__(self, groups: int = 2, data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self._set_groups(groups)
        self._set_data_format(data_format)

    def call(self, inputs, mask=None):
        ops = self.ops
        shape = ops.shape(inputs)
        channels = inputs.shape[self.channel_axis]
        if self.channel_axis == 1:
            x = ops.reshape(inputs, (-1, self.groups, channels // self.groups, shape[2], shape[3]))
            x = ops.transpose(x, (0, 2, 1, 3, 4))
            return ops.reshape(x, (-1, channels, shape[2], shape[3]))
        x = ops.reshape(inputs, (-1, shape[1], shape[2], self.groups, channels // self.groups))
        x = ops.transpose(x, (0, 1, 2, 4, 3))
        return ops.reshape(x, (-1, shape[1], shape[2], channels))


class ChannelSplitMixin(GroupsMixin, LayerMixin):
    """Split ``(N, H, W, C)`` into ``groups`` tensors of ``(N, H, W, C/groups)``
    (the channel axis 1 with ``data_format="channels_first"``)."""

    def __init__(self, groups: int = 2, data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self._set_groups(groups)
        self._set_data_format(data_format)

    def call(self, inputs, mask=None):
        return list(self.ops.split(inputs, self.groups, axis=self.channel_axis))

    def compute_output_shape(self, input_shape):
        part = list(input_shape)
        part[self.channel_axis] = self._check_channels(input_shape) // self.groups
        return [tuple(part)] * self.groups


# --------------------------------------------------------------------------- detection post-processing


def _numbers(argument: str, value, count: int, what: str) -> list[float]:
    """``value`` as ``count`` finite floats > 0; ``InputError`` naming ``argument`` otherwise."""
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple | np.ndarray) or len(value) != count:
        raise InputError(f"`{argument}` must be {what}; received {argument}={value!r}")
    return [check_positive_number(f"{argument}[{i}]", v) for i, v in enumerate(value)]


class DecodeBoxesMixin(LayerMixin):
    """Box deltas ``(batch, N, 4)`` -> boxes ``(batch, N, 4)``: x1 y1 x2 y2 in input pixels.

    The anchors ``(N, 4)`` are the layer's one weight, non-trainable and named ``anchors``:
    a model file carries them and the config holds no array. Pass ``anchors`` (float32
    ``(N, 4)``) when building a model; a layer made from a config starts at zeros until its
    weights are loaded. ``anchor_format`` says what the rows are: ``"xyxy_pixels"`` (x1 y1 x2
    y2 in input pixels, torchvision) or ``"cxcywh_relative"`` (centre x, centre y, width,
    height as fractions of the image, pytorch-ssd's priors).

    ``box_coding``:

    * ``"torchvision"`` (``box_weights`` = ``(wx, wy, ww, wh)``): torchvision's
      ``BoxCoder.decode_single``, ``detection.box_coding.decode_torchvision``: centre
      ``d_xy / w_xy * wh_a + c_a``, size ``exp(min(d_wh / w_wh, log(1000 / 16))) * wh_a``;
    * ``"ssd"`` (``variances`` = ``(center_variance, size_variance)``): pytorch-ssd's
      ``convert_locations_to_boxes``, ``box_coding.decode_ssd`` (no clamp), in fractions of
      the image, then scaled to pixels by ``image_size``.

    Anchors in the other format are converted first, as ``box_coding.cxcywh_to_xyxy`` /
    ``xyxy_to_cxcywh`` and ``image_size`` (``(height, width)`` in pixels) do. ``clip``
    (default ``True``, as torchvision's ``postprocess_detections``): clamp x to ``[0, width]``
    and y to ``[0, height]``. The arithmetic is ``box_coding``'s, operation for operation, so
    the result equals its NumPy decoders up to the flavour's ``exp`` (float32 rounding).
    """

    def __init__(self, box_coding: str = "torchvision", box_weights=None, variances=None,
                 anchor_format: str = "xyxy_pixels", image_size=None, clip: bool = True, anchors=None, **kwargs):
        super().__init__(**kwargs)
        check_choice("box_coding", box_coding, BOX_CODINGS)
        check_choice("anchor_format", anchor_format, ANCHOR_FORMATS)
        self.box_coding = box_coding
        self.anchor_format = anchor_format
        if box_coding == "torchvision":
            self.box_weights = _numbers("box_weights", box_weights, 4, "four numbers > 0 (wx, wy, ww, wh), e.g. "
                                        "(10, 10, 5, 5) for SSD or (1, 1, 1, 1) for RetinaNet")
            if variances is not None:
                raise InputError(f"`variances` is for box_coding='ssd' only; received variances={variances!r}")
            self.variances = None
        else:
            self.variances = _numbers("variances", variances, 2,
                                      "two numbers > 0 (center_variance, size_variance), e.g. (0.1, 0.2)")
            if box_weights is not None:
                raise InputError(
                    f"`box_weights` is for box_coding='torchvision' only; received box_weights={box_weights!r}")
            self.box_weights = None
        if (isinstance(image_size, str | bytes) or not isinstance(image_size, list | tuple) or len(image_size) != 2
                or not all(is_int(v) and v >= 1 for v in image_size)):
            raise InputError("`image_size` must be (height, width) in pixels, two positive ints; "
                             f"received image_size={image_size!r}")
        self.image_size = [int(image_size[0]), int(image_size[1])]
        self.clip = check_bool("clip", clip)
        self._initial_anchors = None
        if anchors is not None:
            array = np.asarray(anchors)
            if array.ndim != 2 or array.shape[1] != 4 or array.dtype.kind not in "iuf":
                raise InputError(f"`anchors` must be a numeric array of shape (N, 4); received shape {array.shape}")
            self._initial_anchors = array.astype(np.float32)

    def build(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) != 3 or shape[1] is None or shape[2] != 4:
            raise ValueError(f"{type(self).__name__} expects box deltas (batch, anchors, 4) with a fixed number of "
                             f"anchors; received input shape {shape}")
        initial = self._initial_anchors
        if initial is not None and initial.shape[0] != shape[1]:
            raise ValueError(f"{type(self).__name__}: the input has {shape[1]} rows but `anchors` holds "
                             f"{initial.shape[0]} anchors")
        self.anchors = self.add_weight(name="anchors", shape=(shape[1], 4), initializer="zeros", trainable=False,
                                       dtype="float32")
        if initial is not None:
            self.anchors.assign(initial)
            self._initial_anchors = None  # the weight holds them now
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, inputs, mask=None):
        ops = self.ops
        anchors = ops.cast(self.anchors, "float32")
        height, width = self.image_size
        size = ops.constant([width, height, width, height])
        if self.box_coding == "torchvision":
            if self.anchor_format == "cxcywh_relative":
                anchors = self._cxcywh_to_xyxy(anchors) * size
            boxes = self._decode_torchvision(inputs, anchors)
        else:
            if self.anchor_format == "xyxy_pixels":
                anchors = self._xyxy_to_cxcywh(anchors) / size
            boxes = self._cxcywh_to_xyxy(self._decode_ssd(inputs, anchors)) * size
        if self.clip:
            boxes = ops.minimum(ops.maximum(boxes, 0.0), size)
        return boxes

    def _decode_torchvision(self, deltas, anchors):
        """``box_coding.decode_torchvision``, in its order of operations."""
        ops = self.ops
        wx, wy, ww, wh = self.box_weights
        widths = anchors[:, 2] - anchors[:, 0]
        heights = anchors[:, 3] - anchors[:, 1]
        ctr_x = anchors[:, 0] + 0.5 * widths
        ctr_y = anchors[:, 1] + 0.5 * heights
        dx = deltas[..., 0] / wx
        dy = deltas[..., 1] / wy
        dw = ops.minimum(deltas[..., 2] / ww, BBOX_XFORM_CLIP)
        dh = ops.minimum(deltas[..., 3] / wh, BBOX_XFORM_CLIP)
        pred_cx = dx * widths + ctr_x
        pred_cy = dy * heights + ctr_y
        half_w = 0.5 * (ops.exp(dw) * widths)
        half_h = 0.5 * (ops.exp(dh) * heights)
        return ops.stack([pred_cx - half_w, pred_cy - half_h, pred_cx + half_w, pred_cy + half_h], -1)

    def _decode_ssd(self, locations, priors):
        """``box_coding.decode_ssd``: centre form, fractions of the image."""
        ops = self.ops
        center_variance, size_variance = self.variances
        return ops.concatenate([
            locations[..., :2] * center_variance * priors[:, 2:] + priors[:, :2],
            ops.exp(locations[..., 2:] * size_variance) * priors[:, 2:],
        ], -1)

    def _cxcywh_to_xyxy(self, boxes):
        return self.ops.concatenate([boxes[..., :2] - boxes[..., 2:] / 2.0, boxes[..., :2] + boxes[..., 2:] / 2.0], -1)

    def _xyxy_to_cxcywh(self, boxes):
        return self.ops.concatenate([(boxes[..., :2] + boxes[..., 2:]) / 2.0, boxes[..., 2:] - boxes[..., :2]], -1)

    def get_config(self):
        return {
            **super().get_config(), "box_coding": self.box_coding, "box_weights": self.box_weights,
            "variances": self.variances, "anchor_format": self.anchor_format, "image_size": list(self.image_size),
            "clip": self.clip,
        }


class ClassScoresMixin(LayerMixin):
    """Class logits ``(batch, N, C)`` -> scores ``(batch, N, K)`` of the foreground classes.

    ``score="softmax"``: one softmax over the ``C`` columns per row (SSD, SSDLite);
    ``"sigmoid"``: one sigmoid per column (RetinaNet). ``background_class``: the column
    dropped after that (``0`` for torchvision's softmax heads), or ``None`` (none dropped,
    ``K = C``); else ``K = C - 1`` and foreground class ``k`` is column ``k`` below the
    background column, ``k + 1`` from it on.
    """

    def __init__(self, score: str = "softmax", background_class: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        check_choice("score", score, SCORE_FUNCTIONS)
        if background_class is not None and (not is_int(background_class) or background_class < 0):
            raise InputError("`background_class` must be None or the column of the background class (an int >= 0); "
                             f"received background_class={background_class!r}")
        self.score = score
        self.background_class = None if background_class is None else int(background_class)

    def build(self, input_shape):
        columns = input_shape[-1] if len(input_shape) == 3 else None
        background = self.background_class
        if columns is None or (background is not None and (background >= columns or columns < 2)):
            need = f"more than background_class={background} columns" if background is not None else "columns"
            raise ValueError(f"{type(self).__name__} expects logits (batch, anchors, classes) with a fixed number of "
                             f"{need}; received input shape {tuple(input_shape)}")
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        if self.background_class is not None and shape[-1] is not None:
            shape[-1] -= 1
        return tuple(shape)

    def call(self, inputs, mask=None):
        ops = self.ops
        scores = ops.softmax(inputs) if self.score == "softmax" else ops.sigmoid(inputs)
        background = self.background_class
        if background is None:
            return scores
        if background == 0:
            return scores[..., 1:]
        return ops.concatenate([scores[..., :background], scores[..., background + 1:]], -1)

    def get_config(self):
        return {**super().get_config(), "score": self.score, "background_class": self.background_class}


class NonMaxSuppressionMixin(LayerMixin):
    """Per-class greedy non-maximum suppression on a batch, in the flavour's tensor ops.

    Inputs ``[boxes, scores]``: boxes ``(batch, N, 4)`` x1 y1 x2 y2 (any unit), scores
    ``(batch, N, K)`` per class. Outputs ``[boxes (batch, D, 4), scores (batch, D), classes
    (batch, D) int32, count (batch,) int32]`` with ``D = max_detections``: the first
    ``count`` rows of each image are its detections, by score descending (equal scores:
    lower class first, then lower anchor row); the rows past ``count`` hold boxes 0, scores 0
    and class -1. ``classes`` is the column of ``scores`` (the 0-based foreground class).

    Per class (the classes are independent, as torchvision's ``batched_nms``): the
    ``candidates_per_class`` best rows (``None``: all ``N``) by score (equal scores: lower row
    first), of which those with score ``> score_threshold`` are candidates. Greedily, best
    first, a candidate is kept unless a kept box of the same class overlaps it with
    IoU ``> iou_threshold`` (IoU = intersection / (area_kept + area - intersection), widths
    ``x2 - x1``: torchvision's ``box_iou`` and ``nms``). Then the ``max_detections`` best kept
    rows over every class. Pre-NMS top-k is per class here; torchvision's SSD takes it per class
    too (``topk_candidates``, 400), its RetinaNet per level over all classes (1000).

    Written with ``top_k``, ``take_along_axis`` and one ``while_loop`` (one step per candidate
    rank, all classes and images at once; it stops after the longest list of candidates over the
    threshold), so the Keras 3 layer runs on every backend that has those (TensorFlow, JAX).
    ``detection.inference.non_max_suppression_numpy`` is the NumPy reference it equals.
    """

    def __init__(self, score_threshold: float = 0.05, iou_threshold: float = 0.5, max_detections: int = 100,
                 candidates_per_class: int | None = 400, **kwargs):
        super().__init__(**kwargs)
        self.score_threshold = check_score_threshold(score_threshold)
        self.iou_threshold = check_iou_threshold(iou_threshold)
        self.max_detections = check_positive_int("max_detections", max_detections)
        self.candidates_per_class = check_positive_int("candidates_per_class", candidates_per_class, allow_none=True)

    def build(self, input_shape):
        try:
            shapes = [tuple(shape) for shape in input_shape]
        except TypeError:  # one shape, not a list of two
            shapes = []
        if (len(shapes) != 2 or len(shapes[0]) != 3 or shapes[0][-1] != 4 or len(shapes[1]) != 3
                or shapes[0][1] is None or shapes[1][1] != shapes[0][1] or shapes[1][2] is None):
            raise ValueError(f"{type(self).__name__} expects [boxes (batch, N, 4), scores (batch, N, classes)] with "
                             f"fixed N and classes; received input shapes {input_shape}")
        super().build(input_shape)

    def call(self, inputs, mask=None):
        ops = self.ops
        boxes, scores = inputs
        rows, classes = int(scores.shape[1]), int(scores.shape[2])
        candidates = rows if self.candidates_per_class is None else min(self.candidates_per_class, rows)
        # Each class's best rows, by score descending (equal scores: lower row first).
        best, index = ops.top_k(ops.transpose(scores, (0, 2, 1)), candidates)  # (B, K, M)
        index = ops.reshape(ops.cast(index, "int32"), (-1, classes * candidates))
        x1, y1, x2, y2 = (ops.reshape(ops.take_last(boxes[..., j], index), (-1, classes, candidates))
                          for j in range(4))
        valid = best > self.score_threshold
        kept = valid & ~self._suppressed(x1, y1, x2, y2, valid, candidates)
        # The best kept rows over every class; equal scores: lower class, then lower rank (row).
        flat = ops.reshape(ops.where(kept, best, -1.0), (-1, classes * candidates))
        count = min(self.max_detections, classes * candidates)
        score, order = ops.top_k(flat, count)
        order = ops.cast(order, "int32")
        chosen = score > self.score_threshold  # the kept rows; the others hold -1
        coords = [ops.take_last(ops.reshape(c, (-1, classes * candidates)), order) for c in (x1, y1, x2, y2)]
        out_boxes = ops.where(chosen[..., None], ops.stack(coords, -1), 0.0)
        out_scores = ops.where(chosen, score, 0.0)
        out_classes = ops.where(chosen, order // candidates, -1)
        num = ops.sum(ops.cast(chosen, "int32"), -1)
        missing = self.max_detections - count
        if missing:
            out_boxes = ops.pad(out_boxes, [[0, 0], [0, missing], [0, 0]], 0.0)
            out_scores = ops.pad(out_scores, [[0, 0], [0, missing]], 0.0)
            out_classes = ops.pad(out_classes, [[0, 0], [0, missing]], -1)
        return [out_boxes, out_scores, out_classes, num]

    def _suppressed(self, x1, y1, x2, y2, valid, candidates: int):
        """``(B, K, M)`` bool: suppressed by a better kept candidate of its class (greedy NMS).

        Step ``i`` decides rank ``i`` of every class and image (kept = candidate and not yet
        suppressed), then suppresses the later ranks its box overlaps; a rank is only ever
        suppressed by an earlier one, so after the loop ``kept = valid & ~suppressed``.
        """
        ops = self.ops
        area = (x2 - x1) * (y2 - y1)
        rank = ops.arange(candidates)
        threshold = self.iou_threshold
        limit = ops.max(ops.sum(ops.cast(valid, "int32"), -1))  # candidates are a prefix of each list

        def cond(i, suppressed):
            return i < limit

        def body(i, suppressed):
            bx1, by1, bx2, by2, barea = (t[:, :, i][..., None] for t in (x1, y1, x2, y2, area))
            width = ops.maximum(ops.minimum(bx2, x2) - ops.maximum(bx1, x1), 0.0)
            height = ops.maximum(ops.minimum(by2, y2) - ops.maximum(by1, y1), 0.0)
            inter = width * height
            overlap = inter / (barea + area - inter) > threshold
            current = valid[:, :, i] & ~suppressed[:, :, i]
            return i + 1, suppressed | (current[..., None] & overlap & (rank > i))

        start = ops.cast(0, "int32")
        _, suppressed = ops.while_loop(cond, body, (start, ops.zeros_like(valid)), maximum_iterations=candidates)
        return suppressed

    def get_config(self):
        return {
            **super().get_config(), "score_threshold": self.score_threshold, "iou_threshold": self.iou_threshold,
            "max_detections": self.max_detections, "candidates_per_class": self.candidates_per_class,
        }


def check_score_threshold(value) -> float:
    """``value`` as a float; ``InputError`` unless a number in ``[0, 1)``."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating) \
            or not 0.0 <= value < 1.0:
        raise InputError(f"`score_threshold` must be a number in [0, 1); received score_threshold={value!r}")
    return float(value)


def check_iou_threshold(value) -> float:
    """``value`` as a float; ``InputError`` unless a number in ``(0, 1]``."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating) \
            or not 0.0 < value <= 1.0:
        raise InputError(f"`iou_threshold` must be a number in (0, 1]; received iou_threshold={value!r}")
    return float(value)
