"""No silent wrong answers and no tracebacks: every bad input gets one clear line (issue: hardening)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ptfer_core.artifacts import SoftPrompt
from ptfer_core.cli import main
from ptfer_core.data import load_facts, load_relations
from ptfer_core.errors import DataError, InputError, ModelLoadError, PromptFileError
from ptfer_core.files import atomic_write_json
from ptfer_core.loading import load_model
from ptfer_core.mini_lama import MINI_WORDS, write_mini_lama
from ptfer_core.templates import PromptTemplate
from ptfer_core.toy_models import tiny_lm

ROOT = Path(__file__).resolve().parent.parent

# An unknown locale makes Python fall back to ASCII for files and the terminal (UTF-8 mode off).
ASCII_LOCALE = {**os.environ, "LC_ALL": "xx_XX", "LANG": "xx_XX", "PYTHONUTF8": "0"}


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A tiny causal LM saved as a local model directory (safetensors + tokenizer)."""
    lm = tiny_lm("llama", MINI_WORDS)
    path = tmp_path_factory.mktemp("model") / "m"
    lm.model.save_pretrained(path, safe_serialization=True)
    lm.tokenizer.save_pretrained(path)
    return path


def copy_model(src: Path, dst: Path, drop=(), truncate=None) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.name in drop:
            continue
        data = f.read_bytes()
        if f.name == truncate:
            data = data[: len(data) // 2]
        (dst / f.name).write_bytes(data)
    return dst


# ----------------------------------------------------------------------------- model directories


def test_a_complete_model_directory_loads(saved_model):
    lm = load_model(str(saved_model))
    assert lm.kind.value == "causal" and "@" in lm.identity  # keyed by a hash of its weights


def test_model_directory_without_tokenizer_files(saved_model, tmp_path):
    broken = copy_model(
        saved_model, tmp_path / "m", drop={"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}
    )
    with pytest.raises(ModelLoadError, match="no tokenizer files"):
        load_model(str(broken))


def test_model_directory_without_weights_or_with_only_a_pickle(saved_model, tmp_path):
    empty = copy_model(saved_model, tmp_path / "a", drop={"model.safetensors"})
    with pytest.raises(ModelLoadError, match=r"no \.safetensors weights"):
        load_model(str(empty))
    (empty / "pytorch_model.bin").write_bytes(b"not even a pickle")
    with pytest.raises(ModelLoadError, match="pickled weights are refused"):
        load_model(str(empty))


def test_truncated_weights(saved_model, tmp_path):
    broken = copy_model(saved_model, tmp_path / "m", truncate="model.safetensors")
    with pytest.raises(ModelLoadError, match="cannot load the weights"):
        load_model(str(broken))


def test_a_hub_model_offline_fails_at_once(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(ModelLoadError, match="Hugging Face hub model and needs internet"):
        load_model("bert-base-cased")
    with pytest.raises(ModelLoadError, match="not a known name"):
        load_model("no-such-model-xyz")
    assert time.monotonic() - started < 5


def test_concurrent_loads_of_different_models_are_safe():
    """Three threads loading three models at once in a fresh interpreter (cold imports): no import race."""
    code = (
        "import threading\nfrom ptfer_core.loading import load_model\nerrors = []\n"
        "def go(n):\n    try:\n        load_model(n)\n    except Exception as e:\n        errors.append(repr(e))\n"
        "ts = [threading.Thread(target=go, args=(n,)) for n in ('tiny-demo-llama', 'tiny:bert:32:5', 'tiny:gpt2')]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\nprint('ERRORS', errors)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert "ERRORS []" in out.stdout, out.stdout + out.stderr


def test_an_input_longer_than_the_model_reads_is_refused():
    lm = tiny_lm("gpt2", MINI_WORDS)  # 128 positions
    with pytest.raises(InputError, match="tokens long"):
        lm.encode(PromptTemplate.parse("[X] is located in [Y] ."), [" ".join(["Paris"] * 200)])


# ----------------------------------------------------------------------------- prompt files


def test_a_sidecar_that_contradicts_the_tensor_file_is_refused(tmp_path):
    prompt = SoftPrompt(torch.randn(2, 8), "tiny:llama", "P36", "tuned", "[X] [V] [V] [Y] .")
    prompt.save(tmp_path / "p")
    meta = json.loads((tmp_path / "p.json").read_text(encoding="utf-8"))
    (tmp_path / "p.json").write_text(json.dumps({**meta, "relation": "P103"}), encoding="utf-8")
    with pytest.raises(PromptFileError, match="contradicts"):
        SoftPrompt.load(tmp_path / "p")


def test_written_files_are_readable_by_others(tmp_path):
    atomic_write_json(tmp_path / "x.json", {"a": 1})
    mode = stat.S_IMODE((tmp_path / "x.json").stat().st_mode)
    assert mode & 0o044 == 0o044 or os.umask(0o022) & 0o044  # group/other read unless the umask forbids it


# ----------------------------------------------------------------------------- data files


@pytest.mark.parametrize(
    "line,match",
    [
        ("[1, 2]", "not an object"),
        ('{"template": "[X] is [Y] ."}', "'relation'"),
        ('{"relation": "Pfoo", "template": "[X] is [Y] ."}', "'relation' must be"),
    ],
)
def test_malformed_relation_rows(tmp_path, line, match):
    root = write_mini_lama(tmp_path)
    with open(root / "relations.jsonl", "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
    with pytest.raises(DataError, match=match) as info:
        load_relations(root)
    assert "relations.jsonl:" in str(info.value)  # the file and line


def test_an_empty_subject_names_the_fact(tmp_path):
    root = write_mini_lama(tmp_path)
    with open(root / "lama_trex" / "P36.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"sub_label": " ", "obj_label": "Paris", "uuid": "blank-1"}) + "\n")
    with pytest.raises(DataError, match=r"P36.jsonl:\d+: fact blank-1 has an empty subject"):
        load_facts("P36", root)


# ----------------------------------------------------------------------------- the command line and the grid


def test_results_are_not_lost_to_an_unwritable_out(tmp_path, mini_data_dir, capsys):
    (tmp_path / "file").write_text("x", encoding="utf-8")
    code = main(
        [
            "evaluate",
            "--model",
            "tiny:gpt2",
            "--data-dir",
            str(mini_data_dir),
            "--quiet",
            "--out",
            str(tmp_path / "file" / "results.json"),
        ]
    )
    assert code == 2 and "cannot be written" in capsys.readouterr().err
    code = main(
        [
            "tune",
            "--model",
            "tiny:gpt2",
            "--relation",
            "P36",
            "--data-dir",
            str(mini_data_dir),
            "--quiet",
            "--prompt-dir",
            str(tmp_path / "file"),
        ]
    )
    assert code == 2 and "is a file" in capsys.readouterr().err


def test_bad_settings_in_a_grid_file_fail_before_anything_runs(tmp_path, mini_data_dir, capsys):
    for overrides, match in (({"projector": {"hidden": -1}}, "hidden"), ({"transfer": {"dev_every": 0}}, "dev_every")):
        config = tmp_path / "g.yaml"
        config.write_text(
            json.dumps(
                {"models": ["tiny:bert"], "relations": ["P36"], "overrides": overrides, "data_dir": str(mini_data_dir)}
            ),
            encoding="utf-8",
        )
        assert main(["grid", "--config", str(config), "--out", str(tmp_path / "out")]) == 2
        assert match in capsys.readouterr().err
        assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data" / "relations.jsonl").is_file(), reason="shared data absent")
def test_the_documented_tiny_grid_goes_on_past_a_relation_it_cannot_run(tmp_path):
    """`ptfer grid --config grids/tiny.yaml` on the real LAMA data: relations whose answers toy models do not know
    become not-applicable rows, and the grid finishes, printing its summary even where the terminal is ASCII-only."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ptfer_core.cli",
            "grid",
            "--config",
            str(ROOT / "grids" / "tiny.yaml"),
            "--out",
            str(tmp_path / "g"),
            "--relations",
            "P30,P36",
        ],
        capture_output=True,
        text=True,
        encoding="ascii",
        errors="strict",
        timeout=600,
        cwd=ROOT,
        env=ASCII_LOCALE,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "P36" in out.stdout  # the summary table, its dashes printed as "?"
    import pandas as pd

    table = pd.read_csv(tmp_path / "g" / "results.csv")
    assert table["error"].dropna().str.startswith("not applicable").all()
    assert set(table["relation"]) == {"P30", "P36"}


def test_an_ascii_locale_reads_the_shipped_presets():
    """A machine whose locale is not UTF-8 (CI containers often are not): the presets' titles hold "→" and load."""
    code = (
        "import locale\nfrom ptfer_core.presets import list_presets, read_preset\n"
        "encoding = locale.getpreferredencoding(False)\nassert encoding.lower() not in ('utf-8', 'utf8'), encoding\n"
        "titles = [p['title'] for p in list_presets()]\n[read_preset(p['path']) for p in list_presets()]\n"
        "print(len(titles), any(ord(c) > 127 for t in titles for c in t))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300, cwd=ROOT, env=ASCII_LOCALE)
    assert out.returncode == 0, out.stderr.decode("utf-8", "replace")[-2000:]
    count, non_ascii_titles = out.stdout.decode("ascii").split()
    assert int(count) >= 3 and non_ascii_titles == "True"
