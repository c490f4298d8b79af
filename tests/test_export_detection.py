"""Detectors to TFLite (``export.detectors``, ``to_tflite(postprocess=...)``) and their verification
(``verify_tflite`` -> ``export.verify_detection``), on tiny random-weight detectors.

What holds for any weights is asserted here: the file's structure (int8 up to the
post-processing op, the TF OD API outputs in order, the op's settings, XNNPACK coverage), that
the float file's detections are the Keras inference model's, and the verification's arithmetic.
How close int8 detections stay to float ones on a trained detector is a benchmark figure.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import randomize_weights

from keras_lightnets.data.digit_scenes import make_digit_scenes
from keras_lightnets.detection import SSD, RetinaNet, SSDLite, create_detector, list_detectors
from keras_lightnets.errors import InputError
from keras_lightnets.export import detection_metadata, to_tflite, verify_tflite
from keras_lightnets.export.detectors import OUTPUT_NAMES, detection_export, postprocess_options, tflite_anchors
from keras_lightnets.export.litert import open_interpreter
from keras_lightnets.export.verify_detection import agreement

pytestmark = pytest.mark.xdist_group("export_detection")

SIZE = 96
BACKBONE = "mobilenet_v2_035"
BUILDERS = {
    "ssd": lambda flavour=None: SSD(BACKBONE, 11, (SIZE, SIZE, 3), flavour=flavour),
    "ssdlite": lambda flavour=None: SSDLite(BACKBONE, 11, (SIZE, SIZE, 3), flavour=flavour),
    "retinanet": lambda flavour=None: RetinaNet(BACKBONE, 10, (SIZE, SIZE, 3), flavour=flavour, fpn_channels=16,
                                                num_convs=1, anchor_size=16),
}


def _detector(kind: str, flavour: str | None = None):
    model = BUILDERS[kind](flavour)
    randomize_weights(model, seed=3)
    return model


@pytest.fixture(scope="module")
def scenes():
    return make_digit_scenes(20, SIZE, "test", seed=0)


def _images(scenes) -> np.ndarray:
    return scenes.images.astype("float32")


@pytest.mark.parametrize(("kind", "postprocess"), [("ssd", "regular"), ("ssdlite", "fast"),
                                                     ("retinanet", "regular")])
def test_int8_file_is_int8_up_to_the_postprocess_op(kind, postprocess, scenes, tmp_path):
    detector = _detector(kind)
    report = to_tflite(detector, tmp_path / "d.tflite", "int8", _images(scenes)[:4], postprocess=postprocess,
                       max_detections=20, score_threshold=0.1, iou_threshold=0.45)
    assert report.inputs[0].dtype == "int8"
    assert set(report.float_ops) == {"DEQUANTIZE", "CUSTOM:TFLite_Detection_PostProcess"}
    assert report.op_counts["DEQUANTIZE"] == 2  # the two inputs of the op, nothing before
    assert [t.name for t in report.outputs] == list(OUTPUT_NAMES)
    assert report.detection["postprocess"] == postprocess and report.detection["anchors"] == len(detector.anchors)
    assert report.delegate_partitions >= 1 and report.ops_outside_delegate.get("TFLite_Detection_PostProcess") == 1
    options = postprocess_options(report.path)
    assert options["use_regular_nms"] is (postprocess == "regular")
    assert options["max_detections"] == 20 and options["num_classes"] == 10
    assert options["nms_iou_threshold"] == pytest.approx(0.45) and options["nms_score_threshold"] == pytest.approx(0.1)
    interpreter = open_interpreter(report.path)
    [detail] = interpreter.get_input_details()
    scale, zero_point = detail["quantization"]
    image = np.clip(np.round(_images(scenes)[:1] / scale + zero_point), -128, 127).astype("int8")
    interpreter.set_tensor(detail["index"], image)
    interpreter.invoke()
    boxes, classes, scores, count = (interpreter.get_tensor(o["index"]) for o in interpreter.get_output_details())
    assert boxes.shape == (1, 20, 4) and classes.shape == scores.shape == (1, 20) and count.shape == (1,)
    n = int(count[0])
    assert 0 <= n <= 20 and np.all(np.diff(scores[0, :n]) <= 0) and np.all(scores[0, :n] > 0.1)
    assert np.all((classes[0, :n] >= 0) & (classes[0, :n] < 10))


def test_retinanet_int8_delegation(scenes, tmp_path):
    """One XNNPACK partition for backbone, FPN and heads but for the int8 ReLU before P7 (XNNPACK in
    LiteRT 2.3 has none): the FPN's nearest upsampling is Concatenate/Reshape, not TILE."""
    report = to_tflite(_detector("retinanet"), tmp_path / "r.tflite", "int8", _images(scenes)[:2])
    assert "TILE" not in report.op_counts
    assert report.ops_outside_delegate == {"GATHER": 1, "RELU": 1, "TFLite_Detection_PostProcess": 1}
    assert report.delegate_partitions == 3


@pytest.mark.parametrize(("kind", "postprocess"), [("ssdlite", "regular"), ("ssd", "raw")])
def test_float_file_detects_what_keras_detects(kind, postprocess, scenes, tmp_path):
    """Float files: the op's decoding and regular (per-class) NMS, or for raw files the NumPy
    post-processing, give the Keras inference model's detections (agreement 1 up to ties and the
    op's unclipped deltas). The op's fast NMS is class-agnostic, so it differs by design. Not
    RetinaNet here: random weights saturate its sigmoid scores (100 boxes per image, most crossing
    the border of a 96-pixel image), and the op suppresses unclipped boxes where Keras clips
    first (agreement 0.75 measured); trained detectors are compared by the benchmark."""
    detector = _detector(kind)
    path = tmp_path / "f.tflite"
    exported = to_tflite(detector, path, postprocess=postprocess, max_detections=100)
    assert "CONCATENATION" not in exported.ops_outside_delegate  # six levels joined in groups of at most five
    report = verify_tflite(path, detector, _images(scenes)[:8], ground_truth=scenes, agreement_score=0.1)
    assert report.postprocess == postprocess and report.samples == 8
    assert report.keras_detections > 0
    assert report.box_agreement >= 0.95, report
    assert abs(report.map50_difference) <= 0.02 and report.map50_difference == pytest.approx(
        report.tflite_map50 - report.keras_map50)
    assert 0.0 <= report.keras_map <= 1.0 and 0.0 <= report.tflite_map <= 1.0


def test_raw_int8_file_keeps_the_heads(scenes, tmp_path):
    detector = _detector("ssdlite")
    report = to_tflite(detector, tmp_path / "raw.tflite", "int8", _images(scenes)[:2], postprocess="raw", batch_size=2)
    assert report.float_ops == [] and all(t.dtype == "int8" for t in report.inputs + report.outputs)
    assert sorted(tuple(t.shape) for t in report.outputs) == sorted([(2, len(detector.anchors), 11),
                                                                     (2, len(detector.anchors), 4)])
    assert postprocess_options(report.path) is None


def test_tf_keras_detector_exports(scenes, tmp_path):
    detector = _detector("ssdlite", flavour="tf_keras")
    report = to_tflite(detector, tmp_path / "t.tflite", postprocess="regular")
    assert report.flavour == "tf_keras" and report.op_counts["CUSTOM:TFLite_Detection_PostProcess"] == 1
    verified = verify_tflite(report.path, detector, _images(scenes)[:4], agreement_score=0.1)
    assert verified.box_agreement >= 0.95 and verified.keras_map50 is None


def test_anchors_and_scales_in_the_op_convention():
    """torchvision anchors x1 y1 x2 y2 pixels -> cy cx h w fractions; weights (wx, wy, ww, wh) ->
    scales (y, x, h, w); pytorch-ssd variances (0.1, 0.2) -> 10, 10, 5, 5."""
    info = {"score": "softmax", "background_class": 0, "box_coding": "torchvision", "box_weights": (10, 20, 5, 6),
            "anchor_format": "xyxy_pixels", "input_shape": (100, 200, 3)}
    np.testing.assert_allclose(tflite_anchors([[20, 10, 60, 50]], info), [[0.3, 0.2, 0.4, 0.2]], rtol=1e-6)
    relative = {**info, "box_coding": "ssd", "variances": (0.1, 0.2), "anchor_format": "cxcywh_relative"}
    np.testing.assert_allclose(tflite_anchors([[0.1, 0.2, 0.3, 0.4]], relative), [[0.2, 0.1, 0.4, 0.3]], rtol=1e-6)
    detector = _detector("ssdlite")
    export = detection_export(detector, "fast")
    assert export.scales == (10.0, 10.0, 5.0, 5.0) and export.num_classes == 10 and export.score == "softmax"
    assert "use_regular_nms\" value { b: false }" in export.implements()


def test_metadata_names_labels_anchors_and_input(tmp_path):
    detector = _detector("retinanet")
    export = detection_export(detector, "regular")
    meta = detection_metadata(detector, export, labels=[str(d) for d in range(10)])
    assert meta["labels"][3] == "3" and meta["outputs"] == list(OUTPUT_NAMES)
    assert meta["input"] == {"height": SIZE, "width": SIZE, "channels": 3, "preprocessing": "tf"}  # [-1, 1]
    assert len(meta["anchors_cychw"]) == len(detector.anchors) and meta["score"] == "sigmoid"
    with pytest.raises(InputError, match="`labels`"):
        detection_metadata(detector, export, labels=["a", "b"])


@pytest.mark.parametrize(
    ("arguments", "argument"),
    [({"postprocess": "nms"}, "`postprocess`"), ({"score_threshold": 1.5}, "`score_threshold`"),
     ({"iou_threshold": 0.0}, "`iou_threshold`"), ({"max_detections": 0}, "`max_detections`"),
     ({"detections_per_class": -1}, "`detections_per_class`"), ({"batch_size": 2}, "batch_size")],
)
def test_bad_detection_arguments_name_the_argument(arguments, argument, tmp_path):
    path = tmp_path / "x.tflite"
    with pytest.raises(ValueError, match=argument):
        to_tflite(_detector("ssdlite"), path, **arguments)
    assert not path.exists()


def test_classifier_refuses_detection_arguments(tmp_path):
    from keras_lightnets import create_model

    with pytest.raises(ValueError, match=r"`postprocess`.*detectors only"):
        to_tflite(create_model("squeezenet1_1", weights=None, input_shape=(32, 32, 3)), tmp_path / "c.tflite",
                  postprocess="regular")


def test_agreement_counts_same_class_boxes_above_the_iou():
    a = {"boxes": np.array([[0, 0, 10, 10], [20, 20, 30, 30.]]), "scores": np.array([0.9, 0.8]),
         "classes": np.array([1, 2])}
    same = {k: v.copy() for k, v in a.items()}
    assert agreement(a, same, iou=0.9, score=0.5) == (1.0, 2, 2)
    moved = {**same, "boxes": same["boxes"] + np.array([[0, 0, 0, 0], [2, 0, 2, 0.]])}  # IoU 8/12
    assert agreement(a, moved, iou=0.9, score=0.5) == (0.5, 2, 2)
    relabelled = {**same, "classes": np.array([1, 3])}
    assert agreement(a, relabelled, iou=0.9, score=0.5) == (0.5, 2, 2)
    empty = {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "classes": np.zeros(0, int)}
    assert agreement(empty, empty, iou=0.9, score=0.5) == (1.0, 0, 0)
    assert agreement(a, empty, iou=0.9, score=0.5) == (0.0, 2, 0)


@pytest.mark.parametrize("name", list_detectors())
def test_every_preset_exports_to_int8_and_verifies(name, tmp_path):
    """Each reference preset (random initialisation, raw pixels in) as a full-int8 file ending in
    the post-processing op, run by LiteRT and verified against its Keras model."""
    detector = create_detector(name, include_preprocessing=True)
    size = tuple(int(v) for v in detector.detector_info["input_shape"][:2])
    images = np.random.default_rng(0).uniform(0, 255, (3, *size, 3)).astype("float32")
    report = to_tflite(detector, tmp_path / f"{name}.tflite", "int8", images[:2], postprocess="regular",
                       max_detections=10)
    assert report.inputs[0].dtype == "int8" and report.inputs[0].shape == [1, *size, 3]
    assert set(report.float_ops) == {"DEQUANTIZE", "CUSTOM:TFLite_Detection_PostProcess"}
    assert [t.name for t in report.outputs] == list(OUTPUT_NAMES)
    verified = verify_tflite(report.path, detector, images[2:])
    assert verified.samples == 1 and verified.postprocess == "regular" and verified.input_dtype == "int8"
    assert 0.0 <= verified.box_agreement <= 1.0 and verified.keras_map50 is None
