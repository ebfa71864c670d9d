"""The Relative space page's maps and fingerprint as static SVG pictures (the page's first view).

A page with the interactive ECharts maps settled ~2.1 s after a warm load on two cores, against ~0.7 s for a
one-title page: the ECharts bundle alone costs ~0.4 s (`benchmarks/first_paint.py --anatomy --blocks ECharts`). The
same points as a picture cost the browser a few milliseconds, so the page opens on pictures and draws the charts (hover,
zoom, lasso) when asked. They show what the charts show, from the same inputs and colour scales (`charts`)."""

from __future__ import annotations

from html import escape

import numpy as np

from .charts import NAMED_MARKS, RED_BLUE, ROW_SCALE, fingerprint_values, map_frame, prompt_labels, sim_bound
from .palette import PROMPT_EDGE

TEXT, MUTED, FRAME, NAN_GREY = "#31333F", "#808495", "#E3E6EA", "#cccccc"
HALO = 'stroke="#fff" stroke-width="3" paint-order="stroke"'  # a label over dense dots reads on a white outline
FONT = "font-family:'Source Sans Pro',sans-serif;font-size:{size}px"
# A map is drawn 640 px wide and shown at 460 (MAP_WIDTH): its words are 16 px to be read at 11.5 px there.
MAP_FONT, MAP_LABEL_FONT = 16, 17
FINGERPRINT_WIDTH = 380  # px, as drawn and as shown
WORD_CHARS = 18  # a fingerprint word longer than this is cut, with "…" (the interactive chart's hover has it whole)


def colour(value: float, lo: float, hi: float, colours: list[str] = RED_BLUE) -> str:
    """The colour of `value` on a continuous scale from `lo` to `hi` through evenly spaced `colours` (as ECharts'
    continuous visualMap interpolates them); a NaN is grey."""
    if not np.isfinite(value):
        return NAN_GREY
    t = min(max((float(value) - lo) / (hi - lo), 0.0), 1.0) if hi > lo else 0.5
    where = t * (len(colours) - 1)
    i = min(int(where), len(colours) - 2)
    a, b = (tuple(int(c[k : k + 2], 16) for k in (1, 3, 5)) for c in colours[i : i + 2])
    frac = where - i
    return "#" + "".join(f"{round(x + (y - x) * frac):02x}" for x, y in zip(a, b))


_SCALE = [colour(v, -1, 1) for v in np.linspace(-1, 1, 257)]


def _steps(values: np.ndarray) -> list[int]:
    """Each cosine's step in `_SCALE` (clipped to -1..1), or -1 for a NaN."""
    steps = np.rint((np.clip(np.nan_to_num(values, nan=0.0), -1, 1) + 1) * 128).astype(int)
    return np.where(np.isfinite(values), steps, -1).tolist()


def _svg(width: int, height: int, body: list[str], label: str, font_size: int = 12) -> str:
    """A framed figure on white, so it reads the same on a light and a dark theme (a picture cannot take the page's
    colours)."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(label)}" style="{FONT.format(size=font_size)}">'
        f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" rx="6" fill="#fff" stroke="{FRAME}"/>'
        + "".join(body)
        + "</svg>"
    )


def _colour_bar(
    x: float, top: float, height: float, lo: float, hi: float, title: str, digits: int, font: int = 12
) -> list[str]:
    """A vertical colour scale, `hi` on top, with its two ends and its title written out, spaced for `font` px text
    (the picture's own size)."""
    stops = "".join(
        f'<stop offset="{i / (len(RED_BLUE) - 1):.3f}" stop-color="{c}"/>' for i, c in enumerate(reversed(RED_BLUE))
    )
    return [
        f'<defs><linearGradient id="scale" x1="0" y1="0" x2="0" y2="1">{stops}</linearGradient></defs>',
        f'<text x="{x + 5}" y="{top - font - 7}" text-anchor="middle" fill="{MUTED}">{escape(title)}</text>',
        f'<text x="{x + 5}" y="{top - 4}" text-anchor="middle" fill="{MUTED}">{hi:.{digits}f}</text>',
        f'<rect x="{x}" y="{top}" width="10" height="{height}" fill="url(#scale)"/>',
        f'<text x="{x + 5}" y="{top + height + font + 1}" text-anchor="middle" fill="{MUTED}">{lo:.{digits}f}</text>',
    ]


def map_svg(
    anchor_xy: np.ndarray,
    words: list[str],
    sims: np.ndarray,
    prompt_xy: np.ndarray,
    color: str,
    highlight: list[int] = (),
    selected: int = 0,
    width: int = 640,
    height: int = 420,
    bound: float | None = None,
) -> str:
    """`charts.relative_map` as a picture: anchors coloured by cosine to the selected vector (blue to red over
    -bound..bound; by default as wide as the largest cosine shown, `charts.sim_bound`),
    marked anchors ringed (and named while they are few), prompt vectors as labelled diamonds."""
    left, top, right, bottom = 14, 14, 84, 14  # the colour bar sits in the right margin
    plot_w, plot_h = width - left - right, height - top - bottom
    frame = map_frame(anchor_xy, prompt_xy)
    anchor_xy = frame["anchor_xy"]  # far-off anchors pinned to the frame's edge, drawn hollow
    everything = np.vstack([anchor_xy, prompt_xy]) if len(prompt_xy) else anchor_xy
    lo, span = frame["lo"], frame["hi"] - frame["lo"]

    def at(points) -> np.ndarray:
        unit = (np.asarray(points, dtype=float).reshape(-1, 2) - lo) / span
        return np.column_stack([left + unit[:, 0] * plot_w, top + (1 - unit[:, 1]) * plot_h])

    body = [f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="{FRAME}"/>']
    body.append('<g stroke="rgba(80,80,80,0.45)" stroke-width="0.6" fill-opacity="0.9">')
    # whole arrays at once, colours from a 257-step table: a point at a time took 20 ms a 1,000-anchor map, now 2.5
    bound = bound or sim_bound(sims)
    fills = [_SCALE[i] if i >= 0 else NAN_GREY for i in _steps(np.asarray(sims, dtype=float) / bound)]
    dots = zip(at(anchor_xy).tolist(), fills, frame["pinned"].tolist())
    body += [
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="none" stroke="{fill}" stroke-width="1.5"/>'
        if far
        else f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{fill}"/>'
        for (x, y), fill, far in dots
    ]
    body.append("</g>")
    named = len(highlight) <= NAMED_MARKS
    for i in highlight:
        x, y = at(anchor_xy[i])[0]
        body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6.5" fill="none" stroke="#111" stroke-width="2"/>')
        if named:
            body.append(
                f'<text x="{x:.1f}" y="{y - 9:.1f}" text-anchor="middle" fill="#111" {HALO}>{escape(words[i])}</text>'
            )
    texts, sides = prompt_labels(prompt_xy, everything)
    for i, (point, text, side) in enumerate(zip(prompt_xy, texts, sides)):
        x, y = at(point)[0]
        r = 8 if i == selected else 6
        body.append(
            f'<polygon points="{x:.1f},{y - r:.1f} {x + r:.1f},{y:.1f} {x:.1f},{y + r:.1f} {x - r:.1f},{y:.1f}" '
            f'fill="{color}" stroke="{PROMPT_EDGE}" stroke-width="1.5"/>'
        )
        if text:
            dx, anchor = (-(r + 4), "end") if side == "left" else (r + 4, "start")
            body.append(
                f'<text x="{x + dx:.1f}" y="{y + 5:.1f}" text-anchor="{anchor}" fill="{color}" '
                f'font-size="{MAP_LABEL_FONT}" font-weight="bold" {HALO}>{escape(text)}</text>'
            )
    body += _colour_bar(width - 45, top + 60, 180, -bound, bound, f"cos to V{selected + 1}", 1, MAP_FONT)
    return _svg(width, height, body, "map of the anchor words and the prompt vectors", MAP_FONT)


def fingerprint_svg(
    src: np.ndarray, tgt: np.ndarray, words: list[str], labels: tuple[str, str], per_row: bool = False
) -> str:
    """`charts.fingerprint` as a picture: two columns of cells (source on the left) beside the same anchor words, a
    word a line, on the same colour scale. Drawn at the width it is shown at (FINGERPRINT_WIDTH), so its 12 px words
    are 12 px on screen."""
    _, z, reach = fingerprint_values(src, tgt, per_row)
    width, words_right, cell_w, top, row_h = FINGERPRINT_WIDTH, 128, 68, 30, 18  # the scale sits right of the cells
    scale_top, scale_h = top + 60, 160
    # tall enough for the scale when the strip is short
    height = max(top + row_h * len(words) + 12, scale_top + scale_h + 24)
    body = []
    for side in (0, 1):
        x = words_right + 8 + side * cell_w
        body.append(
            f'<text x="{x + cell_w / 2:.1f}" y="{top - 10}" text-anchor="middle" fill="{TEXT}">'
            f"{escape(labels[side])}</text>"
        )
        for j in range(len(words)):
            body.append(
                f'<rect x="{x}" y="{top + j * row_h}" width="{cell_w}" height="{row_h}" '
                f'fill="{colour(z[side, j], -reach, reach)}" stroke="#fff" stroke-width="0.5"/>'
            )
    for j, word in enumerate(words):
        y = top + (j + 0.5) * row_h + 4
        shown = word if len(word) <= WORD_CHARS else word[: WORD_CHARS - 1] + "…"  # a long token fits the margin
        body.append(f'<text x="{words_right}" y="{y:.1f}" text-anchor="end" fill="{TEXT}">{escape(shown)}</text>')
    # the scale's title, centred on it, clears the cells and the picture's edge even in a wider fallback font (an
    # <img> of an SVG cannot use the page's font)
    scale_x = words_right + 8 + 2 * cell_w + 44
    body += _colour_bar(scale_x, scale_top, scale_h, -reach, reach, ROW_SCALE if per_row else "cos", 2)
    return _svg(width, height, body, "fingerprint of the prompt vector")
