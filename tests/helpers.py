"""Helpers the test modules share: deterministic random weights, input batches, and the
registry subsets the tests iterate (imported as ``from helpers import ...``; conftest.py keeps
only pytest's hooks and fixtures)."""

from __future__ import annotations

import numpy as np

from keras_lightnets.models.registry import list_models, model_config


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


def image_batch(size: int, batch: int = 2, channels: int = 3, seed: int = 1) -> np.ndarray:
    """``(batch, size, size, channels)`` float32 pixels in [0, 255]."""
    return np.random.default_rng(seed).uniform(0, 255, (batch, size, size, channels)).astype("float32")


def smallest_per_architecture() -> list[str]:
    """The registry's smallest variant of each builder and option set (width multipliers aside).

    Behaviour that does not depend on a width (argument handling, serialization, feature
    maps, compression) is tested on these; facts that do (parameters, MACs, Keras 3 vs
    tf_keras outputs) on every variant. A newly registered architecture joins both at once.
    """
    chosen: dict[tuple, str] = {}
    for name in list_models():
        config = model_config(name)
        key = (config.builder.__name__, tuple(sorted((k, str(v)) for k, v in config.kwargs.items() if k != "alpha")))
        if key not in chosen or config.params < model_config(chosen[key]).params:
            chosen[key] = name
    return sorted(chosen.values())
