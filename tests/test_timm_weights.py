"""``weights="imagenet"`` for the families that are exact twins of timm models.

Each record's ImageNet file is timm's hub checkpoint ``<hub id>.safetensors`` (manifest format
``"timm-safetensors"``, see ``keras_lightnets.weights.manifest_tools``). Here a local mirror
serves the reference vectors' state_dict under that name (the same tensor names and shapes as
the hub's file): the file is ported with the code ``weights=PATH`` uses, the converted arrays are
cached, and the model reproduces timm's logits, then again from the cache alone.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import infer

from keras_lightnets import create_model, list_models, model_config
from keras_lightnets.weights import download, manifest_tools

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "timm"
TOLERANCE = 1e-4  # of the largest |logit| (shared/reference/README.md)
# Registry name -> the reference folder of the same timm model (random weights, timm's own names).
TWINS = {
    "efficientnet_lite0": "tf_efficientnet_lite0",
    "ghostnet_100": "ghostnet_100",
    "mnasnet_a1_100": "semnasnet_100",
    "mobilenet_v4_conv_small": "mobilenetv4_conv_small",
}


def _timm_records() -> list[str]:
    return [name for name in list_models(pretrained=True)
            if any(f.name.endswith(manifest_tools.TIMM_SUFFIX) for f in model_config(name).weight_files)]


def test_every_timm_file_is_in_the_manifest_with_its_hub_url():
    entries = download.manifest()
    assert set(TWINS) <= set(_timm_records())
    for name in _timm_records():
        file_name = model_config(name).weight_file()
        entry = entries[file_name]
        assert (entry["format"], entry["source"], entry["license"]) == ("timm-safetensors", "timm", "Apache-2.0")
        assert entry["url"] == manifest_tools.timm_url(file_name)
        assert entry["max_bytes"] >= download.max_bytes_for_parameters(model_config(name).params)


@pytest.mark.parametrize("name", sorted(TWINS))
def test_imagenet_weights_port_the_hub_file_once_and_are_cached(name, tmp_path, monkeypatch):
    folder = REFERENCE / TWINS[name]
    if not folder.is_dir():
        pytest.skip(f"no reference vectors in {folder}")
    file_name = model_config(name).weight_file()
    mirror, home = tmp_path / "mirror", tmp_path / "keras_home"
    mirror.mkdir()
    shutil.copyfile(folder / "weights.safetensors", mirror / file_name)
    entry = {"url": manifest_tools.timm_url(file_name), "hash": None, "format": "timm-safetensors", "source": "timm"}
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 1, "files": {file_name: entry}}))
    monkeypatch.setenv("KERAS_LIGHTNETS_MANIFEST", str(tmp_path / "manifest.json"))
    monkeypatch.setenv("KERAS_LIGHTNETS_WEIGHTS_DIR", str(mirror))
    monkeypatch.setenv("KERAS_HOME", str(home))
    image = np.load(folder / "input.npy").transpose(0, 2, 3, 1)  # NCHW -> NHWC
    want = np.load(folder / "logits.npy")

    def check(model) -> None:
        got = infer(model, image)
        assert np.abs(got - want).max() / np.abs(want).max() <= TOLERANCE
        np.testing.assert_array_equal(np.argsort(-got[0])[:5], np.argsort(-want[0])[:5])

    check(create_model(name, weights="imagenet", classifier_activation=None))
    cached = home / "models" / (file_name.removesuffix(manifest_tools.TIMM_SUFFIX) + ".weights.h5")
    assert cached.is_file()
    (mirror / file_name).unlink()  # the cache alone now suffices, in the other flavour too
    check(create_model(name, weights="imagenet", classifier_activation=None, flavour="tf_keras"))
