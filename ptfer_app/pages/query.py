"""Query: ask the target model about one subject with the manual template, the discretised and the transferred prompt."""
import pandas as pd
import streamlit as st

from ptfer_app import pipeline, services, ui

FILTERS = {"all": "All", "right": "Transferred right", "wrong": "Transferred wrong"}


def facts_frame(result: pipeline.Outcome) -> pd.DataFrame:
    rows = []
    for f in result.per_fact:
        row = {"subject": f["subject"], "answer": f["object"]}
        for method, label in ((result.method, "transferred"), ("manual", "manual"), ("discretization", "discretised")):
            pred = f.get(method)
            row[label] = "—" if pred is None else f"{'✓' if pred == f['object'] else '✗'} {pred}"
        rows.append(row)
    return pd.DataFrame(rows, columns=["subject", "answer", "transferred", "manual", "discretised"])


def pick_fact() -> None:
    """Table selection callback: copy the chosen subject into the query box."""
    view = st.session_state.get("_facts_view")
    state = st.session_state.get("facts")
    rows = state["selection"]["rows"] if state else []
    if view is not None and rows:
        st.session_state["subject"] = view.iloc[rows[0]]["subject"]


def render_answers(title: str, shown: str, answers, gold: str | None) -> None:
    st.markdown(f"**{title}**")
    st.caption(shown)
    frame = pd.DataFrame([{"answer": ("✓ " if w == gold else "") + w, "probability": p} for w, p in answers])
    st.dataframe(frame, hide_index=True, width="stretch", column_config={
        "answer": st.column_config.TextColumn("answer"),
        "probability": st.column_config.ProgressColumn("probability", min_value=0.0, max_value=1.0, format="%.3f")})


def body() -> None:
    ui.header("Query", "Type a subject, or pick a test fact below, and compare the target model's top-5 answers "
                       "under three prompts.")
    result = ui.require_outcome("This page")
    ui.outcome_caption(result)
    frame = facts_frame(result)
    default = frame["subject"].iloc[0] if len(frame) else ""
    subject = ui.bound(st.text_input, "Subject", "subject", default, placeholder="e.g. France",
                       help="The [X] of the question.")
    subject = subject.strip()
    ui.load_models([result.target])
    data_dir = services.data_dir_for([result.target])  # the result's data set, whatever the sidebar selects now
    gold = next((f["object"] for f in result.per_fact if f["subject"] == subject), None)
    columns = [
        ("Manual template", result.relation.template.replace("[X]", subject or "[X]").replace("[Y]", "___"),
         result.relation.template, None),
    ]
    if result.discretized is not None:
        shown = result.discretized.template.replace("[X]", subject or "[X]").replace("[Y]", "___")
        for token in result.discretized_tokens or []:
            shown = shown.replace("[V]", token, 1)  # each slot shows the word it became
        columns.append(("Discretised prompt", shown, result.discretized.template, result.discretized.vectors))
    columns.append((f"{pipeline.METHOD_LABELS.get(result.method, result.method)} prompt",
                    result.transferred.template.replace("[X]", subject or "[X]").replace("[V]", "▢").replace("[Y]", "___"),
                    result.transferred.template, result.transferred.vectors))
    if not subject:
        st.info("Type a subject to see the answers.", icon=":material/info:")
    else:
        cols = st.columns(len(columns), gap="medium")
        for col, (title, shown, template, vectors) in zip(cols, columns):
            with col:
                key = "manual" if vectors is None else pipeline.digest(vectors)
                answers = services.top_answers(result.target, key, template, vectors, subject, data_dir, 5)
                render_answers(title, shown, answers, gold)
        st.caption(f"Probabilities over {result.target}'s answer candidates (common-vocabulary words that are single "
                   f"tokens). " + (f"The known answer is **{gold}** (✓)." if gold else "This subject is not a test fact."))

    st.subheader("Test facts", anchor=False)
    c1, c2 = st.columns([3, 2], vertical_alignment="bottom")
    needle = c1.text_input("Filter", key="fact_filter", placeholder="subject or answer contains…")
    which = c2.segmented_control("Show", list(FILTERS), default="all", required=True, format_func=FILTERS.get,
                                 key="fact_show")
    view = frame
    if needle.strip():
        n = needle.strip().lower()
        view = view[view["subject"].str.lower().str.contains(n, regex=False) | view["answer"].str.lower().str.contains(n, regex=False)]
    if which == "right":
        view = view[view["transferred"].str.startswith("✓")]
    elif which == "wrong":
        view = view[view["transferred"].str.startswith("✗")]
    view = view.reset_index(drop=True)
    st.session_state["_facts_view"] = view
    correct = frame["transferred"].str.startswith("✓").sum() if len(frame) else 0
    st.caption(f"{len(view)} of {len(frame)} test facts · transferred prompt right on {correct}. Click a row to query it.")
    st.dataframe(view, hide_index=True, width="stretch", key="facts", on_select=pick_fact, selection_mode="single-row",
                 height=min(420, 38 + 35 * max(1, len(view))))


ui.guard(body)
