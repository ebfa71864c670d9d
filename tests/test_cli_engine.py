"""`ptfer tune | transfer | grid` end to end on built-in tiny models and the miniature LAMA."""
import json
from pathlib import Path

import pytest

from ptfer_core.cli import main


@pytest.fixture
def workdir(tmp_path, monkeypatch, mini_data_dir):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PTFER_DATA_DIR", str(mini_data_dir))
    return tmp_path


def test_tune_then_transfer_reuses_the_saved_source_prompt(workdir, capsys):
    assert main(["tune", "--model", "tiny:bert:32:1", "--relation", "P36", "--epochs", "1", "--quiet"]) == 0
    saved = list((workdir / "prompts" / "tiny_bert_32_1").glob("P36.*.safetensors"))
    assert len(saved) == 1 and json.loads((workdir / "tune-results.json").read_text())["relations"]["P36"]["file"]
    mtime = saved[0].stat().st_mtime_ns
    assert main(["transfer", "--source", "tiny:bert:32:1", "--target", "tiny:llama:48:2", "--relation", "P36",
                 "--epochs", "1", "--steps", "20", "--quiet"]) == 0
    assert saved[0].stat().st_mtime_ns == mtime  # reused, not re-tuned
    out = json.loads((workdir / "transfer-results.json").read_text())
    assert out["method"] == "transfer" and out["target"] == "tiny:llama:48:2" and "P36" in out["relations"]
    target_file = out["relations"]["P36"]["file"]
    assert main(["evaluate", "--model", "tiny:llama:48:2", "--prompt", target_file, "--out", "-", "--quiet"]) == 0
    assert "P36" in capsys.readouterr().out


def test_template_shaped_tuning_and_shared_word_snap_from_the_cli(workdir):
    assert main(["tune", "--model", "tiny:gpt2:32:3", "--relation", "P36", "--placement", "template", "--init", "manual",
                 "--epochs", "1", "--quiet"]) == 0
    tuned = json.loads(next((workdir / "prompts" / "tiny_gpt2_32_3").glob("P36.*.json")).read_text())
    assert tuned["template"].count("[V]") >= 2 and tuned["template"].index("[V]") < tuned["template"].index("[X]")
    assert main(["transfer", "--source", "tiny:gpt2:32:3", "--target", "tiny:llama:48:2", "--relation", "P36",
                 "--placement", "template", "--init", "manual", "--epochs", "1", "--steps", "20",
                 "--projection", "nearest", "--shared-words-only", "--quiet"]) == 0
    out = json.loads((workdir / "transfer-results.json").read_text())
    assert out["transfer"]["project_to_shared"] is True and out["relations"]["P36"]["file"]


@pytest.mark.parametrize("solver,space", [("lstsq", "raw"), ("vocabulary", "standardised")])
def test_one_step_solvers_from_the_cli(workdir, solver, space):
    assert main(["transfer", "--source", "tiny:bert:32:1", "--target", "tiny:llama:48:2", "--relation", "P36",
                 "--epochs", "1", "--solver", solver, "--space", space, "--quiet"]) == 0
    out = json.loads((workdir / "transfer-results.json").read_text())
    assert out["transfer"]["solver"] == solver and out["transfer"]["space"] == space
    saved = json.loads(Path(out["relations"]["P36"]["file"]).with_suffix(".json").read_text())
    assert saved["provenance"]["steps_run"] == 1


def test_grid_relations_override_runs_only_those(workdir, tmp_path, capsys):
    config = tmp_path / "g.yaml"
    config.write_text('models: ["tiny:bert:32:1", "tiny:gpt2:32:3"]\nrelations: all\nmethods: [manual]\n')
    assert main(["grid", "--config", str(config), "--out", "g", "--relations", "P36,P103"]) == 0
    import pandas as pd

    table = pd.read_csv(workdir / "g" / "results.csv")
    assert sorted(table.relation.unique()) == ["P103", "P36"]
    assert main(["grid", "--config", str(config), "--out", "g2", "--relations", "P999"]) == 2
    assert "P999" in capsys.readouterr().err


def test_transfer_errors_are_one_line(workdir, capsys):
    code = main(["transfer", "--source", "tiny:bert:32:1", "--target", "tiny:llama:48:2", "--relation", "P36",
                 "--method", "direct-transfer", "--epochs", "1", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: direct transfer needs equal embedding widths")
    assert main(["transfer", "--source", "tiny:bert", "--target", "tiny:gpt2", "--relation", "P999"]) == 2
    assert "P999" in capsys.readouterr().err


def test_grid_command_writes_tables(workdir, tmp_path, capsys):
    config = tmp_path / "g.yaml"
    config.write_text('models: ["tiny:bert:32:1", "tiny:gpt2:32:3"]\nrelations: [P36]\nmethods: [manual, transfer-loss]\n'
                      'tune: {epochs: 1}\ntransfer: {steps: 10, anchor_filter: all}\n')
    assert main(["grid", "--config", str(config), "--out", "g"]) == 0
    assert "| transfer-loss |" in capsys.readouterr().out
    assert (workdir / "g" / "results.csv").is_file() and (workdir / "g" / "summary.md").is_file()
