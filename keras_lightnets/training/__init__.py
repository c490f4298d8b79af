"""Transfer learning of registry models (``fine_tune``) and its parts.

``fine_tune`` builds base + head as one flat Functional model (``classifier``), trains
the head on a frozen base, then the top blocks (``unfreeze``), with checkpoints, resume
(``run_folder``) and ``tf.distribute`` strategies (``strategy``, ``distributed``); its
arguments are checked first (``settings``). TensorFlow and Keras are imported when a
function runs.
"""

from __future__ import annotations

from keras_lightnets.training.classifier import HEAD_LAYERS, build_classifier
from keras_lightnets.training.divergence import TrainingDivergedError
from keras_lightnets.training.fine_tune import FineTuneResult, fine_tune
from keras_lightnets.training.strategy import StrategyInfo, make_strategy, mixed_precision_helps
from keras_lightnets.training.unfreeze import block_groups, block_key, freeze_base, unfreeze_top_blocks

__all__ = [
    "HEAD_LAYERS", "FineTuneResult", "StrategyInfo", "TrainingDivergedError",
    "block_groups", "block_key", "build_classifier", "fine_tune",
    "freeze_base", "make_strategy", "mixed_precision_helps", "unfreeze_top_blocks",
]
