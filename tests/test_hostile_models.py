"""Hostile and malformed input files for the model loader, ``lightnets export`` and ``lightnets compress``.

Payloads are built here: a tf_keras ``Lambda`` that writes a marker file when it runs
(saved as ``.h5`` and as a SavedModel), a Keras 3 ``.keras`` with the same Lambda,
configs with code hidden in wrappers, nested models, activations and foreign classes,
crafted ``.h5`` / ``.weights.h5`` / ``.tflite`` files. No loader may run the payload
without the explicit opt-in; with it the payload runs (proving it is live). Also: an
output path that is an input, stale temporaries, exit codes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import WAIT_S

from keras_lightnets import errors
from keras_lightnets.cli import main
from keras_lightnets.model_files import find_unsafe, load_model_file

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _marker_lambda(marker: Path):
    """A lambda that writes ``marker`` each time it runs (the path is a constant of its bytecode)."""
    return eval(f"lambda x: (open({str(marker)!r}, 'w').write('ran'), x)[1]")


@pytest.fixture(scope="module")
def payloads(tmp_path_factory) -> dict[str, Path]:
    """``{kind: path}`` of Lambda payloads plus the marker file they write; the marker is absent on return."""
    import keras
    import tf_keras

    folder = tmp_path_factory.mktemp("payloads")
    marker = folder / "MARKER"
    layers = tf_keras.layers
    inputs = layers.Input((8, 8, 3))
    x = layers.Lambda(_marker_lambda(marker))(inputs)
    x = layers.GlobalAveragePooling2D()(x)
    model = tf_keras.Model(inputs, layers.Dense(2, activation="softmax")(x))
    model.save(folder / "hostile.h5")
    model.save(folder / "hostile_sm")
    k_inputs = keras.Input((8, 8, 3))
    k = keras.layers.Lambda(_marker_lambda(marker), output_shape=(8, 8, 3))(k_inputs)
    k = keras.layers.GlobalAveragePooling2D()(k)
    keras.Model(k_inputs, keras.layers.Dense(2)(k)).save(folder / "hostile.keras")
    marker.unlink(missing_ok=True)  # building and saving ran the lambda
    return {"h5": folder / "hostile.h5", "saved_model": folder / "hostile_sm", "keras": folder / "hostile.keras",
            "marker": marker}


@pytest.fixture(scope="module")
def safe_keras_file(tmp_path_factory) -> Path:
    """A tiny plain Keras 3 classifier file (8x8 inputs)."""
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(2, 3)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    path = tmp_path_factory.mktemp("safe") / "mine.keras"
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x)).save(path)
    return path


@pytest.fixture(scope="module")
def tflite_file(tmp_path_factory, safe_keras_file) -> Path:
    import keras

    from keras_lightnets.export import to_tflite

    path = tmp_path_factory.mktemp("tflite") / "m.tflite"
    to_tflite(keras.saving.load_model(safe_keras_file), path)
    return path


def _cli(capsys, argv: list[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as done:
        code = done.code
    return code, capsys.readouterr().err


def _one_error_line(stderr: str, prog: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), stderr
    return lines[0]


# --------------------------------------------------------------------------- no code runs from a model file

KINDS = ["h5", "saved_model", "keras"]


@pytest.mark.parametrize("kind", KINDS)
def test_loader_refuses_lambda_payload_and_runs_it_only_with_opt_in(kind, payloads):
    path, marker = payloads[kind], payloads["marker"]
    with pytest.raises(errors.UnsafeModelError) as caught:
        load_model_file(kind, str(path))
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "lambda" in message.lower() and "--unsafe" in message
    assert not marker.exists()
    model = load_model_file(kind, str(path), unsafe=True)
    assert model(np.zeros((1, 8, 8, 3), "float32")).shape == (1, 2)
    assert marker.exists(), "the payload is not live: the opt-in test proves nothing"
    marker.unlink()


@pytest.mark.parametrize("kind", KINDS)
def test_export_refuses_lambda_payload(kind, payloads, tmp_path, capsys):
    out = tmp_path / "out.tflite"
    code, stderr = _cli(capsys, ["export", str(payloads[kind]), "-o", str(out), "--quiet"])
    line = _one_error_line(stderr, "lightnets")
    assert code == 2 and "--unsafe" in line and str(payloads[kind]) in line
    assert not payloads["marker"].exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", KINDS)
def test_compress_refuses_lambda_payload(kind, payloads, tmp_path, capsys):
    code, stderr = _cli(capsys, ["compress", str(payloads[kind]), "--qat", "-o", str(tmp_path / "c.h5"), "--quiet"])
    line = _one_error_line(stderr, "lightnets")
    assert code == 2 and "--unsafe" in line
    assert not payloads["marker"].exists() and list(tmp_path.iterdir()) == []


def test_unsafe_flag_reaches_the_loader_in_export_and_compress(payloads, tmp_path, capsys):
    marker = payloads["marker"]
    code, stderr = _cli(capsys, ["export", str(payloads["h5"]), "-o", str(tmp_path / "o.tflite"), "--unsafe",
                                 "--quiet"])
    assert code == 0, stderr
    assert marker.exists() and (tmp_path / "o.tflite").is_file()
    marker.unlink()
    empty = tmp_path / "empty"
    empty.mkdir()
    code, stderr = _cli(capsys, ["compress", str(payloads["h5"]), "--qat", "--unsafe", "--data", str(empty),
                                 "-o", str(tmp_path / "c.h5"), "--quiet"])
    assert marker.exists()  # loaded (opt-in), then the empty --data folder stops the run
    assert code == 2, stderr
    marker.unlink()


def test_convert_tool_refuses_lambda_payload(payloads, tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "convert_tflite.py"), str(payloads["h5"]),
         "-o", str(tmp_path / "o.tflite"), "--quiet"],
        capture_output=True, text=True, timeout=WAIT_S, env=ENV, cwd=tmp_path,
    )
    assert result.returncode == 2
    ours = [ln for ln in result.stderr.splitlines() if ln.startswith("convert_tflite")]  # TF's C++ lines aside
    line = _one_error_line("\n".join(ours), "convert_tflite")
    assert "Lambda" in line and "--unsafe" in line
    assert not payloads["marker"].exists() and list(tmp_path.iterdir()) == []
    help_text = subprocess.run([sys.executable, str(ROOT / "tools" / "convert_tflite.py"), "--help"],
                               capture_output=True, text=True, timeout=WAIT_S, env=ENV).stdout
    help_text = " ".join(help_text.split())
    assert "--unsafe" in help_text and "stored Python code" in help_text


def _config(layers: list[dict]) -> dict:
    return {"class_name": "Functional", "config": {"name": "m", "layers": layers}}


def _layer(class_name: str, name: str, **config) -> dict:
    return {"class_name": class_name, "config": {"name": name, **config}}


def _code_dump() -> list:
    from tf_keras.src.utils import generic_utils

    return list(generic_utils.func_dump(lambda x: x))


HIDDEN = {
    "lambda in TimeDistributed": lambda: _layer("TimeDistributed", "td", layer=_layer("Lambda", "inner")),
    "lambda in Bidirectional": lambda: _layer("Bidirectional", "bi", layer=_layer("Lambda", "inner")),
    "lambda in QuantizeWrapper": lambda: _layer("QuantizeWrapperV2", "qw", layer=_layer("Lambda", "inner")),
    "lambda in PruneLowMagnitude": lambda: _layer("PruneLowMagnitude", "pl", layer=_layer("Lambda", "inner")),
    "lambda in a nested model": lambda: _layer("Functional", "sub", layers=[_layer("Lambda", "inner")]),
    "activation as bytecode": lambda: _layer("Dense", "dense", activation={"value": _code_dump()}),
    "activation as __lambda__": lambda: _layer("Dense", "dense", activation={
        "class_name": "__lambda__", "config": {"value": _code_dump()}}),
    "activation from a foreign module": lambda: _layer("Dense", "dense", activation={
        "class_name": "function", "config": "system", "module": "os", "registered_name": "system"}),
    "custom class by module": lambda: {"class_name": "Evil", "module": "evil_module", "config": {"name": "evil"}},
    "custom class by registered name": lambda: {"class_name": "Dense", "registered_name": "evil>Dense",
                                                "config": {"name": "evil"}},
    "unknown class": lambda: _layer("MyLayer", "mine"),
    "TFOpLambda writing files": lambda: _layer("TFOpLambda", "tf.io.write_file", function="io.write_file"),
}


@pytest.mark.parametrize("case", list(HIDDEN))
def test_code_hidden_in_wrappers_nested_models_and_arguments_is_found(case, tmp_path, capsys):
    from keras_lightnets.model_files import _allowed_names

    config = _config([_layer("InputLayer", "input"), HIDDEN[case]()])
    found = find_unsafe(config, _allowed_names("tf_keras"))
    assert found is not None, case
    path = tmp_path / "crafted.h5"
    with h5py.File(path, "w") as h5:
        h5.attrs["model_config"] = json.dumps(config)
    code, stderr = _cli(capsys, ["export", str(path), "-o", str(tmp_path / "o.tflite"), "--quiet"])
    line = _one_error_line(stderr, "lightnets")
    assert code == 2 and "--unsafe" in line and found[0] in line, line


def test_plain_configs_pass():
    from keras_lightnets.model_files import _allowed_names

    config = _config([_layer("InputLayer", "input"), _layer("Conv2D", "conv", activation="relu", kernel_initializer={
        "module": "keras.initializers", "class_name": "GlorotUniform", "config": {"seed": None}}),
        _layer("TFOpLambda", "tf.math.multiply", function="math.multiply"),
        _layer("QuantizeWrapperV2", "qw", layer=_layer("Dense", "d"), quantize_config={
            "class_name": "Default8BitQuantizeConfig", "config": {}})])
    assert find_unsafe(config, _allowed_names("tf_keras")) is None


# --------------------------------------------------------------------------- malformed files

def _malformed_h5(folder: Path) -> dict[str, Path]:
    files = {}
    files["empty"] = folder / "empty.h5"
    h5py.File(files["empty"], "w").close()
    files["missing group"] = folder / "missing.h5"
    with h5py.File(files["missing group"], "w") as h5:
        h5.attrs["layer_names"] = [b"conv"]
    files["wrong types"] = folder / "types.h5"
    with h5py.File(files["wrong types"], "w") as h5:
        h5.attrs["layer_names"] = 7
        h5.attrs["model_config"] = 7
    files["text"] = folder / "text.h5"
    files["text"].write_text("just text\n")
    return files


@pytest.mark.parametrize("case", ["empty", "missing group", "wrong types", "text"])
def test_malformed_h5_is_one_line_input_error(case, tmp_path, capsys):
    from keras_lightnets.weights.loading import read_weight_file

    path = _malformed_h5(tmp_path)[case]
    for call in (lambda: read_weight_file(path), lambda: load_model_file("h5", str(path))):
        with pytest.raises(errors.InputError) as caught:
            call()
        assert "\n" not in str(caught.value) and str(path) in str(caught.value)
    code, stderr = _cli(capsys, ["export", str(path), "-o", str(tmp_path / "o.tflite"), "--quiet"])
    assert code == 2 and str(path) in _one_error_line(stderr, "lightnets")


def test_h5_model_with_missing_weight_group(tmp_path):
    import tf_keras

    model = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(2, name="d")])
    path = tmp_path / "m.h5"
    model.save(path)
    with h5py.File(path, "a") as h5:
        del h5["model_weights"]["d"]
    with pytest.raises(errors.InputError, match=r"'/model_weights/d' is named in the file but missing"):
        load_model_file("h5", str(path))


def test_weights_file_with_odd_objects_never_runs_anything(tmp_path):
    import pickle

    from keras_lightnets.weights.loading import read_weight_file

    marker = tmp_path / "MARKER"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    cases = {
        "pickle bytes": lambda vars_: vars_.create_dataset("0", data=np.void(pickle.dumps(Payload()))),
        "string array": lambda vars_: vars_.create_dataset("0", data=[b"x", b"y"]),
        "object reference": lambda vars_: vars_.create_dataset("0", data=vars_.ref, dtype=h5py.ref_dtype),
        "external link": lambda vars_: vars_.__setitem__("0", h5py.ExternalLink(str(tmp_path / "other.h5"), "/x")),
        "not a group": lambda vars_: None,
    }
    with h5py.File(tmp_path / "other.h5", "w") as other:
        other["x"] = np.zeros(3)
    for case, fill in cases.items():
        path = tmp_path / f"{case.replace(' ', '_')}.weights.h5"
        with h5py.File(path, "w") as h5:
            if case == "not a group":
                h5["layers"] = np.zeros(2)
            else:
                layer = h5.create_group("layers/dense")
                fill(layer.create_group("vars"))
                layer["vars"].attrs["name"] = "dense"
        with pytest.raises(errors.InputError) as caught:
            read_weight_file(path)
        assert "\n" not in str(caught.value) and str(path) in str(caught.value), case
    assert not marker.exists()


# --------------------------------------------------------------------------- .tflite files

def _bad_tflites(folder: Path, good: Path) -> dict[str, Path]:
    content = good.read_bytes()
    rng = np.random.default_rng(0)
    payloads = {
        "empty": b"",
        "random": rng.bytes(2000),
        "truncated": content[: len(content) // 2],
        "random with identifier": rng.bytes(4) + b"TFL3" + rng.bytes(2000),
    }
    for name, data in payloads.items():
        (folder / f"{name.replace(' ', '_')}.tflite").write_bytes(data)
    return {name: folder / f"{name.replace(' ', '_')}.tflite" for name in payloads}


def test_bad_tflite_files_are_one_line_input_errors(tflite_file, safe_keras_file, tmp_path):
    import keras

    from keras_lightnets.export import benchmark_tflite, describe_tflite, verify_tflite

    model = keras.saving.load_model(safe_keras_file)
    images = np.zeros((1, 8, 8, 3), "float32")
    for name, path in _bad_tflites(tmp_path, tflite_file).items():
        calls = [lambda p=path: describe_tflite(p), lambda p=path: verify_tflite(p, model, images),
                 lambda p=path: benchmark_tflite(p, runs=1, warmup=0)]
        for call in calls:
            with pytest.raises(errors.InputError, match="not a valid TFLite flatbuffer") as caught:
                call()
            assert "\n" not in str(caught.value) and str(path) in str(caught.value), name
    assert describe_tflite(tflite_file).op_counts  # the good file still parses


# --------------------------------------------------------------------------- outputs that are inputs

def test_export_refuses_to_overwrite_its_inputs(safe_keras_file, tmp_path, capsys):
    model = tmp_path / "mine.keras"
    shutil.copy(safe_keras_file, model)
    before = model.read_bytes()
    (tmp_path / "link.tflite").symlink_to(model)
    data_folder = tmp_path / "m.json"  # --data folder named like the report of -o m.tflite
    data_folder.mkdir()
    (tmp_path / "r.json").symlink_to(model)  # the report of -o r.tflite is the model through a link
    cases = [
        ([str(model), "-o", str(model)], "--output"),
        ([str(model), "-o", str(tmp_path / "link.tflite")], "--output"),
        ([str(model), "--data", str(data_folder), "-o", str(tmp_path / "m.tflite")], "the report"),
        ([str(model), "-o", str(tmp_path / "r.tflite")], "the report"),
    ]
    for argv, what in cases:
        code, stderr = _cli(capsys, ["export", *argv, "--quiet"])
        line = _one_error_line(stderr, "lightnets")
        assert code == 2 and what in line and "overwrite an input" in line, line
        assert model.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.tflite", "m.json", "mine.keras", "r.json"]


def test_compress_refuses_to_overwrite_its_inputs(tmp_path, capsys):
    import tf_keras

    model = tmp_path / "mine.h5"
    tf_keras.Sequential([tf_keras.Input((8, 8, 3)), tf_keras.layers.GlobalAveragePooling2D(),
                         tf_keras.layers.Dense(2)]).save(model)
    before = model.read_bytes()
    (tmp_path / "other.json").symlink_to(model)
    cases = [
        ([str(model), "-o", str(model)], "--output"),
        ([str(model), "-o", str(tmp_path / "other.h5")], "the report"),
        ([str(model), "--export", "int8", "-o", str(tmp_path / "x.h5"), "--data", str(tmp_path / "x.tflite")],
         "the exported .tflite"),
    ]
    (tmp_path / "x.tflite").mkdir()
    for argv, what in cases:
        code, stderr = _cli(capsys, ["compress", *argv, "--qat", "--quiet"])
        line = _one_error_line(stderr, "lightnets")
        assert code == 2 and what in line and "overwrite an input" in line, line
        assert model.read_bytes() == before


# --------------------------------------------------------------------------- temporaries and exit codes

def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          timeout=WAIT_S)
    return int(done.stdout)


def test_runs_remove_stale_temporaries_of_dead_processes_only(safe_keras_file, tmp_path, capsys):
    from keras_lightnets.files import TEMP_MARK

    dead, mine = _dead_pid(), os.getpid()
    for command in ("export", "compress"):
        stale = tmp_path / f"{TEMP_MARK}{dead}-m-abc.tflite"
        live = tmp_path / f"{TEMP_MARK}{mine}-m-abc.tflite"
        stale.write_bytes(b"half")
        live.write_bytes(b"busy")
        empty = tmp_path / "empty"
        empty.mkdir(exist_ok=True)
        argv = [command, str(safe_keras_file), "-o", str(tmp_path / ("m.tflite" if command == "export" else "m.h5")),
                "--data", str(empty), "--quiet", *(["--qat"] if command == "compress" else [])]
        code, stderr = _cli(capsys, argv)
        assert code == 2, stderr  # empty --data folder: bad input
        assert "at least two classes" in _one_error_line(stderr, "lightnets")
        assert not stale.exists() and live.read_bytes() == b"busy"
        live.unlink()

