"""The ``lightnets`` command: list, info, demo; exit codes 0 / 2 / 1 with one-line errors."""

from __future__ import annotations

import json

from keras_lightnets import list_models, model_config
from keras_lightnets.cli import main


def test_list_prints_every_matching_model(capsys):
    assert main(["list", "mobilenet_v3*"]) == 0
    out = capsys.readouterr().out
    for name in list_models("mobilenet_v3*"):
        assert name in out
        assert f"{model_config(name).params:,}" in out
    assert "mobilenet_v2_100" not in out


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


def test_demo_runs_and_writes_its_report(tmp_path, capsys):
    assert main(["demo", "--output", str(tmp_path), "--models", "mobilenet_v1_025"]) == 0
    report = json.loads((tmp_path / "registry.json").read_text())
    assert [m["name"] for m in report["models"]] == ["mobilenet_v1_025"]
    assert report["forward_pass"][0]["output"] == "(1, 1000)"
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]
