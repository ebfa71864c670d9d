import json

import pytest
import yaml

from ptfer_core.artifacts import SoftPrompt
from ptfer_core.errors import InputError
from ptfer_core.grid import GridConfig, plan, run_grid

MODELS = ["tiny:bert:32:1", "tiny:llama:48:2", "tiny:gpt2:32:3"]


def tiny_config(data_dir, **kw):
    base = dict(models=MODELS, relations=["P36", "P103"], data_dir=str(data_dir), tune={"epochs": 1},
                transfer={"steps": 30, "anchor_filter": "all"}, projector={"hidden": 8, "epochs": 1}, dev_every=10)
    return GridConfig(**{**base, **kw})


def test_plan_covers_every_pair_and_method(mini_data_dir):
    tune, evals = plan(tiny_config(mini_data_dir))
    assert len(tune) == 2 * 3
    pairs = {(t.relation, t.sources, t.target) for t in evals if t.kind == "pair"}
    assert len(pairs) == 2 * 3 * 2  # relations × ordered pairs
    multi = [t for t in evals if t.kind == "multi"]
    assert len(multi) == 2 * 3 and all(len(t.sources) == 2 for t in multi)


def test_grid_runs_resumes_and_summarises(mini_data_dir, tmp_path):
    config = tiny_config(mini_data_dir, max_train_facts=5)
    table = run_grid(config, tmp_path)
    methods = set(table["method"])
    assert {"manual", "random", "direct-tuning", "discretization", "projector", "transfer-loss", "transfer-dev",
            "multi-source", "direct-transfer"} <= methods
    assert set(table.columns) >= {"relation", "source", "target", "method", "p_at_1", "n_facts", "seconds", "seed"}
    # direct transfer across different widths is recorded as an error row, not a crash
    cross = table[(table.method == "direct-transfer") & (table.source == MODELS[0]) & (table.target == MODELS[1])]
    assert cross["p_at_1"].isna().all() and cross["error"].str.contains("width").all()
    same = table[(table.method == "direct-transfer") & (table.source == MODELS[0]) & (table.target == MODELS[2])]
    assert same["p_at_1"].notna().all()
    summary = (tmp_path / "summary.md").read_text()
    assert "| transfer-loss |" in summary and "tiny:llama:48:2" in summary
    # The training cap holds, and every transfer keeps its prompt with the search trajectory.
    tuned = SoftPrompt.load(next((tmp_path / "prompts").rglob("P36.safetensors")))
    assert tuned.provenance["n_train"] <= 5
    kept = sorted((tmp_path / "transferred").glob("*transfer-dev.safetensors"))
    assert len(kept) == 2 * 3 * 2  # relations × ordered pairs
    dev_curve = SoftPrompt.load(kept[0]).trajectory
    assert [r["step"] for r in dev_curve if "dev_p_at_1" in r][:3] == [1, 10, 20]
    # Resume: delete one cell; only it is recomputed, and the table is identical.
    cells = sorted((tmp_path / "cells").glob("*.json"))
    cells[0].unlink()
    events = []
    again = run_grid(config, tmp_path, on_step=lambda s, m: events.append(m["skipped"]))
    assert events.count(False) == 1
    cols = ["relation", "source", "target", "method", "p_at_1", "n_facts"]
    assert again[cols].equals(table[cols])


def test_grid_config_errors(tmp_path, mini_data_dir):
    with pytest.raises(InputError, match="unknown grid methods"):
        tiny_config(mini_data_dir, methods=["manual", "astrology"])
    with pytest.raises(InputError, match="max_train_facts"):
        tiny_config(mini_data_dir, max_train_facts=0)
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [a\n")
    with pytest.raises(InputError, match="not valid YAML"):
        GridConfig.from_file(bad)
    with pytest.raises(InputError, match="does not exist"):
        GridConfig.from_file(tmp_path / "missing.yaml")


def test_shipped_grid_configs_parse():
    from ptfer_core.paths import REPO_ROOT

    for path in (REPO_ROOT / "grids").glob("*.yaml"):
        assert GridConfig(**yaml.safe_load(path.read_text())).models


def test_ray_executor_matches_local(mini_data_dir, tmp_path):
    ray = pytest.importorskip("ray")
    config = tiny_config(mini_data_dir, relations=["P36"], methods=["manual", "transfer-loss", "discretization"])
    local = run_grid(config, tmp_path / "local")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = run_grid(config, tmp_path / "ray", executor="ray")
    finally:
        ray.shutdown()
    cols = ["relation", "source", "target", "method", "p_at_1", "n_facts"]
    assert remote[cols].equals(local[cols])
