"""PEFT prompt-tuning adapters in and out: round trips through huggingface/peft itself, and every bad adapter."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch

peft = pytest.importorskip("peft")

from ptfer_core.artifacts import SoftPrompt
from ptfer_core.cli import main
from ptfer_core.errors import PromptFileError
from ptfer_core.evaluation import Prompt, evaluate
from ptfer_core.mini_lama import MINI_WORDS
from ptfer_core.peft_io import peft_template, read_peft_adapter, write_peft_adapter
from ptfer_core.templates import PromptTemplate
from ptfer_core.toy_models import tiny_lm

SUBJECTS = ["France", "Town3 Town4", "Person1 Person2 Person3"]


def peft_prompt(lm, n=4, seed=0) -> SoftPrompt:
    vectors = torch.randn(n, lm.width, generator=torch.Generator().manual_seed(seed)) * 0.5
    return SoftPrompt(vectors, lm.name, "P36", "tuned", peft_template(n))


def peft_logits(lm, adapter_dir, subjects) -> torch.Tensor:
    """Full-vocabulary logits at the answer slot through PeftModel.from_pretrained, one sentence at a time."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(lm.model, str(adapter_dir)).eval()
    rows = []
    for subject in subjects:
        text = subject if lm.kind.value == "causal" else f"{subject} {lm.tokenizer.mask_token} ."
        ids = lm.tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            logits = model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).logits[0]
        n = model.peft_config["default"].num_virtual_tokens
        if lm.kind.value == "causal":
            rows.append(logits[-1])
        else:
            rows.append(logits[n + int((ids["input_ids"][0] == lm.tokenizer.mask_token_id).nonzero()[0, 0])])
    model.unload() if hasattr(model, "unload") else None
    return torch.stack(rows)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "bert"])
def test_export_then_peft_gives_ptfers_logits(arch, tmp_path):
    lm = tiny_lm(arch, MINI_WORDS, seed=3)
    prompt = peft_prompt(lm)
    out = write_peft_adapter(prompt, tmp_path / "adapter", kind=lm.kind, base_model="toy")
    config = json.loads((out / "adapter_config.json").read_text(encoding="utf-8"))
    assert config["peft_type"] == "PROMPT_TUNING" and config["num_virtual_tokens"] == 4
    assert config["token_dim"] == lm.width and config["task_type"] == (
        "CAUSAL_LM" if arch != "bert" else "FEATURE_EXTRACTION"
    )
    ours = lm.answer_logits(lm.encode(prompt.prompt_template, SUBJECTS), prompt.vectors)
    theirs = peft_logits(lm, out, SUBJECTS)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    assert (ours - theirs).abs().max() < 1e-4
    assert all(not p.requires_grad for p in lm.model.parameters())  # loading the adapter did not unfreeze ours


def test_bfloat16_forward_stays_close_to_peft(tmp_path):
    lm = tiny_lm("llama", MINI_WORDS, seed=3)
    prompt = peft_prompt(lm)
    out = write_peft_adapter(prompt, tmp_path / "adapter", kind=lm.kind, base_model="toy")
    theirs = peft_logits(lm, out, SUBJECTS)
    fast = lm.answer_logits(
        lm.encode(prompt.prompt_template, SUBJECTS), prompt.vectors, model=lm.compute_model("bfloat16")
    )
    assert (fast - theirs).abs().max() <= 0.03 * (theirs.max() - theirs.min())


@pytest.mark.parametrize("arch", ["llama", "bert"])
def test_an_adapter_made_by_peft_imports_and_evaluates_identically(arch, tmp_path, mini_data_dir):
    from peft import PromptTuningConfig, get_peft_model

    lm = tiny_lm(arch, MINI_WORDS, seed=4)
    task_type = "CAUSAL_LM" if arch == "llama" else "FEATURE_EXTRACTION"
    model = get_peft_model(
        lm.model,
        PromptTuningConfig(task_type=task_type, num_virtual_tokens=3, token_dim=lm.width, num_transformer_submodules=1),
    )
    with torch.no_grad():
        model.prompt_encoder["default"].embedding.weight.normal_(generator=torch.Generator().manual_seed(1))
    model.save_pretrained(str(tmp_path / "made-by-peft"))
    expected = model.prompt_encoder["default"].embedding.weight.detach().clone()
    imported = read_peft_adapter(tmp_path / "made-by-peft", relation="P36")
    assert torch.equal(imported.vectors, expected) and imported.template == peft_template(3)
    ours = lm.answer_logits(lm.encode(imported.prompt_template, SUBJECTS), imported.vectors)
    torch.testing.assert_close(ours, peft_logits(lm, tmp_path / "made-by-peft", SUBJECTS), rtol=1e-4, atol=1e-4)
    # and through the CLI: evaluate accepts the adapter folder as a prompt
    from ptfer_core.data import load_split
    from ptfer_core.evaluation import candidates_for

    cands = candidates_for(lm, None, mini_data_dir)
    result = evaluate(
        lm, Prompt(imported.prompt_template, imported.vectors), load_split("P36", "all", mini_data_dir), cands
    )
    assert result.n_facts == 8


def test_export_command_and_zip_import(tmp_path, mini_data_dir, capsys):
    lm = tiny_lm("gpt2", MINI_WORDS)
    prompt = peft_prompt(lm)
    prompt.model = "tiny:gpt2"
    prompt.save(tmp_path / "p")
    assert main(["export", "--format", "peft", str(tmp_path / "p.safetensors"), str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "README.md").read_text(encoding="utf-8").count("tiny:gpt2") >= 1
    assert json.loads((tmp_path / "out" / "ptfer_prompt.json").read_text(encoding="utf-8"))["relation"] == "P36"
    archive = tmp_path / "adapter.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in (tmp_path / "out").iterdir():
            z.write(f, f"adapter/{f.name}")
    back = read_peft_adapter(archive)
    assert torch.equal(back.vectors, prompt.vectors) and back.relation == "P36" and back.model == "tiny:gpt2"
    assert (
        main(
            [
                "evaluate",
                "--model",
                "tiny:gpt2",
                "--prompt",
                str(archive),
                "--data-dir",
                str(mini_data_dir),
                "--out",
                "-",
                "--quiet",
            ]
        )
        == 0
    )
    assert "P36" in capsys.readouterr().out


def test_export_replaces_an_adapter_but_never_a_folder_of_other_files(tmp_path, monkeypatch):
    """An export over an existing folder removed it whole: a user's notes, or every file of the working folder when
    the output was "."."""
    import os
    import stat

    lm = tiny_lm("gpt2", MINI_WORDS)
    out = tmp_path / "adapter"
    write_peft_adapter(peft_prompt(lm, seed=0), out, kind=lm.kind, base_model="toy")
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~_umask(), "the umask's mode, not mkdtemp's 0700"
    write_peft_adapter(peft_prompt(lm, seed=1), out, kind=lm.kind, base_model="toy")  # an adapter is replaced
    assert torch.equal(read_peft_adapter(out).vectors, peft_prompt(lm, seed=1).vectors)
    (out / "notes.txt").write_text("keep", encoding="utf-8")
    with pytest.raises(PromptFileError, match=r"notes\.txt"):
        write_peft_adapter(peft_prompt(lm, seed=2), out, kind=lm.kind, base_model="toy")
    assert (out / "notes.txt").read_text(encoding="utf-8") == "keep"
    assert torch.equal(read_peft_adapter(out).vectors, peft_prompt(lm, seed=1).vectors), "left as it was"
    work = tmp_path / "work"
    work.mkdir()
    (work / "data.csv").write_text("1,2", encoding="utf-8")
    monkeypatch.chdir(work)
    with pytest.raises(PromptFileError, match="is the working folder"):
        write_peft_adapter(peft_prompt(lm), ".", kind=lm.kind, base_model="toy")
    assert sorted(os.listdir(work)) == ["data.csv"], "nothing removed, no staging folder left"
    (work / "data.csv").unlink()
    with pytest.raises(PromptFileError, match="is the working folder"):  # empty, it was removed from under the shell
        write_peft_adapter(peft_prompt(lm), ".", kind=lm.kind, base_model="toy")
    assert work.is_dir()
    (work / "data.csv").write_text("1,2", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PromptFileError, match=r"data\.csv"):  # elsewhere, a folder of other files
        write_peft_adapter(peft_prompt(lm), work, kind=lm.kind, base_model="toy")
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("my project", encoding="utf-8")  # a README alone is not an adapter's card
    with pytest.raises(PromptFileError, match=r"README\.md"):
        write_peft_adapter(peft_prompt(lm), project, kind=lm.kind, base_model="toy")
    assert (project / "README.md").read_text(encoding="utf-8") == "my project"


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_placements_peft_cannot_express_are_refused(tmp_path):
    lm = tiny_lm("gpt2", MINI_WORDS)
    postfix = SoftPrompt(torch.randn(3, lm.width), lm.name, "P36", "tuned", PromptTemplate.soft(3).text)
    with pytest.raises(PromptFileError, match="placement peft"):
        write_peft_adapter(postfix, tmp_path / "x", kind=lm.kind, base_model="toy")
    assert not (tmp_path / "x").exists()


def _write(folder, config=None, tensors=None):
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    base = {
        "peft_type": "PROMPT_TUNING",
        "task_type": "CAUSAL_LM",
        "num_virtual_tokens": 2,
        "token_dim": 8,
        "num_transformer_submodules": 1,
    }
    (folder / "adapter_config.json").write_text(json.dumps({**base, **(config or {})}), encoding="utf-8")
    save_file(
        tensors if tensors is not None else {"prompt_embeddings": torch.randn(2, 8)},
        str(folder / "adapter_model.safetensors"),
    )
    return folder


@pytest.mark.parametrize(
    "config,tensors,match",
    [
        ({"token_dim": 9}, None, "shape"),
        ({"peft_type": "LORA"}, None, "PROMPT_TUNING"),
        ({}, {"other": torch.randn(2, 8)}, "no 'prompt_embeddings'"),
        ({}, {"prompt_embeddings": torch.full((2, 8), float("nan"))}, "NaN"),
        ({"num_transformer_submodules": 2}, None, "submodules"),
    ],
)
def test_bad_adapters_give_one_clear_error(tmp_path, config, tensors, match):
    with pytest.raises(PromptFileError, match=match):
        read_peft_adapter(_write(tmp_path / "a", config, tensors))


def test_bad_zips_are_refused(tmp_path):
    folder = _write(tmp_path / "a")
    for name, members in (("traversal.zip", {"../evil.json": "x"}), ("extra.zip", {"a/run.sh": "x"})):
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as z:
            for f in folder.iterdir():
                z.write(f, f"a/{f.name}")
            for member, text in members.items():
                z.writestr(member, text)
        with pytest.raises(PromptFileError, match=r"unsafe path|holds only"):
            read_peft_adapter(path)
    (tmp_path / "not.zip").write_bytes(b"no zip")
    with pytest.raises(PromptFileError, match="not a readable zip"):
        read_peft_adapter(tmp_path / "not.zip")
    (folder / "adapter_model.safetensors").unlink()
    with pytest.raises(PromptFileError, match="missing"):
        read_peft_adapter(folder)


def test_a_failed_export_leaves_the_previous_adapter_whole(tmp_path, monkeypatch):
    lm = tiny_lm("gpt2", MINI_WORDS)
    first = write_peft_adapter(peft_prompt(lm, seed=1), tmp_path / "out", kind=lm.kind, base_model="toy")
    before = {f.name: f.read_bytes() for f in first.iterdir()}
    import ptfer_core.peft_io as peft_io

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(peft_io, "model_card", broken)
    with pytest.raises(OSError):
        write_peft_adapter(peft_prompt(lm, seed=2), tmp_path / "out", kind=lm.kind, base_model="toy")
    assert {f.name: f.read_bytes() for f in (tmp_path / "out").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder left behind
