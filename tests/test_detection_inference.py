"""Detection post-processing: the ``DecodeBoxes``, ``ClassScores`` and ``NonMaxSuppression`` layers
against NumPy, and ``detection.inference.inference_model`` on small generic detectors.

``DecodeBoxes`` against ``box_coding``'s NumPy decoders (both codings, both anchor formats);
``NonMaxSuppression`` against ``non_max_suppression_numpy`` bit for bit on random inputs with
overlapping boxes and tied scores, plus hand-made cases for each rule (threshold, IoU boundary,
order of equal scores, padding); the inference model of SSDLite and RetinaNet in both flavours
(outputs, names, ``postprocess_numpy``, saving and safe loading).
"""

from __future__ import annotations

import math
import re

import keras
import numpy as np
import pytest
from helpers import randomize_weights

from keras_lightnets import _backend
from keras_lightnets.detection import RetinaNet, SSDLite, box_coding
from keras_lightnets.detection.inference import (
    OUTPUT_NAMES,
    class_scores_numpy,
    decode_boxes_numpy,
    inference_model,
    non_max_suppression_numpy,
    postprocess_numpy,
)
from keras_lightnets.errors import InputError
from keras_lightnets.layers import get_layer_class, mixins
from keras_lightnets.model_files import load_model_file

FLAVOURS = [pytest.param("keras", id="keras3"), pytest.param("tf_keras", id="tf_keras")]
SIZE = 64
BACKBONE = "mobilenet_v1_025"  # the smallest registry backbone


def _numpy(tensor) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(tensor)) if not hasattr(tensor, "numpy") else tensor.numpy()


def _layer(flavour: str, name: str, **kwargs):
    return get_layer_class(name, flavour)(**kwargs)


def _random_boxes(rng, shape, low=0.0, high=100.0, size=(5.0, 40.0)) -> np.ndarray:
    xy = rng.uniform(low, high, (*shape, 2))
    wh = rng.uniform(*size, (*shape, 2))
    return np.concatenate([xy, xy + wh], -1).astype("float32")


def _nms(flavour: str, boxes, scores, **kwargs):
    outputs = _layer(flavour, "NonMaxSuppression", **kwargs)([boxes, scores])
    return [_numpy(o) for o in outputs]


def _assert_same_detections(got, expected) -> None:
    names = ("boxes", "scores", "classes", "count")
    for name, a, b in zip(names, got, expected, strict=True):
        assert a.dtype == b.dtype, name
        np.testing.assert_array_equal(a, b, err_msg=name)


# --------------------------------------------------------------------------- DecodeBoxes


def _anchors(rng, fmt: str, n: int, image_size) -> np.ndarray:
    height, width = image_size
    if fmt == "xyxy_pixels":
        return _random_boxes(rng, (n,), -10.0, min(height, width), (4.0, 50.0))
    centre = rng.uniform(0.0, 1.0, (n, 2))
    size = rng.uniform(0.05, 0.6, (n, 2))
    return np.concatenate([centre, size], -1).astype("float32")


def _decode_reference(deltas, anchors, coding: str, fmt: str, image_size, clip: bool) -> np.ndarray:
    """``box_coding``'s decoders on anchors converted to the coding's format, in pixels."""
    height, width = image_size
    size = np.float32([width, height, width, height])
    if coding == "torchvision":
        xyxy = anchors if fmt == "xyxy_pixels" else box_coding.cxcywh_to_xyxy(anchors) * size
        boxes = box_coding.decode_torchvision(deltas, xyxy, box_coding.SSD_WEIGHTS)
    else:
        priors = box_coding.xyxy_to_cxcywh(anchors) / size if fmt == "xyxy_pixels" else anchors
        boxes = box_coding.cxcywh_to_xyxy(box_coding.decode_ssd(deltas, priors, 0.1, 0.2)) * size
    if clip:
        boxes = np.clip(boxes, 0, size)
    return boxes.astype("float32")


def _coding_arguments(coding: str) -> dict:
    if coding == "torchvision":
        return {"box_coding": "torchvision", "box_weights": box_coding.SSD_WEIGHTS}
    return {"box_coding": "ssd", "variances": (0.1, 0.2)}


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("coding", ["torchvision", "ssd"])
@pytest.mark.parametrize("fmt", ["xyxy_pixels", "cxcywh_relative"])
@pytest.mark.parametrize("clip", [False, True], ids=["unclipped", "clipped"])
def test_decode_boxes_equals_box_coding(flavour, coding, fmt, clip):
    rng = np.random.default_rng(len(coding) + len(fmt))
    image_size = (48, 80)
    anchors = _anchors(rng, fmt, 60, image_size)
    deltas = rng.normal(0.0, 1.5, (2, 60, 4)).astype("float32")
    deltas[0, :3, 2:] = 40.0  # torchvision clamps dw/dh at log(1000/16) before exp
    layer = _layer(flavour, "DecodeBoxes", **_coding_arguments(coding), anchor_format=fmt, image_size=image_size,
                   clip=clip, anchors=anchors)
    got = _numpy(layer(deltas))
    expected = _decode_reference(deltas, anchors, coding, fmt, image_size, clip)
    assert got.shape == (2, 60, 4) and got.dtype == np.float32 and np.isfinite(got).all()
    # The same operations in the same order: only the flavour's exp may round differently (1 ulp).
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=2e-5)
    np.testing.assert_array_equal(
        expected, decode_boxes_numpy(deltas, anchors, **_coding_arguments(coding), anchor_format=fmt,
                                     image_size=image_size, clip=clip))
    # Without exp's rounding (zero size deltas: exp(0) = 1) the layer is bit for bit box_coding.
    centred = deltas.copy()
    centred[..., 2:] = 0.0
    np.testing.assert_array_equal(_numpy(layer(centred)),
                                  _decode_reference(centred, anchors, coding, fmt, image_size, clip))
    if coding == "torchvision" and not clip and fmt == "xyxy_pixels":
        widths = got[0, :3, 2] - got[0, :3, 0]
        np.testing.assert_allclose(widths, (anchors[:3, 2] - anchors[:3, 0]) * 1000 / 16, rtol=1e-5)
    if clip:
        assert got.min() >= 0 and got[..., 0::2].max() <= 80 and got[..., 1::2].max() <= 48


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_decode_boxes_anchors_are_a_weight_not_config(flavour):
    rng = np.random.default_rng(3)
    anchors = _random_boxes(rng, (10,))
    layer = _layer(flavour, "DecodeBoxes", **_coding_arguments("torchvision"), image_size=(64, 64), anchors=anchors)
    deltas = rng.normal(0, 1, (1, 10, 4)).astype("float32")
    expected = _numpy(layer(deltas))
    assert [w.name.split("/")[-1].split(":")[0] for w in layer.weights] == ["anchors"]
    assert not layer.trainable_weights and len(layer.non_trainable_weights) == 1
    np.testing.assert_array_equal(_numpy(layer.weights[0]), anchors)
    config = layer.get_config()
    assert config["box_weights"] == [10.0, 10.0, 5.0, 5.0] and config["variances"] is None
    assert config["image_size"] == [64, 64] and config["clip"] is True and "anchors" not in config
    clone = type(layer).from_config(config)
    clone(deltas)  # builds zero anchors: the file's weights fill them
    assert not _numpy(clone.weights[0]).any()
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(_numpy(clone(deltas)), expected)
    with pytest.raises(ValueError, match="the input has 9 rows but `anchors` holds 10 anchors"):
        _layer(flavour, "DecodeBoxes", **_coding_arguments("torchvision"), image_size=(64, 64),
               anchors=anchors)(np.zeros((1, 9, 4), "float32"))


def test_the_layers_clip_is_box_codings():
    assert mixins.BBOX_XFORM_CLIP == box_coding.BBOX_XFORM_CLIP == math.log(1000 / 16)


@pytest.mark.parametrize("kwargs, message", [
    ({"box_coding": "yolo", "box_weights": (1, 1, 1, 1)}, "`box_coding` must be one of 'torchvision', 'ssd'"),
    ({"box_weights": (1, 1, 1)}, "`box_weights` must be four numbers > 0"),
    ({"box_weights": None}, "`box_weights` must be four numbers > 0"),
    ({"box_weights": (1, 1, 0, 1)}, "`box_weights[2]` must be a finite number > 0"),
    ({"box_weights": (1, 1, 1, 1), "variances": (0.1, 0.2)}, "`variances` is for box_coding='ssd' only"),
    ({"box_coding": "ssd", "variances": (0.1,)}, "`variances` must be two numbers > 0"),
    ({"box_coding": "ssd", "variances": (0.1, 0.2), "box_weights": (1, 1, 1, 1)},
     "`box_weights` is for box_coding='torchvision' only"),
    ({"box_weights": (1, 1, 1, 1), "anchor_format": "xywh"}, "`anchor_format` must be one of 'xyxy_pixels'"),
    ({"box_weights": (1, 1, 1, 1), "image_size": 64}, "`image_size` must be (height, width) in pixels"),
    ({"box_weights": (1, 1, 1, 1), "image_size": (64, 0)}, "`image_size` must be (height, width) in pixels"),
    ({"box_weights": (1, 1, 1, 1), "clip": 1}, "`clip` must be True or False"),
    ({"box_weights": (1, 1, 1, 1), "anchors": np.zeros((4, 3))}, "`anchors` must be a numeric array of shape (N, 4)"),
])
def test_decode_boxes_arguments(kwargs, message):
    kwargs = {"image_size": (64, 64), **kwargs}
    with pytest.raises(InputError, match=f"^{re.escape(message)}"):
        _layer("keras", "DecodeBoxes", **kwargs)


# --------------------------------------------------------------------------- ClassScores


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("score, background, columns", [
    ("softmax", 0, [1, 2, 3, 4]), ("softmax", 2, [0, 1, 3, 4]), ("softmax", None, [0, 1, 2, 3, 4]),
    ("sigmoid", None, [0, 1, 2, 3, 4]), ("sigmoid", 4, [0, 1, 2, 3]),
])
def test_class_scores(flavour, score, background, columns):
    logits = np.random.default_rng(5).normal(0, 3, (2, 7, 5)).astype("float32")
    layer = _layer(flavour, "ClassScores", score=score, background_class=background)
    got = _numpy(layer(logits))
    if score == "softmax":
        full = np.exp(logits.astype("float64")) / np.exp(logits.astype("float64")).sum(-1, keepdims=True)
    else:
        full = 1 / (1 + np.exp(-logits.astype("float64")))
    np.testing.assert_allclose(got, full[..., columns], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got, class_scores_numpy(logits, score, background), rtol=1e-6, atol=1e-7)
    assert layer.compute_output_shape((None, 7, 5)) == (None, 7, len(columns))


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_class_scores_arguments(flavour):
    with pytest.raises(InputError, match="`score` must be one of 'softmax', 'sigmoid'; received score='relu'"):
        _layer(flavour, "ClassScores", score="relu")
    with pytest.raises(InputError, match="`background_class` must be None or the column"):
        _layer(flavour, "ClassScores", background_class=-1)
    with pytest.raises(ValueError, match="more than background_class=5 columns"):
        _layer(flavour, "ClassScores", background_class=5)(np.zeros((1, 3, 5), "float32"))


# --------------------------------------------------------------------------- NonMaxSuppression


def _clustered_case(seed: int, batch=2, rows=120, classes=4):
    """Boxes in a few tight clusters (much overlap; integer corners, so that some IoUs are exactly a
    threshold) and scores with many exact ties."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(20, 80, (batch, 6, 2))
    pick = rng.integers(0, 6, (batch, rows))
    centre = np.take_along_axis(centres, pick[..., None], 1) + rng.normal(0, 4, (batch, rows, 2))
    half = rng.uniform(4, 15, (batch, rows, 2))
    boxes = np.round(np.concatenate([centre - half, centre + half], -1)).astype("float32")
    boxes[:, :5] = boxes[:, 5:10]  # identical boxes in other rows
    scores = np.round(rng.uniform(0, 1, (batch, rows, classes)), 1).astype("float32")  # ties everywhere
    scores[:, 20:30] = scores[:, 30:40]  # identical score rows too
    return boxes, scores


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("settings", [
    {"score_threshold": 0.05, "iou_threshold": 0.5, "max_detections": 30, "candidates_per_class": None},
    {"score_threshold": 0.3, "iou_threshold": 0.3, "max_detections": 100, "candidates_per_class": 25},
    {"score_threshold": 0.0, "iou_threshold": 0.7, "max_detections": 7, "candidates_per_class": 60},
    {"score_threshold": 0.5, "iou_threshold": 0.5, "max_detections": 300, "candidates_per_class": None},
], ids=["all-rows", "topk-and-padding", "few", "threshold-ties"])
def test_nms_equals_the_numpy_reference(flavour, seed, settings):
    boxes, scores = _clustered_case(seed)
    got = _nms(flavour, boxes, scores, **settings)
    expected = non_max_suppression_numpy(boxes, scores, **settings)
    _assert_same_detections(got, expected)
    assert expected[3].min() >= 1
    # The reference itself: sorted, unique (class, box) pairs, padding past the count.
    for b in range(len(boxes)):
        n = expected[3][b]
        assert np.all(np.diff(expected[1][b, :n]) <= 0)
        assert not expected[0][b, n:].any() and not expected[1][b, n:].any() and (expected[2][b, n:] == -1).all()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_nms_suppresses_within_a_class_only(flavour):
    # Rows 0 and 1 overlap (IoU 81 / 119): row 1 goes in class 0, row 0 in class 1; across classes both stay.
    boxes = np.float32([[[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]]])
    scores = np.float32([[[0.9, 0.1], [0.8, 0.7], [0.6, 0.0]]])
    out_boxes, out_scores, classes, count = _nms(flavour, boxes, scores, score_threshold=0.05, iou_threshold=0.5,
                                                 max_detections=5)
    assert count.tolist() == [3]
    np.testing.assert_array_equal(out_scores[0], np.float32([0.9, 0.7, 0.6, 0.0, 0.0]))
    assert classes[0].tolist() == [0, 1, 0, -1, -1]
    np.testing.assert_array_equal(out_boxes[0], np.float32([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60],
                                                            [0, 0, 0, 0], [0, 0, 0, 0]]))
    # With iou_threshold 0.7 (above 81 / 119) nothing is suppressed: every score above 0.05 stays.
    assert _nms(flavour, boxes, scores, iou_threshold=0.7, max_detections=5)[3].tolist() == [5]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_nms_thresholds_are_strict(flavour):
    # IoU of the two boxes is exactly 0.5: suppressed only under a lower threshold.
    boxes = np.float32([[[0, 0, 2, 1], [0, 0, 1, 1], [5, 5, 6, 6]]])
    scores = np.float32([[[0.9], [0.8], [0.25]]])
    kept = _nms(flavour, boxes, scores, score_threshold=0.25, iou_threshold=0.5, max_detections=3)
    _assert_same_detections(kept, non_max_suppression_numpy(boxes, scores, score_threshold=0.25, max_detections=3))
    assert kept[3].tolist() == [2] and kept[1][0].tolist() == pytest.approx([0.9, 0.8, 0.0])  # 0.25 is not > 0.25
    suppressed = _nms(flavour, boxes, scores, score_threshold=0.2, iou_threshold=0.49, max_detections=3)
    _assert_same_detections(suppressed, non_max_suppression_numpy(boxes, scores, score_threshold=0.2,
                                                                  iou_threshold=0.49, max_detections=3))
    assert suppressed[3].tolist() == [2] and suppressed[1][0].tolist() == pytest.approx([0.9, 0.25, 0.0])
    np.testing.assert_array_equal(suppressed[0][0, 1], np.float32([5, 5, 6, 6]))


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_nms_orders_equal_scores_by_class_then_row(flavour):
    boxes = _random_boxes(np.random.default_rng(0), (1, 4), 0, 1000, (1, 2))  # far apart: no overlap
    scores = np.float32([[[0.5, 0.5, 0.2], [0.5, 0.9, 0.5], [0.1, 0.5, 0.5], [0.5, 0.3, 0.3]]])
    out_boxes, out_scores, classes, count = _nms(flavour, boxes, scores, score_threshold=0.4, max_detections=9)
    assert count.tolist() == [8]
    np.testing.assert_array_equal(out_scores[0], np.float32([0.9] + [0.5] * 7 + [0.0]))
    assert classes[0].tolist() == [1, 0, 0, 0, 1, 1, 2, 2, -1]
    rows = [1, 0, 1, 3, 0, 2, 1, 2]  # class 0 rows 0, 1, 3; class 1 rows 0, 2; class 2 rows 1, 2
    np.testing.assert_array_equal(out_boxes[0, :8], boxes[0, rows])
    # Equal scores overlapping in one class: the lower row is kept.
    pair = np.float32([[[0, 0, 10, 11], [0, 0, 10, 10]]])
    out_boxes, _, _, count = _nms(flavour, pair, np.float32([[[0.7], [0.7]]]), max_detections=2)
    assert count.tolist() == [1] and out_boxes[0, 0].tolist() == [0, 0, 10, 11]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_nms_max_detections_candidates_and_an_empty_image(flavour):
    boxes = _random_boxes(np.random.default_rng(1), (2, 30), 0, 3000, (1, 2))
    scores = np.zeros((2, 30, 2), "float32")
    scores[0] = np.linspace(0.1, 0.9, 60).reshape(30, 2)
    out_boxes, out_scores, classes, count = _nms(flavour, boxes, scores, max_detections=10, candidates_per_class=4)
    assert count.tolist() == [8, 0]  # 4 candidates per class; nothing above the threshold in image 1
    assert out_boxes.shape == (2, 10, 4) and out_scores.shape == (2, 10) and classes.shape == (2, 10)
    assert classes.dtype == np.int32 and count.dtype == np.int32
    assert classes[0].tolist() == [1, 0, 1, 0, 1, 0, 1, 0, -1, -1] and (classes[1] == -1).all()
    assert not out_boxes[1].any() and not out_scores[1].any() and not out_boxes[0, 8:].any()
    # max_detections larger than classes * candidates: padded.
    wide = _nms(flavour, boxes, scores, max_detections=12, candidates_per_class=5)
    assert wide[3].tolist() == [10, 0] and wide[2].shape == (2, 12)
    # Fewer than the kept rows: the best ones.
    few = _nms(flavour, boxes, scores, max_detections=3)
    assert few[3].tolist() == [3, 0] and few[1][0].tolist() == pytest.approx([0.9, 0.88644, 0.87288], abs=1e-4)


@pytest.mark.parametrize("kwargs, message", [
    ({"score_threshold": 1.0}, "`score_threshold` must be a number in [0, 1); received score_threshold=1.0"),
    ({"score_threshold": -0.1}, "`score_threshold` must be a number in [0, 1)"),
    ({"score_threshold": True}, "`score_threshold` must be a number in [0, 1)"),
    ({"iou_threshold": 0}, "`iou_threshold` must be a number in (0, 1]; received iou_threshold=0"),
    ({"iou_threshold": 1.5}, "`iou_threshold` must be a number in (0, 1]"),
    ({"max_detections": 0}, "`max_detections` must be a positive int; received max_detections=0"),
    ({"max_detections": 2.0}, "`max_detections` must be a positive int"),
    ({"candidates_per_class": 0}, "`candidates_per_class` must be None or a positive int"),
])
def test_nms_arguments(kwargs, message):
    with pytest.raises(InputError, match=re.escape(message)):
        _layer("keras", "NonMaxSuppression", **kwargs)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_nms_symbolic_outputs_and_input_check(flavour):
    kmod = _backend.keras_module(flavour)
    layer = _layer(flavour, "NonMaxSuppression", max_detections=9)
    outputs = layer([kmod.Input((50, 4)), kmod.Input((50, 3))])
    assert [tuple(o.shape) for o in outputs] == [(None, 9, 4), (None, 9), (None, 9), (None,)]
    assert [str(getattr(o.dtype, "name", o.dtype)) for o in outputs] == ["float32", "float32", "int32", "int32"]
    with pytest.raises(ValueError, match=r"expects \[boxes \(batch, N, 4\), scores \(batch, N, classes\)\]"):
        _layer(flavour, "NonMaxSuppression")([kmod.Input((50, 4)), kmod.Input((49, 3))])


# --------------------------------------------------------------------------- inference_model

_DETECTORS: dict = {}


def _detector(kind: str, flavour: str):
    key = (kind, flavour)
    if key not in _DETECTORS:
        if kind == "ssdlite":
            model = SSDLite(BACKBONE, 4, input_shape=(SIZE, SIZE, 3), flavour=flavour)
        else:
            model = RetinaNet(BACKBONE, 4, input_shape=(SIZE, SIZE, 3), flavour=flavour, fpn_channels=32, num_convs=1)
        randomize_weights(model, seed=7)
        _DETECTORS[key] = model
    return _DETECTORS[key]


@pytest.fixture(scope="module")
def detectors():
    yield _detector
    _DETECTORS.clear()


def _images(batch: int = 2) -> np.ndarray:
    return np.random.default_rng(11).uniform(0, 255, (batch, SIZE, SIZE, 3)).astype("float32")


def _check_against_reference(outputs, raw, detector, **settings) -> None:
    expected = postprocess_numpy(raw[0], raw[1], detector.anchors, detector.detector_info, **settings)
    boxes, scores, classes, count = outputs
    np.testing.assert_array_equal(count, expected[3])
    np.testing.assert_array_equal(classes, expected[2])
    np.testing.assert_allclose(scores, expected[1], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(boxes, expected[0], rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("kind", ["ssdlite", "retinanet"])
def test_inference_model_of_a_generic_detector(detectors, tmp_path, kind, flavour):
    detector = detectors(kind, flavour)
    settings = {"score_threshold": 0.2 if kind == "ssdlite" else 0.3, "iou_threshold": 0.45, "max_detections": 25}
    model = inference_model(detector, **settings)
    assert _backend.flavour_of(model) == flavour and model.name == f"{detector.name}_inference"
    assert list(model.output_names) == list(OUTPUT_NAMES)
    assert [tuple(o.shape) for o in model.outputs] == [(None, 25, 4), (None, 25), (None, 25), (None,)]
    assert model.anchors is detector.anchors and model.detector_info is detector.detector_info
    assert {id(w) for w in detector.weights} <= {id(w) for w in model.weights}  # shared, not copied
    images = _images()
    outputs = model.predict(images, verbose=0)
    assert [o.dtype for o in outputs] == [np.float32, np.float32, np.int32, np.int32]
    assert outputs[3].min() >= 1
    raw = detector.predict(images, verbose=0)
    _check_against_reference(outputs, raw, detector, **settings)

    if flavour == "keras":
        path = str(tmp_path / "detector.keras")
        model.save(path)
        loaded = [keras.saving.load_model(path, safe_mode=True, compile=False), load_model_file("keras", path)]
    else:
        tf_keras = _backend.keras_module("tf_keras")
        keras_path, h5_path = str(tmp_path / "detector.keras"), str(tmp_path / "detector.h5")
        model.save(keras_path)
        model.save(h5_path)
        loaded = [tf_keras.saving.load_model(keras_path, safe_mode=True, compile=False),
                  load_model_file("h5", h5_path)]
    for restored in loaded:
        assert _backend.flavour_of(restored) == flavour and list(restored.output_names) == list(OUTPUT_NAMES)
        for got, expected in zip(restored.predict(images, verbose=0), outputs, strict=True):
            np.testing.assert_array_equal(got, expected)


def _twin(flavour: str):
    """A tiny model with a pytorch-ssd contract: softmax over 3 columns (background 0), relative centre-form
    priors, SSD variances; 4x4 cells x 2 priors."""
    kmod = _backend.keras_module(flavour)
    inputs = kmod.Input((32, 32, 3))
    x = kmod.layers.Conv2D(8, 8, strides=8, name="cells")(inputs)
    classes = kmod.layers.Reshape((32, 3), name="classes")(kmod.layers.Conv2D(6, 1, name="cls")(x))
    boxes = kmod.layers.Reshape((32, 4), name="boxes")(kmod.layers.Conv2D(8, 1, name="loc")(x))
    model = kmod.Model(inputs, [classes, boxes])
    randomize_weights(model, seed=2)
    centres = (np.stack(np.meshgrid(np.arange(4), np.arange(4), indexing="xy"), -1).reshape(-1, 1, 2) + 0.5) / 4
    sizes = np.float32([[0.3, 0.3], [0.5, 0.25]])[None]
    priors = np.concatenate(np.broadcast_arrays(centres, sizes), -1).reshape(-1, 4).astype("float32")
    info = {"type": "twin", "input_shape": (32, 32, 3), "score": "softmax", "background_class": 0,
            "box_coding": "ssd", "variances": (0.1, 0.2), "anchor_format": "cxcywh_relative"}
    object.__setattr__(model, "anchors", priors)
    object.__setattr__(model, "detector_info", info)
    return model


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_inference_model_of_a_pytorch_ssd_style_twin(flavour):
    twin = _twin(flavour)
    model = inference_model(twin, score_threshold=0.1, iou_threshold=0.3, max_detections=40, name="twin_detect")
    assert model.name == "twin_detect"
    images = _images()[:, :32, :32]
    outputs = model.predict(images, verbose=0)
    _check_against_reference(outputs, twin.predict(images, verbose=0), twin, score_threshold=0.1,
                             iou_threshold=0.3, max_detections=40)
    assert outputs[3].min() >= 2 and outputs[2].max() <= 1  # 2 foreground classes


def test_inference_model_arguments(detectors):
    detector = detectors("ssdlite", "keras")
    with pytest.raises(InputError, match="`detector` must be a detector model with `anchors` and `detector_info`"):
        inference_model(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
    for kwargs, message in [
        ({"score_threshold": 1}, "`score_threshold` must be a number in [0, 1)"),
        ({"iou_threshold": 0.0}, "`iou_threshold` must be a number in (0, 1]"),
        ({"max_detections": 0}, "`max_detections` must be a positive int"),
        ({"candidates_per_class": -3}, "`candidates_per_class` must be a positive int"),
    ]:
        with pytest.raises(InputError, match=f"^{re.escape(message)}"):
            inference_model(detector, **kwargs)
    twin = _twin("keras")
    object.__setattr__(twin, "detector_info", {"score": "softmax"})
    with pytest.raises(InputError, match=r"`detector_info` must be a dict with the keys .* missing: background_class, "
                                         r"box_coding, anchor_format, input_shape"):
        inference_model(twin)
    object.__setattr__(twin, "detector_info", {**_twin("keras").detector_info, "box_coding": "yolo"})
    with pytest.raises(InputError, match=r"`detector_info\['box_coding'\]` must be one of 'torchvision', 'ssd'"):
        inference_model(twin)
    object.__setattr__(twin, "detector_info", _twin("keras").detector_info)
    object.__setattr__(twin, "anchors", np.zeros((31, 4), "float32"))
    with pytest.raises(InputError, match=r"`anchors` must be a numeric array of shape \(32, 4\)"):
        inference_model(twin)
