import json

import plotly.graph_objects as go
import pytest

from ptfer_core.ablations import AblationConfig, ablation_figures, run_ablations, save_figures
from ptfer_core.cli import main
from ptfer_core.errors import InputError
from ptfer_core.loading import load_model


def tiny_config(data_dir, **kw):
    base = dict(
        relations=["P36"],
        anchor_counts=[4, None],
        prompt_lengths=[1, 2],
        steps=20,
        dev_every=5,
        tune={"epochs": 1},
        data_dir=str(data_dir),
        transfer={"anchor_source": "frequency", "anchor_filter": "all", "top_k": None},
    )
    return AblationConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def pair():
    return load_model("tiny:bert:32:1"), load_model("tiny:llama:48:2")


def test_ablations_compute_every_point_and_resume(pair, mini_data_dir, tmp_path):
    source, target = pair
    config = tiny_config(mini_data_dir)
    steps = []
    tables = run_ablations(source, target, config, tmp_path, on_step=lambda s, m: steps.append(m["point"]))
    assert len(steps) == 2 + 2 + 2  # normalisation on/off, two anchor counts, two lengths
    traj = tables["trajectory"]
    assert {r["normalize"] for r in traj} == {True, False}
    assert [r["step"] for r in traj if r["normalize"]] == [5, 10, 15, 20]  # dev P@1 every 5 steps, no early stop
    from ptfer_core.data import load_split
    from ptfer_core.evaluation import candidates_for

    cands = candidates_for(target, None, mini_data_dir)
    n_dev = sum(f.object in cands.index for f in load_split("P36", "dev", mini_data_dir))
    assert all(round(r["dev_p_at_1"] * n_dev / 100, 6).is_integer() for r in traj)  # scored on the target dev split
    losses = {n: [r["loss"] for r in traj if r["normalize"] == n] for n in (True, False)}
    assert losses[True] != losses[False]
    anchors = {r["anchors"]: r for r in tables["anchors"]}
    assert anchors[4]["n_anchors_used"] == 4 and anchors["all"]["n_anchors_used"] > 4
    assert sorted(r["length"] for r in tables["length"]) == [1, 2]
    prompts = sorted((tmp_path / "prompts").rglob("tuned-*.safetensors"))
    assert len(prompts) == 2  # one per prompt length (the trajectory and anchor points share the m=2 prompt)

    # A second run reads every point from the cache: same tables, and no source prompt is tuned again.
    for prompt in (tmp_path / "prompts").rglob("tuned-*"):
        prompt.unlink()
    assert run_ablations(source, target, config, tmp_path) == tables
    assert not list((tmp_path / "prompts").rglob("tuned-*"))


def test_figures_are_written_as_html_and_json(pair, mini_data_dir, tmp_path):
    tables = run_ablations(*pair, tiny_config(mini_data_dir), tmp_path / "work")
    figures = ablation_figures(tables)
    assert set(figures) == {"fig2_loss_vs_dev", "fig3_normalisation", "fig4_anchor_count", "fig4_prompt_length"}
    # Fig. 3 draws both the normalised and the raw search: twice the traces of Fig. 2.
    assert len(figures["fig3_normalisation"].data) == 2 * len(figures["fig2_loss_vs_dev"].data)
    written = save_figures(figures, tmp_path / "figs", png=False)
    assert len(written) == 8
    restored = go.Figure(json.loads((tmp_path / "figs" / "fig4_anchor_count.json").read_text(encoding="utf-8")))
    assert list(restored.data[0].x) == ["4", "all"]


def test_bad_ablation_settings(mini_data_dir):
    with pytest.raises(InputError, match="relation"):
        AblationConfig(relations=[], data_dir=str(mini_data_dir))
    with pytest.raises(InputError, match="positive"):
        tiny_config(mini_data_dir, prompt_lengths=[0])
    with pytest.raises(InputError, match="n_vectors"):
        tiny_config(mini_data_dir, tune={"n_vectors": 3})


def test_ablate_command_writes_figures_and_tables(mini_data_dir, tmp_path, capsys):
    code = main(
        [
            "ablate",
            "--source",
            "tiny:bert:32:1",
            "--target",
            "tiny:gpt2:32:3",
            "--relation",
            "P103",
            "--anchors",
            "4,all",
            "--lengths",
            "1",
            "--steps",
            "10",
            "--dev-every",
            "5",
            "--epochs",
            "1",
            "--data-dir",
            str(mini_data_dir),
            "--work",
            str(tmp_path / "w"),
            "--out",
            str(tmp_path / "o"),
            "--no-png",
            "--quiet",
            "--toy-anchors",
        ]
    )
    assert code == 0
    assert (tmp_path / "o" / "fig2_loss_vs_dev.html").is_file()
    assert "P103" in (tmp_path / "o" / "ablation_anchors.csv").read_text(encoding="utf-8")
    assert (
        main(
            [
                "ablate",
                "--source",
                "tiny:bert",
                "--target",
                "tiny:gpt2",
                "--relation",
                "P36",
                "--anchors",
                "x",
                "--data-dir",
                str(mini_data_dir),
            ]
        )
        == 2
    )
    assert "--anchors" in capsys.readouterr().err
    # --redraw draws the same figures again from the saved tables alone, and names what it needs otherwise
    before = json.loads((tmp_path / "o" / "fig4_anchor_count.json").read_text(encoding="utf-8"))
    (tmp_path / "o" / "fig4_anchor_count.json").unlink()
    assert main(["ablate", "--redraw", "--out", str(tmp_path / "o"), "--no-png", "--quiet"]) == 0
    after = json.loads((tmp_path / "o" / "fig4_anchor_count.json").read_text(encoding="utf-8"))
    assert [t["y"] for t in after["data"]] == [t["y"] for t in before["data"]]
    assert main(["ablate", "--redraw", "--out", str(tmp_path / "empty")]) == 2
    assert main(["ablate", "--relation", "P36"]) == 2
    assert "--source, --target" in capsys.readouterr().err


def test_ablation_figures_of_all_zero_scores_keep_a_zero_based_axis_and_say_so():
    """plotly centres an all-zero series on -1..1, which read as negative percentages in the shipped figures."""
    traj = [
        {
            "relation": "P36",
            "source": "a",
            "target": "b",
            "normalize": True,
            "step": s,
            "loss": 1 / s,
            "dev_p_at_1": 0.0,
        }
        for s in (1, 100, 200)
    ]
    points = [
        {"relation": "P36", "source": "a", "target": "b", "anchors": k, "n_correct": 0, "n_facts": 10,
         "source_p_at_1": 40.0, "matching_loss": 0.01 + k / 1e5}
        for k in (512, 1024)
    ]  # fmt: skip
    figures = ablation_figures({"trajectory": traj, "anchors": points})
    search = figures["fig2_loss_vs_dev"]
    # an all-zero accuracy is said, not drawn: its lines lay on the axis under the loss's, on an empty scale
    assert [t.name for t in search.data] == ["P36: loss"] and search.layout.yaxis.type == "log"
    assert any("0 at every checked step: only the loss is drawn" in a.text for a in search.layout.annotations)
    anchors = figures["fig4_anchor_count"]
    assert anchors.layout.yaxis.range[0] == 0 and anchors.layout.yaxis.range[1] >= 40
    assert any("0 at every setting" in a.text for a in anchors.layout.annotations)
    traj[1]["dev_p_at_1"] = 12.0
    search = ablation_figures({"trajectory": traj})["fig2_loss_vs_dev"]
    assert [t.name for t in search.data] == ["P36: loss", "P36: dev P@1"] and not search.layout.annotations
    assert search.layout.yaxis2.range[0] == 0 and search.layout.yaxis2.range[1] > 12


def test_the_normalisation_figure_says_how_far_apart_its_curves_are():
    """Losses with and without normalisation that coincide drew one visible line for two: the figure says by how
    much they differ, and gives a relation's two lines one colour."""
    traj = [
        {"relation": rel, "source": "a", "target": "b", "normalize": norm, "step": s,
         "loss": 1 / s + (0.0 if norm else gap), "dev_p_at_1": 0.0}
        for rel, gap in (("P36", 0.002), ("P17", 0.0005)) for norm in (True, False) for s in (1, 100, 200)
    ]  # fmt: skip
    figure = ablation_figures({"trajectory": traj})["fig3_normalisation"]
    notes = " ".join(a.text for a in figure.layout.annotations)
    # relative to the loss (a log axis): 0.002 on a loss of 0.005 is 28.6 %, far from one line
    assert "With and without normalisation the losses are at most 28.6% apart at a checked step." in notes
    assert "lie under the solid ones" not in notes
    colours = {t.name: t.line.color for t in figure.data}
    assert colours["P36, normalised: loss"] == colours["P36, raw: loss"] != colours["P17, raw: loss"]
    for row in traj:  # a gap of 1 % of the loss or less: one line on the figure
        row["loss"] = 1 / row["step"] * (1.0 if row["normalize"] else 1.01)
    notes = " ".join(a.text for a in ablation_figures({"trajectory": traj})["fig3_normalisation"].layout.annotations)
    assert "at most 1.0% apart at a checked step: the dotted lines (raw) lie under the solid ones" in notes
    assert "The relations' losses are at most 0.0% apart at a checked step: their curves lie on one another" in notes


def test_the_anchor_sweep_below_the_recipes_top_k_keeps_every_similarity(mini_data_dir):
    from ptfer_core.ablations import AblationConfig

    config = AblationConfig(relations=["P36"], data_dir=str(mini_data_dir))  # the paper's recipe: top-K 8,192
    assert config.settings(5).transfer.top_k == 8192
    assert config.settings(5, n_anchors=512).transfer.top_k is None  # was: "top_k 8192 is larger than the anchors"
    assert config.settings(5, n_anchors=10_000).transfer.top_k == 8192
