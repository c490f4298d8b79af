"""MnasNet-A1 as timm's ``semnasnet_050`` / ``_075`` / ``_100`` / ``_140`` (timm 1.0.31).

* The reference vectors (``shared/reference/timm/semnasnet_100``: timm's state_dict, an input
  and timm's logits) are reproduced in Keras 3 and tf_keras (the ``legacy`` builder).
* Every other width: a synthetic state_dict with timm's tensor names and shapes, derived here
  from timm's architecture definition (not from ``keras_lightnets.models.mnasnet``), ports
  completely (every tensor used) and its values land where they belong.
* Parameter counts equal timm's (the state_dict's trainable total, timm's published counts);
  MACs of the 1.0 model are within 2% of the paper's 312M.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from keras_lightnets import count_macs, create_model, legacy, list_models, model_config
from keras_lightnets.errors import InputError
from keras_lightnets.models import mnasnet

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "timm" / "semnasnet_100"
needs_reference = pytest.mark.skipif(not REFERENCE.is_dir(), reason=f"no reference vectors in {REFERENCE}")
TOLERANCE = 1e-4  # of the largest |logit| (shared/reference/README.md)
SMALL = 64  # input side of the synthetic ports
WIDTHS = {"mnasnet_a1_050": 0.5, "mnasnet_a1_075": 0.75, "mnasnet_a1_100": 1.0, "mnasnet_a1_140": 1.4}

# timm's ``_gen_mnasnet_a1`` (timm/models/efficientnet.py), one row per stage of ``blocks``:
# (block kind, repeats, depthwise kernel, first stride, expansion, output channels at 1.0, SE ratio).
# Row 0 is the stem's depthwise-separable block ("ds", no skip), the rest inverted residuals.
TIMM_STAGES = (
    ("ds", 1, 3, 1, 1, 16, 0.0),
    ("ir", 2, 3, 2, 6, 24, 0.0),
    ("ir", 3, 5, 2, 3, 40, 0.25),
    ("ir", 4, 3, 2, 6, 80, 0.0),
    ("ir", 2, 3, 1, 6, 112, 0.25),
    ("ir", 3, 5, 2, 6, 160, 0.25),
    ("ir", 1, 3, 1, 6, 320, 0.0),
)
TIMM_STEM, TIMM_HEAD, CLASSES = 32, 1280, 1000  # stem scaled by the multiplier, head not
# timm's results/results-imagenet.csv ``param_count`` (millions, two decimals) of its checkpoints.
TIMM_PUBLISHED_PARAMS_M = {0.75: 2.91, 1.0: 3.89}
REFERENCE_TRAINABLE = 3_887_038  # shared/reference/README.md, semnasnet_100
PAPER_MACS_A1_100 = 312e6  # https://arxiv.org/abs/1807.11626, Table 1: MnasNet-A1, 312M multiply-adds


def _round_channels(channels: float) -> int:
    """timm's ``round_channels``: nearest multiple of 8 (at least 8), never more than 10% down."""
    rounded = max(8, int(channels + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * channels else rounded


def _bn(name: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {f"{name}.{suffix}": (channels,) for suffix in ("weight", "bias", "running_mean", "running_var")}


def timm_shapes(alpha: float) -> dict[str, tuple[int, ...]]:
    """``{tensor name: shape}`` of timm's ``semnasnet`` state_dict at channel multiplier ``alpha``
    (``num_batches_tracked`` counters left out, as in the reference files)."""
    stem = _round_channels(TIMM_STEM * alpha)
    shapes = {"conv_stem.weight": (stem, 3, 3, 3), **_bn("bn1", stem)}
    in_chs = stem
    for stage, (kind, repeats, kernel, _stride, expansion, out, se_ratio) in enumerate(TIMM_STAGES):
        out = _round_channels(out * alpha)
        for block in range(repeats):
            t = f"blocks.{stage}.{block}"
            if kind == "ds":
                shapes.update({f"{t}.conv_dw.weight": (in_chs, 1, kernel, kernel), **_bn(f"{t}.bn1", in_chs),
                               f"{t}.conv_pw.weight": (out, in_chs, 1, 1), **_bn(f"{t}.bn2", out)})
            else:
                mid = in_chs * expansion
                shapes.update({f"{t}.conv_pw.weight": (mid, in_chs, 1, 1), **_bn(f"{t}.bn1", mid),
                               f"{t}.conv_dw.weight": (mid, 1, kernel, kernel), **_bn(f"{t}.bn2", mid)})
                if se_ratio:
                    reduced = int(in_chs * se_ratio)  # from the block's input channels
                    shapes.update({f"{t}.se.conv_reduce.weight": (reduced, mid, 1, 1),
                                   f"{t}.se.conv_reduce.bias": (reduced,),
                                   f"{t}.se.conv_expand.weight": (mid, reduced, 1, 1),
                                   f"{t}.se.conv_expand.bias": (mid,)})
                shapes.update({f"{t}.conv_pwl.weight": (out, mid, 1, 1), **_bn(f"{t}.bn3", out)})
            in_chs = out
    shapes.update({"conv_head.weight": (TIMM_HEAD, in_chs, 1, 1), **_bn("bn2", TIMM_HEAD),
                   "classifier.weight": (CLASSES, TIMM_HEAD), "classifier.bias": (CLASSES,)})
    return shapes


def _trainable_total(shapes: dict[str, tuple[int, ...]]) -> int:
    return sum(int(np.prod(s)) for n, s in shapes.items() if not n.endswith(("running_mean", "running_var")))


def _trainable(model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _synthetic_state_dict(alpha: float, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    state_dict = {}
    for name, shape in timm_shapes(alpha).items():
        values = rng.normal(0.0, 0.1, shape)
        if name.endswith("running_var"):
            values = rng.uniform(0.75, 1.25, shape)
        state_dict[name] = values.astype(np.float32)
    return state_dict


def _check_logits(got: np.ndarray, want: np.ndarray) -> float:
    """Max error relative to the largest |logit|; the top-5 must agree in order."""
    error = float(np.abs(got - want).max() / np.abs(want).max())
    assert error <= TOLERANCE, error
    np.testing.assert_array_equal(np.argsort(-got[0])[:5], np.argsort(-want[0])[:5])
    return error


def _reference() -> tuple[str, np.ndarray, np.ndarray]:
    image = np.load(REFERENCE / "input.npy").transpose(0, 2, 3, 1)  # NCHW -> NHWC
    return str(REFERENCE / "weights.safetensors"), image, np.load(REFERENCE / "logits.npy")


# --------------------------------------------------------------------------------------
# Reference vectors (timm semnasnet_100)
# --------------------------------------------------------------------------------------


@needs_reference
def test_shape_table_is_timms():
    """The independent description above names exactly the reference's tensors and shapes."""
    reference = {name: tuple(a.shape) for name, a in load_file(REFERENCE / "weights.safetensors").items()}
    assert timm_shapes(1.0) == reference
    assert _trainable_total(reference) == REFERENCE_TRAINABLE


@needs_reference
@pytest.mark.parametrize("flavour", ["keras", "tf_keras"])
def test_reference_logits(flavour):
    path, image, want = _reference()
    builder = mnasnet.MnasNetA1 if flavour == "keras" else legacy.MnasNetA1
    model = builder(weights=path, classifier_activation=None)
    assert type(model).__module__.startswith("tf_keras" if flavour == "tf_keras" else "keras")
    _check_logits(np.asarray(model(image, training=False)), want)
    assert _trainable(model) == REFERENCE_TRAINABLE
    config = model_config("mnasnet_a1_100")
    assert (model.count_params(), count_macs(model)) == (config.params, config.macs)
    assert count_macs(model) == pytest.approx(PAPER_MACS_A1_100, rel=0.02)


@needs_reference
def test_headless_port_skips_the_classifier():
    path, image, _ = _reference()
    headless = mnasnet.MnasNetA1(weights=path, include_top=False, pooling="avg", input_shape=(SMALL, SMALL, 3))
    assert tuple(headless.output.shape) == (None, 1280)
    assert np.isfinite(np.asarray(headless(image[:, :SMALL, :SMALL], training=False))).all()


@needs_reference
def test_other_width_checkpoint_is_refused_naming_the_tensor():
    path, _, _ = _reference()
    with pytest.raises(InputError, match=r"'conv_stem\.weight' has shape \(32, 3, 3, 3\)"):
        mnasnet.MnasNetA1(alpha=0.75, weights=path, input_shape=(SMALL, SMALL, 3))


# --------------------------------------------------------------------------------------
# Every width: synthetic timm state_dicts
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(WIDTHS))
def test_synthetic_timm_checkpoint_ports_completely(name, tmp_path):
    alpha = WIDTHS[name]
    state_dict = _synthetic_state_dict(alpha)
    path = tmp_path / f"semnasnet_{name[-3:]}.safetensors"
    save_file(state_dict, str(path))
    # convert_state_dict refuses a checkpoint with any tensor left unused or missing.
    model = create_model(name, weights=str(path), input_shape=(SMALL, SMALL, 3), classifier_activation=None)
    def weight(layer: str, attribute: str) -> np.ndarray:
        return np.asarray(getattr(model.get_layer(layer), attribute))

    np.testing.assert_array_equal(weight("stem_conv", "kernel"), state_dict["conv_stem.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(weight("stage5_block3_depthwise", "kernel")[..., 0],
                                  state_dict["blocks.5.2.conv_dw.weight"][:, 0].transpose(1, 2, 0))
    np.testing.assert_array_equal(weight("stage2_block1_squeeze_excite_conv", "bias"),
                                  state_dict["blocks.2.0.se.conv_reduce.bias"])
    np.testing.assert_array_equal(weight("stage4_block2_squeeze_excite_conv_1", "kernel")[0, 0],
                                  state_dict["blocks.4.1.se.conv_expand.weight"][:, :, 0, 0].T)
    np.testing.assert_array_equal(weight("stage6_block1_project_bn", "gamma"), state_dict["blocks.6.0.bn3.weight"])
    np.testing.assert_array_equal(weight("head_conv_bn", "moving_variance"), state_dict["bn2.running_var"])
    np.testing.assert_array_equal(weight("predictions", "kernel"), state_dict["classifier.weight"].T)
    # Parameters: the Keras trainable count is timm's (the state_dict's trainable tensors).
    assert _trainable(model) == _trainable_total(timm_shapes(alpha))
    if alpha in TIMM_PUBLISHED_PARAMS_M:
        assert round(_trainable(model) / 1e6, 2) == TIMM_PUBLISHED_PARAMS_M[alpha]
    assert model.count_params() == model_config(name).params  # registry fact (input size does not matter)


def test_widths_are_registered_and_imagenet_needs_weight_files():
    assert list_models("mnasnet_a1_*") == sorted(WIDTHS)
    for name, alpha in WIDTHS.items():
        config = model_config(name)
        assert config.kwargs["alpha"] == alpha and config.preprocessing == "torch"
        assert f"{_trainable_total(timm_shapes(alpha)):,} trainable" in config.notes
        if alpha not in TIMM_PUBLISHED_PARAMS_M:  # timm has no checkpoint of 0.5 and 1.4
            assert config.weights == () and config.top1 is None
        if not config.weight_files:
            with pytest.raises(InputError, match=f"no ImageNet weights for alpha={alpha}"):
                create_model(name, weights="imagenet")


def test_squeeze_excite_reduces_from_the_block_input():
    """72 expanded channels of a 24-channel block -> 6 (shared/reference/README.md), with a sigmoid gate."""
    model = mnasnet.MnasNetA1(weights=None, include_top=False, input_shape=(SMALL, SMALL, 3))
    assert model.get_layer("stage2_block1_squeeze_excite_conv").filters == 6
    assert model.get_layer("stage2_block1_expand").filters == 72
    assert model.get_layer("stage2_block1_squeeze_excite_sigmoid").get_config()["activation"] == "sigmoid"
    assert mnasnet.se_filters_a1(72, 3) == 6 and mnasnet.se_filters_a1(960, 6) == 40
