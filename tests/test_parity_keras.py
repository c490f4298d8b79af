"""Exact weight compatibility with keras.applications.

For every variant that has official ImageNet weights and a keras.applications twin
(its registry record's ``twin``), with and without the top:
a weights file written by ``tf_keras.applications`` ``save_weights`` (the legacy
``.h5`` layout of the official downloads) loads through ``weights=PATH`` into our
Keras 3 and tf_keras models and reproduces the reference outputs (max abs
difference <= 1e-5); Keras 3's own keras.applications loads the same file to the
same outputs, which shows the file is what keras.applications expects.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tf_keras
from helpers import image_batch, infer, randomize_weights

from keras_lightnets import create_model, list_models, model_config

KERAS_FAMILIES = {"mobilenet_v1", "mobilenet_v2", "mobilenet_v3", "nasnet"}
TWINS = [name for name in list_models(pretrained=True) if model_config(name).twin is not None]


def _first_per_twin_graph(names: list[str]) -> list[str]:
    """One name per keras.applications graph (builder and ``minimalistic``; widths share layer names)."""
    chosen: dict[tuple, str] = {}
    for name in names:
        twin = model_config(name).twin
        chosen.setdefault((twin.builder, bool(twin.kwargs.get("minimalistic"))), name)
    return sorted(chosen.values())


# Every pretrained twin with its top (the full ImageNet file); without it (the "notop" file: the
# same layers less the head) once per graph.
CASES = [(name, True) for name in TWINS] + [(name, False) for name in _first_per_twin_graph(TWINS)]


def test_the_keras_applications_families_have_twins():
    assert {model_config(name).family for name, _ in CASES} == KERAS_FAMILIES


@pytest.mark.parametrize(("name", "include_top"), CASES)
def test_legacy_h5_from_keras_applications_loads_exactly(name, include_top, tmp_path):
    config = model_config(name)
    size = config.input_size if include_top else 128
    kwargs = dict(config.twin.kwargs, include_top=include_top, input_shape=(size, size, 3))
    builder = config.twin.builder
    reference = getattr(tf_keras.applications, builder)(weights=None, **kwargs)
    randomize_weights(reference, seed=3)
    path = str(tmp_path / f"{name}.h5")
    reference.save_weights(path)
    images = image_batch(size, batch=2, seed=4)
    if config.preprocessing == "tf":
        images = images / 127.5 - 1.0
    expected = infer(reference, images)

    for flavour in ("keras", "tf_keras"):
        ours = create_model(name, flavour=flavour, weights=path, include_top=include_top, input_shape=(size, size, 3))
        np.testing.assert_allclose(infer(ours, images), expected, rtol=0, atol=1e-5, err_msg=flavour)
    keras_app = getattr(keras.applications, builder)(weights=path, **kwargs)
    np.testing.assert_allclose(infer(keras_app, images), expected, rtol=0, atol=1e-5)


def test_mismatched_weights_file_names_the_layer(tmp_path):
    small = tf_keras.applications.MobileNetV2(weights=None, alpha=0.35, input_shape=(96, 96, 3))
    path = str(tmp_path / "alpha035.h5")
    small.save_weights(path)
    with pytest.raises(ValueError, match="Conv1"):
        create_model("mobilenet_v2_100", weights=path, input_shape=(96, 96, 3))
