"""Inputs that a command or method would have ignored, misread or lost: each is refused with one line, or said.
Found by a review of the CLI's inputs on the toy models (docs/benchmarks.md, fourteenth session)."""

import json
import math

import pytest
import torch

from ptfer_core.artifacts import SoftPrompt
from ptfer_core.cli import main
from ptfer_core.errors import DataError, InputError, PromptFileError
from ptfer_core.settings import TransferConfig, TuneConfig, recipe_settings
from ptfer_core.templates import PromptTemplate

TOY = ["--anchor-source", "frequency", "--anchor-filter", "all"]  # the toy vocabulary has no 8,192 common words
BERT, LLAMA, GPT2 = "tiny:bert:32:1", "tiny:llama:48:2", "tiny:gpt2:32:3"


@pytest.fixture
def workdir(tmp_path, monkeypatch, mini_data_dir):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PTFER_DATA_DIR", str(mini_data_dir))
    return tmp_path


def error(capsys, argv) -> str:
    code = main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2, lines
    return lines[-1]


def saved_prompt(folder, relation="P36", width=32) -> str:
    prompt = SoftPrompt(torch.randn(5, width), BERT, relation, "tuned", PromptTemplate.soft(5).text)
    prompt.save(folder / "p")
    return str(folder / "p.safetensors")


def test_inputs_a_method_would_ignore_are_refused(workdir, capsys):
    """Two sources with `discretization` gave the first one's prompt, labelled with both; weights and a source
    prompt were dropped without a word by the methods that use none."""
    run = ["transfer", "--target", LLAMA, "--relation", "P36", "--quiet", "--out", "-", *TOY]
    assert "takes one source model, not 2" in error(
        capsys, [*run, "--source", f"{BERT},{GPT2}", "--method", "discretization"]
    )
    assert "source weights blend several sources" in error(
        capsys, [*run, "--source", BERT, "--method", "discretization", "--weights", "1"]
    )
    prompt = saved_prompt(workdir)
    assert "uses no source prompt" in error(
        capsys, [*run, "--source", BERT, "--method", "random", "--source-prompt", prompt]
    )
    assert "--template applies to a PEFT adapter" in error(capsys, [*run, "--source", BERT, "--template", "[X] [Y] ."])
    assert "--template applies to a PEFT adapter only" in error(
        capsys, ["evaluate", "--model", BERT, "--quiet", "--out", "-", "--template", "not even a template"]
    )
    assert "finite" in error(capsys, [*run, "--source", f"{BERT},{GPT2}", "--weights", "inf,1"])


def test_settings_are_typed_and_finite():
    """A grid file's YAML reads 1e-3 as a string (AdamW then failed after the models loaded); inf passed the
    bounds, ran, and wrote an unreadable JSON; 1.5 epochs and True steps were taken."""
    assert TuneConfig(lr="1e-3").lr == 0.001 and TuneConfig(epochs=10.0).epochs == 10
    assert TuneConfig(max_train="12345678901234567891").max_train == 12345678901234567891, "not rounded by float()"
    assert TuneConfig(weight_decay=0).to_dict()["weight_decay"] == 0 and isinstance(TuneConfig(lr=1).lr, int), (
        "a Python int is kept: saved settings and the hashes made of them write 0, not 0.0"
    )
    for fields, message in (
        ({"epochs": 1.5}, "epochs must be a whole number (got 1.5)"),
        ({"lr": math.inf}, "lr must be a finite number (got inf)"),
        ({"lr": math.nan}, "lr must be a finite number (got nan)"),
        ({"n_vectors": "five"}, "n_vectors must be a number (got 'five')"),
        ({"dropout": 1}, "dropout must be true or false (got 1)"),
    ):
        with pytest.raises(InputError, match="^" + message.replace("(", r"\(").replace(")", r"\)") + "$"):
            TuneConfig(**fields)
    with pytest.raises(InputError, match="steps must be a number"):
        TransferConfig(steps=True)
    with pytest.raises(InputError, match="n_vectors does not apply to placement 'template'"):
        recipe_settings("studio", {"tune": {"placement": "template", "n_vectors": 40}})
    assert recipe_settings("studio", {"tune": {"placement": "template"}}).tune.placement.value == "template"


def test_a_changed_setting_writes_a_new_transferred_prompt_file(workdir):
    """Both runs wrote one file; the first results JSON then described the second run's prompt."""
    base = ["transfer", "--source", BERT, "--target", GPT2, "--relation", "P36", "--epochs", "1", "--quiet", *TOY]
    assert main([*base, "--out", "a.json"]) == 0
    assert main([*base, "--solver", "adam", "--steps", "5", "--out", "b.json"]) == 0
    files = [
        json.loads((workdir / f).read_text(encoding="utf-8"))["relations"]["P36"]["file"] for f in ("a.json", "b.json")
    ]
    assert files[0] != files[1]
    first = SoftPrompt.load(files[0])
    assert first.provenance["transfer"]["solver"] != SoftPrompt.load(files[1]).provenance["transfer"]["solver"]
    assert main([*base, "--out", "c.json"]) == 0  # the same run again: the same file, the same vectors
    again = json.loads((workdir / "c.json").read_text(encoding="utf-8"))["relations"]["P36"]["file"]
    assert again == files[0] and torch.equal(SoftPrompt.load(again).vectors, first.vectors)


def test_a_task_that_cannot_run_leaves_the_others_written(workdir, mini_data_dir, capsys, tmp_path):
    """One relation without a training example ended `tune` with nothing written for the rest."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(mini_data_dir, data)
    (data / "lama_trex" / "P103.jsonl").write_text("", encoding="utf-8")
    code = main(
        ["tune", "--model", BERT, "--relation", "P36,P103", "--epochs", "1", "--quiet", "--data-dir", str(data)]
    )
    assert code == 1
    assert "error: P103:" in capsys.readouterr().err
    results = json.loads((workdir / "tune-results.json").read_text(encoding="utf-8"))["relations"]
    assert "test_p_at_1" in results["P36"] and "error" in results["P103"]


def test_outputs_that_would_lose_work_or_an_input_are_refused(workdir, capsys):
    prompt = saved_prompt(workdir)
    evaluate = ["evaluate", "--model", BERT, "--quiet", "--prompt", prompt]
    assert "would overwrite the prompt" in error(capsys, [*evaluate, "--out", str(workdir / "p.json")])
    assert "--out is empty" in error(capsys, [*evaluate, "--out", ""])
    assert "--out is empty" in error(
        capsys, ["tune", "--model", BERT, "--relation", "P36", "--epochs", "1", "--quiet", "--out", ""]
    )
    assert SoftPrompt.load(prompt).relation == "P36", "the prompt still loads"


def test_grid_parts_seed_and_model_folder(workdir, tmp_path, capsys):
    from ptfer_core.grid import GridConfig

    config = tmp_path / "g.yaml"
    config.write_text(f'models: ["{BERT}"]\nrelations: [P36]\nmethods: [manual]\n', encoding="utf-8")
    grid = ["grid", "--config", str(config), "--out", "g"]
    assert "--relations names P103, which the config's grid does not have" in error(
        capsys, [*grid, "--relations", "P103"]
    )
    assert "--relations is empty" in error(capsys, [*grid, "--relations", ","])
    assert "--recipes names paper" in error(capsys, [*grid, "--recipes", "paper"])
    assert "--ray-address applies to --executor ray only" in error(capsys, [*grid, "--ray-address", "auto"])
    bad = tmp_path / "typo.yaml"
    bad.write_text(config.read_text(encoding="utf-8") + "overrides: {tune: {epoch: 1}}\n", encoding="utf-8")
    assert "unknown setting(s) epoch" in error(capsys, ["grid", "--config", str(bad), "--out", "g"])
    # the grid's seed seeds what `ptfer transfer --seed` seeds; seed 0 is every recipe's own (shipped cells keep
    # their keys)
    seeded = GridConfig(models=[BERT], relations=["P36"], seed=7)
    settings = seeded.settings_for("studio")
    assert (settings.tune.seed, settings.transfer.seed, settings.projector.seed) == (7, 7, 7)
    assert GridConfig(models=[BERT], relations=["P36"]).settings_for("studio").overrides == {}
    assert (workdir / "g").exists() is False, "nothing ran"


def test_grid_model_dir_reaches_the_loads(workdir, tmp_path, monkeypatch):
    """`ptfer grid --model-dir` was read by no one: the grid loaded from $PTFER_MODEL_DIR or the cache."""
    from ptfer_core import grid, loading

    asked = []
    monkeypatch.setattr(loading, "load_model", lambda name, **kw: asked.append((name, kw.get("models_root"))))
    grid._Models.get("smollm2-135m", str(tmp_path / "weights"))
    assert asked == [("smollm2-135m", str(tmp_path / "weights"))]
    seen = []

    def fake_run_grid(config, out, **kw):
        seen.append(config.model_dir)
        (tmp_path / "g").mkdir()
        (tmp_path / "g" / "summary.md").write_text("", encoding="utf-8")
        return []

    monkeypatch.setattr(grid, "run_grid", fake_run_grid)
    config = tmp_path / "g.yaml"
    config.write_text(f'models: ["{BERT}"]\nrelations: [P36]\nmethods: [manual]\n', encoding="utf-8")
    assert main(["grid", "--config", str(config), "--out", "g", "--model-dir", str(tmp_path / "weights")]) == 0
    assert seen == [str(tmp_path / "weights")]


def test_data_files_that_were_misread(tmp_path, mini_data_dir):
    import shutil

    from ptfer_core.classification import classification_tasks
    from ptfer_core.data import load_common_vocab, load_facts

    data = tmp_path / "data"
    shutil.copytree(mini_data_dir, data)
    # padded labels: "Paris " was no candidate (dropped unscored) and "France " a second copy of "France"
    rows = [("France", "Paris ", "a"), ("France ", "Paris", "b"), (" Spain", "Madrid", "c")]
    (data / "lama_trex" / "P36.jsonl").write_text(
        "".join(json.dumps({"sub_label": s, "obj_label": o, "uuid": u}) + "\n" for s, o, u in rows), encoding="utf-8"
    )
    assert [(f.subject, f.object) for f in load_facts("P36", data)] == [("France", "Paris"), ("Spain", "Madrid")]
    (data / "lama_trex" / "P36.jsonl").write_bytes(b"\xff\xfe{}\n")
    with pytest.raises(DataError, match=r"P36.jsonl is not UTF-8 text"):
        load_facts("P36", data)
    (data / "common_vocab_cased_be_ro_al.txt").write_bytes(b"\xffword\n")
    with pytest.raises(DataError, match="is not UTF-8 text"):
        load_common_vocab("be_ro_al", data)
    # an SST-2 file without a header kept all but its first example
    sst = data / "classification" / "sst2"
    sst.mkdir(parents=True)
    (sst / "train.tsv").write_text("1\tgood fun\n0\tdull\n", encoding="utf-8")
    (sst / "dev.tsv").write_text("label\tsentence\n1\tgreat\n0\tbad\n", encoding="utf-8")
    from ptfer_core.classification import load_examples

    examples = load_examples(classification_tasks(data)["sst2"], "all", data)
    assert [f.subject for f in examples] == ["good fun", "dull", "great", "bad"]
    # DBpedia without its test file is not a task (`data info` ended in a traceback)
    db = data / "classification" / "dbpedia"
    db.mkdir()
    (db / "classes.txt").write_text("1: Company\n", encoding="utf-8")
    (db / "train.csv").write_text('1,"Acme","a firm"\n', encoding="utf-8")
    assert "dbpedia" not in classification_tasks(data)
    from ptfer_core.classification import incomplete_tasks

    assert incomplete_tasks(data) == [f"dbpedia: {db} lacks test.csv, so it is not a task"]


def test_peft_metadata_of_the_wrong_shape_is_refused(tmp_path):
    from safetensors.torch import save_file

    from ptfer_core.peft_io import read_peft_adapter

    folder = tmp_path / "a"
    folder.mkdir()
    config = {"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 2, "token_dim": 8, "num_transformer_submodules": 1}
    (folder / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
    save_file({"prompt_embeddings": torch.randn(2, 8)}, str(folder / "adapter_model.safetensors"))
    for meta, match in (("[1, 2]", "not a JSON object"), ('{"provenance": [1]}', "provenance has the wrong type"),
                        ("{not json", "not valid JSON")):  # fmt: skip
        (folder / "ptfer_prompt.json").write_text(meta, encoding="utf-8")
        with pytest.raises(PromptFileError, match=match):
            read_peft_adapter(folder)
    (folder / "ptfer_prompt.json").unlink()
    (folder / "adapter_config.json").write_text(json.dumps({**config, "num_virtual_tokens": "2"}), encoding="utf-8")
    with pytest.raises(PromptFileError, match=r"num_virtual_tokens must be a positive whole number \(got '2'\)"):
        read_peft_adapter(folder)


def test_ablation_points_are_all_checked_before_the_first_runs(mini_data_dir):
    from ptfer_core.ablations import AblationConfig

    with pytest.raises(InputError, match=r"n_vectors must be at least 1 and at most 64 \(got 100\)"):
        AblationConfig(relations=["P36"], prompt_lengths=[1, 100], data_dir=str(mini_data_dir))


def test_more_anchors_or_mixed_tokens_than_there_are(workdir, capsys):
    """--anchors above the shared words ran on all of them without a word (the results said the number asked for);
    a top-n mix above the vocabulary ended in a traceback."""
    base = ["transfer", "--source", BERT, "--target", GPT2, "--relation", "P36", "--epochs", "1", "--quiet", *TOY]
    assert main([*base, "--anchors", "100000", "--out", "a.json"]) == 0
    err = capsys.readouterr().err
    used = SoftPrompt.load(json.loads((workdir / "a.json").read_text(encoding="utf-8"))["relations"]["P36"]["file"])
    n = used.provenance["n_anchors"]
    assert n < 100000 and f"the models share {n:,} anchor words, fewer than the 100,000 asked for" in err
    assert main([*base, "--projection", "mix", "--projection-top-n", "100000", "--out", "-"]) == 0
