"""Compression: Keras 3 -> tf_keras translation, pruning, QAT and int8 export for every model.

The registry-wide test runs the whole chain a user runs (registry base + their own
head in Keras 3 -> prune with the default schedule -> a short fine-tune -> strip ->
sparsity-preserving QAT -> a short fine-tune on random data -> full-int8 TFLite ->
LiteRT) on a small input, for the smallest variant of every architecture in the
registry, so a newly registered one is covered at once.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tf_keras
from helpers import image_batch, randomize_weights, smallest_per_architecture

from keras_lightnets import compression, create_model, model_config
from keras_lightnets.compression import QuantizationError, TranslationError

SIZE = 32
CLASSES = 3
FORBIDDEN = {"Lambda", "TFOpLambda", "SlicingOpLambda"}


def _fine_tuned(name: str, size: int = SIZE, seed: int = 0):
    """What a user builds: a headless registry model + pooling/dropout/dense head, in Keras 3."""
    base = create_model(name, weights=None, include_top=False, pooling="avg", input_shape=(size, size, 3))
    x = keras.layers.Dropout(0.2, name="head_dropout")(base.output)
    outputs = keras.layers.Dense(CLASSES, activation="softmax", name="head")(x)
    model = keras.Model(base.input, outputs, name=f"{name}_fine_tuned")
    randomize_weights(model, seed)
    return model


def _toy_data(count: int = 8, size: int = SIZE, seed: int = 0):
    images = image_batch(size, batch=count, seed=seed)
    labels = np.arange(count) % CLASSES
    return images, labels


def _short_fine_tune(model, callbacks=None):
    """What a user's first try is: Adam, one epoch of 16 random images in batches of 8.

    Run eagerly: two steps do not repay tracing the train step (two minutes for NASNet's graph);
    graph-mode fits of pruned and QAT models are tested on keras.applications bases
    (test_user_models) and by ``lightnets compress`` (tests/cli)."""
    images, labels = _toy_data(16, seed=3)
    model.compile(optimizer=tf_keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  run_eagerly=True)
    model.fit(images, labels, batch_size=8, epochs=1, verbose=0, callbacks=callbacks or [])
    return images


def _train(model, steps: int = 2, callbacks=None):
    images, labels = _toy_data(4 * steps)
    model.compile(optimizer=tf_keras.optimizers.SGD(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(images, labels, batch_size=4, epochs=1, verbose=0, callbacks=callbacks or [])


# --------------------------------------------------------------------------------------
# Translation
# --------------------------------------------------------------------------------------


def test_translation_keeps_layers_weights_and_outputs():
    model = _fine_tuned("mobilenet_v3_small_075", size=64)
    twin = compression.to_tf_keras(model)
    assert isinstance(twin, tf_keras.Model)
    assert [layer.name for layer in twin.layers] == [layer.name for layer in model.layers]
    for layer in model.layers:
        for a, b in zip(layer.get_weights(), twin.get_layer(layer.name).get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    images = image_batch(64, batch=3, seed=5)
    expected = model.predict(images, verbose=0)
    np.testing.assert_allclose(twin.predict(images, verbose=0), expected, atol=1e-5)
    assert not {type(layer).__name__ for layer in twin.layers} & FORBIDDEN


def test_tf_keras_model_is_returned_as_is():
    model = create_model("mobilenet_v2_035", weights=None, input_shape=(SIZE, SIZE, 3), flavour="tf_keras")
    assert compression.to_tf_keras(model) is model


@pytest.mark.parametrize("style", ["functional", "sequential"])
def test_nested_base_model_is_flattened(style):
    base = create_model("shufflenet_v2_x0_5", weights=None, include_top=False, input_shape=(SIZE, SIZE, 3))
    randomize_weights(base)
    if style == "functional":
        inputs = keras.Input((SIZE, SIZE, 3), name="images")
        x = base(inputs)
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        model = keras.Model(inputs, keras.layers.Dense(CLASSES, name="head")(x))
    else:
        model = keras.Sequential([
            keras.Input((SIZE, SIZE, 3)), base, keras.layers.GlobalAveragePooling2D(name="pool"),
            keras.layers.Dense(CLASSES, name="head"),
        ])
    twin = compression.to_tf_keras(model)
    kinds = {type(layer).__name__ for layer in twin.layers}
    assert "Functional" not in kinds and "Sequential" not in kinds
    assert twin.get_layer("stage2_unit1_branch2_pw1") is not None  # inlined under its own name
    images = image_batch(SIZE, batch=2)
    np.testing.assert_allclose(twin.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-4)
    compression.quantize_aware(twin)  # and the flat twin quantizes


def test_untranslatable_layer_is_named():
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2

    inputs = keras.Input((SIZE, SIZE, 3))
    x = Doubler(name="my_doubler")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="conv")(x))
    with pytest.raises(TranslationError, match=r"my_doubler.*Doubler"):
        compression.to_tf_keras(model)
    with pytest.raises(TranslationError, match="my_doubler"):
        compression.prune(model)


def test_keras3_only_option_is_refused_by_name():
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(4, lora_rank=2, name="lora_dense")(inputs))
    with pytest.raises(TranslationError, match=r"lora_dense.*lora_rank"):
        compression.to_tf_keras(model)


def test_subclassed_model_is_refused_with_the_fix():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(np.zeros((1, 4), "float32"))
    with pytest.raises(TranslationError, match="Functional API"):
        compression.to_tf_keras(net)
    with pytest.raises(TypeError, match="model"):
        compression.to_tf_keras("not a model")


# --------------------------------------------------------------------------------------
# Pruning
# --------------------------------------------------------------------------------------


def test_constant_schedule_holds_the_target_from_begin_step():
    pruned = compression.prune(_fine_tuned("mobilenet_v2_035"), target_sparsity=0.6, begin_step=0, frequency=1)
    wrapped = [layer for layer in pruned.layers if type(layer).__name__ == "PruneLowMagnitude"]
    kinds = {type(compression.unwrap(layer)).__name__ for layer in wrapped}
    assert kinds == {"Conv2D", "Dense"}  # depthwise convs are left alone by default
    _train(pruned, steps=1, callbacks=compression.pruning_callbacks())
    stripped = compression.strip(pruned)
    assert not compression.is_pruned(stripped)
    report = compression.sparsity_report(stripped)
    # every layer reaches the target, odd-sized kernels included (TFMOT alone rounds them one weight short)
    assert report and all(row.sparsity >= 0.6 for row in report), [r.as_dict() for r in report if r.sparsity < 0.6]
    assert any(row.size % 5 for row in report)  # sizes where 60% is not a whole number of weights


def test_polynomial_ramp_off_the_update_grid_still_reaches_the_target():
    # Masks update every 2 steps; an end_step of 5 would leave TFMOT's last update at step 4,
    # short of the target. The ramp is moved to end at step 4, an update within the run.
    pruned = compression.prune(_fine_tuned("mobilenet_v2_035"), target_sparsity=0.5, begin_step=0, end_step=5,
                               frequency=2)
    _train(pruned, steps=7, callbacks=compression.pruning_callbacks())
    report = compression.sparsity_report(compression.strip(pruned))
    assert min(row.sparsity for row in report) >= 0.5


@pytest.mark.parametrize(
    ("target", "sizes", "expected"),
    [(0.5, [10], 0.6), (0.5, [11], 7 / 11), (0.75, [9], 8 / 9), (0.0, [7], 0.0), (0.5, [1], 0.0),
     (0.5, [11, 10], 7 / 11), (0.3, [], 0.3), (0.5, [143360], 0.5 + 1 / 143360)],
)
def test_layer_target_leaves_room_for_rounding_and_a_tie(target, sizes, expected):
    from keras_lightnets.compression.prune import layer_target

    final = layer_target(target, sizes)
    assert final == pytest.approx(expected, abs=1e-9)
    for size in sizes:  # TFMOT keeps round(size * (1 - final)) weights, one more on a tie at the threshold
        kept = round(size * (1 - final))
        assert kept >= 1
        if size > 2 and target > 0:
            assert 1 - (kept + 1) / size >= target


def test_polynomial_schedule_ramps_up():
    pruned = compression.prune(_fine_tuned("mobilenet_v2_035"), target_sparsity=0.8, begin_step=0, end_step=100,
                               frequency=1)
    _train(pruned, steps=2, callbacks=compression.pruning_callbacks())
    reached = compression.overall_sparsity(compression.sparsity_report(compression.strip(pruned)))
    assert 0.0 < reached < 0.5  # 2 of 100 ramp steps: far below the final 0.8


def test_layer_filter_by_name_and_class():
    model = _fine_tuned("mobilenet_v2_035")
    only_head = compression.prune(model, 0.5, layers=["head"])
    wrapped = [compression.unwrap(layer).name for layer in only_head.layers
               if type(layer).__name__ == "PruneLowMagnitude"]
    assert wrapped == ["head"]
    depthwise = compression.prune(model, 0.5, layers=["DepthwiseConv2D"])
    assert all(type(compression.unwrap(layer)).__name__ == "DepthwiseConv2D"
               for layer in depthwise.layers if type(layer).__name__ == "PruneLowMagnitude")
    with pytest.raises(ValueError, match="no_such_layer"):
        compression.prune(model, 0.5, layers=["no_such_layer"])


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [({"target_sparsity": 1.0}, "target_sparsity"), ({"begin_step": -1}, "begin_step"),
     ({"begin_step": 10, "end_step": 5}, "end_step"), ({"frequency": 0}, "frequency"),
     ({"layers": "Conv2D"}, "layers"), ({"layers": lambda layer: False}, "layers")],
)
def test_bad_pruning_arguments_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        compression.prune(_fine_tuned("mobilenet_v2_035"), **kwargs)


def test_update_pruning_step_from_tfmot_works_as_is():
    import tensorflow_model_optimization as tfmot

    pruned = compression.prune(_fine_tuned("mnasnet_b1_050"), 0.5, frequency=1)
    _train(pruned, steps=1, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    assert compression.overall_sparsity(compression.sparsity_report(compression.strip(pruned))) >= 0.5


# --------------------------------------------------------------------------------------
# Quantization-aware training
# --------------------------------------------------------------------------------------


def test_qat_keeps_outputs_close_and_quantizes_the_package_layers():
    model = _fine_tuned("mobilenet_v3_small_075")
    qat = compression.quantize_aware(model)
    by_name = {compression.unwrap(layer).name: layer for layer in qat.layers}
    for name in ("expanded_conv_squeeze_excite_mul", "conv_act", "rescaling"):
        assert type(by_name[name]).__name__.startswith("QuantizeWrapper"), name
    # QAT trains the int8 form of hard-swish: its two inner values are fake-quantized
    hard_swish = by_name["conv_act"].layer
    assert hard_swish.int8_graph and type(hard_swish.gate).__name__ == "QuantizeAwareActivation"
    images = image_batch(SIZE, batch=4)
    # Fake quantization before any calibration changes outputs a little, not their meaning.
    expected, found = model.predict(images, verbose=0), qat.predict(images, verbose=0)
    assert np.abs(expected - found).max() < 0.25


def test_qat_of_a_layer_without_config_names_it():
    inputs = tf_keras.Input((SIZE, SIZE, 3))
    x = tf_keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = tf_keras.layers.LayerNormalization(name="my_norm")(x)
    model = tf_keras.Model(inputs, x)
    with pytest.raises(QuantizationError, match=r"my_norm.*LayerNormalization.*quantize_configs"):
        compression.quantize_aware(model)


@pytest.mark.parametrize("name", ["shufflenet_v2_x0_5", "mobilenet_v3_small_075"])
def test_qat_model_saves_and_loads_in_quantize_scope(name, tmp_path):
    qat = compression.quantize_aware(_fine_tuned(name))
    path = str(tmp_path / "qat.h5")
    qat.save(path)
    with compression.quantize_scope():
        loaded = tf_keras.models.load_model(path)
    images = image_batch(SIZE, batch=2)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), qat.predict(images, verbose=0), atol=1e-6)


# --------------------------------------------------------------------------------------
# Every architecture: prune -> strip -> sparsity-preserving QAT -> full int8 TFLite
# --------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", smallest_per_architecture())
def test_every_model_prunes_quantizes_and_exports_to_int8(name, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from keras_lightnets.export import to_tflite
    from keras_lightnets.export.benchmark import delegate_coverage
    from keras_lightnets.export.describe import tflite_kernel_sparsity

    target = 0.5
    pruned = compression.prune(_fine_tuned(name), target_sparsity=target)  # the default schedule
    _short_fine_tune(pruned, callbacks=compression.pruning_callbacks())  # 2 steps, far fewer than `frequency`
    stripped = compression.strip(pruned)
    pruned_rows = compression.sparsity_report(stripped)
    assert pruned_rows and min(row.sparsity for row in pruned_rows) >= target

    qat = compression.quantize_aware(stripped)
    images = _short_fine_tune(qat)  # ranges barely move from their start: concatenations must share one
    pruned_names = {row.layer for row in pruned_rows}
    after_qat = [row for row in compression.sparsity_report(qat) if row.layer in pruned_names]
    assert after_qat and min(row.sparsity for row in after_qat) >= target  # QAT kept the zeros

    path = tmp_path / f"{name}.tflite"
    report = to_tflite(qat, path, quantization="int8", representative_data=images)
    assert path.is_file() and not report.float_ops, report.float_ops
    assert "HARD_SWISH" not in report.op_counts  # XNNPACK has no int8 kernel for it
    # The zeros reach the file: every CONV_2D / FULLY_CONNECTED weight tensor was pruned.
    assert tflite_kernel_sparsity(path) >= target
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert inp["dtype"] == np.int8 and out["dtype"] == np.int8
    scale, zero_point = inp["quantization"]
    interpreter.set_tensor(inp["index"], np.clip(np.round(images[:1] / scale + zero_point), -128, 127).astype(np.int8))
    interpreter.invoke()
    logits = interpreter.get_tensor(out["index"])
    assert logits.shape == (1, CLASSES)
    details = interpreter.get_tensor_details()
    for op in interpreter._get_ops_details():  # every concatenation: one scale for its inputs and output
        if op["op_name"] == "CONCATENATION":
            ranges = {details[i]["quantization"] for i in [*op["inputs"], *op["outputs"]]}
            assert len(ranges) == 1, (op["index"], ranges)
    # One XNNPACK partition where XNNPACK has the ops (grouped convolutions included); it has no int8
    # SOFTMAX, AVERAGE_POOL_2D (ShuffleNet V1's stride-2 shortcuts, NASNet) nor standalone RELU (NASNet).
    partitions, outside = delegate_coverage(path)
    family = model_config(name).family
    if family == "nasnet":
        assert set(outside) <= {"SOFTMAX", "RELU", "AVERAGE_POOL_2D", "CONCATENATION"}, outside
    elif family == "shufflenet_v1":
        assert (partitions, outside) == (4, {"AVERAGE_POOL_2D": 3, "SOFTMAX": 1})
    else:
        assert (partitions, outside) == (1, {"SOFTMAX": 1})
