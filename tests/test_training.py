"""Transfer learning: blocks, the two phases, outputs, resume after a kill, multi-worker, the CLI."""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import WAIT_S, randomize_weights

from keras_lightnets.cli import train as train_cli
from keras_lightnets.files import TEMP_MARK
from keras_lightnets.training import HEAD_LAYERS, block_groups, build_classifier, fine_tune, unfreeze_top_blocks
from keras_lightnets.training.strategy import mixed_precision_helps, resolve_mixed_precision

SMALL = "mobilenet_v3_small_075"  # learns digits from scratch at 32x32 in two short epochs
REPO = Path(__file__).resolve().parents[1]


def _env(**extra) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO), **extra}
    env.pop("TF_CONFIG", None)
    return {**env, **extra}


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith(TEMP_MARK)]


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    return train_cli.run(parser.parse_args(argv))


# --------------------------------------------------------------------------- blocks


@pytest.mark.parametrize(("name", "count", "last"), [
    ("mobilenet_v1_025", 14, ["conv_block_12", "conv_block_13"]),
    ("mobilenet_v2_035", 19, ["block_16", "Conv_1"]),
    (SMALL, 13, ["expanded_conv_10", "conv_1"]),
    ("squeezenet1_1", 9, ["fire8", "fire9"]),
    ("shufflenet_v2_x0_5", 18, ["stage4_unit4", "conv5"]),
    ("mnasnet_b1_050", 18, ["stage6_block1", "head_conv"]),
])
def test_block_groups_follow_the_families_blocks(name, count, last):
    model, _ = build_classifier(name, 3, image_size=32, weights=None)
    groups = block_groups(model, exclude=HEAD_LAYERS)
    assert len(groups) == count and [key for key, _ in groups[-2:]] == last
    grouped = {layer.name for _, layers in groups for layer in layers}
    assert grouped == {layer.name for layer in model.layers if layer.weights and layer.name not in HEAD_LAYERS}


def test_unfreeze_top_blocks_keeps_batch_norm_frozen():
    model, _ = build_classifier("mobilenet_v2_035", 4, image_size=32, weights=None)
    assert [layer.name for layer in model.layers[-2:]] == list(HEAD_LAYERS)  # one flat model, head on top
    assert model.layers[-1].output.shape == (None, 4)
    assert unfreeze_top_blocks(model, 2, HEAD_LAYERS) == ["block_16", "Conv_1"]
    trainable = {layer.name for layer in model.layers if layer.trainable and layer.weights}
    assert trainable == {"block_16_expand", "block_16_depthwise", "block_16_project", "Conv_1", "predictions"}
    assert unfreeze_top_blocks(model, 0, HEAD_LAYERS) == []
    assert {layer.name for layer in model.layers if layer.trainable and layer.weights} == {"predictions"}
    with pytest.raises(ValueError, match="unfreeze_blocks"):
        unfreeze_top_blocks(model, -1, HEAD_LAYERS)


def test_mixed_precision_auto_is_off_without_a_modern_gpu():
    import tensorflow as tf

    assert resolve_mixed_precision(False) is False and resolve_mixed_precision(True) is True
    if not tf.config.list_physical_devices("GPU"):
        assert mixed_precision_helps() is False and resolve_mixed_precision("auto") is False
    else:
        assert resolve_mixed_precision("auto") == mixed_precision_helps()
    with pytest.raises(ValueError, match="mixed_precision"):
        resolve_mixed_precision("yes")


# --------------------------------------------------------------------------- training runs


def test_train_digits_cli_auto_weights_offline_learns(tmp_path, monkeypatch, capsys):
    """`--weights auto` with an empty Keras cache trains from scratch; outputs are complete and loadable."""
    import keras

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras-home"))
    monkeypatch.delenv("KERAS_LIGHTNETS_WEIGHTS_DIR", raising=False)
    out = tmp_path / "run"
    code = _cli([SMALL, "--data", "digits", "--weights", "auto", "--image-size", "32", "--limit", "400",
                 "--epochs", "1", "--fine-tune-epochs", "1", "--lr", "3e-3", "--batch-size", "32",
                 "--output", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert not (tmp_path / "empty-keras-home" / "models").exists() or not any(
        (tmp_path / "empty-keras-home" / "models").iterdir())  # nothing downloaded
    assert sorted(p.name for p in out.iterdir()) == ["best.keras", "checkpoints", "history.csv", "history.png"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch-002.keras", "state.json"]
    assert (out / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"] and [r["phase"] for r in rows] == ["scratch", "scratch_low_lr"]
    assert float(rows[1]["learning_rate"]) == pytest.approx(3e-4)
    best_accuracy = max(float(r["val_accuracy"]) for r in rows)
    assert best_accuracy > 0.3  # chance is 0.1
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 2 and state["config"]["weights"] is None
    assert state["best_val_accuracy"] == pytest.approx(best_accuracy)

    model = keras.saving.load_model(out / "best.keras", safe_mode=True)
    from keras_lightnets.data.pipeline import make_dataset
    from keras_lightnets.data.sources import load_images

    test = load_images("digits", image_size=(32, 32), split="test")
    dataset = make_dataset(test, image_size=32, preprocessing="in_model", batch_size=128, training=False)
    probabilities = model.predict(dataset, verbose=0)
    assert probabilities.shape == (359, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    accuracy = float(np.mean(probabilities.argmax(axis=1) == test.labels))
    assert accuracy == pytest.approx(best_accuracy, abs=0.02)  # the saved model is the best epoch's
    assert _temporaries(out) == []


def test_transfer_phases_keep_batch_norm_in_inference_mode(tmp_path):
    """Phase 1 changes only the head; phase 2 the top blocks' convolutions; BatchNorm never."""
    import keras

    from keras_lightnets import create_model

    base = create_model("mobilenet_v2_035", include_top=False, pooling="avg", weights=None, input_shape=(32, 32, 3))
    randomize_weights(base, seed=3)  # moving statistics far from their 0/1 initial values
    weights_file = tmp_path / "pretrained.weights.h5"
    base.save_weights(weights_file)
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in base.layers if layer.weights}

    result = fine_tune("mobilenet_v2_035", "digits", weights=str(weights_file), image_size=32, epochs_frozen=1,
                       epochs_unfrozen=1, unfreeze_blocks=2, batch_size=16, limit=64, learning_rate=1e-2,
                       output_dir=tmp_path / "run", quiet=True)
    assert [r["phase"] for r in result.history] == ["frozen_base", "top_blocks"]
    assert result.weights == str(weights_file) and result.unfrozen_blocks == ["block_16", "Conv_1"]
    after = {layer.name: layer for layer in result.model.layers}
    changed = set()
    for name, values in before.items():
        layer = after[name]
        if type(layer).__name__ == "BatchNormalization":
            for old, new in zip(values, layer.get_weights(), strict=True):  # gamma, beta, moving mean/variance
                np.testing.assert_array_equal(old, new, err_msg=name)
        elif any(not np.array_equal(old, new) for old, new in zip(values, layer.get_weights(), strict=True)):
            changed.add(name)
    assert changed == {"block_16_expand", "block_16_depthwise", "block_16_project", "Conv_1"}
    # phase 1 alone: a frozen base, only the head learns
    frozen = fine_tune("mobilenet_v2_035", "digits", weights=str(weights_file), image_size=32, epochs_frozen=1,
                       epochs_unfrozen=0, batch_size=16, limit=32, output_dir=tmp_path / "frozen", quiet=True)
    for layer in frozen.model.layers:
        if layer.name in before:
            for old, new in zip(before[layer.name], layer.get_weights(), strict=True):
                np.testing.assert_array_equal(old, new, err_msg=layer.name)
    loaded = keras.saving.load_model(tmp_path / "frozen" / "best.keras", safe_mode=True)
    assert loaded.count_params() == frozen.model.count_params()


def test_mixed_precision_on_request_trains_saves_and_restores_the_policy(tmp_path):
    import keras

    before = keras.config.dtype_policy().name
    result = fine_tune(SMALL, "digits", weights=None, image_size=32, epochs_frozen=1, epochs_unfrozen=0, limit=32,
                       batch_size=16, output_dir=tmp_path, quiet=True, mixed_precision=True)
    assert result.mixed_precision is True and keras.config.dtype_policy().name == before
    layers = {layer.name: layer for layer in result.model.layers}
    assert layers["conv"].dtype_policy.name == "mixed_float16"  # float16 compute, float32 weights
    assert layers["predictions"].dtype_policy.name == "float32" and result.model.output.dtype == "float32"
    assert type(result.model.optimizer).__name__ == "LossScaleOptimizer"
    loaded = keras.saving.load_model(tmp_path / "best.keras", safe_mode=True)
    assert loaded.get_layer("conv").dtype_policy.name == "mixed_float16"
    assert np.isfinite(result.history[0]["loss"])


def _wait_for_epoch(path: Path, epoch: int, process: subprocess.Popen, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file():
            try:
                state = json.loads(path.read_text())
            except json.JSONDecodeError:  # pragma: no cover - written atomically, so never partial
                raise
            if state["epoch"] >= epoch:
                return state
        if process.poll() is not None:
            raise AssertionError(f"training ended (code {process.returncode}) before epoch {epoch}: "
                                 f"{process.stderr.read()[-2000:]}")
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint of epoch {epoch} within {timeout} s")


def test_kill_interrupt_and_resume_reach_the_same_epochs(tmp_path, capsys):
    """SIGKILL mid-epoch, then Ctrl-C (SIGINT) mid-epoch, then --resume to the end."""
    import keras

    out = tmp_path / "run"
    argv = [SMALL, "--weights", "none", "--image-size", "32", "--limit", "400", "--batch-size", "16",
            "--epochs", "2", "--fine-tune-epochs", "4", "--lr", "3e-3", "--output", str(out), "--quiet"]
    # 6 epochs: the Ctrl-C sent after epoch 2 lands mid-run even on a loaded machine.
    command = [sys.executable, "-m", "keras_lightnets.cli.train", *argv]
    state_file = out / "checkpoints" / "state.json"

    first = subprocess.Popen(command, env=_env(), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        killed_state = _wait_for_epoch(state_file, 1, first, timeout=WAIT_S)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=WAIT_S)
    finally:
        first.kill()
        first.wait()
    assert first.returncode == -signal.SIGKILL
    state = json.loads(state_file.read_text())
    assert state["epoch"] < 6 and state["history"][0] == killed_state["history"][0]

    # pytest-xdist workers ignore SIGINT and children inherit that: give the child a real Ctrl-C.
    second = subprocess.Popen([*command, "--resume"], env=_env(), stderr=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _wait_for_epoch(state_file, 2, second, timeout=WAIT_S)
        second.send_signal(signal.SIGINT)
        _, errors = second.communicate(timeout=WAIT_S)
    finally:
        second.kill()
        second.wait()
    assert second.returncode == 1 and "lightnets: error" not in errors, errors
    assert "interrupted" in errors.strip().splitlines()[-1]
    assert _temporaries(out) == []
    state = json.loads(state_file.read_text())
    assert 2 <= state["epoch"] <= 5

    capsys.readouterr()
    assert _cli([*argv[:-1], "--resume"]) == 0  # not quiet: says where it resumes
    output = capsys.readouterr()
    assert f"resuming after epoch {state['epoch']}" in output.err
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert float(rows[0]["val_accuracy"]) == pytest.approx(killed_state["history"][0]["val_accuracy"])
    assert json.loads(state_file.read_text())["epoch"] == 6
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch-006.keras", "state.json"]
    assert _temporaries(out) == []
    keras.saving.load_model(out / "best.keras", safe_mode=True)
    keras.saving.load_model(out / "checkpoints" / "epoch-006.keras", safe_mode=True)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


WORKER = textwrap.dedent("""
    import sys
    import numpy as np
    from keras_lightnets.training import fine_tune
    result = fine_tune("mobilenet_v3_small_075", "digits", weights=None, image_size=32, epochs_frozen=1,
                       epochs_unfrozen=1, batch_size=8, limit=48, output_dir=sys.argv[1], strategy="multiworker",
                       quiet=True)
    np.savez(sys.argv[2], *result.model.get_weights())
    print(result.strategy, result.replicas, result.is_chief, result.epochs)
""")


def test_multiworker_workers_end_with_identical_weights(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    try:
        for index in range(2):
            tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
            processes.append(subprocess.Popen(
                [sys.executable, "-c", WORKER, str(tmp_path / f"out{index}"), str(tmp_path / f"weights{index}.npz")],
                env={**_env(), "TF_CONFIG": tf_config}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            ))
        results = [p.communicate(timeout=WAIT_S) for p in processes]
    finally:
        for p in processes:
            p.kill()
            p.wait()
    for p, (_stdout, stderr) in zip(processes, results, strict=True):
        assert p.returncode == 0, stderr[-3000:]
    assert results[0][0].split() == ["multiworker", "2", "True", "2"]
    assert results[1][0].split() == ["multiworker", "2", "False", "2"]
    chief, other = (np.load(tmp_path / f"weights{i}.npz") for i in range(2))
    assert len(chief.files) == len(other.files) > 100
    for key in chief.files:
        np.testing.assert_allclose(chief[key], other[key], rtol=0, atol=1e-6, err_msg=key)
    initial, _ = build_classifier(SMALL, 10, image_size=32, weights=None)
    assert not np.allclose(chief["arr_0"], initial.get_weights()[0])  # trained, not merely equal-initialised
    assert (tmp_path / "out0" / "best.keras").is_file() and (tmp_path / "out0" / "history.csv").is_file()
    assert not (tmp_path / "out1").exists()  # only the chief writes outputs
