"""The reference detector presets: records, facts re-derived from the built models, and ``create_detector``.

The exactness of each twin against its reference vectors is in ``test_detection_torchvision_twins.py``
and ``test_detection_pytorch_ssd.py``; here: what the registry says about every preset is what
the built model is (parameters, MACs, anchors, classes, box convention), the registry's
``list_models``/``model_config``/``create_model`` reach the presets, a checkpoint ported once by
``tools/port_weights.py`` loads back with the same outputs, and bad arguments are named.
"""

from __future__ import annotations

import gc
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import WAIT_S, infer

import keras_lightnets
from keras_lightnets import count_macs, create_model, list_models, model_config
from keras_lightnets.detection import presets
from keras_lightnets.errors import InputError

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
NAMES = ["mb1_ssd", "mb2_ssd_lite", "retinanet_mobilenet_v3_large_fpn", "ssdlite320_mobilenet_v3_large"]


def test_the_registry_lists_the_presets():
    assert list_models(task="detection") == presets.list_detectors() == NAMES
    assert list_models("mb*", task="detection") == ["mb1_ssd", "mb2_ssd_lite"]
    # pretrained: the presets whose reference publishes a checkpoint (torchvision has no RetinaNet-MobileNetV3).
    assert list_models(task="detection", pretrained=True) == [
        "mb1_ssd", "mb2_ssd_lite", "ssdlite320_mobilenet_v3_large"]
    assert not set(NAMES) & set(list_models())  # the classifiers' listing is unchanged
    with pytest.raises(InputError, match="`task` must be one of"):
        list_models(task="segmentation")


@pytest.mark.parametrize("name", NAMES)
def test_record(name):
    config = model_config(name)
    assert isinstance(config, presets.DetectorConfig) and config is presets.detector_config(name)
    facts = config.as_dict()
    assert facts["task"] == "detection" and facts["name"] == name
    assert keras_lightnets.detection.anchors is presets.anchors
    assert len(presets.anchors(name)) == config.anchors
    assert presets.anchors(name).dtype == np.float32
    if config.published is not None:
        assert config.published.source.startswith("https://") and 0 < config.published.value < 100
    if config.checkpoint is not None:
        assert config.checkpoint[0].startswith("https://") and config.checkpoint[0].endswith(".pth")
    assert config.anchor_format == ("cxcywh_relative" if name.startswith("mb") else "xyxy_pixels")


@pytest.mark.parametrize("name", NAMES)
def test_facts_are_the_built_model(name):
    config = model_config(name)
    model = create_model(name)  # the registry's create_model reaches create_detector
    try:
        assert sum(math.prod(w.shape) for w in model.trainable_weights) == config.params
        assert count_macs(model) == config.macs
        n = config.anchors
        assert [tuple(o.shape) for o in model.outputs] == [(None, n, config.num_classes), (None, n, 4)]
        assert tuple(model.inputs[0].shape) == (None, *config.input_shape)
        np.testing.assert_array_equal(model.anchors, presets.anchors(name))
        info = model.detector_info
        assert info["anchor_format"] == config.anchor_format and info["type"] == config.kind
        assert info["score"] == ("sigmoid" if config.kind == "retinanet" else "softmax")
    finally:
        del model
        gc.collect()


def test_bad_arguments_are_named():
    with pytest.raises(InputError, match=r"unknown detector preset 'ssd300'.*mb1_ssd"):
        presets.create_detector("ssd300")
    with pytest.raises(InputError, match="`output`"):
        presets.create_detector("mb2_ssd_lite", output="boxes")
    with pytest.raises(InputError, match="`include_preprocessing`"):
        presets.create_detector("mb2_ssd_lite", include_preprocessing="yes")
    with pytest.raises(InputError, match="`weights`"):
        presets.create_detector("mb2_ssd_lite", weights=3)
    with pytest.raises(InputError, match="need output='detections'"):
        presets.create_detector("mb2_ssd_lite", score_threshold=0.3)
    with pytest.raises(InputError, match="is a detector"):
        create_model("mb2_ssd_lite", features_only=True)


def test_importing_the_presets_loads_no_keras():
    import subprocess
    import sys

    code = (
        "import sys, keras_lightnets as k; k.list_models(task='detection'); k.model_config('mb1_ssd'); "
        "from keras_lightnets.detection import presets; presets.anchors('ssdlite320_mobilenet_v3_large'); "
        "print(sorted(m for m in ('keras', 'tensorflow', 'tf_keras') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT_S, check=True)
    assert out.stdout.strip() == "[]"


def test_a_checkpoint_ported_once_loads_back(tmp_path):
    from keras_lightnets.weights import port_tool

    source = REFERENCE / "pytorch_ssd" / "mb2_ssd_lite" / "weights.safetensors"
    written = port_tool.port(source, "mb2_ssd_lite", tmp_path / "mb2.weights.h5")
    assert written == tmp_path / "mb2.weights.h5" and written.is_file()
    image = np.load(REFERENCE / "pytorch_ssd" / "mb2_ssd_lite" / "input.npy").transpose(0, 2, 3, 1)
    direct = keras_lightnets.detection.create_detector("mb2_ssd_lite", weights=str(source))
    ported = keras_lightnets.detection.create_detector("mb2_ssd_lite", weights=str(written))
    for a, b in zip(infer(direct, image), infer(ported, image), strict=True):
        np.testing.assert_array_equal(a, b)
    reference = np.load(REFERENCE / "pytorch_ssd" / "mb2_ssd_lite" / "confidences.npy")
    classes = infer(ported, image)[0]
    assert np.abs(classes - reference).max() / np.abs(reference).max() <= 1e-4
