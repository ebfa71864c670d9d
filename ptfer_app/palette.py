"""The app's colours, and the Home page's score bars as inline SVG.

No numpy, pandas or plotly here: the Home page imports only this, so a fresh server's first page does not wait ~1 s
for them (`charts` builds the charts and takes its colours from here)."""

from __future__ import annotations

from html import escape

SOURCE, TARGET = "#4C78A8", "#E4572E"
PROMPT_EDGE = "#111"  # the prompt vectors' diamonds on the maps, whose anchor dots run from blue to red
TINT = {SOURCE: "#B9CCE0", TARGET: "#F4B6A6"}  # light versions, for bars behind table text
METHOD_COLORS = {
    "transfer": "#E4572E",
    "self-transfer": "#F28E2B",
    "dual-source": "#B2182B",
    "direct-transfer": "#F2A541",
    "manual": "#4C78A8",
    "discretization": "#72B7B2",
    "random": "#BAB0AC",
    "projector": "#9D7660",
    "direct-tuning": "#54A24B",
}


def scores_svg(scores: dict, labels: dict, width: int = 320, text_color: str = "currentColor") -> str:
    """The compact preset-card bars as inline SVG (one 0-100 scale, so bars compare across cards).

    The Home page shows one card per preset; as plotly charts they made the page settle seconds after its script
    finished (plotly.js renders each one), as SVG they cost the browser nothing. Drawn as an <img>, the SVG cannot
    inherit the page's text colour: `text_color` then sets one that reads on a light and a dark theme."""
    order = [m for m in ("transfer", "direct-transfer", "manual", "discretization", "random") if m in scores]
    row, label_w, value_w = 24, 92, 40
    bar_w = width - label_w - value_w
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="100%" viewBox="0 0 {width} {row * len(order)}" '
        f'role="img" aria-label="scores" style="max-width:{width}px;font:12px sans-serif">'
    ]
    for i, method in enumerate(order):
        value = float(scores[method]["p_at_1"])
        y, length = i * row, bar_w * min(max(value, 0.0), 100.0) / 100.0
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end" fill="{text_color}">'
            f"{escape(labels.get(method, method))}</text>"
            f'<rect class="bar" data-method="{method}" x="{label_w}" y="{y + 4}" width="{length:.1f}" '
            f'height="{row - 8}" fill="{METHOD_COLORS.get(method, "#999")}"/>'
            f'<text x="{label_w + length + 4:.1f}" y="{y + 16}" fill="{text_color}">{value:.1f}</text>'
        )
    return "".join(parts) + "</svg>"
