"""Helpers the test modules share: deterministic random weights, input batches, and the
registry subsets the tests iterate (imported as ``from helpers import ...``; conftest.py keeps
only pytest's hooks and fixtures)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_lightnets.models.registry import list_models, model_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY_MODEL = "squeezenet1_1"  # the quickest registry model to train from the command line
FAST_TRAIN = ["--weights", "none", "--image-size", "32", "--limit", "32", "--batch-size", "32", "--quiet"]
TINY_SIZE = 32  # input side of the tiny export models, in pixels
# Upper bound on any child process or wait in the tests: a guard against hangs, never a speed
# assertion (a CI machine several times slower than this one must still pass).
WAIT_S = 1800


def randomize_weights(model, seed: int = 0) -> None:
    """Give every weight a reproducible random value that keeps BatchNorm well-behaved.

    Moving variances are in [0.5, 1.5] and gammas near 1, so activations neither
    vanish nor explode and output comparisons are meaningful.
    """
    rng = np.random.default_rng(seed)
    values = []
    for weight in model.weights:
        name = weight.path if hasattr(weight, "path") else weight.name
        shape = tuple(weight.shape)
        if "moving_variance" in name:
            values.append(rng.uniform(0.5, 1.5, shape))
        elif "gamma" in name:
            values.append(rng.uniform(0.8, 1.2, shape))
        elif "moving_mean" in name or "beta" in name or "bias" in name:
            values.append(rng.normal(0.0, 0.1, shape))
        else:
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
            values.append(rng.normal(0.0, 1.0 / np.sqrt(max(fan_in, 1)), shape))
    model.set_weights([v.astype("float32") for v in values])


def infer(model, inputs):
    """``model``'s outputs for ``inputs`` as numpy (a list for several outputs), from one eager call in
    inference mode: what ``predict`` returns, without tracing a predict function for one batch
    (0.4-2 s a model, most of a registry-wide test's time)."""
    outputs = model(inputs, training=False)
    if isinstance(outputs, list | tuple):
        return [np.asarray(output) for output in outputs]
    return np.asarray(outputs)


def image_batch(size: int, batch: int = 2, channels: int = 3, seed: int = 1) -> np.ndarray:
    """``(batch, size, size, channels)`` float32 pixels in [0, 255]."""
    return np.random.default_rng(seed).uniform(0, 255, (batch, size, size, channels)).astype("float32")


def smallest_per_architecture() -> list[str]:
    """The registry's smallest variant of each architecture (``ModelConfig.architecture``:
    scaled variants of one code path share it).

    Behaviour that does not depend on the scale (argument handling, serialization, feature
    maps, compression) is tested on these; facts that do (parameters, MACs, Keras 3 vs
    tf_keras outputs) on every variant. A newly registered architecture joins both at once.
    """
    chosen: dict[str, str] = {}
    for name in list_models():
        config = model_config(name)
        key = config.architecture
        if key not in chosen or config.params < model_config(chosen[key]).params:
            chosen[key] = name
    return sorted(chosen.values())


def smallest_per_family() -> list[str]:
    """The registry's smallest variant (fewest parameters) of each family: for the slowest
    per-family checks (SavedModel export) and family-level facts (layer groups)."""
    chosen: dict[str, str] = {}
    for name in list_models():
        family = model_config(name).family
        if family not in chosen or model_config(name).params < model_config(chosen[family]).params:
            chosen[family] = name
    return sorted(chosen.values())


# --------------------------------------------------------------------------- command line


def train_tiny(*argv: str) -> int:
    """``lightnets train TINY_MODEL *argv``: the exit code (argparse usage errors included)."""
    from keras_lightnets.cli import main

    try:
        return main(["train", TINY_MODEL, *argv])
    except SystemExit as exit_:
        return exit_.code


def cli_error_line(capsys) -> str:
    """The one ``lightnets: error: ...`` line a failed command wrote to stderr."""
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lightnets: error: "), err
    return lines[0]


def first_markdown_table(text: str) -> list[str]:
    """The lines of the first Markdown table in ``text``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def file_names(folder: Path) -> list[str]:
    """The sorted names of the entries of ``folder``."""
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- tiny export models


def separable_images(n: int, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 32, 32, 3)`` float pixels whose class is the brighter channel, and the labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = rng.uniform(0, 120, (n, TINY_SIZE, TINY_SIZE, 3)).astype("float32")
    images[np.arange(n), :, :, labels] += 120.0
    return images, labels


def to_unit(pixels: np.ndarray) -> np.ndarray:
    """Pixels in [0, 255] -> [-1, 1] (``preprocess_input`` mode "tf")."""
    return pixels / 127.5 - 1.0


def tiny_keras3_classifier(classes: int = 3):
    """A Keras 3 conv net trained for a few epochs on ``separable_images`` mapped to [-1, 1] (about 100 %
    accurate). Its int8 input scale is about 2/255, so input quantization errors show."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((TINY_SIZE, TINY_SIZE, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs, name="tiny")
    images, labels = separable_images(240, classes)
    model.compile(keras.optimizers.Adam(0.03), "sparse_categorical_crossentropy")
    model.fit(to_unit(images), labels, epochs=12, batch_size=32, verbose=0)
    return model


def tiny_qat_model():
    """A plain tf_keras conv net (standard layers), trained, then TFMOT ``quantize_model`` + one epoch."""
    import tensorflow_model_optimization as tfmot
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    layers = tf_keras.layers
    inputs = layers.Input((TINY_SIZE, TINY_SIZE, 3))
    x = layers.Conv2D(8, 3, strides=2)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.DepthwiseConv2D(3, padding="same")(x)
    x = layers.ReLU(6.0)(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(3)(x)
    outputs = layers.Softmax()(x)
    model = tf_keras.Model(inputs, outputs)
    images, labels = separable_images(240)
    model.compile(tf_keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(images, labels, epochs=8, batch_size=32, verbose=0)
    qat = tfmot.quantization.keras.quantize_model(model)
    qat.compile(tf_keras.optimizers.Adam(0.001), "sparse_categorical_crossentropy")
    qat.fit(images, labels, epochs=2, batch_size=32, verbose=0)
    return qat


