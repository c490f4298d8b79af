"""Load a user's model file: ``.keras`` (Keras 3), ``.h5`` and SavedModel folders (tf_keras).

The one home of "load a model file someone handed us" (``lightnets export``,
``lightnets compress``, ``tools/convert_tflite.py``). Loading never runs Python
code stored in the file unless the caller opts in (``unsafe=True``, ``--unsafe``):

* Before anything is deserialised, the stored model config is read as plain
  JSON (``.h5``: the ``model_config`` attribute, read with h5py; ``.keras``: the
  archive's ``config.json``; SavedModel: every node of ``keras_metadata.pb``, and
  the Keras metadata tf_keras would fall back to in ``saved_model.pb``) and walked
  completely: nested models, wrapper layers (``TimeDistributed``,
  ``Bidirectional``, TFMOT's ``QuantizeWrapper``/``PruneLowMagnitude``) and every
  argument. ``UnsafeModelError`` is raised for a ``Lambda`` layer (or any layer
  that runs code named or stored in the file: ``TFSMLayer``, ``JaxLayer``,
  ``TorchModuleWrapper``, tf_keras' ``InstanceMethod``/``ClassMethod``...),
  marshalled Python bytecode anywhere (e.g. a lambda given as a ``Dense``
  activation), a function reference outside Keras' activations, a tf_keras
  ``TFOpLambda`` calling a TensorFlow function outside the pure tensor-math
  namespaces, and any class that is not a Keras / tf_keras built-in, one of this
  package's layers or QuantizeConfigs, or a TFMOT wrapper/quantizer/config class
  (custom classes named through ``module``/``registered_name`` included).
* A SavedModel without Keras metadata would be revived by TensorFlow from its
  graph functions: that is not a Keras model (nothing here could convert it), so
  it is refused as bad input. A SavedModel whose graphs hold ops that run Python
  (``PyFunc``, ``EagerPyFunc``) or write files is refused like a Lambda layer;
  TensorFlow graph functions are otherwise not vetted (a Keras model loaded here
  is rebuilt from its config with the classes checked above, never from them).
* ``.keras`` files load with Keras 3 ``safe_mode=True`` (``False`` only with the
  opt-in), after the same config walk.

A file that is not what its name says (not HDF5, not a zip archive, no model
config, weights missing) raises a one-line ``InputError`` naming it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import json
import os
import zipfile
from collections.abc import Iterator
from typing import Any

from keras_lightnets.errors import InputError, UnsafeModelError

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
MODEL_KINDS = ("keras", "h5", "saved_model")
OPT_IN = "pass --unsafe (unsafe=True in Python) only for files you trust"

# Layers that run code stored in, or named by, the file (whatever its module).
UNSAFE_CLASSES = frozenset({
    "Lambda", "__lambda__", "TFSMLayer", "JaxLayer", "FlaxLayer", "TorchModuleWrapper",
    "InstanceMethod", "InstanceProperty", "ClassMethod",
})
# Serialization helpers of Keras / tf_keras (plain values, shapes, type specs).
_SPECIAL_CLASSES = frozenset({
    "__tuple__", "__ellipsis__", "__bytes__", "__numpy__", "__tensor__", "__typespec__", "__keras_tensor__",
    "TensorShape", "TypeSpec", "Functional", "Sequential", "Model", "InputSpec",
})
_SAFE_MODULES = ("keras", "tf_keras", "tensorflow_model_optimization", "keras_lightnets")
_TYPESPEC_MODULES = (*_SAFE_MODULES, "tensorflow")
_FUNCTION_MODULES = frozenset({"activations", "losses", "metrics"})
# Top-level entries a loader with compile=False never deserialises (nested models' ones are walked).
_NOT_LOADED = ("compile_config", "training_config")
# tf_keras TFOpLambda: TensorFlow functions called by name; only pure tensor math is accepted.
_TF_OP_NAMESPACES = ("math.", "nn.", "__operators__.", "linalg.", "image.", "signal.", "bitwise.")
_TF_OPS = frozenset({
    "reshape", "concat", "stack", "unstack", "transpose", "expand_dims", "squeeze", "split", "cast", "identity",
    "clip_by_value", "pad", "tile", "gather", "gather_nd", "shape", "size", "rank", "zeros_like", "ones_like",
    "where", "broadcast_to", "slice", "strided_slice", "reverse", "roll", "einsum", "matmul", "add", "multiply",
    "subtract", "divide", "maximum", "minimum", "abs", "sqrt", "square", "exp", "sigmoid", "tanh", "argmax",
    "argmin", "one_hot", "range", "fill", "repeat", "boolean_mask", "convert_to_tensor", "stop_gradient",
    "reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "zeros", "ones", "cumsum", "clip_by_norm", "sort",
    "argsort", "meshgrid", "space_to_depth", "depth_to_space", "ensure_shape", "truediv", "pow",
})
# Graph ops that run Python or touch files, refused in a SavedModel's graphs.
_UNSAFE_OPS = frozenset({
    "PyFunc", "PyFuncStateless", "EagerPyFunc", "WriteFile", "ReadFile", "MatchingFiles", "DeleteSessionTensor",
    "ImmutableConst", "DatasetToTFRecord", "ExperimentalDatasetToTFRecord", "WriteSummary", "WriteRawProtoSummary",
    "CreateSummaryFileWriter", "CreateSummaryDbWriter", "SaveDataset", "SaveDatasetV2", "LoadDataset",
    "Save", "SaveSlices",
})


# --------------------------------------------------------------------------- kinds

def model_kind(source: str) -> str:
    """``"keras"``, ``"h5"``, ``"saved_model"`` for a model file or folder, ``"registry"`` for a registered name.

    ``InputError`` (one line naming ``source``) for a missing file, a weights-only
    file, an unknown suffix, a folder without ``saved_model.pb`` or an unknown name.
    """
    if os.path.isdir(source):
        if not os.path.isfile(os.path.join(source, "saved_model.pb")):
            raise InputError(f"model folder {source!r} is not a SavedModel (no saved_model.pb)")
        return "saved_model"
    lower = source.lower()
    if lower.endswith(".weights.h5"):
        raise InputError(f"{source!r} holds weights only; pass a registered model name with --weights {source}")
    if os.path.isfile(source):
        if lower.endswith(".keras"):
            return "keras"
        if lower.endswith((".h5", ".hdf5")):
            return "h5"
        raise InputError(f"model file {source!r} must be .keras, .h5 or a SavedModel folder")
    if lower.endswith(MODEL_SUFFIXES) or os.sep in source or (os.altsep and os.altsep in source):
        raise InputError(f"model file {source!r} does not exist")
    from keras_lightnets.models.registry import model_config

    try:
        model_config(source)
    except ValueError as err:
        raise InputError(f"{err} Or give a .keras/.h5 model file or a SavedModel folder.") from None
    return "registry"


def _same_path(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def check_outputs_spare_inputs(outputs: dict[str, str | None], inputs: dict[str, str | None]) -> None:
    """Refuse a run whose output path is one of its input paths (symbolic and hard links included).

    ``outputs`` / ``inputs``: ``{what: path}`` (``None`` paths are skipped); ``what``
    names the option in the one-line ``InputError``. Called before any work.
    """
    for out_what, out_path in outputs.items():
        if not out_path:
            continue
        for in_what, in_path in inputs.items():
            if in_path and os.path.exists(in_path) and _same_path(out_path, in_path):
                raise InputError(f"{out_what} {out_path!r} is {in_what} {in_path!r}; writing it would overwrite an "
                                 "input: choose another output path")


# --------------------------------------------------------------------------- what may be deserialised

def _class_names(*modules: Any) -> set[str]:
    names: set[str] = set()
    for module in modules:
        names.update(name for name, value in vars(module).items() if isinstance(value, type))
    return names


@functools.cache
def _allowed_names(flavour: str) -> frozenset[str]:
    """Class names (and ``package>name`` registered names) a ``flavour`` model file may hold."""
    from keras_lightnets import layers

    own = layers.custom_objects(flavour)
    names = set(_SPECIAL_CLASSES) | set(own) | {f"{layers.PACKAGE}>{name}" for name in own}
    if flavour == "keras":
        import keras

        names |= _class_names(keras.layers, keras.initializers, keras.regularizers, keras.constraints,
                              keras.dtype_policies, keras.models, keras.activations, keras.random,
                              keras.optimizers, keras.optimizers.schedules, keras.losses, keras.metrics)
        return frozenset(names - UNSAFE_CLASSES)
    import tf_keras

    names |= _class_names(tf_keras.layers, tf_keras.layers.experimental, tf_keras.layers.experimental.preprocessing,
                          tf_keras.initializers, tf_keras.regularizers, tf_keras.constraints,
                          tf_keras.mixed_precision, tf_keras.models, tf_keras.activations)
    names |= {"TFOpLambda", "SlicingOpLambda", "Policy"}
    with contextlib.suppress(ImportError):
        names |= _tfmot_names()
    return frozenset(names - UNSAFE_CLASSES)


def _tfmot_names() -> set[str]:
    """Names in TFMOT's quantize and prune scopes, plus the package's QuantizeConfigs and quantizers."""
    import tensorflow_model_optimization as tfmot

    from keras_lightnets.compression import configs

    names = set(configs.CONFIG_CLASSES)
    names |= {"PrunePreserveDefaultWeightsQuantizer", "PrunePreserveDefault8BitWeightsQuantizer",
              "PrunePreserveDefault8BitConvWeightsQuantizer"}
    names |= _class_names(tfmot.sparsity.keras, tfmot.quantization.keras, tfmot.quantization.keras.quantizers)
    for scope in (tfmot.quantization.keras.quantize_scope(), tfmot.sparsity.keras.prune_scope()):
        for mapping in getattr(scope, "custom_objects", ()):
            names.update(mapping)
    return names


def _is_code_dump(value: list) -> bool:
    """Whether a JSON list is ``generic_utils.func_dump`` output (base64 marshalled Python bytecode)."""
    if not value or not isinstance(value[0], str) or len(value[0]) < 16:
        return False
    try:
        raw = base64.b64decode(value[0].encode("ascii"), validate=False)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return False
    return bool(raw) and (raw[0] & 0x7F) == ord("c")  # marshal's TYPE_CODE (with or without FLAG_REF)


def _module_ok(module: Any, allowed: tuple[str, ...] = _SAFE_MODULES) -> bool:
    return module is None or (isinstance(module, str) and any(
        module == prefix or module.startswith(prefix + ".") for prefix in allowed))


def _tf_op_ok(function: Any) -> bool:
    return isinstance(function, str) and (function in _TF_OPS or function.startswith(_TF_OP_NAMESPACES))


def _object_problem(node: dict, names: frozenset[str]) -> str | None:
    """Why the serialized object ``node`` (a dict with ``class_name``) would run code from the file, or None."""
    class_name, module = node["class_name"], node.get("module")
    registered = node.get("registered_name")
    config = node.get("config")
    if class_name in UNSAFE_CLASSES:
        kind = "a Lambda layer" if class_name in ("Lambda", "__lambda__") else f"a {class_name}"
        return f"is {kind}, which runs Python code stored in or named by the file"
    if class_name == "function":  # a function reference (Keras 3 / tf_keras new format)
        activation_module = module == "builtins" or (
            _module_ok(module) and isinstance(module, str)
            and (_FUNCTION_MODULES & set(module.split(".")) or module.startswith("keras_lightnets")))
        if not activation_module or not isinstance(config, str):
            return (f"names the function {config!r} of module {module!r}, which is not a Keras activation, loss "
                    "or metric")
        return None
    if class_name == "__typespec__":
        return None if _module_ok(module, _TYPESPEC_MODULES) else f"names a type from module {module!r}"
    if not _module_ok(module):
        return f"has the class {class_name!r} from module {module!r}, which is not Keras, TFMOT or keras_lightnets"
    if class_name not in names:
        return f"has the class {class_name!r}, which is not a Keras built-in, a TFMOT or a keras_lightnets class"
    if registered is not None and registered != class_name and registered not in names:
        return f"has the registered name {registered!r}, which is not a Keras, TFMOT or keras_lightnets class"
    if class_name in ("TFOpLambda", "SlicingOpLambda"):
        function = config.get("function") if isinstance(config, dict) else None
        if not _tf_op_ok(function):
            return f"calls the TensorFlow function {function!r}, which is not a pure tensor operation"
    return None


def find_unsafe(config: Any, names: frozenset[str]) -> tuple[str, str] | None:
    """``(layer, reason)`` for the first object in a stored model config that would run code, else None.

    Walks every dict and list (iteratively: any depth); ``layer`` is the path of
    layer names (``outer/inner``) down to the offending object.
    """
    stack: list[tuple[Any, str]] = [(config, "")]
    while stack:
        node, layer = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("class_name"), str):
                inner = node.get("config")
                name = inner.get("name") if isinstance(inner, dict) else None
                if isinstance(name, str) and name:
                    layer = f"{layer}/{name}" if layer else name
                problem = _object_problem(node, names)
                if problem:
                    return layer or "(model)", problem
            stack.extend((value, layer) for value in node.values())
        elif isinstance(node, list):
            if _is_code_dump(node):
                return layer or "(model)", "holds marshalled Python bytecode (a serialized function or lambda)"
            stack.extend((value, layer) for value in node)
    return None


def _refuse_unsafe(path: str, config: Any, flavour: str, unsafe: bool) -> None:
    if unsafe:
        return
    config = {key: value for key, value in config.items() if key not in _NOT_LOADED}
    found = find_unsafe(config, _allowed_names(flavour))
    if found:
        layer, reason = found
        raise UnsafeModelError(f"model file {path!r}: layer {layer!r} {reason}; refused ({OPT_IN})")


def _json(path: str, text: Any, what: str) -> Any:
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        if not isinstance(text, str):
            raise TypeError(type(text).__name__)
        config = json.loads(text)
    except (ValueError, TypeError, RecursionError) as err:
        raise InputError(f"model file {path!r}: its {what} is not valid JSON ({type(err).__name__})") from None
    if not isinstance(config, dict):
        raise InputError(f"model file {path!r}: its {what} is not a JSON object")
    return config


# --------------------------------------------------------------------------- per format checks

def _check_keras(path: str, unsafe: bool) -> None:
    if not zipfile.is_zipfile(path):
        raise InputError(f"cannot load {path!r}: not a Keras .keras archive (not a zip file)")
    try:
        with zipfile.ZipFile(path) as archive:
            text = archive.read("config.json")
    except KeyError:
        raise InputError(f"cannot load {path!r}: the .keras archive has no config.json") from None
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as err:
        raise InputError(f"cannot load {path!r}: unreadable .keras archive ({err})") from None
    _refuse_unsafe(path, _json(path, text, "config.json"), "keras", unsafe)


def _check_h5(path: str, unsafe: bool) -> None:
    import h5py

    from keras_lightnets.weights.loading import check_legacy_weights

    try:
        h5 = h5py.File(path, "r")
    except OSError:
        raise InputError(f"model file {path!r} is not an HDF5 file (a tf_keras .h5 model is expected)") from None
    with h5:
        try:
            text = h5.attrs.get("model_config")
        except (OSError, TypeError, ValueError, KeyError) as err:
            raise InputError(f"model file {path!r}: unreadable 'model_config' attribute ({err})") from None
        if text is None:
            hint = " (it holds weights only: pass a registered model name with --weights)" \
                if "layer_names" in h5.attrs else ""
            raise InputError(f"model file {path!r} holds no Keras model: no 'model_config' attribute{hint}")
        config = _json(path, text, "'model_config' attribute")
        _refuse_unsafe(path, config, "tf_keras", unsafe)
        if "model_weights" in h5:
            check_legacy_weights(h5, path)


def _saved_model_metadata(path: str) -> list[str]:
    """Every Keras metadata JSON tf_keras may revive from: ``keras_metadata.pb`` nodes, then ``saved_model.pb``'s."""
    import tensorflow as tf
    from tf_keras.protobuf import saved_metadata_pb2

    texts: list[str] = []
    metadata_path = os.path.join(path, "keras_metadata.pb")
    if os.path.isfile(metadata_path):
        metadata = saved_metadata_pb2.SavedMetadata()
        try:
            with open(metadata_path, "rb") as f:
                metadata.ParseFromString(f.read())
        except Exception as err:  # protobuf's DecodeError and friends
            raise InputError(f"model folder {path!r}: unreadable keras_metadata.pb ({type(err).__name__})") from None
        texts.extend(node.metadata for node in metadata.nodes)
    try:
        saved = tf.__internal__.saved_model.parse_saved_model(path)
    except Exception as err:
        raise InputError(f"model folder {path!r}: unreadable saved_model.pb ({type(err).__name__})") from None
    if not saved.meta_graphs:
        raise InputError(f"model folder {path!r}: saved_model.pb holds no graph")
    _refuse_unsafe_ops(path, saved)
    for node in saved.meta_graphs[0].object_graph_def.nodes:
        if node.WhichOneof("kind") == "user_object" and node.user_object.metadata:
            texts.append(node.user_object.metadata)
    return texts


def _refuse_unsafe_ops(path: str, saved: Any) -> None:
    for graph in saved.meta_graphs:
        node_lists = [graph.graph_def.node, *(f.node_def for f in graph.graph_def.library.function)]
        for nodes in node_lists:
            for node in nodes:
                if node.op in _UNSAFE_OPS:
                    raise UnsafeModelError(f"model folder {path!r}: graph op {node.name!r} is a {node.op}, which runs "
                                           f"Python code or touches files; refused ({OPT_IN})")


def _check_saved_model(path: str, unsafe: bool) -> None:
    if unsafe:
        return
    texts = _saved_model_metadata(path)
    if not texts:
        raise InputError(f"model folder {path!r} is not a Keras SavedModel (no Keras metadata; saved with "
                         "tf.saved_model.save instead of model.save?)")
    for text in texts:
        _refuse_unsafe(path, _json(path, text, "Keras metadata"), "tf_keras", unsafe)


def check_model_file(kind: str, path: str, *, unsafe: bool = False) -> None:
    """Refuse ``path`` before any deserialisation when it would run stored code or is malformed.

    ``UnsafeModelError`` (see the module docstring) unless ``unsafe``; ``InputError``
    for a file that is not a Keras model of ``kind``.
    """
    if kind not in MODEL_KINDS:
        raise InputError(f"`kind` must be one of {', '.join(MODEL_KINDS)}; received {kind!r}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"model file {path!r} does not exist")
    if kind == "keras":
        _check_keras(path, unsafe)
    elif kind == "h5":
        _check_h5(path, unsafe)
    else:
        _check_saved_model(path, unsafe)


# --------------------------------------------------------------------------- loading

@contextlib.contextmanager
def _quantize_scope() -> Iterator[None]:
    """What loading a QAT ``.h5`` needs (TFMOT's scope plus the package's configs), when TFMOT is installed."""
    try:
        from keras_lightnets.compression import quantize_scope

        scope = quantize_scope()
    except ImportError:
        scope = contextlib.nullcontext()
    with scope:
        yield


def _is_safe_mode_refusal(err: BaseException) -> bool:
    text = str(err)
    return "safe_mode" in text or ("lambda" in text.lower() and "unsafe" in text.lower())


def load_model_file(kind: str, path: str | os.PathLike, *, unsafe: bool = False) -> Any:
    """Load a user's model file without running code stored in it (unless ``unsafe``).

    ``kind``: ``"keras"`` (a Keras 3 ``.keras`` file, ``safe_mode=True`` unless
    ``unsafe``), ``"h5"`` or ``"saved_model"`` (tf_keras, TFMOT QAT models
    included), see ``model_kind``. ``check_model_file`` runs first:
    ``UnsafeModelError`` for a file that would run stored Python code,
    ``InputError`` for a malformed one. Other load failures propagate.
    """
    from keras_lightnets import layers

    path = os.fspath(path)
    check_model_file(kind, path, unsafe=unsafe)
    if kind == "keras":
        import keras

        layers.register("keras")
        try:
            return keras.saving.load_model(path, safe_mode=not unsafe, compile=False)
        except ValueError as err:
            if not unsafe and _is_safe_mode_refusal(err):
                raise UnsafeModelError(f"model file {path!r}: Keras safe mode refused to deserialise part of it "
                                       f"(stored Python code); refused ({OPT_IN})") from None
            raise
    import tf_keras

    with _quantize_scope():
        return tf_keras.models.load_model(path, custom_objects=layers.custom_objects("tf_keras"), compile=False,
                                          safe_mode=not unsafe)
