"""Nearest tokens: what each prompt vector is close to, in the source and in the target vocabulary; vector norms."""

import pandas as pd
import streamlit as st

from ptfer_app import charts, palette, services, ui, wording
from ptfer_app.html_table import html_table
from ptfer_core.config import METHOD_LABELS

PANEL_WIDTH = 440  # px: the two sides (lists, histograms) abreast on a wide page, stacked at 800 px


def glance(src: pd.DataFrame, tgt: pd.DataFrame, n: int = 4) -> pd.DataFrame:
    """One row per vector: its n nearest tokens in each vocabulary."""

    def top(table):
        near = table[table["rank"] <= n]
        return (
            near.assign(token=wording.shown_words(near["token"]))
            .groupby("vector", sort=False)["token"]
            .apply(", ".join)
        )

    out = pd.DataFrame({"source": top(src), "transferred": top(tgt)})
    return out.loc[sorted(out.index, key=lambda v: int(v[1:]))]


def detail(table: pd.DataFrame, vector: str) -> pd.DataFrame:
    rows = table[table["vector"] == vector][["rank", "token", "cosine"]]
    return rows.assign(token=wording.shown_words(rows["token"]))


def norm_line(norms: dict) -> str:
    """The prompt vectors' lengths against the vocabulary's, in one line (the histograms are one click away)."""
    import numpy as np

    prompt, vocab = np.asarray(norms["prompt_norms"]), np.asarray(norms["vocab_norms"])
    low, mid, high = np.percentile(vocab, [5, 50, 95])
    inside = int(((prompt >= low) & (prompt <= high)).sum())
    # One number of decimals for the whole line, enough to tell the range's ends apart: Gemma's token lengths all
    # round to 26.1 at three significant digits ("within 26.1–26.1", beside vectors of 25.8–27.4).
    places = next((d for d in range(1, 5) if f"{low:.{d}f}" != f"{high:.{d}f}"), 4)
    f = lambda v: f"{v:.{places}f}"
    return (
        f"Vector lengths {f(prompt.min())}–{f(prompt.max())}; the vocabulary's median is {f(mid)}, 90 % of its "
        f"tokens lie within {f(low)}–{f(high)}: {inside} of {len(prompt)} vectors are as long as a real token."
    )


def body() -> None:
    ui.header(
        "Nearest tokens",
        "Which vocabulary tokens each prompt vector points at, and whether its length looks like a real token's.",
        ui.outcome(),
    )
    result = ui.require_outcome("This page")
    c1, c2, _ = st.columns([3, 3, 3], vertical_alignment="bottom")
    k = ui.bound(c1.slider, "Tokens per vector", "nn_k", 8, min_value=3, max_value=20)
    source_idx = 0
    if len(result.sources) > 1:
        source_idx = c2.selectbox(
            "Source", range(len(result.sources)), format_func=lambda i: result.sources[i], key="nn_src"
        )
    source, src_prompt, tgt_prompt = result.sources[source_idx], result.source_prompts[source_idx], result.transferred
    # A preset's lists are recorded with it; otherwise the first view after a start loads the models too.
    with st.spinner("Finding nearest tokens…"):
        src_key, tgt_key = ui.digest(src_prompt.vectors), ui.digest(tgt_prompt.vectors)
        src_table = services.nearest_table(source, src_key, src_prompt.vectors, k)
        tgt_table = services.nearest_table(result.target, tgt_key, tgt_prompt.vectors, k)
    method = METHOD_LABELS.get(result.method, result.method)

    overview = glance(src_table, tgt_table).rename_axis("vector")
    overview.columns = [f"source prompt · {source} vocabulary", f"{method.lower()} prompt · {result.target} vocabulary"]
    parts = [ui.text_html("**At a glance**"), html_table(overview)]  # a few words per vector: no data grid to paint
    if result.discretized_tokens:  # the discretisation baseline searched fewer words than these lists do
        discretized = wording.shown_words(result.discretized_tokens)
        searched = (
            f"every token of {source}'s vocabulary (both lists: a self-transfer), pieces of words too"
            if source == result.target
            else f"every token of each model's vocabulary ({source}'s on the left, {result.target}'s on the right), "
            "pieces of words and tokens the other model lacks too"
        )
        parts.append(
            ui.text_html(
                "The discretised prompt (Transfer) replaces each source vector by its nearest *shared word*, a whole "
                f"word that is one token in both models: {ui.literal(', '.join(discretized))}. These "
                f"lists search {searched}, so their first entries can differ.",
                caption=True,
            )
        )
    ui.block(*parts)

    vectors = [f"V{i + 1}" for i in range(tgt_prompt.n_vectors)]
    vector = ui.bound(st.segmented_control, "Vector", "nn_vec", "V1", options=vectors, required=True)
    sides = (
        ("Source prompt", source, src_table, src_prompt, palette.SOURCE),
        (f"{method} prompt", result.target, tgt_table, tgt_prompt, palette.TARGET),
    )
    for col, (title, model, table, prompt, color) in zip(ui.panels([PANEL_WIDTH] * 2), sides):
        ui.block(  # one block, not three: each element is drawing time (`ui.block`)
            ui.text_html(f"**{title}** · {vector} in the {model} vocabulary"),
            ui.bar_table_html(detail(table, vector), "cosine", color=palette.TINT[color]),
            ui.text_html(norm_line(services.norms(model, ui.digest(prompt.vectors), prompt.vectors)), caption=True),
            where=col,
        )
    # Lazy: closed, the two histograms are not drawn (as plotly charts they were ~1 s of this page's first paint).
    box = st.expander("Vector norms against the vocabulary (histograms)", key="nn_hist", on_change="rerun")
    if box.open:
        with box:
            show_norm = ui.bound(
                st.toggle,
                "Show norms after normalisation",
                "nn_norm",
                False,
                help="Hollow diamonds: the same vectors standardised and rescaled to the model's embedding "
                "statistics, which is what the transfer's normalisation does.",
            )
            for col, (title, model, _, prompt, color) in zip(ui.panels([PANEL_WIDTH] * 2), sides):
                norms = services.norms(model, ui.digest(prompt.vectors), prompt.vectors)
                fig = charts.norm_histogram(
                    norms["vocab_norms"],
                    norms["prompt_norms"],
                    norms["normalized_norms"] if show_norm else None,
                    f"Vector norms vs the {model} vocabulary",
                    color,
                )
                ui.chart(fig, f"norms_{title}", col)

    def nearest_csv() -> bytes:  # built when clicked, not on every run
        both = pd.concat(
            [
                src_table.assign(prompt="source", model=source),
                tgt_table.assign(prompt=result.method, model=result.target),
            ]
        )
        return both[["prompt", "model", "vector", "rank", "token", "cosine"]].to_csv(index=False).encode()

    st.download_button(
        "Download all nearest tokens (.csv)",
        nearest_csv,
        ui.file_name("nearest_tokens", source, result.target, result.task.id, "csv"),
        "text/csv",
        key="nn_csv",
        on_click="ignore",
        icon=":material/download:",
    )


ui.guard(body)
