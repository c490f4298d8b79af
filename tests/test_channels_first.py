"""``image_data_format="channels_first"``, as keras.applications reads it: the models build in
NCHW from the same weight files and compute the channels-last outputs (up to the
transpose); their channels-last twin (what TFLite needs) has the same weights and outputs."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import image_batch, infer, randomize_weights

import keras_lightnets as kl
from keras_lightnets import layout
from keras_lightnets.errors import InputError
from keras_lightnets.layers import get_layer_class

SIZE = 32
# The smallest variant of keras.applications' five families, and ShuffleNet (split, shuffle).
FAMILIES = ["mobilenet_v1_025", "mobilenet_v2_035", "mobilenet_v3_small_075", "mobilenet_v3_large_075",
            "nasnet_mobile", "shufflenet_v2_x0_5"]


@pytest.fixture
def channels_first():
    """Build in channels-first inside the test; channels-last again afterwards."""
    import keras

    keras.config.set_image_data_format("channels_first")
    try:
        yield
    finally:
        keras.config.set_image_data_format("channels_last")


def _nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(x, -1, 1))


def _relative(found, expected) -> float:
    found, expected = np.asarray(found, np.float64), np.asarray(expected, np.float64)
    assert found.shape == expected.shape
    return float(np.max(np.abs(found - expected)) / max(np.max(np.abs(expected)), 1e-12))


def _channels_last_model(name: str, tmp_path, **kwargs):
    """A channels-last model with random weights, and its weights file."""
    model = kl.create_model(name, weights=None, input_shape=(SIZE, SIZE, 3), classes=7, **kwargs)
    randomize_weights(model)
    path = str(tmp_path / f"{name}.weights.h5")
    model.save_weights(path)
    return model, path


@pytest.mark.parametrize("name", FAMILIES)
def test_channels_first_model_matches_channels_last(name, tmp_path, channels_first):
    import keras

    keras.config.set_image_data_format("channels_last")
    last, path = _channels_last_model(name, tmp_path)
    keras.config.set_image_data_format("channels_first")
    first = kl.create_model(name, weights=path, input_shape=(3, SIZE, SIZE), classes=7)
    assert first.input_shape == (None, 3, SIZE, SIZE)
    assert layout.is_channels_first(first)
    x = image_batch(SIZE, seed=5) / 127.5 - 1.0
    assert _relative(infer(first, _nchw(x)), infer(last, x)) <= 1e-5


def test_channels_first_shapes_follow_keras_applications(channels_first):
    model = kl.create_model("mobilenet_v1_025", weights=None, include_top=False)
    assert model.input_shape == (None, 3, None, None)
    assert model.output_shape == (None, 256, None, None)
    with pytest.raises(ValueError, match=r"\(channels, height, width\)"):
        kl.create_model("mobilenet_v1_025", weights=None, input_shape=(32, 32))
    with pytest.raises(ValueError, match="at least 32x32"):
        kl.create_model("mobilenet_v1_025", weights=None, input_shape=(32, 32, 3))  # 32 channels, 3 wide


def test_custom_layers_channels_first(channels_first):
    import keras

    x = image_batch(8, channels=4, seed=2)
    scale, offset = [0.5, 1.0, 2.0, 4.0], [1.0, -1.0, 0.0, 3.0]
    for make in (lambda: get_layer_class("Rescale")(scale=scale, offset=offset),
                 lambda: get_layer_class("ChannelShuffle")(groups=2),
                 lambda: get_layer_class("ChannelSplit")(groups=2)):
        first = make()
        assert first.get_config()["data_format"] == "channels_first"
        keras.config.set_image_data_format("channels_last")
        last = make()
        keras.config.set_image_data_format("channels_first")
        found, expected = first(_nchw(x)), last(x)
        for f, e in zip(*(v if isinstance(v, list) else [v] for v in (found, expected)), strict=True):
            np.testing.assert_allclose(np.moveaxis(np.asarray(f), 1, -1), np.asarray(e), rtol=1e-6)
        # The layout is saved; a config from before it existed is channels-last.
        assert type(first).from_config(first.get_config()).data_format == "channels_first"
        old = {k: v for k, v in last.get_config().items() if k != "data_format"}
        assert type(last).from_config(old).data_format == "channels_last"


def test_channels_last_twin_exports_nhwc(tmp_path, channels_first):
    """A channels-first model (per-channel Rescale, split, shuffle) -> channels-last twin -> TFLite;
    ``to_tflite``/``verify_tflite`` take the channels-first model and its data directly."""
    from ai_edge_litert.interpreter import Interpreter

    from keras_lightnets.export import to_tflite, verify_tflite

    first = kl.create_model("shufflenet_v2_x0_5", weights=None, input_shape=(3, SIZE, SIZE), classes=7,
                            include_preprocessing=True)
    randomize_weights(first)
    twin = layout.channels_last_twin(first)
    assert twin.input_shape == (None, SIZE, SIZE, 3) and not layout.is_channels_first(twin)
    assert layout.channels_last_twin(twin) is twin
    x = image_batch(SIZE, batch=1, seed=7)
    expected = infer(first, _nchw(x))
    assert _relative(infer(twin, x), expected) <= 1e-5
    path = tmp_path / "first.tflite"
    to_tflite(first, path)  # the channels-first model itself: exported through its twin
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    [detail] = interpreter.get_input_details()
    assert tuple(detail["shape"]) == (1, SIZE, SIZE, 3)
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    found = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    assert _relative(found, expected) <= 1e-4
    # verify_tflite and int8 calibration take the model's own (channels-first) data
    batch = _nchw(image_batch(SIZE, batch=4, seed=3))
    report = verify_tflite(path, first, (batch, np.arange(4)))
    assert report.samples == 4 and report.max_abs_diff <= 1e-4 and report.top1_agreement == 1.0
    int8 = to_tflite(first, tmp_path / "int8.tflite", quantization="int8", representative_data=batch)
    assert int8.input_shape == [SIZE, SIZE, 3] and not int8.float_ops


def test_compression_takes_a_channels_first_model(channels_first):
    """prune and quantize_aware translate the channels-last twin (TFMOT is NHWC)."""
    from keras_lightnets import compression

    first = kl.create_model("mobilenet_v3_small_075", weights=None, input_shape=(3, SIZE, SIZE), classes=3)
    pruned = compression.prune(first, target_sparsity=0.5)
    assert pruned.input_shape == (None, SIZE, SIZE, 3)
    qat = compression.quantize_aware(first)
    assert qat.input_shape == (None, SIZE, SIZE, 3)


def test_channels_last_twin_of_a_user_model(channels_first):
    """keras.applications' MobileNetV3Small nested in a user's model, with Flatten + Dense."""
    import keras

    base = keras.applications.MobileNetV3Small(input_shape=(3, SIZE, SIZE), include_top=False, weights=None,
                                               minimalistic=True)
    inputs = keras.Input((3, SIZE, SIZE))
    x = keras.layers.Conv2D(4, 1)(base(inputs))
    outputs = keras.layers.Dense(3)(keras.layers.Flatten()(x))
    user = keras.Model(inputs, outputs, name="user")
    twin = layout.channels_last_twin(user)  # checks the outputs itself
    assert twin.input_shape == (None, SIZE, SIZE, 3) and twin.layers[1].input_shape == (None, SIZE, SIZE, 3)
    x = image_batch(SIZE, seed=9)
    assert _relative(infer(twin, x), infer(user, _nchw(x))) <= 1e-5

    order = keras.Model(inputs, keras.layers.Dense(2, name="pixels")(keras.layers.Conv2D(4, 1)(inputs)))
    with pytest.raises(InputError, match="'pixels' \\(Dense\\)") as raised:
        layout.channels_last_twin(order)
    assert "\n" not in str(raised.value)
