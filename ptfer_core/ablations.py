"""The paper's analyses on any source → target pair: the search trajectory (matching loss against target dev
P@1, with and without normalisation: Figs. 2 and 3) and the effect of the anchor count and the prompt length
(Fig. 4).

`run_ablations` computes every point (each one cached as JSON under `work`, so a stopped run resumes) and
returns tidy tables; `ablation_figures` turns them into plotly figures, `save_figures` writes HTML + PNG.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .config import Normalization, Recipe, Selection
from .data import get_task
from .errors import InputError
from .evaluation import evaluate
from .files import atomic_write_bytes, atomic_write_json
from .models import PromptedLM
from .runs import PromptStore, TaskData, run
from .settings import recipe_settings

ANCHOR_COUNTS = (512, 1024, 2048, 4096, None)  # None: every shared word
PROMPT_LENGTHS = (1, 3, 5, 10)


@dataclass
class AblationConfig:
    relations: list[str]
    anchor_counts: list[int | None] = field(default_factory=lambda: list(ANCHOR_COUNTS))
    prompt_lengths: list[int] = field(default_factory=lambda: list(PROMPT_LENGTHS))
    steps: int = 2000
    dev_every: int = 100  # trajectory resolution of the loss-vs-accuracy curves
    max_train_facts: int | None = 320
    tune: dict = field(default_factory=lambda: {"epochs": 3})  # TuneConfig fields (n_vectors is swept)
    transfer: dict = field(default_factory=dict)  # TransferConfig fields on top of the recipe's
    recipe: str = Recipe.PAPER.value  # the paper's search, whose trajectory the figures show
    seed: int = 0
    data_dir: str | None = None

    def __post_init__(self):
        if not self.relations:
            raise InputError("an ablation needs at least one relation")
        if any(n is not None and n < 1 for n in self.anchor_counts) or any(m < 1 for m in self.prompt_lengths):
            raise InputError("anchor counts and prompt lengths must be positive")
        if "n_vectors" in self.tune:
            raise InputError("the prompt length is swept by prompt_lengths; leave n_vectors out of tune")
        for kind, value in self.points():  # every point's settings, before the first one runs
            self.point_settings(kind, value)
        for rid in self.relations:
            get_task(rid, self.data_dir)

    def points(self) -> list[tuple[str, object]]:
        """(kind, value) of each point of one relation: the two trajectories, the anchor and length sweeps."""
        return (
            [("trajectory", normalize) for normalize in (True, False)]
            + [("anchors", n) for n in self.anchor_counts]
            + [("length", m) for m in self.prompt_lengths]
        )

    def point_settings(self, kind: str, value):
        """The settings one point runs with (the same here for the check and for the run)."""
        base_length = 5 if 5 in self.prompt_lengths else self.prompt_lengths[0]
        if kind == "trajectory":
            return self.settings(
                base_length,
                normalization=(Normalization.GLOBAL if value else Normalization.NONE).value,
                selection=Selection.DEV.value,
                dev_every=self.dev_every,
                patience=None,
            )
        return self.settings(
            value if kind == "length" else base_length,
            selection=Selection.LOSS.value,
            **({"n_anchors": value} if kind == "anchors" else {}),
        )

    def settings(self, n_vectors: int, **transfer):
        tune = {"seed": self.seed, "max_train": self.max_train_facts, **self.tune, "n_vectors": n_vectors}
        transfer = {"steps": self.steps, "seed": self.seed, **self.transfer, **transfer}
        n_anchors = transfer.get("n_anchors")
        top_k = recipe_settings(self.recipe, {"transfer": transfer}).transfer.top_k
        if n_anchors is not None and top_k is not None and top_k >= n_anchors:
            transfer["top_k"] = None  # a mask as large as the anchor set keeps every similarity: the sweep's k rules
        return recipe_settings(self.recipe, {"tune": tune, "transfer": transfer})


def run_ablations(
    source: PromptedLM, target: PromptedLM, config: AblationConfig, work: str | Path, on_step=None, should_stop=None
) -> dict[str, list[dict]]:
    """{"trajectory": rows, "anchors": rows, "length": rows}; each point is cached under `work`."""
    work = Path(work)
    points = config.points()
    jobs = [(kind, rid, value) for kind in ("trajectory", "anchors", "length") for rid in config.relations
            for k, value in points if k == kind]  # fmt: skip
    tables: dict[str, list[dict]] = {"trajectory": [], "anchors": [], "length": []}
    for done, (kind, rid, value) in enumerate(jobs):
        if should_stop and should_stop():
            break
        path = work / "points" / f"{kind}_{rid}_{value}.json"
        if path.is_file():
            rows = json.loads(path.read_text(encoding="utf-8"))
        else:
            rows = _compute(kind, rid, value, source, target, config, work)
            atomic_write_json(path, rows)
        tables[kind] += rows
        if on_step:
            on_step(done + 1, {"total_steps": len(jobs), "point": f"{kind} {rid} {value}"})
    return tables


def _compute(
    kind: str, rid: str, value, source: PromptedLM, target: PromptedLM, config: AblationConfig, work: Path
) -> list[dict]:
    data = TaskData.load(rid, config.data_dir)
    store = PromptStore(work / "prompts")
    common = {"relation": rid, "source": source.name, "target": target.name}
    settings = config.point_settings(kind, value)
    if kind == "trajectory":
        result = run("transfer", data=data, target=target, sources=[source], settings=settings, store=store)
        return [{**common, "normalize": value, **row} for row in result.prompt.trajectory if "dev_p_at_1" in row]
    result = run("transfer", data=data, target=target, sources=[source], settings=settings, store=store)
    prompt = result.source_prompts[0]
    source_score = evaluate(source, prompt.as_prompt(), data.splits["test"], data.candidates(source))
    return [
        {
            **common,
            kind: "all" if value is None else value,
            "n_anchors_used": result.prompt.provenance["n_anchors"],
            "p_at_1": result.p_at_1,
            "n_correct": result.result.n_correct,
            "n_facts": result.result.n_facts,
            "source_p_at_1": source_score.p_at_1,
            "matching_loss": result.prompt.metrics["matching_loss"],
            "seconds": result.seconds,
        }
    ]


# ----------------------------------------------------------------------------- figures


def _micro(rows: list[dict], key: str) -> tuple[list, list[float], list[float], list[float]]:
    """Per value of `key`: pooled target P@1 (all correct over all facts), mean source P@1, mean matching loss."""
    values = list(dict.fromkeys(r[key] for r in rows))
    target, source, loss = [], [], []
    for v in values:
        sub = [r for r in rows if r[key] == v]
        target.append(100.0 * sum(r["n_correct"] for r in sub) / max(1, sum(r["n_facts"] for r in sub)))
        source.append(sum(r["source_p_at_1"] for r in sub) / len(sub))
        loss.append(sum(r["matching_loss"] for r in sub) / len(sub))
    return values, target, source, loss


def ablation_figures(tables: dict[str, list[dict]]) -> dict[str, plotly.graph_objects.Figure]:  # noqa: F821
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figures = {}
    traj = tables.get("trajectory", [])
    if traj:
        pair = f"{traj[0]['source']} → {traj[0]['target']}"
        relations = list(dict.fromkeys(r["relation"] for r in traj))
        colour = {rid: PALETTE[i % len(PALETTE)] for i, rid in enumerate(relations)}  # a relation's lines, one colour
        for name, normalize_values, title in (
            ("fig2_loss_vs_dev", [True], f"Matching loss vs target dev P@1 along the search ({pair})"),
            ("fig3_normalisation", [True, False], f"With and without normalisation ({pair})"),
        ):
            dev = [r["dev_p_at_1"] for r in traj if r["normalize"] in normalize_values]
            # An all-zero accuracy is said, not drawn: its lines lay on the axis under the loss's, on an empty scale.
            with_dev = any(dev)
            fig = make_subplots(specs=[[{"secondary_y": with_dev}]])
            for rid in relations:
                for normalize in normalize_values:
                    rows = [r for r in traj if r["relation"] == rid and r["normalize"] == normalize]
                    label = rid if name == "fig2_loss_vs_dev" else f"{rid}, {'normalised' if normalize else 'raw'}"
                    line = {"dash": "solid" if normalize else "dot", "color": colour[rid]}
                    steps = [r["step"] for r in rows]
                    loss = go.Scatter(x=steps, y=[r["loss"] for r in rows], name=f"{label}: loss", line=line)
                    fig.add_trace(loss, secondary_y=False)
                    if with_dev:
                        fig.add_trace(
                            go.Scatter(
                                x=steps,
                                y=[r["dev_p_at_1"] for r in rows],
                                name=f"{label}: dev P@1",
                                line={**line, "width": 1},
                                mode="lines+markers",
                            ),
                            secondary_y=True,
                        )
            fig.update_xaxes(title_text="search step")
            # A log scale: the loss falls from ~1 to ~0.01, and the relations' curves differ only in that tail.
            loss_axis = {"title_text": "matching loss (1 − cosine), log scale", "type": "log"}
            if with_dev:
                fig.update_yaxes(**loss_axis, secondary_y=False)
                fig.update_yaxes(title_text="target dev P@1 (%)", **_percent_axis(dev), secondary_y=True)
            else:
                fig.update_yaxes(**loss_axis)
            notes = [] if with_dev else ["Target dev P@1 is 0 at every checked step: only the loss is drawn."]
            if not with_dev and name == "fig2_loss_vs_dev":
                title = f"Matching loss along the search ({pair})"
            # Curves that coincide draw one visible line for several legend entries: say how far apart they are,
            # relative to the loss (the axis is logarithmic).
            spread = _spread(traj, ("relation",), normalize_values)
            if len(relations) > 1 and spread is not None:
                notes.append(
                    f"The relations' losses are at most {spread:.1%} apart at a checked step"
                    + (": their curves lie on one another." if spread < SAME_CURVE else ".")
                )
            if len(normalize_values) == 2:
                gap = _spread(traj, ("normalize",), normalize_values)
                if gap is not None:
                    notes.append(
                        f"With and without normalisation the losses are at most {gap:.1%} apart at a checked step"
                        + (": the dotted lines (raw) lie under the solid ones." if gap < SAME_CURVE else ".")
                    )
            if notes:
                _say(fig, "<br>".join(notes))
            figures[name] = _finish(fig, title)
    for key, name, axis in (
        ("anchors", "fig4_anchor_count", "anchors k"),
        ("length", "fig4_prompt_length", "prompt length m"),
    ):
        rows = tables.get(key, [])
        if not rows:
            continue
        values, target, source, loss = _micro(rows, key)
        labels = [str(v) for v in values]
        fig = make_subplots(specs=[[{"secondary_y": True}]])
        fig.add_trace(go.Scatter(x=labels, y=target, name="target P@1 (transferred)", mode="lines+markers"))
        fig.add_trace(
            go.Scatter(x=labels, y=source, name="source P@1 (tuned)", mode="lines+markers", line={"dash": "dot"})
        )
        fig.add_trace(
            go.Scatter(x=labels, y=loss, name="matching loss", mode="lines+markers", line={"dash": "dash"}),
            secondary_y=True,
        )
        pair = f"{rows[0]['source']} → {rows[0]['target']}"
        n_rel = len({r["relation"] for r in rows})
        fig.update_xaxes(title_text=axis, type="category")
        fig.update_yaxes(title_text="P@1 (%)", **_percent_axis(target + source), secondary_y=False)
        fig.update_yaxes(
            title_text="matching loss",
            rangemode="tozero",
            tickformat=".3~g",
            tickmode="auto",  # ticks of its own, no grid: aligned to the P@1 grid they read 0.00275, 0.0055, …
            showgrid=False,
            secondary_y=True,
        )
        if not any(target):
            _say(fig, "Transferred P@1 is 0 at every setting: its line lies on the axis.")
        figures[name] = _finish(fig, f"Effect of {axis} ({pair}, {n_rel} relations, pooled test P@1)")
    return figures


# plotly's default colours, a relation's lines in one of them (normalised solid, raw dotted; loss and accuracy alike)
PALETTE = ("#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880")


SAME_CURVE = 0.02  # curves less than 2 % apart (relative to the loss) draw as one line on the figure's log axis


def _spread(traj: list[dict], over: tuple[str, ...], normalize_values: list[bool]) -> float | None:
    """The largest relative spread of the loss across the values of the columns `over` (e.g. the relations, or
    normalised vs raw) at one checked step of one model pair, relation and setting: (max - min) / max. None when
    nothing is compared."""
    groups: dict[tuple, list[float]] = {}
    keys = [k for k in ("source", "target", "relation", "normalize") if k not in over]
    for r in traj:
        if r["normalize"] in normalize_values:
            groups.setdefault((*(r[k] for k in keys), r["step"]), []).append(abs(r["loss"]))
    spreads = [(max(v) - min(v)) / max(v) for v in groups.values() if len(v) > 1 and max(v) > 0]
    return max(spreads) if spreads else None


def _percent_axis(values: list[float]) -> dict:
    """A 0-based percentage axis with room above the highest point (plotly's autorange centres all-zero data on
    a -1..1 range, which reads as negative percentages)."""
    top = max([0.0, *values])
    return {"range": [0, max(5.0, top * 1.15)], "tickformat": ".1~f"}


def _say(fig, text: str) -> None:
    """A caption under the plot, inside the figure (the figure travels as a file without the page's text)."""
    # hung from its top under the axis title, left-aligned: centred on one point, three lines ran over the title
    fig.add_annotation(
        text=text, xref="paper", yref="paper", x=0, y=-0.2, showarrow=False, xanchor="left", yanchor="top", align="left"
    )


def _finish(fig, title: str):
    # The legend goes under the plot: at the right it covered the second axis's title.
    return fig.update_layout(
        title={"text": title, "font": {"size": 14}},
        template="plotly_white",
        legend={"font": {"size": 10}, "orientation": "h", "y": -0.42, "x": 0},
        margin={"t": 60, "b": 150},
    )


def read_tables(out: str | Path) -> dict[str, list[dict]]:
    """The tables `ptfer ablate` wrote under `out` (ablation_<kind>.csv), to redraw the figures without
    recomputing a point."""
    import pandas as pd

    tables = {}
    for kind in ("trajectory", "anchors", "length"):
        path = Path(out) / f"ablation_{kind}.csv"
        if path.is_file():
            tables[kind] = pd.read_csv(path, dtype={kind: str} if kind != "trajectory" else None).to_dict("records")
    if not tables:
        raise InputError(f"{out} has no ablation tables (ablation_trajectory.csv, ablation_anchors.csv, …) to redraw")
    return tables


def save_figures(figures: dict, out: str | Path, png: bool = True) -> list[Path]:
    """Write each figure as self-contained HTML (and PNG when kaleido can render); returns the written paths."""
    out = Path(out)
    written = []
    for name, fig in figures.items():
        path = out / f"{name}.html"
        atomic_write_bytes(path, fig.to_html(include_plotlyjs="cdn", full_html=True).encode())
        atomic_write_bytes(out / f"{name}.json", fig.to_json().encode())  # what the app draws
        written += [path, out / f"{name}.json"]
        if png:
            atomic_write_bytes(out / f"{name}.png", fig.to_image(format="png", width=900, height=500, scale=1))
            written.append(out / f"{name}.png")
    return written
