"""keras.applications' layout and habits: family modules, include_preprocessing everywhere,
lazy subpackages, `.keras` files loading whatever the import order, the CLI's entry points,
package metadata and `lightnets info`'s weight sources."""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import WAIT_S, image_batch, randomize_weights

import keras_lightnets
from keras_lightnets import create_model, imagenet, list_models, model_config
from keras_lightnets.cli import main
from keras_lightnets.layers import get_layer_class
from keras_lightnets.weights import download

ROOT = Path(__file__).resolve().parents[1]
# family module -> (its builders, keras.applications' module of the same name or None)
FAMILY_MODULES = {
    "mobilenet": (("MobileNet",), "mobilenet"),
    "mobilenet_v2": (("MobileNetV2",), "mobilenet_v2"),
    "mobilenet_v3": (("MobileNetV3Small", "MobileNetV3Large"), "mobilenet_v3"),
    "nasnet": (("NASNetMobile",), "nasnet"),
    "squeezenet": (("SqueezeNet",), None),
    "shufflenet_v2": (("ShuffleNetV2",), None),
    "mnasnet": (("MnasNetA1", "MnasNetB1"), None),
    "ghostnet": (("GhostNet",), None),
    "mobilenet_v4": (("MobileNetV4ConvSmall", "MobileNetV4ConvMedium", "MobileNetV4ConvLarge"), None),
    "shufflenet_v1": (("ShuffleNetV1",), "bgr255"),  # megvii's input: BGR, 0..255, no normalisation
    # EfficientNet-Lite's [-1, 1] is keras.applications' MobileNetV2 preprocessing ("tf").
    "efficientnet_lite": (tuple(f"EfficientNetLite{n}" for n in range(5)), "mobilenet_v2"),
}
FAMILIES = sorted({model_config(name).family for name in list_models()})


def _torch_normalised(pixels: np.ndarray) -> np.ndarray:
    mean = np.array([0.485, 0.456, 0.406], "float32")
    std = np.array([0.229, 0.224, 0.225], "float32")
    return (pixels / 255.0 - mean) / std


@pytest.mark.parametrize("module_name", sorted(FAMILY_MODULES))
def test_family_modules_have_builders_preprocess_input_and_decode_predictions(module_name):
    module = importlib.import_module(f"keras_lightnets.{module_name}")
    builders, twin = FAMILY_MODULES[module_name]
    assert set(module.__all__) == {*builders, "preprocess_input", "decode_predictions"}
    for builder in builders:
        assert getattr(module, builder) is getattr(keras_lightnets, builder)
    pixels = image_batch(4, batch=1)
    if twin == "bgr255":
        np.testing.assert_array_equal(module.preprocess_input(pixels.copy()), pixels[..., ::-1])
    elif twin is not None:  # the same preprocessing as keras.applications' module of that name
        theirs = importlib.import_module(f"keras.applications.{twin}")
        np.testing.assert_allclose(module.preprocess_input(pixels.copy()), theirs.preprocess_input(pixels.copy()),
                                   rtol=1e-6, atol=1e-6)
    else:  # torchvision's normalisation
        np.testing.assert_allclose(module.preprocess_input(pixels.copy()), _torch_normalised(pixels), rtol=1e-5,
                                   atol=1e-5)
    scores = np.zeros((1, 1000), "float32")
    scores[0, 7] = 1.0
    (best, *_), = module.decode_predictions(scores, top=3)
    assert best[1:] == (imagenet.class_index()[7][1], 1.0)
    # every registered variant of the family names this module, and its builder is there
    for name in list_models():
        config = model_config(name)
        if config.module == f"keras_lightnets.{module_name}":
            assert getattr(module, config.builder.__name__) is config.builder


def _smallest(family: str) -> str:
    return min((n for n in list_models() if model_config(n).family == family), key=lambda n: model_config(n).macs)


@pytest.mark.parametrize("family", FAMILIES)
def test_include_preprocessing_on_raw_pixels_equals_preprocess_input(family):
    """For every family: preprocessing inside the model on raw [0, 255] pixels gives the output
    of the same model (same weights) without it on the family's preprocessing outside."""
    name = _smallest(family)
    config = model_config(name)
    module = importlib.import_module(config.module)
    default = inspect.signature(config.builder).parameters["include_preprocessing"].default
    # The keras.applications default: True only where keras.applications' twin has it (MobileNetV3).
    assert default is (config.preprocessing == "in_model"), (name, default)
    if default:  # keras.applications' pass-through preprocess_input; the scaling done inside is [-1, 1]
        assert module.preprocess_input is imagenet.preprocess_none
        outside = imagenet.preprocess_tf
    else:
        outside = module.preprocess_input
    kwargs = dict(weights=None, input_shape=(32, 32, 3), include_top=False, pooling="avg")
    inside = create_model(name, include_preprocessing=True, **kwargs)
    plain = create_model(name, include_preprocessing=False, **kwargs)
    assert "rescaling" in [layer.name for layer in inside.layers]
    assert "rescaling" not in [layer.name for layer in plain.layers]
    randomize_weights(inside, seed=3)
    plain.set_weights(inside.get_weights())
    pixels = image_batch(32, batch=2)
    expected = keras.ops.convert_to_numpy(plain(outside(pixels.copy()), training=False))
    got = keras.ops.convert_to_numpy(inside(pixels, training=False))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * float(np.abs(expected).max()))
    with pytest.raises(ValueError, match="include_preprocessing"):
        create_model(name, include_preprocessing="yes", **kwargs)


def _tiny_model_file(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A `.keras` file with every custom layer, an input batch and its expected output."""
    inputs = keras.Input((4, 4, 4))
    x = get_layer_class("Rescale")([0.5, 1.0, 2.0, 0.25], [0.0, -1.0, 1.0, 0.5])(inputs)
    x = get_layer_class("HardSwish")()(x)
    x = get_layer_class("HardSigmoid")()(x)
    x = get_layer_class("ChannelShuffle")(groups=2)(x)
    a, b = get_layer_class("ChannelSplit")(groups=2)(x)
    model = keras.Model(inputs, keras.layers.Concatenate()([b, a]))
    pixels = np.random.default_rng(0).uniform(-4, 4, (2, 4, 4, 4)).astype("float32")
    paths = tmp_path / "m.keras", tmp_path / "x.npy", tmp_path / "y.npy"
    model.save(paths[0])
    np.save(paths[1], pixels)
    np.save(paths[2], model.predict(pixels, verbose=0))
    return paths


_LOAD = """
model = keras.models.load_model(sys.argv[1])
np.testing.assert_allclose(model.predict(np.load(sys.argv[2]), verbose=0), np.load(sys.argv[3]), rtol=1e-6)
print("loaded", sorted({type(layer).__name__ for layer in model.layers}))
"""


def _run(parts: list[str], *args: Path) -> str:
    code = "\n".join(textwrap.dedent(part) for part in parts)
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                            text=True, timeout=WAIT_S, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_load_model_after_import_keras_lightnets_then_keras_and_lazy_subpackages(tmp_path):
    """keras_lightnets first, keras second (failed on `Rescale`); the package and its family
    modules import no TensorFlow; kl.legacy/.compression/.export/.layers load on first use."""
    out = _run(["""
        import sys
        import numpy as np
        import keras_lightnets as kl
        import keras_lightnets.mnasnet, keras_lightnets.mobilenet, keras_lightnets.mobilenet_v2
        import keras_lightnets.mobilenet_v3, keras_lightnets.nasnet, keras_lightnets.shufflenet_v2
        import keras_lightnets.squeezenet
        from keras_lightnets.mobilenet_v3 import preprocess_input
        assert not [m for m in ("tensorflow", "keras", "tf_keras") if m in sys.modules], sys.modules.keys()
        assert {"compression", "export", "layers", "legacy"} <= set(dir(kl))
        import keras
        """, _LOAD, """
        assert kl.layers.Rescale is type(model.layers[1])
        assert callable(kl.compression.prune) and callable(kl.export.to_tflite)
        assert kl.legacy.MobileNet.__module__ == "keras_lightnets.models.mobilenet_v1"
        print("lazy", kl.legacy.__name__, kl.compression.__name__, kl.export.__name__)
        """], *_tiny_model_file(tmp_path))
    assert "loaded" in out and "Rescale" in out and "lazy keras_lightnets.legacy" in out


def test_load_model_after_import_keras_then_keras_lightnets(tmp_path):
    out = _run(["""
        import sys
        import keras
        import numpy as np
        import keras_lightnets
        """, _LOAD], *_tiny_model_file(tmp_path))
    assert "ChannelSplit" in out


def test_python_m_keras_lightnets_runs_the_cli_and_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"lightnets {keras_lightnets.__version__}"
    result = subprocess.run([sys.executable, "-m", "keras_lightnets", "list", "squeezenet*"], capture_output=True,
                            text=True, timeout=WAIT_S, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "squeezenet1_0" in result.stdout and "squeezenet1_1" in result.stdout
    result = subprocess.run([sys.executable, "-m", "keras_lightnets", "info", "nope"], capture_output=True,
                            text=True, timeout=WAIT_S, cwd=ROOT)
    assert result.returncode == 2 and result.stderr.startswith("lightnets: error:")


def test_metadata_ships_py_typed_and_project_urls():
    from setuptools.config.setupcfg import read_configuration

    config = read_configuration(ROOT / "setup.cfg")
    assert config["metadata"]["version"] == keras_lightnets.__version__
    urls = config["metadata"]["project_urls"]
    assert urls and all(url.startswith("https://") for url in urls.values()), urls
    assert not [u for u in urls.values() if any(w in u.lower() for w in ("example", "todo", "your", "<", "xxx"))]
    assert "py.typed" in config["options"]["package_data"]["keras_lightnets"]
    assert (ROOT / "keras_lightnets" / "py.typed").is_file()
    assert "Typing :: Typed" in config["metadata"]["classifiers"]


def _info(name: str, capsys) -> dict:
    assert main(["info", name]) == 0
    return json.loads(capsys.readouterr().out)


def test_info_shows_weight_files_urls_licenses_and_notes(capsys):
    info = _info("mobilenet_v3_small_100", capsys)
    files = {f["file"]: f for f in info["weight_files"]}
    assert set(files) == {"weights_mobilenet_v3_small_224_1.0_float.h5",
                          "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"}
    assert {f["license"] for f in files.values()} == {"Apache-2.0"}
    assert all(f["url"].endswith("/" + name) for name, f in files.items())
    assert {f["include_top"] for f in files.values()} == {True, False}
    assert info["module"] == "keras_lightnets.mobilenet_v3"
    info = _info("shufflenet_v2_x0_5", capsys)
    (source,) = info["weight_files"]
    assert source["url"].startswith("https://download.pytorch.org/") and source["license"] == "BSD-3-Clause"
    assert "trainable parameters" in info["notes"]
    info = _info("mnasnet_a1_100", capsys)
    (source,) = info["weight_files"]
    assert source["url"] == "https://huggingface.co/timm/semnasnet_100.rmsp_in1k/resolve/main/model.safetensors"
    assert source["license"] == "Apache-2.0"
    info = _info("mnasnet_a1_140", capsys)
    assert info["weight_files"] == [] and "no ImageNet checkpoint" in info["notes"]


def test_info_reads_the_manifest_in_use(tmp_path, monkeypatch, capsys):
    file_name = model_config("squeezenet1_1").weight_file()  # the record names the file, the manifest its bytes
    entry = download.make_entry("https://mirror.test/sq.pth", hash=None, sha256=None, size=None, max_bytes=1 << 20,
                                format="torchvision-pth", source="a test mirror", license="TEST-LICENSE-1")
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"format_version": 1, "files": {file_name: entry}}))
    monkeypatch.setenv(download.MANIFEST_ENV, str(path))
    (source,) = _info("squeezenet1_1", capsys)["weight_files"]
    assert (source["file"], source["url"], source["license"]) == (file_name, "https://mirror.test/sq.pth",
                                                                 "TEST-LICENSE-1")
    assert _info("squeezenet1_0", capsys)["weight_files"] == []
