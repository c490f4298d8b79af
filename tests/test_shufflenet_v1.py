"""ShuffleNet V1, the twin of megvii-model/ShuffleNet-Series' ``ShuffleNetV1``.

* The reference vectors (``shared/reference/megvii/shufflenet_v1_g3_x1_0``: megvii's code run on a
  state_dict and a BGR input) are reproduced in Keras 3 and tf_keras.
* Synthetic state_dicts named and shaped as megvii's modules (written here from megvii's
  ``network.py`` / ``blocks.py`` structure, not from ``torch_mapping``) port completely into
  every registered variant, each tensor landing where it belongs.
* Channels, parameter counts and MACs agree with megvii's tables, its README and the paper.
* Argument errors, megvii's channel shuffle, grouped convolutions and the BGR preprocessing.
"""

from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import image_batch, randomize_weights
from safetensors.numpy import save_file

from keras_lightnets import create_model, legacy, list_models, model_config, shufflenet_v1
from keras_lightnets.errors import InputError
from keras_lightnets.layers import get_layer_class
from keras_lightnets.models import shufflenet_v1 as family
from keras_lightnets.weights import torchvision as tv

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "megvii" / "shufflenet_v1_g3_x1_0"
needs_reference = pytest.mark.skipif(not REFERENCE.is_dir(), reason=f"no reference vectors in {REFERENCE}")
TOLERANCE = 1e-4  # of the largest |logit|
SMALL = 64  # input side of the synthetic ports
WIDTHS = {"0_5": 0.5, "1_0": 1.0, "1_5": 1.5, "2_0": 2.0}
REPEATS = (4, 8, 4)

# megvii's ``stage_out_channels[1:]`` (stem, stages 2-4) per group and model size, from its network.py.
MEGVII_CHANNELS = {
    3: {0.5: (12, 120, 240, 480), 1.0: (24, 240, 480, 960), 1.5: (24, 360, 720, 1440), 2.0: (48, 480, 960, 1920)},
    8: {0.5: (16, 192, 384, 768), 1.0: (24, 384, 768, 1536), 1.5: (24, 576, 1152, 2304), 2.0: (48, 768, 1536, 3072)},
}
# Groups megvii does not define: the paper's Table 1 (1x) times the width, each stage rounded to a
# multiple of 4 * groups, megvii's stems (worked out by hand from the rule in the module docstring).
RULE_CHANNELS = {
    1: {0.5: (12, 72, 144, 288), 1.0: (24, 144, 288, 576), 1.5: (24, 216, 432, 864), 2.0: (48, 288, 576, 1152)},
    2: {0.5: (12, 104, 200, 400), 1.0: (24, 200, 400, 800), 1.5: (24, 304, 600, 1200), 2.0: (48, 400, 800, 1600)},
    4: {0.5: (12, 144, 272, 544), 1.0: (24, 272, 544, 1088), 1.5: (24, 416, 816, 1632), 2.0: (48, 544, 1088, 2176)},
}
CHANNELS = {**MEGVII_CHANNELS, **RULE_CHANNELS}
# megvii's ShuffleNetV1/README.md "Results": (MFLOPs, #Params in millions) of its checkpoints.
MEGVII_README = {
    (3, 0.5): (38, 0.7), (3, 1.0): (138, 1.9), (3, 1.5): (292, 3.4), (3, 2.0): (524, 5.4),
    (8, 0.5): (40, 1.0), (8, 1.0): (138, 2.4), (8, 1.5): (290, 4.3), (8, 2.0): (522, 6.5),
}
# The paper's complexity (MFLOPs, i.e. multiply-adds): Table 1 (1x, every group count) and Table 2's
# 0.5x row (38). Not checked: g2 0.5x, whose 100-channel stage 2 (bottleneck 25) 2 groups cannot
# split, so it is rounded to 104 (39M, 2.4% over), and g8 0.5x, whose megvii stem of 16 and stages
# make 40M (megvii's README says 40M too).
PAPER_MFLOPS = {
    (1, 1.0): 143, (2, 1.0): 140, (3, 1.0): 137, (4, 1.0): 133, (8, 1.0): 137,
    (1, 0.5): 38, (3, 0.5): 38, (4, 0.5): 38,
}
REFERENCE_TRAINABLE = 1_864_728  # megvii g3 1.0x, the reference README's parameter count


def _name(groups: int, alpha: float) -> str:
    return f"shufflenet_v1_g{groups}_x{next(k for k, v in WIDTHS.items() if v == alpha)}"


VARIANTS = [(g, a) for g in (1, 2, 3, 4, 8) for a in WIDTHS.values()]


# --------------------------------------------------------------------------------------
# megvii's modules, written out from its network.py / blocks.py
# --------------------------------------------------------------------------------------


def _units(groups: int, channels: tuple[int, ...]):
    """``(index, inp, mid, outputs, first_conv_groups, stride)`` of megvii's 16 ``features`` units."""
    stem, *stages = channels
    inp, index = stem, 0
    for stage, (repeats, out) in enumerate(zip(REPEATS, stages, strict=True)):
        for unit in range(repeats):
            stride = 2 if unit == 0 else 1
            first_group = stage == 0 and unit == 0
            yield index, inp, out // 4, out - inp if stride == 2 else out, 1 if first_group else groups, stride
            inp, index = out, index + 1


def megvii_state_dict(groups: int, channels: tuple[int, ...], seed: int = 0) -> dict[str, np.ndarray]:
    """A random float32 state_dict with megvii's tensor names and shapes (``num_batches_tracked`` included)."""
    rng = np.random.default_rng(seed)
    state: dict[str, np.ndarray] = {}

    def conv(prefix: str, shape: tuple[int, ...]) -> None:
        state[f"{prefix}.weight"] = rng.normal(0, 1.2 / np.sqrt(np.prod(shape[1:])), shape).astype(np.float32)

    def bn(prefix: str, n: int) -> None:
        state[f"{prefix}.weight"] = rng.uniform(0.75, 1.25, n).astype(np.float32)
        state[f"{prefix}.bias"] = rng.normal(0, 0.05, n).astype(np.float32)
        state[f"{prefix}.running_mean"] = rng.normal(0, 0.1, n).astype(np.float32)
        state[f"{prefix}.running_var"] = rng.uniform(0.75, 1.25, n).astype(np.float32)
        state[f"{prefix}.num_batches_tracked"] = np.array(7, np.int64)

    conv("first_conv.0", (channels[0], 3, 3, 3))
    bn("first_conv.1", channels[0])
    for index, inp, mid, outputs, first_groups, _ in _units(groups, channels):
        t = f"features.{index}"
        conv(f"{t}.branch_main_1.0", (mid, inp // first_groups, 1, 1))
        bn(f"{t}.branch_main_1.1", mid)
        conv(f"{t}.branch_main_1.3", (mid, 1, 3, 3))
        bn(f"{t}.branch_main_1.4", mid)
        conv(f"{t}.branch_main_2.0", (outputs, mid // groups, 1, 1))
        bn(f"{t}.branch_main_2.1", outputs)
    conv("classifier.0", (1000, channels[-1]))
    return state


def _trainable(state: dict[str, np.ndarray]) -> int:
    """The reference's parameter count: every tensor but BatchNorm's running statistics and counters."""
    return sum(a.size for k, a in state.items() if not k.endswith(("running_mean", "running_var", "tracked")))


def _macs(groups: int, channels: tuple[int, ...], size: int = 224) -> int:
    """Multiply-accumulates of megvii's network at ``size`` (convolutions and the classifier)."""
    side = (size - 1) // 2 + 1  # 3x3/2 conv, padding 1
    total = 27 * channels[0] * side * side
    side = (side - 1) // 2 + 1  # 3x3/2 max pool, padding 1
    for _, inp, mid, outputs, first_groups, stride in _units(groups, channels):
        out_side = (side - 1) // stride + 1
        total += inp // first_groups * mid * side * side  # pointwise group conv, before the stride
        total += (9 * mid + mid // groups * outputs) * out_side * out_side  # depthwise, pointwise group conv
        side = out_side
    return total + channels[-1] * 1000


# --------------------------------------------------------------------------------------
# Reference vectors
# --------------------------------------------------------------------------------------


def _check_logits(got: np.ndarray, want: np.ndarray) -> float:
    error = float(np.abs(got - want).max() / np.abs(want).max())
    assert error <= TOLERANCE, error
    np.testing.assert_array_equal(np.argsort(-got[0])[:5], np.argsort(-want[0])[:5])
    return error


@needs_reference
@pytest.mark.parametrize("flavour", ["keras", "tf_keras"])
def test_reference_logits(flavour):
    image = np.load(REFERENCE / "input.npy").transpose(0, 2, 3, 1)  # NCHW BGR 0..255 -> NHWC
    want = np.load(REFERENCE / "logits.npy")
    model = create_model("shufflenet_v1_g3_x1_0", weights=str(REFERENCE / "weights.safetensors"),
                         classifier_activation=None, flavour=flavour)
    assert type(model).__module__.startswith("tf_keras" if flavour == "tf_keras" else "keras")
    _check_logits(np.asarray(model(image, training=False)), want)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == REFERENCE_TRAINABLE


@needs_reference
def test_legacy_builder_and_rgb_preprocessing_reproduce_the_reference():
    """tf_keras' public builder with the BGR flip inside, fed the RGB image, gives megvii's logits."""
    image = np.load(REFERENCE / "input.npy").transpose(0, 2, 3, 1)
    model = legacy.ShuffleNetV1(groups=3, alpha=1.0, weights=str(REFERENCE / "weights.safetensors"),
                                classifier_activation=None, include_preprocessing=True)
    _check_logits(np.asarray(model(np.ascontiguousarray(image[..., ::-1]), training=False)),
                  np.load(REFERENCE / "logits.npy"))


@needs_reference
def test_reference_source_defines_the_channels_tested_here():
    """MEGVII_CHANNELS is megvii's network.py, read from the copy the vectors were made with."""
    source = (REFERENCE / "reference_network.py").read_text()
    found: dict[int, dict[float, tuple[int, ...]]] = {}
    group = None
    for line in source.splitlines():
        if m := re.match(r"\s*(?:el)?if group == (\d+):", line):
            group = int(m.group(1))
        elif m := re.match(r"\s*(?:el)?if model_size == '([\d.]+)x':", line):
            size = float(m.group(1))
        elif m := re.match(r"\s*self\.stage_out_channels = \[-1, ([\d, ]+)\]", line):
            found.setdefault(group, {})[size] = tuple(int(c) for c in m.group(1).split(","))
    assert found == MEGVII_CHANNELS


@needs_reference
def test_other_variant_checkpoint_is_refused_naming_the_tensor():
    with pytest.raises(InputError, match=r"'first_conv\.0\.weight' has shape \(24, 3, 3, 3\), but model "
                                         r"'shufflenet_v1_g3_x2_0' needs \(48, 3, 3, 3\)"):
        create_model("shufflenet_v1_g3_x2_0", weights=str(REFERENCE / "weights.safetensors"))


# --------------------------------------------------------------------------------------
# Every variant: channels, synthetic megvii checkpoints, parameters, MACs
# --------------------------------------------------------------------------------------


def test_registry_lists_the_twenty_variants():
    names = list_models("shufflenet_v1*")
    assert names == sorted(_name(g, a) for g, a in VARIANTS)
    for groups, alpha in VARIANTS:
        config = model_config(_name(groups, alpha))
        assert config.family == "shufflenet_v1" and config.preprocessing == "bgr255"
        assert dict(config.kwargs) == {"groups": groups, "alpha": alpha}
        assert config.module == "keras_lightnets.shufflenet_v1" and config.weights == ()


@pytest.mark.parametrize(("groups", "alpha"), VARIANTS)
def test_channels(groups, alpha):
    assert family.stage_channels(groups, alpha) == CHANNELS[groups][alpha]


@pytest.mark.parametrize(("groups", "alpha"), VARIANTS)
def test_parameters_and_macs_of_the_record(groups, alpha):
    """The record's facts (re-derived from built models by test_models) equal megvii's architecture's."""
    config = model_config(_name(groups, alpha))
    channels = CHANNELS[groups][alpha]
    state = megvii_state_dict(groups, channels)
    bn_statistics = sum(a.size for k, a in state.items() if k.endswith(("running_mean", "running_var")))
    assert config.params == _trainable(state) + bn_statistics
    assert f"{_trainable(state):,} trainable parameters" in config.notes
    assert config.macs == _macs(groups, channels)
    if (groups, alpha) in MEGVII_README:
        mflops, millions = MEGVII_README[groups, alpha]
        assert round(_trainable(state) / 1e6, 1) == millions
        assert config.macs == pytest.approx(mflops * 1e6, rel=0.02)
    if (groups, alpha) in PAPER_MFLOPS:
        assert config.macs == pytest.approx(PAPER_MFLOPS[groups, alpha] * 1e6, rel=0.02)
    if (groups, alpha) == (3, 1.0):
        assert _trainable(state) == REFERENCE_TRAINABLE


def test_top1_is_megvii_readme_or_paper_table_2():
    expected = {  # 100 - top-1 error
        (3, 0.5): 57.3, (3, 1.0): 67.8, (3, 1.5): 71.6, (3, 2.0): 74.1,
        (8, 0.5): 58.8, (8, 1.0): 68.0, (8, 1.5): 71.0, (8, 2.0): 72.9,
        (1, 0.5): 54.9, (1, 1.0): 66.4, (2, 0.5): 55.6, (2, 1.0): 67.3, (4, 0.5): 58.4, (4, 1.0): 67.2,
    }
    for groups, alpha in VARIANTS:
        assert model_config(_name(groups, alpha)).top1 == expected.get((groups, alpha)), (groups, alpha)


def _kernel(model, name: str) -> np.ndarray:
    return np.asarray(model.get_layer(name).get_weights()[0])


@pytest.mark.parametrize(("groups", "alpha"), VARIANTS)
def test_megvii_checkpoint_ports_completely(groups, alpha, tmp_path):
    """Every tensor of a megvii-named state_dict is used (the port refuses leftovers) and lands in place."""
    channels = CHANNELS[groups][alpha]
    state = megvii_state_dict(groups, channels, seed=groups)
    path = tmp_path / "megvii.safetensors"
    save_file(state, str(path))
    model = create_model(_name(groups, alpha), weights=str(path), input_shape=(SMALL, SMALL, 3),
                         classifier_activation=None)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == _trainable(state)
    np.testing.assert_array_equal(_kernel(model, "conv1"), state["first_conv.0.weight"].transpose(2, 3, 1, 0))
    first = model.get_layer("stage2_unit1_pw1")
    assert first.groups == 1 and first.kernel.shape[2] == channels[0]
    np.testing.assert_array_equal(_kernel(model, "stage2_unit1_pw1"),
                                  state["features.0.branch_main_1.0.weight"].transpose(2, 3, 1, 0))
    # the last unit's grouped 1x1 conv, depthwise conv and BatchNorm (features.15)
    assert model.get_layer("stage4_unit4_pw2").groups == groups
    np.testing.assert_array_equal(_kernel(model, "stage4_unit4_pw2"),
                                  state["features.15.branch_main_2.0.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(_kernel(model, "stage3_unit5_dw")[:, :, :, 0],
                                  state["features.8.branch_main_1.3.weight"][:, 0].transpose(1, 2, 0))
    gamma, beta, mean, var = model.get_layer("stage3_unit1_pw2_bn").get_weights()
    for got, key in ((gamma, "weight"), (beta, "bias"), (mean, "running_mean"), (var, "running_var")):
        np.testing.assert_array_equal(got, state[f"features.4.branch_main_2.1.{key}"])
    predictions = model.get_layer("predictions")
    assert not predictions.use_bias
    np.testing.assert_array_equal(_kernel(model, "predictions"), state["classifier.0.weight"].T)
    if (groups, alpha) == (8, 0.5):  # a headless model skips the classifier's tensor
        headless = create_model(_name(groups, alpha), weights=str(path), include_top=False, pooling="avg",
                                input_shape=(SMALL, SMALL, 3))
        np.testing.assert_array_equal(_kernel(headless, "stage4_unit4_pw2"), _kernel(model, "stage4_unit4_pw2"))


def test_a_missing_or_extra_tensor_is_refused(tmp_path):
    state = megvii_state_dict(3, CHANNELS[3][0.5])
    extra = tmp_path / "extra.safetensors"
    save_file({**state, "features.16.branch_main_1.0.weight": np.zeros((1, 1, 1, 1), np.float32)}, str(extra))
    with pytest.raises(InputError, match=r"features\.16\.branch_main_1\.0\.weight"):
        create_model("shufflenet_v1_g3_x0_5", weights=str(extra), input_shape=(SMALL, SMALL, 3))
    del state["features.3.branch_main_1.3.weight"]
    missing = tmp_path / "missing.safetensors"
    save_file(state, str(missing))
    with pytest.raises(InputError, match=r"no tensor 'features\.3\.branch_main_1\.3\.weight'"):
        create_model("shufflenet_v1_g3_x0_5", weights=str(missing), input_shape=(SMALL, SMALL, 3))


# --------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------


def test_channel_shuffle_is_megvii_s():
    """``ChannelShuffle(groups=C // g)`` is megvii's reshape (C/g, g) -> permute -> (g, C/g)."""
    groups, channels = 3, 12
    x = np.arange(2 * 2 * 2 * channels, dtype=np.float32).reshape(2, 2, 2, channels)
    nchw = x.transpose(0, 3, 1, 2)
    want = nchw.reshape(2, channels // groups, groups, 2, 2).transpose(0, 2, 1, 3, 4).reshape(2, channels, 2, 2)
    got = get_layer_class("ChannelShuffle")(groups=channels // groups)(x)
    np.testing.assert_array_equal(np.asarray(got), want.transpose(0, 2, 3, 1))
    usual = get_layer_class("ChannelShuffle")(groups=groups)(x)  # torchvision's: not the same
    assert not np.array_equal(np.asarray(usual), want.transpose(0, 2, 3, 1))


def test_grouped_conv_ports_with_torch_semantics():
    """A torch (O, I/g, 1, 1) grouped kernel: output block k reads input block k, in both flavours."""
    rng = np.random.default_rng(0)
    groups, cin, cout = 4, 8, 12
    weight = rng.normal(size=(cout, cin // groups, 1, 1)).astype(np.float32)
    x = rng.normal(size=(1, 3, 3, cin)).astype(np.float32)
    want = np.concatenate([
        np.einsum("nhwi,oi->nhwo", x[..., k * cin // groups:(k + 1) * cin // groups],
                  weight[k * cout // groups:(k + 1) * cout // groups, :, 0, 0])
        for k in range(groups)], axis=-1)
    import tf_keras

    for module in (keras, tf_keras):
        inputs = module.Input((3, 3, cin))
        model = module.Model(inputs, module.layers.Conv2D(cout, 1, groups=groups, use_bias=False, name="pw")(inputs))
        arrays = tv.convert_state_dict(model, {"pw.weight": weight}, [("pw", "pw")])
        model.get_layer("pw").set_weights(arrays["pw"])
        np.testing.assert_allclose(np.asarray(model(x)), want, rtol=1e-5, atol=1e-5)


def test_architecture_layers():
    model = create_model("shufflenet_v1_g8_x0_5", weights=None, input_shape=(SMALL, SMALL, 3))
    names = [layer.name for layer in model.layers]
    assert names[:6] == ["input", "conv1_pad", "conv1", "conv1_bn", "conv1_relu", "maxpool_pad"]
    assert {"stage2_unit1_shortcut_pad", "stage2_unit1_shortcut_pool", "stage2_unit1_concat",
            "stage2_unit2_add", "stage4_unit4_relu", "avg_pool", "predictions"} <= set(names)
    pool = model.get_layer("stage3_unit1_shortcut_pool")
    assert type(pool).__name__ == "AveragePooling2D" and pool.padding == "valid"
    assert model.get_layer("stage2_unit1_shuffle").groups == 48 // 8  # megvii's: C / g groups
    assert model.get_layer("stage3_unit1_dw").strides == (2, 2)
    plain = create_model("shufflenet_v1_g1_x0_5", weights=None, input_shape=(SMALL, SMALL, 3))
    assert not [layer for layer in plain.layers if type(layer).__name__ == "ChannelShuffle"]  # megvii: group > 1


# --------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("groups", [0, 5, 6, 16, 3.0, "3", True, None])
def test_bad_groups_are_refused(groups):
    with pytest.raises(InputError, match=r"`groups` must be one of 1, 2, 3, 4, 8"):
        shufflenet_v1.ShuffleNetV1(groups=groups, weights=None)


def test_width_too_small_for_the_groups_is_refused_and_others_build():
    with pytest.raises(InputError, match=r"groups=8, alpha=0\.02: .* main branch of 0"):
        shufflenet_v1.ShuffleNetV1(groups=8, alpha=0.02, weights=None)
    with pytest.raises(ValueError, match="alpha"):
        shufflenet_v1.ShuffleNetV1(alpha=-1.0, weights=None)
    assert family.stage_channels(3, 0.75) == (21, 180, 360, 720)  # stem 24 * 0.75 -> 20 -> 21 (3 groups)
    model = shufflenet_v1.ShuffleNetV1(groups=3, alpha=0.75, weights=None, include_top=False,
                                       input_shape=(SMALL, SMALL, 3))
    assert model.name == "shufflenet_v1_g3_x0_75" and model.output.shape[-1] == 720


def test_imagenet_weights_are_refused_clearly():
    with pytest.raises(ValueError, match=r"ImageNet weights exist only for alpha in 0\.5, 1\.0, 1\.5, 2\.0"):
        shufflenet_v1.ShuffleNetV1(alpha=0.75)
    with pytest.raises(InputError, match=r"'shufflenet_v1_g3_x0_5' has no ImageNet weights"):
        shufflenet_v1.ShuffleNetV1(alpha=0.5, include_top=False, input_shape=(SMALL, SMALL, 3))


# --------------------------------------------------------------------------------------
# BGR preprocessing
# --------------------------------------------------------------------------------------


def test_preprocess_input_turns_rgb_into_bgr():
    rgb = image_batch(4, batch=2)
    np.testing.assert_array_equal(shufflenet_v1.preprocess_input(rgb.copy()), rgb[..., ::-1])
    first = np.ascontiguousarray(np.moveaxis(rgb, -1, 1))
    np.testing.assert_array_equal(shufflenet_v1.preprocess_input(first.copy(), data_format="channels_first"),
                                  first[:, ::-1])
    as_uint8 = shufflenet_v1.preprocess_input(rgb.astype(np.uint8))
    assert as_uint8.dtype == np.float32
    np.testing.assert_array_equal(as_uint8, rgb.astype(np.uint8)[..., ::-1].astype(np.float32))
    import tensorflow as tf

    tensor = shufflenet_v1.preprocess_input(tf.constant(rgb))
    np.testing.assert_array_equal(tensor.numpy(), rgb[..., ::-1])


@pytest.mark.parametrize("flavour", ["keras", "tf_keras"])
def test_include_preprocessing_on_rgb_equals_the_model_on_bgr(flavour):
    kwargs = dict(weights=None, input_shape=(SMALL, SMALL, 3), classes=5, classifier_activation=None,
                  flavour=flavour)
    inside = create_model("shufflenet_v1_g3_x0_5", include_preprocessing=True, **kwargs)
    plain = create_model("shufflenet_v1_g3_x0_5", **kwargs)
    assert "rescaling" in [layer.name for layer in inside.layers]
    randomize_weights(plain, seed=4)
    inside.set_weights(plain.get_weights())
    rgb = image_batch(SMALL, batch=2, seed=9)
    expected = np.asarray(plain(np.ascontiguousarray(rgb[..., ::-1]), training=False))
    np.testing.assert_allclose(np.asarray(inside(rgb, training=False)), expected,
                               rtol=1e-6, atol=1e-6 * np.abs(expected).max())
    with pytest.raises(InputError, match="3 input channels"):
        create_model("shufflenet_v1_g3_x0_5", include_preprocessing=True, weights=None, include_top=False,
                     input_shape=(SMALL, SMALL, 1))


def test_channels_first_builds_the_same_model():
    rgb = image_batch(SMALL, batch=1, seed=2)
    last = create_model("shufflenet_v1_g2_x0_5", weights=None, input_shape=(SMALL, SMALL, 3), classes=5,
                        include_preprocessing=True)
    randomize_weights(last, seed=1)
    keras.config.set_image_data_format("channels_first")
    try:
        first = create_model("shufflenet_v1_g2_x0_5", weights=None, input_shape=(3, SMALL, SMALL), classes=5,
                             include_preprocessing=True)
    finally:
        keras.config.set_image_data_format("channels_last")
    first.set_weights(last.get_weights())
    expected = np.asarray(last(rgb, training=False))
    np.testing.assert_allclose(np.asarray(first(np.moveaxis(rgb, -1, 1), training=False)), expected, atol=1e-5)
