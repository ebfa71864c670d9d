"""Transfer (live): the recipe and its settings, a cancellable background run with a live chart, the result card."""
import streamlit as st

from ptfer_app import catalog, charts, results, services, settings_ui, ui
from ptfer_core.compare import METHOD_LABELS, Outcome, check_enough_facts, compare
from ptfer_core.errors import ModelLoadError, PTferError
from ptfer_core.jobs import Job

ui.ensure_app_shell()

JOB = "transfer_job"
ONE_STEP = {"lstsq": "the closed form answers in one step", "vocabulary": "it picks one word per vector in one step"}


# ----------------------------------------------------------------------------- settings


def settings_panel(sel: ui.Selection):
    """(settings, method, weights): every control derived from the settings dataclasses."""
    models = sel.models
    multi_ok = len(sel.sources) > 1
    c0, c1, c2 = st.columns([5, 4, 4])
    recipe = settings_ui.recipe_picker(c0, models)
    base = settings_ui.base_settings(recipe, models)
    method = ui.bound(
        c1.segmented_control, "Method", "method", "transfer", options=["transfer", "direct-transfer"], required=True,
        format_func={"transfer": "Relative-space transfer", "direct-transfer": "Direct transfer"}.get,
        help="Relative-space transfer is PTfer. Direct transfer copies the vectors unchanged (a baseline that "
             "needs equal widths).")
    direct = method != "transfer"
    mode = ui.bound(
        c2.segmented_control, "Sources", "mode", "single", options=["single", "multi"], required=True,
        disabled=not multi_ok or direct,
        format_func={"single": "Single", "multi": f"Multi ({len(sel.sources)})" if multi_ok else "Multi"}.get,
        help="Multi-source matches the relative encodings of all selected source prompts at once (Eq. 7). "
             "Select two or three source models in the sidebar to enable it.")
    t = {}
    c1, c2, c3, c4 = st.columns([3, 3, 4, 3], vertical_alignment="bottom")
    t["solver"] = settings_ui.setting(c1, "transfer", "solver", recipe, base, disabled=direct, why="direct transfer "
                                      "has no search", fmt={"adam": "Adam search (the paper)", "lstsq": "closed form",
                                                            "refined": "exact (closed form + refinement)",
                                                            "vocabulary": "best-matching target words"}.get)
    adam = t["solver"] == "adam"
    t["selection"] = settings_ui.setting(c2, "transfer", "selection", recipe, base, disabled=direct or not adam,
                                         why="only the Adam search has several steps to choose from",
                                         fmt={"loss": "matching loss (zero-shot)", "dev": "target dev P@1"}.get)
    one_step = t["solver"] in ONE_STEP
    t["steps"] = settings_ui.setting(c3, "transfer", "steps", recipe, base, slider=(20, 5000, 20),
                                     disabled=direct or one_step, why=ONE_STEP.get(t["solver"], "no search"),
                                     label="Search steps" if adam else "Refinement steps (at most)")
    t["normalization"] = settings_ui.setting(c4, "transfer", "normalization", recipe, base, disabled=direct,
                                             why="direct transfer copies the vectors",
                                             fmt={"global": "Eq. 6 (the paper)", "per-vector": "per vector",
                                                  "none": "none (ablation)"}.get)
    with st.expander("Anchors, relative space and projection"):
        a1, a2, a3 = st.columns(3)
        t["anchor_source"] = settings_ui.setting(a1, "transfer", "anchor_source", recipe, base, disabled=direct,
                                                 fmt={"common-vocab": "common-vocabulary words (the paper)",
                                                      "frequency": "every shared word, frequent first"}.get)
        t["n_anchors"] = settings_ui.setting(a2, "transfer", "n_anchors", recipe, base, disabled=direct,
                                             options=[None, 256, 1024, 4096, 8192],
                                             fmt=lambda v: "all" if v is None else f"{v:,}")
        t["top_k"] = settings_ui.setting(a3, "transfer", "top_k", recipe, base, disabled=direct,
                                         options=[None, 16, 64, 256, 1024, 4096, 8192],
                                         fmt=lambda v: "all" if v is None else f"{v:,}")
        b1, b2, b3 = st.columns(3)
        t["space"] = settings_ui.setting(b1, "transfer", "space", recipe, base, disabled=direct,
                                         fmt={"raw": "cosine (the paper)", "centred": "cosine, centred",
                                              "standardised": "standardised (z-scored per anchor)"}.get)
        t["projection"] = settings_ui.setting(b2, "transfer", "projection", recipe, base, disabled=direct,
                                              fmt={"none": "none (the paper)", "nearest": "nearest token",
                                                   "nearest-shared": "nearest shared word",
                                                   "mix": "mix of nearest tokens"}.get)
        t["hub_penalty"] = settings_ui.setting(b3, "transfer", "hub_penalty", recipe, base,
                                               disabled=direct or t["solver"] != "vocabulary",
                                               why="it re-scores words: it needs the best-matching-words solver")
    with st.expander("Source prompt tuning"):
        u = {}
        d1, d2, d3 = st.columns(3)
        u["epochs"] = settings_ui.setting(d1, "tune", "epochs", recipe, base)
        u["n_vectors"] = settings_ui.setting(d2, "tune", "n_vectors", recipe, base)
        u["max_train"] = settings_ui.setting(d3, "tune", "max_train", recipe, base, options=[None, 100, 200, 320, 1000],
                                             fmt=lambda v: "all" if v is None else f"{v:,}")
        e1, e2, e3 = st.columns(3)
        u["placement"] = settings_ui.setting(e1, "tune", "placement", recipe, base,
                                             fmt={"postfix": "after [X] (the paper)", "prefix": "before [X]",
                                                  "split": "around [X]", "template": "like the manual template",
                                                  "peft": "before everything (PEFT)"}.get)
        u["init"] = settings_ui.setting(e2, "tune", "init", recipe, base,
                                        fmt={"optiprompt": "small random (OptiPrompt)", "random": "token-like random",
                                             "manual": "the manual template's words",
                                             "vocab-sample": "random answer words"}.get)
        u["loss"] = settings_ui.setting(e3, "tune", "loss", recipe, base,
                                        fmt={"full-vocabulary": "whole vocabulary (OptiPrompt)",
                                             "candidates": "answer candidates only"}.get)
        st.caption("Used only when no tuned source prompt is stored for these settings (shipped prompts cover every "
                   "relation on the real pair with each recipe's own settings).")
    weights = None
    if mode == "multi" and multi_ok and not direct:
        st.caption("Blend of the source prompts (relative weight of each model's encoding)")
        cols = st.columns(len(sel.sources))
        weights = [float(col.slider(name, 0.0, 1.0, 1.0, 0.05, key=f"w_{i}")) for i, (col, name)
                   in enumerate(zip(cols, sel.sources))]
    u["seed"] = t["seed"] = sel.seed
    settings_ui.url_notes()
    return settings_ui.build(recipe, models, {"tune": u, "transfer": t}), method, weights


def run_sources(sel: ui.Selection, method: str) -> list[str]:
    if method == "transfer" and st.session_state.get("mode") == "multi" and len(sel.sources) > 1:
        return list(sel.sources)
    return sel.sources[:1]


def source_status(sel, settings, sources) -> None:
    """One line per source: where its tuned prompt will come from."""
    uploaded = st.session_state.get("uploaded", {})
    data = services.task_data(sel.task_id, sel.data_dir)
    for name in sources:
        if name in uploaded and uploaded[name].relation == sel.task_id:
            st.caption(f":material/upload_file: {name}: your uploaded prompt is the source.")
        elif services.prompt_store().find(services.model_ref(name), data, settings.tune) is not None:
            st.caption(f":material/check_circle: {name}: a tuned prompt for {sel.task_id} with these settings is stored.")
        else:
            slow = "" if catalog.is_toy(name) else " On this 2-core CPU that takes minutes for a real model."
            st.caption(f":material/schedule: {name}: no tuned prompt for {sel.task_id} with these settings yet; it is "
                       f"tuned first ({settings.tune.epochs} epochs) and stored.{slow}")


# ----------------------------------------------------------------------------- running


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
        return compare(job, sources=[(n, lms[n]) for n in sources], target=lms[target], data=data, settings=settings,
                       method=method, weights=weights, uploaded=uploaded, store=store, cache=cache)

    st.session_state[JOB] = Job(work, "transfer", setup=services.cpu_setup).start()


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
        done = [text for _, text, _ in snap["phases"][:-1]]
        if done:
            st.caption(" · ".join(f":material/check: {text}" for text in done))
        bar, stop = st.columns([6, 1], vertical_alignment="bottom")
        total = (phase or {}).get("total") or 0
        frac = min(1.0, phase["step"] / total) if phase and total else 0.0
        bar.progress(frac, text=(f"step {phase['step']:,} of {total:,}" if total else "working…") +
                     f" · {snap['elapsed']:.1f} s")
        stop.button("Cancel", key="cancel", icon=":material/stop_circle:", on_click=cancel, disabled=cancelling,
                    width="stretch")
        rows = phase["rows"] if phase else []
        if len(rows) > 400:  # keep the live chart light: every n-th point, and always the latest
            rows = rows[:: -(-len(rows) // 400)] + rows[-1:]
        if rows:
            tuning = phase["name"].startswith("tune")
            st.plotly_chart(charts.trajectory(rows, "Tuning loss on the source model" if tuning else "Matching loss",
                                              "tuning step" if tuning else "search step"),
                            key="live_chart", config={"displayModeBar": False})


# ----------------------------------------------------------------------------- result


def result_card(result: Outcome) -> None:
    st.subheader("Result", anchor=False)
    ui.outcome_caption(result)
    order = [result.method, "manual", "discretization", "random"]
    cols = st.columns(len(order))
    manual = result.scores.get("manual", {}).get("p_at_1")
    metric = "accuracy" if result.task.is_classification else "P@1"
    for col, method in zip(cols, order):
        score = result.scores.get(method)
        if score is None:
            col.metric(METHOD_LABELS.get(method, method), "—", help="not computed for this run")
            continue
        delta = None
        if method == result.method and manual is not None and abs(score["p_at_1"] - manual) >= 0.05:
            delta = f"{score['p_at_1'] - manual:+.1f} vs manual"
        extra = f"; macro-F1 {score['macro_f1']:.1f}" if "macro_f1" in score else ""
        col.metric(METHOD_LABELS.get(method, method), f"{score['p_at_1']:.1f}", delta=delta, delta_color="normal",
                   help=f"{metric} (%) over {score['n_facts']} test examples of {result.target}{extra}")
    explain(result, manual)
    n = result.scores.get(result.method, {}).get("n_facts", 0)
    st.caption(f"{metric} (%) on {n} test examples of {result.task.id} whose answer is a single token of "
               f"{result.target}. Random: vectors drawn like {result.target}'s embeddings. Discretisation: each source "
               f"vector replaced by its nearest shared word" +
               (f" ({', '.join(result.discretized_tokens)})." if result.discretized_tokens else "."))
    left, right = st.columns([3, 2], gap="large")
    with left:
        trajectory_view(result)
    with right:
        prompt_facts(result)
        downloads(result)


def explain(result: Outcome, manual: float | None) -> None:
    """Say what the numbers mean where they appear."""
    transferred = result.scores.get(result.method, {}).get("p_at_1")
    if result.recovered_template:
        st.info("**The transferred prompt answers exactly like the manual template and discretisation on every test "
                "example:** the transfer recovered the template's own words, not something new the tuning found.",
                icon=":material/lightbulb:")
    elif manual and transferred is not None and transferred < manual / 2:
        why = results.why_transfer_fell_short(result.sources[0], result.target) if result.sources else None
        if why:
            st.info(f"**The transferred prompt scores below half the manual template.** {why}",
                    icon=":material/science:")
    for note in result.notes:
        st.caption(f":material/info: {note}")


def trajectory_view(result: Outcome) -> None:
    traj = result.transferred.trajectory
    prov = result.transferred.provenance
    if result.method == "direct-transfer":
        st.caption("Direct transfer has no search: the vectors are copied.")
    elif len(traj) <= 1:
        loss = result.transferred.metrics.get("matching_loss")
        solver = (prov.get("transfer") or {}).get("solver", "")
        st.markdown("**Matching loss**")
        st.metric("1 − cosine between the relative encodings", f"{loss:.2e}" if loss is not None else "—",
                  help="0 means the transferred prompt's relative encoding equals the source's.")
        st.caption(f"The {solver} solver answers in one step, so there is no search curve to draw.")
    else:
        st.plotly_chart(charts.trajectory(traj, "Matching loss of the search"), key="result_chart",
                        config={"displayModeBar": False})


def prompt_facts(result: Outcome) -> None:
    prov = result.transferred.provenance
    st.markdown("**The prompt**")
    st.code(result.transferred.template.replace("[V]", "▢").replace("[S]", "⟨start⟩"), language=None)
    facts = [f"{result.transferred.n_vectors} vectors of width {result.transferred.width}"]
    if "selected_step" in prov and prov.get("steps_run", 0) > 1:
        rule = (prov.get("transfer") or {}).get("selection")
        facts.append(f"kept step {prov['selected_step']} of {prov.get('steps_run')} "
                     f"({'by matching loss' if rule == 'loss' else 'by target dev P@1'})")
    if "n_anchors" in prov:
        facts.append(f"{prov['n_anchors']:,} anchors ({prov.get('anchor_source', '')})")
    if result.timings:
        order = lambda k: (0 if k.startswith("source") else 1 if k == "search" else 2 if k.startswith("evaluate") else 3, k)
        facts.append("time: " + ", ".join(f"{k} {result.timings[k]:.1f} s" for k in sorted(result.timings, key=order)))
    st.caption(" · ".join(facts))


def downloads(result: Outcome) -> None:
    data, meta = result.transferred.to_bytes()
    stem = f"{result.target}_{result.task.id}_{result.method}"
    st.download_button("Download the prompt (.safetensors)", data, f"{stem}.safetensors", "application/octet-stream",
                       key="dl_st", icon=":material/download:", width="stretch")
    st.download_button("Download its metadata (.json)", meta, f"{stem}.json", "application/json", key="dl_json",
                       icon=":material/download:", width="stretch")
    from ptfer_core.peft_io import export_refusal

    refusal = export_refusal(result.transferred)
    if refusal is None:  # built when clicked (it needs the target model loaded)
        st.download_button("Download as PEFT adapter (.zip)", lambda: peft_zip(result), f"{stem}_peft.zip",
                           "application/zip", key="dl_peft", icon=":material/download:", width="stretch")
    else:
        st.button("Download as PEFT adapter (.zip)", key="dl_peft_off", disabled=True, width="stretch",
                  help=f"Not available: {refusal}.")
    if result.source_prompts:
        src_data, _ = result.source_prompts[0].to_bytes()
        st.download_button(f"Source prompt ({result.sources[0]})", src_data,
                           f"{result.sources[0]}_{result.task.id}_tuned.safetensors", key="dl_src",
                           icon=":material/download:", type="tertiary")


def peft_zip(result: Outcome) -> bytes:
    """The transferred prompt as a zipped PEFT adapter."""
    import io
    import tempfile
    import zipfile
    from pathlib import Path

    from ptfer_core.peft_io import write_peft_adapter

    lm = services.load_model(result.target)
    with tempfile.TemporaryDirectory() as tmp:
        out = write_peft_adapter(result.transferred, Path(tmp) / "adapter", kind=lm.kind, base_model=lm.name,
                                 weights_identity=lm.identity if lm.identity != lm.name else None)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as archive:
            for f in sorted(out.iterdir()):
                archive.write(f, f"adapter/{f.name}")
        return buf.getvalue()


# ----------------------------------------------------------------------------- upload


def upload_panel(sel: ui.Selection) -> None:
    with st.expander("Continue from a saved prompt (PTfer or PEFT)"):
        st.caption("Upload a tuned prompt (.safetensors, optionally with its .json, or a PEFT prompt-tuning adapter as "
                   f".zip) to use it as the source instead of tuning one. At most {services.UPLOAD_LIMIT_MB} MB.")
        files = st.file_uploader("Prompt files", type=["safetensors", "json", "zip"], accept_multiple_files=True,
                                 key="upload", label_visibility="collapsed")
        uploaded = st.session_state.setdefault("uploaded", {})
        if files:
            tensors = [f for f in files if f.name.endswith((".safetensors", ".zip"))]
            sidecars = [f for f in files if f.name.endswith(".json")]
            if not tensors:
                st.error("Add the .safetensors file (or the PEFT .zip): the .json alone holds no vectors.",
                         icon=":material/error:")
            else:
                f = tensors[0]
                try:
                    prompt = services.prompt_from_upload(f.getvalue(), sidecars[0].getvalue() if sidecars else None,
                                                         f.name)
                except PTferError as exc:
                    st.error(f"**{f.name} is not a usable prompt.** {exc}", icon=":material/error:")
                    prompt = None
                if prompt is not None:
                    accept_upload(sel, f.name, prompt, uploaded)
        for name, prompt in list(uploaded.items()):
            c1, c2 = st.columns([5, 1], vertical_alignment="center")
            c1.caption(f"Uploaded source prompt in use: {name} · {prompt.relation}")
            c2.button("Remove", key=f"rm_{name}", on_click=uploaded.pop, args=(name, None), type="tertiary")


def accept_upload(sel: ui.Selection, filename: str, prompt, uploaded: dict) -> None:
    """Check the upload against the sidebar at once (width included), not only when Run is pressed."""
    if prompt.relation == "unknown":  # a PEFT adapter without PTfer's metadata: it is for the selected task
        prompt.relation = sel.task_id
    st.caption(f"{filename}: {prompt.n_vectors} vectors of width {prompt.width}, made on **{prompt.model}** for "
               f"**{prompt.relation}** ({prompt.method}).")
    source = sel.sources[0] if sel.sources else None
    width = services.model_width(source) if source is not None else None
    if width is not None and width != prompt.width:
        st.error(f"**It cannot be the source for {source}:** it has width {prompt.width}, {source} has "
                 f"{width}. It was made for another model.", icon=":material/error:")
        return
    if prompt.model in sel.sources and prompt.relation == sel.task_id or (prompt.method == "peft-import" and source):
        owner = prompt.model if prompt.model in sel.sources else source
        if uploaded.get(owner) is not prompt:
            uploaded[owner] = prompt
        st.success(f"The next run uses it as the {owner} source prompt.", icon=":material/check:")
    else:
        st.info(f"It belongs to {prompt.model} and {prompt.relation}; the sidebar selects "
                f"{', '.join(sel.sources) or 'no source'} and {sel.task_id}.")
        st.button(f"Use {prompt.model} as the source, relation {prompt.relation}", key="use_upload",
                  on_click=_select_upload, args=(prompt.model, prompt.relation))


def _select_upload(model: str, relation: str) -> None:
    st.session_state["src"] = [model]
    st.session_state["rel"] = relation


# ----------------------------------------------------------------------------- page


def body() -> None:
    sel = ui.selection()
    ui.header("Transfer", f"Move a tuned prompt from {sel.pair_label} for {sel.task_id or 'a relation'}, then "
                          "score it on the target's test examples.")
    ui.require_selection(sel)
    busy = st.session_state.get(JOB) is not None
    settings_box, run_area, upload_area = st.container(border=True), st.container(), st.container()
    with upload_area:  # shown last, read first: the source status below reflects an upload at once
        upload_panel(sel)
    with settings_box:
        settings, method, weights = settings_panel(sel)
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
        result = ui.outcome()
        if result is not None:
            result_card(result)
        elif st.session_state.get(JOB) is None:
            st.info("Press **Run transfer**, or open a preset on the Home page.", icon=":material/info:")


ui.guard(body)
