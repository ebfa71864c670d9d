"""`ptfer tune | transfer | grid` end to end on toy models and the miniature LAMA: recipes, the prompt store (a
changed setting never reuses a stale prompt), the scored split, and one-line errors."""

import json
from pathlib import Path

import pytest

from ptfer_core.cli import main

TOY = ["--anchor-source", "frequency", "--anchor-filter", "all"]  # the toy vocabulary has no 8,192 common words


@pytest.fixture
def workdir(tmp_path, monkeypatch, mini_data_dir):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PTFER_DATA_DIR", str(mini_data_dir))
    return tmp_path


def stored(workdir, model="tiny_bert_32_1", task="P36"):
    return sorted((workdir / "prompts" / model / task).glob("tuned-*.safetensors"))


def test_tune_then_transfer_reuses_the_stored_source_prompt(workdir, capsys):
    assert main(["tune", "--model", "tiny:bert:32:1", "--relation", "P36", "--epochs", "1", "--quiet"]) == 0
    saved = stored(workdir)
    assert (
        len(saved) == 1
        and json.loads((workdir / "tune-results.json").read_text(encoding="utf-8"))["relations"]["P36"]["file"]
    )
    mtime = saved[0].stat().st_mtime_ns
    assert (
        main(
            [
                "transfer",
                "--source",
                "tiny:bert:32:1",
                "--target",
                "tiny:llama:48:2",
                "--relation",
                "P36",
                "--epochs",
                "1",
                "--quiet",
                *TOY,
            ]
        )
        == 0
    )
    assert saved[0].stat().st_mtime_ns == mtime and stored(workdir) == saved  # reused, not re-tuned
    out = json.loads((workdir / "transfer-results.json").read_text(encoding="utf-8"))
    assert out["method"] == "transfer" and out["target"] == "tiny:llama:48:2" and out["recipe"] == "studio"
    assert out["overrides"]["tune"] == {"epochs": 1}
    target_file = out["relations"]["P36"]["file"]
    assert main(["evaluate", "--model", "tiny:llama:48:2", "--prompt", target_file, "--out", "-", "--quiet"]) == 0
    assert "P36" in capsys.readouterr().out


@pytest.mark.parametrize(
    "change",
    [
        ["--epochs", "2"],
        ["--lr", "0.3"],
        ["--max-train", "3"],
        ["--seed", "4"],
        ["--loss", "candidates"],
        ["--no-dropout"],
        ["--tune-precision", "float32"],
        ["--split-seed", "1"],
    ],
)
def test_any_changed_tuning_setting_tunes_a_new_prompt(workdir, change):
    base = ["tune", "--model", "tiny:bert:32:1", "--relation", "P36", "--epochs", "1", "--quiet"]
    assert main(base) == 0
    first = stored(workdir)
    assert main(base + change) == 0
    second = stored(workdir)
    assert len(second) == 2 and first[0] in second
    results = json.loads((workdir / "tune-results.json").read_text(encoding="utf-8"))
    assert results["relations"]["P36"]["reused"] is False
    assert main(base + change) == 0  # the same settings again: reused
    assert json.loads((workdir / "tune-results.json").read_text(encoding="utf-8"))["relations"]["P36"]["reused"] is True


def test_transfer_scores_the_test_split(workdir):
    from ptfer_core.data import load_split
    from ptfer_core.evaluation import candidates_for
    from ptfer_core.loading import load_model

    assert (
        main(
            [
                "transfer",
                "--source",
                "tiny:bert:32:1",
                "--target",
                "tiny:llama:48:2",
                "--relation",
                "P103",
                "--epochs",
                "1",
                "--quiet",
                "--method",
                "manual",
            ]
        )
        == 0
    )
    out = json.loads((workdir / "transfer-results.json").read_text(encoding="utf-8"))
    cands = candidates_for(load_model("tiny:llama:48:2"))
    test = [f for f in load_split("P103", "test") if f.object in cands.index]
    dev = [f for f in load_split("P103", "dev") if f.object in cands.index]
    assert len(test) != len(dev) and out["relations"]["P103"]["n_facts"] == len(test)


def test_paper_recipe_and_flags_that_override_it(workdir, capsys):
    assert (
        main(
            [
                "transfer",
                "--source",
                "tiny:bert:32:1",
                "--target",
                "tiny:llama:48:2",
                "--relation",
                "P36",
                "--recipe",
                "paper",
                "--epochs",
                "1",
                "--steps",
                "30",
                "--dev-every",
                "10",
                "--top-k",
                "none",
                "--quiet",
                *TOY,
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "steps=30 overrides recipe paper's 2000" in err
    out = json.loads((workdir / "transfer-results.json").read_text(encoding="utf-8"))
    assert out["recipe"] == "paper" and out["transfer"]["solver"] == "adam" and out["transfer"]["selection"] == "dev"
    saved = json.loads(Path(out["relations"]["P36"]["file"]).with_suffix(".json").read_text(encoding="utf-8"))
    assert [r["step"] for r in saved["trajectory"] if "dev_p_at_1" in r] == [10, 20, 30]
    assert saved["provenance"]["recipe"] == "paper"


@pytest.mark.parametrize("solver,space", [("lstsq", "raw"), ("vocabulary", "standardised")])
def test_one_step_solvers_from_the_cli(workdir, solver, space):
    assert (
        main(
            [
                "transfer",
                "--source",
                "tiny:bert:32:1",
                "--target",
                "tiny:llama:48:2",
                "--relation",
                "P36",
                "--epochs",
                "1",
                "--solver",
                solver,
                "--space",
                space,
                "--quiet",
                *TOY,
            ]
        )
        == 0
    )
    out = json.loads((workdir / "transfer-results.json").read_text(encoding="utf-8"))
    assert out["transfer"]["solver"] == solver and out["transfer"]["space"] == space
    saved = json.loads(Path(out["relations"]["P36"]["file"]).with_suffix(".json").read_text(encoding="utf-8"))
    assert saved["provenance"]["steps_run"] == 1


def test_template_shaped_tuning_and_shared_word_snap_from_the_cli(workdir):
    assert (
        main(
            [
                "tune",
                "--model",
                "tiny:gpt2:32:3",
                "--relation",
                "P36",
                "--placement",
                "template",
                "--init",
                "manual",
                "--epochs",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    tuned = json.loads(stored(workdir, "tiny_gpt2_32_3")[0].with_suffix(".json").read_text(encoding="utf-8"))
    assert tuned["template"].count("[V]") >= 2 and tuned["template"].index("[V]") < tuned["template"].index("[X]")
    assert (
        main(
            [
                "transfer",
                "--source",
                "tiny:gpt2:32:3",
                "--target",
                "tiny:llama:48:2",
                "--relation",
                "P36",
                "--placement",
                "template",
                "--init",
                "manual",
                "--epochs",
                "1",
                "--projection",
                "nearest-shared",
                "--quiet",
                *TOY,
            ]
        )
        == 0
    )
    out = json.loads((workdir / "transfer-results.json").read_text(encoding="utf-8"))
    assert out["transfer"]["projection"] == "nearest-shared" and out["relations"]["P36"]["file"]


def test_bad_input_is_one_line(workdir, capsys):
    def error(argv):
        code = main(argv)
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2, lines
        return lines[-1]

    src = ["transfer", "--source", "tiny:bert:32:1", "--target", "tiny:llama:48:2", "--quiet"]
    assert error([*src, "--relation", "P36", "--method", "direct-transfer", "--epochs", "1"]).startswith(
        "error: direct transfer needs equal embedding widths"
    )
    assert "P999" in error([*src, "--relation", "P999"])
    assert "top_k 8192 is larger than the" in error(
        [*src, "--relation", "P36", "--recipe", "paper", "--epochs", "1", *TOY]
    )
    assert "contradicts --normalization" in error(
        [*src, "--relation", "P36", "--no-normalize", "--normalization", "global"]
    )
    (workdir / "taken").write_text("a file", encoding="utf-8")
    assert "is a file" in error([*src, "--relation", "P36", "--prompt-dir", "taken"])
    assert "is a directory" in error([*src, "--relation", "P36", "--out", str(workdir)])
    assert "empty" in error([*src, "--relation", "P36", "--prompt-dir", ""])


def transfer_with(source: str, target: str, relation: str, prompt: str, *extra: str) -> int:
    """`ptfer transfer` from a given source prompt (no tuning), quietly, with the toy anchors."""
    return main(
        ["transfer", "--source", source, "--target", target, "--relation", relation, "--source-prompt", prompt]
        + [*extra, "--quiet", *TOY]
    )


def test_a_source_prompt_for_another_relation_or_model_is_refused(workdir, capsys):
    assert main(["tune", "--model", "tiny:bert:32:1", "--relation", "P36", "--epochs", "1", "--quiet"]) == 0
    p36 = str(stored(workdir)[0])
    code = transfer_with("tiny:bert:32:1", "tiny:llama:48:2", "P103", p36)
    assert code == 2 and "made for P36, not P103" in capsys.readouterr().err
    code = transfer_with("tiny:llama:48:2", "tiny:bert:32:1", "P36", p36)
    assert code == 2 and "width 32" in capsys.readouterr().err
    code = transfer_with("tiny:bert:32:1", "tiny:llama:48:2", "P36,P103", p36)
    assert code == 2 and "one --relation" in capsys.readouterr().err


def test_grid_relations_override_runs_only_those(workdir, tmp_path, capsys, monkeypatch):
    config = tmp_path / "g.yaml"
    config.write_text(
        'models: ["tiny:bert:32:1", "tiny:gpt2:32:3"]\nrelations: all\nmethods: [manual]\n', encoding="utf-8"
    )
    assert main(["grid", "--config", str(config), "--out", "g", "--relations", "P36,P103"]) == 0
    import pandas as pd

    table = pd.read_csv(workdir / "g" / "results.csv")
    assert sorted(table.relation.unique()) == ["P103", "P36"]
    from ptfer_core.config import resolve_precision

    assert set(table.precision) == {resolve_precision("float32").value}, "each row says what it was scored in"
    monkeypatch.setenv("PTFER_AUTO_PRECISION", "bfloat16")  # a machine where `auto` means bfloat16
    config.write_text(config.read_text(encoding="utf-8") + "eval_precision: auto\n", encoding="utf-8")
    assert main(["grid", "--config", str(config), "--out", "g3", "--relations", "P36"]) == 0
    assert set(pd.read_csv(workdir / "g3" / "results.csv").precision) == {"bfloat16"}
    assert main(["grid", "--config", str(config), "--out", "g2", "--relations", "P999"]) == 2
    assert "P999" in capsys.readouterr().err


def test_grid_recipes_override_runs_a_part_the_full_config_reuses(workdir, tmp_path, capsys):
    config = tmp_path / "g.yaml"
    config.write_text(
        'models: ["tiny:gpt2:32:3", "tiny:llama:32:3"]\nrelations: [P36]\nrecipes: [studio, paper-zero-shot]\n'
        "methods: [manual, self-transfer]\noverrides: {tune: {epochs: 1, max_train: 8}, transfer: {steps: 5}}\n",
        encoding="utf-8",
    )
    assert main(["grid", "--config", str(config), "--out", "g", "--recipes", "studio"]) == 0
    import pandas as pd

    assert set(pd.read_csv(workdir / "g" / "results.csv").recipe) == {"studio"}
    part = {p.name: p.stat().st_mtime_ns for p in (workdir / "g" / "cells").glob("*.json")}
    assert part and all("studio" in name for name in part)
    assert main(["grid", "--config", str(config), "--out", "g"]) == 0
    after = {p.name: p.stat().st_mtime_ns for p in (workdir / "g" / "cells").glob("*.json")}
    assert {k: after[k] for k in part} == part  # the studio cells were reused, not recomputed
    assert set(pd.read_csv(workdir / "g" / "results.csv").recipe) == {"studio", "paper-zero-shot"}
    assert main(["grid", "--config", str(config), "--out", "g3", "--recipes", "studio,nonsense"]) == 2
    assert "nonsense" in capsys.readouterr().err


def test_transfer_retunes_its_source_when_a_tuning_setting_changes(workdir):
    args = ["transfer", "--source", "tiny:bert:32:1", "--target", "tiny:llama:48:2", "--relation", "P36", *TOY]
    assert main([*args, "--epochs", "1", "--quiet"]) == 0
    assert len(stored(workdir)) == 1
    assert main([*args, "--epochs", "2", "--lr", "0.3", "--quiet"]) == 0
    assert len(stored(workdir)) == 2  # a new source prompt, not the 1-epoch one
    out = json.loads((workdir / "transfer-results.json").read_text(encoding="utf-8"))
    assert out["overrides"]["tune"] == {"epochs": 2, "lr": 0.3}


def test_a_same_width_source_prompt_from_another_model_is_used_with_a_note(workdir, capsys):
    assert main(["tune", "--model", "tiny:gpt2:32:3", "--relation", "P36", "--epochs", "1", "--quiet"]) == 0
    made_on_gpt2 = str(stored(workdir, model="tiny_gpt2_32_3")[0])
    capsys.readouterr()
    code = transfer_with("tiny:bert:32:1", "tiny:llama:48:2", "P36", made_on_gpt2, "--out", "-")
    assert code == 0 and "tiny:gpt2:32:3" in capsys.readouterr().err


def test_outputs_under_a_file_fail_before_any_work(workdir, capsys, monkeypatch):
    (workdir / "taken").write_text("x", encoding="utf-8")
    grid = workdir / "g.yaml"
    grid.write_text('models: ["tiny:bert:32:1"]\nrelations: [P36]\nmethods: [manual]\n', encoding="utf-8")

    def no_model(*a, **k):
        raise AssertionError("a model was loaded before the output was checked")

    monkeypatch.setattr("ptfer_core.loading.load_model", no_model)
    tune = ["tune", "--model", "tiny:bert:32:1", "--relation", "P36", "--quiet"]
    for argv, needle in [
        ([*tune, "--prompt-dir", "taken/sub"], "taken is a file"),
        ([*tune, "--out", "taken/sub/r.json"], "cannot be written"),
        (["grid", "--config", str(grid), "--out", "taken/sub"], "taken is a file"),
        (["grid", "--config", str(grid), "--out", "taken"], "is a file"),
    ]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_a_grid_part_adds_its_cells_to_the_folders_tables_instead_of_replacing_them(workdir, tmp_path):
    config = tmp_path / "g.yaml"
    config.write_text(
        'models: ["tiny:gpt2:32:3", "tiny:llama:32:3"]\nrelations: [P36, P103, P17]\nmethods: [manual]\n',
        encoding="utf-8",
    )
    import pandas as pd

    assert main(["grid", "--config", str(config), "--out", "g", "--relations", "P36"]) == 0
    assert set(pd.read_csv(workdir / "g" / "results.csv").relation) == {"P36"}
    assert main(["grid", "--config", str(config), "--out", "g", "--relations", "P103"]) == 0
    assert set(pd.read_csv(workdir / "g" / "results.csv").relation) == {"P36", "P103"}  # not P103 alone
    assert "over 2 task(s)" in (workdir / "g" / "summary.md").read_text(encoding="utf-8")
    assert json.loads((workdir / "g" / "config.json").read_text(encoding="utf-8"))["relations"] == [
        "P36",
        "P103",
        "P17",
    ]


def test_grid_assemble_only_tables_the_finished_cells_and_runs_nothing(workdir, tmp_path, capsys):
    config = tmp_path / "g.yaml"
    config.write_text(
        'models: ["tiny:gpt2:32:3", "tiny:llama:32:3"]\nrelations: [P36, P103]\nmethods: [manual, random]\n',
        encoding="utf-8",
    )
    assert main(["grid", "--config", str(config), "--out", "g", "--relations", "P36"]) == 0
    cells = sorted(p.name for p in (workdir / "g" / "cells").glob("*.json"))
    assert main(["grid", "--config", str(config), "--out", "g", "--assemble-only"]) == 0
    assert sorted(p.name for p in (workdir / "g" / "cells").glob("*.json")) == cells  # nothing new was run
    import pandas as pd

    table = pd.read_csv(workdir / "g" / "results.csv")
    assert set(table.relation) == {"P36"} and len(table) == 2 * 2
    assert "2 cell(s) not run yet" in capsys.readouterr().err
    # config.json describes the assembled tables (the whole config), not the last part that ran.
    assert json.loads((workdir / "g" / "config.json").read_text(encoding="utf-8"))["relations"] == ["P36", "P103"]
