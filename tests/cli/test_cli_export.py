"""The converter command line, ``keras_lightnets.cli.export``: in-process (as ``tools/convert_tflite.py``'s
``main`` and as ``lightnets export``) and as a ``tools/convert_tflite.py`` process; every model kind and
``--data`` form, labels and report files, one-line errors with exit codes 2 and 1, nothing left behind."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY_SIZE as SIZE
from helpers import WAIT_S, file_names, image_batch, tiny_keras3_classifier, tiny_qat_model

import keras_lightnets
from keras_lightnets.cli import export
from keras_lightnets.export import ConversionError, conversion

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def test_export_imports_are_light():
    code = (
        "import sys\n"
        "import keras_lightnets.export, keras_lightnets.cli.export\n"
        "from keras_lightnets.cli.export import main\n"
        "assert main(['--help']) == 0\n"
        "heavy = ('tensorflow', 'keras', 'tf_keras', 'tensorflow_model_optimization', 'tensorflow_datasets',"
        " 'ai_edge_litert', 'torch')\n"
        "print('heavy:', ','.join(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT_S, env=ENV)
    assert result.returncode == 0, result.stderr
    assert "usage: convert_tflite" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "heavy:"


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """3 class folders of 4 PNGs each (40x40, class = the bright channel) plus one corrupt file."""
    import tensorflow as tf

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(5)
    for label, name in enumerate(["a_red", "b_green", "c_blue"]):  # like separable_images: label = bright channel
        (root / name).mkdir()
        for i in range(4):
            pixels = rng.uniform(0, 120, (40, 40, 3))
            pixels[..., label] += 120
            (root / name / f"{i}.png").write_bytes(tf.io.encode_png(pixels.astype("uint8")).numpy())
    (root / "a_red" / "broken.png").write_bytes(b"not a png at all")
    return root


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("files") / "tiny.keras"
    tiny_keras3_classifier().save(path)
    return path


def _run_cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = export.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_registry_model_npy_int8_verify_benchmark(tmp_path, capsys):
    data = tmp_path / "data.npy"
    np.save(data, image_batch(SIZE, batch=10).astype("uint8"))
    out = tmp_path / "out" / "shuffle.tflite"
    out.parent.mkdir()
    code, stdout, stderr = _run_cli(capsys, [
        "shufflenet_v2_x0_5", "--input-size", "32", "--classes", "5", "-q", "int8",
        "--data", str(data), "--verify", "--benchmark", "--runs", "3", "--warmup", "1", "-o", str(out),
    ])
    assert code == 0, stderr
    assert file_names(out.parent) == ["shuffle.json", "shuffle.tflite"]  # 5 classes, no names: no labels file
    report = json.loads((out.parent / "shuffle.json").read_text())
    assert report["model"]["kind"] == "registry" and report["model"]["preprocessing"] == "torch"
    assert report["model"]["weights"] == "none"  # default "auto": no ImageNet weights for 5 classes
    assert report["export"]["path"] == str(out) and report["export"]["inputs"][0]["dtype"] == "int8"
    assert report["export"]["size_bytes"] == out.stat().st_size
    assert report["data"]["samples"] == 10 and report["verify"]["samples"] == 5  # disjoint halves
    assert report["verify"]["top1_agreement"] is not None and report["benchmark"]["median_ms"] > 0
    assert report["outputs"]["labels"] is None
    assert f"wrote {out}" in stdout and "verify:" in stdout and "benchmark:" in stdout
    assert "XNNPACK partitions 1, ops outside: SOFTMAX x1" in stdout
    assert "converting to TFLite (quantization=int8): done in" in stderr  # progress lines with timings


def test_cli_keras_file_with_image_folder_writes_labels(tmp_path, capsys, keras_file, image_folder):
    out = tmp_path / "tiny.tflite"
    code, _, stderr = _run_cli(capsys, [
        str(keras_file), "-q", "int8", "--data", str(image_folder), "--preprocessing", "tf", "--verify",
        "-o", str(out), "--quiet",
    ])
    assert code == 0, stderr
    assert stderr == ""
    assert file_names(tmp_path) == ["tiny.json", "tiny.labels.txt", "tiny.tflite"]
    assert (tmp_path / "tiny.labels.txt").read_text().splitlines() == ["a_red", "b_green", "c_blue"]
    report = json.loads((tmp_path / "tiny.json").read_text())
    assert report["model"]["kind"] == "keras" and report["model"]["preprocessing"] == "tf"
    assert report["data"]["samples"] == 12 and report["data"]["skipped"] == 1
    assert report["data"]["skipped_files"][0].endswith("broken.png")
    assert report["outputs"]["labels_from"] == "data"
    assert report["verify"]["keras_accuracy"] >= 0.9 and report["verify"]["top1_agreement"] >= 0.9


def test_cli_qat_h5_model_to_int8_without_data(tmp_path, capsys):
    qat = tiny_qat_model()
    path = tmp_path / "qat.h5"
    qat.save(path)
    code, _, stderr = _run_cli(capsys, [str(path), "-q", "int8", "-o", str(tmp_path / "qat_int8.tflite"), "--quiet"])
    assert code == 0, stderr
    report = json.loads((tmp_path / "qat_int8.json").read_text())
    assert report["model"]["qat"] and report["model"]["flavour"] == "tf_keras"
    assert report["export"]["qat"] and report["export"]["float_ops"] == [] and report["export"]["per_channel"]
    code, _, stderr = _run_cli(capsys, [str(path), "-q", "int8", "--per-tensor", "-o",
                                        str(tmp_path / "per_tensor.tflite"), "--quiet"])
    assert code == 2 and "--per-tensor: this quantization-aware model quantizes its weights per channel" in stderr
    assert not (tmp_path / "per_tensor.tflite").exists()


def test_cli_tf_keras_savedmodel_folder(tmp_path, capsys):
    import tf_keras

    inputs = tf_keras.Input((SIZE, SIZE, 3))
    x = tf_keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(3, activation="softmax")(x))
    model.save(tmp_path / "saved")
    code, _, stderr = _run_cli(capsys, [str(tmp_path / "saved"), "-q", "float16", "--data", "random",
                                        "--num-samples", "4", "--verify", "-o", str(tmp_path / "sm.tflite"), "--quiet"])
    assert code == 0, stderr
    report = json.loads((tmp_path / "sm.json").read_text())
    assert report["model"]["kind"] == "saved_model" and report["model"]["flavour"] == "tf_keras"
    assert report["verify"]["max_abs_diff"] < 1e-3 and report["data"]["source"] == "random"


def test_lightnets_export_subcommand_with_digits(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="lightnets")
    export.add_arguments(parser.add_subparsers(dest="command").add_parser("export"))
    args = parser.parse_args([
        "export", "mobilenet_v3_small_075", "--flavour", "tf_keras", "--weights", "none", "--input-size", "32",
        "--classes", "10", "-q", "float16", "--data", "digits", "--num-samples", "8", "--verify",
        "-o", str(tmp_path / "digits.tflite"),
    ])
    assert export.run(args) == 0, capsys.readouterr().err
    assert (tmp_path / "digits.labels.txt").read_text().splitlines() == [str(d) for d in range(10)]
    report = json.loads((tmp_path / "digits.json").read_text())
    assert report["model"]["flavour"] == "tf_keras" and report["verify"]["max_abs_diff"] < 2e-3
    assert report["verify"]["keras_accuracy"] is not None
    assert "lightnets export: " in capsys.readouterr().err


def test_cli_default_output_name_and_imagenet_labels(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, stderr = _run_cli(capsys, ["mobilenet_v3_small_075", "--weights", "none", "--input-size", "32",
                                        "--classes", "1000", "--quiet"])
    assert code == 0, stderr
    assert file_names(tmp_path) == ["mobilenet_v3_small_075_none.json", "mobilenet_v3_small_075_none.labels.txt",
                                "mobilenet_v3_small_075_none.tflite"]
    labels = (tmp_path / "mobilenet_v3_small_075_none.labels.txt").read_text().splitlines()
    assert len(labels) == 1000 and labels[0] == "tench"


def _bad_inputs(tmp: Path, keras_file: Path, image_folder: Path) -> dict[str, tuple[list[str], int, str]]:
    np.save(tmp / "small.npy", np.zeros((3, 16, 16, 3), "float32"))
    np.save(tmp / "complex.npy", np.zeros((3, 32, 32, 3), "complex64"))
    (tmp / "garbage.keras").write_bytes(b"this is not a zip file")
    one_class = tmp / "one_class" / "only"
    one_class.mkdir(parents=True)
    (one_class / "a.png").write_bytes((image_folder / "a_red" / "0.png").read_bytes())
    tiny = ["mobilenet_v3_small_075", "--weights", "none", "--input-size", "32", "--classes", "3"]
    return {
        "missing model file": ([str(tmp / "nope.keras")], 2, "does not exist"),
        "unknown model name": (["resnet50"], 2, "unknown model 'resnet50'"),
        "unknown mode": ([*tiny, "-q", "int4"], 2, "invalid choice: 'int4'"),
        "npy of the wrong size": ([*tiny, "--data", str(tmp / "small.npy")], 2, r"shape \(3, 16, 16, 3\)"),
        "npy of the wrong dtype": ([*tiny, "--data", str(tmp / "complex.npy")], 2, "dtype complex64"),
        "missing npy": ([*tiny, "--data", str(tmp / "none.npy")], 2, "does not exist"),
        "unknown data source": ([*tiny, "--data", "imagenet"], 2, "--data must be"),
        "folder with one class": ([*tiny, "--data", str(tmp / "one_class")], 2, "at least two classes"),
        "tfds not prepared": ([*tiny, "--data", "tfds:no_such_dataset_xyz", "--data-dir", str(tmp)], 2, "tfds"),
        "int8 without data": ([*tiny, "-q", "int8"], 2, "needs --data"),
        "int8 of a float file without data": ([str(keras_file), "-q", "int8"], 2, "float .*model needs --data"),
        "verify without data": ([*tiny, "--verify"], 2, "--verify needs --data"),
        "per-tensor float file": ([*tiny, "--per-tensor"], 2, "--per-tensor applies to -q int8 only"),
        "missing output folder": ([*tiny, "-o", str(tmp / "no" / "m.tflite")], 2, "--output folder"),
        "registry option on a file": ([str(keras_file), "--classes", "3"], 2, "--classes only apply"),
        "input size of a fixed model": ([str(keras_file), "--input-size", "16"], 2, "--input-size 16x16 does not fit"),
        "unloadable model file": ([str(tmp / "garbage.keras")], 2, "cannot load"),  # malformed input: exit 2
        "folder that is no SavedModel": ([str(image_folder)], 2, "not a SavedModel"),
    }


BAD_CASES = [
    "missing model file", "unknown model name", "unknown mode", "npy of the wrong size", "npy of the wrong dtype",
    "missing npy", "unknown data source", "folder with one class", "tfds not prepared", "int8 without data",
    "int8 of a float file without data", "verify without data", "missing output folder",
    "registry option on a file", "input size of a fixed model", "unloadable model file", "folder that is no SavedModel",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_cli_bad_inputs_one_line_and_no_output(case, tmp_path, capsys, keras_file, image_folder):
    argv, expected_code, pattern = _bad_inputs(tmp_path, keras_file, image_folder)[case]
    out = tmp_path / "out"
    out.mkdir()
    before = file_names(tmp_path)
    if "-o" not in argv:
        argv = [*argv, "-o", str(out / "m.tflite")]
    code, stdout, stderr = _run_cli(capsys, [*argv, "--quiet"])
    assert code == expected_code, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("convert_tflite: error: "), stderr
    assert re.search(pattern, lines[0]), lines[0]
    assert stdout == "" and file_names(out) == [] and file_names(tmp_path) == before


@pytest.mark.parametrize("failing_step", ["verify_tflite", "benchmark_tflite"])
def test_cli_failure_after_conversion_removes_everything(failing_step, tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(keras_lightnets.export, failing_step, broken)
    code, _, stderr = _run_cli(capsys, [
        "mobilenet_v3_small_075", "--weights", "none", "--input-size", "32", "--classes", "3", "--data", "random",
        "--num-samples", "2", "--verify", "--benchmark", "-o", str(tmp_path / "m.tflite"), "--quiet",
    ])
    assert code == 1
    assert stderr.strip() == "convert_tflite: error: RuntimeError: simulated failure"
    assert file_names(tmp_path) == []


def test_cli_conversion_failure_exits_1(tmp_path, capsys, monkeypatch):
    def refused(converter, quantization):
        raise ConversionError("int8 conversion left float ops: SIN x1")

    monkeypatch.setattr(conversion, "_convert", refused)
    code, _, stderr = _run_cli(capsys, ["mobilenet_v3_small_075", "--weights", "none", "--input-size", "32",
                                        "--classes", "3", "-o", str(tmp_path / "m.tflite"), "--quiet"])
    assert code == 1 and stderr == "convert_tflite: error: ConversionError: int8 conversion left float ops: SIN x1\n"
    assert file_names(tmp_path) == []


def test_convert_script_runs_as_a_process(tmp_path):
    script = str(ROOT / "tools" / "convert_tflite.py")
    np.save(tmp_path / "data.npy", image_batch(SIZE, batch=6))
    out = tmp_path / "m.tflite"
    result = subprocess.run(
        [sys.executable, script, "mobilenet_v2_035", "--weights", "none", "--input-size", "32", "--classes", "4",
         "-q", "int8", "--data", str(tmp_path / "data.npy"), "--verify", "-o", str(out)],
        capture_output=True, text=True, timeout=WAIT_S, env=ENV, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    assert file_names(tmp_path) == ["data.npy", "m.json", "m.tflite"]
    assert json.loads((tmp_path / "m.json").read_text())["verify"]["input_dtype"] == "int8"
    bad = subprocess.run([sys.executable, script, str(tmp_path / "missing.h5")], capture_output=True, text=True,
                         timeout=WAIT_S, env=ENV, cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [f"convert_tflite: error: model file {str(tmp_path / 'missing.h5')!r} "
                                               "does not exist"]
