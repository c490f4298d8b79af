"""ImageNet helpers: the bundled class index, ``decode_predictions`` and ``preprocess_input``."""

from __future__ import annotations

import importlib.resources
import json
import re

import numpy as np
import pytest
import tensorflow as tf

from keras_lightnets import imagenet
from keras_lightnets.models import mobilenet_v1, mobilenet_v2, mobilenet_v3

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


# --------------------------------------------------------------------------- class index


def test_class_index_file_is_keras_format():
    path = importlib.resources.files("keras_lightnets") / "data" / "imagenet_class_index.json"
    raw = json.loads(path.read_text(encoding="utf8"))
    assert sorted(raw, key=int) == [str(i) for i in range(1000)]
    for value in raw.values():
        assert isinstance(value, list) and len(value) == 2


def test_class_index_has_1000_unique_wordnet_ids_in_standard_order():
    index = imagenet.class_index()
    assert sorted(index) == list(range(1000))
    wnids = [index[i][0] for i in range(1000)]
    assert len(set(wnids)) == 1000
    assert all(re.fullmatch(r"n\d{8}", w) for w in wnids)
    assert wnids == sorted(wnids)  # ImageNet-1k class ids follow the sorted WordNet ids
    names = [index[i][1] for i in range(1000)]
    assert all(name and " " not in name for name in names)


@pytest.mark.parametrize(
    ("class_id", "wnid", "name"),
    [
        (0, "n01440764", "tench"),
        (1, "n01443537", "goldfish"),
        (2, "n01484850", "great_white_shark"),
        (409, "n02708093", "analog_clock"),
        (999, "n15075141", "toilet_tissue"),
    ],
)
def test_known_classes(class_id, wnid, name):
    assert imagenet.class_index()[class_id] == (wnid, name)


def test_attribution_names_the_source():
    text = (importlib.resources.files("keras_lightnets") / "data" / "ATTRIBUTION.md").read_text(encoding="utf8")
    assert "imagenet_class_index.json" in text
    assert "timm" in text and "Apache" in text


# --------------------------------------------------------------------------- decode_predictions


def test_decode_one_hot_batch():
    preds = np.zeros((3, 1000), np.float32)
    preds[0, 2] = 1.0
    preds[1, 999] = 1.0
    preds[2, 0] = 1.0
    decoded = imagenet.decode_predictions(preds, top=1)
    assert decoded == [
        [("n01484850", "great_white_shark", 1.0)],
        [("n15075141", "toilet_tissue", 1.0)],
        [("n01440764", "tench", 1.0)],
    ]


def test_decode_is_best_first_with_scores():
    rng = np.random.default_rng(0)
    preds = rng.dirichlet(np.ones(1000), size=2).astype(np.float32)
    decoded = imagenet.decode_predictions(preds, top=5)
    index = imagenet.class_index()
    for row, result in zip(preds, decoded, strict=True):
        assert len(result) == 5
        best = np.argsort(-row)[:5]
        assert [r[:2] for r in result] == [index[int(i)] for i in best]
        scores = [r[2] for r in result]
        assert scores == sorted(scores, reverse=True)
        assert all(isinstance(s, float) for s in scores)
        np.testing.assert_allclose(scores, row[best])


def test_decode_default_top_and_tensors():
    preds = tf.one_hot([7, 8], 1000)
    decoded = imagenet.decode_predictions(preds)
    assert [len(r) for r in decoded] == [5, 5]
    assert decoded[0][0] == ("n01514668", "cock", 1.0)
    assert decoded[1][0] == ("n01514859", "hen", 1.0)


def test_decode_all_classes():
    preds = np.linspace(0.0, 1.0, 1000, dtype=np.float32)[None]
    decoded = imagenet.decode_predictions(preds, top=1000)
    assert [imagenet.class_index()[999][0], imagenet.class_index()[0][0]] == [decoded[0][0][0], decoded[0][-1][0]]


@pytest.mark.parametrize("shape", [(1000,), (2, 999), (2, 1001), (2, 1000, 1), (0,)])
def test_decode_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match=r"`preds`") as info:
        imagenet.decode_predictions(np.zeros(shape, np.float32))
    assert "(samples, 1000)" in str(info.value) and str(shape) in str(info.value)


@pytest.mark.parametrize("top", [0, -1, 1001, 2.5, "5", None])
def test_decode_rejects_bad_top(top):
    with pytest.raises(ValueError, match="`top`"):
        imagenet.decode_predictions(np.zeros((1, 1000), np.float32), top=top)


# --------------------------------------------------------------------------- preprocess_input


def _pixels(dtype=np.float32) -> np.ndarray:
    """``(2, 2, 2, 3)`` pixels with 0, 127.5 (or 128 for ints) and 255 in every channel."""
    values = np.array([0.0, 127.5, 255.0, 51.0]) if np.issubdtype(dtype, np.floating) else np.array([0, 128, 255, 51])
    x = np.broadcast_to(values.reshape(1, 2, 2, 1), (2, 2, 2, 3))
    return np.ascontiguousarray(x).astype(dtype)


def _tf_expected(x) -> np.ndarray:
    return np.asarray(x, np.float64) / 127.5 - 1.0


def _torch_expected(x) -> np.ndarray:
    return (np.asarray(x, np.float64) / 255.0 - MEAN) / STD


def test_tf_mode_numpy():
    x = _pixels()
    expected = _tf_expected(x)
    out = imagenet.preprocess_input(x, mode="tf")
    np.testing.assert_allclose(out, expected, atol=1e-6)
    np.testing.assert_allclose(out[0, 0, 0], [-1.0] * 3)
    np.testing.assert_allclose(out[0, 1, 0], [1.0] * 3)
    assert out is x  # float input is scaled in place, like keras.applications


def test_torch_mode_numpy():
    x = _pixels()
    expected = _torch_expected(x)
    out = imagenet.preprocess_input(x, mode="torch")
    np.testing.assert_allclose(out, expected, atol=1e-5)
    np.testing.assert_allclose(out[0, 0, 0], -MEAN / STD, atol=1e-5)
    np.testing.assert_allclose(out[0, 1, 0], (1.0 - MEAN) / STD, atol=1e-5)


def test_none_mode_returns_the_input():
    x = _pixels()
    assert imagenet.preprocess_input(x, mode="none") is x
    np.testing.assert_array_equal(x, _pixels())
    t = tf.constant(x)
    assert imagenet.preprocess_input(t, mode="none") is t


@pytest.mark.parametrize("mode", ["tf", "torch"])
def test_uint8_numpy_is_converted_not_wrapped(mode):
    x = _pixels(np.uint8)
    original = x.copy()
    out = imagenet.preprocess_input(x, mode=mode)
    assert out.dtype == np.float32
    expected = _tf_expected(original) if mode == "tf" else _torch_expected(original)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    np.testing.assert_array_equal(x, original)  # the integer input is left alone


@pytest.mark.parametrize("mode", ["tf", "torch"])
@pytest.mark.parametrize("dtype", [tf.float32, tf.uint8, tf.float64])
def test_tensor_input(mode, dtype):
    pixels = _pixels(np.float32 if dtype.is_floating else np.uint8)
    x = tf.constant(pixels, dtype=dtype)
    out = imagenet.preprocess_input(x, mode=mode)
    assert isinstance(out, tf.Tensor)
    assert out.dtype.is_floating
    expected = _tf_expected(pixels) if mode == "tf" else _torch_expected(pixels)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)


def test_preprocess_inside_tf_function():
    fn = tf.function(lambda t: imagenet.preprocess_input(t, mode="torch"))
    pixels = _pixels()
    np.testing.assert_allclose(fn(tf.constant(pixels)).numpy(), _torch_expected(pixels), atol=1e-5)


@pytest.mark.parametrize("mode", ["caffe", "TF", "", None])
def test_unknown_mode(mode):
    with pytest.raises(ValueError, match="`mode`"):
        imagenet.preprocess_input(_pixels(), mode=mode)


@pytest.mark.parametrize("function", [imagenet.preprocess_tf, imagenet.preprocess_torch, imagenet.preprocess_none])
def test_channels_first_is_the_transpose_and_other_formats_are_refused(function):
    pixels = _pixels()
    last = function(pixels.copy(), data_format="channels_last")
    first = function(np.moveaxis(pixels, -1, 1).copy(), data_format="channels_first")
    np.testing.assert_allclose(np.moveaxis(first, 1, -1), last, atol=1e-6)
    with pytest.raises(ValueError, match="data_format"):
        function(pixels, data_format="NCHW")


def test_family_preprocessing():
    pixels = _pixels()
    for module in (mobilenet_v1, mobilenet_v2):
        np.testing.assert_allclose(module.preprocess_input(pixels.copy()), _tf_expected(pixels), atol=1e-6)
    assert mobilenet_v3.preprocess_input(pixels) is pixels  # the model rescales its input itself
    np.testing.assert_allclose(imagenet.preprocess_torch(pixels.copy()), _torch_expected(pixels), atol=1e-5)
    for module in (mobilenet_v1, mobilenet_v2, mobilenet_v3):
        assert module.decode_predictions is imagenet.decode_predictions


def test_one_preprocessing_vocabulary():
    """The registry's names map onto ``preprocess_input`` modes, and the in-model layer does the same."""
    from keras_lightnets.data.pipeline import preprocess_batch
    from keras_lightnets.models.registry import registered

    assert set(imagenet.PREPROCESS_MODES) == set(imagenet.PREPROCESSING) == {"tf", "torch", "in_model", "bgr255"}
    assert set(imagenet.PREPROCESS_MODES.values()) == set(imagenet.MODES)
    assert {config.preprocessing for config in registered()} == set(imagenet.PREPROCESSING)
    pixels = np.linspace(0, 255, 2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
    for name, (mode, text) in imagenet.PREPROCESSING.items():
        assert text and imagenet.PREPROCESS_MODES[name] == mode
        expected = imagenet.preprocess_input(pixels.copy(), mode=mode)
        np.testing.assert_allclose(preprocess_batch(pixels.copy(), name), expected, rtol=1e-6)
        if mode == "bgr255":  # a permutation, no Rescale: in-model it is ChannelSplit + Concatenate
            np.testing.assert_array_equal(expected, pixels[..., ::-1])
            continue
        scale, offset = imagenet.rescale_arguments(mode)
        np.testing.assert_allclose(pixels * np.asarray(scale, np.float32) + np.asarray(offset, np.float32), expected,
                                   rtol=1e-5, atol=1e-5)
