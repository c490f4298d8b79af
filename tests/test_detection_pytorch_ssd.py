"""Keras twins of qfgaohao/pytorch-ssd's MobileNetV2-SSD-Lite and MobileNetV1-SSD (``detection.pytorch_ssd``).

* ``mb2_ssd_lite``: the reference vectors (``shared/reference/pytorch_ssd/mb2_ssd_lite``: a
  state_dict, an input, pytorch-ssd's raw confidences and locations, the priors) are reproduced
  in Keras 3 and tf_keras, also from raw pixels (``include_preprocessing=True``) and from a ``.pth``.
* ``mb1_ssd`` has no vectors: its layer list is checked against a state_dict written out here from
  the reference source (vision/nn/mobilenet.py, vision/ssd/mobilenetv1_ssd.py), and a random
  checkpoint of those names and shapes ports with every tensor where it belongs.

Parameter counts (torch's ``sum(p.numel() for p in net.parameters())``: the Keras trainable
weights; the BatchNorm running statistics are Keras' non-trainable weights).

``mb2_ssd_lite(21)``: 3,388,228 (the reference README), 3,438,340 with running statistics.

``mb1_ssd(21)``, derived by hand from the reference source:

* base net, ``conv_bn(3, 32, 2)``: 3*32*9 = 864 + BN 2*32 = 928; each ``conv_dw(i, o)``: depthwise
  9i + BN 2i + pointwise i*o + BN 2o = 11i + i*o + 2o:
  (32, 64) 2,528; (64, 128) 9,152; (128, 128) 18,048; (128, 256) 34,688; (256, 256) 68,864;
  (256, 512) 134,912; 5 x (512, 512) 268,800 = 1,344,000; (512, 1024) 531,968; (1024, 1024)
  1,061,888. Base net: 3,206,976.
* extras (1x1 conv + bias, 3x3 conv + bias): 1024->256->512: 262,400 + 1,180,160 = 1,442,560;
  512->128->256: 65,664 + 295,168 = 360,832; twice 256->128->256: 32,896 + 295,168 = 328,064.
  Extras: 2,459,520.
* heads (3x3 convs with bias) on 512, 1024, 512, 256, 256, 256 channels (sum 2,816): boxes
  2,816*24*9 + 6*24 = 608,400; classes 2,816*126*9 + 6*126 = 3,194,100.
* total 3,206,976 + 2,459,520 + 608,400 + 3,194,100 = **9,468,996** (the published VOC model:
  about 9.47 M); BatchNorm running statistics 2 x 10,944 = 21,888 more, 9,490,884 in Keras.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from test_torchvision_port import write_torch_zip

from keras_lightnets.detection import pytorch_ssd
from keras_lightnets.detection.anchor_boxes import preset_anchors
from keras_lightnets.errors import InputError
from keras_lightnets.weights import torchvision as tv

pytestmark = pytest.mark.xdist_group("pytorch_ssd_twins")

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "pytorch_ssd" / "mb2_ssd_lite"
needs_reference = pytest.mark.skipif(not REFERENCE.is_dir(), reason=f"no reference vectors in {REFERENCE}")
FLAVOURS = ("keras", "tf_keras")
TOLERANCE = 1e-4  # of the largest |reference output|
MB2_PARAMS, MB2_WEIGHTS = 3_388_228, 3_438_340
MB1_PARAMS, MB1_WEIGHTS = 9_468_996, 9_490_884
LEVEL_SIZES = [(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]  # mobilenetv1_ssd_config's feature maps
FORBIDDEN = {"Lambda", "TFOpLambda", "SlicingOpLambda"}

# vision/nn/mobilenet.py MobileNetV1.model: conv_bn(3, 32, 2), then conv_dw(inp, oup, stride).
REF_MB1_DW = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2),
              (512, 512, 1), (512, 512, 1), (512, 512, 1), (512, 512, 1), (512, 512, 1), (512, 1024, 2),
              (1024, 1024, 1)]
# vision/ssd/mobilenetv1_ssd.py: extras (in, 1x1 out, 3x3/s2 out) and the heads' input channels.
REF_MB1_EXTRAS = [(1024, 256, 512), (512, 128, 256), (256, 128, 256), (256, 128, 256)]
REF_MB1_HEADS = [512, 1024, 512, 256, 256, 256]


def _relative(mine: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(mine - reference).max() / np.abs(reference).max())


def _trainable(model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _predict(model, image: np.ndarray) -> list[np.ndarray]:
    return [np.asarray(o) for o in model(image, training=False)]


def mb1_reference_shapes(num_classes: int = 21) -> dict[str, tuple[int, ...]]:
    """pytorch-ssd ``create_mobilenetv1_ssd(num_classes).state_dict()`` shapes (no counters), from the source."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(prefix, cin, cout, kernel, bias):
        shapes[f"{prefix}.weight"] = (cout, cin, kernel, kernel)
        if bias:
            shapes[f"{prefix}.bias"] = (cout,)

    def bn(prefix, channels):
        for suffix in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{suffix}"] = (channels,)

    conv("base_net.0.0", 3, 32, 3, False)
    bn("base_net.0.1", 32)
    for k, (cin, cout, _) in enumerate(REF_MB1_DW, start=1):
        shapes[f"base_net.{k}.0.weight"] = (cin, 1, 3, 3)  # groups=inp
        bn(f"base_net.{k}.1", cin)
        conv(f"base_net.{k}.3", cin, cout, 1, False)
        bn(f"base_net.{k}.4", cout)
    for i, (cin, middle, cout) in enumerate(REF_MB1_EXTRAS):
        conv(f"extras.{i}.0", cin, middle, 1, True)
        conv(f"extras.{i}.2", middle, cout, 3, True)
    for i, cin in enumerate(REF_MB1_HEADS):
        conv(f"regression_headers.{i}", cin, 6 * 4, 3, True)
        conv(f"classification_headers.{i}", cin, 6 * num_classes, 3, True)
    return shapes


def _random_state_dict(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: (rng.uniform(0.5, 1.5, shape) if name.endswith("running_var") else rng.normal(0, 0.1, shape))
            .astype(np.float32) for name, shape in shapes.items()}


# --------------------------------------------------------------------------------------
# Models, built once per module and flavour
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mb2():
    """The reference checkpoint ported into ``mb2_ssd_lite`` of a flavour."""
    cache = {}

    def get(flavour: str):
        if flavour not in cache:
            cache[flavour] = pytorch_ssd.mb2_ssd_lite(weights=REFERENCE / "weights.safetensors", flavour=flavour)
        return cache[flavour]

    return get


@pytest.fixture(scope="module")
def mb1():
    """``mb1_ssd`` of a flavour (random initialisation)."""
    cache = {}

    def get(flavour: str):
        if flavour not in cache:
            cache[flavour] = pytorch_ssd.mb1_ssd(flavour=flavour)
        return cache[flavour]

    return get


@pytest.fixture(scope="module")
def reference():
    if not REFERENCE.is_dir():
        pytest.skip(f"no reference vectors in {REFERENCE}")
    return {
        "image": np.load(REFERENCE / "input.npy").transpose(0, 2, 3, 1),  # NCHW -> NHWC
        "confidences": np.load(REFERENCE / "confidences.npy"),
        "locations": np.load(REFERENCE / "locations.npy"),
        "priors": np.load(REFERENCE / "priors.npy"),
        "state_dict": {k: v.astype(np.float32) for k, v in load_file(REFERENCE / "weights.safetensors").items()},
    }


# --------------------------------------------------------------------------------------
# mb2_ssd_lite against the reference vectors
# --------------------------------------------------------------------------------------


@needs_reference
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_mb2_ssd_lite_reproduces_the_reference(mb2, reference, flavour):
    model = mb2(flavour)
    classes, boxes = _predict(model, reference["image"])
    assert classes.shape == (1, 3000, 21) and boxes.shape == (1, 3000, 4)
    assert _relative(classes, reference["confidences"]) <= TOLERANCE
    assert _relative(boxes, reference["locations"]) <= TOLERANCE
    np.testing.assert_array_equal(model.anchors, reference["priors"])
    assert model.anchors.dtype == np.float32
    assert _trainable(model) == MB2_PARAMS and model.count_params() == MB2_WEIGHTS
    assert list(model.output_names) == ["classes", "boxes"]
    assert [layer.name for layer in model.layers[-2:]] == ["classes", "boxes"]


@needs_reference
def test_mb2_ssd_lite_layers_and_info(mb2, reference):
    model = mb2("keras")
    info = model.detector_info
    assert {k: info[k] for k in ("type", "num_classes", "input_shape", "anchors_per_location", "score",
                                 "background_class", "box_coding", "variances", "anchor_format")} == {
        "type": "ssdlite", "num_classes": 21, "input_shape": (300, 300, 3), "anchors_per_location": 6,
        "score": "softmax", "background_class": 0, "box_coding": "ssd", "variances": (0.1, 0.2),
        "anchor_format": "cxcywh_relative"}
    assert info["backbone"].startswith("pytorch-ssd mobilenet_v2")
    assert [(lv["stride"], lv["size"], lv["channels"]) for lv in info["levels"]] == list(zip(
        (16, 32, 64, 100, 150, 300), LEVEL_SIZES, (576, 1280, 512, 256, 256, 64), strict=True))
    kinds = {type(layer).__name__ for layer in model.layers}
    assert not kinds & FORBIDDEN
    bns = [layer for layer in model.layers if type(layer).__name__ == "BatchNormalization"]
    assert bns and all(layer.epsilon == 1e-5 and layer.momentum == 0.9 for layer in bns)
    # Every conv followed by BatchNorm has no bias; the heads' depthwise convs (SeperableConv2d) have one.
    biased_dw = sorted(layer.name for layer in model.layers
                       if type(layer).__name__ == "DepthwiseConv2D" and layer.use_bias)
    assert biased_dw == sorted(f"{head}_{k}_dw" for head in ("classification_headers", "regression_headers")
                               for k in range(5))
    # The mapping covers every weighted layer once, with the reference's tensor names and shapes.
    pairs = pytorch_ssd.torch_mapping_mb2_ssd_lite(model)
    assert [name for name, _ in pairs] == [layer.name for layer in model.layers if layer.weights]
    assert len({prefix for _, prefix in pairs}) == len(pairs)
    assert dict(pairs)["base_net_14_expand"] == "base_net.14.conv.0"
    assert dict(pairs)["base_net_1_dw"] == "base_net.1.conv.0"  # expand ratio 1: no expansion conv
    expected, excused = tv.expected_shapes(model, pairs)
    assert not excused and expected == {k: v.shape for k, v in reference["state_dict"].items()}


@needs_reference
def test_mb2_ssd_lite_from_raw_pixels(mb2, reference):
    """``include_preprocessing=True`` on the pixels behind input.npy = ``False`` on input.npy, to the bit."""
    pixels = reference["image"] * np.float32(128.0) + np.float32(127.0)
    assert np.array_equal(pixels, np.round(pixels)) and pixels.min() >= 0 and pixels.max() <= 255
    raw = pytorch_ssd.mb2_ssd_lite(weights=REFERENCE / "weights.safetensors", include_preprocessing=True)
    rescale = raw.get_layer("rescaling")
    assert type(rescale).__name__ == "Rescale" and (rescale.scale, rescale.offset) == (1 / 128, -127 / 128)
    want = _predict(mb2("keras"), ((pixels - 127.0) / 128.0).astype(np.float32))
    got = _predict(raw, pixels.astype(np.uint8).astype(np.float32))
    for mine, theirs in zip(got, want, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert _relative(got[0], reference["confidences"]) <= TOLERANCE


@needs_reference
def test_a_pth_of_the_same_tensors_ports_identically(mb2, reference, tmp_path):
    model = mb2("keras")
    before = {layer.name: layer.get_weights() for layer in model.layers if layer.weights}
    path = tmp_path / "mb2-ssd-lite.pth"
    write_torch_zip(path, reference["state_dict"])
    for layer in model.layers:  # scramble, so the port must write every weight again
        if layer.weights:
            layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    tv.port_checkpoint(model, path, pytorch_ssd.torch_mapping_mb2_ssd_lite)
    for name, arrays in before.items():
        for mine, theirs in zip(model.get_layer(name).get_weights(), arrays, strict=True):
            np.testing.assert_array_equal(mine, theirs)
    assert _relative(_predict(model, reference["image"])[0], reference["confidences"]) <= TOLERANCE


def test_mb2_ssd_lite_at_half_width():
    """pytorch-ssd's width 0.5: ``int(c * 0.5)`` channels, the 19x19 level round(576 * 0.5) = 288 wide."""
    model = pytorch_ssd.mb2_ssd_lite(num_classes=3, width_mult=0.5)
    assert [lv["channels"] for lv in model.detector_info["levels"]] == [288, 1280, 512, 256, 256, 64]
    expected, _ = tv.expected_shapes(model, pytorch_ssd.torch_mapping_mb2_ssd_lite(model))
    assert expected["base_net.0.0.weight"] == (16, 3, 3, 3)
    assert expected["base_net.1.conv.0.weight"] == (16, 1, 3, 3)
    assert expected["base_net.17.conv.6.weight"] == (160, 480, 1, 1)  # int(160 * 0.5) * 6 -> int(320 * 0.5)
    assert expected["base_net.18.0.weight"] == (1280, 160, 1, 1)  # last_channel stays 1280 for w <= 1
    assert expected["classification_headers.0.3.weight"] == (18, 288, 1, 1)
    assert [tuple(o.shape) for o in model.outputs] == [(None, 3000, 3), (None, 3000, 4)]


# --------------------------------------------------------------------------------------
# mb1_ssd: structure from the reference source, and a checkpoint round trip
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_mb1_ssd_builds_the_reference_layer_list(mb1, flavour):
    model = mb1(flavour)
    assert [tuple(o.shape) for o in model.outputs] == [(None, 3000, 21), (None, 3000, 4)]
    assert [layer.name for layer in model.layers[-2:]] == ["classes", "boxes"]
    assert _trainable(model) == MB1_PARAMS and model.count_params() == MB1_WEIGHTS
    shapes = mb1_reference_shapes()
    assert sum(int(np.prod(s)) for n, s in shapes.items() if not n.endswith(("running_mean", "running_var"))) == (
        MB1_PARAMS)
    pairs = pytorch_ssd.torch_mapping_mb1_ssd(model)
    assert [name for name, _ in pairs] == [layer.name for layer in model.layers if layer.weights]
    expected, excused = tv.expected_shapes(model, pairs)
    assert not excused and expected == shapes
    info = model.detector_info
    assert info["type"] == "ssd" and info["backbone"].startswith("pytorch-ssd mobilenet_v1")
    assert (info["box_coding"], info["variances"], info["anchor_format"]) == ("ssd", (0.1, 0.2), "cxcywh_relative")
    assert [(lv["size"], lv["channels"]) for lv in info["levels"]] == list(zip(LEVEL_SIZES, REF_MB1_HEADS, strict=True))
    assert not {type(layer).__name__ for layer in model.layers} & FORBIDDEN
    assert {layer.epsilon for layer in model.layers if type(layer).__name__ == "BatchNormalization"} == {1e-5}
    np.testing.assert_array_equal(model.anchors, preset_anchors("mb2_ssd_lite"))
    if REFERENCE.is_dir():
        np.testing.assert_array_equal(model.anchors, np.load(REFERENCE / "priors.npy"))


def test_mb1_ssd_checkpoint_round_trip(mb1, tmp_path):
    model = mb1("keras")
    state_dict = _random_state_dict(mb1_reference_shapes())
    path = tmp_path / "mb1-ssd.safetensors"
    save_file(state_dict, str(path))
    tv.port_checkpoint(model, path, pytorch_ssd.torch_mapping_mb1_ssd)
    stem, stem_bn = model.get_layer("base_net_0_conv"), model.get_layer("base_net_0_bn")
    np.testing.assert_array_equal(stem.get_weights()[0], state_dict["base_net.0.0.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(
        np.stack(stem_bn.get_weights()),
        np.stack([state_dict[f"base_net.0.1.{s}"] for s in ("weight", "bias", "running_mean", "running_var")]))
    np.testing.assert_array_equal(model.get_layer("base_net_12_dw").get_weights()[0],
                                  state_dict["base_net.12.0.weight"].transpose(2, 3, 0, 1))
    np.testing.assert_array_equal(model.get_layer("base_net_13_pw").get_weights()[0],
                                  state_dict["base_net.13.3.weight"].transpose(2, 3, 1, 0))
    kernel, bias = model.get_layer("extras_3_conv2").get_weights()
    np.testing.assert_array_equal(kernel, state_dict["extras.3.2.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(bias, state_dict["extras.3.2.bias"])
    np.testing.assert_array_equal(model.get_layer("classification_headers_5").get_weights()[1],
                                  state_dict["classification_headers.5.bias"])
    # A checkpoint with a tensor missing, one too many, or one misshapen is refused, naming it.
    broken = {
        "missing": ({k: v for k, v in state_dict.items() if k != "extras.1.0.bias"}, "extras.1.0.bias"),
        "extra": ({**state_dict, "base_net.14.0.weight": np.zeros((1024, 1, 3, 3), np.float32)},
                  "base_net.14.0.weight"),
        "misshapen": ({**state_dict, "regression_headers.2.weight": np.zeros((24, 512, 1, 1), np.float32)},
                      "regression_headers.2.weight"),
    }
    for kind, (tensors, culprit) in broken.items():
        bad = tmp_path / f"{kind}.safetensors"
        save_file(tensors, str(bad))
        with pytest.raises(InputError, match=culprit.replace(".", r"\.")):
            tv.port_checkpoint(model, bad, pytorch_ssd.torch_mapping_mb1_ssd)
    np.testing.assert_array_equal(model.get_layer("extras_3_conv2").get_weights()[1], state_dict["extras.3.2.bias"])


def test_mb1_ssd_from_raw_pixels(mb1):
    """In-model preprocessing is the reference's ``(pixel - 127) / 128``, to the bit."""
    model = mb1("keras")
    raw = pytorch_ssd.mb1_ssd(include_preprocessing=True)
    raw.set_weights(model.get_weights())
    pixels = np.random.default_rng(3).integers(0, 256, (2, 300, 300, 3)).astype(np.float32)
    for mine, theirs in zip(_predict(raw, pixels), _predict(model, (pixels - 127.0) / 128.0), strict=True):
        assert np.std(theirs) > 0
        np.testing.assert_array_equal(mine, theirs)


# --------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"num_classes": 0}, "num_classes"),
    ({"num_classes": "21"}, "num_classes"),
    ({"width_mult": 0}, "width_mult"),
    ({"width_mult": float("nan")}, "width_mult"),
    ({"width_mult": True}, "width_mult"),
    ({"width_mult": 1.4}, "width_mult"),  # the reference's extras expect 1280 channels
    ({"width_mult": 0.35}, "width_mult"),  # int(33.6) * 6 = 198 != round(201.6)
    ({"flavour": "jax"}, "flavour"),
    ({"include_preprocessing": "yes"}, "include_preprocessing"),
    ({"weights": "imagenet"}, "weights"),
    ({"weights": 3}, "weights"),
    ({"weights": "model.weights.h5"}, "weights"),
    ({"weights": "missing.pth"}, "weights"),
    ({"name": ""}, "name"),
])
def test_bad_arguments_are_named(kwargs, argument):
    with pytest.raises(InputError, match=f"`{argument}`"):
        pytorch_ssd.mb2_ssd_lite(**kwargs)
    if "width_mult" not in kwargs:
        with pytest.raises(InputError, match=f"`{argument}`"):
            pytorch_ssd.mb1_ssd(**kwargs)


def test_a_mapping_refuses_the_other_model(mb1):
    with pytest.raises(InputError, match="no place in a pytorch-ssd state_dict"):
        pytorch_ssd.torch_mapping_mb2_ssd_lite(mb1("keras"))
