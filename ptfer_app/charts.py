"""The pages' charts as ECharts option objects (plain JSON-able dicts built from data; no Streamlit).

ECharts rather than plotly: the browser loads and runs 1.2 MB of ECharts against 4.7 MB of plotly.js, and a page with
two 1,000-point maps settled 1.10 s after loading against 2.6-2.8 s as plotly (floor 0.57 s;
`benchmarks/first_paint.py --anatomy --blocks maps`). A page draws a `Chart` with `ui.chart`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

import numpy as np

from ptfer_core.grid_tables import method_order

from .palette import METHOD_COLORS, PROMPT_EDGE, SOURCE, TARGET

FONT = {"fontFamily": "Source Sans Pro, sans-serif", "fontSize": 13}
# Diverging (cosines: blue opposite, red similar) and sequential (scores) colour ranges.
RED_BLUE = ["#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fddbc7", "#f4a582", "#d6604d", "#b2182b"]
VIRIDIS = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725"]
NAMED_MARKS = 25  # marked anchors named on the map; more are ringed without names (the names printed over each other)
TITLE_H, LEGEND_H = 26, 24  # pixels a title line and a legend line take above the plot
SHAPES = ["circle", "diamond", "triangle", "rect", "pin", "roundRect"]  # one per model pair in a scatter
SHAPE_GLYPHS = {"circle": "●", "diamond": "◆", "triangle": "▲", "rect": "■", "pin": "📍", "roundRect": "▢"}


def pair_shapes(pairs) -> dict[str, str]:
    """The marker shape of each model pair in `loss_vs_score` (its legend names methods, a caption names these)."""
    ordered = sorted({_text(p) for p in pairs})
    return {p: SHAPES[i % len(SHAPES)] for i, p in enumerate(ordered)}


LASSO_ICON = 14  # pixels; the maps' toolbox sits at their top left, lasso first


@dataclass(frozen=True)
class Chart:
    """An ECharts option object and the height to draw it at."""

    spec: dict
    height: int

    def series_named(self, name: str) -> dict:
        return next(s for s in self.spec["series"] if s.get("name") == name)


def _r(value: float, digits: int = 4) -> float | None:
    """JSON-safe rounding: NaN and infinities become null (ECharts leaves a gap), the rest a short decimal."""
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def _sig(value: float, digits: int = 4) -> float | None:
    """JSON-safe, to `digits` significant digits: a matching loss of 2.6e-6 stays 2.6e-6 (to 6 decimals it read 0)."""
    value = float(value)
    return float(f"{value:.{digits}g}") if math.isfinite(value) else None


def _one_decimal(value: float, hover: str = "") -> dict | None:
    """A bar whose label and hover read as the tables do ("1.0", where ECharts would print the number as "1");
    `hover`: the HTML before the value in its tooltip (escape any names in it)."""
    rounded = _r(value, 1)
    if rounded is None:
        return None
    return {
        "value": rounded,
        "label": {"formatter": f"{rounded:.1f}"},
        "tooltip": {"formatter": f"{hover}{rounded:.1f}"},
    }


def _text(value) -> str:
    """A table cell as text for a tooltip: a blank (NaN) cell is empty, not NaN (which is not JSON)."""
    return "" if value is None or value != value else str(value)


def _frame(spec: dict, height: int, title: str = "", legend: bool = False, right: int = 16, bottom: int = 8) -> Chart:
    """Title on its own line, the legend on the next one (sharing a line, they printed over each other), the plot
    below; axis labels stay inside the frame."""
    top = 8 + (TITLE_H if title else 0) + (LEGEND_H if legend else 0)
    frame = {
        "textStyle": FONT,
        "animation": False,  # a chart that is still moving is not settled, and the motion teaches nothing here
        "grid": {"left": 12, "right": right, "top": top + 14, "bottom": bottom, "containLabel": True},
    }
    if title:
        # 4 px down: at the very top the canvas cut the tops of its letters (h, l, f)
        frame["title"] = {"text": title, "left": 0, "top": 4, "textStyle": {"fontSize": 14, "fontWeight": "bold"}}
    if legend:
        frame["legend"] = {"top": 4 + (TITLE_H if title else 0), "right": 0}
    return Chart({**frame, **spec}, height)


def _colour_bar(lo: float, hi: float, colours: list[str], title: str, height: int, digits: int, **kw) -> dict:
    """A vertical colour scale at the right edge for the values in each data item's third entry, its title and its
    two ends written out (as the static pictures' scale: a bar without values told nothing)."""
    return {
        "type": "continuous", "dimension": 2, "min": lo, "max": hi, "inRange": {"color": colours},
        "calculable": False, "orient": "vertical", "right": 0, "top": "middle", "itemWidth": 10,
        "itemHeight": height, "text": [f"{title}\n{hi:.{digits}f}", f"{lo:.{digits}f}"], "itemGap": 6,
        "textStyle": {"lineHeight": 16},  # the title's and the top value's lines overlapped at ECharts' default
        "precision": digits, **kw,
    }  # fmt: skip


def _axis(name: str = "", **kw) -> dict:
    """An x axis, its name centred under the tick labels."""
    return {"type": "value", "name": name, "nameLocation": "middle", "nameGap": 26, **kw}


KEPT_LABEL_H = 14  # a line for the search chart's "kept: step n" label, between the plot and the axes' names


def _y_axis(name: str = "", right: bool = False, **kw) -> dict:
    """A y axis, its name above its top end: beside the tick labels, a name is cut off at the frame's edge (the
    frame holds the labels but not the name)."""
    style = {"align": "right" if right else "left", "padding": [0, -8, 0, 0] if right else [0, 0, 0, -8]}
    return {"type": "value", "name": name, "nameLocation": "end", "nameGap": 10, "nameTextStyle": style, **kw}


def thin_curve(rows: list[dict], max_points: int = 400) -> list[dict]:
    """At most ~`max_points` rows of a curve for drawing: every n-th, plus every dev check, the lowest loss and the
    last row. A 2,000-step search drawn whole cost the page ~0.4 s of script and a slower chart."""
    if len(rows) <= max_points:
        return rows
    every = -(-len(rows) // max_points)
    losses = [(r["loss"], i) for i, r in enumerate(rows) if r.get("loss") is not None]
    keep = {len(rows) - 1, *([min(losses)[1]] if losses else [])}
    return [r for i, r in enumerate(rows) if i % every == 0 or i in keep or r.get("dev_p_at_1") is not None]


def nice_step(rough: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k at or above `rough`: round tick spacing."""
    power = 10.0 ** np.floor(np.log10(max(rough, 1e-12)))
    return float(next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= rough - 1e-12))


def trajectory(
    rows: list[dict],
    title: str = "",
    x_label: str = "search step",
    score: str = "P@1",
    kept_step: int | None = None,
) -> Chart:
    """Matching (or training) loss per step; the dev score (P@1, or accuracy as `score` names it) as markers on a
    second, 0-based axis where it was computed; the step the run kept as a vertical line."""
    rows = thin_curve(rows)
    loss = [[r["step"], _sig(r["loss"])] for r in rows if r.get("loss") is not None]
    dev = [[r["step"], _r(r["dev_p_at_1"], 2)] for r in rows if r.get("dev_p_at_1") is not None]
    series = []
    if loss:
        series.append(
            {
                "type": "line",
                "name": "loss",
                "data": loss,
                "showSymbol": False,
                "yAxisIndex": 0,
                "itemStyle": {"color": TARGET},
                "lineStyle": {"width": 2, "color": TARGET},
            }
        )
    y_axes = [_y_axis("loss", min=0)]
    if dev:
        series.append(
            {
                "type": "line",
                "name": f"dev {score}",
                "data": dev,
                "yAxisIndex": 1,
                "symbolSize": 6,
                "itemStyle": {"color": SOURCE},
                "lineStyle": {"type": "dotted", "color": SOURCE},
            }
        )
        # Own round ticks from 0: a flat series would otherwise sit on an axis centred on it.
        top = max(5.0, 1.15 * max(v for _, v in dev if v is not None) if any(v is not None for _, v in dev) else 5.0)
        step = nice_step(top / 5)
        y_axes.append(
            _y_axis(
                f"dev {score} (%)",
                right=True,
                min=0,
                max=step * math.ceil(top / step),
                interval=step,
                splitLine={"show": False},
            )
        )
    marked = kept_step is not None and len(rows) > 1 and bool(series)
    if marked:
        series[0]["markLine"] = {
            "symbol": "none",
            "silent": True,
            "data": [{"xAxis": kept_step}],
            "lineStyle": {"type": "dashed", "color": "#555", "width": 1},
            "label": {"formatter": f"kept: step {kept_step}", "position": "end", "fontSize": 11},
        }
        # the axes' names a line higher: on one line, the kept step's label ran into them on a narrow page
        for axis in y_axes:
            axis["nameGap"] += KEPT_LABEL_H
    steps = [r["step"] for r in rows]
    spec = {
        "tooltip": {"trigger": "axis"},
        "xAxis": _axis(x_label, min=min(steps, default=0), max=max(steps, default=1)),
        "yAxis": y_axes,
        "series": series,
    }
    chart = _frame(spec, 320 + (KEPT_LABEL_H if marked else 0), title, legend=bool(dev), bottom=24)
    if marked:
        chart.spec["grid"]["top"] += KEPT_LABEL_H
    return chart


def norm_histogram(
    vocab_norms: list[float], prompt_norms: list[float], normalized: list[float] | None, title: str, color: str
) -> Chart:
    """The vocabulary's embedding norms as a histogram (log-spaced when they span more than 50×), the prompt
    vectors' norms as diamonds on vertical lines; `normalized`: the same vectors after the transfer's
    normalisation, hollow and dotted."""
    everything = [*vocab_norms, *prompt_norms, *(normalized or [])]
    log = _spread(everything)
    values = np.asarray(vocab_norms, dtype=float)
    positive = values[values > 0] if log else values
    lo, hi = (float(positive.min()), float(positive.max())) if positive.size else (0.0, 1.0)
    edges = np.geomspace(lo, hi, 61) if log and lo > 0 else np.linspace(lo, hi if hi > lo else lo + 1.0, 61)
    counts, _ = np.histogram(positive, bins=edges)
    centres = np.sqrt(edges[:-1] * edges[1:]) if log and lo > 0 else (edges[:-1] + edges[1:]) / 2
    series = [
        {
            "type": "line",
            "name": "vocabulary",
            "step": "middle",
            "showSymbol": False,
            "areaStyle": {"opacity": 0.9},
            "itemStyle": {"color": "#C9CED6"},
            "lineStyle": {"color": "#B3B9C2", "width": 1},
            "data": [[_r(c), int(n)] for c, n in zip(centres, counts)],
            "tooltip": {"formatter": "norm {@[0]}<br>{@[1]} tokens"},
        },
    ]

    def diamonds(name: str, norms: list[float], hollow: bool) -> dict:
        style = {"color": "#fff", "borderColor": color, "borderWidth": 2} if hollow else {"color": color}
        return {
            "type": "scatter",
            "name": name,
            "symbol": "diamond",
            "symbolSize": 12,
            "itemStyle": style,
            "z": 5,
            "data": [[_r(n, 2), 0, f"V{i + 1}"] for i, n in enumerate(norms)],
            "tooltip": {"formatter": "{@[2]}" + (" normalised" if hollow else "") + ": norm {@[0]}"},
            "markLine": {
                "symbol": "none",
                "silent": True,
                "label": {"show": False},
                "lineStyle": {"color": color, "width": 2, "type": "dotted" if hollow else "solid"},
                "data": [{"xAxis": _r(n, 4)} for n in norms],
            },
        }

    series.append(diamonds("prompt vectors", prompt_norms, hollow=False))
    if normalized is not None:
        series.append(diamonds("after normalisation", normalized, hollow=True))
    spec = {
        "tooltip": {"trigger": "item"},
        "xAxis": _axis("L2 norm" + (" (log scale)" if log else ""), type="log" if log else "value", scale=True),
        "yAxis": _y_axis("tokens"),
        "series": series,
    }
    return _frame(spec, 280, title, legend=True, bottom=24)


def _spread(values: list[float]) -> bool:
    positive = [v for v in values if v > 0]
    return bool(positive) and max(positive) / min(positive) > 50


BARE = {
    "type": "value",
    "scale": True,
    "axisLabel": {"show": False},
    "axisTick": {"show": False},
    "splitLine": {"show": False},
    "axisLine": {"show": False},
}


def relative_map(
    anchor_xy: np.ndarray,
    words: list[str],
    sims: np.ndarray,
    prompt_xy: np.ndarray,
    title: str,
    color: str,
    highlight: list[int] = (),
    selected: int = 0,
    bound: float | None = None,
) -> Chart:
    """Anchors (series 0) coloured by cosine to the selected prompt vector (over -bound..bound; by default as wide as
    the largest cosine shown, `sim_bound`); marked anchors ringed and named; prompt vectors as labelled diamonds. The
    lasso (polygon brush) selects anchors."""
    cos = f"cos to V{selected + 1}"
    frame = map_frame(anchor_xy, prompt_xy)
    bound = bound or sim_bound(sims)
    anchors = [[_r(x), _r(y), _r(s, 3), w] for (x, y), s, w in zip(frame["anchor_xy"], sims, words)]
    pinned = {"symbol": "emptyCircle", "itemStyle": {"borderWidth": 1.5}}  # far off, drawn at the frame's edge
    series = [
        {
            "type": "scatter",
            "name": "anchor words",
            "data": [{"value": a, **pinned} if far else a for a, far in zip(anchors, frame["pinned"])],
            "symbolSize": 7,
            "itemStyle": {"borderColor": "rgba(80,80,80,0.45)", "borderWidth": 0.6, "opacity": 0.9},
            "tooltip": {"formatter": "<b>{@[3]}</b><br>" + cos + ": {@[2]}"},
            "selectedMode": "multiple",  # a click marks one anchor, as the lasso marks many
        },
    ]
    if len(highlight):
        series.append(
            {
                "type": "scatter",
                "name": "marked",
                "data": [anchors[i] for i in highlight],
                "symbolSize": 13,
                "z": 4,
                "itemStyle": {"color": "rgba(0,0,0,0)", "borderColor": "#111", "borderWidth": 2},
                # named while few enough to read; a lasso around a crowd rings them only
                "label": {
                    "show": len(highlight) <= NAMED_MARKS,
                    "formatter": "{@[3]}",
                    "position": "top",
                    "color": "#111",
                },
                "tooltip": {"formatter": "<b>{@[3]}</b><br>" + cos + ": {@[2]}"},
            }
        )
    everything = np.vstack([frame["anchor_xy"], prompt_xy])
    texts, sides = prompt_labels(prompt_xy, everything)
    vectors = [
        {
            "value": [_r(x), _r(y), f"V{i + 1}"],
            "symbolSize": 16 if i == selected else 12,
            "label": {"show": bool(text), "formatter": text, "position": side},
        }
        for i, ((x, y), text, side) in enumerate(zip(prompt_xy, texts, sides))
    ]
    series.append(
        {
            "type": "scatter",
            "name": "prompt vectors",
            "data": vectors,
            "symbol": "diamond",
            "z": 5,
            # a dark edge: a source-blue or target-red diamond alone blended into the blue and red anchor dots
            "itemStyle": {"color": color, "borderColor": PROMPT_EDGE, "borderWidth": 1.5},
            # a white halo: over a dense cluster of anchor dots the bare label did not read
            "label": {
                "color": color,
                "fontSize": 13,
                "fontWeight": "bold",
                "textBorderColor": "#fff",
                "textBorderWidth": 3,
            },
            "tooltip": {"formatter": "<b>{@[2]}</b>"},
        }
    )
    spec = {
        "tooltip": {"trigger": "item"},
        # PCA/UMAP coordinates have no units: a framed, unlabelled plane.
        "xAxis": {**BARE, "min": _r(frame["lo"][0]), "max": _r(frame["hi"][0])},
        "yAxis": {**BARE, "min": _r(frame["lo"][1]), "max": _r(frame["hi"][1])},
        "series": series,
        "visualMap": _colour_bar(-bound, bound, RED_BLUE, cos, 180, digits=1, seriesIndex=0),
        # top left, the lasso first: clear of Streamlit's own hover toolbar at the top right
        "toolbox": {
            "left": 0,
            "top": 0,
            "itemSize": LASSO_ICON,
            "feature": {
                "brush": {
                    "type": ["polygon", "rect", "clear"],
                    "title": {"polygon": "Lasso", "rect": "Box", "clear": "Clear"},
                }
            },
        },
        "brush": {
            "toolbox": ["polygon", "rect", "clear"],
            "xAxisIndex": 0,
            "seriesIndex": [0],
            "brushType": "polygon",
            "throttleType": "debounce",
            "throttleDelay": 400,
            "brushStyle": {"borderWidth": 1, "color": "rgba(120,120,120,0.12)", "borderColor": "#777"},
        },
    }
    chart = _frame(spec, 420, right=72)
    chart.spec["grid"].update(show=True, borderColor="#E3E6EA", top=28)
    return chart


def sim_bound(sims: np.ndarray) -> float:
    """The colour scale's end (it runs from minus this to this, 0 white) for a map's cosines: their largest size
    rounded up to a tenth, at least 0.1. On -1..1 a real model's cosines to one vector (most within ±0.3) left
    nearly every dot pale."""
    finite = np.abs(np.asarray(sims, dtype=float))
    finite = finite[np.isfinite(finite)]
    top = float(finite.max()) if finite.size else 1.0
    return float(min(1.0, max(0.1, np.ceil(round(top * 10, 6)) / 10)))


def map_frame(anchor_xy: np.ndarray, prompt_xy: np.ndarray) -> dict:
    """The part of the plane a map draws: every prompt vector and the anchors, but for small groups set apart from
    the rest (`core_range`). UMAP set 19 of 1,000 anchors on an island far to the right, and a frame round them left
    the other 981 in a quarter of the map. Anchors outside the frame sit at its edge ("pinned", drawn hollow); the
    CSV keeps their true coordinates. Returns lo and hi (the frame, a 4 % margin added), the anchors' drawn positions
    and the pinned mask."""
    anchors = np.asarray(anchor_xy, dtype=float).reshape(-1, 2)
    prompts = np.asarray(prompt_xy, dtype=float).reshape(-1, 2)
    if len(anchors):
        lo, hi = np.array([core_range(anchors[:, 0]), core_range(anchors[:, 1])]).T
    else:
        lo, hi = np.full(2, np.inf), np.full(2, -np.inf)
    if len(prompts):
        lo, hi = np.minimum(lo, prompts.min(axis=0)), np.maximum(hi, prompts.max(axis=0))
    if not np.all(np.isfinite([lo, hi])):
        lo, hi = np.zeros(2), np.ones(2)
    pinned = np.any((anchors < lo) | (anchors > hi), axis=1)
    span = np.where(hi - lo > 1e-12, hi - lo, 1.0)
    return {
        "lo": lo - 0.04 * span,  # a margin, so no point sits on the frame
        "hi": hi + 0.04 * span,
        "anchor_xy": np.clip(anchors, lo, hi),
        "pinned": pinned,
    }


def core_range(values: np.ndarray, share: float = 0.05, band: float = 0.5) -> tuple[float, float]:
    """The values' range without a small group set apart at either end: at most `share` of them, beyond an empty
    band wider than `band` × the middle 90 %'s span (the innermost such band). A lone far point and an island are
    left out; a Gaussian crowd's tails are kept (their last gaps are a fraction of that span)."""
    v = np.sort(np.asarray(values, dtype=float))
    n = len(v)
    k = int(np.ceil(share * n))
    if n < 20 or k < 1:
        return float(v[0]), float(v[-1])
    gaps, wide = np.diff(v), band * (v[n - 1 - k] - v[k])
    if wide <= 0:  # most values equal: no band to measure against
        return float(v[0]), float(v[-1])
    low = [i + 1 for i in range(k) if gaps[i] > wide]
    high = [j for j in range(n - 1 - k, n - 1) if gaps[j] > wide]
    return float(v[max(low, default=0)]), float(v[min(high, default=n - 1)])


def prompt_labels(points: np.ndarray, everything: np.ndarray, share: float = 0.04) -> tuple[list[str], list[str]]:
    """(texts, sides): one label per cluster of prompt vectors, so labels never print over each other. Points closer
    than `share` of the map's span to a cluster's first point are named together ("V1, V2, V4"); the others carry no
    text. A label points into the map (to the left in its right half: at the edge they were cut off) and sits at
    its cluster's outermost point on that side, so it runs away from the cluster's diamonds, not over them."""
    span = float(np.ptp(everything, axis=0).max()) if len(everything) else 0.0
    middle = (everything[:, 0].min() + everything[:, 0].max()) / 2 if len(everything) else 0.0
    clusters: list[list[int]] = []
    for i, point in enumerate(points):
        home = next((c for c in clusters if np.linalg.norm(points[c[0]] - point) <= share * span), None)
        if home is None:
            clusters.append([i])
        else:
            home.append(i)
    texts, sides = [""] * len(points), ["right"] * len(points)
    for members in clusters:
        side = "left" if points[members, 0].mean() > middle else "right"
        outer = min(members, key=lambda i: points[i, 0]) if side == "left" else max(members, key=lambda i: points[i, 0])
        texts[outer] = ", ".join(f"V{i + 1}" for i in members)
        for i in members:
            sides[i] = side
    return texts, sides


def map_coordinates_csv(
    maps: list[tuple[str, str, dict]], words: list[str], marked: list[int] | set[int], marked_only: bool = False
) -> bytes:
    """The maps' 2-D coordinates as CSV: per (space, model, map) its anchors, then its prompt vectors V1…Vm, each with
    whether it is marked (lasso, box or *Find a token*; anchors only). `marked_only`: just the marked anchors. The
    `space` column (source or target) tells the two maps apart when both are one model's (self-transfer)."""
    import csv
    import io

    marked = set(marked)
    out = io.StringIO()
    rows = csv.writer(out, lineterminator="\n")
    rows.writerow(["space", "model", "kind", "label", "x", "y", "selected"])
    for space, model, drawn in maps:
        for i, (word, (x, y)) in enumerate(zip(words, drawn["anchor_xy"])):
            if i in marked or not marked_only:
                rows.writerow([space, model, "anchor", word, float(x), float(y), i in marked])
        if not marked_only:
            rows.writerows([space, model, "prompt", f"V{i + 1}", float(x), float(y), False]
                           for i, (x, y) in enumerate(drawn["prompt_xy"]))  # fmt: skip
    return out.getvalue().encode()


ROW_SCALE = "− mean, ÷ max"  # `per_row`: each side's pattern, its mean removed, ±1 its own largest deviation


def fingerprint_values(src: np.ndarray, tgt: np.ndarray, per_row: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """The fingerprint's two rows (raw cosines), the values it colours (`per_row`: each row's mean removed, scaled
    to its own largest size) and the colour range's half-width (symmetric about 0)."""
    raw = np.vstack([src, tgt])
    z = raw
    if per_row:
        z = raw - np.nanmean(raw, axis=1, keepdims=True)
        z = z / np.maximum(np.nanmax(np.abs(z), axis=1, keepdims=True), 1e-12)
    reach = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    return raw, z, max(reach, 1e-6)


FINGERPRINT_ROW_H = 18  # px a word: a strip of 40 words is ~780 px tall and needs ~340 px of width


def fingerprint(
    src: np.ndarray, tgt: np.ndarray, words: list[str], labels: tuple[str, str], per_row: bool = False
) -> Chart:
    """Two columns (source on the left, transferred on the right) of cosines to the same anchor words, a word a line.
    The colour range is the data's own (symmetric about 0), so the differences show even when every cosine sits in
    a narrow band (as on real models, whose embeddings share a common direction). `per_row`: each side's pattern,
    its mean removed and on its own scale (what the correlation r compares); hovering still reads the raw cosine.
    Words run down the side, level: as 40 slanted labels under a strip, they ran into each other on a 1024 px
    window."""
    raw, z, reach = fingerprint_values(src, tgt, per_row)
    # Row positions, not the words, as y: two anchors can print alike ("Paris" with and without a leading space),
    # and a category axis would merge them.
    cells = [
        [side, j, _r(z[side, j], 4), _r(raw[side, j], 3), words[j], labels[side]]
        for side in (0, 1)
        for j in range(len(words))
    ]
    spec = {
        "tooltip": {"trigger": "item", "formatter": "{@[5]}<br>anchor <b>{@[4]}</b>: cos {@[3]}"},
        "xAxis": {"type": "category", "data": list(labels), "position": "top", "axisTick": {"show": False}},
        "yAxis": {
            "type": "category",
            "data": list(words),
            "inverse": True,
            "axisLabel": {"fontSize": 12, "interval": 0},
            "axisTick": {"show": False},
        },
        "series": [
            {
                "type": "heatmap",
                "name": "cosines",
                "data": cells,
                "itemStyle": {"borderColor": "#fff", "borderWidth": 0.5},
            }
        ],
        "visualMap": _colour_bar(-reach, reach, RED_BLUE, ROW_SCALE if per_row else "cos", 160, digits=2),
    }
    return _frame(spec, FINGERPRINT_ROW_H * len(words) + 60, right=90)


def task_key(task) -> tuple:
    """Relations by their number (P17, P19, P101; as text P101 came before P17), then other tasks by name."""
    text = str(task)
    return (0, int(text[1:]), text) if text[:1] == "P" and text[1:].isdecimal() else (1, 0, text)


def grid_bars(agg, score: str = "P@1") -> Chart:
    """P@1 (or accuracy, as `score` names it) per method (bars), one group per target model; `agg` has target,
    method, p_at_1."""
    targets = list(dict.fromkeys(agg["target"]))
    series = []
    for method in sorted(agg["method"].unique(), key=method_order):
        part = dict(zip(agg.loc[agg["method"] == method, "target"], agg.loc[agg["method"] == method, "p_at_1"]))
        series.append(
            {
                "type": "bar",
                "name": method,
                "itemStyle": {"color": METHOD_COLORS.get(method)},
                # each bar's label its own "1.0": ECharts prints the number 1.0 as "1", the tables print 1.0
                "data": [
                    _one_decimal(part[t], f"{escape(method)}<br>target {escape(str(t))}: ") if t in part else None
                    for t in targets
                ],
                "label": {"show": True, "position": "top", "fontSize": 11},
            }
        )
    top = max(5.0, float(agg["p_at_1"].max()) * 1.15) if len(agg) else 5.0
    step = nice_step(top / 6)
    spec = {
        "tooltip": {"trigger": "item"},
        "xAxis": {"type": "category", "data": targets, "name": "target model", "nameLocation": "middle", "nameGap": 28},
        "yAxis": _y_axis(f"{score} (%)", min=0, max=step * math.ceil(top / step), interval=step),
        "series": series,
    }
    return _frame(spec, 380, legend=True, bottom=24)


HEAT_LABEL = 26  # characters of a relation's row label ("P1412 · languages spoken, …"); the tooltip has it all


def grid_heatmap(df, value: str = "p_at_1", score: str = "P@1", labels: dict | None = None) -> Chart:
    """Relation × method heat map of the mean score (P@1, or accuracy as `score` names it); `labels`: a relation's
    name by its id, shown beside the id."""
    table = df.pivot_table(index="relation", columns="method", values=value, aggfunc="mean")
    table = table.loc[sorted(table.index, key=task_key), sorted(table.columns, key=method_order)]
    labels = labels or {}
    named = {r: f"{r} · {labels[r]}" if r in labels else str(r) for r in table.index}
    rows = [n if len(n) <= HEAT_LABEL else n[: HEAT_LABEL - 1] + "…" for n in named.values()]
    cells = [
        [j, i, _r(v, 1), method, named[relation], f"{v:.1f}"]
        for i, (relation, row) in enumerate(zip(table.index, table.values))
        for j, (method, v) in enumerate(zip(table.columns, row))
        if v == v  # a method with no score for a relation is an empty cell, not 0
    ]
    finite = [c[2] for c in cells]
    spec = {
        "tooltip": {"trigger": "item", "formatter": "{@[4]} · {@[3]}: {@[5]}"},
        "xAxis": {"type": "category", "data": list(table.columns), "axisLabel": {"interval": 0, "rotate": 30}},
        "yAxis": {"type": "category", "data": rows, "inverse": True},
        "series": [
            {
                "type": "heatmap",
                "name": score,
                "data": cells,
                "label": {"show": True, "formatter": "{@[5]}", "fontSize": 11},  # "18.0", as in the tables
            }
        ],
        "visualMap": _colour_bar(min(finite, default=0), max(finite, default=1), VIRIDIS, score, 140, digits=1),
    }
    return _frame(spec, max(260, 26 * len(table) + 80), right=70)


def loss_vs_score(rows, score: str = "P@1") -> Chart:
    """One point per transfer: its final matching loss against its test score, one series per method; `rows` has
    matching_loss, p_at_1, method, relation, pair."""
    series = []
    shapes = pair_shapes(rows["pair"])
    for method in sorted(rows["method"].unique(), key=method_order):
        part = rows[rows["method"] == method]
        series.append(
            {
                "type": "scatter",
                "name": method,
                "itemStyle": {"color": METHOD_COLORS.get(method)},
                "symbolSize": 9,
                "data": [
                    # one marker shape per model pair, as the table's pair column
                    {"value": [_sig(x), _r(y, 1), _text(rel), _text(pair)], "symbol": shapes[_text(pair)]}
                    for x, y, rel, pair in zip(part["matching_loss"], part["p_at_1"], part["relation"], part["pair"])
                ],
                "tooltip": {"formatter": "{@[2]} · {@[3]}<br>loss {@[0]}, " + score + " {@[1]}"},
            }
        )
    spec = {
        "tooltip": {"trigger": "item"},
        "xAxis": _axis("final matching loss", scale=True),
        "yAxis": _y_axis(f"test {score} (%)", min=0),
        "series": series,
    }
    return _frame(spec, 380, legend=True, bottom=24)


def bars(categories: list[str], values: list[float], y_label: str, x_label: str = "", color: str = TARGET) -> Chart:
    """One bar per category, its value printed on top."""
    spec = {
        "tooltip": {"trigger": "item"},
        "xAxis": {
            "type": "category",
            "data": [str(c) for c in categories],
            "name": x_label,
            "nameLocation": "middle",
            "nameGap": 26,
        },
        "yAxis": _y_axis(y_label, min=0),
        "series": [
            {
                "type": "bar",
                "name": y_label,
                "data": [_one_decimal(v, f"{escape(str(c))}: ") for c, v in zip(categories, values)],
                "itemStyle": {"color": color},
                "label": {"show": True, "position": "top", "fontSize": 11},
            }
        ],
    }
    return _frame(spec, 300, bottom=24 if x_label else 8)
