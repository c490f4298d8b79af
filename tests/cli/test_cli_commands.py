"""The ``lightnets`` command: list, info, demo, compress; usage errors and the mapping of every
subcommand's errors to exit codes 0 / 2 / 1 with one-line messages."""

from __future__ import annotations

import json

import pytest
from helpers import TINY_MODEL as TINY
from helpers import cli_error_line

from keras_lightnets import errors, list_models, model_config
from keras_lightnets.cli import main


def test_list_prints_every_matching_model(capsys):
    assert main(["list", "mobilenet_v3*"]) == 0
    out = capsys.readouterr().out
    for name in list_models("mobilenet_v3*"):
        assert name in out
        assert f"{model_config(name).params:,}" in out
    assert "mobilenet_v2_100" not in out


def test_list_the_detector_presets(capsys):
    assert main(["list", "--task", "detection"]) == 0
    out = capsys.readouterr().out
    for name in list_models(task="detection"):
        assert name in out and f"{model_config(name).params:,}" in out
    assert "21.3 COCO val2017 box mAP@[.5:.95]" in out and "mobilenet_v2_100" not in out
    assert main(["info", "mb2_ssd_lite"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["task"] == "detection" and facts["params"] == model_config("mb2_ssd_lite").params
    assert facts["checkpoint"]["license"] == "MIT" and facts["anchors"] == 3000


def test_list_without_match_is_a_usage_error(capsys):
    assert main(["list", "resnet*"]) == 2
    assert "resnet" in capsys.readouterr().err


def test_info_is_json_of_the_registry_facts(capsys):
    assert main(["info", "mobilenet_v2_035"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["params"] == model_config("mobilenet_v2_035").params
    assert facts["kwargs"] == {"alpha": 0.35}


def test_info_unknown_model(capsys):
    assert main(["info", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown model" in err


def test_bad_subcommand_exits_2(capsys):
    try:
        main(["frobnicate"])
    except SystemExit as exit_:
        assert exit_.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One short ``lightnets demo`` (2 epochs at 32 px, 3 variants), shared by the tests below."""
    output = tmp_path_factory.mktemp("demo")
    code = main(["demo", "--output", str(output), "--image-size", "32", "--epochs", "2", "--fine-tune-epochs", "0",
                 "--runs", "3", "--quiet"])
    return code, output


@pytest.mark.xdist_group("demo")
def test_demo_trains_exports_three_variants_and_reports(demo_run, capsys):
    code, output = demo_run
    assert code == 0
    report = json.loads((output / "report.json").read_text())
    assert list(report["variants"]) == ["float", "int8_ptq", "int8_qat_pruned50"]
    for name, variant in report["variants"].items():
        assert 0.3 < variant["accuracy"] <= 1.0, (name, variant["accuracy"])  # 10 classes: chance is 0.1
        assert (output / variant["path"]).stat().st_size == variant["size_bytes"]
        assert variant["latency_ms"] > 0
    variants = report["variants"]
    # Speed-free versions of the compression targets (short training here; the benchmark
    # script measures the real ones): int8 stays close to float, pruned + QAT too.
    assert variants["int8_ptq"]["accuracy"] >= variants["float"]["accuracy"] - 0.03
    assert variants["int8_qat_pruned50"]["accuracy"] >= variants["float"]["accuracy"] - 0.05
    assert variants["int8_ptq"]["size_bytes"] < 0.5 * variants["float"]["size_bytes"]
    assert variants["int8_qat_pruned50"]["kernel_sparsity"] >= 0.5
    assert variants["float"]["kernel_sparsity"] < 0.1
    # Every file runs in one XNNPACK partition (int8 hard-swish is written as ops XNNPACK has;
    # only the int8 softmax at the end is left to TFLite's own kernel).
    for variant in variants.values():
        assert variant["delegate_partitions"] == 1
        assert set(variant["ops_outside_delegate"]) <= {"SOFTMAX"}, variant["ops_outside_delegate"]
    assert (output / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (output / "train" / "best.keras").is_file()
    assert not [p for p in output.rglob("*") if ".tmp" in p.name]


@pytest.mark.xdist_group("demo")
def test_compress_prunes_and_quantizes_a_trained_model(demo_run, tmp_path, capsys):
    _, output = demo_run
    out = tmp_path / "small.h5"
    code = main(["compress", str(output / "train" / "best.keras"), "--prune", "0.6", "--qat", "--per-tensor",
                 "--prune-epochs", "1", "--qat-epochs", "1", "--limit", "200", "--export", "int8", "-o", str(out),
                 "--quiet"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "small.json").read_text())
    assert report["overall_sparsity"] >= 0.6 and report["per_tensor"]
    assert report["tflite"]["kernel_sparsity"] >= 0.6 and report["tflite"]["per_channel"] is False
    assert report["tflite"]["accuracy"] > 0.2
    assert out.is_file() and (tmp_path / "small.tflite").is_file()
    # and the compressed .h5 converts again with `lightnets export`, per tensor as it was trained
    again = tmp_path / "again.tflite"
    assert main(["export", str(out), "-q", "int8", "--per-tensor", "-o", str(again), "--quiet"]) == 0
    assert json.loads((tmp_path / "again.json").read_text())["export"]["per_channel"] is False


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [(["compress", "mobilenet_v2_035"], "nothing to do"),
     (["compress", "no_such_model", "--qat"], "no_such_model"),
     (["compress", "/no/such/model.keras", "--qat"], "does not exist"),
     (["compress", "mobilenet_v2_035", "--prune", "1.5"], "fraction"),
     (["compress", "mobilenet_v2_035", "--prune", "0.5", "--per-tensor"], "--per-tensor applies with --qat"),
     (["demo", "--model", "resnet50"], "resnet50"),
     (["demo", "--task", "detect", "--fine-tune-epochs", "2"], "--fine-tune-epochs applies to --task classify"),
     (["demo", "--task", "detect", "--variants", "float,int8_qat_pruned50"], "with --task detect choose from"),
     (["demo", "--task", "detect", "--epochs", "0"], "--epochs")],
)
def test_bad_arguments_exit_2_with_one_line(argv, fragment, capsys, tmp_path):
    try:
        code = main([*argv, *(["--output", str(tmp_path / "o")] if argv[0] == "demo" else [])])
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv", [
    ["train", TINY, "--lr", "inf"], ["train", TINY, "--fine-tune-lr", "nan"], ["train", TINY, "--lr=-inf"],
    ["compress", TINY, "--qat", "--lr", "inf"], ["compress", TINY, "--qat", "--qat-lr", "NaN"],
    ["compress", TINY, "--prune", "nan"],
])
def test_non_finite_float_options_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    line = cli_error_line(capsys)
    assert repr(argv[-1].split("=")[-1]) in line and ("finite" in line or "fraction in (0, 1)" in line)


def test_commands_map_input_errors_to_2_and_failures_to_1(tmp_path, monkeypatch, capsys):
    from keras_lightnets.cli import demo
    from keras_lightnets.pipelines import bench

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main(["demo", "--output", str(blocker / "sub"), "--quiet"]) == 2  # checked before training
    assert "cannot be written" in cli_error_line(capsys)
    cases = [(errors.InputError("bad file 'x'"), 2), (ValueError("conversion failed"), 1),
             (RuntimeError("out of memory"), 1)]
    for err, code in cases:
        def fail(*args, _err=err, **kwargs):
            raise _err

        monkeypatch.setattr(demo, "demo", fail)
        assert main(["demo", "--output", str(tmp_path / "demo"), "--quiet"]) == code, err
        assert str(err) in cli_error_line(capsys)
        monkeypatch.setattr(bench, "benchmark_models", fail)
        assert main(["bench", TINY, "--output", str(tmp_path / "bench"), "--quiet"]) == code, err
        assert str(err) in cli_error_line(capsys)
        monkeypatch.setattr(demo, "run", fail)  # whatever a subcommand lets escape, main maps the same way
        assert main(["demo", "--output", str(tmp_path / "demo")]) == code, err
        assert str(err) in cli_error_line(capsys)
        monkeypatch.undo()
