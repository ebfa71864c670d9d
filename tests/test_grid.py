"""The result grid: the plan, resuming, cells keyed by their settings, damaged cells, not-applicable tasks,
the scored split, and the local vs Ray executors."""

import json
import warnings

import pytest
import yaml

from ptfer_core.errors import DataError, InputError, ModelLoadError
from ptfer_core.grid import GridConfig, cell_hash, plan, run_grid
from ptfer_core.runs import TaskData

MODELS = ["tiny:bert:32:1", "tiny:llama:48:2", "tiny:gpt2:32:3"]
TOY = {
    "tune": {"epochs": 1},
    "transfer": {"steps": 20, "anchor_source": "frequency", "anchor_filter": "all", "top_k": None, "dev_every": 10},
    "projector": {"hidden": 8, "epochs": 1},
}


def tiny_config(data_dir, **kw):
    base = dict(
        models=MODELS, relations=["P36", "P103"], data_dir=str(data_dir), overrides=TOY, recipes=["studio", "paper"]
    )
    return GridConfig(**{**base, **kw})


def test_plan_covers_every_pair_method_and_recipe(mini_data_dir):
    tune, cells = plan(tiny_config(mini_data_dir))
    assert len(tune) == 2 * 2 * 3  # relations × recipes (they tune differently) × models
    pairs = {(c.relation, c.recipe, c.sources, c.target) for c in cells if c.kind == "transfer"}
    assert len(pairs) == 2 * 2 * 3 * 2  # relations × recipes × ordered pairs
    baselines = [c for c in cells if c.kind == "baseline"]
    assert len(baselines) == 2 * 2 * 3 * 2 and not any(c.shared_with for c in baselines)
    assert {len(c.sources) for c in cells if c.kind == "dual"} == {3}
    assert all(c.sources == (c.target,) for c in cells if c.kind == "self")


def test_recipes_that_tune_alike_share_their_baselines(mini_data_dir, tmp_path):
    config = tiny_config(
        mini_data_dir,
        relations=["P36"],
        recipes=["paper", "paper-zero-shot"],
        methods=["manual", "discretization", "transfer"],
    )
    tune, cells = plan(config)
    assert {c.recipe for c in tune} == {"paper"}
    assert {c.shared_with for c in cells if c.kind in ("target", "baseline")} == {("paper-zero-shot",)}
    table = run_grid(config, tmp_path)
    for method in ("manual", "discretization"):
        a, b = (table[(table.method == method) & (table.recipe == r)] for r in ("paper", "paper-zero-shot"))
        assert len(a) == len(b) > 0 and a["p_at_1"].tolist() == b["p_at_1"].tolist()
    assert len(table[table.method == "transfer"].groupby("recipe")) == 2


def test_grid_runs_resumes_and_summarises(mini_data_dir, tmp_path):
    config = tiny_config(mini_data_dir, overrides={**TOY, "tune": {"epochs": 1, "max_train": 5}})
    table = run_grid(config, tmp_path)
    assert set(table["method"]) == {
        "manual",
        "random",
        "direct-tuning",
        "direct-transfer",
        "discretization",
        "projector",
        "transfer",
        "self-transfer",
        "dual-source",
    }
    assert set(table["recipe"]) == {"studio", "paper"}
    cross = table[(table.method == "direct-transfer") & (table.source == MODELS[0]) & (table.target == MODELS[1])]
    assert cross["p_at_1"].isna().all() and cross["error"].str.startswith("not applicable").all()
    same = table[(table.method == "direct-transfer") & (table.source == MODELS[0]) & (table.target == MODELS[2])]
    assert same["p_at_1"].notna().all()
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "relation mean" in summary and "pooled" in summary
    # three models: each target is reached from two sources, and their transfers are not averaged into one row
    assert "| transfer ← tiny:" in summary and "| transfer |" not in summary
    assert "Which of the paper's claims hold here" in summary
    selfed = table[table.method == "self-transfer"]
    assert selfed["self_cosine_min"].notna().all()
    # Resume: delete one cell; only it is recomputed, and the table is identical.
    cells = sorted((tmp_path / "cells").glob("*.json"))
    cells[0].unlink()
    events = []
    again = run_grid(config, tmp_path, on_step=lambda s, m: events.append(m["skipped"]))
    assert events.count(False) == 1
    cols = ["relation", "recipe", "source", "target", "method", "p_at_1", "n_facts"]
    assert again[cols].equals(table[cols])
    assert list(again.columns) == list(table.columns)  # resumed tables keep the column order


def test_a_changed_setting_recomputes_exactly_the_cells_it_touches(mini_data_dir, tmp_path):
    config = tiny_config(mini_data_dir, relations=["P36"], methods=["manual", "transfer"])
    run_grid(config, tmp_path)
    events = []
    changed = tiny_config(
        mini_data_dir,
        relations=["P36"],
        methods=["manual", "transfer"],
        overrides={**TOY, "transfer": {**TOY["transfer"], "steps": 7}},
    )
    run_grid(changed, tmp_path, on_step=lambda s, m: events.append((m["task"], m["skipped"])))
    recomputed = {t for t, skipped in events if not skipped}
    # Both solvers read "steps": every transfer cell is recomputed; baselines and tuning do not depend on it.
    assert recomputed == {c.key for c in plan(changed)[1] if c.kind == "transfer"}
    assert json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))["overrides"]["transfer"]["steps"] == 7


def test_a_changed_tuning_setting_retunes_and_recomputes_every_dependent_cell(mini_data_dir, tmp_path):
    config = tiny_config(mini_data_dir, relations=["P36"], recipes=["studio"], methods=["direct-tuning", "transfer"])
    run_grid(config, tmp_path)
    tuned_before = sorted((tmp_path / "prompts").rglob("tuned-*.safetensors"))
    events = []
    changed = tiny_config(
        mini_data_dir,
        relations=["P36"],
        recipes=["studio"],
        methods=["direct-tuning", "transfer"],
        overrides={**TOY, "tune": {"epochs": 2, "lr": 0.5}},
    )
    table = run_grid(changed, tmp_path, on_step=lambda s, m: events.append((m["task"], m["skipped"])))
    recomputed = {t for t, skipped in events if not skipped and not t.startswith("tune:")}
    assert recomputed == {c.key for c in plan(changed)[1]}
    tuned_after = sorted((tmp_path / "prompts").rglob("tuned-*.safetensors"))
    assert len(tuned_after) == 2 * len(tuned_before) == 2 * len(MODELS)  # new prompts beside the old ones
    assert len(table) == len(run_grid(config, tmp_path))  # and the old config still finds its own cells


def test_edited_data_recomputes_the_cells_instead_of_reusing_them(mini_data_dir, tmp_path):
    import shutil

    config = tiny_config(mini_data_dir, relations=["P36"], recipes=["studio"], methods=["manual"])
    run_grid(config, tmp_path / "out")
    copy = tmp_path / "data"
    shutil.copytree(mini_data_dir, copy)
    facts = copy / "lama_trex" / "P36.jsonl"
    rows = [json.loads(line) for line in facts.read_text(encoding="utf-8").splitlines()]
    rows[0]["sub_label"] = rows[0]["sub_label"] + " Town"
    facts.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    events = []
    run_grid(
        tiny_config(copy, relations=["P36"], recipes=["studio"], methods=["manual"]),
        tmp_path / "out",
        on_step=lambda s, m: events.append((m["task"], m["skipped"])),
    )
    assert events and not any(skipped for task, skipped in events if task.startswith("target:"))


def test_data_edited_in_place_while_the_process_runs_recomputes_the_cells(mini_data_dir, tmp_path):
    """The per-process memos (facts, data hash) are keyed on the files' size and mtime, not only on their path."""
    import os
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(mini_data_dir, copy)
    config = tiny_config(copy, relations=["P36"], recipes=["studio"], methods=["manual"])
    run_grid(config, tmp_path / "out")
    facts = copy / "lama_trex" / "P36.jsonl"
    rows = [json.loads(line) for line in facts.read_text(encoding="utf-8").splitlines()]
    rows[0]["sub_label"] = rows[0]["sub_label"] + " Town"
    facts.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    os.utime(facts, ns=(facts.stat().st_atime_ns, facts.stat().st_mtime_ns + 1_000_000_000))  # coarse clocks
    events = []
    run_grid(config, tmp_path / "out", on_step=lambda s, m: events.append((m["task"], m["skipped"])))
    assert events and not any(skipped for task, skipped in events if task.startswith("target:"))


def test_damaged_or_edited_cells_are_recomputed_with_a_warning(mini_data_dir, tmp_path):
    config = tiny_config(mini_data_dir, relations=["P36"], recipes=["studio"], methods=["manual", "random"])
    table = run_grid(config, tmp_path)
    cells = sorted((tmp_path / "cells").glob("*.json"))
    edited = json.loads(cells[0].read_text(encoding="utf-8"))
    edited["rows"][0]["p_at_1"] = 100.0
    cells[0].write_text(json.dumps(edited), encoding="utf-8")
    cells[1].write_text('{"task": "x", "rows": []}', encoding="utf-8")
    cells[2].write_text(cells[2].read_text(encoding="utf-8")[:40], encoding="utf-8")  # truncated
    (tmp_path / "cells" / ".orphan.json.abc.tmp").write_text("{", encoding="utf-8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = run_grid(config, tmp_path)
    named = " ".join(str(w.message) for w in caught)
    assert all(c.name in named for c in cells[:3])
    cols = ["relation", "source", "target", "method", "p_at_1", "n_facts"]
    assert again[cols].equals(table[cols])
    assert not list((tmp_path / "cells").glob(".*.tmp"))


def test_a_relation_a_model_cannot_run_is_recorded_and_the_grid_goes_on(mini_data_dir, tmp_path):
    root = tmp_path / "data"
    import shutil

    shutil.copytree(mini_data_dir, root)
    # Every P17 answer outside the toy vocabulary: no model can tune on it.
    rows = [json.loads(line) for line in (root / "lama_trex" / "P17.jsonl").read_text(encoding="utf-8").splitlines()]
    (root / "lama_trex" / "P17.jsonl").write_text(
        "\n".join(json.dumps({**r, "obj_label": "Unobtainium"}) for r in rows), encoding="utf-8"
    )
    config = tiny_config(
        root, relations=["P17", "P36"], recipes=["studio"], methods=["manual", "direct-tuning", "transfer"]
    )
    table = run_grid(config, tmp_path / "out")
    p17 = table[table.relation == "P17"]
    assert p17["error"].str.startswith("not applicable").all() and set(p17.method) == {
        "manual",
        "direct-tuning",
        "transfer",
    }
    assert table[table.relation == "P36"]["p_at_1"].notna().all()
    assert "Cells that did not run" in (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")


def test_the_grid_scores_the_test_split(mini_data_dir, tmp_path):
    from ptfer_core.data import load_split
    from ptfer_core.evaluation import candidates_for
    from ptfer_core.loading import load_model

    table = run_grid(tiny_config(mini_data_dir, relations=["P103"], recipes=["studio"], methods=["manual"]), tmp_path)
    for model in MODELS:
        cands = candidates_for(load_model(model), None, mini_data_dir)
        n_test = sum(f.object in cands.index for f in load_split("P103", "test", mini_data_dir))
        assert table[(table.target == model)]["n_facts"].tolist() == [n_test]


def test_max_test_scores_a_seeded_sample_and_leaves_the_rest_alone(mini_data_dir, tmp_path):
    full = TaskData.load("P103", mini_data_dir, max_dev=3)
    capped = TaskData.load("P103", mini_data_dir, max_dev=3, max_test=4)
    test_ids = [f.uuid for f in full.splits["test"]]
    assert len(test_ids) > 4
    sample = [f.uuid for f in capped.splits["test"]]
    assert len(sample) == 4 and set(sample) < set(test_ids)
    assert sample == [u for u in test_ids if u in set(sample)]  # kept in file order
    assert sample == [f.uuid for f in TaskData.load("P103", mini_data_dir, max_test=4).splits["test"]]
    assert capped.splits["dev"] == full.splits["dev"] and capped.fingerprint == full.fingerprint  # prompts reused
    assert [f.uuid for f in TaskData.load("P103", mini_data_dir, split_seed=1, max_test=4).splits["test"]] != sample

    table = run_grid(
        tiny_config(mini_data_dir, relations=["P103"], recipes=["studio"], methods=["manual"], max_test=4), tmp_path
    )
    assert (table["n_facts"] <= 4).all() and (table["n_facts"] > 0).all()
    cell = plan(tiny_config(mini_data_dir, relations=["P103"], recipes=["studio"], methods=["manual"]))[1][0]
    hashes = {cap: cell_hash(tiny_config(mini_data_dir, max_test=cap), cell) for cap in (None, 4, 10_000)}
    assert hashes[None] != hashes[4] and hashes[None] == hashes[10_000]  # a cap above the split size is no cap
    for bad in (0, -1, "5", True):
        with pytest.raises(InputError, match="max_test must be a positive integer"):
            tiny_config(mini_data_dir, max_test=bad)


def test_grid_config_errors(tmp_path, mini_data_dir):
    with pytest.raises(InputError, match="unknown grid methods"):
        tiny_config(mini_data_dir, methods=["manual", "astrology"])
    with pytest.raises(InputError, match="recipe"):
        tiny_config(mini_data_dir, recipes=["astrology"])
    with pytest.raises(InputError, match="list of model names"):
        tiny_config(mini_data_dir, models="tiny:llama")
    with pytest.raises(InputError, match="unknown model 'no-such-model'"):
        tiny_config(mini_data_dir, models=["no-such-model"])
    with pytest.raises(ModelLoadError, match="toy model"):
        tiny_config(mini_data_dir, models=["tiny:parrot"])
    with pytest.raises(InputError, match="hidden"):  # the whole config is checked before anything runs
        tiny_config(mini_data_dir, overrides={"projector": {"hidden": -1}})
    with pytest.raises(DataError, match="P999"):
        tiny_config(mini_data_dir, relations=["P999"]).task_ids()
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [a\n", encoding="utf-8")
    with pytest.raises(InputError, match="not valid YAML"):
        GridConfig.from_file(bad)
    with pytest.raises(InputError, match="does not exist"):
        GridConfig.from_file(tmp_path / "missing.yaml")
    bad.write_text("models: [tiny:bert]\nmethod: [manual]\n", encoding="utf-8")
    with pytest.raises(InputError, match="unknown key"):
        GridConfig.from_file(bad)


def test_shipped_grid_configs_parse():
    from ptfer_core.paths import REPO_ROOT

    paths = sorted((REPO_ROOT / "grids").glob("*.yaml"))
    assert {p.name for p in paths} >= {"tiny.yaml", "real-causal.yaml"}
    for path in paths:
        assert GridConfig(**yaml.safe_load(path.read_text(encoding="utf-8"))).models


def test_ray_executor_matches_local(mini_data_dir, tmp_path):
    ray = pytest.importorskip("ray")
    config = tiny_config(
        mini_data_dir, relations=["P36"], recipes=["studio"], methods=["manual", "transfer", "discretization"]
    )
    local = run_grid(config, tmp_path / "local")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = run_grid(config, tmp_path / "ray", executor="ray")
    finally:
        ray.shutdown()
    cols = ["relation", "source", "target", "method", "p_at_1", "n_facts"]
    assert remote[cols].equals(local[cols])


def test_the_real_grid_and_the_app_share_one_cpu_budget():
    """The app finds the grid's shipped prompts only if both tune under the same caps."""
    from pathlib import Path

    from ptfer_core.settings import BUDGET_MAX_DEV, BUDGET_OVERRIDES

    config = yaml.safe_load((Path(__file__).parents[1] / "grids" / "real-causal.yaml").read_text(encoding="utf-8"))
    assert config["overrides"] == BUDGET_OVERRIDES and config["max_dev"] == BUDGET_MAX_DEV


def test_claims_compare_methods_over_the_relations_both_have():
    from ptfer_core.grid_tables import claims_markdown, summary_markdown, tidy

    def row(relation, method, p, recipe="studio"):
        return {"relation": relation, "recipe": recipe, "method": method, "target": "B", "source": "A",
                "p_at_1": p, "n_facts": 10, "n_correct": int(p / 10)}  # fmt: skip

    rows = [row("P1", "transfer", 50.0), row("P2", "transfer", 10.0), row("P1", "manual", 40.0)]
    rows += [row("P1", "random", 0.0), row("P2", "random", 0.0), row("P1", "projector", 50.04)]
    rows += [row("P1", "dual-source", 50.02)]
    other = [dict(row("P1", m, p), target="C", source=s) for m, p, s in
             (("transfer", 10.0, "A"), ("dual-source", 30.0, "A+C"), ("manual", 5.0, None))]  # fmt: skip
    rows += [row("P1", "transfer", 30.0, "paper"), row("P1", "transfer", 20.0, "paper-zero-shot")]
    rows += [row("P2", "transfer", 90.0, "paper")]  # no zero-shot partner: left out of the selection claim
    text = "\n".join(claims_markdown(tidy(rows + other)))
    summary = summary_markdown(tidy(rows))
    assert summary.startswith("# Results: P@1 on the test split") and "on the dev split" in summary_markdown(
        tidy(rows), "dev"
    )
    assert "## Recipe `paper`: relation mean\n" in summary  # both relations
    assert "Cells average different numbers of relations" in summary  # studio: transfer on 2, manual on 1
    assert "manual → B: 1" in summary and "transfer → B: 2" in summary
    assert "## Recipe `paper-zero-shot`: relation mean (1 of 2 tasks)" in summary
    # P2 has no manual score: transferred is 50 (P1 only), not the 30 of both relations.
    assert "> manual 40.0 (transferred 50.0, n=1)" in text
    # Ties at the printed precision read as ties, never as a win: 30.0 vs 0.0 wins, 50.0 vs 50.04 ties.
    assert "> random 0.0 (transferred 30.0, n=2)" in text
    assert "= projector 50.0 (transferred 50.0, n=1)" in text
    assert "dual-source 50.0 vs single-source 50.0 (n=1): does not hold" in text
    # A dual cell that has the target among its sources is no test of the paper's dual-source claim.
    assert "dual-source 30.0 vs single-source 10.0 (n=1): not the paper's claim here" in text
    assert "holds (dual > single)" not in text
    assert "zero-shot (loss) 20.0 vs target-dev 30.0 (n=1; not within 2 points)" in text


def test_the_relation_type_table_says_how_many_relations_each_type_averages():
    from ptfer_core.grid_tables import summary_markdown, tidy

    rows = [
        {"relation": r, "relation_type": t, "recipe": "studio", "method": "manual", "target": "B", "source": None,
         "p_at_1": p, "n_facts": 10, "n_correct": int(p / 10)}
        for r, t, p in (("P1", "1-1", 50.0), ("P2", "N-1", 10.0), ("P3", "N-1", 30.0))
    ]  # fmt: skip
    text = summary_markdown(tidy(rows))
    assert "| method | 1-1 (1 relation) | N-1 (2 relations) |" in text and "| manual | 50.0 | 20.0 |" in text


def test_a_method_from_several_sources_to_one_target_is_never_averaged_into_one_number():
    """tiny-grid.csv showed transfer → tiny:llama 20.0: the mean of bert → llama 33.3 and gpt2 → llama 6.7."""
    import pandas as pd

    from ptfer_core.grid_tables import averages, paper_layout, split_by_source

    table = pd.DataFrame(
        {"relation": ["P1", "P1", "P1", "P1"], "recipe": ["studio"] * 4,
         "method": ["transfer", "transfer", "manual", "transfer"], "source": ["bert", "gpt2", "", "bert"],
         "target": ["llama", "llama", "llama", "gpt2"], "p_at_1": [33.3, 6.7, 10.0, 50.0],
         "n_correct": [1, 0, 1, 5], "n_facts": [3, 3, 10, 10]}
    )  # fmt: skip
    split = split_by_source(table)
    assert list(split["method"]) == ["transfer ← bert", "transfer ← gpt2", "manual", "transfer"]
    layout = paper_layout(averages(split, ["method", "target"]))
    assert list(layout.index) == ["manual", "transfer", "transfer ← bert", "transfer ← gpt2"]
    assert layout.loc["transfer ← bert", "llama"] == 33.3 and layout.loc["transfer", "gpt2"] == 50.0
    assert list(split_by_source(table.iloc[2:])["method"]) == ["manual", "transfer"]
    # a classification task's transfer from another source is another table: the relation's row keeps its name
    mixed = table.iloc[2:].assign(relation_type=["N-1", "N-1"])
    task = mixed.iloc[[1]].assign(relation="sst2", relation_type="classification", source="llama")
    assert list(split_by_source(pd.concat([mixed, task]))["method"]) == ["manual", "transfer", "transfer"]


def test_a_summary_says_when_its_rows_were_scored_in_two_precisions():
    import pandas as pd

    from ptfer_core.grid_tables import precision_note, summary_markdown

    rows = pd.DataFrame(
        {"relation": ["P17", "P36", "P19"], "recipe": ["paper"] * 3, "method": ["manual"] * 3, "source": [""] * 3,
         "target": ["m"] * 3, "p_at_1": [10.0, 20.0, 30.0], "n_correct": [1, 2, 3], "n_facts": [10] * 3,
         "relation_type": ["1-1"] * 3, "error": [None] * 3, "precision": ["float32", "float32", "bfloat16"]}
    )  # fmt: skip
    note = "Scored in more than one precision: bfloat16 (P19); float32 (P17, P36). Compare within one precision."
    assert precision_note(rows) == note and note in summary_markdown(rows)
    assert precision_note(rows.assign(precision="float32")) is None


def test_a_grid_of_classification_tasks_is_summarised_as_accuracy():
    import pandas as pd

    from ptfer_core.grid_tables import summary_markdown

    rows = pd.DataFrame(
        {"relation": ["sst2"], "recipe": ["paper"], "method": ["manual"], "source": [""], "target": ["m"],
         "p_at_1": [55.7], "n_correct": [486], "n_facts": [872], "relation_type": ["classification"], "error": [None]}
    )  # fmt: skip
    text = summary_markdown(rows)
    assert text.startswith("# Results: accuracy on the test split over 1 classification task(s)")
    assert "P@1" not in text.split("\n")[0] and "**task mean**" in text
    assert summary_markdown(rows.assign(relation="P36", relation_type="N-1")).startswith("# Results: P@1")
