"""Small static tables as plain HTML, drawn with st.html.

st.table renders every cell through Streamlit's markdown component: three 9 x 3 tables took a warm page from 0.64 to
0.94 s on two cores, the same tables as HTML 0.82 s (`benchmarks/first_paint.py --anatomy --blocks tables:`). The
pages' tables are a few dozen cells of words and numbers, which need no markdown. No Streamlit, numpy or pandas
here: a frame is read through its `columns`, `index` and `itertuples`.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable
from html import escape

# Neutral greys (a border and a header that read on a light and on a dark theme), Streamlit's small text size.
TABLE = "border-collapse:collapse;width:100%;font-size:0.875rem;margin-bottom:1rem"
CELL = "padding:0.25rem 0.5rem;border:1px solid rgba(128,128,128,0.25)"
HEAD = CELL + ";font-weight:400;opacity:0.7;text-align:left"


def _text(value, fmt: Callable | None) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "—"
    return fmt(value) if fmt is not None else str(value)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)  # numpy's scalars too


def unbroken(text: str) -> str:
    """Escaped, with hyphenated words kept whole: a header broke a model's name after its hyphen ("smollm2-/135m")."""
    return re.sub(r"\S+-\S+", lambda m: f'<span style="white-space:nowrap">{m.group(0)}</span>', escape(text))


def html_table(
    frame,
    *,
    formats: dict[str, Callable] | None = None,
    default_format: Callable | None = None,
    bar: str | None = None,
    bar_color: str = "#F4B6A6",
    index: bool = True,
) -> str:
    """`frame` as an HTML table: its index as the first column (named by the index's name) unless `index` is False;
    each column's cells through `formats[column]`, else `default_format`, else str (NaN reads "—"); numbers right
    aligned. `bar`: a column of shares in 0..1, drawn as an in-cell bar behind the number."""
    formats = formats or {}
    columns = [str(c) for c in frame.columns]
    rows_in = list(frame.itertuples(index=True, name=None))
    # a column of numbers has its header over them, on the right (it sat ~400 px left of them in a wide table)
    numeric = [bool(rows_in) and all(_is_number(r[i + 1]) for r in rows_in) for i in range(len(columns))]
    head = ([f'<th style="{HEAD}">{escape(str(frame.index.name or ""))}</th>'] if index else []) + [
        f'<th style="{HEAD}{";text-align:right" if number else ""}">{unbroken(c)}</th>'
        for c, number in zip(columns, numeric)
    ]
    rows = []
    for label, *values in rows_in:
        cells = [f'<td style="{CELL}">{escape(str(label))}</td>'] if index else []
        for column, value in zip(columns, values):
            text = escape(_text(value, formats.get(column, default_format)))
            style = CELL
            number = _is_number(value)
            if number:
                style += ";text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap"
            else:  # a long token ("ManagementPlaneProtection") breaks, not widens the table past its column
                style += ";overflow-wrap:anywhere"
            if column == bar and number and not math.isnan(value):
                share = 100 * min(max(float(value), 0.0), 1.0)
                # no-repeat: the gradient's tile starts again under the right border, a 1 px line of bar colour
                style += (
                    f";background:linear-gradient(90deg,{bar_color} {share:.1f}%,transparent {share:.1f}%) no-repeat"
                )
            cells.append(f'<td style="{style}">{text}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    marker = ' data-index="1"' if index else ""  # the first column is the frame's index (for readers and tests)
    return (
        f'<table style="{TABLE}"{marker}><thead><tr>{"".join(head)}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )
