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

WEIGHT_FORMATS = (".weights.h5", ".h5", ".hdf5")


def _decode(value) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _read_legacy_h5(h5) -> dict[str, list[np.ndarray]]:
    group = h5["model_weights"] if "model_weights" in h5 and "layer_names" not in h5.attrs else h5
    if "layer_names" not in group.attrs:
        raise ValueError("not a Keras weights file: no 'layer_names' attribute")
    arrays: dict[str, list[np.ndarray]] = {}
    for layer_name in map(_decode, group.attrs["layer_names"]):
        layer_group = group[layer_name]
        weight_names = [_decode(n) for n in layer_group.attrs.get("weight_names", [])]
        if weight_names:
            arrays[layer_name] = [np.asarray(layer_group[w]) for w in weight_names]
    return arrays


def _read_keras3_h5(h5) -> dict[str, list[np.ndarray]]:
    if "layers" not in h5:
        raise ValueError("not a Keras 3 weights file: no 'layers' group")
    arrays: dict[str, list[np.ndarray]] = {}
    for group_name, layer_group in h5["layers"].items():
        variables = layer_group.get("vars")
        if variables is not None and len(variables):
            # Groups are named after the layer's Python attribute path (e.g. "conv2d_3"),
            # listed alphabetically; the layer's own name is the "name" attribute.
            layer_name = _decode(variables.attrs.get("name", group_name))
            arrays[layer_name] = [np.asarray(variables[str(i)]) for i in range(len(variables))]
    return arrays


def read_weight_file(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """``{layer name: [arrays in the layer's weight order]}`` from a Keras weights file."""
    import h5py

    path = os.fspath(path)
    if not path.lower().endswith(WEIGHT_FORMATS):
        raise ValueError(
            f"unsupported weights file {path!r}; allowed suffixes: {', '.join(WEIGHT_FORMATS)}"
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"`weights` file not found: {path!r}")
    try:
        with h5py.File(path, "r") as h5:
            return _read_keras3_h5(h5) if path.lower().endswith(".weights.h5") else _read_legacy_h5(h5)
    except OSError as err:
        raise ValueError(f"cannot read weights file {path!r}: {err}") from err


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
