"""Translate a Keras 3 Functional model into its tf_keras twin (what TFMOT accepts).

The Keras 3 graph is walked node by node, in dependency order. Each layer is
re-created from its config as the tf_keras layer of the same class (the package's
own layers as their tf_keras twins from ``keras_lightnets.layers``), called on the
translated inputs with the same call arguments, and given the same weights. A
Functional model used as a layer (``keras.Model(base.input, ...)`` wrapped again,
a keras.applications base called on an input, or a model inside
``keras.Sequential``) is flattened: its layers are inlined into the outer graph.
The result is checked to give the same outputs on a random batch before it is
returned.

What keras.applications graphs and the Keras guides' models hold is translated
into layers TFMOT and int8 TFLite handle:

=============================================  ==================================================
Keras 3                                        tf_keras twin
=============================================  ==================================================
``Activation("hard_silu"/"hard_swish")``       ``HardSwish`` (package layer)
``Activation("hard_sigmoid")``                 ``HardSigmoid`` (Keras 3's ``relu6(x + 3) / 6``;
                                               tf_keras' own ``hard_sigmoid`` is another function)
``activation="hard_silu"`` etc. in a layer     the layer with a linear activation + that layer
``ReLU(6)(x + 3) * (1/6)`` (keras.ops on       ``HardSigmoid`` (MobileNetV3's squeeze-excite gate)
tensors)
``x + c``, ``x - c``, ``c - x``, ``x * c``,    ``Rescale`` (``c``: a number or one per channel);
``x / c``; two tensors ``+ - *``               ``Add`` / ``Subtract`` / ``Multiply``
``Rescaling``                                  ``Rescale`` (same arithmetic, exact)
``Normalization`` (channels axis, or none)     ``Rescale`` (``x / std - mean / std``)
``Resizing``, ``CenterCrop``                   tf_keras ``Resizing``, ``CenterCrop``
``RandomFlip``, ``RandomRotation``,            left out: the identity at inference (checked on
``RandomZoom``, ``RandomTranslation``,         a batch), with one ``DroppedLayersWarning``
``RandomContrast``, ``RandomBrightness``,      naming them (``AUGMENTATION_LAYERS`` lists all)
``RandomCrop``, other ``Random*`` layers
every other Keras built-in layer               the tf_keras layer of the same class and config
                                               (``Conv2D``, ``DepthwiseConv2D``, ``SeparableConv2D``,
                                               ``Dense``, ``BatchNormalization``, ``ReLU``,
                                               ``Activation``, ``Add``, ``Multiply``,
                                               ``Concatenate``, ``ZeroPadding2D``, ``Cropping2D``,
                                               pooling, ``Dropout``, ``Flatten``, ``Reshape``, ...)
the package's layers                           their tf_keras twins
=============================================  ==================================================

(A ``BatchNormalization`` no conv precedes, as in NASNet, is translated as it is;
``quantize_aware`` freezes it into a per-channel ``Rescale``.)

Keras 3.15's ``RandomCrop`` returns its input unchanged at inference (whatever
its declared output shape says), so it is left out like the other augmentation
layers; the check on a batch confirms each left-out layer is the identity in
the installed Keras.

A layer that cannot be translated (a user's own subclassed layer, a ``Lambda``, a
Keras 3 layer or activation with no tf_keras counterpart, a config option tf_keras
lacks) raises ``TranslationError``: one line naming the layer and its class, why,
and what to do instead.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np

from keras_lightnets import _backend
from keras_lightnets.compression.detectors import keep_detector
from keras_lightnets.layers import LAYER_NAMES, get_layer_class

# Keyword arguments every tf_keras Layer accepts through ``**kwargs``.
_BASE_LAYER_KWARGS = frozenset({
    "name", "trainable", "dtype", "dynamic", "input_dim", "input_shape", "batch_input_shape",
    "batch_size", "weights", "activity_regularizer", "autocast", "implementation",
})
# Keras 3 config entries with no tf_keras meaning; dropped when they hold their neutral value.
_NEUTRAL = (None, False, 0, "", (), [], {})
# Keras 3 options tf_keras lacks that are dropped when they hold this value (tf_keras' fixed behaviour).
_DROPPABLE = {"data_format": "channels_last"}
_DROPPABLE_BY_CLASS = {"Resizing": {"fill_mode": "constant"}}

# Keras 3 image augmentation layers: random in training, the identity at inference. They are
# left out of the tf_keras twin (after checking that they return their input at inference).
AUGMENTATION_LAYERS = frozenset({
    "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast", "RandomBrightness",
    "RandomCrop", "RandomHue", "RandomSaturation", "RandomGrayscale", "RandomSharpness", "RandomShear",
    "RandomPerspective", "RandomColorJitter", "RandomColorDegeneration", "RandomErasing", "RandomGaussianBlur",
    "RandomInvert", "RandomPosterization", "RandomElasticTransform", "AugMix", "RandAugment", "CutMix", "MixUp",
})
# Keras 3 activations (by name) computed exactly by one of the package's layers.
ACTIVATION_LAYERS = {"hard_silu": "HardSwish", "hard_swish": "HardSwish", "hard_sigmoid": "HardSigmoid"}
# keras.ops on model tensors that become layers.
_ARITHMETIC_OPS = ("Add", "Subtract", "Multiply", "Divide", "TrueDivide")


class TranslationError(ValueError):
    """A Keras 3 model (or one of its layers) has no exact tf_keras twin."""


class DroppedLayersWarning(UserWarning):
    """Layers that are the identity at inference (augmentation) were left out of a translated model."""


def _layer_label(layer) -> str:
    kind = "layer" if _is_layer(layer) else "operation"
    return f"{kind} {layer.name!r} ({type(layer).__name__})"


def _is_layer(operation) -> bool:
    import keras

    return isinstance(operation, keras.layers.Layer)


def _refuse(layer, why: str, fix: str) -> TranslationError:
    """The one-line error for ``layer``: its name and class, why, and what to do instead."""
    return TranslationError(" ".join(f"cannot translate {_layer_label(layer)} to tf_keras: {why}; {fix}".split()))


def _nested_class(key: str, class_name: str):
    """The tf_keras class of a serialized initializer/regularizer/constraint entry ``key``."""
    tf_keras = _backend.keras_module("tf_keras")
    for suffix, module in (("_initializer", tf_keras.initializers), ("_regularizer", tf_keras.regularizers),
                           ("_constraint", tf_keras.constraints)):
        if key.endswith(suffix):
            return getattr(module, class_name, None)
    return None


def _clean(config: dict, cls, layer, droppable: dict | None = None) -> dict:
    """A Keras 3 ``get_config()`` made readable by tf_keras class ``cls``.

    Dtype policies become their name; nested objects lose Keras 3's module keys and
    any argument their tf_keras class lacks (only when it holds a neutral value,
    otherwise ``TranslationError``).
    """
    allowed, _ = _accepted_kwargs(cls)
    droppable = {**_DROPPABLE, **(droppable or {})}
    cleaned = {}
    for key, value in config.items():
        if isinstance(value, dict) and "class_name" in value and "config" in value:
            if value["class_name"] in ("DTypePolicy", "FloatDTypePolicy"):
                value = value["config"]["name"]
            else:
                nested = _nested_class(key, value["class_name"])
                inner = _clean(value["config"], nested, layer) if nested is not None else value["config"]
                value = {"class_name": value["class_name"], "config": inner}
        if key not in allowed:
            if value not in _NEUTRAL and droppable.get(key, object()) != value:
                raise _refuse(layer, f"its option {key}={value!r} does not exist in tf_keras",
                              f"rebuild the layer without {key!r} (or with its default)")
            continue
        cleaned[key] = value
    return cleaned


def _accepted_kwargs(cls) -> tuple[frozenset, bool]:
    """Constructor arguments of ``cls``, following ``**kwargs`` up its base classes."""
    accepted: set[str] = set()
    layer_base = _backend.keras_module("tf_keras").layers.Layer
    for klass in cls.__mro__:
        if klass is layer_base:
            return frozenset(accepted | _BASE_LAYER_KWARGS), False
        if "__init__" not in vars(klass):
            continue
        parameters = inspect.signature(klass.__init__).parameters
        accepted |= {name for name, p in parameters.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            return frozenset(accepted - {"self"}), False
    return frozenset(accepted - {"self"}), True


def _is_keras_builtin(layer) -> bool:
    return type(layer).__module__.startswith("keras.")


def _tf_keras_class(layer):
    tf_keras = _backend.keras_module("tf_keras")
    name = type(layer).__name__
    if name in LAYER_NAMES and type(layer) is get_layer_class(name, "keras"):
        return get_layer_class(name, "tf_keras")
    if name == "Lambda" and _is_keras_builtin(layer):
        raise _refuse(layer, "it runs Python code that cannot be translated, checked or quantized",
                      "replace it with built-in layers (e.g. Rescaling for x * a + b, Activation, Add, Multiply) "
                      "or keras_lightnets.layers")
    if _is_keras_builtin(layer) and hasattr(tf_keras.layers, name):
        return getattr(tf_keras.layers, name)
    if _is_keras_builtin(layer):
        raise _refuse(layer, "this Keras 3 layer has no tf_keras counterpart",
                      "replace it with a layer tf_keras has, or build the model with keras_lightnets.legacy")
    raise _refuse(layer, f"its class comes from {type(layer).__module__!r}; only Keras' built-in layers and "
                  f"keras_lightnets' layers ({', '.join(LAYER_NAMES)}) have tf_keras twins",
                  "rebuild the model from those layers, or build it with keras_lightnets.legacy (tf_keras) "
                  "from the start")


def _activation_name(layer, value) -> str:
    if isinstance(value, str):
        return value
    raise _refuse(layer, f"its activation {value!r} is not one of Keras' named activations",
                  "use a named activation (e.g. 'relu', 'hard_silu') or a separate layer")


def _check_activation(layer, name: str) -> None:
    tf_keras = _backend.keras_module("tf_keras")
    try:
        tf_keras.activations.get(name)
    except ValueError:
        known = sorted({"relu", "relu6", "elu", "selu", "gelu", "sigmoid", "tanh", "softmax", "silu", "swish",
                        "mish", "softplus", "softsign", "leaky_relu", "exponential", "linear", *ACTIVATION_LAYERS})
        raise _refuse(layer, f"activation {name!r} does not exist in tf_keras",
                      f"use one of {', '.join(known)}") from None


def translate_layer(layer, name: str | None = None):
    """A new tf_keras layer with ``layer``'s class and config (weights are set after building)."""
    cls = _tf_keras_class(layer)
    droppable = _DROPPABLE_BY_CLASS.get(type(layer).__name__)
    config = _clean(layer.get_config(), cls, layer, droppable)
    if name is not None:
        config["name"] = name
    if config.get("activation") is not None:
        activation = _activation_name(layer, config["activation"])
        if activation in ACTIVATION_LAYERS:  # computed by a package layer after it (see ``_Translator``)
            config["activation"] = "linear"
        else:
            _check_activation(layer, activation)
    try:
        return cls.from_config(config)
    except (TypeError, ValueError) as err:
        detail = " ".join(str(err).split())[:300]
        raise _refuse(layer, f"tf_keras refused its config ({detail})",
                      "rebuild the layer with options tf_keras has") from err


def _package_layer(name: str, layer_name: str, **kwargs):
    return get_layer_class(name, "tf_keras")(name=layer_name, **kwargs)


def _per_channel(layer, value, what: str):
    """A constant as a ``Rescale`` argument: a float, or a list of floats along the channel axis."""
    array = np.asarray(value, dtype="float64")
    if array.size == 1:
        return float(array.reshape(()))
    if array.ndim >= 1 and array.size == array.shape[-1]:
        return [float(v) for v in array.reshape(-1)]
    raise _refuse(layer, f"its {what} of shape {array.shape} varies along other axes than the channels",
                  "use one value, or one per channel")


def _rescaling(layer, name: str):
    """``Rescaling(scale, offset)``: ``x * scale + offset``, exactly what ``Rescale`` computes."""
    return _package_layer("Rescale", name, scale=_per_channel(layer, layer.scale, "scale"),
                          offset=_per_channel(layer, layer.offset, "offset"))


def _normalization(layer, name: str):
    """``Normalization``: ``(x - mean) / max(sqrt(variance), eps)`` (or its inverse) as ``Rescale``."""
    import keras

    if getattr(layer, "mean", None) is None:
        raise _refuse(layer, "it was never built or adapted", "call adapt() on it or give it mean and variance")
    mean = np.asarray(keras.ops.convert_to_numpy(layer.mean), dtype="float32")
    variance = np.asarray(keras.ops.convert_to_numpy(layer.variance), dtype="float32")
    std = np.maximum(np.sqrt(variance), np.float32(keras.backend.epsilon())).astype("float64")
    mean = mean.astype("float64")
    if layer.invert:
        scale, offset = std, mean
    else:
        scale, offset = 1.0 / std, -mean / std
    return _package_layer("Rescale", name, scale=_per_channel(layer, scale, "variance"),
                          offset=_per_channel(layer, offset, "mean"))


_SPECIAL_LAYERS = {"Rescaling": _rescaling, "Normalization": _normalization}


def _is_functional(layer) -> bool:
    return hasattr(layer, "_nodes_by_depth") and hasattr(layer, "inputs") and layer.inputs is not None


def _functional_graph(model):
    """The Functional graph of a Keras 3 model (a built ``Sequential`` has one inside)."""
    if type(model).__name__ == "Sequential":
        inner = getattr(model, "_functional", None)
        if inner is None:
            raise TranslationError(
                f"cannot translate Sequential model {model.name!r}: it has no input yet; "
                "give its first layer an `keras.Input(shape=...)`"
            )
        return inner
    if not _is_functional(model):
        raise TranslationError(
            f"cannot translate model {model.name!r} ({type(model).__name__}): only Functional and "
            "Sequential models have a graph to translate. Build it with the Functional API, "
            "e.g. keras.Model(base.input, head(base.output))."
        )
    return model


def _is_tensor(value) -> bool:
    import keras

    return isinstance(value, keras.KerasTensor)


def _scalar(value) -> float | None:
    """``value`` as a float when it is a plain number (or a 0-d array), else ``None``."""
    if isinstance(value, bool) or _is_tensor(value):
        return None
    if isinstance(value, int | float | np.number) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return float(value)
    return None


def _is_identity_at_inference(layer, node) -> bool:
    """Whether ``layer`` returns its input unchanged with ``training=False`` (checked on a random batch)."""
    import keras

    if len(node.input_tensors) != 1:
        return False
    [tensor] = node.input_tensors
    shape = [1 if d is None else int(d) for d in tensor.shape]
    if len(shape) == 4:
        shape[1:3] = [8 if tensor.shape[i] is None else int(tensor.shape[i]) for i in (1, 2)]
    sample = np.random.default_rng(0).uniform(0.0, 255.0, shape).astype("float32")
    result = keras.ops.convert_to_numpy(layer(sample, training=False))
    return result.shape == sample.shape and np.array_equal(result, sample)


class _Translator:
    """Walks one Keras 3 graph (and any nested Functional graph) into tf_keras layers."""

    def __init__(self):
        self.tf_keras = _backend.keras_module("tf_keras")
        self.tensors: dict[int, object] = {}  # id(Keras 3 tensor) -> tf_keras tensor
        # id(Keras 3 layer) -> (it, its tf_keras twin, whether the twin takes its weights, activation layer or None)
        self.layers: dict[object, tuple[object, object, bool, object]] = {}
        self.names: set[str] = set()
        self.dropped: list[str] = []

    def _lookup(self, value):
        if _is_tensor(value):
            return self.tensors[id(value)]
        return value

    def _unique(self, name: str, scope: str) -> str:
        if name in self.names:
            name = f"{scope or 'outer'}_{name}"
        while name in self.names:
            name = f"{name}_"
        self.names.add(name)
        return name

    def walk(self, graph, inputs: list, scope: str = "") -> list:
        """Translate ``graph`` fed with tf_keras ``inputs``; returns its translated outputs."""
        import keras

        for source, value in zip(graph.inputs, inputs, strict=True):
            self.tensors[id(source)] = value
        consumers = _consumers(graph)
        absorbed: set[int] = set()
        for depth in sorted(graph._nodes_by_depth, reverse=True):
            for node in graph._nodes_by_depth[depth]:
                if node.is_input or id(node) in absorbed:
                    continue
                operation = node.operation
                args = keras.tree.map_structure(self._lookup, node.arguments.args)
                kwargs = keras.tree.map_structure(self._lookup, node.arguments.kwargs)
                if _is_functional(operation) or type(operation).__name__ == "Sequential":
                    inner = _functional_graph(operation)
                    flat = keras.tree.flatten(args)
                    outputs = self.walk(inner, flat, scope=operation.name)
                    outputs = outputs[0] if len(outputs) == 1 else outputs
                elif (gate := _hard_sigmoid_nodes(node, consumers, graph)) is not None:
                    relu_node, last_node = gate
                    absorbed.update((id(relu_node), id(last_node)))
                    layer = self._twin(relu_node.operation, scope, kind="HardSigmoid")
                    outputs = layer(self._lookup(_tensor_argument(node)))
                    node = last_node  # the gate's output is the last node's
                elif not _is_layer(operation):
                    outputs = self._operation(node, scope)
                elif type(operation).__name__ in AUGMENTATION_LAYERS and _is_keras_builtin(operation):
                    if not _is_identity_at_inference(operation, node):
                        raise _refuse(operation, "this augmentation layer is not the identity at inference in the "
                                      "installed Keras", "remove it from the model and augment the training data "
                                      "instead")
                    self.dropped.append(f"{operation.name!r} ({type(operation).__name__})")
                    outputs = args[0]
                else:
                    twin = self._twin(operation, scope)
                    outputs = twin(*args, **kwargs)
                    activation = self.layers[id(operation)][3]
                    if activation is not None:
                        outputs = activation(outputs)
                for source, value in zip(keras.tree.flatten(node.outputs), _flatten(outputs), strict=True):
                    self.tensors[id(source)] = value
        return [self.tensors[id(t)] for t in graph.outputs]

    def _twin(self, layer, scope: str, kind: str | None = None):
        key = (id(layer), kind) if kind else id(layer)
        if key not in self.layers:
            name = self._unique(layer.name, scope)
            class_name = type(layer).__name__
            activation = None
            if kind is not None:
                twin, copy = _package_layer(kind, name), False
            elif class_name in _SPECIAL_LAYERS and _is_keras_builtin(layer):
                twin, copy = _SPECIAL_LAYERS[class_name](layer, name), False
            elif class_name == "Activation" and _is_keras_builtin(layer) and \
                    _activation_name(layer, layer.get_config()["activation"]) in ACTIVATION_LAYERS:
                twin, copy = _package_layer(ACTIVATION_LAYERS[layer.get_config()["activation"]], name), False
            else:
                twin, copy = translate_layer(layer, name), True
                activation = self._split_activation(layer, scope)
            self.layers[key] = (layer, twin, copy, activation)
        return self.layers[key][1]

    def _split_activation(self, layer, scope: str):
        """For a layer with e.g. ``activation="hard_silu"`` (its twin is linear): the activation's layer."""
        config = layer.get_config() if type(layer).__name__ != "Activation" else {}
        name = config.get("activation")
        if not isinstance(name, str) or name not in ACTIVATION_LAYERS:
            return None
        return _package_layer(ACTIVATION_LAYERS[name], self._unique(f"{layer.name}_{name}", scope))

    def _operation(self, node, scope: str):
        """A keras.ops call on model tensors (``x + 3``, ``x * y``) as a tf_keras layer."""
        operation = node.operation
        kind = type(operation).__name__
        fix = ("wrap the computation in layers (Rescaling for x * a + b, Add, Subtract, Multiply, Activation) "
               "or keras_lightnets.layers")
        if kind not in _ARITHMETIC_OPS or type(operation).__module__ != "keras.src.ops.numpy" or node.arguments.kwargs:
            raise _refuse(operation, "only +, -, * and / of model tensors (keras.ops add, subtract, multiply, "
                          "divide) are translated", fix)
        first, second = node.arguments.args
        name = self._unique(operation.name, scope)
        if _is_tensor(first) and _is_tensor(second):
            if kind in ("Divide", "TrueDivide"):
                raise _refuse(operation, "dividing one model tensor by another has no quantizable layer", fix)
            layer = getattr(self.tf_keras.layers, kind)(name=name)
            return layer([self._lookup(first), self._lookup(second)])
        tensor_first = _is_tensor(first)
        tensor, constant = (first, second) if tensor_first else (second, first)
        try:
            value = np.asarray(constant, dtype="float64")
        except (TypeError, ValueError):
            raise _refuse(operation, f"its constant {constant!r} is not a number", fix) from None
        if kind == "Add":
            scale, offset = 1.0, value
        elif kind == "Subtract":
            scale, offset = (1.0, -value) if tensor_first else (-1.0, value)
        elif kind == "Multiply":
            scale, offset = value, 0.0
        elif tensor_first:
            scale, offset = 1.0 / value, 0.0
        else:
            raise _refuse(operation, "dividing a constant by a model tensor has no quantizable layer", fix)
        rescale = _package_layer("Rescale", name, scale=_per_channel(operation, scale, "constant"),
                                 offset=_per_channel(operation, offset, "constant"))
        return rescale(self._lookup(tensor))

    def copy_weights(self) -> None:
        for layer, twin, copy, _ in self.layers.values():
            if not copy:
                continue
            values = layer.get_weights()
            if len(values) != len(twin.weights):
                raise _refuse(layer, f"it has {len(values)} weights, its tf_keras twin {len(twin.weights)}",
                              "please report this layer")
            twin.set_weights(values)


def _consumers(graph) -> dict[int, list]:
    """``id(tensor) -> [nodes of graph taking it]``."""
    taken: dict[int, list] = {}
    for nodes in graph._nodes_by_depth.values():
        for node in nodes:
            for tensor in node.input_tensors:
                taken.setdefault(id(tensor), []).append(node)
    return taken


def _tensor_argument(node):
    return next(a for a in node.arguments.args if _is_tensor(a))


def _only_consumer(node, consumers: dict, graph):
    """The one node of ``graph`` taking ``node``'s single output (``None`` if several, or a graph output)."""
    if len(node.outputs) != 1 or any(node.outputs[0] is t for t in graph.outputs):
        return None
    taking = consumers.get(id(node.outputs[0]), [])
    return taking[0] if len(taking) == 1 else None


def _hard_sigmoid_nodes(node, consumers: dict, graph):
    """``(relu node, last node)`` when ``node`` starts ``ReLU(6)(x + 3) * (1/6)`` (or ``/ 6``), else None.

    keras.applications' MobileNetV3 writes its squeeze-excite gate so, with keras.ops on
    tensors; as one ``HardSigmoid`` it is the same function and quantizes as one layer.
    """
    operation = node.operation
    if _is_layer(operation) or type(operation).__name__ != "Add" or node.arguments.kwargs:
        return None
    args = node.arguments.args
    if sum(_is_tensor(a) for a in args) != 1 or [_scalar(a) for a in args if not _is_tensor(a)] != [3.0]:
        return None
    relu = _only_consumer(node, consumers, graph)
    if relu is None or type(relu.operation).__name__ != "ReLU" or not _is_keras_builtin(relu.operation):
        return None
    config = relu.operation.get_config()
    if (config.get("max_value"), config.get("negative_slope"), config.get("threshold")) != (6.0, 0.0, 0.0):
        return None
    if relu.arguments.kwargs or len(relu.arguments.args) != 1:
        return None
    last = _only_consumer(relu, consumers, graph)
    if last is None or _is_layer(last.operation) or last.arguments.kwargs:
        return None
    kind, args = type(last.operation).__name__, last.arguments.args
    constants = [_scalar(a) for a in args if not _is_tensor(a)]
    if len(constants) != 1 or constants[0] is None:
        return None
    if kind == "Multiply" and abs(constants[0] - 1.0 / 6.0) < 1e-7:
        return relu, last
    if kind in ("Divide", "TrueDivide") and _is_tensor(args[0]) and constants[0] == 6.0:
        return relu, last
    return None


def _flatten(value) -> list:
    return list(value) if isinstance(value, list | tuple) else [value]


def _check_sample(model, sample: np.ndarray | None, size: int) -> list[np.ndarray]:
    if sample is not None:
        return [np.asarray(sample, dtype="float32")]
    rng = np.random.default_rng(0)
    batches = []
    for tensor in model.inputs:
        shape = [2] + [size if d is None else int(d) for d in tensor.shape[1:]]
        batches.append(rng.uniform(0.0, 255.0, shape).astype("float32"))
    return batches


def assert_same_outputs(reference, twin, sample: np.ndarray | None = None, *, size: int = 96,
                        rtol: float = 1e-4) -> float:
    """Check that two models agree on a batch; returns the max abs difference.

    ``sample`` is an input batch (default: 2 random images of pixels in [0, 255],
    unknown sides set to ``size``). The tolerance is ``rtol`` times the largest
    output magnitude (at least 1).
    """
    batches = _check_sample(reference, sample, size)
    feed = batches[0] if len(batches) == 1 else batches
    expected = _flatten(reference(feed, training=False))
    found = _flatten(twin(feed, training=False))
    worst = 0.0
    for a, b in zip(expected, found, strict=True):
        a, b = np.asarray(a, dtype="float64"), np.asarray(b, dtype="float64")
        if a.shape != b.shape:
            raise TranslationError(
                f"the tf_keras twin of model {reference.name!r} gives outputs of shape {b.shape}, "
                f"the model {a.shape}; please report this model"
            )
        difference = float(np.max(np.abs(a - b))) if a.size else 0.0
        if difference > rtol * max(1.0, float(np.max(np.abs(a)))):
            raise TranslationError(
                f"the tf_keras twin of model {reference.name!r} differs from it by {difference:.3g} "
                "(max abs); please report this model"
            )
        worst = max(worst, difference)
    return worst


def to_tf_keras(model, *, check: bool = True, sample: np.ndarray | None = None):
    """The tf_keras twin of a Keras 3 model: same layers, names, weights and outputs.

    A tf_keras model is returned as it is. ``check`` compares both models' outputs
    on ``sample`` (default: a random batch) and raises ``TranslationError`` if they
    differ. A channels-first model is translated from its channels-last twin
    (``layout.channels_last_twin``; ``sample`` is then given channels-first and
    moved). Nested Functional/Sequential models are flattened into one graph; a
    nested layer whose name clashes gets its parent's name as a prefix. Layers
    that are the identity at inference (``AUGMENTATION_LAYERS``) are left out, with
    one ``DroppedLayersWarning`` naming them; what else is translated into which
    layer is listed in this module's docstring. A detector's twin keeps its ``anchors``
    and ``detector_info`` (``compression.detectors``).
    """
    try:
        flavour = _backend.flavour_of(model)
    except TypeError:
        raise TypeError(
            f"`model` must be a Keras 3 or tf_keras model; received {type(model).__name__}"
        ) from None
    if flavour == "tf_keras":
        return model
    _backend.require_tensorflow_backend("compression (TFMOT)", model)
    from keras_lightnets.layout import channels_last_twin, is_channels_first

    original = model
    if is_channels_first(model):  # TFMOT and TFLite are NHWC: the twin has the same weights and outputs
        if sample is not None:
            sample = np.moveaxis(np.asarray(sample), 1, -1)
        model = channels_last_twin(model)
    graph = _functional_graph(model)
    translator = _Translator()
    tf_keras = translator.tf_keras
    inputs = []
    for tensor in graph.inputs:
        layer_name = tensor._keras_history.operation.name
        translator.names.add(layer_name)
        inputs.append(tf_keras.Input(batch_shape=tuple(tensor.shape), dtype=tensor.dtype, name=layer_name))
    outputs = translator.walk(graph, inputs)
    twin = tf_keras.Model(inputs if len(inputs) > 1 else inputs[0],
                          outputs if len(outputs) > 1 else outputs[0], name=model.name)
    translator.copy_weights()
    if translator.dropped:
        warnings.warn(
            f"model {model.name!r}: left out {len(translator.dropped)} layer(s) that are the identity at inference "
            f"(augmentation): {', '.join(translator.dropped)}; the tf_keras model (and a fine-tune of it) runs "
            "without them", DroppedLayersWarning, stacklevel=2,
        )
    if check:
        assert_same_outputs(model, twin, sample)
    return keep_detector(original, twin)
