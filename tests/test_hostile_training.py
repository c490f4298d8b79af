"""Hostile and unlucky inputs to training runs: a trained model is never lost, bad input exits 2 early.

Every run here trains ``squeezenet1_1`` (no BatchNorm: the fastest registry model to
build and trace) on 32 bundled digits at 32x32 for one or two epochs.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import FAST_TRAIN, TINY_MODEL, cli_error_line, train_tiny

from keras_lightnets import create_model, errors, list_models, model_config
from keras_lightnets.files import TEMP_MARK
from keras_lightnets.training import fine_tune
from keras_lightnets.training.run_folder import check_output_dir

fine_tune_module = importlib.import_module("keras_lightnets.training.fine_tune")  # the package exports the function



def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes): what "nothing touched" compares."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished two-epoch run (best.keras, history.csv/png, checkpoints/epoch-002.keras)."""
    folder = tmp_path_factory.mktemp("finished") / "run"
    fine_tune(TINY_MODEL, "digits", weights=None, image_size=32, epochs_frozen=1, epochs_unfrozen=1, limit=32,
              batch_size=32, learning_rate=3e-3, output_dir=folder, quiet=True)
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["epoch-002.keras", "state.json"]
    return folder


@pytest.fixture
def old_run(finished_run, tmp_path) -> tuple[Path, dict[str, bytes]]:
    """A private copy of the finished run and its snapshot."""
    folder = tmp_path / "run"
    shutil.copytree(finished_run, folder)
    return folder, _snapshot(folder)


# --------------------------------------------------------------------------- 1. a trained model is never lost


def test_a_previous_run_is_refused_without_resume_or_overwrite(old_run, capsys):
    folder, before = old_run
    assert train_tiny("--output", str(folder), *FAST_TRAIN) == 2
    line = cli_error_line(capsys)
    assert "previous run" in line and "--overwrite" in line and "--resume" in line
    assert _snapshot(folder) == before
    with pytest.raises(errors.InputError, match="previous run"):
        fine_tune(TINY_MODEL, "digits", weights=None, image_size=32, limit=32, output_dir=folder, quiet=True)
    assert _snapshot(folder) == before
    assert train_tiny("--output", str(folder), "--resume", "--overwrite", *FAST_TRAIN) == 2  # one or the other
    assert _snapshot(folder) == before


def test_overwrite_keeps_the_old_run_when_the_new_one_fails_before_its_first_epoch(old_run, tmp_path, monkeypatch,
                                                                                    capsys):
    folder, before = old_run
    bad = tmp_path / "bad-data"
    for name in ("a", "b"):
        (bad / name).mkdir(parents=True)
        (bad / name / "x.png").write_bytes(b"not an image")
    # fails loading data
    assert train_tiny("--output", str(folder), "--overwrite", "--data", str(bad), *FAST_TRAIN) == 2
    assert str(bad) in cli_error_line(capsys)
    assert _snapshot(folder) == before

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure while building the model")

    monkeypatch.setattr(fine_tune_module, "build_classifier", broken)
    code = train_tiny("--output", str(folder), "--overwrite", "--epochs", "1", "--fine-tune-epochs", "0", *FAST_TRAIN)
    assert code == 1
    assert "simulated failure" in cli_error_line(capsys)
    assert _snapshot(folder) == before


def test_overwrite_replaces_the_old_run_after_the_first_epoch_and_only_dead_temporaries(old_run):
    folder, before = old_run
    dead = folder / "checkpoints" / f"{TEMP_MARK}{_ended_pid()}-epoch-009-x.keras"
    dead.write_bytes(b"left by a killed run")
    alive = folder / f"{TEMP_MARK}{os.getppid()}-best-y.keras"  # a live process's (a concurrent writer's)
    alive.write_bytes(b"being written")
    result = fine_tune(TINY_MODEL, "digits", weights=None, image_size=32, epochs_frozen=1, epochs_unfrozen=0, limit=32,
                       batch_size=32, learning_rate=3e-3, output_dir=folder, quiet=True, overwrite=True)
    assert result.epochs == 1 and [r["epoch"] for r in result.history] == [1]
    assert not dead.exists() and alive.read_bytes() == b"being written"
    alive.unlink()
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["epoch-001.keras", "state.json"]
    assert json.loads((folder / "checkpoints" / "state.json").read_text())["epoch"] == 1
    after = _snapshot(folder)
    for name in ("best.keras", "history.csv", "history.png"):
        assert after[name] != before[name], name  # every file is the new run's
    assert (folder / "history.csv").read_text().count("\n") == 2  # header + the one new epoch


def _ended_pid() -> int:
    """The pid of a process that has ended (a killed run's)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# --------------------------------------------------------------------------- 2. --resume with a broken state


def test_resume_refuses_a_missing_checkpoint_and_touches_nothing(old_run, capsys):
    folder, _ = old_run
    (folder / "checkpoints" / "epoch-002.keras").unlink()
    before = _snapshot(folder)
    assert train_tiny("--output", str(folder), "--resume", "--epochs", "1", "--fine-tune-epochs", "2", *FAST_TRAIN) == 2
    line = cli_error_line(capsys)
    assert str(folder / "checkpoints" / "epoch-002.keras") in line and "does not exist" in line
    assert _snapshot(folder) == before


@pytest.mark.parametrize(("text", "fragment"), [
    ("{not json", "unreadable"),
    (b"\xff\xfe garbage", "unreadable"),
    ("[1, 2]", "not a JSON object"),
    ('{"version": 1}', "missing"),
    ("EPOCH:-3", "'epoch' must be >= 1"),
    ('EPOCH:"2"', "'epoch' must be int"),
    ("CHECKPOINT:../best.keras", "'checkpoint' must be a file name"),
    ("CHECKPOINT:/etc/passwd", "'checkpoint' must be a file name"),
    ("HISTORY:[{\"epoch\": 1}]", "'history' row"),
])
def test_resume_refuses_a_malformed_state_with_one_line(old_run, text, fragment, capsys):
    folder, _ = old_run
    path = folder / "checkpoints" / "state.json"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text[:1].isupper():  # KEY:value replaces one entry of the real state
        key, value = text.split(":", 1)
        state = json.loads(path.read_text())
        state[key.lower()] = json.loads(value) if value[:1] in '-"[{0123456789' else value
        path.write_text(json.dumps(state))
    else:
        path.write_text(text)
    before = _snapshot(folder)
    assert train_tiny("--output", str(folder), "--resume", *FAST_TRAIN) == 2
    line = cli_error_line(capsys)
    assert str(path) in line and fragment in line
    assert _snapshot(folder) == before
    with pytest.raises(errors.InputError, match=r"state\.json"):
        fine_tune(TINY_MODEL, "digits", weights=None, image_size=32, limit=32, output_dir=folder, quiet=True,
                  resume=True)


# --------------------------------------------------------------------------- 3. non-finite numbers


@pytest.mark.parametrize("keyword", [{"learning_rate": math.inf}, {"learning_rate": math.nan},
                                     {"fine_tune_learning_rate": -math.inf}, {"dropout": math.nan}])
def test_fine_tune_refuses_non_finite_numbers(keyword, tmp_path):
    with pytest.raises(errors.InputError, match=next(iter(keyword))):
        fine_tune(TINY_MODEL, "digits", weights=None, image_size=32, output_dir=tmp_path, quiet=True, **keyword)
    assert list(tmp_path.iterdir()) == []


def test_a_diverging_epoch_stops_the_run_and_keeps_the_last_good_model(tmp_path, capsys):
    import keras

    folder = tmp_path / "run"
    code = train_tiny("--output", str(folder), "--epochs", "1", "--fine-tune-epochs", "2", "--lr", "3e-3",
                  "--fine-tune-lr", "1e30", *FAST_TRAIN)
    assert code == 1
    assert "diverged" in cli_error_line(capsys)
    state = json.loads((folder / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 1 and [r["epoch"] for r in state["history"]] == [1]
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["epoch-001.keras", "state.json"]
    assert (folder / "history.csv").read_text().count("\n") == 2
    for name in ("best.keras", "checkpoints/epoch-001.keras"):
        model = keras.saving.load_model(folder / name, safe_mode=True)
        assert all(np.isfinite(w).all() for w in model.get_weights()), name


def test_overwrite_with_a_diverging_first_epoch_keeps_the_old_run(old_run, capsys):
    folder, before = old_run
    assert train_tiny("--output", str(folder), "--overwrite", "--epochs", "1", "--fine-tune-epochs", "0",
                  "--lr", "1e30", *FAST_TRAIN) == 1
    assert "diverged" in cli_error_line(capsys)
    assert _snapshot(folder) == before


# --------------------------------------------------------------------------- 4. unwritable output


def test_an_unwritable_output_fails_before_data_or_model(tmp_path, monkeypatch, capsys):
    """A path under a regular file: no folder can be made there, not even by root (chmod would not stop root)."""
    blocker = tmp_path / "a_file"
    blocker.write_text("I am a file")

    def must_not_run(*args, **kwargs):
        raise AssertionError("data loaded or model built before the output folder was checked")

    monkeypatch.setattr(fine_tune_module, "load_data", must_not_run)
    monkeypatch.setattr(fine_tune_module, "build_classifier", must_not_run)
    assert train_tiny("--output", str(blocker / "sub"), *FAST_TRAIN) == 2
    assert str(blocker / "sub") in cli_error_line(capsys)
    assert train_tiny("--output", str(blocker), *FAST_TRAIN) == 2  # a file, not a folder
    assert "not a folder" in cli_error_line(capsys)
    with pytest.raises(errors.InputError, match="cannot be written"):
        fine_tune(TINY_MODEL, "digits", weights=None, image_size=32, output_dir=blocker / "sub" / "deeper", quiet=True)
    assert blocker.read_text() == "I am a file"
    missing = tmp_path / "new" / "deeper"  # checking a writable path leaves nothing behind
    assert check_output_dir(missing) is None and not (tmp_path / "new").exists()


# --------------------------------------------------------------------------- 5. clear errors, exit codes


def test_registry_functions_check_argument_types():
    with pytest.raises(TypeError, match="`pattern` must be a shell-style pattern string"):
        list_models(42)
    with pytest.raises(TypeError, match="`pretrained` must be True or False"):
        list_models("*", pretrained="yes")
    with pytest.raises(TypeError, match="`name` must be a registered model name"):
        model_config(None)
    with pytest.raises(TypeError, match="`name`"):
        create_model(3.5)
    with pytest.raises(errors.InputError, match="unknown model 'nope'"):
        create_model("nope")
    with pytest.raises(TypeError, match="`features_only` must be True or False"):
        create_model(TINY_MODEL, features_only="yes")
    with pytest.raises(errors.InputError, match="`flavour` must be None or one of"):
        create_model(TINY_MODEL, flavour="torch")
    with pytest.raises(TypeError, match="`out_indices`"):
        create_model(TINY_MODEL, features_only=True, out_indices=3)
    for err in (TypeError, errors.InputError):  # one line each
        try:
            list_models(42) if err is TypeError else model_config("nope")
        except err as caught:
            assert "\n" not in str(caught)
