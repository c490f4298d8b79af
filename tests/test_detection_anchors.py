"""Detection anchors/priors and box coding (``keras_lightnets.detection``), NumPy only.

* Each preset's anchors equal the reference's (``shared/reference/torchvision_detection/*/anchors.npy``,
  ``shared/reference/pytorch_ssd/mb2_ssd_lite/priors.npy``), in count, order and value.
* Hand-computed anchors: order (level, row-major y outer / x inner, boxes of a location),
  rectangles, strides, rounding, clipping, the aspect-ratio conventions.
* Box coding in both conventions: hand-computed deltas, encode -> decode round trips,
  zero deltas decode to the anchors, torchvision's dw/dh clamp, broadcasting, dtypes.
* Every bad argument is an ``InputError`` naming the argument.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_lightnets.detection import (
    BBOX_XFORM_CLIP,
    PRESET_ANCHORS,
    RETINANET_WEIGHTS,
    SSD_WEIGHTS,
    cxcywh_to_xyxy,
    decode_ssd,
    decode_torchvision,
    encode_ssd,
    encode_torchvision,
    preset_anchors,
    retinanet_anchors,
    ssd_default_boxes,
    ssd_priors,
    xyxy_to_cxcywh,
)
from keras_lightnets.errors import InputError

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
needs_reference = pytest.mark.skipif(not REFERENCE.is_dir(), reason=f"no reference vectors in {REFERENCE}")

# preset -> (reference file, anchor count)
PRESETS = {
    "ssdlite320_mobilenet_v3_large": ("torchvision_detection/ssdlite320_mobilenet_v3_large/anchors.npy", 3234),
    "retinanet_mobilenet_v3_large_fpn": ("torchvision_detection/retinanet_mobilenet_v3_large_fpn/anchors.npy", 19206),
    "mb2_ssd_lite": ("pytorch_ssd/mb2_ssd_lite/priors.npy", 3000),
}


# ----------------------------------------------------------------------------- presets vs the references


def test_the_presets_are_the_references_and_mb1_ssd_shares_mb2s_priors():
    assert sorted(PRESET_ANCHORS) == sorted([*PRESETS, "mb1_ssd"])
    # pytorch-ssd's MobileNetV1-SSD and MobileNetV2-SSD-Lite both read mobilenetv1_ssd_config's priors.
    np.testing.assert_array_equal(preset_anchors("mb1_ssd"), preset_anchors("mb2_ssd_lite"))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_anchor_count(name):
    anchors = preset_anchors(name)
    assert anchors.shape == (PRESETS[name][1], 4)
    assert anchors.dtype == np.float32


@needs_reference
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_anchors_equal_the_reference(name):
    want = np.load(REFERENCE / PRESETS[name][0])
    got = preset_anchors(name)
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) / np.max(np.abs(want)) <= 1e-4


def test_preset_anchors_from_the_table_match_preset_anchors():
    preset = PRESET_ANCHORS["mb2_ssd_lite"]
    assert preset.box_format == "cxcywh relative"
    np.testing.assert_array_equal(preset.anchors(), preset_anchors("mb2_ssd_lite"))


def test_an_unknown_preset_lists_the_known_names():
    with pytest.raises(InputError, match="name") as info:
        preset_anchors("ssd300_vgg16")
    for name in PRESETS:
        assert name in str(info.value)


def test_importing_detection_imports_no_tensorflow_or_keras():
    code = ("import sys, keras_lightnets.detection; "
            "print(sorted({'tensorflow', 'keras', 'tf_keras'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- hand-computed anchors


def test_ssdlite_first_location_by_hand():
    boxes = preset_anchors("ssdlite320_mobilenet_v3_large")
    # 20x20 grid on 320 px: the first centre is at 8 px; scale 0.2 -> 64 px; s' = sqrt(0.2 * 0.35).
    np.testing.assert_allclose(boxes[0], [-24, -24, 40, 40], atol=1e-4)
    half = 0.5 * math.sqrt(0.2 * 0.35) * 320
    np.testing.assert_allclose(boxes[1], [8 - half, 8 - half, 8 + half, 8 + half], atol=1e-4)
    # ratio 2 is width / height: the third box is twice as wide as tall, the fourth the other way round.
    w, h = 64 * math.sqrt(2), 64 / math.sqrt(2)
    np.testing.assert_allclose(boxes[2], [8 - w / 2, 8 - h / 2, 8 + w / 2, 8 + h / 2], atol=1e-4)
    np.testing.assert_allclose(boxes[3], [8 - h / 2, 8 - w / 2, 8 + h / 2, 8 + w / 2], atol=1e-4)
    # the next location (6 boxes later) is one cell to the right (x inner): 16 px.
    np.testing.assert_allclose(boxes[6], [-8, -24, 56, 40], atol=1e-4)
    # the last level (1x1, scale 0.95, s' = sqrt(0.95 * 1.0)): its 1.34 x 0.67 boxes are clipped to 1 x 0.67.
    np.testing.assert_allclose(boxes[-1, [1, 3]], [0, 320], atol=1e-4)


def test_ssd_default_boxes_on_a_rectangle_by_hand():
    # grid (height 2, width 3) on a (20, 30) image, one scale 0.5 (plus s' = 0.5): w = 15 px, h = 10 px.
    boxes = ssd_default_boxes([(2, 3)], (20, 30), [[]], scales=[0.5, 0.5])
    centres = [(5, 5), (15, 5), (25, 5), (5, 15), (15, 15), (25, 15)]  # y outer, x inner
    want = [[x - 7.5, y - 5, x + 7.5, y + 5] for x, y in centres for _ in range(2)]
    np.testing.assert_allclose(boxes, want, atol=1e-5)


def test_ssd_default_boxes_scales_for_one_level_are_min_and_max():
    boxes = ssd_default_boxes([1], 100, [[]], min_ratio=0.2, max_ratio=0.8)
    side = math.sqrt(0.2 * 0.8) * 100
    np.testing.assert_allclose(boxes, [[40, 40, 60, 60], [50 - side / 2, 50 - side / 2, 50 + side / 2, 50 + side / 2]],
                               atol=1e-4)


def test_ssd_default_boxes_clip_the_size_not_the_box():
    clipped = ssd_default_boxes([2], 100, [[]], scales=[1.5, 2.0])
    np.testing.assert_allclose(clipped[0], [-25, -25, 75, 75], atol=1e-4)  # 150 % -> 100 %, centred at 25 px
    unclipped = ssd_default_boxes([2], 100, [[]], scales=[1.5, 2.0], clip=False)
    np.testing.assert_allclose(unclipped[0], [-50, -50, 100, 100], atol=1e-4)


def test_retinanet_first_location_by_hand():
    anchors = preset_anchors("retinanet_mobilenet_v3_large_fpn")
    # ratio 0.5 is height / width: w = 32 / sqrt(0.5) = 45.25 -> half 22.6 -> 23; h half 11.3 -> 11.
    np.testing.assert_array_equal(anchors[0], [-23, -11, 23, 11])
    np.testing.assert_array_equal(anchors[3], [-16, -16, 16, 16])  # ratio-major: ratio 1, size 32 is 4th
    np.testing.assert_array_equal(anchors[9], [-23 + 8, -11, 23 + 8, 11])  # next location: stride 8 to the right
    # P7 is 3x3 on 320 px: stride 320 // 3 = 106; the last anchor sits at (212, 212).
    last = anchors[-1]
    assert (last[0] + last[2]) / 2 == 212 and (last[1] + last[3]) / 2 == 212


def test_retinanet_anchors_on_a_rectangle_round_half_to_even():
    # size 5, ratio 1: half side 2.5 rounds to 2 (torch.round is half to even); stride (100 // 3, 64 // 2).
    anchors = retinanet_anchors([(2, 3)], (64, 100), [[5]], [1.0])
    shifts = [(x, y) for y in (0, 32) for x in (0, 33, 66)]
    np.testing.assert_array_equal(anchors, [[x - 2, y - 2, x + 2, y + 2] for x, y in shifts])


def test_retinanet_per_level_ratios_and_bare_sizes():
    anchors = retinanet_anchors([1, 1], 64, [16, 32], [[1.0], [4.0, 1.0]])
    np.testing.assert_array_equal(anchors, [[-8, -8, 8, 8], [-8, -32, 8, 32], [-16, -16, 16, 16]])


def test_ssd_priors_use_the_shrinkage_not_the_grid():
    priors = preset_anchors("mb2_ssd_lite")
    np.testing.assert_allclose(priors[0], [0.5 * 16 / 300, 0.5 * 16 / 300, 0.2, 0.2], rtol=1e-6)
    np.testing.assert_allclose(priors[1, 2:], [math.sqrt(60 * 105) / 300] * 2, rtol=1e-6)
    np.testing.assert_allclose(priors[2, 2:], [0.2 * math.sqrt(2), 0.2 / math.sqrt(2)], rtol=1e-6)
    # last cell of the 19x19 level: 18.5 * 16 / 300 = 0.98667 (not 18.5 / 19 = 0.97368).
    last = 19 * 19 * 6 - 1
    np.testing.assert_allclose(priors[last - 5, :2], [18.5 * 16 / 300] * 2, rtol=1e-6)
    # row-major: prior 6 is the next cell in x.
    np.testing.assert_allclose(priors[6, :2], [1.5 * 16 / 300, 0.5 * 16 / 300], rtol=1e-6)


def test_ssd_priors_clamp():
    clamped = ssd_priors([1], [100], [(150, 200)], [[]], 100)
    np.testing.assert_allclose(clamped[0], [0.5, 0.5, 1.0, 1.0])
    unclamped = ssd_priors([1], [100], [(150, 200)], [[]], 100, clamp=False)
    np.testing.assert_allclose(unclamped[0], [0.5, 0.5, 1.5, 1.5])


# ----------------------------------------------------------------------------- box coding by hand


def test_torchvision_encode_by_hand():
    anchor = [0, 0, 10, 20]  # centre (5, 10), 10 x 20
    box = [1, 2, 13, 22]  # centre (7, 12), 12 x 20
    np.testing.assert_allclose(encode_torchvision(box, anchor, SSD_WEIGHTS), [2.0, 1.0, 5 * math.log(1.2), 0.0],
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(encode_torchvision(box, anchor, RETINANET_WEIGHTS), [0.2, 0.1, math.log(1.2), 0.0],
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(decode_torchvision([2.0, 1.0, 5 * math.log(1.2), 0.0], anchor, SSD_WEIGHTS), box,
                               atol=1e-5)


def test_ssd_encode_by_hand():
    prior = [0.5, 0.5, 0.2, 0.4]
    box = [0.52, 0.46, 0.3, 0.4]
    np.testing.assert_allclose(encode_ssd(box, prior), [1.0, -1.0, math.log(1.5) / 0.2, 0.0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(decode_ssd([1.0, -1.0, math.log(1.5) / 0.2, 0.0], prior), box, atol=1e-6)
    np.testing.assert_allclose(encode_ssd(box, prior, center_variance=0.2, size_variance=0.5),
                               [0.5, -0.5, math.log(1.5) / 0.5, 0.0], rtol=1e-5, atol=1e-6)


def test_corner_and_centre_forms():
    np.testing.assert_allclose(xyxy_to_cxcywh([[1, 2, 13, 22]]), [[7, 12, 12, 20]])
    np.testing.assert_allclose(cxcywh_to_xyxy([[7, 12, 12, 20]]), [[1, 2, 13, 22]])


def test_the_dw_clamp():
    anchor = np.array([0, 0, 16, 16], dtype=np.float32)
    # dw, dh = 100 exceed log(1000 / 16): the box is 1000 px, centred on the anchor's centre (8, 8).
    np.testing.assert_allclose(decode_torchvision([0, 0, 100, 100], anchor, RETINANET_WEIGHTS),
                               [-492, -492, 508, 508], rtol=1e-5)
    # the clamp applies after dividing by the weights: 5 * 100 / 5 is clamped the same way.
    np.testing.assert_allclose(decode_torchvision([0, 0, 500, 500], anchor, SSD_WEIGHTS),
                               [-492, -492, 508, 508], rtol=1e-5)
    # below the clamp nothing changes: log 2 doubles the width.
    np.testing.assert_allclose(decode_torchvision([0, 0, math.log(2), 0], anchor, RETINANET_WEIGHTS),
                               [-8, 0, 24, 16], atol=1e-5)
    # a custom clip
    np.testing.assert_allclose(decode_torchvision([0, 0, 5, 0], anchor, RETINANET_WEIGHTS, clip=math.log(2)),
                               [-8, 0, 24, 16], atol=1e-5)
    assert math.isclose(BBOX_XFORM_CLIP, math.log(62.5))


# ----------------------------------------------------------------------------- round trips


def _random_xyxy(rng, n: int) -> np.ndarray:
    corner = rng.uniform(-20, 300, (n, 2))
    return np.concatenate([corner, corner + rng.uniform(1, 200, (n, 2))], axis=1)


@pytest.mark.parametrize("name, weights", [
    ("ssdlite320_mobilenet_v3_large", SSD_WEIGHTS), ("retinanet_mobilenet_v3_large_fpn", RETINANET_WEIGHTS),
])
def test_torchvision_round_trip(name, weights):
    rng = np.random.default_rng(1)
    anchors = preset_anchors(name)
    boxes = _random_xyxy(rng, len(anchors))
    deltas = encode_torchvision(boxes, anchors, weights)
    assert deltas.dtype == np.float64 and deltas.shape == anchors.shape
    np.testing.assert_allclose(decode_torchvision(deltas, anchors, weights), boxes, rtol=0, atol=1e-4)
    boxes32 = boxes.astype(np.float32)
    decoded32 = decode_torchvision(encode_torchvision(boxes32, anchors, weights), anchors, weights)
    assert decoded32.dtype == np.float32
    np.testing.assert_allclose(decoded32, boxes32, rtol=1e-5, atol=1e-4)


def test_ssd_round_trip():
    rng = np.random.default_rng(2)
    priors = preset_anchors("mb2_ssd_lite")
    boxes = np.concatenate([rng.uniform(0, 1, (len(priors), 2)), rng.uniform(0.01, 1, (len(priors), 2))], axis=1)
    locations = encode_ssd(boxes, priors)
    assert locations.dtype == np.float64
    np.testing.assert_allclose(decode_ssd(locations, priors), boxes, rtol=0, atol=1e-6)
    boxes32 = boxes.astype(np.float32)
    decoded32 = decode_ssd(encode_ssd(boxes32, priors), priors)
    assert decoded32.dtype == np.float32
    np.testing.assert_allclose(decoded32, boxes32, rtol=0, atol=1e-6)


def test_zero_deltas_decode_to_the_anchors():
    anchors = preset_anchors("ssdlite320_mobilenet_v3_large")
    np.testing.assert_allclose(decode_torchvision(np.zeros_like(anchors), anchors, SSD_WEIGHTS), anchors, atol=1e-4)
    priors = preset_anchors("mb2_ssd_lite")
    np.testing.assert_array_equal(decode_ssd(np.zeros_like(priors), priors), priors)


def test_decoding_broadcasts_over_a_batch():
    rng = np.random.default_rng(3)
    anchors = preset_anchors("retinanet_mobilenet_v3_large_fpn")[:50]
    deltas = rng.normal(0, 0.5, (2, 50, 4)).astype(np.float32)
    boxes = decode_torchvision(deltas, anchors, RETINANET_WEIGHTS)
    assert boxes.shape == (2, 50, 4)
    np.testing.assert_array_equal(boxes[1], decode_torchvision(deltas[1], anchors, RETINANET_WEIGHTS))
    priors = preset_anchors("mb2_ssd_lite")[:50]
    assert decode_ssd(deltas, priors).shape == (2, 50, 4)


# ----------------------------------------------------------------------------- bad arguments

SSD_OK = {"feature_sizes": [4, 2], "image_size": 64, "aspect_ratios": [[2], [2, 3]]}
RETINA_OK = {"feature_sizes": [4, 2], "image_size": 64, "sizes": [[16], [32, 40]]}
PRIORS_OK = {"feature_sizes": [4, 2], "shrinkages": [16, 32], "box_sizes": [(10, 20), (20, 30)],
             "aspect_ratios": [[2], []], "image_size": 64}


@pytest.mark.parametrize("function, good, bad, argument", [
    (ssd_default_boxes, SSD_OK, {"feature_sizes": []}, "feature_sizes"),
    (ssd_default_boxes, SSD_OK, {"feature_sizes": [4, 0]}, "feature_sizes[1]"),
    (ssd_default_boxes, SSD_OK, {"feature_sizes": [4.0, 2]}, "feature_sizes[0]"),
    (ssd_default_boxes, SSD_OK, {"feature_sizes": [4, (2, 2, 2)]}, "feature_sizes[1]"),
    (ssd_default_boxes, SSD_OK, {"feature_sizes": 4}, "feature_sizes"),
    (ssd_default_boxes, SSD_OK, {"image_size": 0}, "image_size"),
    (ssd_default_boxes, SSD_OK, {"image_size": (64, -1)}, "image_size"),
    (ssd_default_boxes, SSD_OK, {"aspect_ratios": [[2]]}, "aspect_ratios"),
    (ssd_default_boxes, SSD_OK, {"aspect_ratios": [[2], [0]]}, "aspect_ratios[1][0]"),
    (ssd_default_boxes, SSD_OK, {"aspect_ratios": [[-2], [3]]}, "aspect_ratios[0][0]"),
    (ssd_default_boxes, SSD_OK, {"min_ratio": 0.9, "max_ratio": 0.2}, "min_ratio"),
    (ssd_default_boxes, SSD_OK, {"min_ratio": 0.5, "max_ratio": 0.5}, "max_ratio"),
    (ssd_default_boxes, SSD_OK, {"min_ratio": 0.0}, "min_ratio"),
    (ssd_default_boxes, SSD_OK, {"scales": [0.2, 0.5]}, "scales"),
    (ssd_default_boxes, SSD_OK, {"scales": [0.2, 0.5, -1]}, "scales[2]"),
    (ssd_default_boxes, SSD_OK, {"clip": "yes"}, "clip"),
    (retinanet_anchors, RETINA_OK, {"feature_sizes": []}, "feature_sizes"),
    (retinanet_anchors, RETINA_OK, {"feature_sizes": [4, 2.5]}, "feature_sizes[1]"),
    (retinanet_anchors, RETINA_OK, {"feature_sizes": [4, 128]}, "feature_sizes[1]"),
    (retinanet_anchors, RETINA_OK, {"image_size": -64}, "image_size"),
    (retinanet_anchors, RETINA_OK, {"sizes": [[16]]}, "sizes"),
    (retinanet_anchors, RETINA_OK, {"sizes": [[16], []]}, "sizes[1]"),
    (retinanet_anchors, RETINA_OK, {"sizes": [[16], [0, 40]]}, "sizes[1][0]"),
    (retinanet_anchors, RETINA_OK, {"aspect_ratios": []}, "aspect_ratios"),
    (retinanet_anchors, RETINA_OK, {"aspect_ratios": [0.5, -1.0]}, "aspect_ratios[1]"),
    (retinanet_anchors, RETINA_OK, {"aspect_ratios": [[0.5], [1.0], [2.0]]}, "aspect_ratios"),
    (ssd_priors, PRIORS_OK, {"feature_sizes": []}, "feature_sizes"),
    (ssd_priors, PRIORS_OK, {"feature_sizes": [4, 2.0]}, "feature_sizes[1]"),
    (ssd_priors, PRIORS_OK, {"shrinkages": [16]}, "shrinkages"),
    (ssd_priors, PRIORS_OK, {"shrinkages": [16, 0]}, "shrinkages[1]"),
    (ssd_priors, PRIORS_OK, {"box_sizes": [(10, 20), (20,)]}, "box_sizes[1]"),
    (ssd_priors, PRIORS_OK, {"box_sizes": [(10, 20), (20, -30)]}, "box_sizes[1][1]"),
    (ssd_priors, PRIORS_OK, {"aspect_ratios": [[2], [0.0]]}, "aspect_ratios[1][0]"),
    (ssd_priors, PRIORS_OK, {"image_size": 0}, "image_size"),
    (ssd_priors, PRIORS_OK, {"image_size": (64, 64)}, "image_size"),
    (ssd_priors, PRIORS_OK, {"clamp": 1}, "clamp"),
])
def test_bad_anchor_arguments(function, good, bad, argument):
    function(**good)  # the good arguments work: the error below is the bad one's
    with pytest.raises(InputError) as info:
        function(**{**good, **bad})
    assert f"`{argument}`" in str(info.value)


BOX = [[0.0, 0.0, 10.0, 20.0]]


@pytest.mark.parametrize("call, argument", [
    (lambda: encode_torchvision([[0, 0, 1]], BOX, SSD_WEIGHTS), "boxes_xyxy"),
    (lambda: encode_torchvision(BOX, [["a", "b", "c", "d"]], SSD_WEIGHTS), "anchors_xyxy"),
    (lambda: encode_torchvision(np.zeros((3, 4)), np.zeros((2, 4)), SSD_WEIGHTS), "boxes_xyxy"),
    (lambda: encode_torchvision(BOX, BOX, (10, 10, 5)), "weights"),
    (lambda: encode_torchvision(BOX, BOX, (10, 10, 5, 0)), "weights[3]"),
    (lambda: decode_torchvision(BOX, BOX, "1111"), "weights"),
    (lambda: decode_torchvision(np.zeros((2, 3, 4)), np.zeros((2, 4)), SSD_WEIGHTS), "deltas"),
    (lambda: decode_torchvision(BOX, BOX, SSD_WEIGHTS, clip=0), "clip"),
    (lambda: encode_ssd(BOX, [[0.5, 0.5, 0.2]]), "priors_cxcywh"),
    (lambda: encode_ssd(BOX, BOX, center_variance=0), "center_variance"),
    (lambda: decode_ssd(BOX, BOX, size_variance=-0.2), "size_variance"),
    (lambda: decode_ssd(5.0, BOX), "locations"),
    (lambda: xyxy_to_cxcywh([1, 2, 3]), "boxes"),
])
def test_bad_box_coding_arguments(call, argument):
    with pytest.raises(InputError) as info:
        call()
    assert f"`{argument}`" in str(info.value)
