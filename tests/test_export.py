"""TFLite export: ``to_tflite`` in every mode for Keras 3, tf_keras and TFMOT QAT models,
``verify_tflite``, ``benchmark_tflite``, atomic writes and argument errors (the converter command
line is tested in ``tests/cli/test_cli_export.py``).

Models are small (32x32 inputs, 3-5 classes) so the whole file runs in a few minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    file_names,
    image_batch,
    randomize_weights,
    separable_images,
    tiny_keras3_classifier,
    tiny_qat_model,
    to_unit,
)

import keras_lightnets
from keras_lightnets import legacy
from keras_lightnets.export import (
    QUANTIZATION_MODES,
    ConversionError,
    benchmark_tflite,
    conversion,
    delegate_coverage,
    describe_tflite,
    is_qat_model,
    to_tflite,
    verify_tflite,
)

SIZE = 32


# --------------------------------------------------------------------------- helpers and fixtures

@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return image_batch(SIZE, batch=12)


@pytest.fixture(scope="module")
def keras3_model():
    model = keras_lightnets.create_model("mobilenet_v3_small_075", weights=None, input_shape=(SIZE, SIZE, 3), classes=5)
    randomize_weights(model)
    return model


@pytest.fixture(scope="module")
def tf_keras_model():
    model = legacy.create_model("mobilenet_v2_035", weights=None, input_shape=(SIZE, SIZE, 3), classes=5)
    randomize_weights(model)
    return model


def _export_all_modes(model, images, folder: Path) -> dict[str, tuple]:
    results = {}
    for mode in QUANTIZATION_MODES:
        report = to_tflite(model, folder / f"{mode}.tflite", mode, images if mode == "int8" else None)
        results[mode] = (report, verify_tflite(report.path, model, images))
    return results


@pytest.fixture(scope="module")
def keras3_exports(keras3_model, images, tmp_path_factory):
    return _export_all_modes(keras3_model, images, tmp_path_factory.mktemp("keras3"))


@pytest.fixture(scope="module")
def tf_keras_exports(tf_keras_model, images, tmp_path_factory):
    return _export_all_modes(tf_keras_model, images, tmp_path_factory.mktemp("tf_keras"))


@pytest.fixture(scope="module")
def tiny():
    return tiny_keras3_classifier()


@pytest.fixture(scope="module")
def tiny_int8(tiny, tmp_path_factory):
    """The tiny classifier as an int8 file, calibrated on 60 separable images."""
    path = tmp_path_factory.mktemp("tiny") / "tiny_int8.tflite"
    return to_tflite(tiny, path, "int8", to_unit(separable_images(60, seed=1)[0]))


@pytest.fixture
def no_conversion(monkeypatch):
    """Make any start of conversion work fail the test (argument errors must come first)."""

    def forbidden(*args, **kwargs):
        raise AssertionError("conversion started before the arguments were checked")

    monkeypatch.setattr(conversion, "_converter", forbidden)


# --------------------------------------------------------------------------- to_tflite: modes and flavours

@pytest.mark.parametrize("exports_name", ["keras3_exports", "tf_keras_exports"])
def test_every_mode_writes_a_described_file(exports_name, request):
    exports = request.getfixturevalue(exports_name)
    flavour = "keras" if exports_name == "keras3_exports" else "tf_keras"
    for mode, (report, _) in exports.items():
        assert report.quantization == mode and report.flavour == flavour and not report.qat
        assert os.path.getsize(report.path) == report.size_bytes
        assert report.inputs[0].shape == [1, SIZE, SIZE, 3] and report.outputs[0].shape == [1, 5]
        assert report.op_counts["CONV_2D"] > 0 and report.op_counts["SOFTMAX"] == 1
        assert report.as_dict()["inputs"][0]["dtype"] == report.inputs[0].dtype
        json.dumps(report.as_dict())
    sizes = {mode: report.size_bytes for mode, (report, _) in exports.items()}
    assert sizes["none"] > sizes["float16"] > sizes["dynamic"]
    assert sizes["none"] > 2.5 * sizes["int8"]


@pytest.mark.parametrize("exports_name", ["keras3_exports", "tf_keras_exports"])
@pytest.mark.parametrize("mode, tolerance", [("none", 1e-5), ("float16", 2e-3), ("dynamic", 2e-2)])
def test_float_modes_match_keras(exports_name, mode, tolerance, request):
    report, verify = request.getfixturevalue(exports_name)[mode]
    assert report.inputs[0].dtype == report.outputs[0].dtype == "float32"
    assert report.inputs[0].scale is None and report.representative_samples == 0
    assert verify.input_dtype == "float32" and verify.samples == 12
    assert verify.max_abs_diff < tolerance
    assert verify.top1_agreement is not None


def test_float16_file_dequantizes_its_weights(keras3_exports):
    report, _ = keras3_exports["float16"]
    assert report.op_counts["DEQUANTIZE"] > 0
    assert "DEQUANTIZE" not in keras3_exports["none"][0].op_counts


@pytest.mark.parametrize("exports_name", ["keras3_exports", "tf_keras_exports"])
def test_int8_has_int8_io_and_no_float_op(exports_name, request):
    report, verify = request.getfixturevalue(exports_name)["int8"]
    for tensor in report.inputs + report.outputs:
        assert tensor.dtype == "int8"
        assert tensor.scale > 0 and -128 <= tensor.zero_point <= 127
    assert report.float_ops == []
    assert not {"QUANTIZE", "DEQUANTIZE"} & set(report.op_counts)
    assert report.representative_samples == 12
    assert verify.input_dtype == verify.output_dtype == "int8"
    # random weights: the dequantized softmax stays close to the float one
    assert verify.mean_abs_diff < 0.02


def test_int8_hard_swish_is_written_as_ops_xnnpack_runs(keras3_exports, keras3_model):
    # Float: one fused HARD_SWISH per layer. int8: XNNPACK has no int8 HARD_SWISH, so the layer
    # is traced as MUL, ADD(+RELU6), MUL instead; the model itself is left as it was.
    hard_swish = sum(type(layer).__name__ == "HardSwish" for layer in keras3_model.layers)
    float_report, int8_report = keras3_exports["none"][0], keras3_exports["int8"][0]
    assert float_report.op_counts["HARD_SWISH"] == hard_swish > 0
    assert "HARD_SWISH" not in int8_report.op_counts
    assert int8_report.op_counts["MUL"] == float_report.op_counts["MUL"] + 2 * hard_swish
    assert int8_report.op_counts["ADD"] == float_report.op_counts["ADD"] + hard_swish
    assert not any(getattr(layer, "int8_graph", False) for layer in keras3_model.layers)


def test_int8_graph_restores_the_layers_after_an_error(keras3_model):
    from keras_lightnets.layers import int8_graph

    with pytest.raises(RuntimeError), int8_graph(keras3_model):
        assert all(layer.int8_graph for layer in keras3_model.layers if hasattr(layer, "int8_graph"))
        raise RuntimeError
    assert not any(getattr(layer, "int8_graph", False) for layer in keras3_model.layers)


def test_delegate_coverage_counts_ops_left_outside_partitions():
    from keras_lightnets.export.delegation import ops_outside_delegates

    def node(index, name, inputs, outputs):
        return {"index": index, "op_name": name, "inputs": inputs, "outputs": outputs}

    class Table:  # conv -> hard_swish (not delegated) -> conv -> softmax (not delegated)
        def _get_ops_details(self):
            return [node(0, "CONV_2D", [0, 10], [1]), node(1, "HARD_SWISH", [1], [2]),
                    node(2, "CONV_2D", [2, 11, -1], [3]), node(3, "SOFTMAX", [3], [4]),
                    node(4, "DELEGATE", [0, 10], [1]), node(5, "DELEGATE", [2, 11], [3])]

    assert ops_outside_delegates(Table()) == (2, {"HARD_SWISH": 1, "SOFTMAX": 1})


def _weight_scale_counts(path) -> list[int]:
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_path=str(path)).get_tensor_details()
    return [len(d["quantization_parameters"]["scales"]) for d in details if d["dtype"] == np.int8]


def test_per_tensor_int8_has_one_scale_per_weight_and_is_smaller(tiny, tiny_int8, tmp_path):
    report = to_tflite(tiny, tmp_path / "per_tensor.tflite", "int8", to_unit(separable_images(60, seed=1)[0]),
                       per_channel=False)
    assert tiny_int8.per_channel and not report.per_channel and report.float_ops == []
    assert max(_weight_scale_counts(tiny_int8.path)) == 8  # the conv's 8 output channels
    assert max(_weight_scale_counts(report.path)) == 1
    assert report.size_bytes < tiny_int8.size_bytes
    images, labels = separable_images(90, seed=2)
    verify = verify_tflite(report.path, tiny, to_unit(images), labels=labels)
    assert verify.tflite_accuracy >= 0.9 and verify.top1_agreement >= 0.95


def test_strip_names_drops_tensor_names_and_keeps_results(tiny, tiny_int8, tmp_path):
    report = to_tflite(tiny, tmp_path / "stripped.tflite", "int8", to_unit(separable_images(60, seed=1)[0]),
                       strip_names=True)
    assert report.strip_names and report.inputs[0].name == "" and tiny_int8.inputs[0].name
    assert report.size_bytes < tiny_int8.size_bytes
    assert report.op_counts == tiny_int8.op_counts
    images = to_unit(separable_images(20, seed=4)[0])
    plain, stripped = verify_tflite(tiny_int8.path, tiny, images), verify_tflite(report.path, tiny, images)
    assert stripped.max_abs_diff == plain.max_abs_diff  # the same numbers, only names are gone


def test_int8_of_a_trained_classifier_agrees_with_keras(tiny, tiny_int8):
    images, labels = separable_images(90, seed=2)
    verify = verify_tflite(tiny_int8.path, tiny, to_unit(images), labels=labels)
    assert abs(tiny_int8.inputs[0].scale - 2 / 255) < 1e-3
    assert verify.keras_accuracy >= 0.95
    assert verify.top1_agreement >= 0.95
    assert verify.tflite_accuracy >= 0.9
    assert verify.mean_abs_diff < 0.05
    assert set(verify.as_dict()) >= {"max_abs_diff", "mean_abs_diff", "top1_agreement", "keras_accuracy"}


def test_int8_without_representative_data_is_a_clear_error(tiny, tmp_path, no_conversion):
    with pytest.raises(ValueError, match="representative_data") as info:
        to_tflite(tiny, tmp_path / "m.tflite", "int8")
    assert "(N, 32, 32, 3)" in str(info.value)
    assert file_names(tmp_path) == []


def test_qat_model_converts_to_int8_without_data(tmp_path):
    qat = tiny_qat_model()
    assert is_qat_model(qat)
    report = to_tflite(qat, tmp_path / "qat.tflite", "int8")
    assert report.qat and report.flavour == "tf_keras" and report.representative_samples == 0
    assert report.inputs[0].dtype == report.outputs[0].dtype == "int8"
    assert report.float_ops == [] and report.per_channel  # TFMOT's default: a range per conv channel
    images, labels = separable_images(60, seed=3)
    verify = verify_tflite(report.path, qat, images, labels=labels)
    assert verify.keras_accuracy >= 0.9 and verify.tflite_accuracy >= 0.9
    assert verify.top1_agreement >= 0.9
    with pytest.raises(ValueError, match="quantization='int8' only"):
        to_tflite(qat, tmp_path / "qat_dynamic.tflite", "dynamic")
    with pytest.raises(ValueError, match=r"per channel.*quantize_aware\(\.\.\., per_channel=False\)"):
        to_tflite(qat, tmp_path / "qat_per_tensor.tflite", "int8", per_channel=False)
    assert not (tmp_path / "qat_per_tensor.tflite").exists()


def test_per_tensor_qat_of_a_pruned_model_keeps_zeros_and_writes_one_scale_per_weight(tmp_path):
    """``quantize_aware(per_channel=False)``: every kernel one range (Conv2D feeding a ReLU layer, a
    DepthwiseConv2D folded with its BatchNormalization, Dense), pruned zeros kept through QAT."""
    import tf_keras

    from keras_lightnets import compression
    from keras_lightnets.export.describe import tflite_kernel_sparsity

    tf_keras.utils.set_random_seed(0)
    layers = tf_keras.layers
    inputs = layers.Input((SIZE, SIZE, 3))
    x = layers.Conv2D(16, 3, strides=2, name="conv")(inputs)
    x = layers.ReLU(name="conv_relu")(x)
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = layers.BatchNormalization(name="dw_bn")(x)
    x = layers.ReLU(6.0, name="dw_relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(3, activation="softmax", name="head")(x)
    model = tf_keras.Model(inputs, outputs)
    images, labels = separable_images(240)
    images = to_unit(images)
    pruned = compression.prune(model, target_sparsity=0.5)
    pruned.compile(tf_keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    pruned.fit(images, labels, epochs=4, batch_size=32, verbose=0, callbacks=compression.pruning_callbacks())
    qat = compression.quantize_aware(compression.strip(pruned), per_channel=False)
    qat.compile(tf_keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    qat.fit(images, labels, epochs=2, batch_size=32, verbose=0)
    assert min(row.sparsity for row in compression.sparsity_report(qat)) >= 0.5

    report = to_tflite(qat, tmp_path / "qat.tflite", "int8")
    assert report.qat and not report.per_channel and report.float_ops == []
    assert set(_weight_scale_counts(report.path)) == {1}
    assert tflite_kernel_sparsity(report.path) >= 0.5
    test_images, test_labels = separable_images(90, seed=2)
    verify = verify_tflite(report.path, qat, to_unit(test_images), labels=test_labels)
    assert verify.tflite_accuracy >= 0.9 and verify.top1_agreement >= 0.9
    with pytest.raises(ValueError, match="`per_channel` must be True or False"):
        compression.quantize_aware(model, per_channel="no")


def test_plain_models_are_not_qat(keras3_model, tf_keras_model):
    assert not is_qat_model(keras3_model) and not is_qat_model(tf_keras_model)


def test_open_input_size_needs_input_shape_then_converts_with_iterable_data(tmp_path):
    import keras

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    with pytest.raises(ValueError, match="input_shape"):
        to_tflite(model, tmp_path / "open.tflite")
    batches = (image_batch(24, batch=4, seed=s) for s in range(5))
    report = to_tflite(model, tmp_path / "open.tflite", "int8", batches, input_shape=(24, 24, 3), batch_size=2,
                       num_samples=16)
    assert report.inputs[0].shape == [2, 24, 24, 3] and report.batch_size == 2
    assert report.representative_samples == 16
    verify = verify_tflite(report.path, model, image_batch(24, batch=5))  # 5 images: the last batch is padded
    assert verify.samples == 5 and verify.mean_abs_diff < 0.05


def test_ops_left_in_float_are_named_and_refused(tmp_path):
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.Lambda(keras.ops.sin)(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    data = image_batch(8, batch=4)
    with pytest.raises(ConversionError, match=r"float ops: SIN x1.*allow_float_ops"):
        to_tflite(model, tmp_path / "sin.tflite", "int8", data)
    assert file_names(tmp_path) == []
    report = to_tflite(model, tmp_path / "sin.tflite", "int8", data, allow_float_ops=True)
    assert "SIN" in report.float_ops and {"QUANTIZE", "DEQUANTIZE"} <= set(report.float_ops)


def test_ops_without_a_builtin_kernel_are_named(tmp_path):
    import keras

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Lambda(keras.ops.erf)(inputs))
    with pytest.raises(ConversionError, match="ops without a TFLite builtin kernel: Erf") as info:
        to_tflite(model, tmp_path / "erf.tflite")
    assert "\n" not in str(info.value)
    assert file_names(tmp_path) == []


# --------------------------------------------------------------------------- argument errors

@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"quantization": "int4"}, ValueError, r"`quantization` must be one of 'none', 'float16', 'dynamic', 'int8'"),
    ({"quantization": "int8", "representative_data": np.zeros((4, 16, 16, 3))}, ValueError, r"\(N, 32, 32, 3\)"),
    ({"quantization": "int8", "representative_data": np.zeros((32, 32, 3))}, ValueError, "shape"),
    ({"quantization": "int8", "representative_data": np.full((2, 32, 32, 3), "a")}, ValueError, "dtype"),
    ({"quantization": "int8", "representative_data": np.zeros((2, 32, 32, 3), bool)}, ValueError, "dtype"),
    ({"quantization": "int8", "representative_data": np.full((2, 32, 32, 3), np.nan)}, ValueError, "NaN"),
    ({"quantization": "int8", "representative_data": []}, ValueError, "empty"),
    ({"quantization": "int8", "representative_data": 3}, ValueError, "representative_data"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"input_shape": (16, 16, 3)}, ValueError, "input_shape"),
    ({"input_shape": (32, 32)}, ValueError, "input_shape"),
    ({"quantization": "int8", "representative_data": np.zeros((2, 32, 32, 3)), "per_channel": "no"}, ValueError,
     "`per_channel` must be True or False"),
    ({"quantization": "dynamic", "per_channel": False}, ValueError, "per_channel=False applies to quantization='int8'"),
    ({"strip_names": 1}, ValueError, "`strip_names` must be True or False"),
])
def test_bad_arguments_fail_before_conversion(tiny, tmp_path, no_conversion, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        to_tflite(tiny, tmp_path / "m.tflite", **kwargs)
    assert file_names(tmp_path) == []


def test_bad_path_and_model(tiny, tmp_path, no_conversion):
    with pytest.raises(FileNotFoundError, match=r"`path`.*does not exist"):
        to_tflite(tiny, tmp_path / "missing" / "m.tflite")
    with pytest.raises(ValueError, match=r"`path`.*is a folder"):
        to_tflite(tiny, tmp_path)
    with pytest.raises(ValueError, match="`model` must be a Keras 3 or tf_keras Model"):
        to_tflite(object(), tmp_path / "m.tflite")
    with pytest.raises(ValueError, match="`model` must be a Keras 3 or tf_keras Model"):
        to_tflite(tiny.layers[-1], tmp_path / "m.tflite")


# --------------------------------------------------------------------------- atomic writes

def test_failed_conversion_leaves_no_file(tiny, tmp_path, monkeypatch):
    def interrupted(converter, quantization):
        raise KeyboardInterrupt

    monkeypatch.setattr(conversion, "_convert", interrupted)
    with pytest.raises(KeyboardInterrupt):
        to_tflite(tiny, tmp_path / "m.tflite")
    assert file_names(tmp_path) == []


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_write_interrupted_midway_leaves_old_file_and_no_temp(tiny, tiny_int8, tmp_path, monkeypatch, failing):
    content = Path(tiny_int8.path).read_bytes()
    monkeypatch.setattr(conversion, "_convert", lambda converter, quantization: content)
    target = tmp_path / "m.tflite"
    target.write_bytes(b"previous")

    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, failing, broken)
    with pytest.raises(KeyboardInterrupt):
        to_tflite(tiny, target)
    monkeypatch.undo()
    assert file_names(tmp_path) == ["m.tflite"] and target.read_bytes() == b"previous"


# --------------------------------------------------------------------------- describe, verify, benchmark

def test_describe_reads_the_flatbuffer(tiny_int8):
    from_path = describe_tflite(tiny_int8.path)
    from_bytes = describe_tflite(Path(tiny_int8.path).read_bytes())
    assert from_path == from_bytes
    assert from_path.op_counts == tiny_int8.op_counts
    assert from_path.op_counts["CONV_2D"] == 1 and from_path.op_counts["FULLY_CONNECTED"] == 1
    assert from_path.inputs[0].zero_point == tiny_int8.inputs[0].zero_point


def test_verify_rejects_bad_data(tiny, tiny_int8, tmp_path):
    with pytest.raises(ValueError, match=r"\(N, 32, 32, 3\)"):
        verify_tflite(tiny_int8.path, tiny, np.zeros((2, 16, 16, 3), "float32"))
    with pytest.raises(ValueError, match="labels"):
        verify_tflite(tiny_int8.path, tiny, np.zeros((2, 32, 32, 3), "float32"), labels=[0.5, 1.5])
    with pytest.raises(FileNotFoundError, match="path"):
        verify_tflite(tmp_path / "none.tflite", tiny, np.zeros((2, 32, 32, 3), "float32"))


def test_benchmark_reports_latency_and_memory(tiny_int8):
    report = benchmark_tflite(tiny_int8.path, threads=1, runs=5, warmup=1)
    assert report.runs == 5 and report.threads == 1
    for value in (report.median_ms, report.p90_ms, report.mean_ms, report.min_ms, report.peak_memory_kib):
        assert value > 0
    assert report.p90_ms >= report.median_ms >= report.min_ms
    assert report.extra["child_modules"] == []  # the child never imported TensorFlow or Keras
    # conv, pooling and dense run in one XNNPACK partition; XNNPACK has no int8 softmax
    assert report.delegate_partitions == 1 and report.ops_outside_delegate == {"SOFTMAX": 1}
    assert delegate_coverage(tiny_int8.path) == (1, {"SOFTMAX": 1})
    assert set(report.as_dict()) >= {"median_ms", "p90_ms", "peak_memory_kib", "memory_method"}
    with pytest.raises(ValueError, match="threads"):
        benchmark_tflite(tiny_int8.path, threads=0)
