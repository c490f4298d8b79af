"""`lightnets train/compress/export` on every data source (digits, a folder, a TFDS dataset), with
progress, quiet output, labels files, disjoint calibration/verification images and one-line warnings;
and the CLI's help texts and plots (issue 10, sections 3 and 5)."""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import WAIT_S

from keras_lightnets.cli import build_parser, main

SOURCES = ("digits", "folder", "tfds")
CLASSES = {"digits": [str(d) for d in range(10)], "folder": ["dark", "light"], "tfds": ["round", "square"]}
HELD_OUT = {"digits": 20, "folder": 2, "tfds": 4}  # --limit 20 of digits' test split; 1 of 5 per class; TFDS test


def _png(path: Path, pixels: np.ndarray) -> None:
    """An 8-bit RGB PNG of ``pixels`` (H, W, 3), written by hand (no imaging library)."""
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[y].astype(np.uint8).tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, list[str]]:
    """``--data`` (and ``--data-dir``) arguments of each source: the bundled digits, a folder of
    two classes with five 12x12 PNGs each, and a two-class TFDS dataset prepared here (no download)."""
    import tensorflow_datasets as tfds

    root = tmp_path_factory.mktemp("sources")
    folder = root / "images"
    for name, grey in (("dark", 30), ("light", 220)):
        (folder / name).mkdir(parents=True)
        for i in range(5):
            _png(folder / name / f"{i}.png", np.full((12, 12, 3), grey + 3 * i))

    class LightnetsCliPatches(tfds.core.GeneratorBasedBuilder):
        """A bright disc or square on black, 12x12 RGB: 10 train and 4 test images."""

        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self, supervised_keys=("image", "label"),
                features=tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(12, 12, 3)),
                                                     "label": tfds.features.ClassLabel(names=["round", "square"])}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(range(10)), "test": self._generate_examples(range(10, 14))}

        def _generate_examples(self, indices):
            yy, xx = np.mgrid[:12, :12]
            for i in indices:
                shape = (yy - 6) ** 2 + (xx - 6) ** 2 < 16 if i % 2 == 0 else (abs(yy - 6) < 4) & (abs(xx - 6) < 4)
                yield i, {"image": np.repeat((shape * (150 + 5 * i))[..., None], 3, -1).astype(np.uint8),
                          "label": i % 2}

    data_dir = root / "tfds"
    LightnetsCliPatches(data_dir=str(data_dir)).download_and_prepare()
    return {"digits": ["--data", "digits", "--limit", "20"], "folder": ["--data", str(folder)],
            "tfds": ["--data", "tfds:lightnets_cli_patches", "--data-dir", str(data_dir)]}


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """A three-layer Keras 3 classifier of 16x16 pixels per source (10 or 2 classes), saved as .keras."""
    import keras

    root = tmp_path_factory.mktemp("models")
    paths = {}
    for source, names in CLASSES.items():
        inputs = keras.Input((16, 16, 3))
        x = keras.layers.Rescaling(1 / 255)(inputs)
        x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        model = keras.Model(inputs, keras.layers.Dense(len(names), activation="softmax")(x))
        paths[source] = root / f"tiny_{source}.keras"
        model.save(paths[source])
    return paths


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No cached ImageNet weights: an empty Keras home and no mirror folder."""
    from keras_lightnets.weights import download

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.delenv(download.MIRROR_ENV, raising=False)


# --------------------------------------------------------------------------- train


@pytest.mark.parametrize("source", SOURCES)
def test_train_quiet_on_every_source_prints_the_path_and_one_warning(source, sources, offline, tmp_path, capsys):
    output = tmp_path / "run"
    with warnings.catch_warnings():  # what a user sees: Python's default filters (the suite hides UserWarnings),
        warnings.resetwarnings()  # each warning shown every time
        warnings.simplefilter("always")
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)
        code = main(["train", "squeezenet1_1", *sources[source], "--weights", "auto", "--image-size", "32",
                     "--epochs", "1", "--fine-tune-epochs", "0", "--batch-size", "16", "--output", str(output),
                     "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out == f"{output / 'best.keras'}\n"  # --quiet: the model's path, one line
    # one warning line, no "loading the weights trained at 224x224" before it, no file path
    assert captured.err == "lightnets: warning: squeezenet1_1: no ImageNet weights offline: training from scratch\n"
    state = json.loads((output / "checkpoints" / "state.json").read_text())
    assert state["config"]["class_names"] == CLASSES[source]


def test_quiet_hides_tensorflow_log_lines(tmp_path):
    """A fresh process (TensorFlow imported after the flag is read), TF's log level not preset."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    script = ("import sys; from keras_lightnets.cli import main; sys.exit(main(['train', 'squeezenet1_1', '--data', "
              f"'tfds:no_such_dataset_here', '--data-dir', {str(tmp_path)!r}, '--weights', 'none', '--output', "
              f"{str(tmp_path / 'run')!r}, '--quiet']))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=WAIT_S,
                          check=False)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lightnets: error: TFDS dataset 'no_such_dataset_here'"), lines


# --------------------------------------------------------------------------- compress


@pytest.mark.parametrize("source", SOURCES)
def test_compress_on_every_source_shows_progress_and_writes_labels(source, sources, tiny_models, tmp_path, capsys):
    out = tmp_path / "small.h5"
    code = main(["compress", str(tiny_models[source]), *sources[source], "--prune", "0.5", "--qat",
                 "--prune-epochs", "1", "--qat-epochs", "1", "--batch-size", "8", "--export", "int8", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)  # stdout is the result alone; the epochs went to stderr
    assert summary["output"] == str(out) and out.is_file()
    epoch_lines = [line for line in captured.err.splitlines() if " - loss: " in line]
    assert len(epoch_lines) == 2, captured.err  # one line per epoch: 1 pruning + 1 QAT
    assert "pruning fine-tune" in captured.err and "quantization-aware fine-tune" in captured.err
    assert not any("Warning" in line or ".py:" in line for line in captured.err.splitlines()), captured.err
    labels = tmp_path / "small.labels.txt"  # named as `lightnets export` names it
    assert labels.read_text().splitlines() == CLASSES[source]
    report = json.loads((tmp_path / "small.json").read_text())
    assert report["tflite"]["labels"] == str(labels)
    assert report["tflite"]["verification"] == {"images": f"held-out images of {sources[source][1]}",
                                                "samples": HELD_OUT[source]}
    assert 0.0 <= report["test_accuracy"] <= 1.0


def test_compress_quiet_prints_only_the_result(sources, tiny_models, tmp_path, capsys):
    # --qat-epochs 0: the model as annotated for QAT (was a tf_keras "epochs to be positive" error)
    code = main(["compress", str(tiny_models["folder"]), *sources["folder"], "--qat", "--qat-epochs", "0",
                 "-o", str(tmp_path / "q.h5"), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0 and captured.err == ""
    assert json.loads(captured.out)["output"] == str(tmp_path / "q.h5")


# --------------------------------------------------------------------------- export


@pytest.mark.parametrize("source", SOURCES)
def test_export_on_every_source_calibrates_and_verifies_on_disjoint_images(source, sources, tiny_models, tmp_path,
                                                                           capsys):
    data = [a for a in sources[source] if a != "--limit" and a != "20"]
    out = tmp_path / "m.tflite"
    code = main(["export", str(tiny_models[source]), "-q", "int8", *data, "--num-samples", "20", "--verify",
                 "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads((tmp_path / "m.json").read_text())
    calibration, verification = report["data"]["calibration"], report["data"]["verification"]
    assert calibration["images"].startswith("training split of ")
    assert verification["images"].startswith("held-out split of ")
    assert verification["samples"] == report["verify"]["samples"] == HELD_OUT[source]
    assert report["export"]["representative_samples"] == calibration["samples"] > 0
    verify_line = next(line for line in captured.out.splitlines() if line.startswith("verify:"))
    assert f"accuracy {report['verify']['tflite_accuracy']:.4f}" in verify_line  # labels known: accuracy shown
    assert (tmp_path / "m.labels.txt").read_text().splitlines() == CLASSES[source]


def test_export_splits_a_npy_file_between_calibration_and_verification(tiny_models, tmp_path, capsys):
    images = np.random.default_rng(0).uniform(0, 255, (10, 16, 16, 3)).astype("float32")
    np.save(tmp_path / "d.npy", images)
    code = main(["export", str(tiny_models["folder"]), "-q", "int8", "--data", str(tmp_path / "d.npy"), "--verify",
                 "-o", str(tmp_path / "m.tflite"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["data"]["calibration"] == {"images": f"images 0..4 of {tmp_path / 'd.npy'}", "samples": 5}
    assert report["data"]["verification"] == {"images": f"images 5..9 of {tmp_path / 'd.npy'}", "samples": 5}
    assert report["verify"]["samples"] == 5 and report["export"]["representative_samples"] == 5


def test_verify_tflite_reads_labels_from_a_tf_data_dataset(tiny_models, tmp_path):
    import keras
    import tensorflow as tf

    from keras_lightnets.export import to_tflite, verify_tflite

    model = keras.saving.load_model(tiny_models["digits"])
    to_tflite(model, tmp_path / "f.tflite", "none")
    images = np.random.default_rng(1).uniform(0, 255, (7, 16, 16, 3)).astype("float32")
    labels = np.arange(7) % 10
    expected = float(np.mean(np.argmax(model.predict(images, verbose=0), -1) == labels))
    pairs = tf.data.Dataset.from_tensor_slices((images, labels))
    for data in (pairs, pairs.batch(3)):  # unbatched and batched
        report = verify_tflite(tmp_path / "f.tflite", model, data)
        assert report.samples == 7
        assert report.keras_accuracy == pytest.approx(expected) and report.tflite_accuracy is not None
    # explicit labels win over the dataset's
    report = verify_tflite(tmp_path / "f.tflite", model, pairs.batch(3), labels=(labels + 1) % 10)
    assert report.keras_accuracy == pytest.approx(
        float(np.mean(np.argmax(model.predict(images, verbose=0), -1) == (labels + 1) % 10)))


# --------------------------------------------------------------------------- help texts, list, plots


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_option_of_every_subcommand_has_help_and_every_subcommand_a_description():
    parser = build_parser()
    missing = [f"lightnets {a.option_strings or a.dest}" for a in parser._actions
               if not isinstance(a, argparse._SubParsersAction) and not (a.help or "").strip()]
    for name, sub in _subparsers(parser).items():
        missing += [f"lightnets {name} {a.option_strings or a.dest}" for a in sub._actions
                    if not (a.help or "").strip()]
        nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        for leaf_name, leaf in (nested[0].choices.items() if nested else ()):  # `lightnets detect train` ...
            missing += [f"lightnets {name} {leaf_name} {a.option_strings or a.dest}" for a in leaf._actions
                        if not (a.help or "").strip()]
            assert (leaf.description or "").strip(), f"`lightnets {name} {leaf_name} --help` has no description"
            leaf.format_help()
        if name not in ("list", "info"):
            assert (sub.description or "").strip(), f"`lightnets {name} --help` has no description"
        sub.format_help()  # every help text formats (a bare % in one would raise here)
    assert "Convert" in _subparsers(parser)["export"].format_help()
    assert missing == []


def test_list_has_no_trailing_spaces(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) > 3 and [line for line in lines if line != line.rstrip()] == []


def test_bench_plot_names_the_input_sizes():
    from keras_lightnets.pipelines import bench

    rows = [bench.BenchRow(name="squeezenet1_1", family="squeezenet", input_size=160, params=1, macs=1, top1=58.2,
                           ours=bench.Measurements("squeezenet1_1", litert_ms={"int8": 1.0},
                                                   litert_bytes={"int8": 1000}))]
    figure = bench.plot_figure(rows)
    accuracy_axes = figure.axes[0]
    assert "160 px" in accuracy_axes.get_xlabel() and "224 px" in accuracy_axes.get_ylabel()
    assert "160 px" in figure.axes[1].get_xlabel()


def test_demo_plot_size_axis_is_in_kib():
    from keras_lightnets.cli import demo
    from keras_lightnets.pipelines.variants import VariantResult

    results = {name: VariantResult(name=name, path=f"{name}.tflite", size_bytes=size, gzip_bytes=size,
                                   accuracy=0.9, keras_accuracy=0.9, top1_agreement=1.0, kernel_sparsity=0.0,
                                   latency_ms=1.0)
               for name, size in (("float", 3_000_000), ("int8_ptq", 800_000))}
    figure = demo.plot_figure(results, "t")
    size_axes = figure.axes[1]
    assert size_axes.get_ylabel() == "size (KiB)"
    assert [t.get_text() for t in size_axes.texts] == ["2930", "781"]  # 3e6 and 8e5 bytes in KiB, no "e+03"
