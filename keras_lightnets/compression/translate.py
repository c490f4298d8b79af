"""Translate a Keras 3 Functional model into its tf_keras twin (what TFMOT accepts).

The Keras 3 graph is walked node by node, in dependency order. Each layer is
re-created from its config as the tf_keras layer of the same class (the package's
own layers as their tf_keras twins from ``keras_lightnets.layers``), called on the
translated inputs with the same call arguments, and given the same weights. A
Functional model used as a layer (``keras.Model(base.input, ...)`` wrapped again,
or a base model inside ``keras.Sequential``) is flattened: its layers are inlined
into the outer graph. The result is checked to give the same outputs on a random
batch before it is returned.

A layer that cannot be translated (a user's own subclassed layer, a Keras 3 layer
with no tf_keras counterpart, a config option tf_keras lacks) raises
``TranslationError`` naming the layer and its class.
"""

from __future__ import annotations

import inspect

import numpy as np

from keras_lightnets import _backend
from keras_lightnets.layers import LAYER_NAMES, get_layer_class

# Keyword arguments every tf_keras Layer accepts through ``**kwargs``.
_BASE_LAYER_KWARGS = frozenset({
    "name", "trainable", "dtype", "dynamic", "input_dim", "input_shape", "batch_input_shape",
    "batch_size", "weights", "activity_regularizer", "autocast", "implementation",
})
# Keras 3 config entries with no tf_keras meaning; dropped when they hold their neutral value.
_NEUTRAL = (None, False, 0, "", (), [], {})


class TranslationError(ValueError):
    """A Keras 3 model (or one of its layers) has no exact tf_keras twin."""


def _layer_label(layer) -> str:
    return f"layer {layer.name!r} ({type(layer).__name__})"


def _nested_class(key: str, class_name: str):
    """The tf_keras class of a serialized initializer/regularizer/constraint entry ``key``."""
    tf_keras = _backend.keras_module("tf_keras")
    for suffix, module in (("_initializer", tf_keras.initializers), ("_regularizer", tf_keras.regularizers),
                           ("_constraint", tf_keras.constraints)):
        if key.endswith(suffix):
            return getattr(module, class_name, None)
    return None


def _clean(config: dict, cls, label: str) -> dict:
    """A Keras 3 ``get_config()`` made readable by tf_keras class ``cls``.

    Dtype policies become their name; nested objects lose Keras 3's module keys and
    any argument their tf_keras class lacks (only when it holds a neutral value,
    otherwise ``TranslationError``).
    """
    allowed, _ = _accepted_kwargs(cls)
    cleaned = {}
    for key, value in config.items():
        if isinstance(value, dict) and "class_name" in value and "config" in value:
            if value["class_name"] in ("DTypePolicy", "FloatDTypePolicy"):
                value = value["config"]["name"]
            else:
                nested = _nested_class(key, value["class_name"])
                inner = _clean(value["config"], nested, label) if nested is not None else value["config"]
                value = {"class_name": value["class_name"], "config": inner}
        if key not in allowed:
            if value not in _NEUTRAL:
                raise TranslationError(
                    f"cannot translate {label} to tf_keras: its option {key}={value!r} does not exist in tf_keras"
                )
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


def _tf_keras_class(layer):
    tf_keras = _backend.keras_module("tf_keras")
    name = type(layer).__name__
    if name in LAYER_NAMES and type(layer) is get_layer_class(name, "keras"):
        return get_layer_class(name, "tf_keras")
    module = type(layer).__module__
    if module.startswith("keras.") and hasattr(tf_keras.layers, name):
        return getattr(tf_keras.layers, name)
    raise TranslationError(
        f"cannot translate {_layer_label(layer)} to tf_keras: only Keras' built-in layers and "
        f"keras_lightnets' layers ({', '.join(LAYER_NAMES)}) have tf_keras twins. Rebuild the model "
        "from those layers, or build it with keras_lightnets.legacy (tf_keras) from the start."
    )


def translate_layer(layer, name: str | None = None):
    """A new tf_keras layer with ``layer``'s class and config (weights are set after building)."""
    cls = _tf_keras_class(layer)
    config = _clean(layer.get_config(), cls, _layer_label(layer))
    if name is not None:
        config["name"] = name
    try:
        return cls.from_config(config)
    except (TypeError, ValueError) as err:
        raise TranslationError(f"cannot translate {_layer_label(layer)} to tf_keras: {err}") from err


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


class _Translator:
    """Walks one Keras 3 graph (and any nested Functional graph) into tf_keras layers."""

    def __init__(self):
        self.tf_keras = _backend.keras_module("tf_keras")
        self.tensors: dict[int, object] = {}  # id(Keras 3 tensor) -> tf_keras tensor
        self.layers: dict[int, tuple[object, object]] = {}  # id(Keras 3 layer) -> (it, tf_keras twin)
        self.names: set[str] = set()

    def _lookup(self, value):
        import keras

        if isinstance(value, keras.KerasTensor):
            return self.tensors[id(value)]
        return value

    def _unique(self, name: str, scope: str) -> str:
        if name in self.names:
            name = f"{scope}_{name}"
        self.names.add(name)
        return name

    def walk(self, graph, inputs: list, scope: str = "") -> list:
        """Translate ``graph`` fed with tf_keras ``inputs``; returns its translated outputs."""
        import keras

        for source, value in zip(graph.inputs, inputs, strict=True):
            self.tensors[id(source)] = value
        for depth in sorted(graph._nodes_by_depth, reverse=True):
            for node in graph._nodes_by_depth[depth]:
                if node.is_input:
                    continue
                operation = node.operation
                args = keras.tree.map_structure(self._lookup, node.arguments.args)
                kwargs = keras.tree.map_structure(self._lookup, node.arguments.kwargs)
                if _is_functional(operation) or type(operation).__name__ == "Sequential":
                    inner = _functional_graph(operation)
                    flat = keras.tree.flatten(args)
                    outputs = self.walk(inner, flat, scope=operation.name)
                    outputs = outputs[0] if len(outputs) == 1 else outputs
                else:
                    outputs = self._twin(operation, scope)(*args, **kwargs)
                for source, value in zip(keras.tree.flatten(node.outputs), _flatten(outputs), strict=True):
                    self.tensors[id(source)] = value
        return [self.tensors[id(t)] for t in graph.outputs]

    def _twin(self, layer, scope: str):
        if id(layer) not in self.layers:
            self.layers[id(layer)] = (layer, translate_layer(layer, self._unique(layer.name, scope or "outer")))
        return self.layers[id(layer)][1]

    def copy_weights(self) -> None:
        for layer, twin in self.layers.values():
            values = layer.get_weights()
            if len(values) != len(twin.weights):
                raise TranslationError(
                    f"cannot translate {_layer_label(layer)}: it has {len(values)} weights, "
                    f"its tf_keras twin {len(twin.weights)}"
                )
            twin.set_weights(values)


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
    differ. Nested Functional/Sequential models are flattened into one graph; a
    nested layer whose name clashes gets its parent's name as a prefix.
    """
    try:
        flavour = _backend.flavour_of(model)
    except TypeError:
        raise TypeError(
            f"`model` must be a Keras 3 or tf_keras model; received {type(model).__name__}"
        ) from None
    if flavour == "tf_keras":
        return model
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
    if check:
        assert_same_outputs(model, twin, sample)
    return twin
