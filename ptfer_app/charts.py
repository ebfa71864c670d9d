"""Plotly figures for the pages (plain functions of data; no Streamlit)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ptfer_core.grid_tables import GRID_METHODS as METHOD_ORDER

from .palette import METHOD_COLORS, SOURCE, TARGET

FONT = dict(family="Source Sans Pro, sans-serif", size=13)


def _layout(fig: go.Figure, height: int = 320, **kw) -> go.Figure:
    legend = kw.get("showlegend", True) and len(fig.data) > 1
    top = 40 if kw.get("title") or legend else 12
    if kw.get("title") and legend:
        # Title on its own line at the top, the legend on the next one: sharing a line, they printed over each other.
        title = kw["title"] if isinstance(kw["title"], dict) else {"text": kw["title"]}
        kw["title"] = {**title, "yref": "container", "y": 1.0, "yanchor": "top", "pad": {"t": 8}}
        top = 64
    fig.update_layout(
        height=height,
        margin=dict(l=10, r=10, t=top, b=10),
        font=FONT,
        # Above the plot, right-aligned: below it, the legend sat on the x-axis title.
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0),
        **kw,
    )
    return fig


def thin_curve(rows: list[dict], max_points: int = 400) -> list[dict]:
    """At most ~`max_points` rows of a curve for drawing: every n-th, plus every dev check, the lowest loss and the
    last row. A 2,000-step search drawn whole cost the page ~0.4 s of script and seconds of plotly.js."""
    if len(rows) <= max_points:
        return rows
    every = -(-len(rows) // max_points)
    losses = [(r["loss"], i) for i, r in enumerate(rows) if r.get("loss") is not None]
    keep = {len(rows) - 1, *([min(losses)[1]] if losses else [])}
    return [r for i, r in enumerate(rows) if i % every == 0 or i in keep or r.get("dev_p_at_1") is not None]


def trajectory(
    rows: list[dict],
    title: str = "",
    x_label: str = "search step",
    score: str = "P@1",
    kept_step: int | None = None,
) -> go.Figure:
    """Matching (or training) loss per step; the dev score (P@1, or accuracy as `score` names it) as markers on a
    second, 0-based axis where it was computed; the step the run kept as a vertical line."""
    rows = thin_curve(rows)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    loss = [(r["step"], r["loss"]) for r in rows if r.get("loss") is not None]
    dev = [(r["step"], r["dev_p_at_1"]) for r in rows if r.get("dev_p_at_1") is not None]
    if loss:
        xs, ys = zip(*loss)
        fig.add_trace(
            go.Scatter(x=xs, y=ys, mode="lines", name="loss", line=dict(color=TARGET, width=2)), secondary_y=False
        )
    if dev:
        xs, ys = zip(*dev)
        fig.add_trace(
            go.Scatter(x=xs, y=ys, mode="lines+markers", name=f"dev {score}", line=dict(color=SOURCE, dash="dot")),
            secondary_y=True,
        )
        # An explicit range: plotly's own put a flat series' points above its top tick, at ticks like 0.53, 2.47
        top = max(5.0, 1.15 * max(ys))
        fig.update_yaxes(
            title_text=f"dev {score} (%)",
            secondary_y=True,
            range=[0, top],
            tickmode="linear",
            tick0=0,
            dtick=nice_step(top / 5),  # own round ticks: left to plotly, they followed the loss axis's grid
            showgrid=False,
        )
    if kept_step is not None and len(rows) > 1:
        fig.add_vline(
            x=kept_step,
            line=dict(color="#555", width=1, dash="dash"),
            annotation_text=f"kept: step {kept_step}",
            annotation_position="top right",
            annotation_font_size=11,
        )
    fig.update_yaxes(title_text="loss", secondary_y=False, rangemode="tozero")
    fig.update_xaxes(title_text=x_label)
    return _layout(fig, title=dict(text=title, font=dict(size=14)) if title else None, showlegend=bool(dev))


def nice_step(rough: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k at or above `rough`: round tick spacing."""
    power = 10.0 ** np.floor(np.log10(max(rough, 1e-12)))
    return float(next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= rough - 1e-12))


def norm_histogram(
    vocab_norms: list[float], prompt_norms: list[float], normalized: list[float] | None, title: str, color: str
) -> go.Figure:
    fig = go.Figure()
    fig.add_trace(
        go.Histogram(
            x=vocab_norms,
            nbinsx=60,
            name="vocabulary",
            marker_color="#C9CED6",
            opacity=0.9,
            hovertemplate="norm %{x}<br>%{y} tokens<extra></extra>",
        )
    )
    for n in prompt_norms:
        fig.add_vline(x=n, line=dict(color=color, width=2))
    fig.add_trace(
        go.Scatter(
            x=prompt_norms,
            y=[0] * len(prompt_norms),
            mode="markers",
            name="prompt vectors",
            marker=dict(color=color, size=10, symbol="diamond"),
            text=[f"V{i + 1}" for i in range(len(prompt_norms))],
            hovertemplate="%{text}: norm %{x:.2f}<extra></extra>",
        )
    )
    if normalized is not None:
        for n in normalized:
            fig.add_vline(x=n, line=dict(color=color, width=2, dash="dot"))
        fig.add_trace(
            go.Scatter(
                x=normalized,
                y=[0] * len(normalized),
                mode="markers",
                name="after normalisation",
                marker=dict(color="white", size=10, symbol="diamond", line=dict(color=color, width=2)),
                text=[f"V{i + 1}" for i in range(len(normalized))],
                hovertemplate="%{text} normalised: norm %{x:.2f}<extra></extra>",
            )
        )
    fig.update_xaxes(
        title_text="L2 norm", type="log" if _spread(vocab_norms + prompt_norms + (normalized or [])) else None
    )
    fig.update_yaxes(title_text="tokens")
    return _layout(fig, height=280, title=dict(text=title, font=dict(size=14)), bargap=0.02)


def _spread(values: list[float]) -> bool:
    positive = [v for v in values if v > 0]
    return bool(positive) and max(positive) / min(positive) > 50


def relative_map(
    anchor_xy: np.ndarray,
    words: list[str],
    sims: np.ndarray,
    prompt_xy: np.ndarray,
    title: str,
    color: str,
    highlight: list[int] = (),
    selected: int = 0,
) -> go.Figure:
    """Anchors coloured by cosine to the selected prompt vector; prompt vectors as labelled diamonds."""
    fig = go.Figure()
    fig.add_trace(
        go.Scattergl(
            x=anchor_xy[:, 0],
            y=anchor_xy[:, 1],
            mode="markers",
            name="anchor words",
            text=words,
            customdata=sims,
            marker=dict(
                size=7,
                color=sims,
                colorscale="RdBu_r",
                cmin=-1,
                cmax=1,
                opacity=0.9,
                line=dict(color="rgba(80,80,80,0.45)", width=0.6),
                colorbar=dict(title=dict(text=f"cos to V{selected + 1}", side="right"), thickness=10, len=0.8),
            ),
            hovertemplate="<b>%{text}</b><br>cos to V" + str(selected + 1) + ": %{customdata:.3f}<extra></extra>",
        )
    )
    if len(highlight):
        idx = list(highlight)
        fig.add_trace(
            go.Scatter(
                x=anchor_xy[idx, 0],
                y=anchor_xy[idx, 1],
                mode="markers+text",
                name="search",
                text=[words[i] for i in idx],
                textposition="top center",
                customdata=sims[idx],
                marker=dict(size=13, color="rgba(0,0,0,0)", line=dict(color="#111", width=2)),
                hovertemplate="<b>%{text}</b><br>cos to V" + str(selected + 1) + ": %{customdata:.3f}<extra></extra>",
            )
        )
    labels = [f"V{i + 1}" for i in range(len(prompt_xy))]
    # WebGL like the anchors: plotly draws every WebGL trace above every SVG one, which hid SVG diamonds under
    # the anchor dots.
    fig.add_trace(
        go.Scattergl(
            x=prompt_xy[:, 0],
            y=prompt_xy[:, 1],
            mode="markers+text",
            name="prompt vectors",
            text=grouped_labels(prompt_xy, np.vstack([anchor_xy, prompt_xy])),
            customdata=labels,
            textposition=label_sides(prompt_xy, np.vstack([anchor_xy, prompt_xy])),
            textfont=dict(color=color, size=13),
            marker=dict(
                size=[16 if i == selected else 12 for i in range(len(labels))],
                color=color,
                symbol="diamond",
                line=dict(color="white", width=1.5),
            ),
            hovertemplate="<b>%{customdata}</b><extra></extra>",
        )
    )
    # PCA/UMAP coordinates have no units: a framed, unlabelled plane on both axes.
    bare = dict(
        showticklabels=False, title_text=None, zeroline=False, showgrid=False, showline=True, mirror=True,
        linecolor="#E3E6EA",
    )  # fmt: skip
    fig.update_xaxes(**bare)
    fig.update_yaxes(**bare)
    return _layout(fig, height=420, showlegend=False, dragmode="lasso")


def label_sides(points: np.ndarray, everything: np.ndarray) -> list[str]:
    """Labels point into the map: to the left of points in its right half (at the edge they were cut off)."""
    if not len(everything):
        return ["middle right"] * len(points)
    middle = (everything[:, 0].min() + everything[:, 0].max()) / 2
    return ["middle left" if x > middle else "middle right" for x in points[:, 0]]


def grouped_labels(points: np.ndarray, everything: np.ndarray, share: float = 0.04) -> list[str]:
    """One label per cluster of prompt vectors: points closer than `share` of the map's span are named together
    ("V1, V2, V4") at the first of them, and the others carry no text, so labels never print over each other."""
    span = float(np.ptp(everything, axis=0).max()) if len(everything) else 0.0
    near = share * span
    texts = [""] * len(points)
    placed: list[int] = []
    for i, point in enumerate(points):
        home = next((j for j in placed if np.linalg.norm(points[j] - point) <= near), None)
        if home is None:
            placed.append(i)
            texts[i] = f"V{i + 1}"
        else:
            texts[home] += f", V{i + 1}"
    return texts


def fingerprint(
    src: np.ndarray, tgt: np.ndarray, words: list[str], labels: tuple[str, str], per_row: bool = False
) -> go.Figure:
    """Two rows (source, transferred) of cosines to the same anchor words. The colour range is the data's own
    (symmetric about 0), so the differences show even when every cosine sits in a narrow band (as on real models,
    whose embeddings share a common direction). `per_row`: each row's pattern, its mean removed and on its own
    scale (what the correlation r under the strip compares); hovering still reads the raw cosine."""
    raw = np.vstack([src, tgt])
    z = raw
    if per_row:
        z = raw - np.nanmean(raw, axis=1, keepdims=True)
        z = z / np.maximum(np.nanmax(np.abs(z), axis=1, keepdims=True), 1e-12)
    reach = float(np.nanmax(np.abs(z))) if z.size else 1.0
    reach = max(reach, 1e-6)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=words,
            y=list(labels),
            customdata=raw,
            colorscale="RdBu_r",
            zmid=0,
            zmin=-reach,
            zmax=reach,
            colorbar=dict(title=dict(text="vs row mean" if per_row else "cos", side="right"), thickness=10),
            hovertemplate="%{y}<br>anchor <b>%{x}</b>: cos %{customdata:.3f}<extra></extra>",
        )
    )
    fig.update_xaxes(tickangle=-60, tickfont=dict(size=10))
    fig.update_yaxes(autorange="reversed")  # plotly draws the first row at the bottom: the source goes on top
    return _layout(fig, height=230)


def _method_key(method: str) -> tuple:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def grid_bars(agg, score: str = "P@1") -> go.Figure:
    """P@1 (or accuracy, as `score` names it) per method (bars), one group per target model; `agg` has target,
    method, p_at_1."""
    fig = go.Figure()
    for method in sorted(agg["method"].unique(), key=_method_key):
        part = agg[agg["method"] == method]
        fig.add_trace(
            go.Bar(
                x=part["target"],
                y=part["p_at_1"],
                name=method,
                marker_color=METHOD_COLORS.get(method),
                text=[f"{v:.1f}" for v in part["p_at_1"]],
                textposition="outside",
                cliponaxis=False,
                hovertemplate=f"{method}<br>target %{{x}}: %{{y:.1f}}<extra></extra>",
            )
        )
    fig.update_yaxes(title_text=f"{score} (%)", range=[0, max(5.0, float(agg["p_at_1"].max()) * 1.2)])
    fig.update_xaxes(title_text="target model")
    return _layout(fig, height=380, barmode="group")


def grid_heatmap(df, value: str = "p_at_1", score: str = "P@1") -> go.Figure:
    """Relation × method heat map of the mean score (P@1, or accuracy as `score` names it)."""
    table = df.pivot_table(index="relation", columns="method", values=value, aggfunc="mean")
    table = table[sorted(table.columns, key=_method_key)]
    fig = go.Figure(
        go.Heatmap(
            z=table.values,
            x=list(table.columns),
            y=list(table.index),
            colorscale="Viridis",
            colorbar=dict(title=dict(text=score, side="right"), thickness=10),
            text=[["" if v != v else f"{v:.1f}" for v in row] for row in table.values],  # 18.0, not 18
            texttemplate="%{text}",
            hovertemplate="%{y} · %{x}: %{z:.1f}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, height=max(260, 26 * len(table) + 80))
