"""EfficientNet-Lite0 .. Lite4: twins of timm 1.0.31's ``tf_efficientnet_lite0`` .. ``4``.

* The reference vector (``shared/reference/timm/tf_efficientnet_lite0``: timm's state_dict, an
  input and timm's logits) is reproduced in Keras 3 and tf_keras.
* Every other variant: a synthetic state_dict with timm's tensor names and shapes, derived here
  from timm's definition (``_gen_efficientnet_lite``: EfficientNet-B0's block strings, channels
  through ``round_channels``, stage repeats through ``ceil`` with the first and last stage fixed,
  stem 32 and head 1280 fixed), ports completely, and the Keras model's logits equal those of a
  float64 NumPy forward pass written from timm's modules (TensorFlow "SAME" padding, ReLU6,
  BatchNorm eps 1e-3). That NumPy twin is itself checked against timm's logits for Lite0.
* Parameter counts equal timm's (4,652,008 for Lite0, the reference README; the others from the
  shapes derived here). MACs (convolutions and classifier) are 3-6% below the TensorFlow
  EfficientNet-Lite README's MAdds, which count three element-wise operations per convolution
  output as well: with those, the README's figures are matched within 0.5%.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import keras
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from keras_lightnets import count_macs, create_model, efficientnet_lite, model_config

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "timm" / "tf_efficientnet_lite0"
needs_reference = pytest.mark.skipif(not REFERENCE.is_dir(), reason=f"no reference vectors in {REFERENCE}")
FLAVOURS = ("keras", "tf_keras")
TOLERANCE = 1e-4  # of the largest |logit|
NAMES = [f"efficientnet_lite{n}" for n in range(5)]

# timm's _gen_efficientnet_lite, restated from its block strings ds_r1_k3_s1_e1_c16, ir_r2_k3_s2_e6_c24,
# ir_r2_k5_s2_e6_c40, ir_r3_k3_s2_e6_c80, ir_r3_k5_s1_e6_c112, ir_r4_k5_s2_e6_c192, ir_r1_k3_s1_e6_c320:
# (block type, repeats, kernel, stride, expansion, channels).
TIMM_ARCH = (
    ("ds", 1, 3, 1, 1, 16),
    ("ir", 2, 3, 2, 6, 24),
    ("ir", 2, 5, 2, 6, 40),
    ("ir", 3, 3, 2, 6, 80),
    ("ir", 3, 5, 1, 6, 112),
    ("ir", 4, 5, 2, 6, 192),
    ("ir", 1, 3, 1, 6, 320),
)
# timm's tf_efficientnet_lite{n}: (channel_multiplier, depth_multiplier); the docstring's resolution and dropout.
TIMM_VARIANTS = {0: (1.0, 1.0), 1: (1.0, 1.1), 2: (1.1, 1.2), 3: (1.2, 1.4), 4: (1.4, 1.8)}
TF_RESOLUTION = {0: 224, 1: 240, 2: 260, 3: 280, 4: 300}
TF_DROPOUT = {0: 0.2, 1: 0.2, 2: 0.3, 3: 0.3, 4: 0.3}
# TensorFlow's EfficientNet-Lite README (github.com/tensorflow/tpu, models/official/efficientnet/lite):
# MAdds and float top-1 per variant at TF_RESOLUTION (its params, 4.7M .. 13.0M, round timm's).
TF_MADDS = {0: 407e6, 1: 631e6, 2: 899e6, 3: 1.44e9, 4: 2.64e9}
TF_TOP1 = {0: 75.1, 1: 76.7, 2: 77.6, 3: 79.8, 4: 81.5}
LITE0_TIMM_PARAMS = 4_652_008  # shared/reference/README.md
BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


# --------------------------------------------------------------------------------------
# timm's structure, restated
# --------------------------------------------------------------------------------------


def _make_divisible(value: float, divisor: int = 8) -> int:
    """timm's ``make_divisible`` (divisor 8, round_limit 0.9), which ``round_channels`` calls."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _blocks(variant: int) -> list[tuple[str, int, int, int, int, int]]:
    """``[(type, kernel, stride, in, mid, out)]`` per block, in timm's order."""
    width, depth = TIMM_VARIANTS[variant]
    blocks, in_chs = [], 32
    for index, (kind, repeats, kernel, stride, expansion, chs) in enumerate(TIMM_ARCH):
        if index not in (0, len(TIMM_ARCH) - 1):  # fix_first_last; depth_trunc "ceil"
            repeats = math.ceil(repeats * depth)
        out_chs = _make_divisible(chs * width)
        for block in range(repeats):
            mid = in_chs if kind == "ds" else _make_divisible(in_chs * expansion)
            blocks.append((kind, kernel, stride if block == 0 else 1, in_chs, mid, out_chs))
            in_chs = out_chs
    return blocks


def _stage_block_names(variant: int) -> list[str]:
    """timm's ``blocks.{stage}.{block}`` prefixes, in order."""
    _, depth = TIMM_VARIANTS[variant]
    names = []
    for index, (_, repeats, *_rest) in enumerate(TIMM_ARCH):
        if index not in (0, len(TIMM_ARCH) - 1):
            repeats = math.ceil(repeats * depth)
        names += [f"blocks.{index}.{block}" for block in range(repeats)]
    return names


def timm_shapes(variant: int) -> dict[str, tuple[int, ...]]:
    """The names and shapes of timm's ``tf_efficientnet_lite{variant}`` state_dict."""
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, chs: int) -> None:
        for suffix in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{suffix}"] = (chs,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["conv_stem.weight"] = (32, 3, 3, 3)
    bn("bn1", 32)
    for prefix, (kind, k, _, in_chs, mid, out_chs) in zip(_stage_block_names(variant), _blocks(variant), strict=True):
        if kind == "ds":  # DepthwiseSeparableConv
            shapes[f"{prefix}.conv_dw.weight"] = (in_chs, 1, k, k)
            bn(f"{prefix}.bn1", in_chs)
            shapes[f"{prefix}.conv_pw.weight"] = (out_chs, in_chs, 1, 1)
            bn(f"{prefix}.bn2", out_chs)
        else:  # InvertedResidual
            shapes[f"{prefix}.conv_pw.weight"] = (mid, in_chs, 1, 1)
            bn(f"{prefix}.bn1", mid)
            shapes[f"{prefix}.conv_dw.weight"] = (mid, 1, k, k)
            bn(f"{prefix}.bn2", mid)
            shapes[f"{prefix}.conv_pwl.weight"] = (out_chs, mid, 1, 1)
            bn(f"{prefix}.bn3", out_chs)
    shapes["conv_head.weight"] = (1280, _blocks(variant)[-1][-1], 1, 1)
    bn("bn2", 1280)
    shapes["classifier.weight"] = (1000, 1280)
    shapes["classifier.bias"] = (1000,)
    return shapes


def _trainable(shapes: dict[str, tuple[int, ...]]) -> int:
    return sum(math.prod(s) for n, s in shapes.items() if not n.endswith(BN_STATS))


def _keras_params(shapes: dict[str, tuple[int, ...]]) -> int:
    """Keras' ``count_params``: everything but the ``num_batches_tracked`` counters."""
    return sum(math.prod(s) for n, s in shapes.items() if not n.endswith("num_batches_tracked"))


def synthetic_state_dict(variant: int, seed: int) -> dict[str, np.ndarray]:
    """Random tensors of timm's names and shapes; convolutions N(0, (1.2 / sqrt(fan_in))^2) so the
    random network keeps its input, BatchNorm statistics and affine terms not the defaults."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in timm_shapes(variant).items():
        if name.endswith("num_batches_tracked"):
            state[name] = np.array(7, np.int64)
        elif name.endswith(("running_var",)) or (name.endswith(".weight") and len(shape) == 1):
            state[name] = rng.uniform(0.75, 1.25, shape)
        elif name.endswith("running_mean"):
            state[name] = rng.normal(0.0, 0.1, shape)
        elif len(shape) == 1:  # BatchNorm and classifier biases
            state[name] = rng.normal(0.0, 0.05, shape)
        else:
            state[name] = rng.normal(0.0, 1.2 / math.sqrt(math.prod(shape[1:])), shape)
    return {n: a.astype(np.float32) if a.dtype != np.int64 else a for n, a in state.items()}


# --------------------------------------------------------------------------------------
# timm's forward pass in NumPy (float64)
# --------------------------------------------------------------------------------------


def _same_pad(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """TensorFlow "SAME" (timm's Conv2dSame / pad_same): the odd pixel goes after."""
    pads = []
    for size in x.shape[:2]:
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, (*pads, (0, 0)))


def _taps(x: np.ndarray, kernel: int, stride: int):
    x = _same_pad(x, kernel, stride)
    rows, cols = (x.shape[0] - kernel) // stride + 1, (x.shape[1] - kernel) // stride + 1
    for dy in range(kernel):
        for dx in range(kernel):
            yield dy, dx, x[dy:dy + stride * (rows - 1) + 1:stride, dx:dx + stride * (cols - 1) + 1:stride]


def _conv(x: np.ndarray, weight: np.ndarray, stride: int = 1) -> np.ndarray:
    """``(H, W, I)`` by a torch ``(O, I, k, k)`` kernel."""
    return sum(patch @ weight[:, :, dy, dx].T for dy, dx, patch in _taps(x, weight.shape[-1], stride))


def _depthwise(x: np.ndarray, weight: np.ndarray, stride: int) -> np.ndarray:
    """``(H, W, C)`` by a torch ``(C, 1, k, k)`` kernel."""
    return sum(patch * weight[:, 0, dy, dx] for dy, dx, patch in _taps(x, weight.shape[-1], stride))


def _bn(x: np.ndarray, state: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    s = {k: state[f"{prefix}.{k}"].astype(np.float64) for k in ("weight", "bias", "running_mean", "running_var")}
    return (x - s["running_mean"]) / np.sqrt(s["running_var"] + 1e-3) * s["weight"] + s["bias"]


def _relu6(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 6.0)


def timm_forward(variant: int, state: dict[str, np.ndarray], image: np.ndarray) -> np.ndarray:
    """timm's eval-mode logits for one ``(H, W, 3)`` image (float64)."""
    w = {k: v.astype(np.float64) for k, v in state.items() if v.ndim > 1}
    x = _relu6(_bn(_conv(image.astype(np.float64), w["conv_stem.weight"], 2), state, "bn1"))
    for prefix, (kind, _, stride, in_chs, _, out_chs) in zip(_stage_block_names(variant), _blocks(variant),
                                                            strict=True):
        shortcut = x
        if kind == "ds":
            x = _relu6(_bn(_depthwise(x, w[f"{prefix}.conv_dw.weight"], stride), state, f"{prefix}.bn1"))
            x = _bn(_conv(x, w[f"{prefix}.conv_pw.weight"]), state, f"{prefix}.bn2")
        else:
            x = _relu6(_bn(_conv(x, w[f"{prefix}.conv_pw.weight"]), state, f"{prefix}.bn1"))
            x = _relu6(_bn(_depthwise(x, w[f"{prefix}.conv_dw.weight"], stride), state, f"{prefix}.bn2"))
            x = _bn(_conv(x, w[f"{prefix}.conv_pwl.weight"]), state, f"{prefix}.bn3")
        if stride == 1 and in_chs == out_chs:
            x = x + shortcut
    x = _relu6(_bn(_conv(x, w["conv_head.weight"]), state, "bn2"))
    return x.mean(axis=(0, 1)) @ w["classifier.weight"].T + state["classifier.bias"]


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _check_logits(got: np.ndarray, want: np.ndarray) -> float:
    """Max error relative to the largest |logit|; the top-5 must agree in order."""
    got, want = np.reshape(got, -1), np.reshape(want, -1)
    error = float(np.abs(got - want).max() / np.abs(want).max())
    assert error <= TOLERANCE, error
    np.testing.assert_array_equal(np.argsort(-got)[:5], np.argsort(-want)[:5])
    return error


def _reference_state() -> dict[str, np.ndarray]:
    return {k: v.astype(np.float32) for k, v in load_file(REFERENCE / "weights.safetensors").items()}


def _reference_image() -> np.ndarray:
    return np.load(REFERENCE / "input.npy").transpose(0, 2, 3, 1)  # NCHW -> NHWC


def _convs_of(model) -> list:
    return [layer for layer in model.layers if type(layer).__name__ in ("Conv2D", "DepthwiseConv2D")]


# --------------------------------------------------------------------------------------
# Reference vector (Lite0)
# --------------------------------------------------------------------------------------


@needs_reference
def test_timm_shapes_are_those_of_the_reference_checkpoint():
    """The structure restated above is timm's: names and shapes of the real Lite0 state_dict."""
    derived = {n: s for n, s in timm_shapes(0).items() if not n.endswith("num_batches_tracked")}
    reference = {n: tuple(a.shape) for n, a in load_file(REFERENCE / "weights.safetensors").items()}
    assert derived == reference
    assert _trainable(derived) == LITE0_TIMM_PARAMS


@needs_reference
def test_numpy_twin_reproduces_timm_logits():
    _check_logits(timm_forward(0, _reference_state(), _reference_image()[0]), np.load(REFERENCE / "logits.npy"))


@needs_reference
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_reference_logits(flavour):
    model = create_model("efficientnet_lite0", weights=str(REFERENCE / "weights.safetensors"),
                         classifier_activation=None, flavour=flavour)
    assert type(model).__module__.startswith("tf_keras" if flavour == "tf_keras" else "keras")
    want = np.load(REFERENCE / "logits.npy")
    _check_logits(np.asarray(model(_reference_image(), training=False)), want)
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    assert trainable == LITE0_TIMM_PARAMS


@needs_reference
def test_headless_port_skips_the_classifier():
    model = efficientnet_lite.EfficientNetLite0(
        weights=str(REFERENCE / "weights.safetensors"), include_top=False, pooling="avg", input_shape=(64, 64, 3),
    )
    assert tuple(model.output.shape) == (None, 1280)
    np.testing.assert_array_equal(model.get_layer("head_conv_bn").get_weights()[3],
                                  _reference_state()["bn2.running_var"])


# --------------------------------------------------------------------------------------
# Lite1 .. Lite4: synthetic timm state_dicts, at small inputs
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("variant", "size"), [(1, 64), (2, 65), (3, 64), (4, 64)])
def test_synthetic_timm_checkpoint_ports_completely_and_matches_timm(tmp_path, variant, size):
    state = synthetic_state_dict(variant, seed=variant)
    path = tmp_path / f"tf_efficientnet_lite{variant}.safetensors"
    save_file(state, str(path))
    model = create_model(f"efficientnet_lite{variant}", weights=str(path), input_shape=(size, size, 3),
                         classifier_activation=None)
    shapes = timm_shapes(variant)
    # every tensor used (the port refuses unused ones), and the counts are timm's
    assert sum(math.prod(w.shape) for w in model.trainable_weights) == _trainable(shapes)
    assert model.count_params() == _keras_params(shapes)
    # a few values landed where timm has them
    last = _stage_block_names(variant)[-2]  # the last block of stage 6
    np.testing.assert_array_equal(model.get_layer("stem_conv").get_weights()[0],
                                  state["conv_stem.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(model.get_layer("stage1_block1_depthwise_bn").get_weights()[0],
                                  state["blocks.0.0.bn1.weight"])
    stage, block = (int(i) + 1 for i in last.split(".")[1:])
    np.testing.assert_array_equal(model.get_layer(f"stage{stage}_block{block}_depthwise").get_weights()[0],
                                  state[f"{last}.conv_dw.weight"].transpose(2, 3, 0, 1))
    np.testing.assert_array_equal(model.get_layer("stage7_block1_project_bn").get_weights()[3],
                                  state["blocks.6.0.bn3.running_var"])
    np.testing.assert_array_equal(model.get_layer("predictions").get_weights()[0], state["classifier.weight"].T)
    # the architecture: timm's logits from the same tensors
    images = np.random.default_rng(variant).normal(size=(2, size, size, 3)).astype(np.float32)
    want = [timm_forward(variant, state, image) for image in images]
    assert np.abs(want[0] - want[1]).max() > 0.01 * np.abs(want[0]).max()  # the random network sees its input
    got = np.asarray(model(images, training=False))
    for mine, theirs in zip(got, want, strict=True):
        _check_logits(mine, theirs)
    # EfficientNet-Lite: ReLU6 only, no squeeze-excite, BatchNorm eps 1e-3, stem 32 and head 1280 fixed
    kinds = {type(layer).__name__ for layer in model.layers}
    assert not kinds & {"Multiply", "Activation", "HardSwish", "HardSigmoid"}
    assert {layer.max_value for layer in model.layers if type(layer).__name__ == "ReLU"} == {6.0}
    assert {layer.epsilon for layer in model.layers if type(layer).__name__ == "BatchNormalization"} == {1e-3}
    assert all(layer.padding == "same" for layer in _convs_of(model))
    assert model.get_layer("stem_conv").filters == 32 and model.get_layer("head_conv").filters == 1280


def test_checkpoint_of_another_variant_is_refused_naming_the_tensor(tmp_path):
    path = tmp_path / "lite1.safetensors"
    save_file(synthetic_state_dict(1, seed=0), str(path))
    with pytest.raises(ValueError, match=r"tensor 'blocks\.2\.0\.conv_pwl\.weight' has shape \(40, 144, 1, 1\)"):
        create_model("efficientnet_lite2", weights=str(path), input_shape=(64, 64, 3))


# --------------------------------------------------------------------------------------
# Registry facts
# --------------------------------------------------------------------------------------


def _macs(variant: int, size: int) -> tuple[int, int]:
    """``(MACs, conv outputs)`` of timm's network at ``size`` x ``size`` (TF "SAME" sizes): the
    multiply-accumulates of the convolutions and the classifier, and the number of values the
    convolutions output (each then goes through BatchNorm and, mostly, ReLU6)."""
    side = math.ceil(size / 2)
    macs, outputs = side * side * 3 * 3 * 3 * 32, side * side * 32
    for kind, kernel, stride, in_chs, mid, out_chs in _blocks(variant):
        if kind == "ir":
            macs, outputs = macs + side * side * in_chs * mid, outputs + side * side * mid
        side = math.ceil(side / stride)
        macs += side * side * (kernel * kernel * mid + mid * out_chs)
        outputs += side * side * (mid + out_chs)
    macs += side * side * _blocks(variant)[-1][-1] * 1280 + 1280 * 1000
    return macs, outputs + side * side * 1280


@pytest.mark.parametrize("variant", range(5))
def test_registry_facts(variant):
    config = model_config(f"efficientnet_lite{variant}")
    assert config.family == "efficientnet_lite" and config.preprocessing == "tf"
    assert config.input_size == TF_RESOLUTION[variant]
    assert config.top1 == TF_TOP1[variant]
    shapes = timm_shapes(variant)
    assert config.params == _keras_params(shapes)
    assert f"{_trainable(shapes):,} trainable parameters" in config.notes
    macs, outputs = _macs(variant, config.input_size)
    assert config.macs == macs
    # The README's MAdds also count element-wise work: 3 operations per convolution output.
    assert 0.03 < 1 - macs / TF_MADDS[variant] < 0.06
    assert (macs + 3 * outputs) == pytest.approx(TF_MADDS[variant], rel=0.005)


def test_macs_formula_counts_what_the_model_counts():
    size = 96
    model = create_model("efficientnet_lite2", weights=None, input_shape=(size, size, 3))
    assert count_macs(model) == _macs(2, size)[0]
    assert sum(math.prod(layer.output.shape[1:]) for layer in _convs_of(model)) == _macs(2, size)[1]


# --------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------


def test_builders_mirror_keras_applications_efficientnet_signature():
    theirs = inspect.signature(keras.applications.EfficientNetB0)
    for n in range(5):
        ours = inspect.signature(getattr(efficientnet_lite, f"EfficientNetLite{n}"))
        positional = [p.name for p in ours.parameters.values() if p.kind is not p.KEYWORD_ONLY]
        assert positional == list(theirs.parameters)
        for parameter in theirs.parameters.values():
            if parameter.name != "name":  # ours: None, i.e. "efficientnet_lite{n}"
                assert ours.parameters[parameter.name].default == parameter.default, parameter.name
        assert ours.parameters["dropout_rate"].default == TF_DROPOUT[n]
        assert ours.parameters["drop_connect_rate"].default == 0.0


def test_classifier_dropout_and_stochastic_depth():
    kwargs = dict(weights=None, input_shape=(64, 64, 3))
    plain = efficientnet_lite.EfficientNetLite3(**kwargs)
    assert plain.get_layer("top_dropout").rate == TF_DROPOUT[3]
    assert plain.name == "efficientnet_lite3"
    assert not any(layer.name.endswith("_drop") for layer in plain.layers)
    deep = efficientnet_lite.EfficientNetLite3(drop_connect_rate=0.2, **kwargs)
    blocks = _stage_block_names(3)
    residual = [i for i, (_, _, stride, cin, _, cout) in enumerate(_blocks(3)) if stride == 1 and cin == cout]
    drops = {layer.name: layer for layer in deep.layers if layer.name.endswith("_drop")}
    expected = {}
    for i in residual:
        stage, block = (int(j) + 1 for j in blocks[i].split(".")[1:])
        expected[f"stage{stage}_block{block}_drop"] = 0.2 * i / len(blocks)
    assert {name: layer.rate for name, layer in drops.items()} == pytest.approx(expected)
    assert all(tuple(layer.noise_shape) == (None, 1, 1, 1) for layer in drops.values())
    # the identity at inference: same weights, same outputs
    deep.set_weights(plain.get_weights())
    images = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(deep(images, training=False)), np.asarray(plain(images, training=False)),
                               rtol=1e-6)
    with pytest.raises(ValueError, match="drop_connect_rate"):
        efficientnet_lite.EfficientNetLite0(drop_connect_rate=1.0, **kwargs)


def test_default_input_size_is_the_variants_resolution():
    model = efficientnet_lite.EfficientNetLite1(weights=None)
    assert tuple(model.input.shape) == (None, 240, 240, 3)


def test_channels_first_matches_channels_last(tmp_path):
    """TF "SAME" padding and the blocks in NCHW: same weights, same logits (65 px: odd sizes pad after)."""
    size = 65
    images = np.random.default_rng(3).normal(size=(2, size, size, 3)).astype(np.float32)
    path = tmp_path / "lite1.safetensors"
    save_file(synthetic_state_dict(1, seed=5), str(path))
    last = create_model("efficientnet_lite1", weights=str(path), input_shape=(size, size, 3),
                        classifier_activation=None)
    try:
        keras.config.set_image_data_format("channels_first")
        first = create_model("efficientnet_lite1", weights=str(path), input_shape=(3, size, size),
                             classifier_activation=None)
        got = np.asarray(first(images.transpose(0, 3, 1, 2), training=False))
    finally:
        keras.config.set_image_data_format("channels_last")
    for mine, theirs in zip(got, np.asarray(last(images, training=False)), strict=True):
        _check_logits(mine, theirs)
