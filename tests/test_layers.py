"""The package's custom layers, each in both flavours, on tiny tensors (no model zoo).

Values against numpy formulas, shapes, configs and serialization names, argument errors,
the quantization policy table and the layer-tree helpers. The Keras 3 tests (ids with
``keras3``) also run under the JAX backend, in a child process (the detection layers'
NonMaxSuppression included: it is written in keras.ops). The detection layers' own rules are
tested in ``test_detection_inference.py``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import WAIT_S

from keras_lightnets import _backend
from keras_lightnets.layers import (
    LAYER_NAMES,
    PACKAGE,
    custom_objects,
    get_layer_class,
    int8_graph,
    nested_layers,
    unwrap,
)

ROOT = Path(__file__).resolve().parents[1]
FLAVOURS = [pytest.param("keras", id="keras3"), pytest.param("tf_keras", id="tf_keras")]
DETECTION_LAYERS = ("DecodeBoxes", "ClassScores", "NonMaxSuppression")
ANCHORS = np.float32([[0, 0, 2, 2], [1, 1, 3, 4], [2, 0, 5, 3]])  # 3 anchors, x1 y1 x2 y2 pixels
# Arguments building each layer for a 4-channel input (the detection layers: for 3 rows, see SAMPLES).
ARGUMENTS = {
    "HardSigmoid": {}, "HardSwish": {},
    "Rescale": {"scale": [0.5, 1.0, 2.0, 0.25], "offset": [0.0, -1.0, 1.0, 0.5]},
    "ChannelShuffle": {"groups": 2}, "ChannelSplit": {"groups": 2},
    "DecodeBoxes": {"box_coding": "torchvision", "box_weights": [10.0, 10.0, 5.0, 5.0], "image_size": [4, 6],
                    "anchors": ANCHORS},
    "ClassScores": {"score": "softmax", "background_class": 0},
    "NonMaxSuppression": {"score_threshold": 0.1, "iou_threshold": 0.5, "max_detections": 5,
                          "candidates_per_class": 2},
}
# Per layer: symbolic input shapes (batch left out) and the output shapes (batch None).
SYMBOLIC = {
    **{name: ([(5, 3, 4)], [(None, 5, 3, 4)]) for name in ("HardSigmoid", "HardSwish", "Rescale", "ChannelShuffle")},
    "ChannelSplit": ([(5, 3, 4)], [(None, 5, 3, 2)] * 2),
    "DecodeBoxes": ([(3, 4)], [(None, 3, 4)]),
    "ClassScores": ([(3, 4)], [(None, 3, 3)]),
    "NonMaxSuppression": ([(3, 4), (3, 2)], [(None, 5, 4), (None, 5), (None, 5), (None,)]),
}
GROUPED = ("ChannelShuffle", "ChannelSplit")
LAYOUT_AWARE = ("Rescale", *GROUPED)


def _keras(flavour: str):
    return _backend.keras_module(flavour)


def _layer(flavour: str, name: str, **kwargs):
    return get_layer_class(name, flavour)(**kwargs)


def _numpy(flavour: str, tensor) -> np.ndarray:
    if flavour == "keras":
        return np.asarray(_keras(flavour).ops.convert_to_numpy(tensor))
    return np.asarray(tensor)


def _as_list(outputs) -> list:
    return list(outputs) if isinstance(outputs, list | tuple) else [outputs]


def _values(low: float = -5.0, high: float = 5.0, shape=(2, 3, 5, 4), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, shape).astype("float32")


def _sample(name: str):
    """A small input for layer ``name`` built with ``ARGUMENTS[name]``."""
    if name == "NonMaxSuppression":
        boxes = np.float32([[[0, 0, 4, 4], [1, 1, 4, 4], [3, 3, 6, 6]]])
        return [boxes, _values(0, 1, shape=(1, 3, 2))]
    if name in DETECTION_LAYERS:
        return _values(-2, 2, shape=(1, 3, 4))
    return _values(shape=(1, 2, 2, 4))


def _torchvision_channel_shuffle(x: np.ndarray, groups: int) -> np.ndarray:
    """torchvision's ``channel_shuffle`` on ``(N, C, H, W)``."""
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)


@contextlib.contextmanager
def _image_data_format(flavour: str, data_format: str):
    backend = _keras(flavour).backend
    before = backend.image_data_format()
    backend.set_image_data_format(data_format)
    try:
        yield
    finally:
        backend.set_image_data_format(before)


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_hard_sigmoid_is_relu6_of_x_plus_3_over_6(flavour):
    x = np.linspace(-5, 5, 41, dtype="float32").reshape(1, 41)
    got = _numpy(flavour, _layer(flavour, "HardSigmoid")(x))
    np.testing.assert_allclose(got, np.clip(x + 3, 0, 6) / 6, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("int8", [False, True], ids=["float", "int8_graph"])
def test_hard_swish_float_and_int8_forms(flavour, int8):
    x = np.linspace(-5, 5, 41, dtype="float32").reshape(1, 41)
    layer = _layer(flavour, "HardSwish")
    layer.int8_graph = int8
    got = _numpy(flavour, layer(x))
    np.testing.assert_allclose(got, x * np.clip(x + 3, 0, 6) / 6, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("shape", [(2, 3, 5, 3), (2, 2, 2, 8), (4, 3)], ids=["narrow-image", "image", "vector"])
def test_rescale_per_channel_channels_last(flavour, shape):
    channels = shape[-1]
    scale = np.linspace(0.25, 2.0, channels).astype("float32")
    offset = np.linspace(-1.0, 1.0, channels).astype("float32")
    x = _values(shape=shape)
    layer = _layer(flavour, "Rescale", scale=scale.tolist(), offset=offset.tolist(), data_format="channels_last")
    np.testing.assert_allclose(_numpy(flavour, layer(x)), x * scale + offset, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_rescale_per_channel_channels_first(flavour):
    x = _values(shape=(2, 3, 4, 5))
    scale, offset = np.float32([0.5, 1.0, 2.0]), np.float32([0.0, -1.0, 1.0])
    layer = _layer(flavour, "Rescale", scale=scale.tolist(), offset=offset.tolist(), data_format="channels_first")
    expected = x * scale.reshape(1, 3, 1, 1) + offset.reshape(1, 3, 1, 1)
    np.testing.assert_allclose(_numpy(flavour, layer(x)), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_rescale_per_tensor(flavour):
    x = _values(0, 255, shape=(2, 3, 3, 3))
    layer = _layer(flavour, "Rescale", scale=1 / 127.5, offset=-1)
    assert layer.scale == pytest.approx(1 / 127.5) and layer.offset == -1.0 and isinstance(layer.offset, float)
    np.testing.assert_allclose(_numpy(flavour, layer(x)), x / 127.5 - 1, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_channel_shuffle_moves_channels_as_torchvision(flavour, data_format):
    layer = _layer(flavour, "ChannelShuffle", groups=3, data_format=data_format)
    # Each channel holds its own index: the output lists where every channel went.
    nchw = np.broadcast_to(np.arange(6, dtype="float32").reshape(1, 6, 1, 1), (2, 6, 2, 3)).copy()
    nchw += _values(0, 0.01, shape=nchw.shape)
    expected = _torchvision_channel_shuffle(nchw, 3)
    if data_format == "channels_last":
        got = _numpy(flavour, layer(nchw.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    else:
        got = _numpy(flavour, layer(nchw))
    np.testing.assert_array_equal(got, expected)
    assert np.floor(got[0, :, 0, 0]).tolist() == [0, 2, 4, 1, 3, 5]  # torchvision: channel g*(C/g)+k -> k*groups+g


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("data_format, axis", [("channels_last", 3), ("channels_first", 1)])
def test_channel_split_cuts_the_channel_axis_in_equal_parts(flavour, data_format, axis):
    x = _values(shape=(2, 6, 3, 6))
    parts = _layer(flavour, "ChannelSplit", groups=3, data_format=data_format)(x)
    assert isinstance(parts, list) and len(parts) == 3
    for got, expected in zip(parts, np.split(x, 3, axis=axis), strict=True):
        np.testing.assert_array_equal(_numpy(flavour, got), expected)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_detection_layers_against_their_numpy_references(flavour):
    from keras_lightnets.detection.inference import (
        class_scores_numpy,
        decode_boxes_numpy,
        non_max_suppression_numpy,
    )

    rng = np.random.default_rng(4)
    deltas = _values(-1, 1, shape=(2, 3, 4))
    decode = _layer(flavour, "DecodeBoxes", **ARGUMENTS["DecodeBoxes"], clip=False)
    np.testing.assert_allclose(
        _numpy(flavour, decode(deltas)),
        decode_boxes_numpy(deltas, ANCHORS, box_coding="torchvision", box_weights=(10, 10, 5, 5),
                           anchor_format="xyxy_pixels", image_size=(4, 6), clip=False), rtol=2e-6, atol=1e-6)
    logits = _values(shape=(2, 3, 4))
    np.testing.assert_allclose(_numpy(flavour, _layer(flavour, "ClassScores", score="sigmoid", background_class=None)(
        logits)), class_scores_numpy(logits, "sigmoid", None), rtol=1e-6)
    xy = rng.integers(0, 30, (2, 40, 2))
    boxes = np.concatenate([xy, xy + rng.integers(2, 12, (2, 40, 2))], -1).astype("float32")
    scores = np.round(rng.uniform(0, 1, (2, 40, 3)), 1).astype("float32")
    settings = {"score_threshold": 0.2, "iou_threshold": 0.4, "max_detections": 48, "candidates_per_class": 16}
    got = _layer(flavour, "NonMaxSuppression", **settings)([boxes, scores])
    expected = non_max_suppression_numpy(boxes, scores, **settings)
    assert expected[3].min() > 0 and expected[3].max() < 48  # some suppressed: padded rows too
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(_numpy(flavour, a), b)


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("name", LAYER_NAMES)
def test_symbolic_output_shapes(flavour, name):
    keras = _keras(flavour)
    shapes, expected = SYMBOLIC[name]
    inputs = [keras.Input(shape) for shape in shapes]
    outputs = _layer(flavour, name, **ARGUMENTS[name])(inputs if len(inputs) > 1 else inputs[0])
    assert [tuple(part.shape) for part in _as_list(outputs)] == expected


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_channels_first_output_shapes(flavour):
    keras = _keras(flavour)
    inputs = keras.Input((6, 4, 5))
    assert tuple(_layer(flavour, "ChannelShuffle", groups=3, data_format="channels_first")(inputs).shape) \
        == (None, 6, 4, 5)
    split = _layer(flavour, "ChannelSplit", groups=3, data_format="channels_first")
    assert [tuple(part.shape) for part in split(inputs)] == [(None, 2, 4, 5)] * 3
    assert split.compute_output_shape((None, 6, 4, 5)) == [(None, 2, 4, 5)] * 3
    rescale = _layer(flavour, "Rescale", scale=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], data_format="channels_first")
    assert tuple(rescale(inputs).shape) == (None, 6, 4, 5)


# --------------------------------------------------------------------------- configs and registration


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("name", LAYER_NAMES)
def test_config_round_trip_and_registered_name(flavour, name):
    keras = _keras(flavour)
    cls = get_layer_class(name, flavour)
    assert keras.saving.get_registered_name(cls) == f"{PACKAGE}>{name}"
    assert keras.saving.get_registered_object(f"{PACKAGE}>{name}") is cls
    layer = cls(**ARGUMENTS[name], name=f"my_{name.lower()}")
    config = layer.get_config()
    clone = cls.from_config(config)
    assert type(clone) is cls and clone.get_config() == config and clone.name == f"my_{name.lower()}"
    serialized = keras.saving.serialize_keras_object(layer)
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is cls and restored.get_config() == config
    x = _sample(name)
    expected = layer(x)
    restored(x)
    restored.set_weights(layer.get_weights())  # DecodeBoxes' anchors: a weight, not in the config
    for a, b in zip(_as_list(expected), _as_list(restored(x)), strict=True):
        np.testing.assert_array_equal(_numpy(flavour, a), _numpy(flavour, b))


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("name", LAYOUT_AWARE)
def test_data_format_defaults_to_the_flavour_and_old_configs_are_channels_last(flavour, name):
    with _image_data_format(flavour, "channels_first"):
        layer = _layer(flavour, name, **ARGUMENTS[name])
        assert layer.data_format == "channels_first" and layer.channel_axis == 1
        config = layer.get_config()
        assert config["data_format"] == "channels_first"
        old = {key: value for key, value in config.items() if key != "data_format"}
        restored = type(layer).from_config(old)
        assert restored.data_format == "channels_last" and restored.channel_axis == -1


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_layer_classes_by_flavour(flavour):
    classes = custom_objects(flavour)
    assert tuple(classes) == LAYER_NAMES
    for name, cls in classes.items():
        assert cls.__name__ == name and cls is get_layer_class(name, flavour)
        assert _backend.flavour_of(cls(**ARGUMENTS[name])) == flavour
        assert cls(**ARGUMENTS[name]).get_prunable_weights() == []
        assert not hasattr(cls, "quantize_config") and not hasattr(cls, "quantize_mode")
    with _backend.use_flavour(flavour):
        assert custom_objects() == classes and get_layer_class("HardSwish") is classes["HardSwish"]


def test_public_names_of_the_classes():
    import keras_lightnets.layers as layers
    from keras_lightnets import legacy

    for name in LAYER_NAMES:
        assert getattr(layers, name) is get_layer_class(name, "keras")
    for name in LAYER_NAMES:
        assert getattr(legacy, name) is get_layer_class(name, "tf_keras")
    assert legacy.legacy_custom_objects() == custom_objects("tf_keras")
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        layers.Nope  # noqa: B018


def test_unknown_layer_or_flavour():
    with pytest.raises(ValueError, match=re.escape("unknown layer 'Swish'; allowed values: HardSigmoid, HardSwish, "
                                                   "Rescale, ChannelShuffle, ChannelSplit, DecodeBoxes, "
                                                   "ClassScores, NonMaxSuppression")):
        get_layer_class("Swish", "keras")
    with pytest.raises(ValueError, match="`flavour` must be one of"):
        custom_objects("keras2")


def test_the_layer_modules_import_no_keras():
    code = ("import sys, keras_lightnets.layers, keras_lightnets.layers.mixins, keras_lightnets.layers.tree\n"
            "assert not [m for m in ('keras', 'tensorflow', 'tf_keras') if m in sys.modules]\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT_S, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]


# --------------------------------------------------------------------------- argument errors


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("name", GROUPED)
@pytest.mark.parametrize("groups", [0, -2, True, 1.5, "2", None])
def test_groups_must_be_a_positive_int(flavour, name, groups):
    with pytest.raises(ValueError, match=re.escape(f"{name}: `groups` must be a positive int; "
                                                   f"received groups={groups!r}")):
        _layer(flavour, name, groups=groups)


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("name", GROUPED)
@pytest.mark.parametrize("data_format, shape, layout", [
    ("channels_last", (4, 4, 5), "(batch, height, width, channels)"),
    ("channels_first", (5, 4, 4), "(batch, channels, height, width)"),
    ("channels_last", (4, 6), "(batch, height, width, channels)"),
])
def test_channels_must_be_divisible_by_groups(flavour, name, data_format, shape, layout):
    layer = _layer(flavour, name, groups=2, data_format=data_format)
    expected = (f"{name} expects {layout} with channels divisible by groups=2; "
                f"received input shape {(None, *shape)}")
    with pytest.raises(ValueError, match=re.escape(expected)):
        layer(_keras(flavour).Input(shape))
    with pytest.raises(ValueError, match=re.escape(expected)):
        layer.build((None, *shape))


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("name", LAYOUT_AWARE)
@pytest.mark.parametrize("data_format", ["nhwc", "", 1])
def test_data_format_must_be_known(flavour, name, data_format):
    expected = (f"{name}: `data_format` must be None, 'channels_last' or 'channels_first'; "
                f"received data_format={data_format!r}")
    with pytest.raises(ValueError, match=re.escape(expected)):
        _layer(flavour, name, **ARGUMENTS[name], data_format=data_format)


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("argument, value", [
    ("scale", "a"), ("scale", []), ("scale", ["x", 1.0]), ("scale", None), ("offset", None), ("offset", [1.0, "y"]),
])
def test_rescale_needs_floats(flavour, argument, value):
    kwargs = {"scale": 1.0, argument: value}
    expected = f"Rescale: `{argument}` must be a float or a list of floats; received {value!r}"
    with pytest.raises(ValueError, match=re.escape(expected)):
        _layer(flavour, "Rescale", **kwargs)


# --------------------------------------------------------------------------- quantization policy


@pytest.fixture(scope="module")
def configs():
    pytest.importorskip("tensorflow_model_optimization")
    from keras_lightnets.compression import configs

    return configs


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_the_policy_table_covers_every_layer(configs, name):
    tf_keras = _keras("tf_keras")
    policy = configs.QUANTIZE_POLICY[name]
    layer = _layer("tf_keras", name, **ARGUMENTS[name])
    config = configs.config_for(layer)
    assert type(config) is (configs.OutputQuantizeConfig if policy.output else configs.PassThroughQuantizeConfig)
    assert bool(config.get_output_quantizers(layer)) is policy.output
    # The points name exactly the identities marking values inside the layer, in both flavours.
    linear = {"tf_keras": tf_keras.activations.linear, "keras": _keras("keras").activations.linear}
    for flavour, identity in linear.items():
        twin = _layer(flavour, name, **ARGUMENTS[name])
        assert {key for key, value in vars(twin).items() if value is identity} == set(policy.points)
    assert [quantizer.prefix for _, quantizer in config.get_activations_and_quantizers(layer)] == [
        "" if i == 0 else f"{point}_" for i, point in enumerate(policy.points)]


def test_the_policy_table_for_keras_layers_and_look_alikes(configs):
    tf_keras = _keras("tf_keras")
    assert type(configs.config_for(tf_keras.layers.Multiply())) is configs.OutputQuantizeConfig
    assert type(configs.config_for(tf_keras.layers.Resizing(4, 4))) is configs.PassThroughQuantizeConfig
    assert configs.config_for(tf_keras.layers.Dense(2)) is None
    look_alike = type("HardSwish", (tf_keras.layers.Layer,), {})()
    assert configs.policy_for(look_alike) is None and configs.config_for(look_alike) is None


# --------------------------------------------------------------------------- layer trees


def _wrapped(class_name: str, inner):
    wrapper = type(class_name, (), {})()
    wrapper.layer = inner
    return wrapper


def test_unwrap_goes_through_every_tfmot_wrapper():
    leaf = SimpleNamespace(name="leaf")
    assert unwrap(leaf) is leaf
    assert unwrap(_wrapped("PruneLowMagnitude", _wrapped("QuantizeWrapperV2", leaf))) is leaf
    for name in ("QuantizeWrapper", "QuantizeAnnotate"):
        assert unwrap(_wrapped(name, leaf)) is leaf
    quantize_layer = _wrapped("QuantizeLayer", leaf)  # a QAT layer, not a wrapper
    assert unwrap(quantize_layer) is quantize_layer


def test_nested_layers_is_depth_first_through_models_and_wrappers():
    inner, leaf, deep = SimpleNamespace(name="inner"), SimpleNamespace(name="leaf"), SimpleNamespace(name="deep")
    wrapper = _wrapped("QuantizeWrapperV2", inner)
    sub = SimpleNamespace(layers=[leaf, SimpleNamespace(layers=[deep])])
    model = SimpleNamespace(layers=[wrapper, sub])
    assert list(nested_layers(model)) == [wrapper, inner, sub, leaf, sub.layers[1], deep]
    assert list(nested_layers(SimpleNamespace())) == []


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_int8_graph_sets_the_package_layers_and_restores_them(flavour):
    swish, sigmoid = _layer(flavour, "HardSwish"), _layer(flavour, "HardSigmoid")
    sigmoid.int8_graph = True  # already set: stays set
    other = SimpleNamespace(int8_graph=False)  # not a package layer: untouched
    model = SimpleNamespace(layers=[_wrapped("QuantizeWrapperV2", swish), SimpleNamespace(layers=[sigmoid]), other])
    with int8_graph(model):
        assert swish.int8_graph and sigmoid.int8_graph and not other.int8_graph
    assert not swish.int8_graph and sigmoid.int8_graph
    with pytest.raises(RuntimeError), int8_graph(model):
        assert swish.int8_graph
        raise RuntimeError
    assert not swish.int8_graph and sigmoid.int8_graph


# --------------------------------------------------------------------------- JAX


def test_the_keras_3_layers_pass_under_jax():
    """The ``keras3`` tests of this file, again in a child process on Keras' JAX backend."""
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}
    # Exit status 0: some tests were selected and all passed (none selected is 5).
    code = ("import sys, keras, pytest\n"
            "assert keras.config.backend() == 'jax', keras.config.backend()\n"
            "sys.exit(pytest.main(['-p', 'no:xdist', '-p', 'no:cacheprovider', '-q', '-k', 'keras3', sys.argv[1]]))\n")
    result = subprocess.run([sys.executable, "-c", code, str(Path(__file__).resolve())],
                            capture_output=True, text=True, timeout=WAIT_S, env=env, cwd=ROOT)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
