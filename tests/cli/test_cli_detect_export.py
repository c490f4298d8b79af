"""``lightnets detect export|bench`` (``cli.detect_export``, ``cli.detect_bench``) on a detector trained by
``lightnets detect train``, and the library parts they added (``export.verify_detection.tflite_detections``,
``detection.evaluation.detector_inputs``).

One tiny SSDLite is trained once for the module (one epoch on 16 digit scenes at 64 px, run
eagerly as in ``test_cli_detect``); its boxes are poor, so what is asserted is what holds for any
weights: the files, their structure, that the reports' figures are those of the files, and that
bad input exits 2 with one line and writes nothing.
"""

from __future__ import annotations

import json
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers import PNG_MAGIC, file_names

from keras_lightnets.cli import build_parser, detect, detect_bench, detect_export, main
from keras_lightnets.training.detector_record import RECORD_NAME

pytestmark = pytest.mark.xdist_group("cli_detect_export")

SIZE = 64
TINY_SSDLITE = ["--detector", "ssdlite", "--backbone", "mobilenet_v2_035", "--input-size", str(SIZE), "--width",
                "0.25", "--weights", "none"]
DIGITS = tuple(str(d) for d in range(10))
FEW = ["--calibration", "4", "--verify-samples", "6"]


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("always", UserWarning)
        try:
            code = main(["detect", *argv])
        except SystemExit as done:  # argparse's usage errors
            code = done.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """A `detect train` run: the tiny SSDLite, one epoch on 16 digit scenes (its models run eagerly)."""
    from keras_lightnets.training import detection

    compile_ = detection._compile

    def eager(training, *args, **kwargs):
        compile_(training, *args, **kwargs)
        training.model.run_eagerly = True

    folder = tmp_path_factory.mktemp("detect_export") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(detection, "_compile", eager)
        code = main(["detect", "train", "--data", "digits", "--limit", "16", *TINY_SSDLITE, "--epochs", "1",
                     "--batch-size", "8", "--no-augment", "--output", str(folder), "--quiet"])
    assert code == 0
    return folder


@pytest.fixture(scope="module")
def detector(run_folder):
    from keras_lightnets.training.detector_record import load_detector

    return load_detector(run_folder)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _test_scenes(count: int):
    """The first ``count`` digit test scenes at the detector's size, as ``detect export`` reads them."""
    from keras_lightnets.data.detection_sources import load_detection_data, to_arrays

    return to_arrays(load_detection_data("digits", "test", limit=count), SIZE)


# --------------------------------------------------------------------------- the group


def test_export_and_bench_are_subcommands_of_detect():
    assert list(detect.SUBCOMMANDS) == ["train", "eval", "export", "bench"]
    args = build_parser().parse_args(["detect", "export", "--model", "run", "--output", "d.tflite"])
    assert args.subcommand is detect_export and (args.quantization, args.postprocess) == ("none", "regular")
    args = build_parser().parse_args(["detect", "bench", "--model", "run"])
    assert args.subcommand is detect_bench and args.output == detect_bench.DEFAULT_OUTPUT


# --------------------------------------------------------------------------- export


def test_int8_export_with_verify(run_folder, detector, tmp_path, capsys):
    from keras_lightnets.detection.evaluation import detector_inputs
    from keras_lightnets.export import verify_tflite
    from keras_lightnets.export.detectors import OUTPUT_NAMES, postprocess_options

    out = tmp_path / "digits.tflite"
    code, stdout, err = _run(capsys, ["export", "--model", str(run_folder), "--output", str(out), "-q", "int8",
                                      "--verify", *FEW, "--max-detections", "20", "--score-threshold", "0.1"])
    assert code == 0, err
    assert file_names(tmp_path) == ["digits.json", "digits.labels.txt", "digits.tflite", "digits.verify.png"]
    lines = stdout.splitlines()
    assert lines[0].startswith(f"wrote {out} (") and "int8, input int8 [1, 64, 64, 3]" in lines[0]
    assert lines[-3:] == [f"wrote {tmp_path / 'digits.labels.txt'}", f"wrote {tmp_path / 'digits.json'}",
                          f"wrote {tmp_path / 'digits.verify.png'}"]
    assert (tmp_path / "digits.labels.txt").read_text() == "".join(f"{d}\n" for d in DIGITS)

    report = json.loads((tmp_path / "digits.json").read_text())
    export = report["export"]
    # int8 up to TFLite_Detection_PostProcess, whose outputs are the TF OD API's, in order
    assert export["quantization"] == "int8" and export["inputs"][0]["dtype"] == "int8"
    assert set(export["float_ops"]) == {"DEQUANTIZE", "CUSTOM:TFLite_Detection_PostProcess"}
    assert [t["name"] for t in export["outputs"]] == list(OUTPUT_NAMES) == report["metadata"]["outputs"]
    assert export["representative_samples"] == 4 and report["data"]["calibration"]["source"] == "digits:train"
    assert export["delegate_partitions"] >= 1 and export["ops_outside_delegate"]["TFLite_Detection_PostProcess"] == 1
    assert export["detection"]["max_detections"] == 20 and export["detection"]["postprocess"] == "regular"
    options = postprocess_options(out)
    assert options["max_detections"] == 20 and options["nms_score_threshold"] == pytest.approx(0.1)
    # the metadata an app needs: labels, input size and normalisation, anchors in the op's convention
    metadata = report["metadata"]
    assert metadata["labels"] == list(DIGITS) and metadata["num_classes"] == 10
    assert metadata["input"]["height"] == metadata["input"]["width"] == SIZE
    assert metadata["input"]["preprocessing"] == report["model"]["preprocessing"] == "tf"
    assert len(metadata["anchors_cychw"]) == len(detector.anchors) == export["detection"]["anchors"]
    # the verify report is the file's, on the first test scenes
    verify = report["verify"]
    assert report["data"]["test"]["source"] == "digits:test" and verify["samples"] == 6
    scenes = _test_scenes(6)
    again = verify_tflite(out, detector, detector_inputs(scenes.images, "tf"), ground_truth=scenes)
    assert verify["box_agreement"] == pytest.approx(again.box_agreement)
    assert verify["tflite_map50"] == pytest.approx(again.tflite_map50)
    assert verify["keras_map50"] == pytest.approx(again.keras_map50) and 0.0 <= verify["keras_map50"] <= 1.0
    assert verify["postprocess"] == "regular" and verify["input_dtype"] == "int8"
    assert report["outputs"]["tflite"] == str(out)
    # six images, two panels (Keras, LiteRT) each, four images to a row
    assert _png_size(tmp_path / "digits.verify.png") == (4 * 2 * 256, 2 * 256)


def test_raw_export_keeps_the_heads(run_folder, detector, tmp_path, capsys):
    from keras_lightnets.detection.evaluation import detector_inputs, predict_detections
    from keras_lightnets.export.detectors import postprocess_options
    from keras_lightnets.export.verify_detection import tflite_detections

    out = tmp_path / "raw.tflite"
    code, stdout, err = _run(capsys, ["export", "--model", str(run_folder), "--output", str(out), "--postprocess",
                                      "raw", "--strip-names", "--quiet"])
    assert code == 0 and err == "", err
    first = stdout.splitlines()[0]
    assert first.startswith(f"wrote {out} (") and first.endswith("float32 [1, 64, 64, 3]; raw outputs (class logits, "
                                                                   "box deltas))")
    assert file_names(tmp_path) == ["raw.json", "raw.labels.txt", "raw.tflite"]  # no picture without --verify
    report = json.loads((tmp_path / "raw.json").read_text())
    export = report["export"]
    assert export["quantization"] == "none" and export["float_ops"] and export["strip_names"] is True
    assert sorted(tuple(t["shape"]) for t in export["outputs"]) == sorted(
        [(1, len(detector.anchors), 11), (1, len(detector.anchors), 4)])
    assert "CUSTOM:TFLite_Detection_PostProcess" not in export["op_counts"] and postprocess_options(out) is None
    assert report["metadata"]["outputs"] == ["classes", "boxes"] and report["verify"] is None
    assert report["data"] == {"source": "digits", "calibration": None, "test": None}
    # the float file's detections, decoded in NumPy, are the Keras detector's
    scenes = _test_scenes(3)
    lite = tflite_detections(out, detector, detector_inputs(scenes.images, "tf"))
    keras = predict_detections(detector, scenes.images, preprocessing="tf")
    for a, b in zip(lite, keras, strict=True):
        assert len(a["scores"]) == len(b["scores"]) > 0
        np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-4)
        np.testing.assert_allclose(a["boxes"], b["boxes"], atol=1e-2)
        np.testing.assert_array_equal(a["classes"], b["classes"])


# --------------------------------------------------------------------------- bench


def test_bench_writes_its_report(run_folder, tmp_path, capsys):
    folder = tmp_path / "bench"
    code, stdout, err = _run(capsys, ["bench", "--model", str(run_folder), "--output", str(folder), "--calibration",
                                      "4", "--samples", "4", "--runs", "3", "--quiet"])
    assert code == 0 and err == "", err
    assert file_names(folder) == ["bench.json", "bench.md", "float.tflite", "int8_ptq.tflite"]
    table = (folder / "bench.md").read_text()
    assert stdout.startswith(table) and stdout.endswith(f"wrote {folder / 'int8_ptq.tflite'}\n")
    rows = [line for line in table.splitlines() if line.startswith("| float") or line.startswith("| int8_ptq")]
    assert [row.split(" | ")[0] for row in rows] == ["| float", "| int8_ptq"]
    report = json.loads((folder / "bench.json").read_text())
    variants = report["variants"]
    assert list(variants) == ["float", "int8_ptq"] and report["settings"]["runs"] == 3
    assert report["data"]["calibration"]["images"] == 4 and report["data"]["test"]["images"] == 4
    for name, figures in variants.items():
        assert figures["path"] == str(folder / f"{name}.tflite")
        assert figures["size_bytes"] == (folder / f"{name}.tflite").stat().st_size
        assert figures["latency_ms"] > 0 and figures["delegate_partitions"] >= 1
        assert figures["ops_outside_delegate"].get("TFLite_Detection_PostProcess") == 1
        assert 0.0 <= figures["tflite_map50"] <= 1.0 and 0.0 <= figures["box_agreement"] <= 1.0
    assert variants["int8_ptq"]["size_bytes"] < 0.5 * variants["float"]["size_bytes"]
    assert variants["float"]["keras_map50"] == pytest.approx(variants["int8_ptq"]["keras_map50"])  # same images


# --------------------------------------------------------------------------- bad input


def _bad_inputs(tmp: Path, run_folder: Path) -> dict[str, tuple[list[str], str]]:
    """``detect export|bench`` arguments (without --output) and the words of their error line."""
    from keras_lightnets import files

    voc_run = tmp / "voc_run"  # a run whose record names VOC training data (its model is never read)
    voc_run.mkdir()
    (voc_run / "best.keras").write_bytes(b"never read")
    record = json.loads((run_folder / RECORD_NAME).read_text())
    record["training"]["data"]["source"] = "voc:/nowhere:trainval"
    files.write_json(voc_run / RECORD_NAME, record)
    (tmp / "empty").mkdir()
    (tmp / "no_xml" / "Annotations").mkdir(parents=True)
    (tmp / "broken").mkdir()
    (tmp / "broken" / "best.keras").write_bytes(b"never read")
    (tmp / "broken" / RECORD_NAME).write_text("{not json")
    run = ["--model", str(run_folder)]
    return {
        "no model": (["export", "--model", str(tmp / "nope")], "--model: the detector must be a run folder"),
        "no record": (["export", "--model", str(tmp / "empty")], "has no best.keras"),
        "garbled record": (["export", "--model", str(tmp / "broken")], "is not valid JSON"),
        "unknown quantization": (["export", *run, "-q", "int4"], "argument -q/--quantization: invalid choice"),
        "unknown postprocess": (["export", *run, "--postprocess", "nms"], "argument --postprocess: invalid choice"),
        "int8 without data": (["export", "--model", str(voc_run), "-q", "int8"],
                              "--quantization int8 needs --data for calibration images"),
        "verify without data": (["export", "--model", str(voc_run), "--verify"], "--verify needs --data"),
        "empty data folder": (["export", *run, "-q", "int8", "--data", str(tmp / "empty")], "has no annotations"),
        "unannotated VOC folder": (["export", *run, "--verify", "--data", str(tmp / "no_xml")],
                                   "has no annotations (no .xml file"),
        "missing data": (["export", *run, "-q", "int8", "--data", str(tmp / "nope")], "--data must be"),
        "score threshold": (["export", *run, "--score-threshold", "1.5"], "must be a number in [0, 1)"),
        "bench without data": (["bench", "--model", str(voc_run)], "bench needs --data"),
        "bench on an empty folder": (["bench", *run, "--data", str(tmp / "empty")], "has no annotations"),
    }


BAD = ["no model", "no record", "garbled record", "unknown quantization", "unknown postprocess", "int8 without data",
       "verify without data", "empty data folder", "unannotated VOC folder", "missing data", "score threshold",
       "bench without data", "bench on an empty folder"]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case, run_folder, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    argv, words = _bad_inputs(inputs, run_folder)[case]
    out = tmp_path / "out"
    out.mkdir()
    output = ["--output", str(out / "d.tflite")] if argv[0] == "export" else ["--output", str(out / "bench")]
    code, stdout, err = _run(capsys, [*argv, *output])
    assert code == 2 and stdout == "", err
    assert err.count("\n") == 1 and err.startswith("lightnets: error: ") and words in err, err
    assert file_names(out) == []


def test_export_refuses_an_output_that_is_not_a_tflite_file_or_would_replace_an_input(run_folder, tmp_path,
                                                                                       capsys):
    before = {p.name: p.stat().st_mtime_ns for p in run_folder.iterdir()}
    for output, words in ((tmp_path / "d.bin", "--output must be a file name ending in .tflite"),
                          (tmp_path / "nowhere" / "d.tflite", "--output folder"),
                          (tmp_path, "is a folder"),
                          # OUT.json beside OUT.tflite would be the run's record
                          (run_folder / "detector.tflite", f"the report {str(run_folder / RECORD_NAME)!r} is the "
                                                           "record")):
        code, stdout, err = _run(capsys, ["export", "--model", str(run_folder), "--output", str(output)])
        assert code == 2 and stdout == "" and err.count("\n") == 1 and words in err, err
    assert file_names(tmp_path) == []
    assert {p.name: p.stat().st_mtime_ns for p in run_folder.iterdir()} == before
