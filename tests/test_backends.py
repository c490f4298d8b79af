"""Every Keras 3 backend: the Keras 3 models build, predict and fit on JAX (and PyTorch on
request) with the outputs they have on TensorFlow, from the same weight file.

PyTorch is checked on request (``LIGHTNETS_TEST_BACKENDS=jax,torch``): its CPU wheel is an
870 MB install, too much for every CI run. The backend is fixed per process, so one
child process per backend does all its work
(paying the import once): it builds the families that hold every custom layer
(MobileNetV3: HardSwish, HardSigmoid, Rescale; ShuffleNetV2: ChannelSplit,
ChannelShuffle) from ``.weights.h5`` files written here under TensorFlow, predicts,
fits one SGD step and predicts again; this process compares.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import WAIT_S, image_batch

import keras_lightnets as kl
from keras_lightnets import _backend

SIZE = 32
# name -> builder overrides; dropout off so that one training step is deterministic.
MODELS = {
    "mobilenet_v3_small_075": {"dropout_rate": 0.0},
    "shufflenet_v2_x0_5": {},
}
FIT_MODEL = "mobilenet_v3_small_075"
LABELS = [0, 1, 2, 3]
LEARNING_RATE = 0.05

CHILD = r"""
import json, sys
import numpy as np
import keras
import keras_lightnets as kl
from keras_lightnets import _backend
from keras_lightnets.errors import InputError

job = json.loads(sys.argv[1])
report = {"backend": keras.config.backend()}
data = np.load(job["data"])
for name, overrides in job["models"].items():
    model = kl.create_model(name, weights=job["weights"][name], input_shape=(32, 32, 3), classes=4, **overrides)
    report[name] = np.asarray(model.predict(data["x"], verbose=0)).tolist()
    if name == job["fit_model"]:
        model.compile(keras.optimizers.SGD(job["learning_rate"]), "sparse_categorical_crossentropy")
        history = model.fit(data["x"], data["y"], batch_size=len(data["y"]), epochs=1, shuffle=False, verbose=0)
        report["loss"] = float(history.history["loss"][0])
        report["after_fit"] = np.asarray(model.predict(data["x"], verbose=0)).tolist()
try:
    _backend.require_tensorflow_backend("int8 export")
except InputError as err:
    report["refusal"] = str(err)
print("REPORT " + json.dumps(report))
"""


def _run_tensorflow(tmp_path):
    """Weight files, inputs and the TensorFlow outputs (before and after one fit step)."""
    import keras

    x = image_batch(SIZE, batch=len(LABELS), seed=3)
    y = np.asarray(LABELS, dtype="int32")
    np.savez(tmp_path / "data.npz", x=x, y=y)
    weights, outputs = {}, {}
    for name, overrides in MODELS.items():
        model = kl.create_model(name, weights=None, input_shape=(SIZE, SIZE, 3), classes=4, **overrides)
        path = str(tmp_path / f"{name}.weights.h5")
        model.save_weights(path)
        weights[name] = path
        outputs[name] = model.predict(x, verbose=0)
        if name == FIT_MODEL:
            model.compile(keras.optimizers.SGD(LEARNING_RATE), "sparse_categorical_crossentropy")
            history = model.fit(x, y, batch_size=len(y), epochs=1, shuffle=False, verbose=0)
            outputs["loss"] = history.history["loss"][0]
            outputs["after_fit"] = model.predict(x, verbose=0)
    return weights, outputs


def _run_child(backend: str, tmp_path, weights) -> dict:
    job = {"data": str(tmp_path / "data.npz"), "weights": weights, "models": MODELS,
           "fit_model": FIT_MODEL, "learning_rate": LEARNING_RATE}
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, "-c", CHILD, json.dumps(job)], capture_output=True, text=True,
                            timeout=WAIT_S, env=env, cwd=tmp_path)
    lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    assert result.returncode == 0 and lines, result.stderr[-3000:]
    return json.loads(lines[-1][len("REPORT "):])


def _relative(found, expected) -> float:
    found, expected = np.asarray(found, np.float64), np.asarray(expected, np.float64)
    assert found.shape == expected.shape
    return float(np.max(np.abs(found - expected)) / max(np.max(np.abs(expected)), 1e-12))


def _backends() -> list[str]:
    """JAX always (in the dev extra); more by request, e.g. ``LIGHTNETS_TEST_BACKENDS=jax,torch``
    once the CPU torch wheel is installed (870 MB, so not in ``make test``): a requested
    backend that is not installed fails, it is never skipped."""
    requested = os.environ.get("LIGHTNETS_TEST_BACKENDS", "jax")
    return [name.strip() for name in requested.split(",") if name.strip()]


@pytest.mark.parametrize("backend", _backends())
def test_models_predict_and_fit_like_tensorflow(backend, tmp_path):
    assert importlib.util.find_spec(backend) is not None, f"{backend} is not installed"
    weights, expected = _run_tensorflow(tmp_path)
    report = _run_child(backend, tmp_path, weights)
    assert report["backend"] == backend
    for name in MODELS:
        assert _relative(report[name], expected[name]) <= 1e-5, name
    # One SGD step from the same weights on the same batch: the same loss and the same model.
    assert abs(report["loss"] - expected["loss"]) <= 1e-5 * max(abs(expected["loss"]), 1.0)
    assert _relative(report["after_fit"], expected["after_fit"]) <= 1e-4
    assert "KERAS_BACKEND" in report["refusal"] and repr(backend) in report["refusal"]
    assert "\n" not in report["refusal"]


def test_tensorflow_backend_passes_the_check():
    """Under TensorFlow the check passes (the child processes above see it refuse)."""
    import keras

    assert _backend.keras_backend() == "tensorflow"
    _backend.require_tensorflow_backend("int8 export")
    _backend.require_tensorflow_backend("int8 export", keras.Sequential([keras.Input((2,))]))
