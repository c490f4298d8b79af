"""``lightnets detect train|eval`` (``cli.detect``, ``cli.detect_train``, ``cli.detect_eval``) and the library
parts they stand on: ``training.detector_record`` (the record beside a run's model, ``load_detector``),
``detection.drawing``, the readers' ``limit``.

Training runs for one epoch on a handful of images with a tiny detector; its models run eagerly
(``eager_fit``): a few steps do not repay tracing the train step (over a minute for this backbone
on a slow machine), and graph-mode training is ``test_detection_training``'s.
"""

from __future__ import annotations

import json
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers import PNG_MAGIC, file_names, image_batch, randomize_weights

from keras_lightnets import files
from keras_lightnets.cli import build_parser, detect, detect_eval, detect_train, main
from keras_lightnets.errors import InputError
from keras_lightnets.training.detector_record import (
    MAX_RECORD_BYTES,
    RECORD_NAME,
    DetectorSpec,
    load_detector,
    read_detector_record,
)

BACKBONE = "mobilenet_v2_035"
SMALLEST_BACKBONE = "mobilenet_v1_025"  # the quickest to build and load, where the backbone does not matter
SIZE = 64
CLASSES = ("block", "bar")
IMAGE_HEIGHT, IMAGE_WIDTH = 48, 64  # the VOC images (resized to SIZE x SIZE for the detector)


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def eager_fit(monkeypatch):
    """``fit_detector`` compiles its models to run eagerly (see the module docstring)."""
    from keras_lightnets.training import detection

    compile_ = detection._compile

    def eager(training, *args, **kwargs):
        compile_(training, *args, **kwargs)
        training.model.run_eagerly = True

    monkeypatch.setattr(detection, "_compile", eager)


def _voc_xml(name: str, objects) -> str:
    """VOC XML of an ``IMAGE_WIDTH`` x ``IMAGE_HEIGHT`` image; ``objects``: (class, xmin, ymin, xmax, ymax),
    1-based inclusive pixels as VOC writes them."""
    parts = [f"<annotation><filename>{name}.png</filename><size><width>{IMAGE_WIDTH}</width>"
             f"<height>{IMAGE_HEIGHT}</height><depth>3</depth></size>"]
    for label, xmin, ymin, xmax, ymax in objects:
        parts.append(f"<object><name>{label}</name><difficult>0</difficult><bndbox><xmin>{xmin}</xmin>"
                     f"<ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>")
    return "".join(parts) + "</annotation>"


def _voc_folder(root: Path, count: int = 8, *, outside: bool = True, only_outside: bool = False) -> Path:
    """A VOC folder of ``count`` PNG images (grey noise, a bright 16x16 block and in odd images a
    6x20 bar). ``outside``: image 0 has a block half outside the image (clipped) and image 1 a bar
    wholly outside it (dropped); ``only_outside``: each image has one box, wholly outside it."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for i in range(count):
        image = rng.integers(40, 80, (IMAGE_HEIGHT, IMAGE_WIDTH, 3)).astype(np.uint8)
        objects = []
        if not only_outside:
            x, y = (int(v) for v in rng.integers(0, [IMAGE_WIDTH - 16, IMAGE_HEIGHT - 16]))
            image[y:y + 16, x:x + 16] = (230, 60, 60)
            objects.append(("block", x + 1, y + 1, x + 16, y + 16))
            if i % 2:
                x, y = (int(v) for v in rng.integers(0, [IMAGE_WIDTH - 6, IMAGE_HEIGHT - 20]))
                image[y:y + 20, x:x + 6] = (60, 60, 230)
                objects.append(("bar", x + 1, y + 1, x + 6, y + 20))
        if outside and i == 0:
            objects.append(("block", 56, 10, 72, 25))  # x 55..72 of a 64-wide image: clipped to 55..64
        if (outside and i == 1) or only_outside:
            objects.append(("bar", 70, 5, 90, 25))  # wholly right of the image: dropped
        (root / "JPEGImages" / f"{i:03d}.png").write_bytes(tf.io.encode_png(image).numpy())
        (root / "Annotations" / f"{i:03d}.xml").write_text(_voc_xml(f"{i:03d}", objects))
    return root


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("always", UserWarning)  # the suite hides them; the command shows its own
        code = main(["detect", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("lightnets: warning: ")]


TINY_RETINANET = ["--detector", "retinanet", "--backbone", BACKBONE, "--input-size", str(SIZE), "--fpn-channels",
                  "8", "--num-convs", "1", "--anchor-size", "8", "--weights", "none"]
TINY_SSDLITE = ["--detector", "ssdlite", "--backbone", BACKBONE, "--input-size", str(SIZE), "--width", "0.25",
                "--weights", "none"]
ONE_EPOCH = ["--epochs", "1", "--batch-size", "8", "--no-augment"]


# --------------------------------------------------------------------------- the group


def test_detect_is_a_group_whose_subcommands_run_as_their_own_modules(capsys):
    args = build_parser().parse_args(["detect", "eval", "--model", "run", "--data", "digits"])
    assert args.subcommand is detect_eval and args.detect_command == "eval"  # its INTERRUPTED, error_hint
    args = build_parser().parse_args(["detect", "train", "--data", "digits", "--detector", "ssdlite"])
    assert args.subcommand is detect_train and args.subcommand.INTERRUPTED.startswith(" (completed epochs")
    assert list(detect.subcommands()) == list(detect.SUBCOMMANDS) == ["train", "eval", "export", "bench"]
    with pytest.raises(SystemExit) as info:
        main(["detect"])
    assert info.value.code == 2 and "required: SUBCOMMAND" in capsys.readouterr().err
    assert detect.main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lightnets: error: ") and "invalid choice" in err


# --------------------------------------------------------------------------- train and eval


def test_train_and_eval_on_a_voc_folder(tmp_path, capsys, eager_fit):
    import keras

    from keras_lightnets.data.detection_sources import load_detection_data, to_arrays
    from keras_lightnets.detection import metrics
    from keras_lightnets.detection.drawing import grid_size
    from keras_lightnets.detection.evaluation import predict_detections

    voc, run, evaluation = _voc_folder(tmp_path / "voc"), tmp_path / "run", tmp_path / "eval"
    code, out, err = _run(capsys, ["train", "--data", str(voc), "--classes", ",".join(CLASSES), *TINY_RETINANET,
                                   *ONE_EPOCH, "--output", str(run)])
    assert code == 0, err
    # the box half outside its image is clipped, the one wholly outside dropped: counted, one warning line
    (warning,) = _warnings(err)
    assert "1 box clipped to its image" in warning and "1 box outside its image or empty, dropped" in warning
    last = out.splitlines()[-1]  # after Keras' line per epoch
    assert last.startswith("best validation foreground accuracy ") and last.endswith(f"record: {run / RECORD_NAME}")
    assert {"best.keras", RECORD_NAME, "history.csv", "history.png", "checkpoints"} <= set(file_names(run))
    record = json.loads((run / RECORD_NAME).read_text())
    assert (record["kind"], record["backbone"], record["num_classes"], record["input_size"]) == (
        "retinanet", BACKBONE, 2, [SIZE, SIZE])
    assert record["options"] == {"fpn_channels": 8, "num_convs": 1, "anchor_size": 8}
    assert record["class_names"] == list(CLASSES) and record["preprocessing"] == "tf"
    data = record["training"]["data"]
    assert data["dropped"] == {"box_clipped": 1, "box_degenerate": 1} and data["images"] == 7  # 1 of 8 held out
    assert record["training"]["validation"]["images"] == 1 and record["training"]["backbone_weights"] is None

    # load_detector: the saved weights, on the detector rebuilt from the record (anchors, info)
    detector = load_detector(run)
    saved = keras.saving.load_model(run / "best.keras", compile=False, safe_mode=True)
    for got, want in zip(detector.get_weights(), saved.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    assert len(detector.anchors) == saved.outputs[0].shape[1] and detector.detector_info["anchor_size"] == 8
    assert detector.detector_spec == read_detector_record(run)

    code, out, err = _run(capsys, ["eval", "--model", str(run), "--data", str(voc), "--show", "5", "--output",
                                   str(evaluation)])
    assert code == 0, err
    assert out.splitlines()[1:] == [f"wrote {evaluation / 'eval.json'}", f"wrote {evaluation / 'detections.png'}"]
    report = json.loads((evaluation / "eval.json").read_text())
    assert (report["images"], report["boxes"]) == (8, 8 + 4 + 1)  # a block each, a bar in odd images, the clipped one
    assert report["data"]["dropped"] == {"box_clipped": 1, "box_degenerate": 1}
    for value in (report["coco"]["map"], report["coco"]["map50"], report["voc07"]["map"]):
        assert 0.0 <= value <= 1.0
    assert list(report["coco"]["per_class_map"]) == list(CLASSES) == list(report["voc07"]["per_class"])
    # the report's figures are those of the model's detections on those images
    arrays = to_arrays(load_detection_data(voc, None, class_names=CLASSES), SIZE)
    found = predict_detections(detector, arrays.images, preprocessing="tf")
    truth = metrics.ground_truth_from_arrays(arrays.boxes, arrays.classes, arrays.counts)
    expected = metrics.coco_map(truth, found, num_classes=2)
    assert report["detections"] == sum(len(d["classes"]) for d in found)
    assert report["coco"]["map50"] == pytest.approx(expected["map50"]) and report["coco"]["map"] == pytest.approx(
        expected["map"])
    assert _png_size(evaluation / "detections.png") == grid_size(5) == (4 * 256, 2 * 256)


def test_train_and_eval_on_digits_from_a_checkpoint_quietly(tmp_path, capsys, eager_fit):
    from keras_lightnets.detection.drawing import grid_size

    run, evaluation = tmp_path / "run", tmp_path / "eval"
    code, out, err = _run(capsys, ["train", "--data", "digits", "--limit", "16", *TINY_SSDLITE, *ONE_EPOCH,
                                   "--output", str(run), "--quiet"])
    assert code == 0, err
    assert (out, err) == (f"{run / 'best.keras'}\n", "")
    record = json.loads((run / RECORD_NAME).read_text())
    assert record["class_names"] == [str(d) for d in range(10)] and record["num_classes"] == 11  # + background
    assert record["training"]["data"]["source"] == "digits:train" and record["training"]["data"]["images"] == 16
    assert record["training"]["validation"]["source"] == "digits:validation"
    # a checkpoint's record is its run folder's
    code, out, err = _run(capsys, ["eval", "--model", str(run / "checkpoints" / "epoch-001.keras"), "--data",
                                   "digits", "--limit", "8", "--show", "3", "--output", str(evaluation), "--quiet"])
    assert code == 0, err
    assert (out, err) == (f"{evaluation / 'eval.json'}\n", "")
    report = json.loads((evaluation / "eval.json").read_text())
    assert report["data"]["source"] == "digits:test" and report["images"] == 8 and report["boxes"] > 8
    assert report["model"]["path"] == str(run / "checkpoints" / "epoch-001.keras")
    for value in (report["coco"]["map"], report["coco"]["map50"], report["coco"]["mar_100"], report["voc07"]["map"]):
        assert 0.0 <= value <= 1.0
    assert _png_size(evaluation / "detections.png") == grid_size(3) == (3 * 256, 256)
    # the same run again needs --resume or --overwrite, and --resume the run's arguments
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    code, _, err = _run(capsys, ["train", "--data", "digits", "--limit", "16", *TINY_SSDLITE, *ONE_EPOCH,
                                 "--output", str(run), "--quiet"])
    assert code == 2 and "holds a previous run" in err and err.count("\n") == 1
    changed = [arg if arg != "0.25" else "0.5" for arg in TINY_SSDLITE]
    code, _, err = _run(capsys, ["train", "--data", "digits", "--limit", "16", *changed, *ONE_EPOCH, "--output",
                                 str(run), "--resume", "--quiet"])
    assert code == 2 and "--resume: the run" in err and "'options'" in err and err.count("\n") == 1
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before


# --------------------------------------------------------------------------- the record and load_detector


def test_load_detector_round_trip_and_a_model_that_does_not_fit_its_record(tmp_path):
    spec = DetectorSpec("ssdlite", SMALLEST_BACKBONE, 3, (SIZE, SIZE), ("a", "b"), {"width": 0.25})
    detector = spec.build()
    randomize_weights(detector, seed=1)
    files.save_model(detector, tmp_path / "best.keras")
    files.write_json(tmp_path / RECORD_NAME, detector.detector_spec.as_record(note="ignored"))
    loaded = load_detector(tmp_path / "best.keras")
    np.testing.assert_array_equal(loaded.anchors, detector.anchors)
    assert loaded.detector_info == detector.detector_info and loaded.detector_spec == detector.detector_spec
    assert loaded.detector_spec.preprocessing == "tf" and loaded.detector_spec.foreground_classes == 2
    images = image_batch(SIZE, 2)
    for got, want in zip(loaded.predict(images, verbose=0), detector.predict(images, verbose=0), strict=True):
        np.testing.assert_array_equal(got, want)
    # a record of another size or width: refused before any weight is copied
    for change, words in ((dict(input_size=[96, 96]), "inputs have the shapes"),
                          (dict(options={"width": 0.5}), "its weight")):
        files.write_json(tmp_path / RECORD_NAME, {**detector.detector_spec.as_record(), **change})
        with pytest.raises(InputError, match=f"is not the detector its record .*{words}"):
            load_detector(tmp_path)


def _broken_runs(tmp: Path) -> dict[str, tuple[Path, str]]:
    """Run folders whose record is missing or unusable (their best.keras is never read)."""
    good = DetectorSpec("ssdlite", BACKBONE, 11, (SIZE, SIZE), tuple("0123456789"), preprocessing="tf").as_record()
    records = {
        "no record": None,
        "garbled record": b"{not json",
        "foreign record": json.dumps({"format": "something else"}).encode(),
        "oversized record": b" " * (MAX_RECORD_BYTES + 1),
        "unknown backbone": json.dumps({**good, "backbone": "resnet50"}).encode(),
        "names of other classes": json.dumps({**good, "class_names": ["a", "b"]}).encode(),
        "tf_keras record": json.dumps({**good, "flavour": "tf_keras"}).encode(),
    }
    words = {"no record": f"has no {RECORD_NAME}", "garbled record": "is not valid JSON",
             "foreign record": "is not a detector record", "oversized record": "the limit is",
             "unknown backbone": "backbone must be a registered model name",
             "names of other classes": "class_names must name the 10 foreground classes",
             "tf_keras record": "flavour 'tf_keras' is not supported"}
    runs = {}
    for case, contents in records.items():
        folder = tmp / case.replace(" ", "_")
        folder.mkdir()
        (folder / "best.keras").write_bytes(b"never read")
        if contents is not None:
            (folder / RECORD_NAME).write_bytes(contents)
        runs[case] = (folder, words[case])
    return runs


@pytest.mark.parametrize("case", ["no record", "garbled record", "foreign record", "oversized record",
                                  "unknown backbone", "names of other classes", "tf_keras record"])
def test_eval_refuses_a_run_without_a_usable_record(case, tmp_path, capsys):
    folder, words = _broken_runs(tmp_path)[case]
    code, out, err = _run(capsys, ["eval", "--model", str(folder), "--data", "digits", "--output",
                                   str(tmp_path / "eval")])
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("lightnets: error: "), err
    assert words in err and str(folder) in err
    assert not (tmp_path / "eval").exists()
    with pytest.raises(InputError, match=words):
        load_detector(folder)


# --------------------------------------------------------------------------- bad input


def _bad_train_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    voc = _voc_folder(tmp / "voc", count=2, outside=False)
    (tmp / "empty").mkdir()
    (tmp / "no_xml" / "Annotations").mkdir(parents=True)
    _voc_folder(tmp / "outside", count=2, only_outside=True)
    (tmp / "coco" / "annotations").mkdir(parents=True)
    for name in ("instances_a.json", "instances_b.json"):
        (tmp / "coco" / "annotations" / name).write_text("{}")
    data = ["--data", str(voc)]
    return {
        "empty folder": (["--data", str(tmp / "empty"), *TINY_SSDLITE], "has no annotations"),
        "VOC folder without annotation files": (["--data", str(tmp / "no_xml"), *TINY_SSDLITE],
                                                "has no annotations (no .xml file"),
        "unknown class name": ([*data, "--classes", "block", *TINY_SSDLITE],
                               "class 'bar' is not one of the class names ('block'); list every class of the data "
                               "with --classes"),
        "VOC classes by default": ([*data, *TINY_SSDLITE], "class 'block' is not one of the class names ('aeroplane',"),
        "every box outside its image": (["--data", str(tmp / "outside"), "--classes", "block,bar", *TINY_SSDLITE],
                                        "has no object boxes"),
        "unknown detector kind": ([*data, "--detector", "yolo"], "--detector must be one of ssd, ssdlite, retinanet"),
        "unknown backbone": ([*data, "--detector", "ssdlite", "--backbone", "resnet50"],
                             "--backbone must be a registered classifier name"),
        "no backbone": ([*data, "--detector", "retinanet"], "--detector retinanet needs --backbone"),
        "option of another detector": ([*data, *TINY_SSDLITE, "--fpn-channels", "8"],
                                       "--fpn-channels does not apply to --detector ssdlite"),
        "backbone of a preset": ([*data, "--detector", "mb2_ssd_lite", "--backbone", BACKBONE],
                                 "--backbone does not apply to the preset mb2_ssd_lite"),
        "size of a preset": ([*data, "--detector", "mb2_ssd_lite", "--input-size", "64"],
                             "the preset mb2_ssd_lite takes 300x300 images"),
        "input too small": ([*data, *TINY_SSDLITE, "--input-size", "16"], "--input-size must be at least 32"),
        "classes of the digits": (["--data", "digits", "--classes", "a,b", *TINY_SSDLITE],
                                  "--classes applies to VOC and COCO data"),
        "COCO folder with two files": (["--data", str(tmp / "coco"), *TINY_SSDLITE], "holds several .json files"),
        "validation fraction": ([*data, "--classes", "block,bar", *TINY_SSDLITE, "--validation", "1.5"],
                                "--validation as a fraction"),
        "missing data": (["--data", str(tmp / "nope"), *TINY_SSDLITE], "--data must be"),
    }


BAD_TRAIN = ["empty folder", "VOC folder without annotation files", "unknown class name", "VOC classes by default",
             "every box outside its image",
             "unknown detector kind", "unknown backbone", "no backbone", "option of another detector",
             "backbone of a preset", "size of a preset", "input too small", "classes of the digits",
             "COCO folder with two files", "validation fraction", "missing data"]


@pytest.mark.parametrize("case", BAD_TRAIN)
def test_train_bad_input_exits_2_with_one_line_naming_the_problem(case, tmp_path, capsys):
    argv, words = _bad_train_inputs(tmp_path)[case]
    code, out, err = _run(capsys, ["train", *argv, "--output", str(tmp_path / "run"), "--quiet"])
    lines = err.splitlines()
    assert code == 2 and out == "", err
    assert lines[-1].startswith("lightnets: error: ") and words in lines[-1], err
    assert all(line.startswith("lightnets: warning: ") for line in lines[:-1]), err  # e.g. the dropped boxes
    assert not (tmp_path / "run").exists()


def test_eval_refuses_data_of_classes_the_model_does_not_know(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.keras").write_bytes(b"never read")
    spec = DetectorSpec("retinanet", BACKBONE, 1, (SIZE, SIZE), ("block",), preprocessing="tf")
    files.write_json(run / RECORD_NAME, spec.as_record())
    voc = _voc_folder(tmp_path / "voc", count=2, outside=False)
    for data, words in ((str(voc), "class 'bar' is not one of the class names ('block'); the model detects only "
                                   "those classes"),
                        ("digits", "--data names the classes")):
        code, out, err = _run(capsys, ["eval", "--model", str(run), "--data", data, "--output", str(tmp_path / "e")])
        assert code == 2 and out == "" and err.count("\n") == 1 and words in err, err
    assert not (tmp_path / "e").exists()


# --------------------------------------------------------------------------- library parts


def test_readers_limit_reads_the_first_images(tmp_path):
    from keras_lightnets.data.detection_sources import load_detection_data
    from keras_lightnets.data.digit_scenes import make_digit_scenes

    voc = _voc_folder(tmp_path / "voc", count=5, outside=False)
    data = load_detection_data(voc, None, class_names=CLASSES, limit=3)
    assert [Path(e.image).name for e in data.examples] == ["000.png", "001.png", "002.png"]
    digits = load_detection_data("digits", "test", limit=4)
    scenes = make_digit_scenes(4, 128, "test", seed=0)
    assert len(digits) == 4
    np.testing.assert_array_equal(digits.examples[3].image, scenes.images[3])
    with pytest.raises(InputError, match="`limit` must be None or a positive int"):
        load_detection_data(voc, None, class_names=CLASSES, limit=0)
    with pytest.raises(InputError, match="`class_names` applies to VOC folders and COCO files"):
        load_detection_data("digits", "test", class_names=("a",))


def test_run_files_are_plain_json_documents_beside_the_run_files():
    from keras_lightnets.training.run_folder import check_documents

    assert check_documents(None) == {} and check_documents({RECORD_NAME: {"a": [1]}}) == {RECORD_NAME: {"a": [1]}}
    for name in ("best.keras", "state.json", "../detector.json", "sub/detector.json", ".hidden.json", "notes.txt"):
        with pytest.raises(InputError, match=r"`run_files` names must be plain \.json file names"):
            check_documents({name: {}})
    with pytest.raises(InputError, match=r"`run_files\['x.json'\]` is not JSON data"):
        check_documents({"x.json": {"value": float("nan")}})


def test_a_coco_folder_is_read_through_its_instances_file(tmp_path):
    from keras_lightnets.cli import _detect

    folder = tmp_path / "coco"
    (folder / "annotations").mkdir(parents=True)
    (folder / "val2017").mkdir()
    (folder / "val2017" / "a.png").write_bytes(b"not decoded here")
    document = {"images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}],
                "categories": [{"id": 3, "name": "zebra"}, {"id": 1, "name": "ant"}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [2, 4, 10, 6], "iscrowd": 0}]}
    (folder / "annotations" / "instances_val2017.json").write_text(json.dumps(document))
    for split in (None, "val2017"):  # the only .json file, or the one the split names
        data = _detect.read_split(str(folder), split, "eval")
        assert data.source == f"coco:{folder / 'annotations' / 'instances_val2017.json'}"
        assert data.class_names == ("ant", "zebra") and data.examples[0].boxes.tolist() == [[2, 4, 12, 10]]
    reordered = _detect.read_split(str(folder), None, "eval", class_names=("zebra", "ant"))
    assert reordered.examples[0].classes.tolist() == [0]
    with pytest.raises(InputError, match=r"--split 'train2017': --data folder .* has no instances_train2017.json"):
        _detect.read_split(str(folder), "train2017", "train")
    with pytest.raises(InputError, match=r"class 'zebra' .* is not one of the class names \('ant'\); the model knows"):
        _detect.read_split(str(folder), None, "eval", class_names=("ant",), classes_hint="the model knows ant")


def test_a_preset_spec_builds_with_the_data_classes_and_takes_raw_pixels():
    spec = DetectorSpec("mb2_ssd_lite", None, 3, (300, 300), ("a", "b"))
    detector = spec.build()
    assert detector.detector_info["num_classes"] == 3 and len(detector.anchors) == 3000
    assert tuple(detector.outputs[0].shape) == (None, 3000, 3)
    assert detector.detector_spec.preprocessing == "in_model" and detector.detector_spec.family == "ssdlite"
    with pytest.raises(InputError, match="preset 'mb2_ssd_lite' takes 300x300 images"):
        DetectorSpec("mb2_ssd_lite", None, 3, (64, 64), ("a", "b")).build()
    with pytest.raises(InputError, match="preset 'mb2_ssd_lite' has its own backbone"):
        DetectorSpec("mb2_ssd_lite", BACKBONE, 3, (300, 300), ("a", "b"))
    with pytest.raises(InputError, match="option 'fpn_channels' does not apply to 'ssdlite'"):
        DetectorSpec("ssdlite", BACKBONE, 3, (64, 64), ("a", "b"), {"fpn_channels": 8})


def test_draw_detections_grid_draws_each_set_in_its_colour(tmp_path):
    import matplotlib.image

    from keras_lightnets.detection.drawing import draw_detections_grid, grid_size

    images = np.zeros((3, 32, 32, 3), np.uint8)
    truth = [{"boxes": [[4, 4, 20, 20]], "classes": [0]}] * 3
    found_a = [{"boxes": [[8, 8, 28, 28]], "scores": [0.9], "classes": [1]},
               {"boxes": np.zeros((0, 4)), "scores": [], "classes": []},
               {"boxes": [[2, 2, 30, 30]], "scores": [0.1], "classes": [0]}]  # below min_score: not drawn
    found_b = [{"boxes": [[10, 10, 30, 30]], "scores": [0.8], "classes": [1]}] * 3
    path = tmp_path / "grid.png"
    size = draw_detections_grid(images, found_a, found_b, truth, path=path, class_names=("x", "y"), columns=2,
                                panel_size=128)
    assert size == grid_size(3, columns=2, panel_size=128, pairs=True) == (512, 256) == _png_size(path)
    pixels = matplotlib.image.imread(path)[..., :3]  # (256, 512, 3) floats in [0, 1]
    bright, dark = pixels > 0.6, pixels < 0.45
    only = {"red": bright[..., 0] & dark[..., 1] & dark[..., 2], "green": bright[..., 1] & dark[..., 0] & dark[..., 2],
            "blue": bright[..., 2] & dark[..., 0]}

    def lit(mask, panel_row, panel):  # a 32-pixel image in a 128-pixel panel: 4 panel pixels per image pixel
        return mask[panel_row * 128:(panel_row + 1) * 128, panel * 128:(panel + 1) * 128]

    # image 0: truth (green) in both panels, a's box (red) in the left one, b's (blue) in the right one
    assert lit(only["green"], 0, 0)[16:80, 14:19].any() and lit(only["green"], 0, 1)[16:80, 14:19].any()
    assert lit(only["red"], 0, 0)[40:112, 30:35].any() and not lit(only["red"], 0, 1).any()
    assert lit(only["blue"], 0, 1)[40:120, 38:43].any() and not lit(only["blue"], 0, 0).any()
    # image 2 (second row): its only a-detection scores below min_score
    assert not lit(only["red"], 1, 0).any() and lit(only["green"], 1, 0).any()
    with pytest.raises(InputError, match="`detections_a` must be a list of 3 per-image dicts"):
        draw_detections_grid(images, found_a[:2], path=tmp_path / "x.png")
    with pytest.raises(InputError, match=r"`truth\[0\]` must be a dict with boxes, classes"):
        draw_detections_grid(images, found_a, truth=[{"boxes": [[0, 0, 1, 1]]}] * 3, path=tmp_path / "x.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png"]  # nothing half-written
