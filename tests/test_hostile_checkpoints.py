"""Hostile torch checkpoints: bounded before anything is materialised, and no code runs (issue 9).

Every payload is built here with the standard library (zipfile, pickle opcodes,
struct) -- torch is not needed. Memory is measured with ``tracemalloc`` (NumPy
reports its buffers to it): a refused file must cost far less than what it declares.
"""

from __future__ import annotations

import json
import pickle
import struct
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import keras_lightnets
from keras_lightnets import errors
from keras_lightnets.models import squeezenet
from keras_lightnets.weights import torchvision as tv

SMALL = 8 << 20  # the most a refused file may make the reader allocate


# --------------------------------------------------------------------------- payload writers


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _text(value: str) -> bytes:
    data = value.encode("utf8")
    return b"X" + struct.pack("<I", len(data)) + data


def _int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value) if value < 2**31 else b"\x8a\x08" + struct.pack("<q", value)


def _ints(values) -> bytes:
    return b"(" + b"".join(_int(v) for v in values) + b"t"


def _tensor(key: str, numel: int, offset: int, shape, strides, legacy: bool = False) -> bytes:
    pid = b"(" + _text("storage") + _global("torch", "FloatStorage") + _text(key) + _text("cpu") + _int(numel)
    pid += (b"N" if legacy else b"") + b"tQ"
    return (_global("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + _int(offset) + _ints(shape)
            + _ints(strides) + b"\x89" + _global("collections", "OrderedDict") + b")RtR")


def _state_dict(tensors: dict[str, bytes]) -> bytes:
    body = b"".join(_text(name) + tensor for name, tensor in tensors.items())
    return b"\x80\x02" + _global("collections", "OrderedDict") + b")R(" + body + b"u."


def write_zip(path: Path, data_pkl: bytes, records: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/byteorder", "little")
        for key, data in records.items():
            archive.writestr(f"archive/data/{key}", data)
    return path


def write_legacy(path: Path, main_pickle: bytes, storages: dict[str, tuple[int, bytes]]) -> Path:
    parts = [pickle.dumps(h, protocol=2) for h in (tv.LEGACY_MAGIC_NUMBER, tv.LEGACY_PROTOCOL_VERSION,
                                                   {"protocol_version": 1001, "little_endian": True})]
    parts += [main_pickle, pickle.dumps(list(storages), protocol=2)]
    parts += [struct.pack("<q", numel) + data for numel, data in storages.values()]
    path.write_bytes(b"".join(parts))
    return path


def _peak(function) -> tuple[BaseException | None, int]:
    """``(the exception function raised, or None; peak bytes allocated meanwhile)``."""
    tracemalloc.start()
    try:
        function()
        error = None
    except Exception as err:  # returned to the test to inspect
        error = err
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return error, peak


def _refused(function, match: str) -> BaseException:
    error, peak = _peak(function)
    assert isinstance(error, errors.InputError), repr(error)
    assert errors.exit_code(error) == errors.EXIT_BAD_INPUT
    assert "\n" not in str(error) and str(error)
    assert match in str(error), str(error)
    assert peak < SMALL, f"{peak} bytes allocated before the refusal"
    return error


# --------------------------------------------------------------------------- .pth geometry


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_stride_zero_tensor_is_refused_unmaterialised(tmp_path, layout):
    """A 20000x20000 float32 tensor (1.6 GB) viewing one element through stride 0."""
    path = tmp_path / "stride0.pth"
    pkl = _state_dict({"w": _tensor("0", 1, 0, (20000, 20000), (0, 0), legacy=layout == "legacy")})
    if layout == "zip":
        write_zip(path, pkl, {"0": b"\0" * 4})
    else:
        write_legacy(path, pkl, {"0": (1, b"\0" * 4)})
    assert path.stat().st_size < 1000
    error = _refused(lambda: tv.read_checkpoint(path), "tensor 'w' has shape (20000, 20000) with strides (0, 0)")
    assert isinstance(error, tv.MalformedCheckpointError) and str(path) in str(error)
    # The same file given to a model builder: refused the same way (memory measured above, without Keras).
    with pytest.raises(tv.MalformedCheckpointError, match=r"strides \(0, 0\)"):
        keras_lightnets.create_model("squeezenet1_1", weights=str(path), include_top=False, input_shape=(32, 32, 3))


@pytest.mark.parametrize(
    ("numel", "offset", "shape", "strides", "message"),
    [
        (12, 10, (5,), (1,), "reaches element 15 of a storage of 12"),
        (12, 0, (3, 3), (1, 1), "reach the same element more than once"),
        (12, 0, (2, 7), (7, 1), "reaches element 14 of a storage of 12"),
        (12, 0, (3, 2), (1, 2), "reach the same element more than once"),
    ],
)
def test_views_that_overrun_or_alias_are_refused(tmp_path, numel, offset, shape, strides, message):
    path = write_zip(tmp_path / "view.pth", _state_dict({"v": _tensor("0", numel, offset, shape, strides)}),
                     {"0": np.arange(numel, dtype="<f4").tobytes()})
    _refused(lambda: tv.read_torch_file(path), message)


def test_a_legitimate_strided_view_still_reads(tmp_path):
    base = np.arange(12, dtype="<f4")
    path = write_zip(tmp_path / "view.pth", _state_dict({"v": _tensor("0", 12, 1, (3, 3), (1, 4))}),
                     {"0": base.tobytes()})
    np.testing.assert_array_equal(tv.read_torch_file(path)["v"], base.reshape(3, 4).T[1:])


def test_record_size_must_match_the_declared_storage(tmp_path):
    path = write_zip(tmp_path / "lie.pth", _state_dict({"w": _tensor("0", 100, 0, (10,), (1,))}),
                     {"0": b"\0" * 8})
    _refused(lambda: tv.read_torch_file(path), "declares 8 bytes, but its storage needs 400")


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory) -> Path:
    """A .pth whose storage record inflates ~1 MB of deflate stream to 1 GiB of zeros."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.pth"
    numel = (1 << 30) // 4
    pkl = _state_dict({"features.0.weight": _tensor("0", numel, 0, (16384, 16384), (16384, 1))})
    chunk = bytes(4 << 20)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pkl)
        info = zipfile.ZipInfo("archive/data/0")
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as record:
            for _ in range((1 << 30) // len(chunk)):
                record.write(chunk)
    return path


def test_zip_bomb_record_is_refused_before_inflating(zip_bomb):
    assert zip_bomb.stat().st_size < (2 << 20)
    with zipfile.ZipFile(zip_bomb) as archive:
        assert archive.getinfo("archive/data/0").file_size == 1 << 30
    _refused(lambda: tv.read_torch_file(zip_bomb), "would inflate")
    _refused(lambda: tv.read_checkpoint(zip_bomb, {"features.0.weight": (64, 3, 3, 3)}), "would inflate")


def test_bytes_to_read_are_bounded_by_the_expected_shapes(tmp_path, monkeypatch):
    """Within the per-file bounds, but more than the model's tensors need: refused unread."""
    data = np.zeros(4 << 20, dtype="<f4").tobytes()  # 16 MiB
    path = write_zip(tmp_path / "big.pth", _state_dict({"w": _tensor("0", 4 << 20, 0, (2048, 2048), (1, 2048))}),
                     {"0": data})
    del data
    _refused(lambda: tv.read_checkpoint(path, {"w": (3, 3)}), "has shape (2048, 2048), but model")
    monkeypatch.setattr(tv, "MAX_CHECKPOINT_BYTES", 1 << 20)
    _refused(lambda: tv.read_checkpoint(path), "MAX_CHECKPOINT_BYTES")


def test_unexpected_tensor_is_refused_unread(tmp_path):
    path = write_zip(tmp_path / "extra.pth", _state_dict({
        "w": _tensor("0", 9, 0, (3, 3), (3, 1)), "extra": _tensor("1", 9, 0, (9,), (1,)),
    }), {"0": b"\0" * 36, "1": b"\0" * 36})
    _refused(lambda: tv.read_checkpoint(path, {"w": (3, 3)}), "tensor 'extra' has no place in model")
    assert set(tv.read_checkpoint(path, {"w": (3, 3)}, ignore_prefixes=("ext",))) == {"w"}


def test_pickle_over_its_bound_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(tv, "MAX_PICKLE_BYTES", 64)
    pkl = _state_dict({"w": _tensor("0", 1, 0, (1,), (1,))})
    zipped = write_zip(tmp_path / "p.pth", pkl, {"0": b"\0" * 4})
    _refused(lambda: tv.read_torch_file(zipped), "MAX_PICKLE_BYTES")
    legacy = write_legacy(tmp_path / "p_legacy.pth", _state_dict({"w": _tensor("0", 1, 0, (1,), (1,), True)}),
                          {"0": (1, b"\0" * 4)})
    _refused(lambda: tv.read_torch_file(legacy), "MAX_PICKLE_BYTES")


def test_legacy_declared_sizes_are_checked_before_reading(tmp_path):
    numel = 1 << 28  # 1 GiB of float32 declared, none of it present
    past_end = write_legacy(tmp_path / "past.pth", _state_dict({"w": _tensor("0", numel, 0, (numel,), (1,), True)}),
                            {"0": (numel, b"\0" * 16)})
    _refused(lambda: tv.read_torch_file(past_end), "runs past the end of the file")
    mismatch = write_legacy(tmp_path / "mismatch.pth", _state_dict({"w": _tensor("0", 4, 0, (4,), (1,), True)}),
                            {"0": (numel, b"\0" * 16)})
    _refused(lambda: tv.read_torch_file(mismatch), f"holds {numel} elements, but its tensors declare 4")


# --------------------------------------------------------------------------- .safetensors


def _safetensors(path: Path, header: dict | bytes, data: bytes = b"", length: int | None = None) -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


@pytest.mark.parametrize(
    ("header", "data", "length", "message"),
    [
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, 1 << 40, "header claims"),
        ({"w": {"dtype": "F32", "shape": [1 << 28], "data_offsets": [0, 1 << 30]}}, b"\0" * 16, None,
         "lie outside the 16 data bytes"),
        ({"w": {"dtype": "F32", "shape": [20000, 20000], "data_offsets": [0, 8]}}, b"\0" * 8, None,
         "needs 1600000000 bytes, its data_offsets give 8"),
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}}, b"\0" * 8, None, "lie outside"),
        ({"w": {"dtype": "PY_OBJECT", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, None, "is not supported"),
        (b"[" * 100000 + b"]" * 100000, b"", None, "not valid JSON"),
        ({"__metadata__": ["not", "an", "object"]}, b"", None, "'__metadata__' must be an object"),
    ],
)
def test_hostile_safetensors_headers_are_refused(tmp_path, header, data, length, message):
    path = _safetensors(tmp_path / "h.safetensors", header, data, length)
    _refused(lambda: tv.read_checkpoint(path), message)


def test_safetensors_reads_only_the_expected_tensors(tmp_path):
    path = tmp_path / "two.safetensors"
    save_file({"keep": np.arange(6, dtype=np.float32).reshape(2, 3), "head.w": np.ones(5, np.float32)}, str(path))
    arrays = tv.read_checkpoint(path, {"keep": (2, 3)}, ignore_prefixes=("head.",))
    assert list(arrays) == ["keep"]
    np.testing.assert_array_equal(arrays["keep"], np.arange(6).reshape(2, 3))
    _refused(lambda: tv.read_checkpoint(path, {"keep": (3, 2)}), "tensor 'keep' has shape (2, 3), but model")


# --------------------------------------------------------------------------- no code runs


def _exploits(marker: Path) -> dict[str, bytes]:
    """Pickles that would create ``marker`` if anything in them were executed."""
    command = _text(f"touch {marker}")
    stack_global = b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x93"  # protocol 4: os.system by STACK_GLOBAL
    return {
        "os.system": b"\x80\x02" + _global("os", "system") + b"(" + command + b"tR.",
        "os.system via STACK_GLOBAL": stack_global + b"(" + _text(f"touch {marker}") + b"tR.",
        "builtins.open": b"\x80\x02" + _global("builtins", "open") + b"(" + _text(str(marker)) + _text("w") + b"tR.",
        "builtins.exec": b"\x80\x02" + _global("builtins", "exec") + b"("
                         + _text(f"open({str(marker)!r}, 'w').close()") + b"tR.",
        "BUILD on a storage stand-in": b"\x80\x02" + _global("torch", "FloatStorage")
                                       + b"}" + _text("itemsize") + _int(0) + b"sb.",
    }


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_code_in_a_pth_never_runs(tmp_path, layout):
    marker = tmp_path / "pwned"
    for kind, payload in _exploits(marker).items():
        path = tmp_path / f"{kind.replace(' ', '_')}.pth"
        if layout == "zip":
            write_zip(path, payload, {})
        else:
            write_legacy(path, payload, {})
        with pytest.raises(tv.UnsafeCheckpointError) as info:
            tv.read_checkpoint(path)
        assert errors.exit_code(info.value) == errors.EXIT_BAD_INPUT, kind
        with pytest.raises(errors.InputError, match="refusing"):
            keras_lightnets.create_model("squeezenet1_1", weights=str(path), include_top=False,
                                         input_shape=(32, 32, 3))
        assert not marker.exists(), kind
    # The payloads are real: the plain pickle module runs the first one.
    pickle.loads(_exploits(marker)["os.system"])
    assert marker.exists()


def test_safetensors_metadata_is_never_interpreted(tmp_path):
    marker = tmp_path / "pwned"
    model = keras_lightnets.create_model("squeezenet1_1", weights=None, include_top=False, input_shape=(32, 32, 3))
    expected, _ = tv.expected_shapes(model, squeezenet.torch_mapping(model, "1.1"))
    rng = np.random.default_rng(0)
    tensors = {name: rng.normal(size=shape).astype(np.float32) for name, shape in expected.items()}
    path = tmp_path / "odd.safetensors"
    save_file(tensors, str(path), metadata={
        "format": "pt", "__reduce__": f"os.system('touch {marker}')",
        "code": f"__import__('os').system('touch {marker}')", "pickle": "cos\nsystem\n(Vtouch x\ntR.",
    })
    assert set(tv.read_checkpoint(path)) == set(expected)
    loaded = keras_lightnets.create_model("squeezenet1_1", weights=str(path), include_top=False,
                                          input_shape=(32, 32, 3))
    kernel = loaded.get_layer("conv1").get_weights()[0]
    np.testing.assert_array_equal(kernel, tensors["features.0.weight"].transpose(2, 3, 1, 0))
    assert not marker.exists()


def test_checkpoint_errors_are_input_errors():
    for cls in (tv.UnsafeCheckpointError, tv.UnsupportedCheckpointError, tv.MalformedCheckpointError,
                tv.NoTorchCounterpartError):
        assert issubclass(cls, errors.InputError) and errors.exit_code(cls("x")) == errors.EXIT_BAD_INPUT
