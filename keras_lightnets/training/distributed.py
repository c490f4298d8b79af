"""A ``tf.distribute`` training loop for several workers.

Keras 3.15's ``Model.fit`` cannot train under ``MultiWorkerMirroredStrategy``
with more than one worker: it reduces a distributed input batch across workers
to build the model ("Attempt to convert a value (PerReplica...) to a Tensor"),
then reduces scalar metrics along an axis they do not have ("Invalid reduction
dimension 0"). ``fit_distributed`` is the loop the ``tf.distribute`` guides
describe (``strategy.run`` of a ``GradientTape`` step, gradients all-reduced by
the Keras optimizer), for the same compiled model, datasets and epoch callback;
one process per worker runs it, each with the same number of steps.

BatchNorm moving statistics are updated by each worker from its own batches (Keras
creates them without cross-replica aggregation); after every epoch's training steps
they are averaged over the workers, so that every worker holds the same model
(the average of the workers' moving averages is the moving average of their
averaged batch statistics: both are linear).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from keras_lightnets.training import interrupt


def fit_distributed(
    model, strategy, train, validation, *, initial_epoch: int, epochs: int, steps_per_epoch: int,
    validation_steps: int, on_epoch_end: Callable[[int, dict], None], verbose: int = 1,
) -> None:
    """Train ``model`` (compiled, created in ``strategy.scope()``) from epoch
    ``initial_epoch`` to ``epochs`` (exclusive, 0-based like ``fit``).

    ``train``/``validation``: repeating datasets of global batches ``(images, labels)``;
    ``on_epoch_end(epoch, logs)`` gets ``loss``, ``accuracy``, ``val_loss`` and
    ``val_accuracy`` (means over all workers' examples) after each epoch.
    """
    import keras
    import tensorflow as tf

    optimizer = model.optimizer
    with strategy.scope():
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
    train_iterator = iter(strategy.experimental_distribute_dataset(train))
    validation_iterator = iter(strategy.experimental_distribute_dataset(validation))
    variables = model.trainable_variables

    def sums(labels, probabilities):
        per_example = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
        correct = tf.cast(tf.equal(tf.argmax(probabilities, axis=-1), labels), tf.float32)
        count = tf.cast(tf.shape(labels)[0], tf.float32)
        return per_example, tf.stack([tf.reduce_sum(per_example), tf.reduce_sum(correct), count])

    def train_step(images, labels):
        with tf.GradientTape() as tape:
            probabilities = tf.cast(model(images, training=True), tf.float32)
            per_example, totals = sums(labels, probabilities)
            loss = tf.nn.compute_average_loss(per_example)
            scaled = optimizer.scale_loss(loss) if hasattr(optimizer, "scale_loss") else loss
        gradients = tape.gradient(scaled, variables)
        optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return totals

    def test_step(images, labels):
        probabilities = tf.cast(model(images, training=False), tf.float32)
        return sums(labels, probabilities)[1]

    statistics = [
        variable for layer in model.layers if type(layer).__name__ == "BatchNormalization"
        for variable in (layer.moving_mean, layer.moving_variance)
    ]

    def average_statistics():
        context = tf.distribute.get_replica_context()
        averaged = context.all_reduce(tf.distribute.ReduceOp.MEAN, [tf.identity(v.value) for v in statistics])
        for variable, value in zip(statistics, averaged, strict=True):
            variable.assign(value)

    @tf.function
    def run_average_statistics():
        strategy.run(average_statistics)

    @tf.function
    def run_train(iterator):
        images, labels = next(iterator)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(train_step, args=(images, labels)), axis=None)

    @tf.function
    def run_test(iterator):
        images, labels = next(iterator)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(test_step, args=(images, labels)), axis=None)

    interrupt.training_started()  # Ctrl-C stops between steps (interrupt.stop_between_steps)
    try:
        for epoch in range(initial_epoch, epochs):
            start = time.perf_counter()
            totals = 0
            for _ in range(steps_per_epoch):
                totals = totals + run_train(train_iterator).numpy()
                interrupt.raise_if_requested()
            if statistics:
                run_average_statistics()
            val_totals = sum(run_test(validation_iterator).numpy() for _ in range(validation_steps))
            logs = {
                "loss": float(totals[0] / totals[2]), "accuracy": float(totals[1] / totals[2]),
                "val_loss": float(val_totals[0] / val_totals[2]), "val_accuracy": float(val_totals[1] / val_totals[2]),
            }
            if verbose:
                print(f"Epoch {epoch + 1}/{epochs} - {time.perf_counter() - start:.1f}s - "
                      + " - ".join(f"{k}: {v:.4f}" for k, v in logs.items()), file=sys.stdout, flush=True)
            on_epoch_end(epoch, logs)
    finally:
        interrupt.training_ended()
