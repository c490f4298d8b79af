"""Porting torchvision checkpoints: SqueezeNet, ShuffleNetV2 and MnasNet-B1.

* The reference vectors (``shared/reference/torchvision``: a state_dict, an input
  and torchvision's logits per model) are reproduced in Keras 3 and tf_keras.
* Mismatched or renamed checkpoints are refused, naming the tensor.
* ``.pth`` files are read without torch: torch's zip and legacy formats, written
  here by a small pickle writer; a pickle that refers to any other global is
  refused without being executed.
* ``tools/port_weights.py`` end to end, and ``weights="imagenet"`` from a local
  mirror with the conversion cached.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import WAIT_S
from safetensors.numpy import load_file, save_file

from keras_lightnets import count_macs, create_model, model_config
from keras_lightnets.cli import port_weights
from keras_lightnets.errors import InputError
from keras_lightnets.models import mnasnet, shufflenet_v2, squeezenet
from keras_lightnets.weights import download, manifest_tools
from keras_lightnets.weights import torchvision as tv

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "torchvision"
needs_reference = pytest.mark.skipif(not REFERENCE.is_dir(), reason=f"no reference vectors in {REFERENCE}")

# torchvision model -> registered name.
CASES = {
    "squeezenet1_0": "squeezenet1_0",
    "squeezenet1_1": "squeezenet1_1",
    "shufflenet_v2_x0_5": "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0": "shufflenet_v2_x1_0",
    "mnasnet0_5": "mnasnet_b1_050",
    "mnasnet1_0": "mnasnet_b1_100",
}
# torchvision's num_params (weights.meta) per registered name: the Keras trainable count.
TORCHVISION_PARAMS = {
    "squeezenet1_0": 1_248_424,
    "squeezenet1_1": 1_235_496,
    "shufflenet_v2_x0_5": 1_366_792,
    "shufflenet_v2_x1_0": 2_278_604,
    "shufflenet_v2_x1_5": 3_503_624,
    "shufflenet_v2_x2_0": 7_393_996,
    "mnasnet_b1_050": 2_218_512,
    "mnasnet_b1_075": 3_170_208,
    "mnasnet_b1_100": 4_383_312,
    "mnasnet_b1_130": 6_282_256,
}
FLAVOURS = ("keras", "tf_keras")
TOLERANCE = 1e-4  # of the largest |logit|


# --------------------------------------------------------------------------------------
# Reference data and models, built once per module
# --------------------------------------------------------------------------------------


def _reference(torch_name: str) -> tuple[Path, np.ndarray, np.ndarray]:
    folder = REFERENCE / torch_name
    image = np.load(folder / "input.npy").transpose(0, 2, 3, 1)  # NCHW -> NHWC
    return folder / "weights.safetensors", image, np.load(folder / "logits.npy")


def _state_dict(torch_name: str) -> dict[str, np.ndarray]:
    return {k: v.astype(np.float32) for k, v in load_file(REFERENCE / torch_name / "weights.safetensors").items()}


def _logits(model, image: np.ndarray) -> np.ndarray:
    return np.asarray(model(image, training=False))


def _check_logits(got: np.ndarray, want: np.ndarray) -> float:
    """Max error relative to the largest |logit|; the top-5 must agree in order."""
    error = float(np.abs(got - want).max() / np.abs(want).max())
    assert error <= TOLERANCE, error
    np.testing.assert_array_equal(np.argsort(-got[0])[:5], np.argsort(-want[0])[:5])
    return error


@pytest.fixture(scope="module")
def ported():
    """``ported(torch_name, flavour)``: the registered model with the reference weights (cached)."""
    cache: dict[tuple[str, str], object] = {}

    def get(torch_name: str, flavour: str = "keras"):
        if (torch_name, flavour) not in cache:
            path, _, _ = _reference(torch_name)
            cache[torch_name, flavour] = create_model(
                CASES[torch_name], weights=str(path), classifier_activation=None, flavour=flavour,
            )
        return cache[torch_name, flavour]

    return get


# --------------------------------------------------------------------------------------
# A small writer of torch checkpoints (no torch needed)
# --------------------------------------------------------------------------------------


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _text(value: str) -> bytes:
    data = value.encode("utf8")
    return b"X" + struct.pack("<I", len(data)) + data


def _int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def _ints(values) -> bytes:
    return b"(" + b"".join(_int(v) for v in values) + b"t"


def _state_dict_pickle(state_dict: dict[str, np.ndarray], legacy: bool) -> bytes:
    """Protocol-2 pickle of an ``OrderedDict`` of tensors, laid out as ``torch.save`` does it:
    ``_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, OrderedDict())`` with
    each storage a persistent id ``("storage", torch.FloatStorage, key, "cpu", numel[, None])``."""
    out = [b"\x80\x02", _global("collections", "OrderedDict"), b")R("]
    for key, (name, array) in enumerate(state_dict.items()):
        strides = [int(np.prod(array.shape[i + 1:])) for i in range(array.ndim)]
        pid = b"(" + _text("storage") + _global("torch", "FloatStorage") + _text(str(key)) + _text("cpu")
        pid += _int(array.size) + (b"N" if legacy else b"") + b"tQ"
        out += [_text(name), _global("torch._utils", "_rebuild_tensor_v2"), b"(", pid, _int(0),
                _ints(array.shape), _ints(strides), b"\x89", _global("collections", "OrderedDict"), b")Rt", b"R"]
    out.append(b"u.")
    return b"".join(out)


def write_torch_zip(path: Path, state_dict: dict[str, np.ndarray], data_pkl: bytes | None = None) -> None:
    """torch's zip format: ``archive/data.pkl`` and one ``archive/data/<key>`` per storage."""
    arrays = {name: np.ascontiguousarray(a, dtype="<f4") for name, a in state_dict.items()}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", data_pkl if data_pkl is not None else _state_dict_pickle(arrays, False))
        archive.writestr("archive/byteorder", "little")
        for key, array in enumerate(arrays.values()):
            archive.writestr(f"archive/data/{key}", array.tobytes())
        archive.writestr("archive/version", "3\n")


def write_torch_legacy(path: Path, state_dict: dict[str, np.ndarray], main_pickle: bytes | None = None) -> None:
    """torch's legacy format: magic, protocol, sys info, the pickle, storage keys, raw storages."""
    arrays = {name: np.ascontiguousarray(a, dtype="<f4") for name, a in state_dict.items()}
    out = io.BytesIO()
    for header in (tv.LEGACY_MAGIC_NUMBER, tv.LEGACY_PROTOCOL_VERSION,
                   {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}):
        pickle.dump(header, out, protocol=2)
    out.write(main_pickle if main_pickle is not None else _state_dict_pickle(arrays, True))
    pickle.dump([str(k) for k in range(len(arrays))], out, protocol=2)
    for array in arrays.values():
        out.write(struct.pack("<q", array.size) + array.tobytes())
    path.write_bytes(out.getvalue())


class _Exploit:
    """Pickles as ``os.system("touch <marker>")``: what a hostile checkpoint looks like."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# --------------------------------------------------------------------------------------
# Reference vectors
# --------------------------------------------------------------------------------------


@needs_reference
@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("torch_name", sorted(CASES))
def test_reference_logits(ported, torch_name, flavour):
    _, image, want = _reference(torch_name)
    _check_logits(_logits(ported(torch_name, flavour), image), want)


@needs_reference
def test_legacy_builders_port_too():
    from keras_lightnets import legacy

    path, image, want = _reference("squeezenet1_1")
    model = legacy.SqueezeNet(version="1.1", weights=str(path), classifier_activation=None)
    assert type(model).__module__.startswith("tf_keras")
    _check_logits(_logits(model, image), want)


@needs_reference
def test_headless_model_skips_the_classifier_tensors():
    path, image, _ = _reference("mnasnet0_5")
    headless = mnasnet.MnasNetB1(alpha=0.5, weights=str(path), include_top=False, pooling="avg")
    assert tuple(headless.output.shape) == (None, 1280)
    assert np.isfinite(_logits(headless, image)).all()


# --------------------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------------------


@needs_reference
def test_other_width_checkpoint_is_refused_naming_the_tensor():
    path, _, _ = _reference("shufflenet_v2_x0_5")
    with pytest.raises(ValueError, match=r"'stage2\.0\.branch1\.2\.weight' has shape \(24, 24, 1, 1\)"):
        create_model("shufflenet_v2_x1_0", weights=str(path))


@needs_reference
def test_other_architecture_checkpoint_is_refused():
    path, _, _ = _reference("squeezenet1_0")
    with pytest.raises(ValueError, match=r"'features\.0\.weight' has shape \(96, 3, 7, 7\)"):
        squeezenet.SqueezeNet(version="1.1", weights=str(path))


@needs_reference
def test_renamed_tensor_is_refused(ported):
    model = ported("squeezenet1_1")
    state_dict = _state_dict("squeezenet1_1")
    state_dict["features.3.squeeze.kernel"] = state_dict.pop("features.3.squeeze.weight")
    with pytest.raises(ValueError, match=r"no tensor 'features\.3\.squeeze\.weight'"):
        tv.convert_state_dict(model, state_dict, squeezenet.torch_mapping(model, "1.1"))


@needs_reference
def test_unused_tensor_is_refused(ported, tmp_path):
    state_dict = _state_dict("squeezenet1_1")
    state_dict["features.99.weight"] = np.zeros((3,), np.float32)
    path = tmp_path / "extra.safetensors"
    save_file(state_dict, str(path))
    with pytest.raises(ValueError, match=r"tensor 'features\.99\.weight' has no place"):
        tv.port_checkpoint(ported("squeezenet1_1"), path, lambda m: squeezenet.torch_mapping(m, "1.1"))


def test_model_without_torchvision_counterpart_refuses_torch_files(tmp_path):
    path = tmp_path / "v2.safetensors"
    save_file({"x": np.zeros(1, np.float32)}, str(path))
    with pytest.raises(tv.NoTorchCounterpartError, match="no torchvision counterpart"):
        create_model("mobilenet_v2_035", weights=str(path), input_shape=(64, 64, 3), include_top=False)


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_pickle_with_a_foreign_global_is_refused_unexecuted(tmp_path, layout):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"w": _Exploit(marker)}, protocol=2)
    path = tmp_path / "hostile.pth"
    if layout == "zip":
        write_torch_zip(path, {}, data_pkl=payload)
    else:
        write_torch_legacy(path, {}, main_pickle=payload)
    with pytest.raises(tv.UnsafeCheckpointError, match=r"refusing to unpickle the global (posix|os)\.system"):
        tv.read_torch_file(path)
    with pytest.raises(ValueError, match="refusing"):
        squeezenet.SqueezeNet(weights=str(path), input_shape=(64, 64, 3), include_top=False)
    assert not marker.exists()
    # The same payload through the plain pickle module does run: the test's exploit is real.
    pickle.loads(payload)
    assert marker.exists()


def test_unreadable_pth_names_the_way_out(tmp_path, monkeypatch):
    path = tmp_path / "junk.pth"
    path.write_bytes(b"not a checkpoint at all")
    monkeypatch.setattr(tv, "_torch_load", lambda p: None)  # as if torch were not installed
    with pytest.raises(ValueError, match=r"install torch .*keras_lightnets\[torch\].*\.safetensors"):
        tv.read_torch_file(path)


# --------------------------------------------------------------------------------------
# .pth files written without torch
# --------------------------------------------------------------------------------------


@needs_reference
@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_pth_checkpoint_matches_the_safetensors_port(ported, tmp_path, layout):
    torch_name = "shufflenet_v2_x0_5"
    state_dict = _state_dict(torch_name)
    path = tmp_path / f"{torch_name}.pth"
    (write_torch_zip if layout == "zip" else write_torch_legacy)(path, state_dict)
    read = tv.read_torch_file(path)
    assert list(read) == list(state_dict)
    for name, array in state_dict.items():
        np.testing.assert_array_equal(read[name], array)
    model = create_model(CASES[torch_name], weights=str(path), classifier_activation=None)
    _, image, want = _reference(torch_name)
    reference_port = ported(torch_name)
    for layer in model.layers:
        for mine, theirs in zip(layer.get_weights(), reference_port.get_layer(layer.name).get_weights(), strict=True):
            np.testing.assert_array_equal(mine, theirs)
    _check_logits(_logits(model, image), want)


@needs_reference
def test_data_parallel_prefix_is_read_under_the_wrapped_names(tmp_path):
    """``nn.DataParallel`` saves ``module.<name>`` (megvii's ShuffleNet checkpoints): read as ``<name>``;
    a prefix on only some names is a different model and is refused."""
    torch_name = "shufflenet_v2_x0_5"
    state_dict = _state_dict(torch_name)
    wrapped = tmp_path / "wrapped.pth"
    write_torch_zip(wrapped, {f"module.{name}": array for name, array in state_dict.items()})
    model = create_model(CASES[torch_name], weights=str(wrapped), classifier_activation=None)
    _, image, want = _reference(torch_name)
    _check_logits(_logits(model, image), want)
    partly = tmp_path / "partly.safetensors"
    save_file({(f"module.{n}" if n.startswith("fc.") else n): a for n, a in state_dict.items()}, str(partly))
    with pytest.raises(InputError, match=r"has no tensor 'fc\.weight'"):
        create_model(CASES[torch_name], weights=str(partly))


def test_torch_zip_reader_handles_strided_and_shared_storages(tmp_path):
    """A transposed view into a shared storage, with an offset, as torch writes ``base.t()[1:]``."""
    base = np.arange(12, dtype="<f4")
    pid = b"(" + _text("storage") + _global("torch", "FloatStorage") + _text("0") + _text("cpu") + _int(12) + b"tQ"
    tensor = _global("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + _int(1) + _ints((3, 3)) + _ints((1, 4))
    tensor += b"\x89" + _global("collections", "OrderedDict") + b")RtR"
    data_pkl = b"\x80\x02" + _global("collections", "OrderedDict") + b")R(" + _text("v") + tensor + b"u."
    path = tmp_path / "view.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/data/0", base.tobytes())
    np.testing.assert_array_equal(tv.read_torch_file(path)["v"], base.reshape(3, 4).T[1:])


# --------------------------------------------------------------------------------------
# tools/port_weights.py
# --------------------------------------------------------------------------------------


@needs_reference
def test_port_tool_end_to_end(tmp_path, capsys):
    path, image, want = _reference("squeezenet1_1")
    out = tmp_path / "squeezenet1_1.weights.h5"
    assert port_weights.main([str(path), "--arch", "squeezenet1_1", "-o", str(out)]) == 0
    assert out.is_file() and sorted(p.name for p in tmp_path.iterdir()) == [out.name]
    assert "wrote" in capsys.readouterr().out
    for flavour in FLAVOURS:
        model = create_model("squeezenet1_1", weights=str(out), classifier_activation=None, flavour=flavour)
        _check_logits(_logits(model, image), want)


@needs_reference
@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["{missing}", "--arch", "squeezenet1_1"], 2, "SRC not found"),
        (["{h5}", "--arch", "squeezenet1_1"], 2, "SRC must be a torchvision checkpoint"),
        (["{src}", "--arch", "squeezenet9"], 2, "unknown model 'squeezenet9'"),
        (["{src}", "--arch", "mobilenet_v2_035"], 2, "no torchvision counterpart"),
        (["{src}", "--arch", "shufflenet_v2_x0_5"], 2, "has no tensor 'conv1.0.weight'"),
        (["{src}", "--arch", "squeezenet1_0"], 2, "'features.0.weight' has shape"),
        (["{hostile}", "--arch", "squeezenet1_1"], 2, "refusing to unpickle"),
    ],
)
def test_port_tool_bad_input(tmp_path, capsys, args, code, message):
    hostile = tmp_path / "hostile.pth"
    write_torch_zip(hostile, {}, data_pkl=pickle.dumps(_Exploit(tmp_path / "pwned"), protocol=2))
    (tmp_path / "model.h5").write_bytes(b"")
    paths = {"missing": tmp_path / "missing.pth", "h5": tmp_path / "model.h5", "hostile": hostile,
             "src": REFERENCE / "squeezenet1_1" / "weights.safetensors"}
    out = tmp_path / "out" / "model.weights.h5"
    out.parent.mkdir()
    argv = [a.format(**{k: str(v) for k, v in paths.items()}) for a in args] + ["-o", str(out)]
    assert port_weights.main(argv) == code
    error = capsys.readouterr().err
    assert error.startswith("port_weights: error:") and error.count("\n") == 1 and message in error
    assert list(out.parent.iterdir()) == []  # no output, no temporary file
    assert not (tmp_path / "pwned").exists()


def test_port_tool_refuses_a_bad_output_name_from_the_command_line(tmp_path):
    src = tmp_path / "w.safetensors"
    save_file({"x": np.zeros(1, np.float32)}, str(src))
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "port_weights.py"), str(src), "--arch", "squeezenet1_1",
         "-o", str(tmp_path / "out.h5")],
        capture_output=True, text=True, check=False, timeout=WAIT_S,
    )
    assert result.returncode == 2, result.stderr
    assert "must be a file name ending in '.weights.h5'" in result.stderr
    assert not (tmp_path / "out.h5").exists()


# --------------------------------------------------------------------------------------
# weights="imagenet": download (here: a mirror), convert once, cache
# --------------------------------------------------------------------------------------


@needs_reference
def test_imagenet_weights_are_converted_once_and_cached(tmp_path, monkeypatch):
    torch_name, file_name = "squeezenet1_1", model_config("squeezenet1_1").weight_file()
    mirror, home = tmp_path / "mirror", tmp_path / "keras_home"
    mirror.mkdir()
    write_torch_zip(mirror / file_name, _state_dict(torch_name))
    manifest = tmp_path / "manifest.json"
    entry = {"url": "https://invalid.example/" + file_name, "hash": None, "format": "torchvision-pth",
             "source": "torchvision"}
    manifest.write_text(json.dumps({"format_version": 1, "files": {file_name: entry}}))
    monkeypatch.setenv("KERAS_LIGHTNETS_MANIFEST", str(manifest))
    monkeypatch.setenv("KERAS_LIGHTNETS_WEIGHTS_DIR", str(mirror))
    monkeypatch.setenv("KERAS_HOME", str(home))
    _, image, want = _reference(torch_name)

    model = squeezenet.SqueezeNet(version="1.1", weights="imagenet", classifier_activation=None)
    _check_logits(_logits(model, image), want)
    cached = home / "models" / file_name.replace(".pth", ".weights.h5")
    assert cached.is_file()
    assert not [p for p in cached.parent.iterdir() if p.name.startswith(".")]  # no temporary left

    headless = squeezenet.SqueezeNet(version="1.1", weights="imagenet", include_top=False)
    assert cached.with_name(cached.name.replace(".weights.h5", "_no_top.weights.h5")).is_file()

    (mirror / file_name).unlink()  # the cache alone must now suffice, in either flavour
    again = create_model("squeezenet1_1", weights="imagenet", classifier_activation=None, flavour="tf_keras")
    _check_logits(_logits(again, image), want)
    headless_again = squeezenet.SqueezeNet(version="1.1", weights="imagenet", include_top=False)
    np.testing.assert_array_equal(_logits(headless_again, image), _logits(headless, image))


def test_torchvision_manifest_entries():
    entries = manifest_tools.torchvision_entries()
    assert len(entries) == 10
    assert entries["squeezenet1_1-b8a52dc0.pth"]["hash"] == "sha256:b8a52dc0"
    users = {name: [config.name for config in configs]
             for name, configs in manifest_tools.files_by_source()[manifest_tools.TORCHVISION_SOURCE].items()}
    assert users["shufflenetv2_x1-5666bf0f80.pth"] == ["shufflenet_v2_x1_0"]
    assert model_config("shufflenet_v2_x1_0").weight_file() == "shufflenetv2_x1-5666bf0f80.pth"
    assert entries["mnasnet1.0_top1_73.512-f206786ef8.pth"]["url"] == (
        "https://download.pytorch.org/models/mnasnet1.0_top1_73.512-f206786ef8.pth")
    merged = download.merge_manifest({"format_version": 1, "files": {"other.h5": {"source": "keras.applications"}}},
                                     entries, manifest_tools.TORCHVISION_SOURCE)
    assert set(merged["files"]) == {"other.h5", *entries}
    assert set(users) == set(entries)
    for name in entries:  # every registered pretrained variant finds its file in the repository's manifest
        for model in users[name]:
            assert model_config(model).weights == ("imagenet",)


def test_timm_manifest_entries_name_the_hub_file(monkeypatch):
    from keras_lightnets.models import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    facts = dict(family="x", input_size=224, preprocessing="torch", params=5_000_000, macs=1, top1=None,
                 paper="https://example.invalid")
    registry.register_model("x_timm", squeezenet.SqueezeNet, {"version": "1.1"}, **facts,
                            weight_files=(registry.WeightFile("toynet_100.in1k.safetensors", 224),))
    entries = manifest_tools.timm_entries()
    entry = entries["toynet_100.in1k.safetensors"]
    assert entry["url"] == "https://huggingface.co/timm/toynet_100.in1k/resolve/main/model.safetensors"
    assert (entry["format"], entry["source"], entry["verified"]) == ("timm-safetensors", "timm", "none")
    assert entry["max_bytes"] == download.max_bytes_for_parameters(5_000_000)
    download.check_entry("toynet_100.in1k.safetensors", entry)
    for bad in ("model.safetensors", "../x.in1k.safetensors", "toynet_100.in1k.pth.safetensors"):
        with pytest.raises(ValueError, match=r"is not '<model>\.<pretrained tag>\.safetensors'"):
            manifest_tools.timm_url(bad)


# --------------------------------------------------------------------------------------
# Facts and arguments
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_parameter_counts_equal_torchvision(ported, name):
    by_registry = {v: k for k, v in CASES.items()}
    if name in by_registry and REFERENCE.is_dir():
        model = ported(by_registry[name])
    else:
        model = create_model(name, weights=None)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == TORCHVISION_PARAMS[name]
    config = model_config(name)
    assert model.count_params() == config.params
    assert count_macs(model) == config.macs
    assert config.preprocessing == "torch" and config.weights == ("imagenet",)


def test_alpha_is_checked_only_for_imagenet_weights():
    with pytest.raises(ValueError, match="alpha"):
        shufflenet_v2.ShuffleNetV2(alpha=0.75, weights="imagenet")
    with pytest.raises(ValueError, match="alpha"):
        mnasnet.MnasNetB1(alpha=0.6, weights="imagenet")
    with pytest.raises(ValueError, match="alpha"):
        mnasnet.MnasNetB1(alpha=0.0, weights=None)
    with pytest.raises(ValueError, match=r"no ImageNet weights for alpha=1\.4"):
        mnasnet.MnasNetA1(alpha=1.4, weights="imagenet")
    with pytest.raises(ValueError, match="version"):
        squeezenet.SqueezeNet(version="1.2", weights=None)
    model = shufflenet_v2.ShuffleNetV2(alpha=0.75, weights=None, include_top=False, input_shape=(64, 64, 3))
    assert model.output.shape[-1] == 1024 and model.name == "shufflenet_v2_x0_75"
    assert shufflenet_v2.stage_channels(0.75)[:3] == (88, 176, 348)


def test_squeezenet_ceil_mode_pooling_sizes():
    """PyTorch ceil mode: ``ceil((n - 3) / 2) + 1`` at every pool, for even and odd sizes."""
    for version, size, expected in (("1.0", 224, [109, 54, 27, 13]), ("1.1", 224, [111, 55, 27, 13]),
                                    ("1.0", 225, [110, 55, 27, 13]), ("1.1", 97, [48, 24, 12, 6])):
        model = squeezenet.SqueezeNet(version=version, weights=None, include_top=False, input_shape=(size, size, 3))
        sizes = [model.get_layer("conv1").output.shape[1]]
        sizes += [layer.output.shape[1] for layer in model.layers if layer.name.startswith("pool")
                  and not layer.name.endswith("_pad")]
        assert sizes == expected, (version, size, sizes)
