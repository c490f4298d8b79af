"""Every registered model, in both Keras flavours: keras.applications' own test cases,
registry facts, feature maps, serialization, and the every-op-is-a-layer rule (the
registry's names, errors and records: ``test_registry.py``).

Parametrized over the registry, so a newly registered variant is tested at once: what
depends on the width (parameters, MACs, a prediction at the default size) on every variant,
Keras 3 vs tf_keras agreement, the builder's argument handling, serialization and feature maps
on the smallest variant of each architecture (``helpers.smallest_per_architecture``: widths
share every line of that code).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tf_keras
from helpers import image_batch, infer, randomize_weights, smallest_per_architecture, smallest_per_family

import keras_lightnets
from keras_lightnets import count_macs, create_model, legacy, list_models, model_config
from keras_lightnets.models.registry import FEATURE_STRIDES

ALL = list_models()
ARCHITECTURES = smallest_per_architecture()
SMALL = 96  # input side for tests that do not need the default size
FORBIDDEN_LAYERS = {"Lambda", "TFOpLambda", "SlicingOpLambda"}


def _logits_model(name: str, flavour: str = "keras", size: int = SMALL, classes: int = 7):
    return create_model(
        name, weights=None, input_shape=(size, size, 3), classes=classes,
        classifier_activation=None, flavour=flavour,
    )


@pytest.mark.parametrize("name", ALL)
def test_registry_facts_match_the_built_model(name):
    config = model_config(name)
    model = create_model(name, weights=None, input_shape=config.input_shape)
    assert model.count_params() == config.params
    assert count_macs(model) == config.macs
    assert tuple(model.output.shape) == (None, 1000)
    probabilities = infer(model, image_batch(config.input_size, batch=1))
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=1e-4)


@pytest.mark.parametrize("channels", [1, 4])
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_non_rgb_input_without_weights(name, channels):
    model = create_model(name, weights=None, include_top=False, input_shape=(SMALL, SMALL, channels))
    assert model.input.shape[-1] == channels
    assert len(model.output.shape) == 4


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_odd_input_size_without_top(name):
    model = create_model(name, weights=None, include_top=False, input_shape=(123, 123, 3))
    output = infer(model, image_batch(123, batch=1))
    assert output.ndim == 4 and output.shape[1] >= 1 and output.shape[2] >= 1


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_custom_input_tensor_keeps_its_source_input(name):
    source = keras.Input((SMALL, SMALL, 3), name="images")
    scaled = keras.layers.Activation("linear", name="upstream")(source)
    model = create_model(name, weights=None, include_top=False, input_tensor=scaled, pooling="avg")
    assert model.inputs[0] is source
    assert model.get_layer("upstream") is not None


@pytest.mark.parametrize("pooling", ["avg", "max"])
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_pooling_output_shape(name, pooling):
    headless = create_model(name, weights=None, include_top=False, input_shape=(SMALL, SMALL, 3))
    pooled = create_model(name, weights=None, include_top=False, pooling=pooling, input_shape=(SMALL, SMALL, 3))
    assert tuple(pooled.output.shape) == (None, headless.output.shape[-1])


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_classifier_activation(name):
    logits_model = _logits_model(name)
    randomize_weights(logits_model)
    softmax_model = create_model(name, weights=None, input_shape=(SMALL, SMALL, 3), classes=7)
    softmax_model.set_weights(logits_model.get_weights())
    images = image_batch(SMALL)
    logits = infer(logits_model, images)
    probabilities = infer(softmax_model, images)
    assert logits.shape == (2, 7)
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(probabilities, expected / expected.sum(-1, keepdims=True), atol=1e-5)


def _layer_classes(model) -> set[str]:
    return {type(layer).__name__ for layer in model.layers}


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_keras3_and_tf_keras_agree(name):
    """Same code, two namespaces: same layer names, weights and outputs; no Lambda in either.
    (Widths of an architecture run the same lines with other channel counts.)"""
    k3 = _logits_model(name, "keras")
    tfk = _logits_model(name, "tf_keras")
    assert isinstance(k3, keras.Model) and isinstance(tfk, tf_keras.Model)
    assert [layer.name for layer in k3.layers] == [layer.name for layer in tfk.layers]
    assert not (_layer_classes(k3) | _layer_classes(tfk)) & FORBIDDEN_LAYERS
    randomize_weights(k3)
    for layer in k3.layers:
        if layer.weights:
            tfk.get_layer(layer.name).set_weights(layer.get_weights())
    images = image_batch(SMALL)
    expected = infer(k3, images)
    np.testing.assert_allclose(infer(tfk, images), expected, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_keras_file_round_trip_in_safe_mode(name, tmp_path):
    model = _logits_model(name)
    randomize_weights(model)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    images = image_batch(SMALL)
    np.testing.assert_array_equal(infer(loaded, images), infer(model, images))


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_tf_keras_h5_round_trip(name, tmp_path):
    model = _logits_model(name, "tf_keras")
    randomize_weights(model)
    path = str(tmp_path / f"{name}.h5")
    model.save(path)
    loaded = tf_keras.models.load_model(path, custom_objects=legacy.legacy_custom_objects())
    images = image_batch(SMALL)
    np.testing.assert_array_equal(infer(loaded, images), infer(model, images))


@pytest.mark.parametrize("name", smallest_per_family())
def test_tf_keras_savedmodel_round_trip(name, tmp_path):
    """One variant per family: SavedModel export is slow, and variants share their layers."""
    model = _logits_model(name, "tf_keras")
    randomize_weights(model)
    path = str(tmp_path / name)
    model.save(path, save_format="tf")
    loaded = tf_keras.models.load_model(path, custom_objects=legacy.legacy_custom_objects())
    images = image_batch(SMALL)
    np.testing.assert_allclose(infer(loaded, images), infer(model, images), atol=1e-6)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_features_only(name):
    size = 128
    model = create_model(name, features_only=True, weights=None, input_shape=(size, size, 3))
    strides = [info["stride"] for info in model.feature_info]
    # Every family reaches stride 16; all but SqueezeNet (no fifth stage) reach 32.
    assert strides == list(FEATURE_STRIDES[: len(strides)]) and len(strides) >= 4
    assert len(model.outputs) == len(strides)
    for info, output in zip(model.feature_info, model.outputs, strict=True):
        # "valid" stems (NASNet, SqueezeNet) make maps a little smaller than size / stride.
        assert 0.85 * size / info["stride"] <= output.shape[1] <= size / info["stride"] + 1, (info, output.shape)
        assert output.shape[-1] == info["channels"]
        assert model.get_layer(info["layer"]).output is output
    last = len(strides) - 1
    deepest = create_model(name, features_only=True, out_indices=(2, last), weights=None, input_shape=(size, size, 3))
    assert [info["stride"] for info in deepest.feature_info] == [8, strides[last]]


def test_layer_names_are_deterministic():
    first = create_model("mobilenet_v3_small_100", weights=None)
    second = create_model("mobilenet_v3_small_100", weights=None)
    assert [layer.name for layer in first.layers] == [layer.name for layer in second.layers]


def test_public_builders_mirror_keras_applications_signatures():
    import inspect

    for public in ("MobileNet", "MobileNetV2", "MobileNetV3Small", "MobileNetV3Large", "NASNetMobile"):
        ours = inspect.signature(getattr(keras_lightnets, public))
        theirs = inspect.signature(getattr(keras.applications, public))
        # keras.applications' parameters in its order; ours beyond them only by keyword
        positional = [p.name for p in ours.parameters.values() if p.kind is not p.KEYWORD_ONLY]
        assert positional == list(theirs.parameters), public
        extra = [p for n, p in ours.parameters.items() if n not in theirs.parameters]
        assert all(p.kind is p.KEYWORD_ONLY for p in extra), (public, extra)
        for parameter in theirs.parameters.values():
            assert ours.parameters[parameter.name].default == parameter.default, (public, parameter.name)


@pytest.mark.parametrize("name", ["shufflenet_v2_x0_5", "mnasnet_b1_050"])
def test_features_only_in_tf_keras_finds_the_same_maps(name):
    """Feature strides are read from the graph, which tf_keras records differently from Keras 3."""
    kwargs = dict(features_only=True, weights=None, input_shape=(64, 64, 3))
    assert create_model(name, flavour="tf_keras", **kwargs).feature_info == create_model(name, **kwargs).feature_info
