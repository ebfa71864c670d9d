"""Query: ask the target model about one input with the manual template, the discretised and the transferred prompt."""

import re

import pandas as pd
import streamlit as st

from ptfer_app import services, ui, wording
from ptfer_core.compare import Outcome
from ptfer_core.config import METHOD_LABELS
from ptfer_core.errors import ModelLoadError, PTferError

FILTERS = {"all": "All", "right": "Transferred right", "wrong": "Transferred wrong"}


def facts_frame(result: Outcome) -> pd.DataFrame:
    rows = []
    for f in result.per_fact:
        row = {"subject": f["subject"], "answer": wording.shown_word(f["object"])}
        for method, label in ((result.method, "transferred"), ("manual", "manual"), ("discretization", "discretised")):
            pred = f.get(method)
            row[label] = "—" if pred is None else f"{'✓' if pred == f['object'] else '✗'} {wording.shown_word(pred)}"
        rows.append(row)
    return pd.DataFrame(rows, columns=["subject", "answer", "transferred", "manual", "discretised"])


def pick_fact() -> None:
    """Table selection callback: copy the chosen subject into the query box."""
    view = st.session_state.get("_facts_view")
    state = st.session_state.get("facts")
    chosen = state["selection"] if state else {}
    rows = list(chosen.get("rows") or []) + [cell[0] for cell in chosen.get("cells") or []]
    if view is not None and rows and rows[0] < len(view):
        st.session_state["subject"] = view.iloc[rows[0]]["subject"]


def pick_from_list(frame: pd.DataFrame) -> None:
    """Picker callback: copy the chosen example's input into the query box."""
    row = st.session_state.get("fact_pick")
    if row is not None and row < len(frame):
        st.session_state["subject"] = frame.iloc[row]["subject"]


INPUT_WIDTH = 150  # px: the facts table's subject or sentence column; the whole text is in the query box on a click


def short(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


MARK = "background-color: rgba(244, 182, 166, 0.45)"  # the queried example's row: the target's tint


def examples(frame: pd.DataFrame, called: dict, subject: str) -> None:
    """The test examples: a searchable picker on first paint, the whole table (a data grid, ~0.6 s of drawing on two
    cores) only when its expander is opened; the example being queried (`subject`) is tinted in it."""
    controls = ui.row(align="top")  # the labels in line (the drop-down list is taller than the buttons)
    which = controls.segmented_control(
        "Show", list(FILTERS), default="all", required=True, format_func=FILTERS.get, key="fact_show"
    )
    view = frame
    if which == "right":
        view = view[view["transferred"].str.startswith("✓")]
    elif which == "wrong":
        view = view[view["transferred"].str.startswith("✗")]
    controls.selectbox(
        f"Pick a {called['example']} (type to search)",
        list(view.index),
        index=None,
        key="fact_pick",
        on_change=pick_from_list,
        args=(frame,),
        placeholder=f"{len(view)} {called['examples']}…",
        format_func=lambda i: (
            f"{short(frame.at[i, 'subject'])} → {frame.at[i, 'answer']} · transferred {frame.at[i, 'transferred']}"
        ),
    )
    correct = frame["transferred"].str.startswith("✓").sum() if len(frame) else 0
    st.caption(
        f"{len(view)} of {len(frame)} {called['examples']} shown · the transferred prompt is right on {correct} of "
        f"all {len(frame)}."
    )
    box = st.expander(
        f"All {len(view)} {called['examples']} as a table, with each prompt's answer (click a row to query it)",
        key="facts_table",
        on_change="rerun",
    )
    if not box.open:  # closed: nothing drawn
        return
    view = view.reset_index(drop=True)
    st.session_state["_facts_view"] = view
    with box:
        if view.empty:
            st.caption(f"No {called['example']} matches this filter.")
            return
        shown = view.rename(columns={"subject": called["input"], "answer": called["answer"]})
        queried = (view["subject"] == subject).to_numpy()
        if queried.any():
            shown = shown.style.apply(lambda row: [MARK if queried[row.name] else ""] * len(row), axis=1)
        st.dataframe(
            shown,
            hide_index=True,
            width="stretch",
            # a sentence of SST-2 as wide as it is long pushed every answer column out of sight at 800 px
            column_config={called["input"]: st.column_config.TextColumn(width=INPUT_WIDTH)},
            key="facts",
            on_select=pick_fact,
            # a click on any cell picks its row; no row-selection column of check boxes, whose 32 px made the capital
            # preset's table scroll sideways at 800 px (500 px of columns in 472)
            selection_mode="single-cell",
            height=min(420, 38 + 35 * len(view)),
        )


def render_answers(title: str, shown: str, answers, gold: str | None, top_right: bool = False) -> None:
    """One panel as one block: its title, the prompt as the model reads it, the answers. The prompt keeps two lines'
    height, so panels abreast start their tables on one line when one prompt wraps (a discretised prompt's words
    are long)."""
    # the blank and what follows it stay on one line: the closing "." wrapped onto a line of its own
    prompt = re.sub(r" (?=\S+$)", "\u00a0", shown.strip()) if "___" in shown else shown
    frame = pd.DataFrame(
        [
            # `top_right`: the scored run found this fact right, so its first answer is the known one even when
            # spelled otherwise (an uncased tokenizer's "French" for the fact's "french": one token, one answer)
            {"answer": ("✓ " if w == gold or (i == 0 and top_right) else "") + wording.shown_word(w), "probability": p}
            for i, (w, p) in enumerate(answers)
        ]
    )
    ui.block(
        ui.text_html(f"**{title}**"),
        ui.text_html(prompt, caption=True, lines=2, marks=False),
        ui.bar_table_html(frame, "probability"),
    )


def token_boundaries(result: Outcome, subject: str) -> None:
    """Why the manual template and the discretised prompt, which read alike, give different probabilities."""
    if result.discretized is None or not subject:
        return
    words = result.discretized_tokens or []
    if not wording.read_alike(result.task.template, result.discretized.template, words):
        return
    tokens = services.template_tokens(result.target, result.task.template, subject)
    if tokens is None:  # e.g. an input longer than the model reads: each answer column already says why
        return
    with st.expander("Why do the manual and the discretised prompt differ when they read alike?"):
        st.markdown(
            "The manual template is **tokenised as a sentence**; the discretised prompt puts **one whole-word "
            "embedding in each slot**, always the word spelled after a space, and keeps the soft layout "
            f"(`{result.discretized.template}`). The model sees different token sequences:"
        )
        ui.monospace(
            "manual:       "
            + " | ".join(tokens)
            + "\ndiscretised:  "
            + filled(result.discretized.template, subject, [f"⟨ {w}⟩" for w in words], blank="→")
        )


def filled(template: str, subject: str, slots: list[str] = (), blank: str = "___") -> str:
    """The template as the page shows it: [V] slots filled in turn, [Y] the blank, [S] dropped, and the subject last,
    so that what a user typed is shown as typed ("{2024}" went through str.format; "[V] Spain" shifted the words)."""
    text = template.replace("[Y]", blank).replace("[S]", "")
    for word in slots:
        text = text.replace("[V]", word, 1)
    return text.replace("[X]", subject)


def body() -> None:
    ui.header(
        "Query",
        "Type an input (a subject, or a sentence for a classification task), or pick a test example "
        "below, and compare the target model's answers under three prompts.",
        ui.outcome(),
    )
    result = ui.require_outcome("This page")
    frame = facts_frame(result)
    default = frame["subject"].iloc[0] if len(frame) else ""
    classify = result.task.is_classification
    subject = ui.bound(
        st.text_area if classify else st.text_input,
        "Sentence" if classify else "Subject",
        "subject",
        default,
        placeholder="e.g. a gripping, funny film" if classify else "e.g. France",
        help="The [X] of the prompt.",
    )
    subject = " ".join(subject.split())[:2000]
    data_dir = services.data_dir_for([result.target])  # the result's data set, whatever the sidebar selects now
    fact = next((f for f in result.per_fact if f["subject"] == subject), None)
    gold = fact["object"] if fact else None
    columns = [
        (
            "Manual template",
            filled(result.task.template, subject or "[X]"),
            result.task.template,
            None,
            "manual",
        ),
    ]
    if result.discretized is not None:
        # each slot shows the word it became
        words = [wording.shown_word(token) for token in result.discretized_tokens or []]
        shown = filled(result.discretized.template, subject or "[X]", words)
        columns.append(
            ("Discretised prompt", shown, result.discretized.template, result.discretized.vectors, "discretization")
        )
    columns.append(
        (
            f"{METHOD_LABELS.get(result.method, result.method)} prompt",
            filled(result.transferred.template, subject or "[X]", ["▢"] * result.transferred.template.count("[V]")),
            result.transferred.template,
            result.transferred.vectors,
            result.method,
        )
    )
    called = wording.task_words(result.task)
    if not subject:
        st.info(f"Type a {called['input']} to see the answers.", icon=":material/info:")
    else:
        for col, (title, shown, template, vectors, method) in zip(ui.panels([300] * len(columns), "medium"), columns):
            with col:
                key = "manual" if vectors is None else ui.digest(vectors)
                try:
                    answers = services.top_answers(
                        result.target, key, template, vectors, subject, result.task.id, data_dir, 5
                    )
                except ModelLoadError:
                    raise  # the page says it once
                except PTferError as exc:
                    st.error(str(exc), icon=":material/error:")
                    continue
                render_answers(title, shown, answers, gold, fact is not None and fact.get(method) == gold)
        words = "; ".join(
            f"{name} ← {' / '.join(ui.literal(w) for w in options)}"
            for name, options in zip(result.task.classes, result.task.label_words)
        )
        what = (
            f"classes, each scored through its label word ({words}: the first of a class's words that is one token "
            "of the model)"
            if classify
            else "answer candidates (common-vocabulary words that are single tokens)"
        )
        st.caption(
            f"Probabilities over {result.target}'s {what}. "
            + (f"The known answer is **{gold}** (✓)." if gold else "This input is not a test example.")
        )
        token_boundaries(result, subject)

    st.subheader(called["Examples"], anchor=False)
    examples(frame, called, subject)


ui.guard(body)
