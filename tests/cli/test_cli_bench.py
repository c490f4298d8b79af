"""``lightnets bench`` (``keras_lightnets.cli.bench``) and ``tools/benchmark.py``: the files, the table,
the arguments passed to ``pipelines.bench.benchmark_models``, one-line errors and exit codes."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import PNG_MAGIC, WAIT_S, first_markdown_table

from keras_lightnets.cli import bench as bench_cli
from keras_lightnets.models.registry import list_models, model_config
from keras_lightnets.pipelines import bench

NAMES = ["mobilenet_v2_035", "shufflenet_v2_x0_5"]
SIZE = 64

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def measured_rows() -> list[bench.BenchRow]:
    """What ``benchmark_models(NAMES, input_size=SIZE)`` returns, with made-up timings and sizes:
    mobilenet_v2_035 with its twin MobileNetV2, shufflenet_v2_x0_5 without one."""

    def measurements(model: str, params: int, scale: float) -> bench.Measurements:
        return bench.Measurements(model, params=params, keras_ms={1: 2.0 * scale, 2: 3.5 * scale},
                                  litert_ms={"none": 1.5 * scale, "int8": 0.75 * scale},
                                  litert_bytes={"none": 4 * params, "int8": params},
                                  litert_outside={"int8": {"SOFTMAX": 1}})

    rows = []
    for name, twin_name in zip(NAMES, ("MobileNetV2", None), strict=True):
        config = model_config(name)
        ours = measurements(name, config.params, 1.0)
        twin = measurements(f"keras.applications.{twin_name}", config.params, 1.25) if twin_name else None
        rows.append(bench.BenchRow(name=name, family=config.family, input_size=SIZE, params=config.params,
                                   macs=config.macs, top1=config.top1, ours=ours, twin=twin, twin_name=twin_name,
                                   ratios=bench.latency_ratios(ours, twin), runs=3))
    return rows


@pytest.fixture
def fake_benchmark(measured_rows, monkeypatch):
    """Replace the measuring by ``measured_rows``; records the arguments it was called with."""
    calls: list[dict] = []

    def fake(names, **kwargs):
        calls.append({"names": list(names), **kwargs})
        return copy.deepcopy(measured_rows)

    monkeypatch.setattr(bench, "benchmark_models", fake)
    return calls


def test_cli_writes_the_three_files_and_prints_the_table(measured_rows, fake_benchmark, tmp_path, capsys):
    out = tmp_path / "out"
    code = bench_cli.main([*NAMES, "--input-size", "64", "--runs", "3", "--threads", "2", "--no-twins",
                           "--output", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert fake_benchmark[0]["names"] == NAMES
    assert {k: fake_benchmark[0][k] for k in ("input_size", "runs", "threads", "twins", "output_dir")} == {
        "input_size": 64, "runs": 3, "threads": 2, "twins": False, "output_dir": None}
    assert captured.out == (out / "bench.md").read_text()
    assert "| mobilenet_v2_035 |" in captured.out
    assert "wrote" in captured.err
    assert sorted(os.listdir(out)) == ["bench.json", "bench.md", "bench.png"]
    assert (out / "bench.png").read_bytes()[:8] == PNG_MAGIC
    assert bench.read_json(out / "bench.json")[0] == measured_rows


def test_cli_defaults_and_all(fake_benchmark, tmp_path, capsys):
    assert bench_cli.main(["--output", str(tmp_path / "a"), "--quiet"]) == 0
    assert fake_benchmark[-1]["names"] == list(bench_cli.DEFAULT_MODELS)
    assert fake_benchmark[-1]["twins"] is True and fake_benchmark[-1]["input_size"] is None
    assert bench_cli.main(["--all", "--output", str(tmp_path / "b"), "--quiet", "--keep-tflite"]) == 0
    assert fake_benchmark[-1]["names"] == list_models()
    assert fake_benchmark[-1]["output_dir"] == os.path.join(str(tmp_path / "b"), "tflite")
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("argv", [
    ["nope_net"], ["resnet*"], ["mobilenet_v2_035", "--all"], ["--runs", "0"], ["--input-size", "big"],
    ["--threads", "-1"],
])
def test_cli_usage_errors_exit_2_with_one_line_and_no_files(argv, fake_benchmark, tmp_path, capsys):
    out = tmp_path / "out"
    assert bench_cli.main([*argv, "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lightnets: error: ")
    if argv[0] in ("nope_net", "resnet*"):
        assert "list_models()" in err and argv[0] in err
    assert not out.exists() and fake_benchmark == []


def test_cli_failed_write_leaves_no_files(fake_benchmark, tmp_path, capsys, monkeypatch):
    def broken_plot(rows, path):
        raise RuntimeError("matplotlib exploded")

    monkeypatch.setattr(bench, "write_plot", broken_plot)
    out = tmp_path / "out"
    assert bench_cli.main(["squeezenet1_1", "--output", str(out), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert captured.err == "lightnets: error: RuntimeError: matplotlib exploded\n" and captured.out == ""
    assert os.listdir(out) == []


def test_cli_exits_1_when_one_of_our_models_failed(measured_rows, tmp_path, capsys, monkeypatch):
    rows = copy.deepcopy(measured_rows)
    rows[1].error = "litert int8: ConversionError: boom"
    monkeypatch.setattr(bench, "benchmark_models", lambda names, **kwargs: rows)
    out = tmp_path / "out"
    assert bench_cli.main(["--output", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1 of 2 model(s)" in err and "shufflenet_v2_x0_5" in err
    assert "litert int8: ConversionError: boom" in (out / "bench.md").read_text()


def test_tools_benchmark_runs_the_same_implementation(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "benchmark.py"), "shufflenet_v2_x0_5", "--input-size", "32",
         "--runs", "1", "--no-twins", "--quiet", "--output", str(out)],
        capture_output=True, text=True, timeout=WAIT_S, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == (out / "bench.md").read_text()
    assert len(first_markdown_table(result.stdout)) == 3 and "| shufflenet_v2_x0_5 | 32 |" in result.stdout
    [row], _ = bench.read_json(out / "bench.json")
    assert row.name == "shufflenet_v2_x0_5" and row.params == model_config("shufflenet_v2_x0_5").params
    assert sorted(os.listdir(out)) == ["bench.json", "bench.md", "bench.png"]
    bad = subprocess.run([sys.executable, str(ROOT / "tools" / "benchmark.py"), "nope_net", "--output", str(out)],
                         capture_output=True, text=True, timeout=WAIT_S,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.splitlines()[-1].startswith("lightnets: error: unknown model 'nope_net'")
