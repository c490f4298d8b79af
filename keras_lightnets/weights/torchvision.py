"""Port torchvision checkpoints (PyTorch ``state_dict`` files) into keras_lightnets models.

Reading (no torch needed), bounded before anything is materialised:

* ``*.safetensors`` -- the 8-byte header length is checked against the file size
  and ``MAX_SAFETENSORS_HEADER`` before the (JSON) header is read; every tensor's
  dtype, shape and data offsets are checked against the data section, and only
  the tensors the caller needs are read, each with one bounded read.
* ``*.pth`` / ``*.pt`` -- torch's zip format (``<archive>/data.pkl`` plus one raw
  ``<archive>/data/<key>`` record per storage) and torch's legacy format (< 1.6:
  magic number, protocol, system info, the object pickle, the storage keys,
  then the raw storages), read by a **restricted unpickler**. Its ``find_class``
  hands out only stand-ins for ``torch._utils._rebuild_tensor_v2`` /
  ``_rebuild_tensor`` / ``_rebuild_parameter``, the ``torch.*Storage`` types and
  ``collections.OrderedDict``; every other global (``os.system``, ...) is refused
  with ``UnsafeCheckpointError`` before anything is called. The pickle itself is
  bounded (``MAX_PICKLE_BYTES``); the zip records' declared sizes
  (``ZipInfo.file_size``, and ``MAX_INFLATE_RATIO`` for compressed records) and
  the legacy format's declared storage sizes must agree with the storages the
  pickle declares and fit in the file. Tensors stay lazy until every one has
  been checked: offsets and shapes must stay inside their storage, strides may
  not overlap (stride 0 on a dimension of size > 1 is refused), and the bytes to
  read must fit in the budget. Files this reader does not understand (e.g. torch's
  pre-0.4 tar format) are handed to ``torch.load(weights_only=True)`` when torch
  is installed (``pip install keras_lightnets[torch]``); a refused file never is.

When the caller knows the model (``port_checkpoint``, ``port_imagenet``), the
expected torch shape of every tensor is checked before any tensor is read: a
tensor of another shape, or one with no place in the model, is refused, and the
read budget is what those shapes need. Without them the budget is
``MAX_CHECKPOINT_BYTES``. Every refusal is one ``InputError`` line naming the
file and the tensor.

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

A grouped ``Conv2D`` (``groups`` g, e.g. ShuffleNet V1's pointwise group convs) has
``I`` = input channels / g on both sides, torch ``(O, I/g, kh, kw)`` -> Keras
``(kh, kw, I/g, O)``; both split the output channels into g consecutive blocks, group k
reading input block k, so the same transpose ports it.
``num_batches_tracked`` counters are dropped. Every tensor of the checkpoint must
be used (tensors of a top the headless model lacks excepted) and every shape must
fit; otherwise an ``InputError`` names the first tensor that does not.

``weights="imagenet"`` for these families downloads torchvision's ``.pth``
(``download.fetch``), converts it once and caches the Keras arrays next to it as
``<stem>.weights.h5`` (``<stem>_no_top.weights.h5`` for a headless model),
written atomically; later uses load the cached file.
"""

from __future__ import annotations

import collections
import io
import json
import math
import os
import pickle
import struct
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np

from keras_lightnets.errors import InputError

TORCH_SUFFIXES = (".safetensors", ".pth", ".pt")
TorchMapping = Callable[[object], list[tuple[str, str]]]

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
INSTALL_HINT = (
    "install torch (pip install 'keras_lightnets[torch]') to read it with torch.load(weights_only=True), "
    "or convert the checkpoint to .safetensors"
)

# Bounds on what a checkpoint may make this reader allocate (module constants: callers may change them).
MAX_PICKLE_BYTES = 64 << 20  # the object pickle of a .pth (a state_dict's is a few hundred KiB)
MAX_SAFETENSORS_HEADER = 16 << 20  # the JSON header of a .safetensors file
MAX_CHECKPOINT_BYTES = 2 << 30  # tensor bytes read from one file when the model's shapes are unknown
MAX_INFLATE_RATIO = 64  # uncompressed / compressed size of a compressed zip record (torch stores them raw)
EXPECTED_SLACK_BYTES = 1 << 20  # read budget beyond what the expected shapes need (counters, rounding)

# torch storage type name -> NumPy dtype ("bfloat16" is converted to float32 on read).
STORAGE_DTYPES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
}
# safetensors dtype -> NumPy dtype (little-endian; "bfloat16" is converted to float32 on read).
SAFETENSORS_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64", "I32": "int32",
    "I16": "int16", "I8": "int8", "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool",
}
_DROPPED_SUFFIXES = (".num_batches_tracked",)
DATA_PARALLEL_PREFIX = "module."  # what nn.DataParallel puts before every state_dict name


class UnsafeCheckpointError(InputError):
    """A pickle refers to something other than tensors; it was refused unexecuted."""


class UnsupportedCheckpointError(InputError):
    """The file is not a checkpoint format the restricted reader understands."""


class MalformedCheckpointError(UnsupportedCheckpointError):
    """The file declares sizes, offsets, shapes or strides that do not fit; refused (never handed to torch)."""


class NoTorchCounterpartError(InputError):
    """The model has no torchvision counterpart, so torch checkpoints cannot be ported into it."""


def _numpy_dtype(name: str) -> np.dtype:
    return np.dtype("<u2") if name == "bfloat16" else np.dtype(name).newbyteorder("<")


def _from_raw(data: bytes, dtype: np.dtype, bfloat16: bool) -> np.ndarray:
    """A native-order array of ``data`` (``bfloat16`` bits widened to float32)."""
    array = np.frombuffer(data, dtype=dtype)
    if bfloat16:
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array.astype(dtype.newbyteorder("="))


# --------------------------------------------------------------------------------------
# Lazy tensors and their checks
# --------------------------------------------------------------------------------------


def _refuse_state(self, state):
    raise UnsafeCheckpointError(f"refusing to set the state of a {type(self).__name__} from a pickle")


class _StorageType:
    """Stand-in for ``torch.<Name>Storage``: only carries the element dtype."""

    __slots__ = ("bfloat16", "itemsize", "name", "numpy_dtype")
    __setstate__ = _refuse_state

    def __init__(self, name: str, dtype: str):
        self.name = name
        self.bfloat16 = dtype == "bfloat16"
        self.numpy_dtype = _numpy_dtype(dtype)
        self.itemsize = self.numpy_dtype.itemsize

    def __call__(self, *args, **kwargs):
        raise UnsafeCheckpointError(f"refusing to construct torch.{self.name} from pickle arguments")

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _Storage:
    """One storage: its type, declared element count, and where its bytes are (set by the format reader).

    ``read(start, count)`` returns the raw bytes of elements ``[start, start + count)``.
    """

    __slots__ = ("key", "numel", "read", "type")
    __setstate__ = _refuse_state

    def __init__(self, storage_type: _StorageType, key: str, numel: int):
        self.type = storage_type
        self.key = key
        self.numel = numel
        self.read: Callable[[int, int], bytes] | None = None


def _element_span(shape: tuple[int, ...], strides: tuple[int, ...]) -> int:
    """Elements from the first to the last one a strided view reaches, inclusive (0 when empty)."""
    if any(n == 0 for n in shape):
        return 0
    return 1 + sum((n - 1) * s for n, s in zip(shape, strides, strict=True))


def _overlapping(shape: tuple[int, ...], strides: tuple[int, ...]) -> bool:
    """Whether two indices of a view reach the same element (stride 0, or strides that interleave)."""
    dims = sorted((s, n) for n, s in zip(shape, strides, strict=True) if n > 1)
    extent = 1  # elements covered by the dimensions with smaller strides
    for stride, size in dims:
        if stride < extent:
            return True
        extent = stride * (size - 1) + extent
    return False


class _LazyTensor:
    """A tensor of a ``.pth``: storage, offset, shape and strides, read only by ``materialize``."""

    __slots__ = ("offset", "shape", "storage", "strides")
    __setstate__ = _refuse_state

    def __init__(self, storage: _Storage, offset: int, shape: tuple[int, ...], strides: tuple[int, ...]):
        self.storage = storage
        self.offset = offset
        self.shape = shape
        self.strides = strides

    def check(self, where: str) -> int:
        """Refuse a view that aliases or leaves its storage; the bytes ``materialize`` will read."""
        span = _element_span(self.shape, self.strides)
        if _overlapping(self.shape, self.strides):
            raise MalformedCheckpointError(
                f"{where} has shape {self.shape} with strides {self.strides}, which reach the same element "
                "more than once (aliasing views are not supported)"
            )
        if span and self.offset + span > self.storage.numel:
            raise MalformedCheckpointError(
                f"{where} of shape {self.shape} at offset {self.offset} reaches element {self.offset + span} "
                f"of a storage of {self.storage.numel}"
            )
        return span * self.storage.type.itemsize

    def materialize(self, where: str) -> np.ndarray:
        storage_type = self.storage.type
        span = _element_span(self.shape, self.strides)
        if self.storage.read is None:
            raise MalformedCheckpointError(f"{where}: its storage data is missing from the file")
        data = self.storage.read(self.offset, span) if span else b""
        flat = np.frombuffer(data, dtype=storage_type.numpy_dtype)
        itemsize = storage_type.itemsize
        array = np.lib.stride_tricks.as_strided(
            flat, shape=self.shape, strides=tuple(s * itemsize for s in self.strides), writeable=False,
        ).copy() if span else np.zeros(self.shape, storage_type.numpy_dtype)
        if storage_type.bfloat16:
            return (array.astype(np.uint32) << 16).view(np.float32)
        return array.astype(array.dtype.newbyteorder("="))


class _SafeTensor:
    """A tensor of a ``.safetensors`` file: dtype, shape and its byte range, read only by ``materialize``."""

    __slots__ = ("begin", "dtype", "end", "path", "shape")

    def __init__(self, path: str, dtype: str, shape: tuple[int, ...], begin: int, end: int):
        self.path, self.dtype, self.shape, self.begin, self.end = path, dtype, shape, begin, end

    def check(self, where: str) -> int:
        return self.end - self.begin  # checked against the file when the header was read

    def materialize(self, where: str) -> np.ndarray:
        with open(self.path, "rb") as f:
            f.seek(self.begin)
            data = f.read(self.end - self.begin)
        if len(data) != self.end - self.begin:
            raise MalformedCheckpointError(f"{where}: the file ended inside its data")
        return _from_raw(data, _numpy_dtype(self.dtype), self.dtype == "bfloat16").reshape(self.shape)


def _select(
    tensors: Mapping[str, _LazyTensor | _SafeTensor], source: str, expected: Mapping[str, tuple[int, ...]] | None,
    ignore_prefixes: Iterable[str], model_name: str,
) -> dict[str, np.ndarray]:
    """Check every lazy tensor (and, given ``expected``, its name and shape), then read the wanted ones.

    A state_dict saved from ``nn.DataParallel`` / ``DistributedDataParallel`` (every name starts
    with ``module.``, e.g. megvii's ShuffleNet checkpoints) is read under the wrapped names.
    """
    if tensors and all(name.startswith(DATA_PARALLEL_PREFIX) for name in tensors):
        tensors = {name[len(DATA_PARALLEL_PREFIX):]: tensor for name, tensor in tensors.items()}
    for name, tensor in tensors.items():
        tensor.check(f"{source}: tensor {name!r}")
    if expected is None:
        wanted = list(tensors)
        budget = MAX_CHECKPOINT_BYTES
    else:
        ignore = tuple(ignore_prefixes)
        for name, shape in expected.items():  # in the model's order, as convert_state_dict reports
            if name not in tensors:
                raise InputError(
                    f"{source} has no tensor {name!r} (needed by model {model_name!r}); is it a checkpoint "
                    "of another architecture or variant?"
                )
            if tuple(tensors[name].shape) != tuple(shape):
                raise InputError(
                    f"{source}: tensor {name!r} has shape {tuple(tensors[name].shape)}, but model {model_name!r} "
                    f"needs {tuple(shape)}; is it a checkpoint of another variant?"
                )
        skipped = [n for n in tensors if n not in expected and (n.endswith(_DROPPED_SUFFIXES) or n.startswith(ignore))]
        unused = [n for n in tensors if n not in expected and n not in skipped]
        if unused:
            raise InputError(
                f"{source}: tensor {unused[0]!r} has no place in model {model_name!r} ({len(unused)} unused "
                "tensor(s)); is it a checkpoint of another architecture or variant?"
            )
        wanted = [n for n in tensors if n in expected]
        budget = 8 * sum(math.prod(shape) for shape in expected.values()) + EXPECTED_SLACK_BYTES
    needed = sum(tensors[name].check(f"{source}: tensor {name!r}") for name in wanted)
    if needed > budget:
        raise MalformedCheckpointError(
            f"{source}: its tensors would need {needed} bytes, more than the {budget} allowed "
            + ("(MAX_CHECKPOINT_BYTES)" if expected is None else f"for model {model_name!r}")
        )
    return {name: tensors[name].materialize(f"{source}: tensor {name!r}") for name in wanted}


# --------------------------------------------------------------------------------------
# Restricted reading of torch pickles
# --------------------------------------------------------------------------------------


def _int_tuple(value, what: str) -> tuple[int, ...]:
    if isinstance(value, list | tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return tuple(value)
    raise MalformedCheckpointError(f"tensor {what} must be a tuple of ints; received {value!r}"[:300])


def _rebuild_tensor(storage, storage_offset, size, stride, *rest):
    if not isinstance(storage, _Storage) or not isinstance(storage_offset, int) or storage_offset < 0:
        raise MalformedCheckpointError("malformed tensor record (storage or offset)")
    shape, strides = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if len(shape) != len(strides) or any(n < 0 for n in shape) or any(s < 0 for s in strides):
        raise MalformedCheckpointError(f"malformed tensor record: size {shape}, stride {strides}"[:300])
    return _LazyTensor(storage, storage_offset, shape, strides)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    if metadata:
        raise UnsupportedCheckpointError(f"tensors with metadata {metadata!r} (conj/neg views) are not supported"[:300])
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    if not isinstance(data, _LazyTensor):
        raise MalformedCheckpointError("malformed parameter record")
    return data


def _allowed_globals() -> dict[tuple[str, str], object]:
    """``{(module, name): stand-in}``: the only globals a checkpoint pickle may name.

    Made afresh for every load, so that a pickle's BUILD opcodes can change
    nothing beyond the objects of its own load (and the stand-ins refuse BUILD).
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
            raise UnsupportedCheckpointError(f"{self._source}: unexpected persistent id {pid!r}"[:300])
        return self._persistent(pid)


class _BoundedReader:
    """A file's ``read``/``readline``/``readinto`` that refuse to go past ``limit`` bytes from the start."""

    def __init__(self, f, limit: int, source: str):
        self._f, self._limit, self._source = f, limit, source

    def _left(self, n: int | None) -> int:
        left = self._limit - self._f.tell()
        if n is None or n < 0 or n > left:
            raise MalformedCheckpointError(f"{self._source}: its pickle is larger than {self._limit} bytes "
                                           "(MAX_PICKLE_BYTES)")
        return left

    def read(self, n: int = -1) -> bytes:
        self._left(n)
        return self._f.read(n)

    def readline(self, n: int = -1) -> bytes:
        left = self._limit - self._f.tell()
        line = self._f.readline(max(left, 0) + 1)
        if len(line) > left:
            self._left(len(line))
        return line

    def readinto(self, buffer) -> int:
        view = memoryview(buffer)
        self._left(len(view))
        return self._f.readinto(view)


def _load_pickle(f, source: str, persistent=None):
    """One restricted pickle from ``f``; any failure other than a refusal is ``UnsupportedCheckpointError``."""
    try:
        return _RestrictedUnpickler(f, source, persistent).load()
    except InputError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, RecursionError, struct.error, UnicodeDecodeError) as err:
        raise UnsupportedCheckpointError(f"{source}: not a readable torch pickle ({type(err).__name__}: {err})"[:400]
                                         ) from None


def _text(value) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else value


def _storage_pid(pid, source: str) -> tuple[_StorageType, str, int, tuple | None]:
    """``(type, key, numel, view)`` of a storage persistent id; refuses anything else."""
    if not isinstance(pid, tuple) or len(pid) < 5 or _text(pid[0]) != "storage":
        kind = _text(pid[0]) if isinstance(pid, tuple) and pid else pid
        raise UnsupportedCheckpointError(
            f"{source}: persistent id {kind!r} is not a tensor storage (whole pickled modules are not "
            "supported; save the model's state_dict)"[:400]
        )
    storage_type, key, numel = pid[1], _text(pid[2]), pid[4]
    view = pid[5] if len(pid) > 5 else None
    if not isinstance(storage_type, _StorageType) or not isinstance(key, str):
        raise MalformedCheckpointError(f"{source}: malformed storage record {pid!r}"[:300])
    if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
        raise MalformedCheckpointError(f"{source}: storage {key!r} declares no valid size ({numel!r})"[:300])
    return storage_type, key, numel, view


def _read_record(archive: zipfile.ZipFile, info: zipfile.ZipInfo, start: int, count: int, source: str) -> bytes:
    with archive.open(info) as f:
        if start:
            f.seek(start)
        data = f.read(count)
    if len(data) != count:
        raise MalformedCheckpointError(f"{source}: record {info.filename!r} is shorter than it declares")
    return data


def _check_record(info: zipfile.ZipInfo, nbytes: int, file_size: int, source: str) -> None:
    """Refuse a zip record whose declared sizes disagree with ``nbytes`` or could not come from the file."""
    if info.file_size != nbytes:
        raise MalformedCheckpointError(
            f"{source}: record {info.filename!r} declares {info.file_size} bytes, but its storage needs {nbytes}"
        )
    if info.compress_type == zipfile.ZIP_STORED:
        if info.compress_size != info.file_size or info.header_offset + info.compress_size > file_size:
            raise MalformedCheckpointError(f"{source}: record {info.filename!r} does not fit in the file")
    elif info.file_size > MAX_INFLATE_RATIO * max(info.compress_size, 1) + 4096:
        raise MalformedCheckpointError(
            f"{source}: record {info.filename!r} would inflate {info.compress_size} bytes to {info.file_size} "
            f"(more than {MAX_INFLATE_RATIO}x; torch stores its records uncompressed)"
        )


def _read_zip(archive: zipfile.ZipFile, path: str, source: str):
    """The object pickled in torch's zip format, tensors as ``_LazyTensor`` (nothing read yet)."""
    file_size = os.path.getsize(path)
    infos = {info.filename: info for info in archive.infolist()}
    pickles = [n for n in infos if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise UnsupportedCheckpointError(f"{source}: a torch zip checkpoint holds one '<archive>/data.pkl'")
    prefix = pickles[0][: -len("data.pkl")]
    order_info = infos.get(f"{prefix}byteorder")
    if order_info is not None:
        if order_info.file_size > 64:
            raise MalformedCheckpointError(f"{source}: its byteorder record is {order_info.file_size} bytes long")
        order = _read_record(archive, order_info, 0, order_info.file_size, source).decode("ascii", "replace").strip()
        if order != "little":
            raise UnsupportedCheckpointError(f"{source}: byte order {order[:20]!r} is not supported (little only)")
    pickle_info = infos[pickles[0]]
    if pickle_info.file_size > MAX_PICKLE_BYTES:
        raise MalformedCheckpointError(
            f"{source}: its pickle declares {pickle_info.file_size} bytes, more than {MAX_PICKLE_BYTES} "
            "(MAX_PICKLE_BYTES)"
        )
    storages: dict[str, _Storage] = {}

    def persistent(pid):
        storage_type, key, numel, _ = _storage_pid(pid, source)
        storage = storages.get(key)
        if storage is None:
            info = infos.get(f"{prefix}data/{key}")
            if info is None:
                raise MalformedCheckpointError(f"{source}: storage record {prefix}data/{key!r} is missing")
            _check_record(info, numel * storage_type.itemsize, file_size, source)
            storage = storages[key] = _Storage(storage_type, key, numel)
            itemsize = storage_type.itemsize
            storage.read = lambda start, count, info=info: _read_record(
                archive, info, start * itemsize, count * itemsize, source)
        elif storage.type.name != storage_type.name or storage.numel != numel:
            raise MalformedCheckpointError(f"{source}: storage {key!r} is declared twice, differently")
        return storage

    data = _read_record(archive, pickle_info, 0, pickle_info.file_size, source)
    return _load_pickle(io.BytesIO(data), source, persistent)


def _read_legacy(f, source: str):
    """The object pickled in torch's legacy (< 1.6, non-zip) format (storages located, not read)."""
    file_size = os.fstat(f.fileno()).st_size
    bounded = _BoundedReader(f, MAX_PICKLE_BYTES, source)
    if _load_pickle(bounded, source) != LEGACY_MAGIC_NUMBER:
        raise UnsupportedCheckpointError(f"{source}: not a torch checkpoint (no torch magic number)")
    protocol = _load_pickle(bounded, source)
    if protocol != LEGACY_PROTOCOL_VERSION:
        raise UnsupportedCheckpointError(f"{source}: torch legacy protocol {protocol!r} is not supported"[:300])
    sys_info = _load_pickle(bounded, source)
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
        raise UnsupportedCheckpointError(f"{source}: only little-endian checkpoints are supported")

    roots: dict[str, _Storage] = {}
    starts: dict[str, int] = {}  # byte offset of each root storage's data in the file
    views: dict[str, tuple[str, int, _Storage]] = {}

    def persistent(pid):
        storage_type, key, numel, view = _storage_pid(pid, source)
        root = roots.get(key)
        if root is None:
            root = roots[key] = _Storage(storage_type, key, numel)
        elif root.type.name != storage_type.name or root.numel != numel:
            raise MalformedCheckpointError(f"{source}: storage {key!r} is declared twice, differently")
        if view is None:
            return root
        if not (isinstance(view, tuple) and len(view) == 3):
            raise MalformedCheckpointError(f"{source}: malformed storage view {view!r}"[:300])
        view_key, offset, size = _text(view[0]), view[1], view[2]
        if not (isinstance(view_key, str) and isinstance(offset, int) and isinstance(size, int)
                and offset >= 0 and size >= 0 and offset + size <= numel):
            raise MalformedCheckpointError(f"{source}: storage view {view!r} does not fit its storage {key!r}"[:300])
        if view_key not in views:
            views[view_key] = (key, offset, _Storage(storage_type, view_key, size))
        return views[view_key][2]

    result = _load_pickle(bounded, source, persistent)
    keys = _load_pickle(bounded, source)
    if not isinstance(keys, list) or set(map(_text, keys)) != set(roots) or len(keys) != len(roots):
        raise MalformedCheckpointError(f"{source}: its storage list does not match the tensors")
    for key in map(_text, keys):
        storage = roots[key]
        header = f.read(8)
        if len(header) != 8:
            raise MalformedCheckpointError(f"{source}: truncated storage {key!r}")
        (numel,) = struct.unpack("<q", header)
        if numel != storage.numel:
            raise MalformedCheckpointError(
                f"{source}: storage {key!r} holds {numel} elements, but its tensors declare {storage.numel}"
            )
        start, itemsize = f.tell(), storage.type.itemsize
        if start + numel * itemsize > file_size:
            raise MalformedCheckpointError(f"{source}: storage {key!r} runs past the end of the file")
        starts[key] = start
        storage.read = _file_reader(f.name, start, itemsize, source)
        f.seek(start + numel * itemsize)
    for root_key, offset, view in views.values():
        view.read = _file_reader(f.name, starts[root_key] + offset * view.type.itemsize, view.type.itemsize, source)
    return result


def _file_reader(path: str, start: int, itemsize: int, source: str):
    """``read(first, count)``: elements of a storage at byte ``start`` of the file ``path``."""
    def read(first: int, count: int) -> bytes:
        with open(path, "rb") as f:
            f.seek(start + first * itemsize)
            data = f.read(count * itemsize)
        if len(data) != count * itemsize:
            raise MalformedCheckpointError(f"{source}: the file ended inside a storage")
        return data

    return read


def _state_dict_of(obj, source: str) -> dict[str, _LazyTensor]:
    """The ``{name: lazy tensor}`` of a loaded pickle that must be a tensor ``state_dict``."""
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
        raise UnsupportedCheckpointError(f"{source}: entry {bad[0]!r} of the state_dict is not a tensor"[:300])
    return dict(obj)


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


class _Loaded:
    """An array ``torch.load`` already materialised, seen through the ``_select`` checks."""

    __slots__ = ("array", "shape")

    def __init__(self, array: np.ndarray):
        self.array, self.shape = array, tuple(array.shape)

    def check(self, where: str) -> int:
        return int(self.array.nbytes)

    def materialize(self, where: str) -> np.ndarray:
        return self.array


def read_torch_file(
    path: str | os.PathLike, expected: Mapping[str, tuple[int, ...]] | None = None, *,
    ignore_prefixes: Iterable[str] = (), model_name: str = "the model",
) -> dict[str, np.ndarray]:
    """``{tensor name: array}`` of a ``.pth``/``.pt`` state_dict, without executing its pickle.

    Raises ``UnsafeCheckpointError`` when the pickle refers to any global other
    than tensor rebuilding (nothing is executed), ``MalformedCheckpointError``
    when declared sizes, offsets or strides do not fit (nothing is materialised),
    ``UnsupportedCheckpointError`` when the file is no readable checkpoint and
    torch is not installed to try it. ``expected`` etc.: see ``read_checkpoint``.
    """
    path = os.fspath(path)
    source = f"checkpoint {path!r}"
    try:
        if zipfile.is_zipfile(path):
            try:
                with zipfile.ZipFile(path) as archive:
                    tensors = _state_dict_of(_read_zip(archive, path, source), source)
                    return _select(tensors, source, expected, ignore_prefixes, model_name)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError) as err:
                raise UnsupportedCheckpointError(f"{source}: unreadable zip ({type(err).__name__}: {err})") from None
        if tarfile.is_tarfile(path):
            raise UnsupportedCheckpointError(f"{source} is in torch's old tar format, which is not supported")
        with open(path, "rb") as f:
            tensors = _state_dict_of(_read_legacy(f, source), source)
        return _select(tensors, source, expected, ignore_prefixes, model_name)
    except (UnsafeCheckpointError, MalformedCheckpointError):
        raise  # refused: never handed to torch
    except InputError as err:
        if not isinstance(err, UnsupportedCheckpointError):
            raise  # a tensor the model has no place for, or of the wrong shape
        failure = err
    except (OSError, ValueError, TypeError, struct.error) as err:
        failure = UnsupportedCheckpointError(f"{source}: not a readable torch checkpoint ({type(err).__name__}: {err})")
    arrays = _torch_load(path)
    if arrays is None:
        raise UnsupportedCheckpointError(f"{failure} -- cannot read {path!r} without torch: {INSTALL_HINT}") from None
    return _select({k: _Loaded(v) for k, v in arrays.items()}, source, expected, ignore_prefixes, model_name)


def _safetensors_header(path: str, source: str) -> dict[str, _SafeTensor]:
    """The lazy tensors a ``.safetensors`` file declares, checked against its size (header read bounded)."""
    file_size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise MalformedCheckpointError(f"{source} is too short for a safetensors header")
        (length,) = struct.unpack("<Q", head)
        if length > MAX_SAFETENSORS_HEADER or 8 + length > file_size:
            raise MalformedCheckpointError(
                f"{source}: its header claims {length} bytes, but the file has {file_size} and at most "
                f"{MAX_SAFETENSORS_HEADER} are allowed (MAX_SAFETENSORS_HEADER)"
            )
        raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise MalformedCheckpointError(f"{source}: its header is not valid JSON ({type(err).__name__})") from None
    if not isinstance(header, dict):
        raise MalformedCheckpointError(f"{source}: its header must be a JSON object")
    data_start = 8 + length
    data_size = file_size - data_start
    tensors: dict[str, _SafeTensor] = {}
    for name, info in header.items():
        where = f"{source}: tensor {name!r}"
        if name == "__metadata__":
            if not isinstance(info, dict):
                raise MalformedCheckpointError(f"{source}: '__metadata__' must be an object of strings")
            continue  # free text; never interpreted
        if not isinstance(info, dict):
            raise MalformedCheckpointError(f"{where}: its header entry must be an object")
        dtype = SAFETENSORS_DTYPES.get(info.get("dtype")) if isinstance(info.get("dtype"), str) else None
        shape, offsets = info.get("shape"), info.get("data_offsets")
        if dtype is None:
            raise MalformedCheckpointError(f"{where}: dtype {info.get('dtype')!r} is not supported"[:300])
        if not (isinstance(shape, list) and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                                for n in shape)):
            raise MalformedCheckpointError(f"{where}: shape {shape!r} is not a list of sizes"[:300])
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(isinstance(n, int) and not isinstance(n, bool) for n in offsets)):
            raise MalformedCheckpointError(f"{where}: data_offsets {offsets!r} are not two integers"[:300])
        begin, end = offsets
        if not 0 <= begin <= end <= data_size:
            raise MalformedCheckpointError(
                f"{where}: its data_offsets [{begin}, {end}] lie outside the {data_size} data bytes of the file"
            )
        nbytes = math.prod(shape) * _numpy_dtype(dtype).itemsize
        if end - begin != nbytes:
            raise MalformedCheckpointError(
                f"{where}: shape {tuple(shape)} of {info['dtype']} needs {nbytes} bytes, its data_offsets give "
                f"{end - begin}"
            )
        tensors[name] = _SafeTensor(path, dtype, tuple(shape), data_start + begin, data_start + end)
    return tensors


def read_checkpoint(
    path: str | os.PathLike, expected: Mapping[str, tuple[int, ...]] | None = None, *,
    ignore_prefixes: Iterable[str] = (), model_name: str = "the model",
) -> dict[str, np.ndarray]:
    """``{tensor name: array}`` of a ``.safetensors``, ``.pth`` or ``.pt`` state_dict.

    Every declared size, offset and stride is checked before any tensor is read.
    ``expected`` (``{torch tensor name: torch shape}`` of the model being loaded,
    see ``expected_shapes``) makes it stricter: a tensor of another shape, or one
    neither expected nor under ``ignore_prefixes`` (nor a ``num_batches_tracked``
    counter), is refused, and only the expected tensors are read. ``InputError``
    (one line naming the file and the tensor) for anything refused.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path!r}")
    suffix = Path(path).suffix.lower()
    if suffix not in TORCH_SUFFIXES:
        raise InputError(f"unsupported checkpoint {path!r}; allowed suffixes: {', '.join(TORCH_SUFFIXES)}")
    if suffix == ".safetensors":
        source = f"safetensors checkpoint {path!r}"
        return _select(_safetensors_header(path, source), source, expected, ignore_prefixes, model_name)
    return read_torch_file(path, expected, ignore_prefixes=ignore_prefixes, model_name=model_name)


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
    their tensors from the "every tensor is used" check. Raises
    ``InputError`` naming the first missing, misshapen or unused tensor.
    """
    layers = {layer.name: layer for layer in model.layers}
    weighted = [layer.name for layer in model.layers if layer.weights]
    mapping = list(mapping)
    mapped = {keras_name for keras_name, _ in mapping}
    unmapped = [name for name in weighted if name not in mapped]
    if unmapped:
        raise InputError(f"model {model.name!r}: the torch mapping does not cover layer {unmapped[0]!r}")
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
                raise InputError(
                    f"{source} has no tensor {tensor_name!r} (for layer {keras_name!r} of model {model.name!r}); "
                    "is it a checkpoint of another architecture or variant?"
                )
            array = np.asarray(state_dict[tensor_name])
            if tuple(array.shape) != torch_shape:
                raise InputError(
                    f"{source}: tensor {tensor_name!r} has shape {tuple(array.shape)}, but layer {keras_name!r} "
                    f"of model {model.name!r} needs {torch_shape}; is it a checkpoint of another variant?"
                )
            used.add(tensor_name)
            converted.append(_to_keras(kind, suffix, array, layer))
        arrays[keras_name] = converted
    unused = [n for n in state_dict if n not in used and not any(n.startswith(p) for p in excused)]
    if unused:
        raise InputError(
            f"{source}: tensor {unused[0]!r} has no place in model {model.name!r} ({len(unused)} unused "
            "tensor(s)); is it a checkpoint of another architecture or variant?"
        )
    return arrays


def expected_shapes(model, mapping: Iterable[tuple[str, str]]) -> tuple[dict[str, tuple[int, ...]], list[str]]:
    """``({torch tensor name: torch shape}, [excused prefixes])`` of ``model`` under ``mapping``.

    The shapes are what ``convert_state_dict`` will demand; the prefixes are those
    of mapped layers the model lacks (the top of a headless model), whose tensors
    are skipped unread.
    """
    layers = {layer.name: layer for layer in model.layers}
    expected: dict[str, tuple[int, ...]] = {}
    excused: list[str] = []
    for keras_name, prefix in mapping:
        layer = layers.get(keras_name)
        if layer is None or not layer.weights:
            excused.append(f"{prefix}.")
            continue
        for suffix, shape in _torch_shapes(type(layer).__name__, layer).items():
            expected[f"{prefix}.{suffix}"] = shape
    return expected, excused


def _read_for(model, path, pairs: list[tuple[str, str]]) -> dict[str, np.ndarray]:
    """The checkpoint's tensors that ``model`` needs, every declared shape checked before reading."""
    expected, excused = expected_shapes(model, pairs)
    return read_checkpoint(path, expected, ignore_prefixes=excused, model_name=model.name)


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

    pairs = _require_mapping(model, torch_mapping)(model)
    source = f"checkpoint {os.fspath(path)!r}"
    arrays = convert_state_dict(model, _read_for(model, path, pairs), pairs, source)
    assign_by_name(model, arrays, source=source)


def write_weights_h5(arrays: Mapping[str, list[np.ndarray]], path: str | os.PathLike) -> None:
    """Write ``{layer name: arrays}`` atomically as ``layers/<name>/vars/<i>`` (read by ``loading``).

    Groups are named by layer name (``vars`` carries the name too), so the file
    loads by name into either flavour. The data goes to a marked temporary file in
    the same folder (``files.atomic_path``) that is renamed into place,
    so a failure leaves nothing behind.
    """
    import h5py

    from keras_lightnets.files import atomic_path

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        group = h5.create_group("layers")
        for layer_name, layer_arrays in arrays.items():
            variables = group.create_group(layer_name).create_group("vars")
            variables.attrs["name"] = layer_name
            for i, array in enumerate(layer_arrays):
                variables.create_dataset(str(i), data=array)


def converted_cache_path(file_name: str, include_top: bool) -> Path:
    """Where the converted Keras arrays of the torchvision file ``file_name`` are cached."""
    from keras_lightnets.weights.download import cache_dir

    stem = file_name.rsplit(".", 1)[0]
    return cache_dir() / f"{stem}{'' if include_top else '_no_top'}.weights.h5"


def port_imagenet(model, file_name: str, torch_mapping: TorchMapping | None) -> None:
    """``weights="imagenet"`` from the PyTorch checkpoint ``file_name`` (torchvision's or timm's):
    converted once, then cached."""
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
    source = f"checkpoint {file_name!r}"
    arrays = convert_state_dict(model, _read_for(model, path, pairs), pairs, source)
    assign_by_name(model, arrays, source=source)
    write_weights_h5(arrays, cached)
