"""The result of a comparison on the Transfer page: scores, what they mean, the search curve, the downloads."""

import streamlit as st

from ptfer_core.compare import Outcome
from ptfer_core.config import METHOD_LABELS

from . import charts, results, services, settings_ui, ui, wording

NO_BREAK = "\u2060–\u2060"  # an en dash joined to its neighbours (word joiners): a range stays on one line
CHART_WIDTH, FACTS_WIDTH = 560, 300  # px: the search chart and the prompt's facts, abreast from 1280 px


def result_card(result: Outcome) -> None:
    st.subheader("Result", anchor=False)
    st.caption(ui.outcome_line(result))
    order = [result.method, "manual", "discretization", "random"]
    scores = ui.row(align="top")  # one row of four that wraps on a narrow page
    manual = result.scores.get("manual", {}).get("p_at_1")
    metric = wording.score_word(result.task)
    for method in order:
        score = result.scores.get(method)
        if score is None:
            scores.metric(METHOD_LABELS.get(method, method), "—", help="not computed for this run", width="stretch")
            continue
        delta = None
        if method == result.method and manual is not None and abs(score["p_at_1"] - manual) >= 0.05:
            delta = f"{score['p_at_1'] - manual:+.1f} vs manual"
        extra = f"; macro-F1 {score['macro_f1']:.1f}" if "macro_f1" in score else ""
        scores.metric(
            METHOD_LABELS.get(method, method),
            f"{score['p_at_1']:.1f}",
            delta=delta,
            delta_color="normal",
            width="stretch",
            help=f"{wording.method_help(method, result.target)} {metric} (%) over {score['n_facts']} test examples "
            f"of {result.target}{extra}.".lstrip(),
        )
    explain(result, manual)
    n = result.scores.get(result.method, {}).get("n_facts", 0)
    st.caption(
        f"{metric.capitalize()} (%) on {n} test examples of {result.task.id} "
        + (
            "(each class scored through its label words). "
            if result.task.is_classification
            else f"whose answer is a single token of {result.target}. "
        )
        + f"Random: vectors drawn like {result.target}'s embeddings. Discretisation: each source "
        f"vector replaced by its nearest shared word"
        + (
            f" ({ui.literal(', '.join(wording.shown_words(result.discretized_tokens)))})."
            if result.discretized_tokens
            else "."
        )
    )
    # Fixed widths that wrap: in st.columns at 800 px the chart had 270 px and the prompt's facts a word a line.
    # A medium gap: stacked on a narrow page, the large one left 64 px between the loss and "The prompt".
    left, right = ui.panels([CHART_WIDTH, FACTS_WIDTH], "medium")
    with left:
        trajectory_view(result)
    with right:
        prompt_facts(result)
        # Four download buttons wait in one popover: closed, the browser draws none of them.
        # "Save", not "Save this prompt": the longer label was cut to "Save this pro…" on an 800 px page
        # what it holds is said inside: as the button's tooltip it covered the popover's last button
        with st.popover("Save", icon=":material/download:", width="stretch"):
            st.caption("The prompt (.safetensors) and its metadata (.json), a PEFT adapter, and the source prompt.")
            downloads(result)


def explain(result: Outcome, manual: float | None) -> None:
    """Say what the numbers mean where they appear."""
    transferred = result.scores.get(result.method, {}).get("p_at_1")
    random = result.scores.get("random", {}).get("p_at_1")
    if result.recovered_template:
        st.info(
            "**The transferred prompt answers exactly like the manual template and discretisation on every test "
            "example:** the transfer recovered the template's own words, not something new the tuning found.",
            icon=":material/lightbulb:",
        )
    elif transferred is not None:
        notes = []
        if random is not None and transferred <= random and result.method != "random":
            # a gain over the manual template means nothing if a random prompt gains as much
            notes.append(
                f"**The {METHOD_LABELS.get(result.method, result.method).lower()} prompt scores {transferred:.1f}, "
                f"no better than a random prompt ({random:.1f}):** on these test examples it carried nothing that "
                "chance does not."
            )
        if manual and transferred < manual / 2 and result.method == "transfer":
            loss = result.transferred.metrics.get("matching_loss")
            lead = (  # after the random note, which has already said what the prompt scores
                f"**It also falls far short of the manual template ({manual:.1f}).** "
                if notes
                else f"**The transferred prompt scores {transferred:.1f} against {manual:.1f} for the manual "
                "template.** "
            )
            notes.append(lead + results.why_transfer_fell_short(list(result.sources), result.target, loss))
        if notes:
            st.info(" ".join(notes), icon=":material/science:")
    # the reference's rule: the headline number then used the target's labels
    if result.method == "transfer" and kept_by(result) == "dev":
        st.warning(
            f"**Not zero-shot:** the search step kept is the one with the best {wording.score_word(result.task)} "
            f"on labelled {result.target} dev examples, as the reference code keeps it (recipe `paper`). "
            "`paper-zero-shot` keeps the step with the lowest matching loss and uses no target labels.",
            icon=":material/label:",
        )
    for note in result.notes:
        st.caption(f":material/info: {note}")
    if result.story:  # the Home card's paragraph, for whoever opened the preset from a link
        with st.expander("What this preset shows", icon=":material/school:"):
            st.markdown(result.story)


def kept_by(result: Outcome) -> str | None:
    """How the kept step of the prompt's trajectory was chosen: "loss" (a search's lowest matching loss, no target
    labels), "dev" (best score on the target's dev labels) or "last"; None when there was no step to choose."""
    prov = result.transferred.provenance
    if len(result.transferred.trajectory) <= 1 or "selected_step" not in prov:
        return None
    if "transfer" in prov:
        return prov["transfer"].get("selection")
    # Tuned on the target (direct tuning), which the tuner calls its source.
    return {"source dev P@1": "dev", "target dev P@1": "dev", "last step": "last"}.get(prov.get("selection"))


def trajectory_view(result: Outcome) -> None:
    traj = result.transferred.trajectory
    prov = result.transferred.provenance
    if result.method == "direct-transfer":
        st.caption("Direct transfer has no search: the vectors are copied.")
    elif len(traj) <= 1:
        loss = result.transferred.metrics.get("matching_loss")
        solver = (prov.get("transfer") or {}).get("solver", "")
        st.metric(  # a short label: the long one was cut to "1 − cosine between th…" on a narrow page
            "Matching loss (1 − cosine)",
            f"{loss:.3g}" if loss is not None else "—",  # as the explanation above writes it
            help="1 − cosine between the source's and the transferred prompt's relative encodings: 0 means they are "
            "equal.",
        )
        how = (
            "found its answer at once (the exact construction needed no refinement)"
            if solver == "refined"
            else "answers in one step"
        )
        named = settings_ui.SOLVER_LABELS.get(solver, solver)
        st.caption(f"The {named} solver {how}, so there is no search curve to draw.")
    else:
        ui.chart(
            charts.trajectory(
                traj,
                "Matching loss of the search",
                score=wording.score_word(result.task),
                kept_step=prov.get("selected_step"),
            ),
            "result_chart",
        )


def prompt_facts(result: Outcome) -> None:
    prov = result.transferred.provenance
    st.markdown("**The prompt**")
    ui.monospace(result.transferred.template.replace("[V]", "▢").replace("[S]", "⟨start⟩"))
    facts = [f"{result.transferred.n_vectors} vectors of width {result.transferred.width}"]
    traj = result.transferred.trajectory
    rule = kept_by(result)
    if rule is not None:
        how = {"loss": " (by matching loss)", "dev": f" (by target dev {wording.score_word(result.task)})"}
        facts.append(
            # unbroken: "steps 1–" and "2000" were split across two lines (a line may break after a dash)
            f"kept step\u00a0{prov['selected_step']} of steps\u00a0{traj[0]['step']}{NO_BREAK}{traj[-1]['step']}"
            + how.get(rule, "")
        )
    if "n_anchors" in prov:
        facts.append(f"{prov['n_anchors']:,} anchors ({prov.get('anchor_source', '')})")
    if result.timings:
        order = lambda k: (
            0 if k.startswith("source") else 1 if k == "search" else 2 if k.startswith("evaluate") else 3,
            k,
        )
        facts.append(
            "time: " + ", ".join(f"{k} {result.timings[k]:.1f}\u00a0s" for k in sorted(result.timings, key=order))
        )
    st.caption(" · ".join(facts))


def downloads(result: Outcome) -> None:
    data, meta = result.transferred.to_bytes()
    stem = f"{result.target}_{result.task.id}_{result.method}"
    st.download_button(
        "Download the prompt (.safetensors)",
        data,
        f"{stem}.safetensors",
        "application/octet-stream",
        key="dl_st",
        icon=":material/download:",
        width="stretch",
    )
    st.download_button(
        "Download its metadata (.json)",
        meta,
        f"{stem}.json",
        "application/json",
        key="dl_json",
        icon=":material/download:",
        width="stretch",
    )
    from ptfer_core.peft_io import export_refusal

    refusal = export_refusal(result.transferred)
    if refusal is None:  # built when clicked (it needs the target model loaded)
        st.download_button(
            "Download as PEFT adapter (.zip)",
            lambda: peft_zip(result),
            f"{stem}_peft.zip",
            "application/zip",
            key="dl_peft",
            icon=":material/download:",
            width="stretch",
        )
    else:
        st.button("Download as PEFT adapter (.zip)", key="dl_peft_off", disabled=True, width="stretch")
        st.caption(f"No PEFT adapter: {refusal}.")  # said, not hidden in a tooltip of a greyed-out button
    if result.source_prompts:
        src_data, _ = result.source_prompts[0].to_bytes()
        st.download_button(
            f"Source prompt ({result.sources[0]})",
            src_data,
            f"{result.sources[0]}_{result.task.id}_tuned.safetensors",
            key="dl_src",
            icon=":material/download:",
            type="tertiary",
        )


def peft_zip(result: Outcome) -> bytes:
    """The transferred prompt as a zipped PEFT adapter."""
    import io
    import tempfile
    import zipfile
    from pathlib import Path

    from ptfer_core.peft_io import write_peft_adapter

    lm = services.load_model(result.target)
    with tempfile.TemporaryDirectory() as tmp:
        out = write_peft_adapter(
            result.transferred,
            Path(tmp) / "adapter",
            kind=lm.kind,
            base_model=lm.name,
            weights_identity=lm.identity if lm.identity != lm.name else None,
        )
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as archive:
            for f in sorted(out.iterdir()):
                archive.write(f, f"adapter/{f.name}")
        return buf.getvalue()
