"""Load weight files into a built model, by layer name, in either Keras flavour.

Formats (chosen by file name):

* ``*.weights.h5`` -- Keras 3 ``save_weights`` layout (``layers/<name>/vars/<i>``).
* ``*.h5`` / ``*.hdf5`` -- the legacy Keras layout of the official
  keras.applications ImageNet files (``layer_names`` / ``weight_names`` attributes,
  optionally under ``model_weights``), as written by tf_keras ``save_weights``.

Both are read with h5py and matched **by layer name** when the file's names are
the model's: every weighted layer of the model must be in the file and every
layer of the file in the model. Official files whose names Keras 3 cannot use
(tf_keras' MobileNetV3 names hold ``/``) are matched by order, as Keras itself
loads them. Either way every array's shape is checked, a ``ValueError`` names the
first mismatch, and nothing is assigned until the whole file has been checked.
"""

from __future__ import annotations

import os

import numpy as np

from keras_lightnets.errors import InputError

WEIGHT_FORMATS = (".weights.h5", ".h5", ".hdf5")


def _decode(value) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _names(attrs, key: str, where: str, source: str) -> list[str]:
    """The attribute ``key`` of ``where`` as a list of names (``InputError`` for any other type)."""
    try:
        value = attrs.get(key)
    except (OSError, TypeError, ValueError, KeyError) as err:
        raise InputError(f"{source}: unreadable attribute {key!r} of {where} ({err})") from None
    if value is None:
        return []
    array = np.asarray(value)
    if array.ndim != 1 or not all(isinstance(v, bytes | str | np.bytes_ | np.str_) for v in array.tolist()):
        raise InputError(f"{source}: attribute {key!r} of {where} must be a list of names; it holds "
                         f"{array.dtype} of shape {array.shape}")
    return [_decode(v) for v in array.tolist()]


def _member(group, name: str, kind: str, source: str):
    """``group[name]``, which must be a local (not linked-out) h5py group or numeric dataset."""
    import h5py

    where = f"{group.name.rstrip('/')}/{name}"
    try:
        link = group.get(name, getlink=True)
    except (OSError, TypeError, ValueError, KeyError) as err:
        raise InputError(f"{source}: unreadable entry {where!r} ({err})") from None
    if link is None:
        raise InputError(f"{source}: {where!r} is named in the file but missing")
    if isinstance(link, h5py.ExternalLink):
        raise InputError(f"{source}: {where!r} links to another file ({link.filename!r}); refused")
    try:
        member = group[name]
    except (OSError, KeyError, ValueError) as err:
        raise InputError(f"{source}: {where!r} cannot be opened ({err})") from None
    wanted = h5py.Group if kind == "group" else h5py.Dataset
    if not isinstance(member, wanted):
        raise InputError(f"{source}: {where!r} must be an HDF5 {kind}")
    if kind == "dataset":
        if member.is_virtual:
            raise InputError(f"{source}: {where!r} is a virtual dataset (it maps other files); refused")
        if not (np.issubdtype(member.dtype, np.number) or member.dtype == bool):
            raise InputError(f"{source}: {where!r} holds {member.dtype}; weights must be numeric arrays")
    return member


def _legacy_group(h5, source: str):
    group = h5
    if "layer_names" not in h5.attrs and "model_weights" in h5:
        group = _member(h5, "model_weights", "group", source)
    if "layer_names" not in group.attrs:
        raise InputError(f"{source} is not a Keras weights file: no 'layer_names' attribute")
    return group


def _legacy_layers(group, source: str, read: bool) -> dict[str, list]:
    arrays: dict[str, list] = {}
    for layer_name in _names(group.attrs, "layer_names", "the file", source):
        layer_group = _member(group, layer_name, "group", source)
        weight_names = _names(layer_group.attrs, "weight_names", f"layer {layer_name!r}", source)
        if weight_names:
            datasets = [_member(layer_group, w, "dataset", source) for w in weight_names]
            arrays[layer_name] = [np.asarray(d) for d in datasets] if read else datasets
    return arrays


def _read_legacy_h5(h5, source: str) -> dict[str, list[np.ndarray]]:
    return _legacy_layers(_legacy_group(h5, source), source, read=True)


def check_legacy_weights(h5, path: str | os.PathLike) -> None:
    """Check the weights layout of a tf_keras ``.h5`` model (``model_weights``) without reading arrays.

    ``InputError`` naming the file and the first missing or malformed entry.
    """
    source = f"model file {os.fspath(path)!r}"
    _legacy_layers(_legacy_group(h5, source), source, read=False)


def _read_keras3_h5(h5, source: str) -> dict[str, list[np.ndarray]]:
    if "layers" not in h5:
        raise InputError(f"{source} is not a Keras 3 weights file: no 'layers' group")
    layers = _member(h5, "layers", "group", source)
    arrays: dict[str, list[np.ndarray]] = {}
    for group_name in layers:
        layer_group = _member(layers, group_name, "group", source)
        if "vars" not in layer_group:
            continue
        variables = _member(layer_group, "vars", "group", source)
        if len(variables):
            # Groups are named after the layer's Python attribute path (e.g. "conv2d_3"),
            # listed alphabetically; the layer's own name is the "name" attribute.
            name = variables.attrs.get("name", group_name)
            if not isinstance(name, bytes | str | np.bytes_ | np.str_):
                raise InputError(f"{source}: attribute 'name' of {variables.name!r} must be a string")
            arrays[_decode(name)] = [np.asarray(_member(variables, str(i), "dataset", source))
                                     for i in range(len(variables))]
    return arrays


def read_weight_file(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """``{layer name: [arrays in the layer's weight order]}`` from a Keras weights file.

    Only numeric arrays are read (h5py never unpickles or runs anything); links to
    other files and virtual datasets are refused. ``InputError`` (one line naming
    the file) for a file that is not HDF5 or not in a Keras weights layout.
    """
    import h5py

    path = os.fspath(path)
    if not path.lower().endswith(WEIGHT_FORMATS):
        raise InputError(
            f"unsupported weights file {path!r}; allowed suffixes: {', '.join(WEIGHT_FORMATS)}"
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"`weights` file not found: {path!r}")
    source = f"weights file {path!r}"
    try:
        h5 = h5py.File(path, "r")
    except OSError:
        raise InputError(f"cannot read weights file {path!r}: not an HDF5 file") from None
    try:
        with h5:
            return _read_keras3_h5(h5, source) if path.lower().endswith(".weights.h5") else _read_legacy_h5(h5, source)
    except OSError as err:
        raise InputError(f"cannot read weights file {path!r}: {' '.join(str(err).split())}") from None


def _pairs_by_name(layers: dict, arrays: dict, model_name: str, source: str) -> list:
    missing = [name for name in layers if name not in arrays]
    if missing:
        raise ValueError(
            f"{source} has no weights for layer {missing[0]!r} of model {model_name!r} "
            f"({len(missing)} layer(s) missing); is it for another architecture or variant?"
        )
    extra = [name for name in arrays if name not in layers]
    if extra:
        raise ValueError(
            f"{source} has weights for layer {extra[0]!r}, which model {model_name!r} does not have "
            f"({len(extra)} such layer(s)); is it for another architecture or variant?"
        )
    return [(layer, name) for name, layer in layers.items()]


def _pairs(model, arrays: dict[str, list[np.ndarray]], source: str) -> list:
    """``[(layer, file layer name)]``: by name when every name matches, else by order.

    Order-based matching is how Keras loads the official legacy files whose
    names Keras 3 cannot use (tf_keras' MobileNetV3 names hold ``/``); it needs
    the same count of weighted layers, and shapes are checked afterwards.
    """
    layers = {layer.name: layer for layer in model.layers if layer.weights}
    if set(layers) == set(arrays) or len(layers) != len(arrays):
        return _pairs_by_name(layers, arrays, model.name, source)
    return list(zip(layers.values(), arrays, strict=True))


def assign_by_name(model, arrays: dict[str, list[np.ndarray]], source: str = "weights file") -> None:
    """Set every weighted layer of ``model`` from ``arrays`` (all checked first, then assigned).

    Layers are matched by name, or by order when the file's names differ but
    its count of weighted layers is the model's (see ``_pairs``).
    """
    pairs = _pairs(model, arrays, source)
    for layer, file_name in pairs:
        expected = [tuple(w.shape) for w in layer.weights]
        found = [tuple(a.shape) for a in arrays[file_name]]
        if expected != found:
            raise ValueError(
                f"{source}: layer {layer.name!r} of model {model.name!r} expects weight shapes "
                f"{expected}; the file's layer {file_name!r} has {found}"
            )
    for layer, file_name in pairs:
        layer.set_weights(arrays[file_name])


def load_weights(model, path: str | os.PathLike) -> None:
    """Load a Keras weights file (see the module docstring) into ``model`` by layer name."""
    assign_by_name(model, read_weight_file(path), source=f"weights file {os.fspath(path)!r}")
