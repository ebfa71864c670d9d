"""Relative space: the same anchor words mapped in the source and in the target model, with the prompt vectors."""

import numpy as np
import streamlit as st

from ptfer_app import charts, palette, services, static_charts, ui, wording
from ptfer_core.config import METHOD_LABELS

N_POINTS = [300, 1000, 2000]
STRIP = 40  # anchors shown in the fingerprint strip
MAP_WIDTH = 460  # px: two maps side by side on a 1440 px page with the sidebar open; one above the other when narrower
TEXT_WIDTH = 440  # px: the fingerprint's explanation beside its strip


def selected_anchors(key: str) -> list[int]:
    """Anchor indices picked with the lasso or the box in a map (series 0 holds the anchors)."""
    state = st.session_state.get(key)
    try:
        groups = state["selection"]["selected"]
    except (KeyError, TypeError):
        return []
    return [i for group in groups if group.get("series_index") == 0 for i in group.get("data_indices", [])]


def body() -> None:
    ui.header(
        "Relative space",
        "Each point is an anchor word, placed by its cosine similarities to all anchors "
        "inside one model. Both maps use the same anchor words, so they can be compared.",
        ui.outcome(),
    )
    result = ui.require_outcome("This page")
    source = result.sources[0]
    m = result.transferred.n_vectors
    controls = ui.row(align="top")  # the labels in line: the text box is taller than the buttons
    method = ui.bound(
        controls.segmented_control,
        "Projection",
        "proj",
        "pca",
        options=["pca", "umap"],
        required=True,
        format_func=str.upper,
        help="PCA is instant. UMAP (seeded with the sidebar seed) shows local neighbourhoods "
        "better; the first map takes a while, then it is cached.",
    )
    # Buttons, not drop-down lists: one click to switch, and a browser draws them faster (`docs/benchmarks.md`).
    # No choice that shows the same map as another: a run with fewer anchors offers "all" of them instead.
    n_anchors = int(result.transferred.provenance.get("n_anchors") or N_POINTS[-1])
    sizes = [n for n in N_POINTS if n < n_anchors] + ([n_anchors] if n_anchors <= N_POINTS[-1] else [])
    n_points = ui.bound(
        controls.segmented_control,
        "Anchors shown",
        "npts",
        1000 if 1000 in sizes else sizes[-1],
        options=sizes,
        required=True,
        format_func=lambda v: f"all {v:,}" if v == n_anchors else f"{v:,}",
        disabled=len(sizes) == 1,
        help=f"This run has {n_anchors:,} anchors: the maps show them all."
        if len(sizes) == 1
        else "Anchors of the run's anchor set: its most frequent words when it is ranked by frequency; spread evenly "
        "over it when it is the common vocabulary, which is alphabetical.",
    )
    vec = ui.bound(
        controls.segmented_control if m <= 8 else controls.selectbox,
        "Colour by vector",
        "vec",
        0,
        options=list(range(m)),
        format_func=lambda i: f"V{i + 1}",
        help="Anchors are coloured by their cosine to this prompt vector.",
        **({"required": True} if m <= 8 else {"width": 160}),
    )
    find = ui.bound(
        controls.text_input,
        "Find a token",
        "find",
        "",
        placeholder="e.g. Paris",
        help="Rings matching anchor words in both maps; a word not among the anchors shown is placed on them too.",
        width=220,
    )
    live = ui.bound(
        st.toggle,
        "Interactive charts: hover, zoom, lasso",
        "live",
        False,
        help="Off: the maps and the fingerprint are pictures, which a browser draws at once. On: charts that name "
        "the word under the pointer, zoom, and select anchors with a lasso or a box (the browser then loads the chart "
        "library, which takes it a moment).",
    )
    data_dir = services.data_dir_for([*result.sources, result.target])
    anchor_spec = services.anchor_spec(result, data_dir)  # the run's anchors; a preset's maps are recorded with it
    anchor_set = services.anchor_summary(anchor_spec)
    transfer = result.settings.get("transfer", {})
    mode, top_k = transfer.get("space", "raw"), transfer.get("top_k")
    seed = ui.selection().seed
    with st.spinner(
        "Projecting…"
        if method == "pca"
        else "Running UMAP… (its kernels compile in the background when the server starts; the first map can "
        "still wait for them). After that, maps are cached."
    ):
        src_map, tgt_map = (
            services.relative_map(
                model, anchor_spec, mode, ui.digest(prompt.vectors), prompt.vectors, n_points, method, seed
            )
            for model, prompt in ((source, result.source_prompts[0]), (result.target, result.transferred))
        )
    words = src_map["words"]
    # Keyed by what the maps show: a chart keeps its selection's indices when its data changes, and indices into
    # 1,000 anchors mean other words (or none) in 300 or under another projection.
    shown = f"{method}_{n_points}_{anchor_set['key']}"
    keys = (f"map_src_{shown}", f"map_tgt_{shown}")
    highlight = {i for key in keys for i in selected_anchors(key) if i < len(words)}
    if find.strip():
        maps = (
            (src_map, source, result.source_prompts[0].vectors),
            (tgt_map, result.target, result.transferred.vectors),
        )
        place = lambda model, vectors, indices: services.placed_anchors(
            model, anchor_spec, mode, ui.digest(vectors), vectors, n_points, method, seed, indices
        )
        # Every anchor word loads the models: asked for only when a word is not among those shown, and not at all
        # when the maps show every anchor.
        every_word = (
            (lambda: words) if len(words) == anchor_set["count"] else (lambda: services.anchor_words(anchor_spec))
        )
        words, matches = find_anchors(find.strip(), words, every_word, maps, place)
        highlight |= set(matches)
    highlight = sorted(highlight)[:200]
    target_prompt = f"{METHOD_LABELS.get(result.method, result.method).lower()} prompt"
    maps = (
        ("Source space", source, "source prompt", src_map, palette.SOURCE, keys[0]),
        ("Target space", result.target, target_prompt, tgt_map, palette.TARGET, keys[1]),
    )
    # one colour scale for both maps, so that a colour means one cosine in either
    bound = charts.sim_bound(np.concatenate([drawn["anchor_sim"][:, vec] for *_, drawn, _, _ in maps]))
    shown_words = wording.shown_words(words)  # both maps show the same anchor words
    for col, (space, model, prompt, drawn, color, key) in zip(ui.panels([MAP_WIDTH] * 2, "medium"), maps):
        title = ui.text_html(f"**{space}** · {model} · {prompt}")
        drawing = (drawn["anchor_xy"], shown_words, drawn["anchor_sim"][:, vec], drawn["prompt_xy"])
        if live:
            ui.block(title, where=col)
            chart = charts.relative_map(*drawing, f"{space} · {model}", color, highlight, vec, bound=bound)
            ui.chart(chart, key, col, selectable=True)
        else:  # the title and the picture as one element (`ui.block`)
            picture = static_charts.map_svg(*drawing, color, highlight, vec, bound=bound)
            alt = f"{space}: map of the anchor words and the prompt vectors"
            ui.block(title, ui.svg_image(picture, alt), where=col)
    variance = (
        " UMAP is fitted on each model's anchors alone, so the two maps' layouts differ; each prompt vector sits at "
        "the weighted centre of the 15 anchors whose similarity profiles are closest to its own."
    )
    if src_map["explained"] and tgt_map["explained"]:
        variance = (
            f" PCA keeps {sum(src_map['explained']):.0%} of the anchors' variance in the source map and "
            f"{sum(tgt_map['explained']):.0%} in the target map (axis 1 + axis 2): the rest is not shown."
        )
    st.caption(
        f"Dots: anchor words ({mode} similarities to all {anchor_set['count']:,} anchors), coloured by their "
        "similarity to the chosen vector (red: similar, blue: opposite; one scale for both maps, as wide as the "
        "largest cosine shown, its ends on the colour bars). Diamonds: the prompt vectors. "
        + (
            "Pick the lasso (or the box) at the map's top left and draw around anchors in either map to mark the same "
            "words in the other (double-click to clear); hover to read a word and its similarity."
            if live
            else "*Find a token* rings a word in both maps; turn on *Interactive charts* to read the word under the "
            "pointer, zoom, or mark anchors with a lasso."
        )
        + variance
        + pinned_note(src_map, tgt_map)
    )
    export(src_map, tgt_map, words, highlight, source, result.target, result.task.id, method, live)

    st.subheader("Fingerprint", anchor=False)
    fingerprint = services.fingerprint_view(
        source,
        result.target,
        anchor_spec,
        mode,
        top_k,
        ui.digest(result.source_prompts[0].vectors),
        result.source_prompts[0].vectors,
        ui.digest(result.transferred.vectors),
        result.transferred.vectors,
        STRIP,
    )["vectors"]
    agreement = [v["match"] for v in fingerprint]
    # One metric and one line, not a metric per vector: each metric is a block the browser draws.
    line = ui.row(gap="large")
    line.metric(
        "Mean match",
        f"{np.mean(agreement):.3f}",
        help="Cosine between the source and the transferred "
        "relative encodings (1 = identical), averaged over vectors. The search maximises this.",
        width="content",
    )
    line.markdown("Per vector: " + " · ".join(f"**V{i + 1}** {a:.3f}" for i, a in enumerate(agreement)))
    per_row = st.toggle(
        "Each column's pattern (its mean removed, own colour scale)",
        value=True,
        key="fp_rows",
        help="Which words stand out in each column, whatever the column's size and common offset: what the "
        "correlation r in the explanation compares. Off: the raw cosines on one shared scale, which show how much "
        "larger one model's similarities are.",
    )
    shown_vector = fingerprint[vec]
    strip = (
        shown_vector["source"],
        shown_vector["target"],
        wording.shown_words(shown_vector["words"]),
        ("source", "transferred"),  # the vector is named above the strip; "transferred V10" ran into its neighbour
    )
    # The strip (a word a line, 380 px) and what it shows side by side, stacked on a narrow page.
    strip_panel, text_panel = ui.panels([static_charts.FINGERPRINT_WIDTH, TEXT_WIDTH])
    if live:
        ui.chart(charts.fingerprint(*strip, per_row=per_row), "fingerprint", strip_panel)
    else:
        picture = static_charts.fingerprint_svg(*strip, per_row=per_row)
        strip_panel.html(ui.svg_image(picture, "fingerprint strip", "width:100%;max-width:100%"))
    text_panel.caption(
        f"Similarity of V{vec + 1} to the {STRIP} anchors it is most (dis)similar to in the source model, on the "
        "left; the transferred vector's similarities to the same words in the target model, on the right"
        + (f" (only each source vector's top {top_k:,} entries are compared, as in the run)." if top_k else ".")
        + " The mean match is what the transfer maximises; it can be 1.000 while the prompts still answer "
        "differently when the two models' spaces do not line up (see docs/transferability.md)."
        + fingerprint_scale_note(shown_vector, vec)
    )


def find_anchors(text: str, words: list[str], every_word, maps, place) -> tuple[list[str], list[int]]:
    """*Find a token*: the shown anchors spelled `text` (or, failing that, starting with it). A word not among the
    anchors shown (`every_word()` gives them all) is added to each map (`maps`: its dict, model and prompt vectors),
    placed by `place(model, vectors, indices)` without refitting it; returns the words with it and the indices to
    ring."""
    needle, shown_n = text.lower(), len(words)
    matches = [i for i, w in enumerate(words) if w.lower() == needle] or [
        i for i, w in enumerate(words) if w.lower().startswith(needle)
    ][:20]
    if matches:
        return words, matches
    anchor_words = every_word()
    further = [i for i, w in enumerate(anchor_words) if w.lower() == needle][:5]  # none is shown
    if not further:
        # as typed: in a markdown caption "**x** :red[y] $z$" was drawn as bold, red and a formula
        ui.block(
            ui.text_html(
                f"No anchor spells “{text}”: it is not among the {len(anchor_words):,} shared words.",
                caption=True,
                marks=False,
            )
        )
        return words, []
    for drawn, model, vectors in maps:
        placed = place(model, vectors, tuple(further))
        drawn.update(  # the page's own copies: the cached maps stay as they are
            anchor_xy=np.concatenate([drawn["anchor_xy"], placed["xy"]]),
            anchor_sim=np.concatenate([drawn["anchor_sim"], placed["sim"]]),
        )
    found = wording.shown_word(anchor_words[further[0]])
    ui.block(
        ui.text_html(
            f"“{found}” is anchor {further[0] + 1:,} of {len(anchor_words):,}, not among the "
            f"{shown_n:,} shown: it is placed on both maps as they are (not refitted), ringed.",
            caption=True,
            marks=False,
        )
    )
    return [*words, *(anchor_words[i] for i in further)], list(range(shown_n, shown_n + len(further)))


def fingerprint_scale_note(vector: dict, vec: int) -> str:
    """What a high match hides: the two columns' sizes, and how much of the match is a shared offset (every cosine
    positive) rather than the same pattern of words (the correlation, means removed), over every compared entry
    and over the words in the strip, which can differ a lot (`analysis.fingerprint_summary`)."""
    if vector["compared"] < 2:
        return ""
    return (
        f" For V{vec + 1}, the transferred similarities are {vector['size']:.2f}× the size of the source's. With "
        f"each column's mean removed, the columns correlate at r = {vector['r_compared']:.2f} over all "
        f"{vector['compared']:,} compared anchors and r = {vector['r_strip']:.2f} over the {len(vector['words'])} "
        "shown: a match near 1 with a low r says the columns share an offset more than a pattern of words."
    )


def pinned_note(src_map: dict, tgt_map: dict) -> str:
    """Says which dots are drawn hollow at a map's edge (`charts.map_frame`), when any are."""
    far = [int(charts.map_frame(d["anchor_xy"], d["prompt_xy"])["pinned"].sum()) for d in (src_map, tgt_map)]
    if not any(far):
        return ""
    counts = " and ".join(f"{n:,} in the {side} map" for n, side in zip(far, ("source", "target")) if n)
    return (
        f" Hollow dots ({counts}): anchors far from all the rest, drawn at the frame's edge so the others keep the "
        "room; the coordinates CSV has where they lie."
    )


def export(src_map, tgt_map, words, highlight, source, target, task, method, live: bool) -> None:
    """The 2-D coordinates of both maps (and the marked anchors) as CSV, built when a button is clicked: building
    them on every run took ~0.1 s of a fresh server's first view, and Streamlit stored the bytes each time. The files
    are named with the pair, the task and the projection, so downloads from different runs do not overwrite each
    other."""
    maps = [("source", source, src_map), ("target", target, tgt_map)]
    if highlight:
        why = "The anchors marked in the maps: drawn round with the lasso or the box, or found with *Find a token*."
    elif live:
        why = "Nothing is marked yet: pick the lasso at a map's top left and draw round some anchors, or find a token."
    else:
        why = "Nothing is marked yet: find a token, or turn on *Interactive charts* and draw round anchors (lasso)."
    c1, c2 = st.columns(2)
    c1.download_button(
        f"2-D coordinates ({method.upper()}, .csv)",
        lambda: charts.map_coordinates_csv(maps, words, highlight),
        ui.file_name(f"relative_space_{method}", source, target, task, "csv"),
        "text/csv",
        key="map_csv",
        on_click="ignore",
        icon=":material/download:",
    )
    c2.download_button(
        "Selected anchors (.csv)",
        lambda: charts.map_coordinates_csv(maps, words, highlight, marked_only=True),
        ui.file_name(f"relative_space_{method}_selection", source, target, task, "csv"),
        "text/csv",
        key="map_sel_csv",
        on_click="ignore",
        icon=":material/download:",
        disabled=not highlight,
        help=why,
    )


ui.guard(body)
