"""Port torchvision checkpoints (PyTorch ``state_dict`` files) into keras_lightnets models.

Reading (no torch needed):

* ``*.safetensors`` -- read with ``safetensors.numpy``.
* ``*.pth`` / ``*.pt`` -- torch's zip format (``<archive>/data.pkl`` plus one raw
  ``<archive>/data/<key>`` record per storage) and torch's legacy format (< 1.6:
  magic number, protocol, system info, the object pickle, the storage keys,
  then the raw storages), read by a **restricted unpickler**. Its ``find_class``
  hands out only stand-ins for ``torch._utils._rebuild_tensor_v2`` /
  ``_rebuild_tensor`` / ``_rebuild_parameter``, the ``torch.*Storage`` types and
  ``collections.OrderedDict``; every other global (``os.system``, ...) is refused
  with ``UnsafeCheckpointError`` before anything is called. Tensors are
  rebuilt as NumPy arrays. Files this reader does not understand (e.g. torch's
  pre-0.4 tar format) are handed to ``torch.load(weights_only=True)`` when torch
  is installed (``pip install keras_lightnets[torch]``); a refused file never is.

Converting: a family module declares how its Keras layers map to torchvision
``state_dict`` prefixes (``torch_mapping(model) -> [(keras_layer_name, torch_prefix)]``).
``convert_state_dict`` then transposes by Keras layer class:

==========================  ==================================  ==========================
Keras layer                  torch tensors                       Keras weights
==========================  ==================================  ==========================
``Conv2D``                   ``weight`` (O, I, kh, kw), ``bias``  kernel (kh, kw, I, O), bias
``DepthwiseConv2D``          ``weight`` (C*m, 1, kh, kw)          kernel (kh, kw, C, m)
``Dense``                    ``weight`` (out, in), ``bias``       kernel (in, out), bias
``BatchNormalization``       ``weight``, ``bias``,                gamma, beta, moving mean,
                             ``running_mean``, ``running_var``    moving variance
==========================  ==================================  ==========================

``num_batches_tracked`` counters are dropped. Every tensor of the checkpoint must
be used (tensors of a top the headless model lacks excepted) and every shape must
fit; otherwise a ``ValueError`` names the first tensor that does not.

``weights="imagenet"`` for these families downloads torchvision's ``.pth``
(``download.fetch``), converts it once and caches the Keras arrays next to it as
``<stem>.weights.h5`` (``<stem>_no_top.weights.h5`` for a headless model),
written atomically; later uses load the cached file.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np

TORCH_SUFFIXES = (".safetensors", ".pth", ".pt")
TorchMapping = Callable[[object], list[tuple[str, str]]]

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
INSTALL_HINT = (
    "install torch (pip install 'keras_lightnets[torch]') to read it with torch.load(weights_only=True), "
    "or convert the checkpoint to .safetensors"
)

# torch storage type name -> NumPy dtype ("bfloat16" is converted to float32 on read).
STORAGE_DTYPES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
}
_DROPPED_SUFFIXES = (".num_batches_tracked",)


class UnsafeCheckpointError(ValueError):
    """A pickle refers to something other than tensors; it was refused unexecuted."""


class UnsupportedCheckpointError(ValueError):
    """The file is not a checkpoint format the restricted reader understands."""


class NoTorchCounterpartError(ValueError):
    """The model has no torchvision layout, so torch checkpoints cannot be ported into it."""


# --------------------------------------------------------------------------------------
# Restricted reading of torch pickles
# --------------------------------------------------------------------------------------


class _StorageType:
    """Stand-in for ``torch.<Name>Storage``: only carries the element dtype."""

    __slots__ = ("itemsize", "name", "numpy_dtype")

    def __init__(self, name: str, dtype: str):
        self.name = name
        self.numpy_dtype = np.dtype("uint16") if dtype == "bfloat16" else np.dtype(dtype)
        self.itemsize = self.numpy_dtype.itemsize

    def __call__(self, *args, **kwargs):
        raise UnsafeCheckpointError(f"refusing to construct torch.{self.name} from pickle arguments")

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _Storage:
    """One storage of a checkpoint: its type and raw little-endian bytes (set later for legacy files)."""

    __slots__ = ("data", "numel", "type")

    def __init__(self, storage_type: _StorageType, numel: int | None, data: bytes | None = None):
        self.type = storage_type
        self.numel = numel
        self.data = data


class _LazyTensor:
    """A tensor whose storage bytes may arrive after the pickle (legacy format)."""

    __slots__ = ("offset", "shape", "storage", "strides")

    def __init__(self, storage: _Storage, offset: int, shape: tuple[int, ...], strides: tuple[int, ...]):
        self.storage = storage
        self.offset = offset
        self.shape = shape
        self.strides = strides

    def materialize(self, name: str) -> np.ndarray:
        storage = self.storage
        if storage.data is None:
            raise UnsupportedCheckpointError(f"tensor {name!r}: its storage data is missing from the file")
        itemsize = storage.type.itemsize
        available = len(storage.data) // itemsize
        if any(n == 0 for n in self.shape):
            needed = 0
        else:
            needed = self.offset + 1 + sum((n - 1) * s for n, s in zip(self.shape, self.strides, strict=True))
        if needed > available:
            raise UnsupportedCheckpointError(
                f"tensor {name!r} of shape {self.shape} reaches element {needed} of a storage of {available}"
            )
        flat = np.frombuffer(storage.data, dtype=storage.type.numpy_dtype.newbyteorder("<"), count=available)
        array = np.lib.stride_tricks.as_strided(
            flat[self.offset:] if needed else flat[:0],
            shape=self.shape, strides=tuple(s * itemsize for s in self.strides),
        ).copy()
        if storage.type.name == "BFloat16Storage":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        return array.astype(array.dtype.newbyteorder("="))


def _int_tuple(value, what: str) -> tuple[int, ...]:
    if isinstance(value, list | tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return tuple(value)
    raise UnsupportedCheckpointError(f"tensor {what} must be a tuple of ints; received {value!r}")


def _rebuild_tensor(storage, storage_offset, size, stride, *rest):
    if not isinstance(storage, _Storage) or not isinstance(storage_offset, int) or storage_offset < 0:
        raise UnsupportedCheckpointError("malformed tensor record (storage or offset)")
    shape, strides = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if len(shape) != len(strides) or any(n < 0 for n in shape) or any(s < 0 for s in strides):
        raise UnsupportedCheckpointError(f"malformed tensor record: size {shape}, stride {strides}")
    return _LazyTensor(storage, storage_offset, shape, strides)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    if metadata:
        raise UnsupportedCheckpointError(f"tensors with metadata {metadata!r} (conj/neg views) are not supported")
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    if not isinstance(data, _LazyTensor):
        raise UnsupportedCheckpointError("malformed parameter record")
    return data


def _allowed_globals() -> dict[tuple[str, str], object]:
    """``{(module, name): stand-in}``: the only globals a checkpoint pickle may name.

    Made afresh for every load, so that a pickle's BUILD opcodes can change
    nothing beyond the objects of its own load.
    """
    def rebuild_tensor(*args):
        return _rebuild_tensor(*args)

    def rebuild_tensor_v2(*args):
        return _rebuild_tensor_v2(*args)

    def rebuild_parameter(*args):
        return _rebuild_parameter(*args)

    allowed: dict[tuple[str, str], object] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor"): rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
    }
    for name, dtype in STORAGE_DTYPES.items():
        allowed[("torch", name)] = allowed[("torch.cuda", name)] = _StorageType(name, dtype)
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals of a tensor ``state_dict``."""

    def __init__(self, file, source: str, persistent: Callable[[tuple], object] | None = None):
        super().__init__(file, encoding="utf-8")
        self._source = source
        self._persistent = persistent
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"{self._source}: refusing to unpickle the global {module}.{name}: a checkpoint may only "
                "hold tensors (nothing was executed). Load it only if you trust it, e.g. with torch, "
                "and save its state_dict as .safetensors"
            ) from None

    def persistent_load(self, pid):
        if self._persistent is None:
            raise UnsupportedCheckpointError(f"{self._source}: unexpected persistent id {pid!r}")
        return self._persistent(pid)


def _text(value) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else value


def _storage_pid(pid, source: str) -> tuple[_StorageType, str, int | None, tuple | None]:
    """``(type, key, numel, view)`` of a storage persistent id; refuses anything else."""
    if not isinstance(pid, tuple) or len(pid) < 5 or _text(pid[0]) != "storage":
        kind = _text(pid[0]) if isinstance(pid, tuple) and pid else pid
        raise UnsupportedCheckpointError(
            f"{source}: persistent id {kind!r} is not a tensor storage (whole pickled modules are not "
            "supported; save the model's state_dict)"
        )
    storage_type, key, numel = pid[1], _text(pid[2]), pid[4]
    view = pid[5] if len(pid) > 5 else None
    if not isinstance(storage_type, _StorageType) or not isinstance(key, str):
        raise UnsupportedCheckpointError(f"{source}: malformed storage record {pid!r}")
    if numel is not None and (not isinstance(numel, int) or numel < 0):
        raise UnsupportedCheckpointError(f"{source}: malformed storage size in {pid!r}")
    return storage_type, key, numel, view


def _read_zip(path: str, source: str):
    """The object pickled in torch's zip format, tensors as ``_LazyTensor``."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise UnsupportedCheckpointError(f"{source}: a torch zip checkpoint holds one '<archive>/data.pkl'")
        prefix = pickles[0][: -len("data.pkl")]
        if f"{prefix}byteorder" in names:
            order = archive.read(f"{prefix}byteorder").decode("ascii", "replace").strip()
            if order != "little":
                raise UnsupportedCheckpointError(f"{source}: byte order {order!r} is not supported (little only)")
        storages: dict[str, _Storage] = {}

        def persistent(pid):
            storage_type, key, numel, _ = _storage_pid(pid, source)
            if key not in storages:
                record = f"{prefix}data/{key}"
                if record not in names:
                    raise UnsupportedCheckpointError(f"{source}: storage record {record!r} is missing")
                storages[key] = _Storage(storage_type, numel, archive.read(record))
            return storages[key]

        with archive.open(pickles[0]) as f:
            return _RestrictedUnpickler(io.BytesIO(f.read()), source, persistent).load()


def _read_legacy(data: bytes, source: str):
    """The object pickled in torch's legacy (< 1.6, non-zip) format."""
    f = io.BytesIO(data)
    try:
        magic = _RestrictedUnpickler(f, source).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as err:
        if isinstance(err, UnsafeCheckpointError):
            raise
        raise UnsupportedCheckpointError(f"{source}: not a torch checkpoint ({err})") from err
    if magic != LEGACY_MAGIC_NUMBER:
        raise UnsupportedCheckpointError(f"{source}: not a torch checkpoint (no torch magic number)")
    protocol = _RestrictedUnpickler(f, source).load()
    if protocol != LEGACY_PROTOCOL_VERSION:
        raise UnsupportedCheckpointError(f"{source}: torch legacy protocol {protocol!r} is not supported")
    sys_info = _RestrictedUnpickler(f, source).load()
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
        raise UnsupportedCheckpointError(f"{source}: only little-endian checkpoints are supported")

    roots: dict[str, _Storage] = {}
    views: dict[str, tuple[str, int, int | None, _Storage]] = {}

    def persistent(pid):
        storage_type, key, numel, view = _storage_pid(pid, source)
        if key not in roots:
            roots[key] = _Storage(storage_type, numel)
        if view is None:
            return roots[key]
        if not (isinstance(view, tuple) and len(view) == 3):
            raise UnsupportedCheckpointError(f"{source}: malformed storage view {view!r}")
        view_key, offset, size = _text(view[0]), view[1], view[2]
        if not (isinstance(offset, int) and offset >= 0 and (size is None or (isinstance(size, int) and size >= 0))):
            raise UnsupportedCheckpointError(f"{source}: malformed storage view {view!r}")
        if view_key not in views:
            views[view_key] = (key, offset, size, _Storage(storage_type, size))
        return views[view_key][3]

    result = _RestrictedUnpickler(f, source, persistent).load()
    keys = _RestrictedUnpickler(f, source).load()
    if not isinstance(keys, list) or set(map(_text, keys)) != set(roots):
        raise UnsupportedCheckpointError(f"{source}: its storage list does not match the tensors")
    for key in map(_text, keys):
        storage = roots[key]
        header = f.read(8)
        if len(header) != 8:
            raise UnsupportedCheckpointError(f"{source}: truncated storage {key!r}")
        (numel,) = struct.unpack("<q", header)
        if numel < 0:
            raise UnsupportedCheckpointError(f"{source}: malformed size of storage {key!r}")
        nbytes = numel * storage.type.itemsize
        storage.data = f.read(nbytes)
        if len(storage.data) != nbytes:
            raise UnsupportedCheckpointError(f"{source}: truncated storage {key!r}")
    for root_key, offset, size, view in views.values():
        root, itemsize = roots[root_key], view.type.itemsize
        view.data = root.data[offset * itemsize: (offset + (size or 0)) * itemsize]
    return result


def _state_dict_of(obj, source: str) -> dict[str, np.ndarray]:
    """The ``{name: array}`` of a loaded pickle that must be a tensor ``state_dict``."""
    if isinstance(obj, Mapping) and not all(isinstance(v, _LazyTensor) for v in obj.values()):
        for key in ("state_dict", "model"):  # training checkpoints wrap the state_dict
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, _LazyTensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        found = "a single tensor" if isinstance(obj, _LazyTensor) else f"a {type(obj).__name__}"
        raise UnsupportedCheckpointError(f"{source}: expected a state_dict (names -> tensors); found {found}")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, _LazyTensor)]
    if bad:
        raise UnsupportedCheckpointError(f"{source}: entry {bad[0]!r} of the state_dict is not a tensor")
    return {name: tensor.materialize(name) for name, tensor in obj.items()}


def _torch_load(path: str) -> dict[str, np.ndarray] | None:
    """``torch.load(weights_only=True)`` as NumPy arrays, or ``None`` when torch is missing."""
    try:
        import torch
    except ImportError:
        return None
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UnsupportedCheckpointError(f"torch checkpoint {path!r} is not a state_dict of tensors")
    return {
        name: (t.detach().float() if t.dtype == torch.bfloat16 else t.detach()).cpu().numpy()
        for name, t in obj.items()
    }


def read_torch_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{tensor name: array}`` of a ``.pth``/``.pt`` state_dict, without executing its pickle.

    Raises ``UnsafeCheckpointError`` when the pickle refers to any global other
    than tensor rebuilding (nothing is executed), ``ValueError`` when the file is
    no readable checkpoint and torch is not installed to try it.
    """
    path = os.fspath(path)
    source = f"checkpoint {path!r}"
    try:
        if zipfile.is_zipfile(path):
            return _state_dict_of(_read_zip(path, source), source)
        if tarfile.is_tarfile(path):
            raise UnsupportedCheckpointError(f"{source} is in torch's old tar format, which is not supported")
        with open(path, "rb") as f:
            return _state_dict_of(_read_legacy(f.read(), source), source)
    except UnsafeCheckpointError:
        raise
    except Exception as err:  # any other failure: a format this reader does not know
        if not isinstance(err, UnsupportedCheckpointError):
            err = UnsupportedCheckpointError(f"{source}: not a readable torch checkpoint ({type(err).__name__}: {err})")
        arrays = _torch_load(path)
        if arrays is None:
            raise UnsupportedCheckpointError(f"{err} -- cannot read {path!r} without torch: {INSTALL_HINT}") from err
        return arrays


def read_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{tensor name: array}`` of a ``.safetensors``, ``.pth`` or ``.pt`` state_dict."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path!r}")
    suffix = Path(path).suffix.lower()
    if suffix not in TORCH_SUFFIXES:
        raise ValueError(f"unsupported checkpoint {path!r}; allowed suffixes: {', '.join(TORCH_SUFFIXES)}")
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            return dict(load_file(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise ValueError(f"cannot read safetensors checkpoint {path!r}: {err}") from err
    return read_torch_file(path)


# --------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------


def _torch_shapes(kind: str, layer) -> dict[str, tuple[int, ...]]:
    """``{torch tensor suffix: torch shape}`` that a Keras layer of ``kind`` needs, in Keras weight order."""
    shapes = [tuple(w.shape) for w in layer.weights]
    if kind == "Conv2D":
        kh, kw, cin, cout = shapes[0]
        out = {"weight": (cout, cin, kh, kw)}
        if layer.use_bias:
            out["bias"] = shapes[1]
        return out
    if kind == "DepthwiseConv2D":
        kh, kw, channels, multiplier = shapes[0]
        out = {"weight": (channels * multiplier, 1, kh, kw)}
        if layer.use_bias:
            out["bias"] = shapes[1]
        return out
    if kind == "Dense":
        cin, cout = shapes[0]
        out = {"weight": (cout, cin)}
        if layer.use_bias:
            out["bias"] = shapes[1]
        return out
    if kind == "BatchNormalization":
        if not (layer.scale and layer.center):
            raise ValueError(f"layer {layer.name!r}: only BatchNormalization with scale and center can be ported")
        return {name: shapes[-1] for name in ("weight", "bias", "running_mean", "running_var")}
    raise ValueError(f"layer {layer.name!r}: cannot port weights into a {kind} layer")


def _to_keras(kind: str, suffix: str, array: np.ndarray, layer) -> np.ndarray:
    if suffix == "weight" and kind == "Conv2D":
        array = array.transpose(2, 3, 1, 0)
    elif suffix == "weight" and kind == "DepthwiseConv2D":
        kh, kw, channels, multiplier = tuple(layer.weights[0].shape)
        array = array.reshape(channels, multiplier, kh, kw).transpose(2, 3, 0, 1)
    elif suffix == "weight" and kind == "Dense":
        array = array.T
    return np.ascontiguousarray(array, dtype=np.float32)


def convert_state_dict(
    model, state_dict: Mapping[str, np.ndarray], mapping: Iterable[tuple[str, str]], source: str = "checkpoint",
) -> dict[str, list[np.ndarray]]:
    """``{Keras layer name: [arrays in Keras weight order]}`` from a torch ``state_dict``.

    ``mapping`` pairs each Keras layer name with its torch prefix (``"features.0"``);
    pairs whose layer ``model`` lacks (the top of a headless model) only excuse
    their tensors from the "every tensor is used" check. Raises ``ValueError``
    naming the first missing, misshapen or unused tensor.
    """
    layers = {layer.name: layer for layer in model.layers}
    weighted = [layer.name for layer in model.layers if layer.weights]
    mapping = list(mapping)
    mapped = {keras_name for keras_name, _ in mapping}
    unmapped = [name for name in weighted if name not in mapped]
    if unmapped:
        raise ValueError(f"model {model.name!r}: the torch mapping does not cover layer {unmapped[0]!r}")
    used: set[str] = {name for name in state_dict if name.endswith(_DROPPED_SUFFIXES)}
    excused: list[str] = []
    arrays: dict[str, list[np.ndarray]] = {}
    for keras_name, prefix in mapping:
        layer = layers.get(keras_name)
        if layer is None or not layer.weights:
            excused.append(f"{prefix}.")
            continue
        kind = type(layer).__name__
        converted = []
        for suffix, torch_shape in _torch_shapes(kind, layer).items():
            tensor_name = f"{prefix}.{suffix}"
            if tensor_name not in state_dict:
                raise ValueError(
                    f"{source} has no tensor {tensor_name!r} (for layer {keras_name!r} of model {model.name!r}); "
                    "is it a checkpoint of another architecture or variant?"
                )
            array = np.asarray(state_dict[tensor_name])
            if tuple(array.shape) != torch_shape:
                raise ValueError(
                    f"{source}: tensor {tensor_name!r} has shape {tuple(array.shape)}, but layer {keras_name!r} "
                    f"of model {model.name!r} needs {torch_shape}; is it a checkpoint of another variant?"
                )
            used.add(tensor_name)
            converted.append(_to_keras(kind, suffix, array, layer))
        arrays[keras_name] = converted
    unused = [n for n in state_dict if n not in used and not any(n.startswith(p) for p in excused)]
    if unused:
        raise ValueError(
            f"{source}: tensor {unused[0]!r} has no place in model {model.name!r} ({len(unused)} unused "
            "tensor(s)); is it a checkpoint of another architecture or variant?"
        )
    return arrays


def _require_mapping(model, torch_mapping: TorchMapping | None) -> TorchMapping:
    if torch_mapping is None:
        raise NoTorchCounterpartError(
            f"model {model.name!r} has no torchvision counterpart, so torch checkpoints cannot be ported "
            "into it; pass a Keras weights file (.weights.h5 / .h5) instead"
        )
    return torch_mapping


def port_checkpoint(model, path: str | os.PathLike, torch_mapping: TorchMapping | None) -> None:
    """Load the torchvision checkpoint ``path`` (``.safetensors``/``.pth``/``.pt``) into ``model``."""
    from keras_lightnets.weights.loading import assign_by_name

    mapping = _require_mapping(model, torch_mapping)
    source = f"checkpoint {os.fspath(path)!r}"
    arrays = convert_state_dict(model, read_checkpoint(path), mapping(model), source)
    assign_by_name(model, arrays, source=source)


def write_weights_h5(arrays: Mapping[str, list[np.ndarray]], path: str | os.PathLike) -> None:
    """Write ``{layer name: arrays}`` atomically as ``layers/<name>/vars/<i>`` (read by ``loading``).

    Groups are named by layer name (``vars`` carries the name too), so the file
    loads by name into either flavour. The data goes to a temporary file in the
    same folder that is renamed into place, so a failure leaves nothing behind.
    """
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as h5:
            group = h5.create_group("layers")
            for layer_name, layer_arrays in arrays.items():
                variables = group.create_group(layer_name).create_group("vars")
                variables.attrs["name"] = layer_name
                for i, array in enumerate(layer_arrays):
                    variables.create_dataset(str(i), data=array)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def converted_cache_path(file_name: str, include_top: bool) -> Path:
    """Where the converted Keras arrays of the torchvision file ``file_name`` are cached."""
    from keras_lightnets.weights.download import cache_dir

    stem = file_name.rsplit(".", 1)[0]
    return cache_dir() / f"{stem}{'' if include_top else '_no_top'}.weights.h5"


def port_imagenet(model, file_name: str, torch_mapping: TorchMapping | None) -> None:
    """``weights="imagenet"`` from torchvision's ``file_name``: converted once, then cached."""
    from keras_lightnets.weights.download import fetch
    from keras_lightnets.weights.loading import assign_by_name, load_weights

    mapping = _require_mapping(model, torch_mapping)
    pairs = mapping(model)
    names = {layer.name for layer in model.layers}
    include_top = all(keras_name in names for keras_name, _ in pairs)
    cached = converted_cache_path(file_name, include_top)
    if cached.is_file():
        load_weights(model, cached)
        return
    path = fetch(file_name)
    source = f"torchvision checkpoint {file_name!r}"
    arrays = convert_state_dict(model, read_checkpoint(path), pairs, source)
    assign_by_name(model, arrays, source=source)
    write_weights_h5(arrays, cached)
