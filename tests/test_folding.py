"""``compression.folding``: BatchNormalization folded into the convolution before it.

The folded model must compute what the model did at inference, lose exactly the foldable
BatchNormalizations, and leave every other layer (and a conv shared or followed by an
activation) as it was. Per-tensor QAT relies on it (``test_export`` converts such a model).
"""

from __future__ import annotations

import numpy as np
import pytest
import tf_keras
from helpers import image_batch, randomize_weights

from keras_lightnets import create_model
from keras_lightnets.compression.folding import fold_batch_norms, foldable_pairs
from keras_lightnets.layers import custom_objects

layers = tf_keras.layers


def _toy():
    """Every case: conv without bias + BN, depthwise (multiplier 2) with bias + BN, a conv whose
    output also feeds a second layer (not folded), a conv with a ReLU activation (not folded), and a
    BN that is the model's output."""
    inputs = layers.Input((12, 12, 3))
    x = layers.Conv2D(6, 3, use_bias=False, name="conv")(inputs)
    x = layers.BatchNormalization(name="conv_bn")(x)
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(x)
    x = layers.BatchNormalization(name="dw_bn")(x)
    shared = layers.Conv2D(4, 1, name="shared")(x)
    y = layers.BatchNormalization(name="shared_bn")(shared)
    side = layers.ReLU(name="side")(shared)
    z = layers.Conv2D(4, 1, activation="relu", name="relu_conv")(layers.Add(name="add")([y, side]))
    z = layers.BatchNormalization(name="relu_conv_bn")(z)
    last = layers.BatchNormalization(name="head_bn")(layers.Conv2D(5, 1, name="head")(z))
    model = tf_keras.Model(inputs, last, name="toy")
    randomize_weights(model, seed=3)
    return model


def test_folded_model_computes_the_same_and_drops_only_the_foldable_batch_norms():
    model = _toy()
    assert foldable_pairs(model) == {"conv_bn": "conv", "dw_bn": "dw", "head_bn": "head"}
    folded = fold_batch_norms(model)
    names = [layer.name for layer in folded.layers]
    assert not {"conv_bn", "dw_bn", "head_bn"} & set(names)
    assert {"shared_bn", "relu_conv_bn"} <= set(names)
    assert folded.get_layer("conv").use_bias and folded.get_layer("dw").use_bias
    images = image_batch(12, batch=3) / 127.5 - 1
    np.testing.assert_allclose(folded.predict(images, verbose=0), model.predict(images, verbose=0),
                               rtol=1e-4, atol=1e-4)


def test_pruned_zeros_stay_zeros():
    model = _toy()
    kernel = model.get_layer("conv").kernel.numpy()
    kernel[..., ::2] = 0.0
    model.get_layer("conv").kernel.assign(kernel)
    folded_kernel = fold_batch_norms(model).get_layer("conv").kernel.numpy()
    assert np.all(folded_kernel[..., ::2] == 0.0) and np.all(folded_kernel[..., 1::2] != 0.0)


def test_model_without_foldable_batch_norm_is_returned_as_is():
    inputs = layers.Input((8, 8, 3))
    model = tf_keras.Model(inputs, layers.BatchNormalization()(layers.ReLU()(inputs)))
    assert fold_batch_norms(model) is model


@pytest.mark.parametrize("name", ["mobilenet_v2_035", "shufflenet_v2_x0_5"])
def test_registry_models_fold_to_the_same_outputs(name):
    model = create_model(name, weights=None, input_shape=(64, 64, 3), classes=10, flavour="tf_keras")
    randomize_weights(model, seed=1)
    folded = fold_batch_norms(model, custom_objects("tf_keras"))
    assert not [layer for layer in folded.layers if type(layer).__name__ == "BatchNormalization"]
    images = image_batch(64, batch=2) / 127.5 - 1
    np.testing.assert_allclose(folded.predict(images, verbose=0), model.predict(images, verbose=0),
                               rtol=1e-3, atol=1e-5)
