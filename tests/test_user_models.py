"""The models users really have, through compression and export.

keras.applications bases (MobileNet, MobileNetV2, MobileNetV3Small/Large, NASNetMobile)
with a user head, nested as one layer or flat; the Keras transfer-learning guide's
preprocessing and augmentation layers inside the model; and the errors for what
cannot be translated. Each model is built here, with random weights, at 32x32.

Translation equality covers all ten app x style pairs: five in
``test_keras_application_translates_exactly`` and the other five (the other style)
in ``test_keras_application_prunes_quantizes_and_exports_int8``, which checks the
translated (pruned, not yet trained) model against the Keras 3 one before running
prune -> strip -> QAT -> full-int8 TFLite.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
import tf_keras
from helpers import image_batch, randomize_weights

from keras_lightnets import compression
from keras_lightnets.compression import TranslationError
from keras_lightnets.compression.translate import DroppedLayersWarning

SIZE = 32
CLASSES = 3
L = keras.layers
# The smallest width each application builds with (the graph is what the tests exercise).
APPS = {
    "MobileNet": {"alpha": 0.25},
    "MobileNetV2": {"alpha": 0.35},
    "MobileNetV3Small": {"alpha": 0.75},
    "MobileNetV3Large": {"alpha": 0.75},
    "NASNetMobile": {},
}
# The full chain runs once per application, in the style the translation test does not use.
CHAIN_STYLE = {"MobileNet": "nested", "MobileNetV2": "flat", "MobileNetV3Small": "nested",
               "MobileNetV3Large": "flat", "NASNetMobile": "nested"}
OTHER = {"nested": "flat", "flat": "nested"}
FORBIDDEN = {"Lambda", "TFOpLambda", "SlicingOpLambda"}


def _user_model(app: str, style: str, seed: int = 0):
    """keras.applications ``app`` (no top, no weights) + GAP / Dropout / Dense softmax, in Keras 3."""
    base = getattr(keras.applications, app)(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3),
                                            **APPS[app])
    if style == "nested":  # as the transfer-learning guide writes it
        inputs = keras.Input((SIZE, SIZE, 3), name="images")
        x = base(inputs, training=False)
    else:
        inputs, x = base.input, base.output
    x = L.GlobalAveragePooling2D(name="head_pool")(x)
    x = L.Dropout(0.2, name="head_dropout")(x)
    outputs = L.Dense(CLASSES, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs, name=f"{app}_{style}")
    randomize_weights(model, seed)
    return model


def _max_relative_diff(expected, found) -> float:
    expected, found = np.asarray(expected, "float64"), np.asarray(found, "float64")
    assert expected.shape == found.shape
    return float(np.max(np.abs(expected - found)) / np.max(np.abs(expected)))


def _fit_once(model, images, labels):
    """One step on the batch (eager: the test checks the chain, not training speed)."""
    model.compile(optimizer=tf_keras.optimizers.SGD(1e-3), loss="sparse_categorical_crossentropy", run_eagerly=True)
    model.fit(images, labels, batch_size=len(images), epochs=1, verbose=0,
              callbacks=compression.pruning_callbacks() if compression.is_pruned(model) else [])


def _run_tflite(path, images: np.ndarray) -> np.ndarray:
    """The file's (dequantized) outputs, image by image, with LiteRT."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    results = []
    for image in images:
        x = image[None]
        if inp["dtype"] == np.int8:
            scale, zero = inp["quantization"]
            x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"]).astype("float32")
        if out["dtype"] == np.int8:
            scale, zero = out["quantization"]
            y = (y - zero) * scale
        results.append(y[0])
    return np.stack(results)


# --------------------------------------------------------------------------------------
# keras.applications + a user head
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("app", list(APPS))
def test_keras_application_translates_exactly(app):
    style = OTHER[CHAIN_STYLE[app]]
    model = _user_model(app, style)
    twin = compression.to_tf_keras(model)
    images = image_batch(SIZE, batch=4, seed=3)
    assert _max_relative_diff(model(images, training=False), twin(images, training=False)) <= 1e-5
    kinds = {type(layer).__name__ for layer in twin.layers}
    assert not kinds & (FORBIDDEN | {"Functional", "Sequential"}), kinds & FORBIDDEN
    if app.startswith("MobileNetV3"):  # hard_silu, the SE gate's keras.ops, Rescaling: the package's layers
        assert {"HardSwish", "HardSigmoid", "Rescale", "Multiply"} <= kinds
        assert "Add" in kinds  # the residual Add layers (the gate's `x + 3` is inside HardSigmoid)
    for layer in model.layers if style == "flat" else model.layers[1].layers:
        if layer.weights:
            for a, b in zip(layer.get_weights(), twin.get_layer(layer.name).get_weights(), strict=True):
                np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("app", list(APPS))
def test_keras_application_prunes_quantizes_and_exports_int8(app, tmp_path):
    from keras_lightnets.export import delegate_coverage, to_tflite
    from keras_lightnets.export.describe import tflite_kernel_sparsity

    target = 0.5
    model = _user_model(app, CHAIN_STYLE[app])
    images = image_batch(SIZE, batch=8, seed=4)
    labels = np.arange(8) % CLASSES
    pruned = compression.prune(model, target_sparsity=target, begin_step=0, frequency=1)
    # Before any step the masks are all ones: the pruned model is the translated model.
    assert _max_relative_diff(model(images, training=False), pruned(images, training=False)) <= 1e-5
    _fit_once(pruned, images, labels)
    stripped = compression.strip(pruned)
    rows = compression.sparsity_report(stripped)
    assert rows and min(row.sparsity for row in rows) >= target

    qat = compression.quantize_aware(stripped)
    _fit_once(qat, images, labels)
    kept = [row for row in compression.sparsity_report(qat) if row.layer in {r.layer for r in rows}]
    assert kept and min(row.sparsity for row in kept) >= target

    path = tmp_path / f"{app}.tflite"
    report = to_tflite(qat, path, quantization="int8")
    assert report.float_ops == [], report.float_ops  # full int8
    assert [t.dtype for t in report.inputs + report.outputs] == ["int8", "int8"]
    assert "HARD_SWISH" not in report.op_counts  # XNNPACK has no int8 kernel for it
    assert tflite_kernel_sparsity(path) >= target - 0.01  # the zeros reach the file
    partitions, outside = delegate_coverage(path)
    if app == "NASNetMobile":
        # As the package's own nasnet_mobile: XNNPACK has no int8 kernel for a standalone RELU or
        # AVERAGE_POOL_2D, nor for a CONCATENATION whose inputs' scales differ (37 partitions at 32x32).
        assert set(outside) <= {"SOFTMAX", "RELU", "AVERAGE_POOL_2D", "CONCATENATION"}, outside
    else:  # like the package's own models: one XNNPACK partition; XNNPACK has no int8 softmax
        assert (partitions, outside) == (1, {"SOFTMAX": 1})
    assert _run_tflite(path, images[:2]).shape == (2, CLASSES)


def test_keras_application_per_tensor_qat_exports_int8_with_one_scale_per_tensor(tmp_path):
    """``quantize_aware(per_channel=False)`` on keras.applications' MobileNetV3Small (nested, with the
    hard-swish, squeeze-excite and Rescaling it translates): every conv's BatchNorm folded, no float op,
    one scale per weight tensor, still one XNNPACK partition."""
    from ai_edge_litert.interpreter import Interpreter

    from keras_lightnets.export import delegate_coverage, to_tflite

    model = _user_model("MobileNetV3Small", "nested")
    images = image_batch(SIZE, batch=8, seed=4)
    qat = compression.quantize_aware(model, per_channel=False)
    assert not [layer for layer in qat.layers if type(compression.unwrap(layer)).__name__ == "BatchNormalization"]
    _fit_once(qat, images, np.arange(8) % CLASSES)
    path = tmp_path / "per_tensor.tflite"
    report = to_tflite(qat, path, quantization="int8")
    assert report.float_ops == [] and not report.per_channel
    details = Interpreter(model_path=str(path)).get_tensor_details()
    assert max(len(d["quantization_parameters"]["scales"]) for d in details) == 1
    assert delegate_coverage(path) == (1, {"SOFTMAX": 1})
    assert _run_tflite(path, images[:2]).shape == (2, CLASSES)


def test_keras_hard_sigmoid_and_hard_silu_are_the_package_layers():
    """Keras 3's hard_sigmoid is relu6(x + 3) / 6 (tf_keras' is another function): the twins compute it."""
    inputs = keras.Input((4, 4, 8))
    gate = L.Activation("hard_sigmoid", name="gate")(inputs)
    swish = L.Activation("hard_silu", name="swish")(inputs)
    conv = L.Conv2D(8, 1, activation="hard_swish", name="conv")(inputs)
    dense = L.Dense(5, activation="hard_sigmoid", name="dense")(L.Flatten()(inputs))
    model = keras.Model(inputs, [gate, swish, conv, dense])
    twin = compression.to_tf_keras(model)
    assert {type(twin.get_layer(n)).__name__ for n in ("gate", "swish")} == {"HardSigmoid", "HardSwish"}
    assert twin.get_layer("conv").activation is tf_keras.activations.linear
    assert type(twin.get_layer("dense_hard_sigmoid")).__name__ == "HardSigmoid"
    x = np.linspace(-8.0, 8.0, 2 * 4 * 4 * 8, dtype="float32").reshape(2, 4, 4, 8)
    for expected, found in zip(model(x), twin(x), strict=True):
        np.testing.assert_allclose(np.asarray(found), np.asarray(expected), rtol=1e-6, atol=1e-7)
    expected = np.clip(x + 3.0, 0.0, 6.0) / 6.0
    np.testing.assert_allclose(np.asarray(twin(x)[0]), expected, rtol=1e-6, atol=1e-7)


def test_tensor_arithmetic_becomes_layers():
    """``x / 127.5 - 1``, ``3 - x``, ``x * [per channel]`` and ``a + b`` written on model tensors."""
    inputs = keras.Input((8, 8, 3))
    x = inputs / 127.5 - 1.0
    y = 3.0 - x * np.array([0.5, 1.0, 2.0], "float32")
    z = L.Conv2D(4, 3, padding="same", name="conv")(x + y)
    model = keras.Model(inputs, z)
    randomize_weights(model)
    twin = compression.to_tf_keras(model)
    kinds = [type(layer).__name__ for layer in twin.layers]
    assert kinds.count("Rescale") == 4 and "Add" in kinds
    images = image_batch(8, batch=2)
    assert _max_relative_diff(model(images), twin(images)) <= 1e-5


# --------------------------------------------------------------------------------------
# Preprocessing and augmentation layers inside the model (the transfer-learning guide)
# --------------------------------------------------------------------------------------

AUGMENTATION = ("random_flip", "random_rotation", "random_zoom", "random_translation", "random_contrast",
                "random_brightness", "random_crop")


def _guide_model(size: int = 20):
    augmentation = keras.Sequential([
        L.RandomFlip("horizontal", name="random_flip"), L.RandomRotation(0.1, name="random_rotation"),
        L.RandomZoom(0.1, name="random_zoom"), L.RandomTranslation(0.1, 0.1, name="random_translation"),
        L.RandomContrast(0.2, name="random_contrast"), L.RandomBrightness(0.2, name="random_brightness"),
    ], name="augmentation")
    inputs = keras.Input((size, size, 3), name="images")
    x = augmentation(inputs)
    x = L.RandomCrop(16, 16, name="random_crop")(x)
    x = L.Resizing(16, 16, name="resize")(x)
    x = L.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(x)
    normalization = L.Normalization(name="normalize")
    normalization.adapt(np.random.default_rng(0).normal(0.1, 0.5, (16, 4, 4, 3)).astype("float32"))
    x = normalization(x)
    x = L.Conv2D(8, 3, strides=2, name="conv")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(name="relu")(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    x = L.Dropout(0.2, name="dropout")(x)
    model = keras.Model(inputs, L.Dense(CLASSES, activation="softmax", name="head")(x), name="guide")
    randomize_weights(model, seed=2)
    return model


def test_augmentation_layers_are_left_out_with_one_warning():
    model = _guide_model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        twin = compression.to_tf_keras(model)
    dropped = [w for w in caught if issubclass(w.category, DroppedLayersWarning)]
    assert len(dropped) == 1
    message = str(dropped[0].message)
    assert "\n" not in message and all(f"'{name}'" in message for name in AUGMENTATION)
    kinds = [type(layer).__name__ for layer in twin.layers]
    assert kinds == ["InputLayer", "Resizing", "Rescale", "Rescale", "Conv2D", "BatchNormalization", "ReLU",
                     "GlobalAveragePooling2D", "Dropout", "Dense"]
    # Keras 3's inference output (RandomCrop included: in Keras 3.15 it returns its input at inference).
    images = image_batch(20, batch=4, seed=6)
    assert _max_relative_diff(model(images, training=False), twin(images, training=False)) <= 1e-5


def test_model_with_augmentation_quantizes_and_exports(tmp_path):
    from keras_lightnets.export import to_tflite

    model = _guide_model()
    images = image_batch(20, batch=32, seed=7)
    expected = np.asarray(model(images, training=False))

    float_path = tmp_path / "float.tflite"
    report = to_tflite(model, float_path)
    assert not any(op.startswith(("RANDOM", "STATELESS", "CUSTOM")) for op in report.op_counts), report.op_counts
    np.testing.assert_allclose(_run_tflite(float_path, images), expected, atol=1e-5)

    qat = compression.quantize_aware(model)
    assert not any(type(compression.unwrap(layer)).__name__.startswith("Random") for layer in qat.layers)
    _fit_once(qat, images[:8], np.arange(8) % CLASSES)
    int8_path = tmp_path / "int8.tflite"
    report = to_tflite(qat, int8_path, quantization="int8")
    assert report.float_ops == [] and "RESIZE_BILINEAR" in report.op_counts
    found = _run_tflite(int8_path, images)
    assert np.mean(found.argmax(1) == expected.argmax(1)) >= 0.8
    assert np.max(np.abs(found - expected)) < 0.1


# --------------------------------------------------------------------------------------
# What cannot be translated says which layer, why, and what to do
# --------------------------------------------------------------------------------------


class _Doubler(keras.layers.Layer):
    def call(self, x):
        return x * 2.0


UNTRANSLATABLE = [
    (lambda x: L.Lambda(lambda t: t * 2.0, name="double")(x), r"layer 'double' \(Lambda\).*Python code.*replace it"),
    (lambda x: _Doubler(name="my_doubler")(x), r"layer 'my_doubler' \(_Doubler\).*rebuild the model"),
    (lambda x: L.Activation("celu", name="act")(x), r"layer 'act' \(Activation\).*'celu'.*use one of"),
    (lambda x: keras.ops.sqrt(x), r"operation 'sqrt\w*' \(Sqrt\).*only \+, -, \* and /.*wrap the computation"),
    (lambda x: L.Resizing(4, 4, pad_to_aspect_ratio=True, name="pad")(x),
     r"layer 'pad' \(Resizing\).*pad_to_aspect_ratio=True.*rebuild the layer without"),
]


def test_untranslatable_layers_are_named_with_the_fix():
    for make, pattern in UNTRANSLATABLE:  # one test: each case costs milliseconds, a test's teardown seconds
        inputs = keras.Input((8, 8, 3))
        model = keras.Model(inputs, L.Conv2D(2, 1, name="conv")(make(inputs)))
        with pytest.raises(TranslationError, match=pattern) as raised:
            compression.quantize_aware(model)
        assert "\n" not in str(raised.value)
