"""SSDLite and RetinaNet on the registry backbones (``keras_lightnets.detection.builders``, ``heads``).

Every architecture builds both detectors at a small input (128x128: SqueezeNet's odd sizes and
missing stride-32 map included); one backbone is checked in tf_keras against Keras 3 and
through a ``.keras`` round trip. Anchor order is checked against the head's row order with
known values, and the FPN's odd-size upsampling against torchvision's nearest interpolation.
"""

from __future__ import annotations

import math
import subprocess
import sys

import keras
import numpy as np
import pytest
from helpers import image_batch, infer, randomize_weights, smallest_per_architecture

from keras_lightnets.detection import SSD, RetinaNet, SSDLite, heads
from keras_lightnets.detection.anchor_boxes import ssd_default_boxes
from keras_lightnets.errors import InputError
from keras_lightnets.models.registry import create_model

SIZE = 128
FORBIDDEN = {"Lambda", "TFOpLambda", "SlicingOpLambda"}
PREFIX = {"ssd": "ssd_", "ssdlite": "ssdlite_", "retinanet": "retinanet_"}
KINDS = ["ssd", "ssdlite", "retinanet"]
SOFTMAX = ("ssd", "ssdlite")
OUTPUTS = {"classes", "boxes"}


def _build(kind: str, backbone: str, flavour: str | None = None, classes: int = 3):
    if kind == "ssdlite":
        return SSDLite(backbone, classes, input_shape=(SIZE, SIZE, 3), flavour=flavour)
    if kind == "ssd":
        return SSD(backbone, classes, input_shape=(SIZE, SIZE, 3), flavour=flavour, width=0.25)
    return RetinaNet(backbone, classes, input_shape=(SIZE, SIZE, 3), flavour=flavour, fpn_channels=32, num_convs=2)


def _check_anchor_layout(model) -> None:
    """Rows per level = H * W * A, and within a level the anchors' centres go down the rows."""
    info = model.detector_info
    per_location = info["anchors_per_location"]
    start = 0
    for level in info["levels"]:
        height, width = level["size"]
        count = height * width * per_location
        boxes = model.anchors[start:start + count]
        centre_y = (boxes[:, 1] + boxes[:, 3]) / 2
        assert np.all(np.diff(centre_y) >= -1e-3), level
        start += count
    assert start == len(model.anchors)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("backbone", smallest_per_architecture())
def test_every_backbone_builds_and_predicts(backbone, kind):
    model = _build(kind, backbone)
    n = len(model.anchors)
    assert model.anchors.shape == (n, 4) and model.anchors.dtype == np.float32
    assert [tuple(o.shape) for o in model.outputs] == [(None, n, 3), (None, n, 4)]
    assert list(model.output_names) == ["classes", "boxes"]
    classes, boxes = infer(model, image_batch(SIZE, batch=1))
    assert classes.shape == (1, n, 3) and boxes.shape == (1, n, 4)
    assert np.isfinite(classes).all() and np.isfinite(boxes).all()
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    assert not {type(layer).__name__ for layer in model.layers} & FORBIDDEN
    info = model.detector_info
    assert info["type"] == kind and info["backbone"] == backbone and info["num_classes"] == 3
    assert len(info["levels"]) == (6 if kind in SOFTMAX else 5)
    assert info["anchors_per_location"] == (6 if kind in SOFTMAX else 9)
    assert info["score"] == ("softmax" if kind in SOFTMAX else "sigmoid")
    assert info["background_class"] == (0 if kind in SOFTMAX else None)
    assert info["box_coding"] == "torchvision" and info["anchor_format"] == "xyxy_pixels"
    assert info["box_weights"] == ((10.0, 10.0, 5.0, 5.0) if kind in SOFTMAX else (1.0, 1.0, 1.0, 1.0))
    _check_anchor_layout(model)


@pytest.mark.parametrize("kind", KINDS)
def test_detector_layers_are_prefixed(kind):
    backbone = create_model("squeezenet1_1", features_only=True, input_shape=(SIZE, SIZE, 3), weights=None)
    own = {layer.name for layer in backbone.layers}
    model = _build(kind, "squeezenet1_1")
    added = [layer.name for layer in model.layers if layer.name not in own]
    assert added and all(name.startswith(PREFIX[kind]) or name in OUTPUTS for name in added), added
    assert any(name.startswith(f"{PREFIX[kind]}c5_") for name in added)  # SqueezeNet's added stride-32 map


def test_retinanet_initial_biases():
    model = RetinaNet("mobilenet_v2_035", 5, input_shape=(SIZE, SIZE, 3), fpn_channels=16, num_convs=1)
    np.testing.assert_allclose(model.get_layer("retinanet_cls_logits").bias.numpy(), -math.log(99.0), rtol=1e-6)
    assert not np.any(model.get_layer("retinanet_box_reg").bias.numpy())
    assert model.get_layer("retinanet_cls_logits").bias.shape == (9 * 5,)
    logits = infer(model, image_batch(SIZE, batch=1))[0]
    assert abs(float(keras.ops.convert_to_numpy(keras.ops.sigmoid(logits)).mean()) - 0.01) < 0.005


@pytest.mark.parametrize("sizes", [[(3, 4), (2, 2)], [(3, 4), (2, 2), (2, 1), (1, 1), (1, 2), (1, 1)]])
def test_flattened_rows_follow_the_anchor_order(sizes):
    """A head row r holds the map value at the (level, y, x, anchor) the anchors put at row r (six
    levels are joined in groups: XNNPACK takes at most five inputs per concatenation)."""
    per_location, width = 6, 2
    inputs = [keras.Input((h, w, per_location * width)) for h, w in sizes]
    model = keras.Model(inputs, heads.flatten_levels(inputs, width, prefix="t", name="rows"))
    maps, expected_cells = [], []
    for level, (h, w) in enumerate(sizes):
        y, x, a = np.meshgrid(np.arange(h), np.arange(w), np.arange(per_location), indexing="ij")
        code = np.stack([level * 1000 + y * 10 + x, a], axis=-1).astype("float32")  # (h, w, A, 2)
        maps.append(code.reshape(1, h, w, per_location * width))
        expected_cells.append(np.stack([np.full(h * w, level), *np.divmod(np.arange(h * w), w)], axis=1))
    rows = infer(model, maps)[0]
    anchors = ssd_default_boxes(sizes, SIZE, [[2, 3]] * len(sizes))
    assert len(rows) == len(anchors)
    start = 0
    for level, (h, w) in enumerate(sizes):
        for cell in range(h * w):
            y, x = divmod(cell, w)
            block = slice(start + cell * per_location, start + (cell + 1) * per_location)
            np.testing.assert_array_equal(rows[block, 0], level * 1000 + y * 10 + x)
            np.testing.assert_array_equal(rows[block, 1], np.arange(per_location))
            centres = (anchors[block, :2] + anchors[block, 2:]) / 2
            np.testing.assert_allclose(centres, [[(x + 0.5) * SIZE / w, (y + 0.5) * SIZE / h]] * per_location,
                                       atol=1e-3)
        start += h * w * per_location


@pytest.mark.parametrize(("small", "large"), [(4, 7), (7, 15), (4, 8), (3, 5)])
def test_fpn_upsampling_matches_nearest_interpolation_to_the_lateral_size(small, large):
    """torchvision: ``interpolate(size=(H, W), mode="nearest")`` reads source row ``floor(i * h / H)``;
    ``upsample_nearest`` equals ``UpSampling2D(2, "nearest")`` on a non-square, multi-channel map."""
    inputs = keras.Input((small, small + 1, 3))
    doubled = heads.upsample_nearest(inputs, prefix="up")
    x = heads._match_axis(doubled, large, 1, prefix="h")
    x = heads._match_axis(x, large + 2, 2, prefix="w")
    values = np.arange(small * (small + 1) * 3, dtype="float32").reshape(1, small, small + 1, 3)
    twice, got = keras.Model(inputs, [doubled, x]).predict(values, verbose=0)
    np.testing.assert_array_equal(twice[0], values[0].repeat(2, axis=0).repeat(2, axis=1))
    rows, cols = (np.arange(large) * small) // large, (np.arange(large + 2) * (small + 1)) // (large + 2)
    np.testing.assert_array_equal(got[0], values[0][np.ix_(rows, cols)])


@pytest.mark.parametrize("kind", KINDS)
def test_tf_keras_agrees_and_keras_file_round_trips(kind, tmp_path):
    import tf_keras

    k3 = _build(kind, "mobilenet_v2_035")
    randomize_weights(k3, seed=3)
    tfk = _build(kind, "mobilenet_v2_035", flavour="tf_keras")
    assert isinstance(tfk, tf_keras.Model)
    assert [layer.name for layer in tfk.layers] == [layer.name for layer in k3.layers]
    assert not {type(layer).__name__ for layer in tfk.layers} & FORBIDDEN
    for layer in k3.layers:
        tfk.get_layer(layer.name).set_weights(layer.get_weights())
    np.testing.assert_array_equal(tfk.anchors, k3.anchors)
    assert tfk.detector_info == k3.detector_info
    images = image_batch(SIZE, batch=1)
    expected = infer(k3, images)
    for got, want in zip(infer(tfk, images), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)

    path = tmp_path / f"{kind}.keras"
    k3.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert list(loaded.output_names) == ["classes", "boxes"]
    for got, want in zip(infer(loaded, images), expected, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("builder", "arguments", "argument"),
    [
        (SSDLite, {"backbone": "no_such_net"}, "`backbone`"),
        (RetinaNet, {"backbone": 3}, "`backbone`"),
        (SSDLite, {"num_classes": 0}, "`num_classes`"),
        (RetinaNet, {"num_classes": 2.5}, "`num_classes`"),
        (SSDLite, {"input_shape": (16, 16, 3)}, "`input_shape`"),
        (RetinaNet, {"input_shape": (None, None, 3)}, "`input_shape`"),
        (SSDLite, {"input_shape": (128, 128)}, "`input_shape`"),
        (SSDLite, {"flavour": "torch"}, "`flavour`"),
        (SSDLite, {"anchors_per_location": 5}, "`anchors_per_location`"),
        (SSDLite, {"width": 0}, "`width`"),
        (RetinaNet, {"fpn_channels": 0}, "`fpn_channels`"),
        (RetinaNet, {"num_convs": -1}, "`num_convs`"),
        (RetinaNet, {"prior_probability": 1.0}, "`prior_probability`"),
        (RetinaNet, {"anchor_size": 0}, "`anchor_size`"),
        (SSD, {"width": float("nan")}, "`width`"),
        (SSD, {"anchors_per_location": 9}, "`anchors_per_location`"),
        (SSD, {"input_shape": (31, 64, 3)}, "`input_shape`"),
    ],
)
def test_bad_arguments_name_the_argument(builder, arguments, argument):
    kwargs = {"backbone": "mobilenet_v2_035", "num_classes": 3, "input_shape": (SIZE, SIZE, 3), **arguments}
    with pytest.raises(InputError, match=argument) as caught:
        builder(**kwargs)
    if argument == "`backbone`":
        assert "list_models()" in str(caught.value)


def test_ssd_extras_and_heads_are_classic():
    """Extras: 1x1 conv + ReLU, 3x3/s2 conv + ReLU with bias and no BatchNorm; heads: one 3x3 conv."""
    model = SSD("mobilenet_v2_035", 4, input_shape=(SIZE, SIZE, 3))
    added = [layer for layer in model.layers if layer.name.startswith("ssd_")]
    assert not [layer.name for layer in added if "BatchNormalization" in type(layer).__name__]
    first = model.get_layer("ssd_extra0_conv")
    assert first.strides == (2, 2) and first.kernel_size == (3, 3) and first.use_bias
    assert model.get_layer("ssd_extra0_reduce").filters == 256 and first.filters == 512
    head = model.get_layer("ssd_cls0")
    assert head.kernel_size == (3, 3) and head.filters == 6 * 4


def test_detection_package_imports_no_keras():
    code = "import keras_lightnets.detection, sys; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize(
    ("kind", "preset"),
    [("ssdlite", "ssdlite320_mobilenet_v3_large"), ("retinanet", "retinanet_mobilenet_v3_large_fpn")],
)
def test_default_input_gives_torchvision_anchors(kind, preset):
    """At 320x320 on MobileNetV3-Large the levels and anchors are torchvision's (3234 / 19206 boxes)."""
    from keras_lightnets.detection import preset_anchors

    if kind == "ssdlite":
        model = SSDLite("mobilenet_v3_large_075", 2, width=0.25)
    else:
        model = RetinaNet("mobilenet_v3_large_075", 2, fpn_channels=8, num_convs=1)
    np.testing.assert_array_equal(model.anchors, preset_anchors(preset))
    assert model.outputs[0].shape[1] == len(model.anchors)


def test_retinanet_anchor_size_scales_every_level():
    """``anchor_size`` halves every anchor side (torchvision's integer sides at 16 and 32 alike); the
    anchor centres and count stay."""
    from keras_lightnets.detection.builders import RETINANET_SIZES, retinanet_sizes

    assert retinanet_sizes(32) == RETINANET_SIZES
    assert retinanet_sizes(16)[1:] == RETINANET_SIZES[:-1] and retinanet_sizes(16)[0] == (16, 20, 25)
    wide, small = (RetinaNet("mobilenet_v2_035", 2, input_shape=(SIZE, SIZE, 3), fpn_channels=8, num_convs=1,
                             anchor_size=a) for a in (32, 16))
    assert small.detector_info["anchor_size"] == 16 and wide.detector_info["anchor_size"] == 32
    np.testing.assert_allclose((small.anchors[:, :2] + small.anchors[:, 2:]) / 2,
                               (wide.anchors[:, :2] + wide.anchors[:, 2:]) / 2, atol=0.5)
    sides = small.anchors[:, 2:] - small.anchors[:, :2]
    np.testing.assert_allclose(sides[:9], (wide.anchors[:9, 2:] - wide.anchors[:9, :2]) / 2, atol=1.0)
