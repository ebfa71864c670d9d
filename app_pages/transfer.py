"""Transfer (live): the recipe and its settings, a cancellable background run with a live chart, the result card."""

import streamlit as st

from ptfer_app import charts, services, ui, wording
from ptfer_app.result_card import result_card
from ptfer_app.transfer_settings import run_sources, settings_panel, source_status
from ptfer_app.upload import upload_panel
from ptfer_core.compare import check_enough_facts, compare
from ptfer_core.errors import ModelLoadError
from ptfer_core.jobs import Job
from ptfer_core.paths import SHIPPED_SCORES

JOB = "transfer_job"


def start(sel: ui.Selection, settings, method: str, weights, sources: list[str]) -> None:
    """Start the run in a background thread: loading the models is part of it, so the page never blocks."""
    st.session_state.pop("last_error_detail", None)
    names = list(dict.fromkeys([*sources, sel.target]))
    rid, data_dir, target = sel.task_id, sel.data_dir, sel.target
    uploaded = {k: v for k, v in st.session_state.get("uploaded", {}).items() if v.relation == rid}
    store, cache = services.prompt_store(), services.cache_root()

    def work(job):
        lms = {}
        for name in names:
            job.begin(f"load:{name}", f"Loading {name}", 1)
            try:
                lms[name] = services.load_model(name)
            except ModelLoadError as exc:
                raise ModelLoadError(f"{name} cannot be loaded. {exc}") from None
            job.report(1)
            if job.should_stop():
                return None
        job.begin("prepare", "Preparing the data", 1)
        data = services.task_data(rid, data_dir)
        check_enough_facts(data, lms)
        job.report(1)
        return compare(
            job,
            sources=[(n, lms[n]) for n in sources],
            target=lms[target],
            data=data,
            settings=settings,
            method=method,
            weights=weights,
            uploaded=uploaded,
            store=store,
            cache=cache,
            shipped_scores=(SHIPPED_SCORES,),
        )

    st.session_state[JOB] = Job(work, "transfer", setup=services.cpu_setup).start()
    # what the live chart calls the dev score: the run's own task, whatever the sidebar selects meanwhile
    st.session_state["_job_score"] = wording.score_word(sel.task)


def cancel() -> None:
    """Cancel callback: the engine checks should_stop before every step, so the job ends almost at once."""
    job = st.session_state.get(JOB)
    if job is not None:
        job.cancel()
        job.join(timeout=1.0)


def finish(job: Job) -> None:
    st.session_state[JOB] = None
    st.session_state["last_run"] = {"state": job.state, "seconds": job.elapsed}
    if job.state == Job.DONE and job.result is not None:
        ui.set_outcome(job.result)
        st.session_state["_flash"] = ("success", f"Transfer finished in {job.elapsed:.1f} s.")
    elif job.state in (Job.CANCELLED, Job.DONE):
        st.session_state["_flash"] = ("info", f"Run cancelled after {job.elapsed:.1f} s. Nothing was changed.")
    else:
        st.session_state["_flash"] = ("error", f"**The transfer could not run.** {job.error}")
        st.session_state["last_error_detail"] = job.detail


@st.fragment(run_every=1.0)
def live_progress() -> None:
    job: Job | None = st.session_state.get(JOB)
    if job is None:
        return
    if not job.running:
        finish(job)
        st.rerun(scope="app")
    snap = job.snapshot()
    phase = snap["phase"]
    cancelling = job.should_stop()
    label = "Cancelling… (finishing the current step)" if cancelling else (phase["label"] if phase else "Starting…")
    # Not a `with` block: leaving one marks the status complete, and the run is still going.
    box = st.status(label, state="running", expanded=True)
    with box.container():
        done = [text.rstrip("…") for _, text, _ in snap["phases"][:-1]]  # ticked: no "…", which read as still going
        if done:
            st.caption(" · ".join(f":material/check: {text}" for text in done))
        bar, stop = st.columns([6, 1], vertical_alignment="bottom")
        total = (phase or {}).get("total") or 0
        frac = min(1.0, phase["step"] / total) if phase and total else 0.0
        # a one-step phase (loading a model, preparing the data) has no steps to count: "step 0 of 1" read as stuck;
        # counted steps say "done" ("step 0 of 4" read as stuck while the first step ran)
        counted = f"{phase['step']:,} of {total:,} steps done" if total > 1 else "working…"
        bar.progress(frac, text=f"{counted} · {snap['elapsed']:.1f} s")
        stop.button(
            "Cancel", key="cancel", icon=":material/stop_circle:", on_click=cancel, disabled=cancelling, width="stretch"
        )
        rows = phase["rows"] if phase else []
        if rows:  # charts.trajectory draws a thinned curve: the live chart stays light
            tuning = phase["name"].startswith("tune")
            ui.chart(
                charts.trajectory(
                    rows,
                    "Tuning loss on the source model" if tuning else "Matching loss",
                    "tuning step" if tuning else "search step",
                    score=st.session_state.get("_job_score", "P@1"),
                ),
                "live_chart",
            )


def body() -> None:
    sel = ui.selection()
    ui.header(
        "Transfer",
        f"Move a tuned prompt from {sel.pair_label} for {sel.task_id or 'a relation'}, then "
        "score it on the target's test examples.",
    )
    ui.require_selection(sel)
    busy = st.session_state.get(JOB) is not None
    settings_box, run_area, upload_area = st.container(border=True), st.container(), st.container()
    with upload_area:  # shown last, read first: the source status below reflects an upload at once
        upload_panel(sel)
    result = ui.outcome()
    with settings_box:
        if busy or result is None or not result.origin.startswith("preset:"):
            settings, method, weights = settings_panel(sel)
        else:  # an opened preset: its settings fold away, undrawn until opened (the page settles seconds sooner)
            box = st.expander("The preset's settings (open to change them and run again)", key="exp_settings",
                              on_change="rerun")  # fmt: skip
            with box:
                settings, method, weights = settings_panel(sel, hidden=not box.open)
        sources = run_sources(sel, method)
        if not busy:
            source_status(sel, settings, sources)
        clicked = st.button("Run transfer", type="primary", key="run", icon=":material/play_arrow:", disabled=busy)
    with run_area:
        if clicked and not busy:
            start(sel, settings, method, weights, sources)
        if st.session_state.get(JOB) is not None:
            live_progress()
        if st.session_state.get("last_error_detail"):
            with st.expander("Details of the last failure (for a bug report)"):
                st.code(st.session_state["last_error_detail"], language=None)
        result = ui.outcome()  # again: a run that just finished has set it
        if result is not None:
            result_card(result)
        elif st.session_state.get(JOB) is None:
            st.info("Press **Run transfer**, or open a preset on the Home page.", icon=":material/info:")


ui.guard(body)
