"""The `ptfer` command line: its subcommands on a mini LAMA and a tiny local model, and one-line errors (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ptfer_core.artifacts import SoftPrompt
from ptfer_core.cli import build_parser, main
from ptfer_core.data import load_facts, load_relations, split_facts
from ptfer_core.evaluation import Prompt, candidates_for, evaluate_relations
from ptfer_core.loading import load_model
from ptfer_core.mini_lama import write_mini_lama

REPO = Path(__file__).resolve().parents[1]


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, match: str) -> None:
    assert code == 2
    lines = [
        line for line in err.splitlines() if line.strip() and not line.startswith("[")
    ]  # progress lines start with [
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and match in lines[0], lines[0]
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, gpt2_lm):
    path = tmp_path_factory.mktemp("models") / "tiny-gpt2"
    gpt2_lm.model.save_pretrained(path)
    gpt2_lm.tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_loaded(tiny_model_dir):
    return load_model(str(tiny_model_dir))


# ----------------------------------------------------------------------------- models, data


def test_models_list_shows_what_is_fetched(capsys, tmp_path):
    code, out, _ = run(capsys, "models", "list", "--model-dir", tmp_path)
    assert code == 0
    assert "not fetched (ptfer models fetch smollm2-135m)" in out and "bert-base-cased" in out
    (tmp_path / "smollm2-135m").mkdir()
    (tmp_path / "smollm2-135m" / "config.json").write_text("{}", encoding="utf-8")
    _, out, _ = run(capsys, "models", "list", "--model-dir", tmp_path)
    smol = next(line for line in out.splitlines() if line.startswith("smollm2-135m"))
    gemma = next(line for line in out.splitlines() if line.startswith("gemma3-270m"))
    assert "fetched" in smol and "not fetched" not in smol and "not fetched" in gemma


def test_models_fetch_unknown_name(capsys, tmp_path):
    code, _, err = run(capsys, "models", "fetch", "bert-base-cased", "--model-dir", tmp_path)
    assert_one_line_error(code, err, "no fetch recipe for 'bert-base-cased'")
    assert not list(tmp_path.iterdir())


def test_data_info(capsys, mini_data_dir):
    code, out, _ = run(capsys, "data", "info", "--data-dir", mini_data_dir)
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("P", "total"))}
    assert list(rows) == ["P17", "P36", "P103", "total"]
    for rid in ("P17", "P36", "P103"):
        parts = split_facts(load_facts(rid, mini_data_dir))
        counts = [str(sum(len(v) for v in parts.values()))] + [str(len(parts[k])) for k in ("train", "dev", "test")]
        assert [c for c in rows[rid] if c.isdigit()][:4] == counts
    assert rows["total"][1:5] == [
        "129",
        *[
            str(sum(len(split_facts(load_facts(r, mini_data_dir))[k]) for r in ("P17", "P36", "P103")))
            for k in ("train", "dev", "test")
        ],
    ]
    assert "3 relations, 129 facts" in out


def test_data_dir_from_environment(capsys, mini_data_dir, monkeypatch):
    monkeypatch.setenv("PTFER_DATA_DIR", str(mini_data_dir))
    code, out, _ = run(capsys, "data", "info")
    assert code == 0 and f"data directory: {mini_data_dir}" in out


def test_missing_data_dir(capsys, tmp_path):
    code, _, err = run(capsys, "data", "info", "--data-dir", tmp_path / "nowhere")
    assert_one_line_error(code, err, "LAMA data not found")
    assert "--data-dir" in err


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_manual_all_relations_prints_and_writes_json(
    capsys, tmp_path, mini_data_dir, tiny_model_dir, tiny_loaded
):
    out_file = tmp_path / "sub" / "results.json"
    code, out, err = run(
        capsys,
        "evaluate",
        "--model",
        tiny_model_dir,
        "--relation",
        "all",
        "--split",
        "all",
        "--data-dir",
        mini_data_dir,
        "--batch-size",
        4,
        "--out",
        out_file,
    )
    assert code == 0, err
    relations = load_relations(mini_data_dir)
    facts = {rid: load_facts(rid, mini_data_dir) for rid in relations}
    cands = candidates_for(tiny_loaded, None, mini_data_dir)
    expected = evaluate_relations(tiny_loaded, {rid: Prompt.manual(r) for rid, r in relations.items()}, facts, cands)
    result = json.loads(out_file.read_text(encoding="utf-8"))
    assert result["p_at_1_pooled"] == pytest.approx(expected.pooled)
    assert result["p_at_1_relation_mean"] == pytest.approx(expected.relation_mean)
    assert result["n_facts"] == expected.n_facts == 129 - 1  # Atlantis -> Unobtainium is not a candidate
    assert {rid: r["n_correct"] for rid, r in result["relations"].items()} == {
        rid: r.n_correct for rid, r in expected.per_relation.items()
    }
    assert (result["split"], result["precision"], result["prompt"], result["kind"]) == (
        "all",
        "float32",
        "manual",
        "causal",
    )
    table = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("P")}
    assert list(table) == ["P17", "P36", "P103"]
    assert table["P17"][-1] == f"{expected.per_relation['P17'].p_at_1:.2f}" and table["P17"][-2] == "1"  # 1 skipped
    assert f"pooled over facts: P@1 {expected.pooled:.2f}" in out
    assert "[3/3] P103" in err  # progress goes to stderr


def test_evaluate_template_text_on_one_split(capsys, tmp_path, mini_data_dir, tiny_model_dir, tiny_loaded):
    out_file = tmp_path / "r.json"
    threads = torch.get_num_threads()
    try:
        code, _, err = run(
            capsys,
            "evaluate",
            "--model",
            tiny_model_dir,
            "--relation",
            "P17,P103",
            "--split",
            "train",
            "--prompt",
            "The capital of [X] is [Y] .",
            "--data-dir",
            mini_data_dir,
            "--out",
            out_file,
            "--quiet",
            "--threads",
            1,
        )
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert code == 0 and err.strip().endswith(f"wrote {out_file}")
    result = json.loads(out_file.read_text(encoding="utf-8"))
    cands = candidates_for(tiny_loaded, None, mini_data_dir)
    train = {rid: split_facts(load_facts(rid, mini_data_dir))["train"] for rid in ("P17", "P103")}
    prompt = Prompt.from_text("The capital of [X] is [Y] .")
    expected = evaluate_relations(tiny_loaded, {rid: prompt for rid in train}, train, cands)
    assert list(result["relations"]) == ["P103", "P17"]  # JSON keys are sorted
    assert result["p_at_1_pooled"] == pytest.approx(expected.pooled)
    assert result["p_at_1_relation_mean"] == pytest.approx(expected.relation_mean)
    assert result["n_facts"] == sum(len([f for f in fs if f.object in cands.words]) for fs in train.values())


def test_evaluate_soft_prompt_file_uses_its_relation(capsys, tmp_path, mini_data_dir, tiny_model_dir, tiny_loaded):
    vectors = torch.randn(2, tiny_loaded.width, generator=torch.Generator().manual_seed(1))
    SoftPrompt(vectors, str(tiny_model_dir), "P36", "direct-tuning", "[X] [V] [V] [Y] .").save(tmp_path / "p36")
    code, out, _ = run(
        capsys,
        "evaluate",
        "--model",
        tiny_model_dir,
        "--prompt",
        tmp_path / "p36.safetensors",
        "--split",
        "all",
        "--data-dir",
        mini_data_dir,
        "--out",
        "-",
    )
    assert code == 0
    assert [line.split()[0] for line in out.splitlines() if line.startswith("P")] == ["P36"]
    cands = candidates_for(tiny_loaded, None, mini_data_dir)
    expected = evaluate_relations(
        tiny_loaded,
        {"P36": SoftPrompt.load(tmp_path / "p36").as_prompt()},
        {"P36": load_facts("P36", mini_data_dir)},
        cands,
    )
    assert f"pooled over facts: P@1 {expected.pooled:.2f}" in out
    assert not (Path.cwd() / "-").exists()


# ----------------------------------------------------------------------------- every bad input: one line, exit 2


def test_unknown_model_name(capsys, mini_data_dir, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no hub round trip: this machine is offline
    code, _, err = run(
        capsys,
        "evaluate",
        "--model",
        "no-such-model-xyz",
        "--relation",
        "P36",
        "--data-dir",
        mini_data_dir,
        "--out",
        tmp_path / "r.json",
    )
    assert_one_line_error(code, err, "cannot load model 'no-such-model-xyz'")
    assert not (tmp_path / "r.json").exists()


def test_unknown_model_path(capsys, mini_data_dir, tmp_path):
    code, _, err = run(
        capsys, "evaluate", "--model", tmp_path / "no" / "model", "--data-dir", mini_data_dir, "--out", "-"
    )
    assert_one_line_error(code, err, "cannot load model")


def test_unfetched_registry_model(capsys, mini_data_dir, tmp_path):
    code, _, err = run(
        capsys, "evaluate", "--model", "gemma3-270m", "--model-dir", tmp_path, "--data-dir", mini_data_dir, "--out", "-"
    )
    assert_one_line_error(code, err, "ptfer models fetch gemma3-270m")


def test_model_without_lm_head(capsys, mini_data_dir, tmp_path, gpt2_lm):
    import transformers as tf

    tf.GPT2Model(gpt2_lm.model.config).save_pretrained(tmp_path / "bare")
    gpt2_lm.tokenizer.save_pretrained(tmp_path / "bare")
    code, _, err = run(capsys, "evaluate", "--model", tmp_path / "bare", "--data-dir", mini_data_dir, "--out", "-")
    assert_one_line_error(code, err, "no language-modelling head")


@pytest.mark.parametrize(
    "relation,match",
    [
        ("P999", "unknown relation or task 'P999'"),
        ("P17,P998", "unknown relation or task 'P998'"),
        (",", "--relation is empty"),
    ],
)
def test_relation_not_in_the_data(capsys, mini_data_dir, relation, match):
    code, _, err = run(
        capsys, "evaluate", "--model", "never-loaded", "--relation", relation, "--data-dir", mini_data_dir
    )
    assert_one_line_error(code, err, match)


def test_evaluate_with_missing_data_dir(capsys, tmp_path):
    code, _, err = run(capsys, "evaluate", "--model", "never-loaded", "--data-dir", tmp_path / "nowhere")
    assert_one_line_error(code, err, "LAMA data not found")


@pytest.mark.parametrize("content", [b"", b"garbage" * 20, os.urandom(64)])
def test_corrupt_prompt_file(capsys, tmp_path, mini_data_dir, content):
    (tmp_path / "bad.safetensors").write_bytes(content)
    code, _, err = run(
        capsys,
        "evaluate",
        "--model",
        "never-loaded",
        "--prompt",
        tmp_path / "bad.safetensors",
        "--data-dir",
        mini_data_dir,
    )
    assert_one_line_error(code, err, "not a valid safetensors file")


def test_missing_prompt_file(capsys, tmp_path, mini_data_dir):
    code, _, err = run(
        capsys,
        "evaluate",
        "--model",
        "never-loaded",
        "--prompt",
        tmp_path / "absent.safetensors",
        "--data-dir",
        mini_data_dir,
    )
    assert_one_line_error(code, err, "does not exist")


def test_prompt_file_with_nan(capsys, tmp_path, mini_data_dir):
    from safetensors.torch import save

    good = SoftPrompt(torch.zeros(2, 32), "m", "P36", "direct-tuning", "[X] [V] [V] [Y] .")
    meta = json.loads(good.to_bytes()[1])
    bad = torch.zeros(2, 32)
    bad[0, 0] = float("nan")
    (tmp_path / "nan.safetensors").write_bytes(save({"vectors": bad}, metadata={"ptfer": json.dumps(meta)}))
    code, _, err = run(
        capsys,
        "evaluate",
        "--model",
        "never-loaded",
        "--prompt",
        tmp_path / "nan.safetensors",
        "--data-dir",
        mini_data_dir,
    )
    assert_one_line_error(code, err, "NaN or infinite")


def test_prompt_file_of_wrong_width(capsys, tmp_path, mini_data_dir, tiny_model_dir, tiny_loaded):
    SoftPrompt(torch.ones(2, tiny_loaded.width * 2), "other", "P36", "direct-tuning", "[X] [V] [V] [Y] .").save(
        tmp_path / "w"
    )
    code, _, err = run(
        capsys,
        "evaluate",
        "--model",
        tiny_model_dir,
        "--prompt",
        tmp_path / "w",
        "--data-dir",
        mini_data_dir,
        "--out",
        tmp_path / "r.json",
    )
    assert_one_line_error(code, err, f"soft prompt width {2 * tiny_loaded.width} does not match")
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize(
    "template,match",
    [("[X] is located in .", "[Y]"), ("located in [Y] .", "[X]"), ("[Y] is where [X] is", "[Y] must come after [X]")],
)
def test_template_without_slots(capsys, mini_data_dir, template, match):
    code, _, err = run(capsys, "evaluate", "--model", "never-loaded", "--prompt", template, "--data-dir", mini_data_dir)
    assert_one_line_error(code, err, match)


def test_template_with_soft_slots_but_no_vectors(capsys, mini_data_dir, tiny_model_dir):
    code, _, err = run(
        capsys,
        "evaluate",
        "--model",
        tiny_model_dir,
        "--prompt",
        "[X] [V] [Y] .",
        "--relation",
        "P36",
        "--data-dir",
        mini_data_dir,
        "--out",
        "-",
        "--quiet",
    )
    assert_one_line_error(code, err, "no soft prompt vectors")


def test_empty_subject_in_the_data(capsys, tmp_path, tiny_model_dir):
    data = write_mini_lama(tmp_path / "lama")
    path = data / "lama_trex" / "P36.jsonl"
    path.write_text(
        path.read_text(encoding="utf-8") + json.dumps({"sub_label": " ", "obj_label": "Paris", "uuid": "blank"}) + "\n",
        encoding="utf-8",
    )
    code, _, err = run(
        capsys,
        "evaluate",
        "--model",
        tiny_model_dir,
        "--relation",
        "P36",
        "--split",
        "all",
        "--data-dir",
        data,
        "--out",
        "-",
        "--quiet",
    )
    assert_one_line_error(code, err, "empty subject")


def test_bad_usage_exits_2(capsys):
    for argv in (
        ["evaluate", "--model", "m", "--precision", "float16"],
        ["evaluate", "--model", "m", "--split", "val"],
        ["evaluate", "--model", "m", "--batch-size", "0"],
        ["evaluate"],
        [],
    ):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        assert "usage: ptfer" in capsys.readouterr().err


def test_parser_is_extensible():
    """New subcommands are added as separate functions, like the existing ones."""
    from ptfer_core import cli

    def add_demo_command(subparsers):
        demo = subparsers.add_parser("demo", parents=[cli.common_options()])
        demo.set_defaults(func=lambda args: 7)

    cli.COMMANDS.append(add_demo_command)
    try:
        assert main(["demo"]) == 7
    finally:
        cli.COMMANDS.remove(add_demo_command)
    assert "demo" not in build_parser().format_help()


def test_console_script_error_is_one_line_with_exit_2(tmp_path):
    script = Path(sys.executable).with_name("ptfer")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "ptfer_core.cli"]
    proc = subprocess.run(
        [*cmd, "data", "info", "--data-dir", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: LAMA data not found")
    assert proc.stdout == ""
