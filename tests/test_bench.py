"""``keras_lightnets.pipelines.bench``: structure and numbers that do not depend on speed (facts, sizes, ratios,
files). No timing is asserted beyond "positive, finite". ``lightnets bench`` and ``tools/benchmark.py``:
``tests/cli/test_cli_bench.py``."""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

import pytest
from helpers import PNG_MAGIC, first_markdown_table

from keras_lightnets import count_macs, create_model, list_models, model_config
from keras_lightnets.errors import InputError
from keras_lightnets.pipelines import bench

NAMES = ["mobilenet_v2_035", "shufflenet_v2_x0_5"]
SIZE = 64
BATCHES = (1, 2)


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """One tiny run: mobilenet_v2_035 (twin MobileNetV2) and shufflenet_v2_x0_5 (no twin) at 64 px."""
    folder = tmp_path_factory.mktemp("bench") / "tflite"
    lines: list[str] = []
    rows = bench.benchmark_models(
        NAMES, input_size=SIZE, threads=1, runs=3, keras_batches=BATCHES, quantizations=("none", "int8"),
        calibration_samples=4, output_dir=folder, progress=lines.append,
    )
    return rows, lines, folder


# --------------------------------------------------------------------------- measuring

def test_rows_carry_the_registry_facts(measured):
    rows, _, _ = measured
    assert [r.name for r in rows] == NAMES
    for row in rows:
        config = model_config(row.name)
        assert row.error is None, row.error
        assert row.family == config.family and row.top1 == config.top1 and row.input_size == SIZE
        assert row.params == config.params  # input-size independent (global pooling)
        assert row.macs == count_macs(create_model(row.name, weights=None, input_shape=(SIZE, SIZE, 3)))
        assert row.macs < config.macs  # 64 px instead of 224
        assert (row.threads, row.runs) == (1, 3)


def test_latencies_are_positive_and_sizes_shrink_with_int8(measured):
    rows, _, folder = measured
    for row in rows:
        assert set(row.ours.keras_ms) == set(BATCHES)
        assert set(row.ours.litert_ms) == set(row.ours.litert_bytes) == {"none", "int8"}
        for ms in [*row.ours.keras_ms.values(), *row.ours.litert_ms.values()]:
            assert ms > 0 and math.isfinite(ms)
        assert 0 < row.ours.litert_bytes["int8"] < row.ours.litert_bytes["none"]
        for mode, size in row.ours.litert_bytes.items():  # output_dir keeps the files
            assert (folder / f"{row.name}_{mode}.tflite").stat().st_size == size


def test_twin_is_the_same_architecture_and_ratios_are_ours_over_twin(measured):
    rows, _, folder = measured
    twinned, lone = rows
    assert twinned.twin_name == "MobileNetV2" and twinned.twin_error is None
    assert twinned.twin.model == "keras.applications.MobileNetV2"
    assert twinned.twin.params == twinned.params
    assert 0 < twinned.twin.litert_bytes["int8"] < twinned.twin.litert_bytes["none"]
    assert (folder / "mobilenet_v2_035_twin_int8.tflite").is_file()
    expected = {f"keras_b{b}": twinned.ours.keras_ms[b] / twinned.twin.keras_ms[b] for b in BATCHES}
    expected |= {f"litert_{q}": twinned.ours.litert_ms[q] / twinned.twin.litert_ms[q] for q in ("none", "int8")}
    assert twinned.ratios == expected
    assert all(v > 0 and math.isfinite(v) for v in twinned.ratios.values())
    assert bench.latency_ratios(twinned.ours, twinned.twin) == twinned.ratios
    assert lone.twin is None and lone.twin_name is None and lone.twin_error is None and lone.ratios == {}


def test_progress_has_a_start_and_a_result_line_per_model(measured):
    _, lines, _ = measured
    assert len(lines) == 2 * len(NAMES)
    assert lines[0].startswith("[1/2] mobilenet_v2_035 at 64x64") and "MobileNetV2" in lines[0]
    assert lines[1].startswith("mobilenet_v2_035:") and "vs MobileNetV2" in lines[1]
    assert lines[2].startswith("[2/2] shufflenet_v2_x0_5") and lines[3].startswith("shufflenet_v2_x0_5:")


def test_twin_of_follows_the_registry_kwargs():
    import keras

    assert bench.twin_of("mobilenet_v1_025") == ("MobileNet", {"alpha": 0.25})
    assert bench.twin_of("mobilenet_v2_140") == ("MobileNetV2", {"alpha": 1.4})
    assert bench.twin_of("mobilenet_v3_large_minimal_100") == ("MobileNetV3Large", {"alpha": 1.0, "minimalistic": True})
    assert bench.twin_of("mobilenet_v3_small_075") == ("MobileNetV3Small", {"alpha": 0.75})
    assert bench.twin_of("nasnet_mobile") == ("NASNetMobile", {})
    for name in ("squeezenet1_1", "shufflenet_v2_x1_0", "mnasnet_b1_050", "mnasnet_a1_100"):
        assert bench.twin_of(name) is None
    for name in list_models():
        spec = bench.twin_of(name)
        assert spec is None or callable(getattr(keras.applications, spec[0]))


def test_names_resolve_patterns_and_refuse_unknown_names_before_any_work():
    assert bench.resolve_names(["mobilenet_v3_small*", "mobilenet_v3_small_100"]) == list_models("mobilenet_v3_small*")
    for names in (["resnet50"], ["resnet*"], [""], []):
        with pytest.raises(InputError, match=r"list_models\(\)|non-empty"):
            bench.resolve_names(names)
    for kwargs in ({"runs": 0}, {"threads": -1}, {"quantizations": ("fp8",)}, {"keras_batches": (0,)},
                   {"input_size": 0}):
        with pytest.raises(ValueError):
            bench.benchmark_models(["squeezenet1_1"], **kwargs)


def test_a_twin_that_fails_to_convert_is_recorded_not_raised(monkeypatch):
    """At the default input size the MACs are the registry's; the twin's conversion is made to fail."""
    from keras_lightnets import export

    real = export.to_tflite

    def failing_for_twins(model, path, *args, **kwargs):
        if "_twin_" in os.path.basename(path):
            raise export.ConversionError("converter says no\nsecond line")
        return real(model, path, *args, **kwargs)

    monkeypatch.setattr(export, "to_tflite", failing_for_twins)
    [row] = bench.benchmark_models(["mobilenet_v2_035"], runs=1, keras_batches=(1,), quantizations=("none",))
    config = model_config("mobilenet_v2_035")
    assert (row.input_size, row.params, row.macs) == (config.input_size, config.params, config.macs)
    assert row.error is None and row.ours.litert_ms["none"] > 0
    assert row.twin_error == "litert none: ConversionError: converter says no second line"
    assert row.twin.keras_ms[1] > 0 and row.twin.litert_ms == {} and row.twin.litert_bytes == {}
    assert row.ratios == {"keras_b1": row.ours.keras_ms[1] / row.twin.keras_ms[1]}
    text = bench.markdown_table([row], "test machine")
    assert "## Errors" in text and "twin MobileNetV2: litert none: ConversionError" in text


def test_a_twin_that_fails_to_build_is_recorded(monkeypatch):
    import keras

    def broken(**kwargs):
        raise RuntimeError("no such twin today")

    monkeypatch.setattr(keras.applications, "MobileNetV2", broken)
    [row] = bench.benchmark_models(["mobilenet_v2_035"], input_size=32, keras_batches=(), quantizations=())
    assert row.twin is None and row.twin_name == "MobileNetV2" and row.ratios == {}
    assert row.twin_error == "build: RuntimeError: no such twin today"
    assert row.error is None and row.params == model_config("mobilenet_v2_035").params


# --------------------------------------------------------------------------- writing

def test_markdown_has_the_machine_label_and_one_row_per_model(measured, tmp_path):
    rows, _, _ = measured
    label = bench.machine_label(1, rows[0].keras_threads)
    machine = bench.describe_machine()
    assert machine["cpu"] in label and machine["platform"] in label and machine["tensorflow"] in label
    assert f"{machine['cores']} cores" in label and "LiteRT 1 thread(s)" in label
    text = bench.write_markdown(rows, tmp_path / "bench.md", label)
    assert (tmp_path / "bench.md").read_text() == text
    assert f"Machine: {label}" in text
    table = first_markdown_table(text)
    assert len(table) == 2 + len(rows)
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header[:5] == ["model", "input", "params (M)", "MACs (M)", "top-1 (%)"]
    assert "Keras b2 (ms)" in header and "LiteRT int8 (ms)" in header and "int8 size (MB)" in header
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")] for line in table[2:]}
    assert list(cells) == NAMES
    assert all(len(c) == len(header) for c in cells.values())
    v2, shuffle = cells["mobilenet_v2_035"], cells["shufflenet_v2_x0_5"]
    ratio_column = header.index("LiteRT int8 (ms)") + 1
    assert v2[ratio_column] == f"{rows[0].ratios['litert_int8']:.2f}" and shuffle[ratio_column] == "-"
    twin_column = header.index("keras.applications twin")
    assert v2[twin_column] == "MobileNetV2" and shuffle[twin_column] == "-"
    # which int8 ops XNNPACK left to TFLite's kernels: here only the final softmax
    outside = header.index("int8 ops outside XNNPACK")
    for row in rows:
        assert row.ours.litert_outside["int8"] == {"SOFTMAX": 1} and row.ours.litert_outside["none"] == {}
        assert cells[row.name][outside] == "SOFTMAX x1"
    assert v2[2] == f"{rows[0].params / 1e6:.2f}"
    assert "| MobileNetV2 | mobilenet_v2_035 |" in text  # the twins' own numbers
    assert "## Errors" not in text
    assert not [p for p in os.listdir(tmp_path) if p != "bench.md"]


def test_plot_is_a_png_even_without_int8_or_rows(measured, tmp_path):
    rows, _, _ = measured
    bench.write_plot(rows, tmp_path / "a.png")
    float_only = copy.deepcopy(rows)
    for row in float_only:
        row.ours.litert_ms.pop("int8")
    bench.write_plot(float_only, tmp_path / "b.png")
    bench.write_plot([], tmp_path / "c.png")
    for name in ("a.png", "b.png", "c.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 1000
    assert sorted(os.listdir(tmp_path)) == ["a.png", "b.png", "c.png"]


def test_json_round_trips(measured, tmp_path):
    rows, _, _ = measured
    machine = bench.describe_machine()
    bench.write_json(rows, tmp_path / "bench.json", machine, "label")
    again, machine_again = bench.read_json(tmp_path / "bench.json")
    assert again == rows and machine_again == machine
    assert isinstance(next(iter(again[0].ours.keras_ms)), int)
    assert json.loads((tmp_path / "bench.json").read_text())["label"] == "label"


def test_report_is_written_all_or_nothing(measured, tmp_path, monkeypatch):
    rows, _, _ = measured
    machine = bench.describe_machine()

    def broken_plot(rows, path):
        Path(path).write_bytes(b"half a png")
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(bench, "write_plot", broken_plot)
        with pytest.raises(OSError, match="disk full"):
            bench.write_report(rows, tmp_path / "out", machine, "label")
    assert os.listdir(tmp_path / "out") == []
    paths = bench.write_report(rows, tmp_path / "out", machine, "label")
    assert sorted(os.listdir(tmp_path / "out")) == ["bench.json", "bench.md", "bench.png"]
    assert set(paths) == {"markdown", "plot", "json"}
