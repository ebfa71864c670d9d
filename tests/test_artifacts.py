"""Soft prompts on disk: bit-exact round trips, every kind of bad file, and saves that fail without harm."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import save as st_save

from ptfer_core import artifacts
from ptfer_core.artifacts import SoftPrompt
from ptfer_core.data import Fact
from ptfer_core.errors import DimensionMismatchError, PromptFileError
from ptfer_core.evaluation import candidates_for, evaluate
from ptfer_core.files import atomic_write_json


def make_prompt(m: int = 4, d: int = 32, seed: int = 0, **overrides) -> SoftPrompt:
    g = torch.Generator().manual_seed(seed)
    vectors = torch.randn(m, d, generator=g) * 10 ** torch.randint(-30, 30, (m, d), generator=g).float()
    vectors[0, 0] = 1.401298464324817e-45  # the smallest subnormal float32
    vectors[0, 1] = -0.0
    fields = dict(
        vectors=vectors,
        model="tiny-gpt2-32",
        relation="P17",
        method="direct-tuning",
        template="[X] " + "[V] " * m + "[Y] .",
        provenance={"seed": seed, "config": {"lr": 0.003, "epochs": 2}, "sources": ["a", "b"]},
        metrics={"dev_p_at_1": 41.25, "test_p_at_1": float("nan")},
        trajectory=[{"step": 1, "loss": 2.5}, {"step": 2, "loss": 1.25, "dev_p_at_1": 12.5}],
    )
    fields.update(overrides)
    return SoftPrompt(**fields)


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (
        a.dtype == b.dtype == torch.float32
        and a.shape == b.shape
        and torch.equal(a.view(torch.int32), b.view(torch.int32))
    )


def raw_safetensors(vectors: torch.Tensor, meta: dict | None = None, key: str = "vectors") -> bytes:
    return st_save({key: vectors}, metadata={"ptfer": json.dumps(meta)} if meta is not None else None)


def good_meta(prompt: SoftPrompt) -> dict:
    return json.loads(prompt.to_bytes()[1])


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", ["p17", "p17.safetensors", "p17.json"])
def test_save_load_round_trip_is_bit_exact(tmp_path, name):
    prompt = make_prompt()
    written = prompt.save(tmp_path / name)
    assert written == tmp_path / "p17.safetensors" and (tmp_path / "p17.json").is_file()
    loaded = SoftPrompt.load(tmp_path / name)
    assert same_bits(loaded.vectors, prompt.vectors)
    for field in ("model", "relation", "method", "template", "provenance", "trajectory", "created"):
        assert getattr(loaded, field) == getattr(prompt, field), field
    assert loaded.metrics == {"dev_p_at_1": 41.25, "test_p_at_1": None}  # JSON has no NaN
    # A second save of what was loaded writes the same bytes: nothing drifts across round trips.
    loaded.save(tmp_path / "again")
    assert (tmp_path / "again.safetensors").read_bytes() == (tmp_path / "p17.safetensors").read_bytes()
    assert (tmp_path / "again.json").read_bytes() == (tmp_path / "p17.json").read_bytes()


def test_bytes_round_trip_with_and_without_sidecar():
    prompt = make_prompt(m=2, d=8)
    blob, sidecar = prompt.to_bytes()
    for loaded in (SoftPrompt.from_bytes(blob, sidecar), SoftPrompt.from_bytes(blob)):
        assert same_bits(loaded.vectors, prompt.vectors)
        assert (loaded.model, loaded.relation, loaded.template) == (prompt.model, prompt.relation, prompt.template)
        assert loaded.provenance == prompt.provenance
    json.loads(sidecar)  # the sidecar is plain, valid JSON


def test_loaded_prompt_is_usable_as_a_prompt(tmp_path):
    prompt = make_prompt(m=3, d=16)
    prompt.save(tmp_path / "p")
    as_prompt = SoftPrompt.load(tmp_path / "p").as_prompt()
    assert as_prompt.template.n_soft == 3 and same_bits(as_prompt.vectors, prompt.vectors)


def test_vectors_are_stored_as_float32_on_cpu():
    prompt = make_prompt(m=2, d=4, vectors=torch.ones(2, 4, dtype=torch.float64, requires_grad=True))
    assert prompt.vectors.dtype == torch.float32 and not prompt.vectors.requires_grad


# ----------------------------------------------------------------------------- bad prompts and bad files


def test_invalid_prompts_are_refused_at_construction():
    with pytest.raises(PromptFileError, match="2-d"):
        make_prompt(vectors=torch.zeros(32))
    for bad in (float("nan"), float("inf")):
        v = torch.zeros(4, 32)
        v[2, 5] = bad
        with pytest.raises(PromptFileError, match="NaN or infinite"):
            make_prompt(vectors=v)
    with pytest.raises(PromptFileError, match="3 \\[V\\] slots but there are 4 vectors"):
        make_prompt(template="[X] [V] [V] [V] [Y] .")


def test_missing_file(tmp_path):
    with pytest.raises(PromptFileError, match="does not exist"):
        SoftPrompt.load(tmp_path / "nothing")


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00" * 7, b"not a safetensors file at all", os.urandom(256), b"\xff\xff\xff\xff\xff\xff\xff\x7f{}"],
)
def test_corrupt_file(tmp_path, content):
    (tmp_path / "bad.safetensors").write_bytes(content)
    with pytest.raises(PromptFileError, match="not a valid safetensors file"):
        SoftPrompt.load(tmp_path / "bad")


def test_truncated_file(tmp_path):
    make_prompt().save(tmp_path / "p")
    path = tmp_path / "p.safetensors"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(PromptFileError, match="not a valid safetensors file"):
        SoftPrompt.load(path)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_file_with_non_finite_values(tmp_path, bad):
    prompt = make_prompt(m=2, d=8)
    vectors = prompt.vectors.clone()
    vectors[1, 2] = bad
    (tmp_path / "nan.safetensors").write_bytes(raw_safetensors(vectors, good_meta(prompt)))
    with pytest.raises(PromptFileError, match="NaN or infinite"):
        SoftPrompt.load(tmp_path / "nan")


def test_file_metadata_problems(tmp_path):
    prompt = make_prompt(m=2, d=8)
    meta = good_meta(prompt)
    cases = {
        "no vectors tensor": (raw_safetensors(prompt.vectors, meta, key="weights"), "no 'vectors' tensor"),
        "no metadata": (raw_safetensors(prompt.vectors, None), "metadata is missing"),
        "shape disagrees": (raw_safetensors(torch.zeros(3, 8), meta), r"shape \[3, 8\] disagrees"),
        "old format": (raw_safetensors(prompt.vectors, {**meta, "format_version": 99}), "format_version 99"),
        "lacks fields": (
            raw_safetensors(prompt.vectors, {k: v for k, v in meta.items() if k != "template"}),
            "lacks template",
        ),
        "bad template": (raw_safetensors(prompt.vectors, {**meta, "template": "[V] [V] [Y]"}), r"\[X\]"),
        "not an object": (st_save({"vectors": prompt.vectors}, metadata={"ptfer": "[1, 2]"}), "not a JSON object"),
    }
    for label, (blob, match) in cases.items():
        with pytest.raises(PromptFileError, match=match):
            SoftPrompt.from_bytes(blob, name=label)


def test_corrupt_sidecar(tmp_path):
    make_prompt().save(tmp_path / "p")
    (tmp_path / "p.json").write_text('{"model": "x", ', encoding="utf-8")
    with pytest.raises(PromptFileError, match="not valid JSON"):
        SoftPrompt.load(tmp_path / "p")


def test_prompt_of_another_width_is_refused_by_the_model(tmp_path, gpt2_lm, mini_data_dir):
    make_prompt(m=3, d=gpt2_lm.width + 1).save(tmp_path / "wide")
    prompt = SoftPrompt.load(tmp_path / "wide").as_prompt()
    cands = candidates_for(gpt2_lm, None, mini_data_dir)
    with pytest.raises(DimensionMismatchError, match=f"width {gpt2_lm.width + 1} does not match"):
        evaluate(gpt2_lm, prompt, [Fact("Paris", "France", "u")], cands)


# ----------------------------------------------------------------------------- atomic writes


def _no_temp_files(folder) -> bool:
    return not [p for p in os.listdir(folder) if p.endswith(".tmp")]


def test_failed_write_keeps_the_good_file(tmp_path, monkeypatch):
    good = make_prompt(seed=1)
    good.save(tmp_path / "p")
    before = {n: (tmp_path / n).read_bytes() for n in ("p.safetensors", "p.json")}

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(artifacts.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        make_prompt(seed=2).save(tmp_path / "p")
    monkeypatch.undo()
    assert {n: (tmp_path / n).read_bytes() for n in before} == before
    assert _no_temp_files(tmp_path)
    assert same_bits(SoftPrompt.load(tmp_path / "p").vectors, good.vectors)


def test_failure_between_the_two_files_restores_the_old_pair(tmp_path, monkeypatch):
    good = make_prompt(seed=1)
    good.save(tmp_path / "p")
    before = {n: (tmp_path / n).read_bytes() for n in ("p.safetensors", "p.json")}
    real_replace = os.replace

    def replace_failing_for_json(src, dst):
        if str(dst).endswith(".json"):
            raise OSError(5, "I/O error")
        return real_replace(src, dst)

    monkeypatch.setattr(artifacts.os, "replace", replace_failing_for_json)
    with pytest.raises(OSError, match="I/O error"):
        make_prompt(seed=2).save(tmp_path / "p")  # same shape: a mixed pair would load silently
    monkeypatch.undo()
    assert {n: (tmp_path / n).read_bytes() for n in before} == before
    assert _no_temp_files(tmp_path)
    loaded = SoftPrompt.load(tmp_path / "p")
    assert same_bits(loaded.vectors, good.vectors) and loaded.provenance["seed"] == 1


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    real_replace = os.replace

    def replace_failing_for_json(src, dst):
        if str(dst).endswith(".json"):
            raise OSError(5, "I/O error")
        return real_replace(src, dst)

    monkeypatch.setattr(artifacts.os, "replace", replace_failing_for_json)
    with pytest.raises(OSError):
        make_prompt().save(tmp_path / "new")
    assert sorted(os.listdir(tmp_path)) == []


def test_unserialisable_metadata_fails_before_touching_disk(tmp_path):
    good = make_prompt(seed=1)
    good.save(tmp_path / "p")
    before = (tmp_path / "p.safetensors").read_bytes()
    with pytest.raises(TypeError):
        make_prompt(seed=2, provenance={"callback": object()}).save(tmp_path / "p")
    assert (tmp_path / "p.safetensors").read_bytes() == before
    assert same_bits(SoftPrompt.load(tmp_path / "p").vectors, good.vectors)


def test_atomic_write_json_refuses_nan_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "results.json"
    atomic_write_json(path, {"p_at_1": 12.5})
    with pytest.raises(ValueError):
        atomic_write_json(path, {"p_at_1": float("nan")})
    assert json.loads(path.read_text(encoding="utf-8")) == {"p_at_1": 12.5}
    assert _no_temp_files(tmp_path)


def test_dotted_stems_keep_their_name(tmp_path):
    import torch

    from ptfer_core.artifacts import SoftPrompt

    prompt = SoftPrompt(torch.ones(1, 4), "m", "P19", "tuned", "[X] [V] [Y] .")
    path = prompt.save(tmp_path / "P19.postfix-random")
    assert path.name == "P19.postfix-random.safetensors" and (tmp_path / "P19.postfix-random.json").is_file()
    assert torch.equal(SoftPrompt.load(path).vectors, prompt.vectors)


def test_metadata_is_a_json_ready_copy_that_never_aliases_the_prompt():
    from dataclasses import dataclass

    @dataclass
    class Point:
        x: float
        y: float

    prompt = SoftPrompt(
        torch.ones(2, 4), "m", "P17", "tuned", "[X] [V] [V] [Y] .",
        provenance={"where": Point(1.0, float("nan")), "steps": [1, 2]}, metrics={"loss": float("inf")},
    )  # fmt: skip
    meta = prompt.metadata()
    assert meta["provenance"] == {"where": {"x": 1.0, "y": None}, "steps": [1, 2]} and meta["metrics"] == {"loss": None}
    assert meta["shape"] == [2, 4] and "vectors" not in meta
    meta["provenance"]["steps"].append(3)
    assert prompt.provenance["steps"] == [1, 2]
    json.dumps(meta, allow_nan=False)


def test_preset_cards_list_real_models_first_then_by_their_order_then_title(tmp_path):
    from ptfer_core.presets import FORMAT, VERSION, list_presets

    def preset(preset_id, title, target, order=None):
        (tmp_path / preset_id).mkdir()
        meta = {"format": FORMAT, "version": VERSION, "id": preset_id, "title": title, "target": target}
        if order is not None:  # presets written before `order` existed have none: they sort as 0
            meta["order"] = order
        (tmp_path / preset_id / "preset.json").write_text(json.dumps(meta), encoding="utf-8")

    preset("a", "A toy", "tiny:gpt2", order=-5)
    preset("b", "B second", "gemma3-270m", order=2)
    preset("c", "C first", "gemma3-270m", order=1)
    preset("d", "D unordered", "smollm2-135m")
    preset("e", "E unordered", "smollm2-135m")
    assert [p["id"] for p in list_presets(tmp_path)] == ["d", "e", "c", "b", "a"]
