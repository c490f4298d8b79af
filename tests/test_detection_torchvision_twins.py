"""The exact Keras twins of torchvision's SSDLite320-MobileNetV3-Large and RetinaNet-MobileNetV3-Large-FPN.

* With the reference checkpoint ported, both flavours reproduce the reference's raw head outputs
  (``shared/reference/torchvision_detection``) within 1e-4 of their largest value, and the anchors.
* Parameter counts equal torchvision's; every checkpoint tensor has exactly one place.
* In-model preprocessing of raw pixels gives what the normalised input gives.
* A ``.pth`` of the same tensors ports identically; a checkpoint with a tensor missing, extra or
  of the wrong shape is refused, leaving the model untouched; bad arguments are named.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from test_torchvision_port import write_torch_legacy, write_torch_zip

from keras_lightnets.detection import torchvision_twins as twins
from keras_lightnets.detection.builders import DECODING_KEYS
from keras_lightnets.errors import InputError
from keras_lightnets.weights import torchvision as tv

pytestmark = pytest.mark.xdist_group("torchvision_twins")

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "torchvision_detection"
needs_reference = pytest.mark.skipif(not REFERENCE.is_dir(), reason=f"no reference vectors in {REFERENCE}")
SSDLITE, RETINANET = "ssdlite320_mobilenet_v3_large", "retinanet_mobilenet_v3_large_fpn"
PRESETS = {
    SSDLITE: (twins.ssdlite320_mobilenet_v3_large, twins.torch_mapping_ssdlite),
    RETINANET: (twins.retinanet_mobilenet_v3_large_fpn, twins.torch_mapping_retinanet),
}
PARAMS = {SSDLITE: 3_440_060, RETINANET: 12_891_015}  # torchvision's parameter counts (the README's)
ANCHORS = {SSDLITE: 3234, RETINANET: 19206}
# The reference's model.transform normalisation of RGB in [0, 1].
NORMALISATION = {SSDLITE: ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
                 RETINANET: ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}
FLAVOURS = ("keras", "tf_keras")
TOLERANCE = 1e-4  # of the largest |reference value|, per output


def _weights(preset: str) -> Path:
    return REFERENCE / preset / "weights.safetensors"


def _reference_input(preset: str) -> np.ndarray:
    return np.load(REFERENCE / preset / "input.npy").transpose(0, 2, 3, 1)  # NCHW -> NHWC


def _relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def _outputs(model, image: np.ndarray) -> list[np.ndarray]:
    return [np.asarray(o) for o in model(image, training=False)]


def _trainable(model) -> int:
    return sum(math.prod(w.shape) for w in model.trainable_weights)


@pytest.fixture(scope="module")
def ported():
    """``ported(preset, flavour)``: the twin with the reference checkpoint ported (built once)."""
    cache: dict[tuple[str, str], object] = {}

    def get(preset: str, flavour: str = "keras"):
        if (preset, flavour) not in cache:
            cache[preset, flavour] = PRESETS[preset][0](weights=_weights(preset), flavour=flavour)
        return cache[preset, flavour]

    return get


# ----------------------------------------------------------------------------- the reference vectors


@needs_reference
@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("preset", [SSDLITE, RETINANET])
def test_reference_outputs_and_anchors(ported, preset, flavour):
    model = ported(preset, flavour)
    n = ANCHORS[preset]
    assert model.output_names == ["classes", "boxes"]
    assert [tuple(o.shape) for o in model.outputs] == [(None, n, 91), (None, n, 4)]
    assert tuple(model.inputs[0].shape) == (None, 320, 320, 3)
    classes, boxes = _outputs(model, _reference_input(preset))
    assert _relative_error(classes, np.load(REFERENCE / preset / "cls_logits.npy")) <= TOLERANCE
    assert _relative_error(boxes, np.load(REFERENCE / preset / "bbox_regression.npy")) <= TOLERANCE
    anchors = np.load(REFERENCE / preset / "anchors.npy")
    assert model.anchors.dtype == np.float32 and model.anchors.shape == (n, 4)
    assert _relative_error(model.anchors, anchors) <= TOLERANCE
    assert _trainable(model) == PARAMS[preset]


@needs_reference
@pytest.mark.parametrize("preset", [SSDLITE, RETINANET])
def test_a_batch_gives_each_image_its_own_rows(ported, preset):
    model = ported(preset)
    image = _reference_input(preset)
    batch = np.concatenate([image, image[:, ::-1]], axis=0)
    single = [_outputs(model, image), _outputs(model, batch[1:])]
    for k, got in enumerate(_outputs(model, batch)):
        for b in range(2):
            assert _relative_error(got[b], single[b][k][0]) <= 1e-5
    assert _relative_error(single[1][0], single[0][0]) > 0.01  # the flipped image is another input


@needs_reference
@pytest.mark.parametrize("preset", [SSDLITE, RETINANET])
def test_detector_info_and_names_agree_across_flavours(ported, preset):
    k3, tfk = ported(preset, "keras"), ported(preset, "tf_keras")
    info = k3.detector_info
    assert info == tfk.detector_info
    assert set(DECODING_KEYS) <= set(info)
    kind, score, weights, per_location = (
        ("ssdlite", "softmax", (10.0, 10.0, 5.0, 5.0), 6) if preset == SSDLITE else
        ("retinanet", "sigmoid", (1.0, 1.0, 1.0, 1.0), 9))
    assert info["type"] == kind and info["score"] == score and info["box_weights"] == weights
    assert info["background_class"] == (0 if score == "softmax" else None)
    assert info["box_coding"] == "torchvision" and info["anchor_format"] == "xyxy_pixels"
    assert info["backbone"].startswith("torchvision mobilenet_v3_large")
    assert info["num_classes"] == 91 and info["anchors_per_location"] == per_location
    sizes = [level["size"] for level in info["levels"]]
    channels = [level["channels"] for level in info["levels"]]
    if preset == SSDLITE:
        assert sizes == [(s, s) for s in (20, 10, 5, 3, 2, 1)] and channels == [672, 480, 512, 256, 256, 128]
    else:
        assert sizes == [(s, s) for s in (40, 20, 10, 5, 3)] and channels == [256] * 5
    assert sum(h * w for h, w in sizes) * per_location == ANCHORS[preset]
    names = [layer.name for layer in k3.layers]
    assert names == [layer.name for layer in tfk.layers] and len(set(names)) == len(names)


@needs_reference
@pytest.mark.parametrize("preset", [SSDLITE, RETINANET])
def test_every_checkpoint_tensor_has_exactly_one_place(ported, preset):
    model = ported(preset)
    pairs = PRESETS[preset][1](model)
    keras_names = [k for k, _ in pairs]
    torch_prefixes = [t for _, t in pairs]
    assert len(set(keras_names)) == len(keras_names) and len(set(torch_prefixes)) == len(torch_prefixes)
    assert set(keras_names) == {layer.name for layer in model.layers if layer.weights}
    expected, excused = tv.expected_shapes(model, pairs)
    assert excused == []
    state_dict = load_file(_weights(preset))
    assert {name: tuple(a.shape) for name, a in state_dict.items()} == expected


# ----------------------------------------------------------------------------- preprocessing, .pth


@needs_reference
@pytest.mark.parametrize("preset", [SSDLITE, RETINANET])
def test_in_model_preprocessing_takes_raw_pixels(ported, preset):
    normalised_model = ported(preset)
    model = PRESETS[preset][0](weights=_weights(preset), include_preprocessing=True)
    assert [layer.name for layer in model.layers] == [
        "input", "rescaling", *(layer.name for layer in normalised_model.layers[1:])]
    assert model.detector_info["include_preprocessing"] is True
    pixels = np.random.default_rng(7).integers(0, 256, size=(1, 320, 320, 3), dtype=np.uint8)
    mean, std = (np.asarray(v, dtype=np.float32) for v in NORMALISATION[preset])
    normalised = (pixels.astype(np.float32) / np.float32(255.0) - mean) / std  # the reference's normalise()
    want = _outputs(normalised_model, normalised)
    got = _outputs(model, pixels.astype(np.float32))
    for g, w in zip(got, want, strict=True):
        assert _relative_error(g, w) <= TOLERANCE
    # Without the preprocessing layer the same pixels are another input.
    assert _relative_error(_outputs(normalised_model, pixels.astype(np.float32))[1], want[1]) > 0.01


def _same_weights(model, other) -> None:
    for layer in model.layers:
        for mine, theirs in zip(layer.get_weights(), other.get_layer(layer.name).get_weights(), strict=True):
            np.testing.assert_array_equal(mine, theirs)


@needs_reference
def test_pth_checkpoints_port_identically(ported, tmp_path):
    state_dict = {name: a.astype(np.float32) for name, a in load_file(_weights(SSDLITE)).items()}
    zipped, legacy = tmp_path / "ssdlite.pth", tmp_path / "ssdlite_legacy.pt"
    write_torch_zip(zipped, state_dict)
    write_torch_legacy(legacy, state_dict)
    model = twins.ssdlite320_mobilenet_v3_large(weights=str(zipped))
    _same_weights(model, ported(SSDLITE))
    for layer in model.layers:
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    tv.port_checkpoint(model, legacy, twins.torch_mapping_ssdlite)
    _same_weights(model, ported(SSDLITE))


# ----------------------------------------------------------------------------- refusals


def _edited_checkpoint(tmp_path: Path, preset: str, edit) -> Path:
    state_dict = load_file(_weights(preset))
    edit(state_dict)
    path = tmp_path / f"edited_{preset}.safetensors"
    save_file(state_dict, str(path))
    return path


def _drop(name):
    return lambda sd: sd.pop(name)


def _reshape(name, shape):
    return lambda sd: sd.__setitem__(name, np.zeros(shape, np.float16))


def _add(name):
    return lambda sd: sd.__setitem__(name, np.zeros((3,), np.float16))


@needs_reference
@pytest.mark.parametrize(("preset", "edit", "message"), [
    (SSDLITE, _drop("head.regression_head.module_list.5.1.bias"),
     "has no tensor 'head.regression_head.module_list.5.1.bias'"),
    (SSDLITE, _drop("backbone.features.1.0.2.fc1.weight"), "has no tensor 'backbone.features.1.0.2.fc1.weight'"),
    (SSDLITE, _reshape("backbone.features.0.0.0.weight", (16, 3, 5, 5)),
     r"'backbone.features.0.0.0.weight' has shape \(16, 3, 5, 5\).*needs \(16, 3, 3, 3\)"),
    (SSDLITE, _add("head.classification_head.module_list.6.1.bias"), "has no place in model"),
    (RETINANET, _drop("backbone.fpn.extra_blocks.p7.bias"), "has no tensor 'backbone.fpn.extra_blocks.p7.bias'"),
    (RETINANET, _reshape("head.classification_head.cls_logits.weight", (18, 256, 3, 3)),
     "'head.classification_head.cls_logits.weight' has shape"),
])
def test_a_wrong_checkpoint_is_refused_and_changes_nothing(ported, tmp_path, preset, edit, message):
    model = ported(preset)
    before = [w.copy() for w in model.get_weights()]
    path = _edited_checkpoint(tmp_path, preset, edit)
    with pytest.raises(InputError, match=message):
        tv.port_checkpoint(model, path, PRESETS[preset][1])
    for old, new in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)


@needs_reference
def test_the_other_presets_checkpoint_and_model_are_refused(ported):
    ssdlite, retinanet = ported(SSDLITE), ported(RETINANET)
    with pytest.raises(InputError, match=r"has no tensor 'backbone\.body\.0\.0\.weight'"):
        tv.port_checkpoint(retinanet, _weights(SSDLITE), twins.torch_mapping_retinanet)
    with pytest.raises(InputError, match=f"is not a {SSDLITE} twin"):
        twins.torch_mapping_ssdlite(retinanet)
    with pytest.raises(InputError, match=f"is not a {RETINANET} twin"):
        twins.torch_mapping_retinanet(ssdlite)


@needs_reference
def test_a_checkpoint_for_other_classes_is_refused_by_the_builder():
    with pytest.raises(InputError, match=r"'head.classification_head.module_list.0.1.weight' has shape \(546, "):
        twins.ssdlite320_mobilenet_v3_large(num_classes=2, weights=_weights(SSDLITE))


@pytest.mark.parametrize("builder", [twins.ssdlite320_mobilenet_v3_large, twins.retinanet_mobilenet_v3_large_fpn])
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"num_classes": 0}, "`num_classes` must be a positive int"),
    ({"num_classes": True}, "`num_classes` must be a positive int"),
    ({"num_classes": 2.0}, "`num_classes` must be a positive int"),
    ({"flavour": "torch"}, "`flavour` must be one of 'keras', 'tf_keras'"),
    ({"include_preprocessing": "yes"}, "`include_preprocessing` must be True or False"),
    ({"include_preprocessing": 1}, "`include_preprocessing` must be True or False"),
    ({"weights": 3}, "`weights` must be None or the path of a torchvision checkpoint"),
    ({"weights": "imagenet"}, "`weights` must be None or the path of a torchvision checkpoint"),
    ({"weights": "coco.weights.h5"}, "`weights` must be None or the path of a torchvision checkpoint"),
    ({"weights": "/nowhere/ssdlite.pth"}, "`weights` file not found: '/nowhere/ssdlite.pth'"),
    ({"name": ""}, "`name` must be a non-empty string"),
])
def test_bad_arguments_are_named(builder, kwargs, message):
    with pytest.raises(InputError, match=message):
        builder(**kwargs)


# ----------------------------------------------------------------------------- other class counts


@pytest.mark.parametrize(("preset", "params"), [
    # 91 -> 5 classes: SSDLite drops (in + 1) * 6 * 86 per level, in = 672, 480, 512, 256, 256, 128;
    # RetinaNet drops (256 * 9 + 1) * 9 * 86 in its shared class conv.
    (SSDLITE, 3_440_060 - 2310 * 6 * 86),
    (RETINANET, 12_891_015 - 2305 * 9 * 86),
])
def test_other_class_counts_and_initialisation(preset, params):
    model = PRESETS[preset][0](num_classes=5, flavour="tf_keras")
    n = ANCHORS[preset]
    assert [tuple(o.shape) for o in model.outputs] == [(None, n, 5), (None, n, 4)]
    assert _trainable(model) == params and model.detector_info["num_classes"] == 5
    if preset == RETINANET:  # the class logits start at the prior probability 0.01
        bias = model.get_layer("head_cls_logits").get_weights()[1]
        np.testing.assert_allclose(bias, np.full(45, -math.log(99.0), np.float32), rtol=1e-6)
        assert not model.get_layer("head_box_reg").get_weights()[1].any()
