"""Detectors through compression: prune -> sparsity-preserving QAT -> full-int8 TFLite, as classifiers.

The registry-wide test (``test_every_detector_prunes_quantizes_and_exports_to_int8``) runs the
chain of ``test_compression``'s classifier test on detectors: prune 50 % with the default
schedule, a step of training with the package's detection losses on digit scenes, strip,
sparsity-preserving QAT, another step, full-int8 TFLite, LiteRT. Its cases:

* every preset of ``detection.list_detectors()``. The presets are exact twins of published
  detectors at a fixed input size (300 or 320 pixels; ``create_detector`` takes no size), so each
  is stood in for by the generic builder of its head type (``detection.SSD``, ``SSDLite``,
  ``RetinaNet``) on a small registry backbone of the same family (``PRESET_STAND_INS``; a new
  preset fails until it has one), built in Keras 3 (compression translates it to tf_keras);
* one generic detector per head type, built in tf_keras, on the smallest backbones
  (``GENERIC``): SqueezeNet has no stride-32 map (one extra block makes it), and at 64 pixels
  RetinaNet's FPN both crops (``Cropping2D``) and repeats (``Concatenate``) upsampled rows.

RetinaNet's head convolutions are one layer applied to five levels: TFMOT accepts the shared
layer, its wrapper is shared too (one set of weights, one output range for the five levels).
"""

from __future__ import annotations

import numpy as np
import pytest
import tf_keras
from helpers import randomize_weights

from keras_lightnets import compression, detection
from keras_lightnets.errors import InputError

SIZE = 64  # pixels: every level of SSD's six and RetinaNet's five has at least one cell
TARGET = 0.5
DIGITS = 10  # digit scenes' foreground classes; softmax heads add the background column
# preset -> (head type, backbone) of its stand-in: the same head on a small backbone of the preset's family.
PRESET_STAND_INS = {
    "mb1_ssd": ("ssd", "mobilenet_v1_025"),
    "mb2_ssd_lite": ("ssdlite", "mobilenet_v2_035"),
    "ssdlite320_mobilenet_v3_large": ("ssdlite", "mobilenet_v3_small_075"),
    "retinanet_mobilenet_v3_large_fpn": ("retinanet", "mobilenet_v3_small_075"),
}
GENERIC = {"ssd": "squeezenet1_1", "ssdlite": "mobilenet_v1_025", "retinanet": "squeezenet1_1"}
CASES = [f"preset:{name}" for name in detection.list_detectors()] + [f"{kind}:{b}" for kind, b in GENERIC.items()]


def _detector(kind: str, backbone: str, flavour: str, seed: int = 0):
    """A small detector of head type ``kind`` with random weights (kept small: 64 pixels, narrow extras)."""
    builders = {"ssd": detection.SSD, "ssdlite": detection.SSDLite, "retinanet": detection.RetinaNet}
    options = {"fpn_channels": 16, "num_convs": 1, "anchor_size": 8} if kind == "retinanet" else {"width": 0.125}
    classes = DIGITS if kind == "retinanet" else DIGITS + 1
    model = builders[kind](backbone, classes, (SIZE, SIZE, 3), flavour=flavour, **options)
    randomize_weights(model, seed)
    return model


def _case_detector(case: str):
    what, name = case.split(":")
    if what == "preset":
        if name not in PRESET_STAND_INS:
            pytest.fail(f"detector preset {name!r} has no stand-in in PRESET_STAND_INS")
        kind, backbone = PRESET_STAND_INS[name]
        assert detection.detector_config(name).kind == kind
        return _detector(kind, backbone, "keras")
    return _detector(what, name, "tf_keras")


def _batches(detector, count: int = 4, seed: int = 0):
    """One batch ``(images, {"classes", "boxes"})`` of digit scenes encoded for ``detector``, as
    ``fit_detector`` makes them (``images``: what the detector takes, preprocessed)."""
    from keras_lightnets.data.detection_pipeline import make_detection_dataset, prepare_detection_data
    from keras_lightnets.data.digit_scenes import make_digit_scenes
    from keras_lightnets.training.detection import detector_targets, input_preprocessing

    targets = detector_targets(detector)
    data = prepare_detection_data(make_digit_scenes(count, SIZE, seed=seed), input_size=targets.input_size,
                                  num_classes=targets.num_classes)
    dataset = make_detection_dataset(data, targets.encoder, batch_size=count, training=False,
                                     class_offset=targets.class_offset, relative_boxes=targets.relative_boxes,
                                     preprocessing=input_preprocessing(detector))
    images, labels = next(iter(dataset))
    return images.numpy(), {name: value.numpy() for name, value in labels.items()}


def _train_step(model, batch) -> None:
    """One eager step with the package's detection losses (``detection_losses``: it needs the model's
    ``anchors``, ``detector_info`` and outputs named ``classes`` and ``boxes``)."""
    from keras_lightnets.training.detection import detection_losses

    images, labels = batch
    model.compile(optimizer=tf_keras.optimizers.Adam(1e-3), loss=detection_losses(model), run_eagerly=True)
    callbacks = compression.pruning_callbacks() if compression.is_pruned(model) else []
    history = model.fit(images, labels, batch_size=len(images), epochs=1, verbose=0, callbacks=callbacks)
    assert np.isfinite(history.history["loss"]).all()


def _assert_still_a_detector(model, detector) -> None:
    assert model.anchors is detector.anchors and model.detector_info is detector.detector_info
    assert list(model.output_names) == ["classes", "boxes"]
    assert [tuple(t.shape) for t in model.outputs] == [tuple(t.shape) for t in detector.outputs]


def _run_tflite(path, image: np.ndarray) -> dict[str, tuple[np.ndarray, float]]:
    """``{"classes", "boxes"}``: the file's dequantized outputs for one image (told apart by width),
    each with its quantization step."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (inp,) = interpreter.get_input_details()
    scale, zero = inp["quantization"]
    interpreter.set_tensor(inp["index"], np.clip(np.round(image[None] / scale + zero), -128, 127).astype(np.int8))
    interpreter.invoke()
    found = {}
    for out in interpreter.get_output_details():
        assert out["dtype"] == np.int8
        scale, zero = out["quantization"]
        values = (interpreter.get_tensor(out["index"]).astype("float32") - zero) * scale
        found["boxes" if values.shape[-1] == 4 else "classes"] = values[0], float(scale)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_every_detector_prunes_quantizes_and_exports_to_int8(case, tmp_path):
    from keras_lightnets.export import to_tflite
    from keras_lightnets.export.describe import tflite_kernel_sparsity

    detector = _case_detector(case)
    batch = _batches(detector)
    pruned = compression.prune(detector, target_sparsity=TARGET)  # the default schedule
    _assert_still_a_detector(pruned, detector)
    _train_step(pruned, batch)
    stripped = compression.strip(pruned)
    _assert_still_a_detector(stripped, detector)
    pruned_rows = compression.sparsity_report(stripped)
    assert pruned_rows and min(row.sparsity for row in pruned_rows) >= TARGET

    qat = compression.quantize_aware(stripped)
    _assert_still_a_detector(qat, detector)
    assert {layer.name for layer in detector.layers} <= {layer.name for layer in qat.layers}  # names kept
    _train_step(qat, batch)
    pruned_names = {row.layer for row in pruned_rows}
    after_qat = [row for row in compression.sparsity_report(qat) if row.layer in pruned_names]
    assert len(after_qat) == len(pruned_rows) and min(row.sparsity for row in after_qat) >= TARGET

    path = tmp_path / "detector.tflite"
    images = batch[0]
    report = to_tflite(qat, path, quantization="int8", representative_data=images, postprocess="raw")
    assert path.is_file() and not report.float_ops, report.float_ops
    assert [t.dtype for t in report.inputs + report.outputs] == ["int8"] * 3
    assert "HARD_SWISH" not in report.op_counts  # XNNPACK has no int8 kernel for it
    assert tflite_kernel_sparsity(path) >= TARGET  # the zeros reach the file
    # The file computes what the QAT model does: its raw outputs agree to a few quantization steps
    # (int8 kernels round where fake quantization does not), most of them exactly or to one step.
    found = _run_tflite(path, images[0])
    expected = dict(zip(["classes", "boxes"], (np.asarray(t)[0] for t in qat(images[:1], training=False)),
                        strict=True))
    for name, values in expected.items():
        got, step = found[name]
        assert got.shape == values.shape
        steps = np.abs(got - values) / step
        assert steps.max() <= 4.01 and steps.mean() <= 0.75, (name, steps.max(), steps.mean())
        assert values.max() - values.min() >= 10 * step  # outputs that vary, not a constant


# --------------------------------------------------------------------------------------
# What a compressed detector keeps, and what is refused
# --------------------------------------------------------------------------------------


def test_qat_detector_keeps_names_shares_the_head_and_saves(tmp_path):
    detector = _detector("retinanet", "squeezenet1_1", "tf_keras")
    # At 64 pixels the FPN crops one upsampled map and repeats a row and column of the other.
    kinds = {layer.name: type(layer).__name__ for layer in detector.layers}
    assert kinds["retinanet_fpn_up4_h_crop"] == "Cropping2D" and kinds["retinanet_fpn_up3_w_repeat"] == "Concatenate"
    qat = compression.quantize_aware(detector)
    _assert_still_a_detector(qat, detector)
    names = [layer.name for layer in qat.layers]
    assert len(names) == len(set(names)) and not any(name.startswith("quant_") for name in names)
    assert {layer.name for layer in detector.layers} <= set(names)
    assert type(qat.get_layer("classes")).__name__ == "QuantizeWrapperV2"
    # The shared head: one wrapper (one kernel, one output range) applied to the five levels.
    for name in ("retinanet_cls_conv0", "retinanet_cls_logits", "retinanet_box_reg"):
        assert len(qat.get_layer(name).inbound_nodes) == len(detector.detector_info["levels"]) == 5
    # The inference model is rebuilt from the QAT detector: its float post-processing on the outputs.
    from keras_lightnets.detection.inference import postprocess_numpy

    images = _batches(detector, count=2)[0]
    found = [np.asarray(t) for t in detection.inference_model(qat)(images, training=False)]
    classes, boxes = (np.asarray(t) for t in qat(images, training=False))
    expected = postprocess_numpy(classes, boxes, qat.anchors, qat.detector_info)
    assert found[0].shape == (2, 100, 4) and found[3].min() > 0
    for a, b in zip(found, expected, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-3)
    # Saved and loaded in quantize_scope, under the same names, computing the same.
    path = str(tmp_path / "qat.h5")
    qat.save(path)
    with compression.quantize_scope():
        loaded = tf_keras.models.load_model(path, compile=False)
    assert [layer.name for layer in loaded.layers] == names and list(loaded.output_names) == ["classes", "boxes"]
    for a, b in zip(loaded(images, training=False), qat(images, training=False), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


@pytest.mark.parametrize("flavour", ["keras", "tf_keras"])
def test_inference_model_is_refused_with_the_fix(flavour):
    inference = detection.inference_model(_detector("ssdlite", "mobilenet_v1_025", flavour))
    for compress in (compression.prune, compression.quantize_aware):
        with pytest.raises(InputError, match=r"inference model.*'non_max_suppression' \(NonMaxSuppression\).*"
                                             r"training model.*detection\.inference_model") as raised:
            compress(inference)
        assert "\n" not in str(raised.value)


@pytest.mark.slow
def test_pruned_and_qat_detectors_train_with_fit_detector(tmp_path):
    """``fit_detector`` adds TFMOT's ``UpdatePruningStep`` for a pruned detector; a QAT detector keeps
    the layer names its phases read (the head's prefix, the backbone's blocks)."""
    from keras_lightnets.data.digit_scenes import make_digit_scenes
    from keras_lightnets.training.detection import fit_detector, head_layer_names
    from keras_lightnets.training.unfreeze import unfreeze_top_blocks

    detector = _detector("ssd", "squeezenet1_1", "keras")
    data = make_digit_scenes(4, SIZE, seed=1)
    settings = {"batch_size": 4, "augmentation": None, "quiet": True, "epochs_frozen": 1, "epochs_unfrozen": 0}
    pruned = compression.prune(detector, TARGET)
    result = fit_detector(pruned, data, backbone_pretrained=False, output_dir=tmp_path / "pruned", **settings)
    assert len(result.history) == 1 and np.isfinite(result.history[0]["loss"])
    rows = compression.sparsity_report(compression.strip(pruned))
    assert min(row.sparsity for row in rows) >= TARGET  # the masks were applied: the callback ran

    qat = compression.quantize_aware(compression.strip(pruned))
    head = head_layer_names(qat)
    assert {"ssd_cls0", "ssd_extra0_reduce", "classes", "boxes"} <= set(head) and "conv1" not in head
    # Phase 1 of a pretrained backbone: the head trains, the backbone is frozen.
    result = fit_detector(qat, data, backbone_pretrained=True, output_dir=tmp_path / "qat", **settings)
    assert [row["phase"] for row in result.history] == ["frozen_base"] and np.isfinite(result.history[0]["loss"])
    assert qat.get_layer("ssd_cls0").trainable and not qat.get_layer("fire9_expand3x3").trainable
    # Phase 2 finds the backbone's top block by its layers' names.
    assert unfreeze_top_blocks(qat, 1, head, model_name="squeezenet1_1") == ["fire9"]
    assert qat.get_layer("fire9_expand3x3").trainable and not qat.get_layer("fire8_expand3x3").trainable
    kept = [row for row in compression.sparsity_report(qat) if row.layer in {r.layer for r in rows}]
    assert len(kept) == len(rows) and min(row.sparsity for row in kept) >= TARGET
