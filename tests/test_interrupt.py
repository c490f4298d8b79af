"""Ctrl-C during training (``training.interrupt``): the first stops ``fit`` between steps, a second at once."""

from __future__ import annotations

import signal

import numpy as np
import pytest

from keras_lightnets.training import interrupt


@pytest.fixture
def default_sigint():
    """Python's own SIGINT handler for the test (pytest-xdist workers ignore SIGINT)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_without_a_running_fit_ctrl_c_raises_at_once(default_sigint):
    with interrupt.stop_between_steps():
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_during_a_fit_the_first_ctrl_c_waits_and_the_second_raises(default_sigint, capsys):
    with interrupt.stop_between_steps("lightnets: "):
        interrupt.training_started()
        signal.raise_signal(signal.SIGINT)  # only asks
        assert capsys.readouterr().err == f"lightnets: {interrupt.NOTICE}\n"
        with pytest.raises(KeyboardInterrupt):
            interrupt.raise_if_requested()
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        interrupt.training_ended()
    interrupt.raise_if_requested()  # the request ends with the context
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)


def test_a_fit_that_raised_does_not_leave_ctrl_c_waiting(default_sigint):
    with interrupt.stop_between_steps():
        interrupt.training_started()  # and never training_ended(): its fit raised
    with interrupt.stop_between_steps(), pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)


def test_an_ignored_or_custom_sigint_is_left_alone():
    def custom(signum, frame):
        pass

    for handler in (signal.SIG_IGN, custom):
        previous = signal.signal(signal.SIGINT, handler)
        try:
            with interrupt.stop_between_steps():
                assert signal.getsignal(signal.SIGINT) is handler
            assert signal.getsignal(signal.SIGINT) is handler
        finally:
            signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("flavour", ["keras", "tf_keras"])
def test_fit_stops_after_the_batch_of_the_ctrl_c(flavour, default_sigint):
    """A Ctrl-C inside batch 2 (a callback presses it) ends ``fit`` after batch 2, not inside it."""
    import keras
    import tf_keras

    from keras_lightnets.training.callbacks import StopOnInterrupt
    from keras_lightnets.training.detection import _tf_keras_adapter

    library = keras if flavour == "keras" else tf_keras
    finished = []

    class PressCtrlC(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 2:
                signal.raise_signal(signal.SIGINT)

        def on_train_batch_end(self, batch, logs=None):
            finished.append(batch)

    callbacks = [StopOnInterrupt(), PressCtrlC()][::-1]  # the press is seen after the batch's other hooks
    if flavour == "tf_keras":
        adapter = _tf_keras_adapter()

        class Forward(adapter):
            def on_train_batch_begin(self, batch, logs=None):
                self.callback.on_train_batch_begin(batch, logs)

        callbacks = [Forward(c) for c in callbacks]
    model = library.Sequential([library.Input((3,)), library.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    data = np.zeros((64, 3), "float32"), np.zeros((64, 1), "float32")
    with interrupt.stop_between_steps(), pytest.raises(KeyboardInterrupt):
        model.fit(*data, batch_size=8, epochs=3, verbose=0, callbacks=callbacks)
    assert finished == [0, 1, 2]
