"""``keras_lightnets.pipelines.compression_bench`` (``tools/benchmark_compression.py``): the target checks on
known figures, and one short real run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import WAIT_S

from keras_lightnets.cli import benchmark_compression
from keras_lightnets.pipelines import compression_bench
from keras_lightnets.pipelines.variants import VariantResult

ROOT = Path(__file__).resolve().parents[1]


def _result(name, accuracy, size, *, gzip=None, sparsity=0.0, latency=1.0, outside=None):
    return VariantResult(name=name, path=f"{name}.tflite", size_bytes=size, gzip_bytes=gzip or size,
                         accuracy=accuracy, keras_accuracy=0.95, top1_agreement=1.0, kernel_sparsity=sparsity,
                         latency_ms=latency, p90_ms=latency, delegate_partitions=1,
                         ops_outside_delegate=outside or {})


def test_checks_compare_each_variant_with_its_target():
    results = {
        "float": _result("float", 0.95, 1000, latency=1.0),
        "int8_ptq": _result("int8_ptq", 0.935, 330, latency=0.5),          # -1.5 pt, 0.33x
        "int8_ptq_per_tensor": _result("int8_ptq_per_tensor", 0.925, 280),  # -2.5 pt, 0.28x
        "int8_qat": _result("int8_qat", 0.945, 330),                        # -0.5 pt
        "int8_qat_pruned50": _result("int8_qat_pruned50", 0.93, 330, sparsity=0.4999),
        "int8_qat_pruned75": _result("int8_qat_pruned75", 0.90, 330, gzip=140),
    }
    checks = compression_bench.checks(results, keras_accuracy=0.95)
    found = {target: (met, measured) for target, met, measured in checks}
    assert found["QAT int8 within 1.0 pt of float Keras"] == (True, "+0.50 pt")
    assert found["PTQ int8 within 2.0 pt"] == (True, "+1.50 pt")
    assert found["PTQ int8, per-tensor weights, within 2.0 pt"] == (False, "+2.50 pt")
    assert found["50% pruned + PQAT int8 within 1.5 pt"] == (False, "+2.00 pt")
    assert found[">= 50% zeros in pruned kernels of the .tflite"] == (False, "0.499900")
    assert found["int8 size <= 0.30x float (per-channel weights)"] == (False, "0.330x")
    assert found["int8 size <= 0.30x float (per-tensor weights)"] == (True, "0.280x")
    assert found["int8 latency < float latency"] == (True, "0.500 vs 1.000 ms")
    assert found["75% pruned int8 gzip <= 0.15x float"] == (True, "0.140x")


def test_checks_skip_variants_not_run():
    results = {"float": _result("float", 0.9, 1000), "int8_ptq": _result("int8_ptq", 0.9, 250, latency=2.0)}
    found = {target: met for target, met, _ in compression_bench.checks(results, keras_accuracy=0.9)}
    assert found == {"PTQ int8 within 2.0 pt": True, "int8 size <= 0.30x float (per-channel weights)": True,
                     "int8 latency < float latency": False}


def test_short_real_run_writes_table_json_and_plot(tmp_path, capsys):
    code = benchmark_compression.main(["shufflenet_v2_x0_5", "--output", str(tmp_path), "--image-size", "32",
                                   "--epochs", "1", "--fine-tune-epochs", "0", "--runs", "2",
                                   "--variants", "float,int8_ptq_per_tensor", "--strip-names"])
    assert code == 0
    report = json.loads((tmp_path / "compression.json").read_text())
    variants = report["models"]["shufflenet_v2_x0_5"]["variants"]
    assert list(variants) == ["float", "int8_ptq_per_tensor"]
    assert variants["int8_ptq_per_tensor"]["export"]["per_channel"] is False
    assert all(v["export"]["strip_names"] and v["export"]["inputs"][0]["name"] == "" for v in variants.values())
    assert variants["int8_ptq_per_tensor"]["size_bytes"] < 0.3 * variants["float"]["size_bytes"]
    table = (tmp_path / "compression.md").read_text()
    assert "| shufflenet_v2_x0_5 | int8_ptq_per_tensor |" in table and "outside XNNPACK" in table
    assert (tmp_path / "compression.png").read_bytes()[:4] == b"\x89PNG"


def test_variant_names_are_checked_with_an_input_error():
    from keras_lightnets.errors import InputError
    from keras_lightnets.pipelines.variants import VARIANTS, check_variant_names

    assert check_variant_names(list(VARIANTS)[:2]) == list(VARIANTS)[:2]
    for names in ([], ["float", "int4"]):
        with pytest.raises(InputError, match="non-empty list of float"):
            check_variant_names(names)


def test_the_tool_is_a_wrapper_over_the_package():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "benchmark_compression.py"), "--help"],
                            capture_output=True, text=True, timeout=WAIT_S, check=True)
    assert result.stdout.startswith("usage: benchmark_compression.py")
    assert "--strip-names" in result.stdout and "Compression figures on the bundled digits" in result.stdout
