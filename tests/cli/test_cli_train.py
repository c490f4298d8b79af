"""``lightnets train`` (``keras_lightnets.cli.train``): arguments checked before TensorFlow, usage
errors, bad data and weights files as one-line errors with exit code 2."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import FAST_TRAIN, cli_error_line, train_tiny

from keras_lightnets.cli import main
from keras_lightnets.cli import train as train_cli
from keras_lightnets.cli.command import Parser

SMALL = "mobilenet_v3_small_075"  # as in test_training.py


def _cli(argv: list[str]) -> int:
    return main(["train", *argv])


@pytest.mark.parametrize(("argv", "message"), [
    (["no_such_model"], "unknown model"),
    ([SMALL, "--data", "/no/such/folder"], "--data must be"),
    ([SMALL, "--data", "tfds"], "--data must be"),
    ([SMALL, "--weights", "/no/such/file.h5"], "--weights must be"),
    (["mnasnet_a1_140", "--weights", "imagenet"], "no ImageNet weights"),
    ([SMALL, "--image-size", "16"], "--image-size must be at least 32"),
    ([SMALL, "--epochs", "0", "--fine-tune-epochs", "0"], "at least 1"),
])
def test_cli_bad_arguments_exit_2_with_one_line(argv, message, capsys):
    assert _cli(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("lightnets: error: ") and message in err and err.count("\n") == 1


def test_cli_parser_errors_exit_2():
    parser = Parser(prog="lightnets train")
    train_cli.add_arguments(parser)
    for argv in ([SMALL, "--epochs", "-1"], [SMALL, "--batch-size", "0"], [SMALL, "--strategy", "tpu"],
                 [SMALL, "--resume", "--overwrite"], [SMALL, "--lr", "inf"]):
        with pytest.raises(SystemExit) as info:
            parser.parse_args(argv)
        assert info.value.code == 2


def test_cli_undecodable_data_is_bad_input_exit_2_with_one_line(tmp_path, capsys):
    for name in ("a", "b"):
        (tmp_path / "data" / name).mkdir(parents=True)
        (tmp_path / "data" / name / "x.png").write_bytes(b"not an image")
    code = _cli([SMALL, "--data", str(tmp_path / "data"), "--weights", "none", "--image-size", "32",
                 "--output", str(tmp_path / "run"), "--quiet"])
    assert code == 2  # the user's files: errors.InputError
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("lightnets: error: ") and str(tmp_path / "data") in lines[-1]
    assert all(line.startswith("lightnets: ") for line in lines)  # warnings are one line each too


def test_train_empty_data_folder_and_garbage_weights_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert train_tiny("--data", str(tmp_path / "empty"), "--output", str(tmp_path / "o1"), *FAST_TRAIN) == 2
    assert str(tmp_path / "empty") in cli_error_line(capsys)
    garbage = tmp_path / "weights.pth"
    garbage.write_bytes(np.random.default_rng(0).bytes(256))
    weights_argv = ["--weights", str(garbage), "--image-size", "32", "--limit", "32", "--quiet"]
    assert train_tiny("--output", str(tmp_path / "o2"), *weights_argv) == 2
    assert str(garbage) in cli_error_line(capsys)
    assert not (tmp_path / "o1").exists()
