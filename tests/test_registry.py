"""The registry: names, errors, the records' consistency, and a toy family registered from here.

The toy family (``ToyNet`` below) is built from ``models.builder`` and ``models.blocks``
and registered with ``register_model`` by this file alone: listing, building, feature
maps, facts, weight files (a mirror and a test manifest), unfreezing and the benchmark
twin all work for it without any other package file knowing it exists.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import re

import numpy as np
import pytest
from helpers import image_batch, infer, randomize_weights, smallest_per_family

from keras_lightnets import count_macs, imagenet
from keras_lightnets.errors import InputError
from keras_lightnets.models import blocks, builder, features, registry
from keras_lightnets.models.registry import (
    FEATURE_STRIDES,
    WeightFile,
    create_model,
    list_models,
    model_config,
    register_model,
    registered,
    variant_of,
    weight_sources,
)
from keras_lightnets.pipelines import bench
from keras_lightnets.training.unfreeze import block_groups, layer_groups, unfreeze_top_blocks
from keras_lightnets.weights import download

ALL = list_models()


# --------------------------------------------------------------------------- names and errors


def test_registry_is_populated():
    families = {model_config(n).family for n in ALL}
    assert {"mobilenet_v1", "mobilenet_v2", "mobilenet_v3", "nasnet"} <= families
    assert list_models("mobilenet_v3*") == [n for n in ALL if n.startswith("mobilenet_v3")]
    assert set(list_models(pretrained=True)) <= set(ALL)


def test_list_models_patterns():
    assert list_models() == ALL == sorted(ALL) and len(ALL) == len(registered())
    assert list_models("squeezenet1_?") == ["squeezenet1_0", "squeezenet1_1"]
    assert list_models("mnasnet_[ab]1_100") == ["mnasnet_a1_100", "mnasnet_b1_100"]
    assert list_models("MobileNet*") == []  # case-sensitive, like the names
    assert list_models("nothing*") == []
    assert "mnasnet_a1_140" in ALL and "mnasnet_a1_140" not in list_models(pretrained=True)
    assert list_models("mnasnet*", pretrained=True) == ["mnasnet_a1_075", "mnasnet_a1_100", "mnasnet_b1_050",
                                                        "mnasnet_b1_075", "mnasnet_b1_100", "mnasnet_b1_130"]


@pytest.mark.parametrize(("call", "message"), [
    (lambda: list_models(3), "`pattern` must be a shell-style pattern string"),
    (lambda: list_models(None), "received pattern=None"),
    (lambda: list_models(pretrained="yes"), "`pretrained` must be True or False"),
    (lambda: model_config(7), "`name` must be a registered model name"),
])
def test_argument_types_are_type_errors(call, message):
    with pytest.raises(TypeError, match=re.escape(message)):
        call()


def test_unknown_names_are_input_errors_with_the_way_out():
    with pytest.raises(InputError, match="list_models") as info:
        model_config("mobilenet_v9")
    assert "Similar: mobilenet_v1_025" in str(info.value) and f"the {len(ALL)} registered names" in str(info.value)
    with pytest.raises(InputError, match="unknown model ''"):
        model_config("")
    with pytest.raises(InputError) as info:
        model_config("zzz")
    assert "Similar" not in str(info.value)


def test_unknown_model_name_lists_the_way_out():
    with pytest.raises(ValueError, match="list_models"):
        create_model("mobilenet_v9", weights=None)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"features_only": 1}, TypeError, "`features_only` must be True or False"),
    ({"flavour": "torch"}, InputError, "`flavour` must be None or one of"),
    ({"out_indices": "01", "features_only": True}, TypeError, "`out_indices` must be None or a sequence of ints"),
    ({"out_indices": 3, "features_only": True}, TypeError, "`out_indices` must be None or a sequence of ints"),
])
def test_create_model_argument_errors_come_before_any_build(kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        create_model("mobilenet_v2_035", weights=None, **kwargs)


def test_features_only_rejects_bad_arguments():
    with pytest.raises(ValueError, match="out_indices"):
        create_model("mobilenet_v2_035", features_only=True, out_indices=(7,), weights=None)
    with pytest.raises(ValueError, match="out_indices"):
        create_model("mobilenet_v2_035", out_indices=(1,), weights=None)
    with pytest.raises(ValueError, match="include_top"):
        create_model("mobilenet_v2_035", features_only=True, include_top=True, weights=None)


def test_register_model_refuses_duplicates_and_bad_facts(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    facts = dict(family="x", input_size=32, params=1, macs=1, top1=None, paper="https://example.invalid")
    with pytest.raises(ValueError, match="already registered"):
        register_model("squeezenet1_1", ToyNet, preprocessing="tf", **facts)
    with pytest.raises(ValueError, match=r"`preprocessing` must be one of \['bgr255', 'in_model', 'tf', 'torch'\]"):
        register_model("x_1", ToyNet, preprocessing="caffe", **facts)
    with pytest.raises(re.error):
        register_model("x_2", ToyNet, preprocessing="tf", layer_groups=[("(unclosed", r"\1")], **facts)
    assert "x_1" not in list_models() and "x_2" not in list_models()


def test_architecture_names_the_code_path_and_ignores_the_width(monkeypatch):
    assert model_config("mobilenet_v2_035").architecture == model_config("mobilenet_v2_140").architecture
    assert model_config("mobilenet_v3_small_100").architecture == model_config("mobilenet_v3_large_100").architecture
    assert model_config("mobilenet_v3_small_minimal_100").architecture == "MobileNetV3(minimalistic=True)"
    assert model_config("shufflenet_v2_x1_0").architecture == "ShuffleNetV2()"  # the default: builder, kwargs
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    facts = dict(family="x", input_size=32, params=1, macs=1, top1=None, paper="https://example.invalid",
                 preprocessing="tf")
    assert register_model("x_1", ToyNet, {"alpha": 0.5, "depth": 2}, **facts).architecture == "ToyNet(depth=2)"
    assert register_model("x_2", ToyNet, {"depth": 3}, architecture="toy", **facts).architecture == "toy"
    assert model_config("x_2").as_dict()["architecture"] == "toy"


# Multiply-accumulates at 224x224 reported by the papers (MobileNet V1 Table 8, V2 Table 4 / model zoo,
# V3 Table 3, NASNet Table 2); the counter must agree within 2%.
PAPER_MACS = {
    "mobilenet_v1_100": 569e6,
    "mobilenet_v2_100": 300e6,
    "mobilenet_v3_large_100": 217e6,
    "mobilenet_v3_small_100": 56e6,
    "nasnet_mobile": 564e6,
}


@pytest.mark.parametrize("name", sorted(PAPER_MACS))
def test_macs_agree_with_the_papers(name):
    assert model_config(name).macs == pytest.approx(PAPER_MACS[name], rel=0.02)


# --------------------------------------------------------------------------- the records agree


def test_every_weight_file_of_a_record_is_in_the_manifest_and_back(real_manifest):
    named: dict[str, list[str]] = {}
    for config in registered():
        assert ("imagenet" in config.weights) == bool(config.weight_files), config.name
        sides = [(f.input_size, f.include_top) for f in config.weight_files]
        assert len(sides) == len(set(sides)), f"{config.name}: two files for one size and top"
        for file in config.weight_files:
            named.setdefault(file.name, []).append(config.name)
    assert set(named) == set(real_manifest)
    assert [f for f, users in named.items() if len(users) > 1] == []  # one variant per file


def test_every_record_names_its_preprocessing_module_and_builder():
    for config in registered():
        assert config.preprocessing in imagenet.PREPROCESSING, config.name
        module = importlib.import_module(config.module)
        assert getattr(module, config.builder.__name__) is config.builder, config.name
        assert variant_of(config.builder, **config.kwargs) is config, config.name
        assert set(config.kwargs) <= set(inspect.signature(config.builder).parameters), config.name


def test_twins_exist_in_keras_applications():
    import keras

    twins = {name: model_config(name).twin for name in ALL if model_config(name).twin is not None}
    assert {model_config(n).family for n in twins} == {"mobilenet_v1", "mobilenet_v2", "mobilenet_v3", "nasnet"}
    for name, twin in twins.items():
        twin_builder = getattr(keras.applications, twin.builder)
        assert set(twin.kwargs) <= set(inspect.signature(twin_builder).parameters), name
        assert bench.twin_of(name) == (twin.builder, dict(twin.kwargs))
    for name in set(ALL) - set(twins):
        assert bench.twin_of(name) is None


@pytest.mark.parametrize("name", smallest_per_family())
def test_every_family_groups_every_weighted_layer(name):
    config = model_config(name)
    assert config.layer_groups, f"{config.family} declares no layer groups"
    model = create_model(name, weights=None, input_shape=(64, 64, 3))
    weighted = [layer.name for layer in model.layers if layer.weights]
    groups = block_groups(model, model_name=name)
    assert [layer.name for _, layers in groups for layer in layers] == weighted  # each once, in order
    assert len(groups) < len(weighted) / 2  # the groups group
    for pattern, _ in config.layer_groups:
        assert any(re.match(pattern, layer) for layer in weighted), f"{name}: {pattern!r} matches no layer"
    # Every family's groups together give the same blocks (no family's pattern catches another's layers).
    assert [(key, len(layers)) for key, layers in block_groups(model)] == [(key, len(layers)) for key, layers in groups]


def test_variant_of_and_weight_file_pick_the_record_and_its_file():
    from keras_lightnets.models.mobilenet_v3 import MobileNetV3Small
    from keras_lightnets.models.squeezenet import SqueezeNet

    assert variant_of(MobileNetV3Small, alpha=1, minimalistic=True).name == "mobilenet_v3_small_minimal_100"
    assert variant_of(MobileNetV3Small, alpha=1.0, minimalistic=False).name == "mobilenet_v3_small_100"
    with pytest.raises(InputError, match=r"no registered variant of MobileNetV3Small has alpha=0.5"):
        variant_of(MobileNetV3Small, alpha=0.5, minimalistic=False)
    v2 = model_config("mobilenet_v2_035")
    assert v2.weight_file(96, include_top=False) == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5"
    assert v2.weight_file() == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224.h5"
    with pytest.raises(InputError, match=r"no ImageNet weights for input size 100 without the top; sizes with "
                                         r"weights: \[96, 128, 160, 192, 224\]"):
        v2.weight_file(100, include_top=False)
    squeezenet = variant_of(SqueezeNet, version="1.0")
    assert squeezenet.weight_file(include_top=False) == squeezenet.weight_file() == "squeezenet1_0-b66bff10.pth"
    assert model_config("mnasnet_a1_100").weight_file() == "semnasnet_100.rmsp_in1k.safetensors"
    with pytest.raises(InputError, match="sizes with weights: none"):
        model_config("mnasnet_a1_140").weight_file()


# --------------------------------------------------------------------------- a toy family, registered here

_BN = blocks.BatchNorm()
TOY_GROUPS = ((r"(stage\d+)_", r"\1"),)  # stage1_conv, stage1_conv_bn, stage1_pw, ... -> "stage1"


def ToyNet(
    input_shape=None, width=8, include_top=True, weights=None, input_tensor=None, pooling=None,
    classes=1000, classifier_activation="softmax", name=None, *, include_preprocessing=False,
):
    """A stem and two stages of (3x3 stride-2 conv, 1x1 conv), each conv + BatchNorm + ReLU."""
    image, inputs, _ = builder.prepare_input(
        input_shape=input_shape, input_tensor=input_tensor, weights=weights, include_top=include_top,
        classes=classes, pooling=pooling, classifier_activation=classifier_activation, default_size=32,
    )
    x = builder.in_model_preprocessing(image, include_preprocessing, "tf")
    x = features.mark(blocks.conv_bn(x, width, 3, stride=2, name="stem", bn=_BN, act="relu"))
    for stage in (1, 2):
        x = blocks.conv_bn(x, width * 2**stage, 3, stride=2, name=f"stage{stage}_conv", bn=_BN, act="relu")
        x = blocks.conv_bn(x, width * 2**stage, 1, name=f"stage{stage}_pw", bn=_BN, act="relu")
        features.mark(x)  # strides 4 and 8, read from the graph
    x = blocks.classifier_or_pooling(x, include_top=include_top, pooling=pooling, classes=classes,
                                     classifier_activation=classifier_activation)
    return builder.finish_model(
        inputs, x, name=name or f"toynet_{width}", weights=weights,
        imagenet_file=lambda: variant_of(ToyNet, width=width).weight_file(32, include_top),
    )


TOY_FILES = (WeightFile("toynet_008_32.weights.h5", 32, True), WeightFile("toynet_008_32_no_top.weights.h5", 32, False))


@pytest.fixture
def toy_family(monkeypatch):
    """Registers ``toynet_008`` (with weight files and a twin) and ``toynet_016``; unregistered after."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    facts = dict(family="toynet", input_size=32, preprocessing="tf", top1=None, paper="https://example.invalid/toy",
                 module=__name__, layer_groups=TOY_GROUPS)
    register_model("toynet_008", ToyNet, {"width": 8}, params=40_672, macs=267_520, weight_files=TOY_FILES,
                   twin=("ToyTwin", {"width": 8}), **facts)
    register_model("toynet_016", ToyNet, {"width": 16}, params=94_424, macs=895_488, **facts)


def test_a_toy_family_needs_no_other_file(toy_family, tmp_path, monkeypatch):
    assert list_models("toynet*") == ["toynet_008", "toynet_016"]
    assert list_models("toynet*", pretrained=True) == ["toynet_008"]
    for name in ("toynet_008", "toynet_016"):  # the stated facts, re-derived
        config = model_config(name)
        model = create_model(name, input_shape=config.input_shape)
        assert (model.count_params(), count_macs(model), tuple(model.output.shape)) == (
            config.params, config.macs, (None, 1000))
    features_model = create_model("toynet_016", features_only=True, input_shape=(64, 64, 3))
    assert [info["stride"] for info in features_model.feature_info] == list(FEATURE_STRIDES[:3])
    assert [tuple(o.shape) for o in features_model.outputs] == [(None, 32, 32, 16), (None, 16, 16, 32),
                                                                (None, 8, 8, 64)]

    classifier = create_model("toynet_008", classes=3)
    assert [key for key, _ in block_groups(classifier, exclude=["predictions"], model_name="toynet_008")] == [
        "stem", "stage1", "stage2"]
    assert layer_groups("toynet_008") == TOY_GROUPS and set(TOY_GROUPS) <= set(layer_groups())
    assert unfreeze_top_blocks(classifier, 1, ["predictions"], model_name="toynet_008") == ["stage2"]
    assert {layer.name for layer in classifier.layers if layer.trainable and layer.weights} == {
        "stage2_conv", "stage2_pw", "predictions"}
    assert bench.twin_of("toynet_008") == ("ToyTwin", {"width": 8}) and bench.twin_of("toynet_016") is None

    # weights="imagenet": the record names the files, a test manifest gives their bytes' facts, a mirror has them.
    mirror, entries, expected = tmp_path / "mirror", {}, {}
    mirror.mkdir()
    x = image_batch(32) / 127.5 - 1.0
    for file in TOY_FILES:
        reference = ToyNet(width=8, include_top=file.include_top, input_shape=(32, 32, 3))
        randomize_weights(reference, seed=5)
        reference.save_weights(str(mirror / file.name))
        expected[file.include_top] = infer(reference, x)
        data = (mirror / file.name).read_bytes()
        entries[file.name] = download.make_entry(
            f"https://invalid.example/{file.name}", hash=None, sha256=hashlib.sha256(data).hexdigest(),
            size=len(data), max_bytes=1 << 20, format="keras-weights-h5", source="a test", license="TEST-1")
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 1, "files": entries}))
    monkeypatch.setenv(download.MANIFEST_ENV, str(tmp_path / "manifest.json"))
    monkeypatch.setenv(download.MIRROR_ENV, str(mirror))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    download._load_manifest.cache_clear()
    try:
        with download.offline():  # nothing is downloaded
            for include_top in (True, False):
                model = create_model("toynet_008", weights="imagenet", include_top=include_top,
                                     input_shape=(32, 32, 3))
                np.testing.assert_allclose(infer(model, x), expected[include_top], atol=1e-6)
        sources = weight_sources("toynet_008")
    finally:
        download._load_manifest.cache_clear()
    assert [(s["file"], s["input_size"], s["include_top"], s["license"]) for s in sources] == [
        ("toynet_008_32.weights.h5", 32, True, "TEST-1"), ("toynet_008_32_no_top.weights.h5", 32, False, "TEST-1")]
    assert list(sources[0]) == ["file", *registry.SOURCE_FIELDS]
