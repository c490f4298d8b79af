"""Training detectors: the tf.data pipeline (checks, box augmentation, targets) and fit_detector
(phases, losses in compile, checkpoints, resume, reload) in both Keras flavours."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import randomize_weights

from keras_lightnets.data.detection_pipeline import (
    MIN_AUGMENTED_SIDE,
    DetectionAugmentation,
    make_augmenter,
    make_detection_dataset,
    prepare_detection_data,
)
from keras_lightnets.data.digit_scenes import make_digit_scenes
from keras_lightnets.errors import InputError

SIZE = 64
BACKBONE = "mobilenet_v1_025"  # the registry's smallest backbone


@dataclasses.dataclass
class Arrays:
    """Detection data with the DigitScenes fields the trainer reads."""

    images: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    counts: np.ndarray | None = None
    class_names: tuple = ()


def _bright_extent(image: np.ndarray) -> list[int] | None:
    """x1 y1 x2 y2 of the pixels brighter than mid-grey in channel 0 (None when there are none)."""
    ys, xs = np.nonzero(image[..., 0] > 127.5)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if len(xs) else None


# --------------------------------------------------------------------------- data


def test_augmented_boxes_stay_inside_the_image_and_move_with_it():
    import tensorflow as tf

    count, rng = 24, np.random.default_rng(0)
    images = np.zeros((count, SIZE, SIZE, 3), np.float32)
    boxes = np.zeros((count, 2, 4), np.float32)
    classes = np.full((count, 2), -1, np.int32)
    for i in range(count):  # one bright rectangle per image, some at the border
        w, h = rng.integers(8, 24, 2)
        x, y = (0, 0) if i % 6 == 0 else rng.integers(0, SIZE - np.array([w, h]) + 1)
        images[i, y:y + h, x:x + w] = 255.0
        boxes[i, 0] = [x, y, x + w, y + h]
        classes[i, 0] = i % 10
    augment = make_augmenter(DetectionAugmentation(zoom=0.3, translate=0.3, brightness=0.1, contrast=0.1), seed=3)
    out_images, out_boxes, out_classes = (t.numpy() for t in augment(tf.constant(images), tf.constant(boxes),
                                                                     tf.constant(classes)))
    assert out_images.shape == images.shape and out_boxes.shape == boxes.shape
    assert np.all(out_classes[:, 1] == -1) and np.all(out_boxes[:, 1] == 0)  # padding stays padding
    moved = 0
    for i in range(count):
        extent = _bright_extent(out_images[i])
        if out_classes[i, 0] < 0:  # pushed (nearly) out: at most a sliver is left, the box is cleared
            assert extent is None or min(extent[2] - extent[0], extent[3] - extent[1]) <= MIN_AUGMENTED_SIDE + 1
            assert np.all(out_boxes[i, 0] == 0)
            continue
        assert out_classes[i, 0] == i % 10
        box = out_boxes[i, 0]
        assert np.all(box >= 0) and np.all(box <= SIZE) and box[2] > box[0] and box[3] > box[1]
        assert extent is not None
        np.testing.assert_allclose(box, extent, atol=1.0)  # the box is where the rectangle went
        moved += bool(np.abs(box - boxes[i, 0]).max() > 2)
    assert moved >= count // 2
    assert int((out_classes[:, 0] >= 0).sum()) >= count // 2


def test_prepare_scales_clips_drops_and_counts():
    images = np.full((4, 96, 96, 3), 200, np.uint8)
    boxes = np.zeros((4, 3, 4), np.float32)
    classes = np.full((4, 3), -1, np.int32)
    boxes[0] = [[12, 24, 48, 60], [30, 30, 30, 50], [0, 0, 0, 0]]  # a box, a zero-width box, padding
    classes[0] = [1, 2, -1]
    boxes[1] = [[90, 10, 120, 40], [100, 10, 110, 20], [np.nan, 0, 10, 10]]  # clipped, outside, NaN
    classes[1] = [3, 4, 5]
    boxes[2] = [[6, 6, 30, 30], [0, 0, 9, 9], [0, 0, 9, 9]]  # the rows past counts[2] = 1 are padding
    classes[2] = [7, 8, 9]
    counts = np.asarray([3, 3, 1, 0])  # image 3 has no boxes
    data = Arrays(images, boxes, classes, counts, tuple("abcdefghij"))
    prepared = prepare_detection_data(data, input_size=(64, 64), num_classes=10)
    assert prepared.images.shape == (4, 64, 64, 3) and prepared.images.dtype == np.uint8
    assert np.all(prepared.images == 200)
    np.testing.assert_allclose(prepared.boxes[0, 0], [8, 16, 32, 40])  # 96 -> 64: times 2/3
    np.testing.assert_allclose(prepared.boxes[1, 0], [60, 20 / 3, 64, 80 / 3], rtol=1e-6)  # clipped at 64
    np.testing.assert_array_equal(prepared.classes, [[1, -1, -1], [3, -1, -1], [7, -1, -1], [-1, -1, -1]])
    assert prepared.report.as_dict() == {"images": 4, "boxes": 3, "dropped_boxes": 3, "images_without_boxes": 1,
                                         "clipped_boxes": 1, "resized_from": [96, 96]}
    assert prepared.class_names == list("abcdefghij")


def test_class_ids_out_of_range_are_refused_in_one_line():
    scenes = make_digit_scenes(4, SIZE)
    with pytest.raises(InputError, match=r"class id 9, but the detector has 9 foreground classes"):
        prepare_detection_data(scenes, input_size=(SIZE, SIZE), num_classes=9, argument="train")
    bad = Arrays(scenes.images, scenes.boxes, np.where(scenes.classes >= 0, scenes.classes, -2))
    with pytest.raises(InputError, match=r"class id -2;.*-1 marks a padding row"):
        prepare_detection_data(bad, input_size=(SIZE, SIZE), num_classes=10, argument="train")
    with pytest.raises(InputError, match=r"`train.classes` must hold integer"):
        prepare_detection_data(Arrays(scenes.images, scenes.boxes, scenes.classes.astype(float)),
                               input_size=(SIZE, SIZE), num_classes=10)
    with pytest.raises(InputError, match=r"it has no 'images'"):
        prepare_detection_data(object(), input_size=(SIZE, SIZE), num_classes=10)


@pytest.mark.parametrize(("rule", "offset", "foreground", "background"), [("ssd", 1, 4, 0), ("retinanet", 0, 3, -1)])
def test_targets_follow_the_detector_convention(rule, offset, foreground, background):
    from keras_lightnets.detection.matching import BoxCoder, TargetEncoder

    images = np.arange(2 * 64 * 64 * 3, dtype=np.uint8).reshape(2, 64, 64, 3)
    boxes = np.zeros((2, 1, 4), np.float32)
    boxes[0, 0] = [0, 0, 32, 32]
    classes = np.asarray([[3], [-1]], np.int32)
    prepared = prepare_detection_data(Arrays(images, boxes, classes), input_size=(64, 64), num_classes=10)
    anchors = np.asarray([[0, 0, 32, 32], [32, 32, 64, 64]], np.float32)
    encoder = TargetEncoder(anchors, rule, BoxCoder.torchvision((10, 10, 5, 5)))
    dataset = make_detection_dataset(prepared, encoder, batch_size=2, training=False, class_offset=offset,
                                     preprocessing="tf")
    (x, y), = list(dataset)
    np.testing.assert_allclose(x.numpy(), images / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_array_equal(y["classes"].numpy(), [[foreground, background], [background, background]])
    assert y["boxes"].shape == (2, 2, 5)
    np.testing.assert_array_equal(y["boxes"].numpy()[..., 4], y["classes"].numpy())
    np.testing.assert_allclose(y["boxes"].numpy()[..., :4], 0.0, atol=1e-6)  # the box is its anchor exactly


def test_history_logs_map_the_detector_metric_to_the_history_columns():
    from keras_lightnets.training.detection import history_logs

    logs = {"loss": 2.0, "classes_foreground_accuracy": 0.25, "val_loss": 3.0,
            "val_classes_foreground_accuracy": 0.5}
    assert history_logs(logs, validated=True) == {**logs, "accuracy": 0.25, "val_accuracy": 0.5}
    alone = history_logs({"loss": 2.0, "classes_foreground_accuracy": 0.25}, validated=False)
    assert (alone["val_loss"], alone["val_accuracy"], alone["accuracy"]) == (2.0, 0.25, 0.25)
    assert math.isnan(history_logs({"loss": 1.0}, validated=True)["accuracy"])


# --------------------------------------------------------------------------- fit_detector


def _retinanet(flavour: str = "keras"):
    from keras_lightnets.detection import RetinaNet

    return RetinaNet(BACKBONE, 10, (SIZE, SIZE, 3), flavour=flavour, fpn_channels=32, num_convs=1)


def _ssdlite(flavour: str = "keras", num_classes: int = 11):
    from keras_lightnets.detection import SSDLite

    return SSDLite(BACKBONE, num_classes, (SIZE, SIZE, 3), flavour=flavour)


def _scaled(images: np.ndarray, mode: str) -> np.ndarray:
    from keras_lightnets.imagenet import PREPROCESS_MODES, preprocess_input

    return preprocess_input(images.astype(np.float32), mode=PREPROCESS_MODES[mode])


def test_bad_arguments_and_data_fail_before_training(tmp_path):
    from keras_lightnets.training.detection import fit_detector

    detector = _ssdlite("tf_keras", num_classes=10)  # softmax: 9 foreground classes + background
    scenes = make_digit_scenes(8, SIZE)
    out = tmp_path / "run"
    with pytest.raises(InputError, match=r"class id 9, but the detector has 9 foreground classes"):
        fit_detector(detector, scenes, output_dir=out, quiet=True)
    with pytest.raises(InputError, match=r"`validation.classes` holds class id 10, but the detector has 10 foreground"):
        fit_detector(_retinanet("tf_keras"), make_digit_scenes(4, SIZE),
                     Arrays(scenes.images, scenes.boxes, scenes.classes + 1), output_dir=out, quiet=True)
    with pytest.raises(InputError, match=r"epochs_frozen \+ epochs_unfrozen >= 1"):
        fit_detector(detector, scenes, epochs_frozen=0, epochs_unfrozen=0, output_dir=out)
    with pytest.raises(InputError, match=r"`loss_options` must be a dict with keys from \['negative_ratio'\]"):
        fit_detector(detector, scenes, loss_options={"gamma": 2.0}, output_dir=out)
    with pytest.raises(InputError, match=r"`negative_ratio` must be a finite number > 0"):
        fit_detector(detector, scenes, loss_options={"negative_ratio": 0}, output_dir=out)
    with pytest.raises(InputError, match=r"`optimizer` must be one of 'adam', 'sgd'"):
        fit_detector(detector, scenes, optimizer="rmsprop", output_dir=out)
    with pytest.raises(InputError, match=r"`resume` and `overwrite` exclude each other"):
        fit_detector(detector, scenes, resume=True, overwrite=True, output_dir=out)
    with pytest.raises(InputError, match=r"`detector` must be a detector"):
        fit_detector(object(), scenes, output_dir=out)
    assert not out.exists()  # nothing was trained or written


def test_keras3_retinanet_trains_in_phases_checkpoints_resumes_and_reloads(tmp_path):
    import keras

    from keras_lightnets.training.detection import detection_custom_objects, fit_detector

    train, validation = make_digit_scenes(40, SIZE, "train"), make_digit_scenes(16, SIZE, "validation")
    detector = _retinanet()
    # A stand-in for pretrained weights: with Keras' initial BatchNorm statistics a random frozen
    # backbone's activations (and gradients) vanish by the stride-32 map.
    randomize_weights(keras.Model(detector.inputs, detector.get_layer("conv_pw_13_relu").output))
    frozen_layers = ("conv1", "conv_pw_5", "conv_pw_13_bn")  # never trainable here (BatchNorm stays frozen)
    before = {name: [w.copy() for w in detector.get_layer(name).get_weights()] for name in frozen_layers}
    top = detector.get_layer("conv_pw_13").get_weights()[0].copy()
    head = detector.get_layer("retinanet_cls_logits").get_weights()[0].copy()
    out = tmp_path / "retinanet"
    settings = dict(epochs_frozen=2, unfreeze_blocks=1, batch_size=8, learning_rate=3e-3, output_dir=out, quiet=True)
    result = fit_detector(detector, train, validation, epochs_unfrozen=1, **settings)

    losses = [row["loss"] for row in result.history]
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert [row["phase"] for row in result.history] == ["frozen_base", "frozen_base", "top_blocks"]
    assert losses[2] < losses[1] < losses[0] and losses[2] < 0.8 * losses[0], losses
    assert all(0.0 <= row["val_accuracy"] <= 1.0 and row["val_loss"] > 0 for row in result.history)
    assert [row["learning_rate"] for row in result.history] == pytest.approx([3e-3, 3e-3, 3e-4])
    assert result.unfrozen_blocks == ["conv_block_13"] and result.epochs == 3 and result.epochs_run == 3
    assert result.data == {"images": 40, "boxes": int(train.counts.sum()), "dropped_boxes": 0,
                           "images_without_boxes": 0, "clipped_boxes": 0, "resized_from": None}
    for name, weights in before.items():  # the frozen backbone, its BatchNorm statistics included
        for old, new in zip(weights, detector.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(old, new)
    assert not np.array_equal(top, detector.get_layer("conv_pw_13").get_weights()[0])  # unfrozen in phase 2
    assert not np.array_equal(head, detector.get_layer("retinanet_cls_logits").get_weights()[0])
    assert sorted(p.name for p in out.iterdir()) == ["best.keras", "checkpoints", "history.csv", "history.png"]
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    assert (state["epoch"], state["phase"], state["checkpoint"]) == (3, 2, "epoch-003.keras")
    assert state["config"]["detector"] == "retinanet" and state["config"]["preprocessing"] == result.preprocessing

    with pytest.raises(InputError, match="holds a previous run"):
        fit_detector(detector, train, output_dir=out, quiet=True)
    again = fit_detector(_retinanet(), train, validation, epochs_unfrozen=2, resume=True, **settings)
    assert (again.resumed_from, again.epochs, again.epochs_run) == (3, 4, 1)
    assert again.history[:3] == result.history and again.history[3]["phase"] == "top_blocks"
    assert again.history[3]["loss"] < losses[0]

    images = _scaled(validation.images[:4], again.preprocessing)
    expected = again.model.predict(images, verbose=0)
    for path in (again.checkpoint_path, again.best_path):
        loaded = keras.saving.load_model(path, safe_mode=True, custom_objects=detection_custom_objects("keras"))
        if path == again.checkpoint_path:
            for got, want in zip(loaded.predict(images, verbose=0), expected, strict=True):
                np.testing.assert_array_equal(got, want)
    assert again.best_epoch == max(again.history, key=lambda r: r["val_accuracy"])["epoch"]


def test_tf_keras_ssdlite_from_scratch_with_empty_and_degenerate_boxes(tmp_path):
    import tf_keras

    from keras_lightnets.training.detection import detection_custom_objects, fit_detector

    scenes = make_digit_scenes(40, SIZE, "train")
    boxes, classes, counts = scenes.boxes.copy(), scenes.classes.copy(), scenes.counts.copy()
    boxes[1, 0, 2] = boxes[1, 0, 0]  # a zero-width box
    boxes[2, 0] = [SIZE + 5, 10, SIZE + 20, 20]  # a box outside the image
    counts[3] = 0  # an image without boxes
    data = dataclasses.replace(scenes, boxes=boxes, classes=classes, counts=counts)
    out = tmp_path / "ssdlite"
    settings = dict(epochs_frozen=3, backbone_pretrained=False, batch_size=8, learning_rate=3e-3, output_dir=out,
                    quiet=True)
    result = fit_detector(_ssdlite("tf_keras"), data, epochs_unfrozen=0, **settings)

    alone = [int(k == 1) for k in scenes.counts[1:3]]  # images whose only box was dropped
    assert result.data["dropped_boxes"] == 2
    assert result.data["images_without_boxes"] == 1 + sum(alone)
    assert result.data["boxes"] == int(scenes.counts.sum()) - scenes.counts[3] - 2
    losses = [row["loss"] for row in result.history]
    assert losses[2] < losses[1] < losses[0] and losses[2] < 0.85 * losses[0], losses
    assert all(row["phase"] == "scratch" for row in result.history)
    assert all(row["val_loss"] == row["loss"] and row["val_accuracy"] == row["accuracy"] for row in result.history)
    assert (out / "checkpoints" / "epoch-003.keras").is_file() and (out / "best.keras").is_file()

    # Resume into phase 2; the time budget is spent after its first epoch.
    again = fit_detector(_ssdlite("tf_keras"), data, epochs_unfrozen=3, resume=True, time_budget=1e-3, **settings)
    assert (again.resumed_from, again.epochs, again.epochs_run, again.stopped_by_budget) == (3, 4, 1, True)
    assert again.history[:3] == result.history and again.history[3]["phase"] == "scratch_low_lr"
    assert again.history[3]["learning_rate"] == pytest.approx(3e-4)

    images = _scaled(scenes.images[:4], again.preprocessing)
    expected = again.model.predict(images, verbose=0)
    loaded = tf_keras.saving.load_model(again.checkpoint_path, safe_mode=True, compile=False,
                                        custom_objects=detection_custom_objects("tf_keras"))
    for got, want in zip(loaded.predict(images, verbose=0), expected, strict=True):
        np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------- the benchmark


def test_detection_benchmark_trains_evaluates_and_writes_its_report(tmp_path):
    from helpers import first_markdown_table

    from keras_lightnets.pipelines import detection_bench

    recipe = detection_bench.DetectorRecipe("retinanet", BACKBONE, image_size=SIZE, epochs=1, batch_size=8,
                                            options={"fpn_channels": 32, "num_convs": 1})
    benchmark = detection_bench.DetectionBenchmark(recipes=(recipe,), train_scenes=16, validation_scenes=8,
                                                   test_scenes=8, output=str(tmp_path), quiet=True)
    figures = detection_bench.run(benchmark, progress=lambda line: None)
    (entry,) = figures
    detector = recipe.build()
    assert (entry.params, entry.anchors) == (detector.count_params(), len(detector.anchors))
    assert entry.macs > 0 and entry.epochs == 1 and len(entry.history) == 1 and entry.test_images == 8
    assert 0.0 <= entry.map <= entry.map50 <= 1.0 and not entry.stopped_by_budget
    text = detection_bench.write_report(figures, benchmark, "test machine")
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["detection.json", "detection.md",
                                                                         "detection.png"]
    table = first_markdown_table(text)
    assert len(table) == 3 and table[2].startswith(f"| retinanet_{BACKBONE} | 64x64 | ")
    assert f"| {entry.map50:.3f} | {entry.map:.3f} |" in table[2]
    report = json.loads((tmp_path / "detection.json").read_text())
    assert report["machine"] == "test machine" and report["detectors"][entry.name]["map50"] == entry.map50
    assert (tmp_path / entry.name / "best.keras").is_file()


def test_benchmark_tool_parses_its_options(capsys):
    import runpy

    from keras_lightnets.cli import command

    tool = runpy.run_path(str(Path(__file__).resolve().parents[1] / "tools" / "benchmark_detection.py"),
                          run_name="benchmark_detection")
    module = type(command)("benchmark_detection")
    module.__dict__.update(tool)
    assert command.main(module, ["--help"], prog="benchmark_detection.py") == 0
    assert "--time-budget" in capsys.readouterr().out
    assert command.main(module, ["--only", "nothing"], prog="benchmark_detection.py") == 2
    assert "invalid choice: 'nothing'" in capsys.readouterr().err


@pytest.mark.parametrize("augment", [False, True])
def test_qat_fine_tune_trains_as_the_recipe_did(augment, monkeypatch, tmp_path):
    """The export benchmark's QAT fine-tune keeps the float run's optimizer, augmentation, batch
    and loss; only the rate, schedule and epochs are its own."""
    from keras_lightnets.pipelines import detection_bench, detection_export_bench
    from keras_lightnets.training import detection as training_detection

    recipe = detection_bench.DetectorRecipe("ssdlite", BACKBONE, image_size=SIZE, batch_size=8, augment=augment,
                                            optimizer="sgd", clipnorm=3.0, box_weight=2.0,
                                            loss_options={"negative_ratio": 2})
    benchmark = detection_export_bench.DetectionExportBenchmark(recipe=recipe, qat_epochs=3, qat_learning_rate=5e-5)
    seen = {}
    monkeypatch.setattr("keras_lightnets.compression.quantize_aware",
                        lambda model, per_channel: seen.update(per_channel=per_channel) or "qat model")
    monkeypatch.setattr(training_detection, "fit_detector",
                        lambda model, train, validation, **kwargs: seen.update(kwargs, model=model)
                        or dataclasses.make_dataclass("R", ["model"])(model))
    assert detection_export_bench._qat_detector(benchmark, "float model", {"train": 1, "validation": 2},
                                                str(tmp_path)) == "qat model"
    assert seen["model"] == "qat model"
    assert seen["augmentation"] == ("default" if augment else None)
    assert {k: seen[k] for k in ("optimizer", "batch_size", "box_weight", "clipnorm", "loss_options")} == {
        "optimizer": "sgd", "batch_size": 8, "box_weight": 2.0, "clipnorm": 3.0, "loss_options": {"negative_ratio": 2}}
    assert (seen["learning_rate"], seen["epochs_frozen"], seen["epochs_unfrozen"]) == (5e-5, 3, 0)
    assert seen["per_channel"] is True  # int8_qat; int8_qat_per_tensor asks for one range per kernel
    detection_export_bench._qat_detector(benchmark, "float model", {"train": 1, "validation": 2}, str(tmp_path),
                                         per_channel=False)
    assert seen["per_channel"] is False


def test_detection_export_benchmark_measures_its_variants_and_writes_its_report(tmp_path):
    from keras_lightnets.pipelines import detection_bench, detection_export_bench

    recipe = detection_bench.DetectorRecipe("ssdlite", BACKBONE, image_size=SIZE, epochs=1, batch_size=8)
    # int8_ptq: lightnets detect bench's test; per-channel QAT export: test_compression_detection
    variants = ("float", "int8_ptq_per_tensor", "int8_qat_per_tensor")
    benchmark = detection_export_bench.DetectionExportBenchmark(
        recipe=recipe, train_scenes=16, validation_scenes=8, test_scenes=8, calibration=8, runs=2,
        qat_epochs=1, output=str(tmp_path), quiet=True, variants=variants)
    figures = detection_export_bench.run(benchmark, progress=lambda line: None)
    assert tuple(figures.variants) == variants
    for v in figures.variants.values():
        assert 0.0 <= v.tflite_map <= v.tflite_map50 <= 1.0 and 0.0 <= v.box_agreement <= 1.0
        assert v.latency_ms > 0 and 0.0 <= v.keras_map50 <= 1.0
        if v.name != "int8_qat_per_tensor":  # its Keras side is the QAT model the file was made from
            assert v.keras_map50 == pytest.approx(figures.keras_map50, abs=1e-6)
        assert Path(v.path).stat().st_size == v.size_bytes
    for name in variants[1:]:
        assert figures.variants[name].size_bytes < 0.5 * figures.variants["float"].size_bytes
    assert (tmp_path / recipe.name / "qat_per_tensor" / "history.csv").is_file()
    assert [c[0] for c in figures.checks] == [
        "int8_qat_per_tensor mAP@.5 within 1.0 pt of float Keras",
        "int8_ptq_per_tensor mAP@.5 within 2.0 pt of float Keras",
        "int8_ptq_per_tensor file <= 0.30x float", "int8_ptq_per_tensor latency < float",
        "int8_qat_per_tensor file <= 0.30x float", "int8_qat_per_tensor latency < float"]
    text = detection_export_bench.write_report(figures, benchmark, "test machine")
    assert "| int8_ptq_per_tensor |" in text and "| int8_qat_per_tensor |" in text and "Checks:" in text
    # One scale per weight tensor in both files: no per-channel quantization parameters (the QAT
    # detector's BatchNorms were folded into its convolutions, so no conv is left in float).
    from ai_edge_litert.interpreter import Interpreter

    for name in variants[1:]:
        interpreter = Interpreter(model_path=figures.variants[name].path)
        scales = [len(t["quantization_parameters"]["scales"]) for t in interpreter.get_tensor_details()]
        assert max(scales) == 1, name
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
        "detection_export.json", "detection_export.md", "detection_export.png"]
