"""MobileNetV4 Conv-S/M/L: timm's architecture, its checkpoints ported, the registry's facts.

* The reference vectors (``shared/reference/timm/mobilenetv4_conv_small``: a timm state_dict,
  an input and timm's logits) are reproduced in Keras 3 and tf_keras.
* Conv-M and Conv-L have no vectors: a synthetic state_dict with timm's tensor names and
  shapes, generated here from timm's block structure (written out below, independently of the
  module's table; the generator reproduces the real Conv-S checkpoint's names and shapes), is
  ported completely at a small input, and its values land where they belong.
* Parameter counts equal timm's, MACs equal a count derived here from the same structure and
  timm's published figures.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from keras_lightnets import count_macs, create_model, model_config
from keras_lightnets.models import mobilenet_v4

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "timm" / "mobilenetv4_conv_small"
needs_reference = pytest.mark.skipif(not REFERENCE.is_dir(), reason=f"no reference vectors in {REFERENCE}")
FLAVOURS = ("keras", "tf_keras")
TOLERANCE = 1e-4  # of the largest |logit|
SMALL_INPUT = 64
VARIANTS = ("small", "medium", "large")

# timm 1.0.31's MobileNetV4 conv variants (timm/models/mobilenetv3.py, ``_gen_mobilenet_v4``):
# stem channels, then per stage rows of (block type, repeats, start depthwise kernel, kernel,
# stride, expansion, output channels). Block types: "cn" ConvBnAct (conv, bn1; no skip),
# "er" EdgeResidual (conv_exp, bn1, conv_pwl, bn2), "uir" UniversalInvertedResidual
# (dw_start, pw_exp, dw_mid, pw_proj, each .conv/.bn; a kernel of 0 leaves that part out).
# Only the first of repeated blocks strides. Head: conv_head 960 -> 1280, norm_head, classifier.
TIMM_ARCH = {
    "small": (32, (
        (("cn", 1, 0, 3, 2, 1, 32), ("cn", 1, 0, 1, 1, 1, 32)),
        (("cn", 1, 0, 3, 2, 1, 96), ("cn", 1, 0, 1, 1, 1, 64)),
        (("uir", 1, 5, 5, 2, 3, 96), ("uir", 4, 0, 3, 1, 2, 96), ("uir", 1, 3, 0, 1, 4, 96)),
        (("uir", 1, 3, 3, 2, 6, 128), ("uir", 1, 5, 5, 1, 4, 128), ("uir", 1, 0, 5, 1, 4, 128),
         ("uir", 1, 0, 5, 1, 3, 128), ("uir", 2, 0, 3, 1, 4, 128)),
        (("cn", 1, 0, 1, 1, 1, 960),),
    )),
    "medium": (32, (
        (("er", 1, 0, 3, 2, 4, 48),),
        (("uir", 1, 3, 5, 2, 4, 80), ("uir", 1, 3, 3, 1, 2, 80)),
        (("uir", 1, 3, 5, 2, 6, 160), ("uir", 2, 3, 3, 1, 4, 160), ("uir", 1, 3, 5, 1, 4, 160),
         ("uir", 1, 3, 3, 1, 4, 160), ("uir", 1, 3, 0, 1, 4, 160), ("uir", 1, 0, 0, 1, 2, 160),
         ("uir", 1, 3, 0, 1, 4, 160)),
        (("uir", 1, 5, 5, 2, 6, 256), ("uir", 1, 5, 5, 1, 4, 256), ("uir", 2, 3, 5, 1, 4, 256),
         ("uir", 1, 0, 0, 1, 4, 256), ("uir", 1, 3, 0, 1, 4, 256), ("uir", 1, 3, 5, 1, 2, 256),
         ("uir", 1, 5, 5, 1, 4, 256), ("uir", 2, 0, 0, 1, 4, 256), ("uir", 1, 5, 0, 1, 2, 256)),
        (("cn", 1, 0, 1, 1, 1, 960),),
    )),
    "large": (24, (
        (("er", 1, 0, 3, 2, 4, 48),),
        (("uir", 1, 3, 5, 2, 4, 96), ("uir", 1, 3, 3, 1, 4, 96)),
        (("uir", 1, 3, 5, 2, 4, 192), ("uir", 3, 3, 3, 1, 4, 192), ("uir", 1, 3, 5, 1, 4, 192),
         ("uir", 5, 5, 3, 1, 4, 192), ("uir", 1, 3, 0, 1, 4, 192)),
        (("uir", 4, 5, 5, 2, 4, 512), ("uir", 1, 5, 0, 1, 4, 512), ("uir", 1, 5, 3, 1, 4, 512),
         ("uir", 2, 5, 0, 1, 4, 512), ("uir", 1, 5, 3, 1, 4, 512), ("uir", 1, 5, 5, 1, 4, 512),
         ("uir", 3, 5, 0, 1, 4, 512)),
        (("cn", 1, 0, 1, 1, 1, 960),),
    )),
}
HEAD, CLASSES = 1280, 1000
# timm's parameter counts: Conv-S exactly (the reference README), Conv-M and Conv-L as timm's
# README rounds them (millions, two decimals; its June 12, 2024 MobileNetV4 table).
TIMM_PARAMS_EXACT = {"small": 3_774_024}
TIMM_PARAMS_MILLIONS = {"small": 3.77, "medium": 9.72, "large": 32.59}
# GMACs on timm's model cards (huggingface.co/timm/mobilenetv4_conv_{small,medium,large}.<default tag>),
# rounded to one decimal, at the default tags' sizes 224, 256 and 384. The paper's own figures
# (0.2G, 1.0G, 5.9G) are for its TensorFlow models, whose Conv-M and Conv-L also have 5% fewer
# parameters than timm's (9.2M, 31M); they are not a check of this architecture.
TIMM_GMACS = {"small": 0.2, "medium": 1.1, "large": 6.4}


# --------------------------------------------------------------------------------------
# timm's structure, independently of keras_lightnets.models.mobilenet_v4
# --------------------------------------------------------------------------------------


def _divisible(value: float, divisor: int = 8) -> int:
    """timm's ``make_divisible`` (round to a multiple of 8, never below 90%)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _timm_blocks(variant: str):
    """``(stage, index, type, start kernel, kernel, stride, in channels, mid channels, out channels)``."""
    in_channels = TIMM_ARCH[variant][0]
    for stage, rows in enumerate(TIMM_ARCH[variant][1]):
        index = 0
        for kind, repeats, start, kernel, stride, expansion, out in rows:
            for repeat in range(repeats):
                mid = _divisible(in_channels * expansion)
                yield (stage, index, kind, start, kernel, stride if repeat == 0 else 1, in_channels, mid, out)
                in_channels, index = out, index + 1


def timm_shapes(variant: str) -> dict[str, tuple[int, ...]]:
    """Every tensor of timm's state_dict of ``mobilenetv4_conv_{variant}`` and its shape."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name, out, inp, k, groups=1):
        shapes[f"{name}.weight"] = (out, inp // groups, k, k)

    def bn(name, channels):
        for suffix in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.{suffix}"] = (channels,)

    stem = TIMM_ARCH[variant][0]
    conv("conv_stem", stem, 3, 3)
    bn("bn1", stem)
    for stage, index, kind, start, kernel, _, inp, mid, out in _timm_blocks(variant):
        p = f"blocks.{stage}.{index}"
        if kind == "cn":
            conv(f"{p}.conv", out, inp, kernel)
            bn(f"{p}.bn1", out)
        elif kind == "er":
            conv(f"{p}.conv_exp", mid, inp, kernel)
            bn(f"{p}.bn1", mid)
            conv(f"{p}.conv_pwl", out, mid, 1)
            bn(f"{p}.bn2", out)
        else:
            if start:
                conv(f"{p}.dw_start.conv", inp, inp, start, groups=inp)
                bn(f"{p}.dw_start.bn", inp)
            conv(f"{p}.pw_exp.conv", mid, inp, 1)
            bn(f"{p}.pw_exp.bn", mid)
            if kernel:
                conv(f"{p}.dw_mid.conv", mid, mid, kernel, groups=mid)
                bn(f"{p}.dw_mid.bn", mid)
            conv(f"{p}.pw_proj.conv", out, mid, 1)
            bn(f"{p}.pw_proj.bn", out)
    conv("conv_head", HEAD, 960, 1)
    bn("norm_head", HEAD)
    shapes["classifier.weight"] = (CLASSES, HEAD)
    shapes["classifier.bias"] = (CLASSES,)
    return shapes


def timm_trainable(variant: str) -> int:
    return sum(math.prod(s) for name, s in timm_shapes(variant).items() if not name.endswith(("_mean", "_var")))


def timm_macs(variant: str, size: int) -> int:
    """Multiply-accumulates of convs and the classifier at ``size`` (PyTorch padding k // 2)."""
    def out(side, k, stride):
        return (side + 2 * (k // 2) - k) // stride + 1

    side, stem = out(size, 3, 2), TIMM_ARCH[variant][0]
    macs = side * side * 27 * stem
    for _, _, kind, start, kernel, stride, inp, mid, out_channels in _timm_blocks(variant):
        if kind == "cn":
            side = out(side, kernel, stride)
            macs += side * side * kernel * kernel * inp * out_channels
        elif kind == "er":
            side = out(side, kernel, stride)
            macs += side * side * (kernel * kernel * inp * mid + mid * out_channels)
        else:
            if start:
                side = out(side, start, 1 if kernel else stride)
                macs += side * side * start * start * inp
            macs += side * side * inp * mid
            if kernel:
                side = out(side, kernel, stride)
                macs += side * side * kernel * kernel * mid
            macs += side * side * mid * out_channels
    return macs + 960 * HEAD + HEAD * CLASSES


def synthetic_checkpoint(variant: str, path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """A random state_dict with timm's names and shapes, saved to ``path`` (safetensors)."""
    rng = np.random.default_rng(seed)
    state_dict = {}
    for name, shape in timm_shapes(variant).items():
        if name.endswith("running_var"):
            state_dict[name] = rng.uniform(0.75, 1.25, shape).astype(np.float32)
        else:
            state_dict[name] = rng.normal(0.0, 0.1, shape).astype(np.float32)
    save_file(state_dict, str(path))
    return state_dict


def _trainable_count(model) -> int:
    return sum(math.prod(w.shape) for w in model.trainable_weights)


def _check_logits(got: np.ndarray, want: np.ndarray) -> float:
    error = float(np.abs(got - want).max() / np.abs(want).max())
    assert error <= TOLERANCE, error
    np.testing.assert_array_equal(np.argsort(-got[0])[:5], np.argsort(-want[0])[:5])
    return error


# --------------------------------------------------------------------------------------
# Reference vectors (Conv-S)
# --------------------------------------------------------------------------------------


@needs_reference
def test_structure_written_here_reproduces_the_real_checkpoint():
    reference = load_file(REFERENCE / "weights.safetensors")
    assert {name: tuple(a.shape) for name, a in reference.items()} == timm_shapes("small")


@needs_reference
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_reference_logits(flavour):
    model = create_model("mobilenet_v4_conv_small", weights=str(REFERENCE / "weights.safetensors"),
                         input_shape=(224, 224, 3), classifier_activation=None, flavour=flavour)
    image = np.load(REFERENCE / "input.npy").transpose(0, 2, 3, 1)  # NCHW -> NHWC
    error = _check_logits(np.asarray(model(image, training=False)), np.load(REFERENCE / "logits.npy"))
    print(f"mobilenet_v4_conv_small {flavour}: max |diff| / max |ref| = {error:.2e}")


@needs_reference
def test_reference_logits_channels_first():
    """keras.applications' ``channels_first``: the same checkpoint, fed timm's NCHW input as it is."""
    import keras

    keras.config.set_image_data_format("channels_first")
    try:
        model = create_model("mobilenet_v4_conv_small", weights=str(REFERENCE / "weights.safetensors"),
                             input_shape=(3, 224, 224), classifier_activation=None)
        logits = np.asarray(model(np.load(REFERENCE / "input.npy"), training=False))
    finally:
        keras.config.set_image_data_format("channels_last")
    _check_logits(logits, np.load(REFERENCE / "logits.npy"))


@needs_reference
def test_headless_model_ports_the_same_checkpoint():
    from keras_lightnets import legacy

    model = legacy.MobileNetV4ConvSmall(weights=str(REFERENCE / "weights.safetensors"), include_top=False,
                                        pooling="avg", input_shape=(SMALL_INPUT, SMALL_INPUT, 3))
    assert tuple(model.output.shape) == (None, 960)
    reference = load_file(REFERENCE / "weights.safetensors")
    np.testing.assert_array_equal(model.get_layer("block4_0_conv_bn").get_weights()[3],
                                  reference["blocks.4.0.bn1.running_var"].astype(np.float32))


# --------------------------------------------------------------------------------------
# Synthetic timm checkpoints (every variant, small input)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_synthetic_timm_checkpoint_ports_completely(variant, tmp_path):
    path = tmp_path / f"mobilenetv4_conv_{variant}.safetensors"
    state_dict = synthetic_checkpoint(variant, path)
    # Porting refuses any tensor that is missing, misshapen or left unused.
    model = create_model(f"mobilenet_v4_conv_{variant}", weights=str(path), classifier_activation=None,
                         input_shape=(SMALL_INPUT, SMALL_INPUT, 3))
    assert _trainable_count(model) == timm_trainable(variant)
    assert model.count_params() == sum(a.size for a in state_dict.values())

    blocks = list(_timm_blocks(variant))
    # The stem, the head, the first start depthwise conv, every middle one and the fused blocks' conv.
    checks = {"conv_stem": ("conv_stem.weight", (2, 3, 1, 0)),
              "conv_head": ("conv_head.weight", (2, 3, 1, 0)),
              "predictions": ("classifier.weight", (1, 0))}
    for stage, index, kind, start, kernel, _, _, _, _ in blocks:
        p, t = f"block{stage}_{index}_", f"blocks.{stage}.{index}"
        if kind == "uir" and start and f"{p}dw_start" not in checks:
            checks[f"{p}dw_start"] = (f"{t}.dw_start.conv.weight", (2, 3, 0, 1))
        if kind == "uir" and kernel:
            checks[f"{p}dw_mid"] = (f"{t}.dw_mid.conv.weight", (2, 3, 0, 1))
        if kind == "er":
            checks[f"{p}expand"] = (f"{t}.conv_exp.weight", (2, 3, 1, 0))
    for layer_name, (tensor, axes) in checks.items():
        np.testing.assert_array_equal(model.get_layer(layer_name).get_weights()[0],
                                      state_dict[tensor].transpose(axes), err_msg=layer_name)
    gamma, beta, mean, variance = model.get_layer("conv_head_bn").get_weights()
    for got, suffix in ((gamma, "weight"), (beta, "bias"), (mean, "running_mean"), (variance, "running_var")):
        np.testing.assert_array_equal(got, state_dict[f"norm_head.{suffix}"])
    np.testing.assert_array_equal(model.get_layer("predictions").get_weights()[1], state_dict["classifier.bias"])

    # Residuals exactly where timm has a skip: fused and UIB blocks with stride 1 and in == out.
    skips = sum(kind != "cn" and stride == 1 and inp == out for _, _, kind, _, _, stride, inp, _, out in blocks)
    assert sum(type(layer).__name__ == "Add" for layer in model.layers) == skips
    logits = np.asarray(model(np.random.default_rng(1).normal(size=(1, SMALL_INPUT, SMALL_INPUT, 3)),
                              training=False))
    assert logits.shape == (1, CLASSES) and np.isfinite(logits).all()


@pytest.mark.parametrize("variant", VARIANTS)
def test_parameter_counts_are_timms(variant):
    trainable = timm_trainable(variant)
    assert round(trainable / 1e6, 2) == TIMM_PARAMS_MILLIONS[variant]
    if variant in TIMM_PARAMS_EXACT:
        assert trainable == TIMM_PARAMS_EXACT[variant]
    config = model_config(f"mobilenet_v4_conv_{variant}")
    assert f"{trainable:,} trainable" in config.notes
    moving = sum(math.prod(s) for name, s in timm_shapes(variant).items() if name.endswith(("_mean", "_var")))
    assert config.params == trainable + moving  # Keras counts the moving statistics too


@pytest.mark.parametrize("variant", VARIANTS)
def test_macs_are_timms(variant):
    config = model_config(f"mobilenet_v4_conv_{variant}")
    assert config.input_size == {"small": 224, "medium": 256, "large": 384}[variant]
    assert config.macs == timm_macs(variant, config.input_size)
    assert round(config.macs / 1e9, 1) == TIMM_GMACS[variant]
    # The counter on the built model agrees with the count derived here (at a small size).
    model = create_model(f"mobilenet_v4_conv_{variant}", weights=None, input_shape=(SMALL_INPUT, SMALL_INPUT, 3))
    assert count_macs(model) == timm_macs(variant, SMALL_INPUT)


# --------------------------------------------------------------------------------------
# The builder's arguments
# --------------------------------------------------------------------------------------


def test_alpha_other_than_one_is_refused():
    with pytest.raises(ValueError, match=r"`alpha` must be 1\.0; received alpha=0\.5"):
        mobilenet_v4.MobileNetV4ConvSmall(alpha=0.5, weights=None)
    with pytest.raises(ValueError, match="positive number"):
        mobilenet_v4.MobileNetV4ConvSmall(alpha=-1, weights=None)


def test_imagenet_weights_are_timms_default_checkpoints():
    """Each variant's ImageNet file is timm's default pretrained tag at its training size (ported
    through the manifest: tests/test_timm_weights.py)."""
    for variant, tag, size in (("small", "e2400_r224_in1k", 224), ("medium", "e500_r256_in1k", 256),
                               ("large", "e600_r384_in1k", 384)):
        config = model_config(f"mobilenet_v4_conv_{variant}")
        assert config.input_size == size
        assert config.weight_file() == f"mobilenetv4_conv_{variant}.{tag}.safetensors"


def test_top_takes_any_input_size_and_headless_ends_before_the_pool():
    model = mobilenet_v4.MobileNetV4ConvSmall(weights=None, classifier_activation=None)
    assert tuple(model.input.shape) == (None, None, None, 3)
    for size in (64, 97):
        assert model(np.zeros((1, size, size, 3), np.float32)).shape == (1, CLASSES)
    headless = mobilenet_v4.MobileNetV4ConvSmall(weights=None, include_top=False, input_shape=(96, 96, 3))
    assert tuple(headless.output.shape) == (None, 3, 3, 960)
    assert headless.layers[-1].name == "block4_0_relu"
    pooled = mobilenet_v4.MobileNetV4ConvSmall(weights=None, include_top=False, pooling="max",
                                               input_shape=(96, 96, 3))
    assert tuple(pooled.output.shape) == (None, 960)


def test_dropout_and_preprocessing_are_layers():
    model = mobilenet_v4.MobileNetV4ConvSmall(weights=None, dropout_rate=0.2, include_preprocessing=True,
                                              input_shape=(SMALL_INPUT, SMALL_INPUT, 3))
    names = [layer.name for layer in model.layers]
    assert names[1] == "rescaling" and names[-2] == "dropout"
    with pytest.raises(ValueError, match="dropout_rate"):
        mobilenet_v4.MobileNetV4ConvSmall(weights=None, dropout_rate=1.5)


def test_public_module_and_legacy_expose_the_builders():
    import keras_lightnets
    from keras_lightnets import legacy
    from keras_lightnets import mobilenet_v4 as public

    for name in ("MobileNetV4ConvSmall", "MobileNetV4ConvMedium", "MobileNetV4ConvLarge"):
        assert getattr(public, name) is getattr(mobilenet_v4, name) is getattr(keras_lightnets, name)
        assert callable(getattr(legacy, name)) and name in legacy.__all__
    assert public.preprocess_input(np.full((1, 1, 1, 3), 255.0))[0, 0, 0, 0] == pytest.approx((1 - 0.485) / 0.229)
