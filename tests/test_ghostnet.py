"""GhostNet: an exact twin of timm 1.0.31's ``ghostnet_050`` / ``ghostnet_100`` / ``ghostnet_130``.

* The reference vectors (``shared/reference/timm/ghostnet_100``: a timm state_dict, an
  input and timm's logits) are reproduced in Keras 3 and tf_keras.
* For every width, a state_dict with timm's tensor names and shapes, written here from
  timm's module structure and its ``cfgs`` table (not from ``torch_mapping``), ports
  completely (every tensor used) and its values land where they should; the generator
  reproduces the reference checkpoint's names and shapes exactly.
* Parameter counts equal the state_dicts' (and the reference README's 5,182,508 for 1.0x);
  MACs are within 2% of the paper's FLOPs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from keras_lightnets import GhostNet, count_macs, create_model, legacy, model_config
from keras_lightnets.errors import InputError
from keras_lightnets.models import ghostnet

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "timm" / "ghostnet_100"
needs_reference = pytest.mark.skipif(not REFERENCE.is_dir(), reason=f"no reference vectors in {REFERENCE}")
TOLERANCE = 1e-4  # of the largest |logit|
SMALL = 64  # input side of the tests that need no particular size
WIDTHS = {"ghostnet_050": 0.5, "ghostnet_100": 1.0, "ghostnet_130": 1.3}
REFERENCE_TRAINABLE = 5_182_508  # shared/reference/README.md, timm's ghostnet_100
# arXiv 1911.11907, Table 7: FLOPs (multiply-adds) at 224x224.
PAPER_MACS = {"ghostnet_050": 42e6, "ghostnet_100": 141e6, "ghostnet_130": 226e6}

# timm's ``_create_ghostnet`` cfgs, one list per ``blocks.<i>`` stage:
# [depthwise kernel, expanded channels, output channels, SE ratio, stride] at width 1.
TIMM_CFGS = [
    [[3, 16, 16, 0, 1]],
    [[3, 48, 24, 0, 2]],
    [[3, 72, 24, 0, 1]],
    [[5, 72, 40, 0.25, 2]],
    [[5, 120, 40, 0.25, 1]],
    [[3, 240, 80, 0, 2]],
    [[3, 200, 80, 0, 1], [3, 184, 80, 0, 1], [3, 184, 80, 0, 1], [3, 480, 112, 0.25, 1], [3, 672, 112, 0.25, 1]],
    [[5, 672, 160, 0.25, 2]],
    [[5, 960, 160, 0, 1], [5, 960, 160, 0.25, 1], [5, 960, 160, 0, 1], [5, 960, 160, 0.25, 1]],
]
BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var")


def _timm_divisible(value: float, divisor: int = 4) -> int:
    """timm.layers.make_divisible (round half up to a multiple, never below 90%)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def timm_shapes(width: float, classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """``{tensor name: shape}`` of timm's ``GhostNet(cfgs, width=width).state_dict()`` (counters dropped),
    written from timm's modules: ``GhostModule`` (primary_conv, cheap_operation: ``ceil(out / 2)``
    channels each), ``GhostBottleneck`` (ghost1, conv_dw/bn_dw for stride 2, se, ghost2, shortcut
    unless stride 1 and equal channels), ``ConvBnAct`` (conv, bn1), conv_head and classifier."""
    shapes: dict[str, tuple[int, ...]] = {}

    def batch_norm(prefix: str, n: int) -> None:
        shapes.update({f"{prefix}.{suffix}": (n,) for suffix in BN_SUFFIXES})

    def ghost_module(prefix: str, cin: int, cout: int) -> None:
        init = math.ceil(cout / 2)
        shapes[f"{prefix}.primary_conv.0.weight"] = (init, cin, 1, 1)
        batch_norm(f"{prefix}.primary_conv.1", init)
        shapes[f"{prefix}.cheap_operation.0.weight"] = (init, 1, 3, 3)
        batch_norm(f"{prefix}.cheap_operation.1", init)

    prev = _timm_divisible(16 * width)
    shapes["conv_stem.weight"] = (prev, 3, 3, 3)
    batch_norm("bn1", prev)
    for i, stage in enumerate(TIMM_CFGS):
        for j, (k, exp, c, se_ratio, stride) in enumerate(stage):
            p, mid, out = f"blocks.{i}.{j}", _timm_divisible(exp * width), _timm_divisible(c * width)
            ghost_module(f"{p}.ghost1", prev, mid)
            if stride > 1:
                shapes[f"{p}.conv_dw.weight"] = (mid, 1, k, k)
                batch_norm(f"{p}.bn_dw", mid)
            if se_ratio:
                reduced = _timm_divisible(mid * se_ratio)
                shapes.update({
                    f"{p}.se.conv_reduce.weight": (reduced, mid, 1, 1), f"{p}.se.conv_reduce.bias": (reduced,),
                    f"{p}.se.conv_expand.weight": (mid, reduced, 1, 1), f"{p}.se.conv_expand.bias": (mid,),
                })
            ghost_module(f"{p}.ghost2", mid, out)
            if not (prev == out and stride == 1):
                shapes[f"{p}.shortcut.0.weight"] = (prev, 1, k, k)
                batch_norm(f"{p}.shortcut.1", prev)
                shapes[f"{p}.shortcut.2.weight"] = (out, prev, 1, 1)
                batch_norm(f"{p}.shortcut.3", out)
            prev = out
    last = _timm_divisible(960 * width)
    shapes[f"blocks.{len(TIMM_CFGS)}.0.conv.weight"] = (last, prev, 1, 1)
    batch_norm(f"blocks.{len(TIMM_CFGS)}.0.bn1", last)
    shapes.update({"conv_head.weight": (1280, last, 1, 1), "conv_head.bias": (1280,),
                   "classifier.weight": (classes, 1280), "classifier.bias": (classes,)})
    return shapes


def _counts(shapes: dict[str, tuple[int, ...]]) -> tuple[int, int]:
    """(all values, trainable values: BatchNorm running statistics excluded)."""
    total = sum(math.prod(s) for s in shapes.values())
    return total, total - sum(math.prod(s) for n, s in shapes.items() if n.endswith(("running_mean", "running_var")))


def _random_state_dict(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in shapes.items():
        if name.endswith(("running_var", ".weight")) and len(shape) == 1:  # BatchNorm variance and gamma
            state[name] = rng.uniform(0.75, 1.25, shape).astype("float32")
        else:
            state[name] = rng.normal(0.0, 0.1, shape).astype("float32")
    return state


def _check_logits(got: np.ndarray, want: np.ndarray) -> float:
    error = float(np.abs(got - want).max() / np.abs(want).max())
    assert error <= TOLERANCE, error
    np.testing.assert_array_equal(np.argsort(-got[0])[:5], np.argsort(-want[0])[:5])
    return error


# --------------------------------------------------------------------------------------
# The reference vectors
# --------------------------------------------------------------------------------------


@needs_reference
@pytest.mark.parametrize("flavour", ["keras", "tf_keras"])
def test_reference_vectors_reproduced(flavour):
    model = create_model("ghostnet_100", weights=str(REFERENCE / "weights.safetensors"), classifier_activation=None,
                         flavour=flavour)
    image = np.load(REFERENCE / "input.npy").transpose(0, 2, 3, 1)  # NCHW -> NHWC
    got = np.asarray(model(image, training=False))
    error = _check_logits(got, np.load(REFERENCE / "logits.npy"))
    print(f"ghostnet_100 {flavour}: max |diff| / max |ref| = {error:.2e}")


@needs_reference
def test_generated_names_and_shapes_are_the_reference_checkpoints():
    """The state_dict generator used for the other widths reproduces the real one at 1.0x."""
    reference = {name: tuple(array.shape) for name, array in load_file(REFERENCE / "weights.safetensors").items()}
    assert timm_shapes(1.0) == reference
    assert _counts(reference)[1] == REFERENCE_TRAINABLE


@needs_reference
def test_headless_model_takes_the_full_checkpoint():
    """Without the top, conv_head's and the classifier's tensors are skipped; the rest lands."""
    state = load_file(REFERENCE / "weights.safetensors")
    model = GhostNet(include_top=False, weights=str(REFERENCE / "weights.safetensors"), input_shape=(SMALL, SMALL, 3))
    assert model.output.shape[-1] == 960
    kernel = model.get_layer("conv_last").get_weights()[0]
    np.testing.assert_array_equal(kernel, state["blocks.9.0.conv.weight"].astype("float32").transpose(2, 3, 1, 0))


# --------------------------------------------------------------------------------------
# Every width: synthetic timm state_dicts, parameters, MACs
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(WIDTHS))
def test_timm_state_dict_ports_completely(name, tmp_path):
    shapes = timm_shapes(WIDTHS[name], classes=10)
    state = _random_state_dict(shapes)
    path = tmp_path / f"{name}.safetensors"
    save_file(state, str(path))
    model = GhostNet(alpha=WIDTHS[name], weights=str(path), input_shape=(SMALL, SMALL, 3), classes=10,
                     classifier_activation=None)
    # convert_state_dict refuses unused tensors, so loading means every tensor found its layer.
    total, trainable = _counts(shapes)
    assert model.count_params() == total
    assert sum(math.prod(w.shape) for w in model.trainable_weights) == trainable

    def keras(layer: str) -> list[np.ndarray]:
        return model.get_layer(layer).get_weights()

    np.testing.assert_array_equal(keras("conv_stem")[0], state["conv_stem.weight"].transpose(2, 3, 1, 0))
    gamma, beta, mean, var = keras("conv_stem_bn")
    np.testing.assert_array_equal(np.stack([gamma, beta, mean, var]),
                                  np.stack([state[f"bn1.{s}"] for s in BN_SUFFIXES]))
    # a stride-2 bottleneck with squeeze-excite and a projecting shortcut (5x5 depthwise kernels)
    np.testing.assert_array_equal(keras("block3_0_dw")[0][:, :, :, 0],
                                  state["blocks.3.0.conv_dw.weight"][:, 0].transpose(1, 2, 0))
    np.testing.assert_array_equal(keras("block3_0_shortcut_dw")[0][:, :, :, 0],
                                  state["blocks.3.0.shortcut.0.weight"][:, 0].transpose(1, 2, 0))
    np.testing.assert_array_equal(keras("block3_0_shortcut_pw_bn")[3], state["blocks.3.0.shortcut.3.running_var"])
    reduce_kernel, reduce_bias = keras("block3_0_squeeze_excite_conv")
    np.testing.assert_array_equal(reduce_kernel, state["blocks.3.0.se.conv_reduce.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(reduce_bias, state["blocks.3.0.se.conv_reduce.bias"])
    np.testing.assert_array_equal(keras("block8_3_ghost2_cheap")[0][:, :, :, 0],
                                  state["blocks.8.3.ghost2.cheap_operation.0.weight"][:, 0].transpose(1, 2, 0))
    np.testing.assert_array_equal(keras("block6_3_shortcut_pw")[0],
                                  state["blocks.6.3.shortcut.2.weight"].transpose(2, 3, 1, 0))
    head_kernel, head_bias = keras("conv_head")
    np.testing.assert_array_equal(head_kernel, state["conv_head.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(head_bias, state["conv_head.bias"])
    dense_kernel, dense_bias = keras("predictions")
    np.testing.assert_array_equal(dense_kernel, state["classifier.weight"].T)
    np.testing.assert_array_equal(dense_bias, state["classifier.bias"])


@pytest.mark.parametrize("name", sorted(WIDTHS))
def test_parameters_and_macs(name):
    """Keras' counts equal timm's state_dict (BatchNorm statistics included, and the trainable
    count without them), the registry's facts; MACs within 2% of the paper's FLOPs."""
    model = create_model(name, weights=None)
    total, trainable = _counts(timm_shapes(WIDTHS[name]))
    assert model.count_params() == total == model_config(name).params
    assert sum(math.prod(w.shape) for w in model.trainable_weights) == trainable
    assert f"{trainable:,} trainable" in model_config(name).notes
    macs = count_macs(model)
    assert macs == model_config(name).macs
    assert abs(macs / PAPER_MACS[name] - 1) <= 0.02, macs
    print(f"{name}: params {total:,} ({trainable:,} trainable), MACs {macs:,} (paper {PAPER_MACS[name]:,.0f})")


def test_trainable_count_of_1x_is_the_reference_readme():
    assert _counts(timm_shapes(1.0))[1] == REFERENCE_TRAINABLE


def test_checkpoint_of_another_width_is_refused(tmp_path):
    path = tmp_path / "ghostnet_050.safetensors"
    save_file(_random_state_dict(timm_shapes(0.5)), str(path))
    with pytest.raises(InputError, match=r"tensor 'conv_stem.weight' has shape \(8, 3, 3, 3\)"):
        GhostNet(alpha=1.0, weights=str(path), input_shape=(SMALL, SMALL, 3))


# --------------------------------------------------------------------------------------
# Structure
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.1, 0.25, 0.5, 0.75, 1.0, 1.3, 1.7, 2.0, 3.3])
def test_ghost_module_widths_are_even_so_timms_slice_keeps_everything(alpha):
    """timm concatenates ceil(out / 2) + ceil(out / 2) channels and slices to ``out``: a no-op
    for even ``out``, which every width gives (channels are multiples of 4)."""
    for stage in ghostnet.STAGES:
        for _, expanded, out, _, _ in stage:
            assert ghostnet.scaled(expanded, alpha) % 4 == 0 and ghostnet.scaled(out, alpha) % 4 == 0


def test_odd_ghost_module_width_is_refused():
    import keras

    with pytest.raises(ValueError, match="even channel count; received 7"):
        ghostnet._ghost_module(keras.Input((8, 8, 4)), 7, relu=True, prefix="g_")


def test_ghost_module_and_bottleneck_layout():
    model = GhostNet(weights=None, input_shape=(SMALL, SMALL, 3), alpha=0.5)
    concat = model.get_layer("block3_0_ghost1_concat")
    primary, cheap = (t._keras_history[0].name for t in concat.input)
    assert (primary, cheap) == ("block3_0_ghost1_primary_relu", "block3_0_ghost1_cheap_relu")
    assert concat.output.shape[-1] == ghostnet.scaled(72, 0.5)
    # identity shortcut only for stride 1 and equal channels; ghost2 ends without activation
    names = {layer.name for layer in model.layers}
    assert "block0_0_shortcut_dw" not in names and "block6_3_shortcut_dw" in names
    assert not any(n.startswith("block0_0_ghost2") and n.endswith("relu") for n in names)
    assert type(model.get_layer("block3_0_squeeze_excite_hard_sigmoid")).__name__ == "HardSigmoid"
    assert model.get_layer("dropout").rate == ghostnet.DROPOUT_RATE
    assert model.get_layer("conv_head").use_bias


def test_imagenet_weights_give_the_standard_error():
    with pytest.raises(ValueError, match=r"ImageNet weights exist only for alpha in 1\.0"):
        GhostNet(alpha=0.5)


def test_legacy_builder_is_tf_keras():
    import tf_keras

    assert isinstance(legacy.GhostNet(weights=None, input_shape=(SMALL, SMALL, 3), alpha=0.5), tf_keras.Model)
