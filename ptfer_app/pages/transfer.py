"""Transfer (live): settings, a cancellable background run with a live chart, and the result card."""
import streamlit as st

from ptfer_app import catalog, charts, pipeline, results, services, ui
from ptfer_app.jobs import Job
from ptfer_core.errors import DimensionMismatchError, ModelLoadError, PTferError

JOB = "transfer_job"
K_OPTIONS, TOPK_OPTIONS = ui.K_OPTIONS, ui.TOPK_OPTIONS
DEFAULTS = pipeline.RunSettings()


# ----------------------------------------------------------------------------- settings


def settings_panel(sel: ui.Selection) -> pipeline.RunSettings:
    multi_ok = len(sel.sources) > 1
    c1, c2, c3 = st.columns([5, 4, 5])
    method = ui.bound(
        c1.segmented_control, "Method", "method", "transfer", options=["transfer", "direct-transfer"], required=True,
        format_func={"transfer": "Relative-space transfer", "direct-transfer": "Direct transfer"}.get,
        help="Relative-space transfer is PTfer. Direct transfer copies the vectors unchanged (a baseline that "
             "needs equal widths).")
    mode = ui.bound(
        c2.segmented_control, "Sources", "mode", "single", options=["single", "multi"], required=True,
        disabled=not multi_ok or method != "transfer",
        format_func={"single": "Single", "multi": f"Multi ({len(sel.sources)})" if multi_ok else "Multi"}.get,
        help="Multi-source matches the relative encodings of all selected source prompts at once. "
             "Select two or three source models in the sidebar to enable it.")
    selection = ui.bound(
        c3.segmented_control, "Pick the result by", "selection", "loss", options=["loss", "dev"], required=True,
        format_func={"loss": "Matching loss (zero-shot)", "dev": "Target dev P@1"}.get,
        disabled=method != "transfer",
        help="Matching loss uses no target labels. Target dev P@1 scores candidates on labelled target data every "
             "few steps, as the original PTfer code did; it is not zero-shot.")
    c1, c2, c3, c4 = st.columns([3, 3, 2, 4], vertical_alignment="bottom")
    k = ui.bound(c1.selectbox, "Anchors (k)", "k", 8192, options=K_OPTIONS,
                 format_func=lambda v: "all shared words" if v == 0 else f"{v:,}",
                 help="How many shared words the relative encoding uses.", disabled=method != "transfer")
    top_k = ui.bound(c2.selectbox, "Top-K similarities", "topk", 0, options=TOPK_OPTIONS,
                     format_func=lambda v: "all" if v == 0 else str(v), disabled=method != "transfer",
                     help="Keep only each vector's K largest similarities (sparse encoding).")
    normalize = ui.bound(c3.toggle, "Normalise", "norm", True, disabled=method != "transfer",
                         help="Rescale the searched vectors to the target embeddings' statistics in every step.")
    steps = ui.bound(c4.slider, "Search steps", "steps", DEFAULTS.steps, min_value=50, max_value=10000, step=50,
                     disabled=method != "transfer", help="Upper limit; the search stops early when the loss stalls.")
    with st.expander("Source prompt tuning and more"):
        a1, a2, a3 = st.columns(3)
        epochs = ui.bound(a1.number_input, "Tuning epochs (source)", "epochs", DEFAULTS.tune_epochs, min_value=1,
                          max_value=200, help="Only used when no tuned source prompt is cached for these settings.")
        n_vectors = ui.bound(a2.number_input, "Prompt vectors (m)", "m", DEFAULTS.n_vectors, min_value=1, max_value=20)
        patience = ui.bound(a3.number_input, "Early stop after (steps without progress)", "patience", DEFAULTS.patience,
                            min_value=0, max_value=10000, step=10, help="0: never stop early.")
        a4, a5, _ = st.columns(3)
        init = ui.bound(a4.selectbox, "Source prompt starts from", "init", DEFAULTS.tune_init,
                        options=["random", "manual", "vocab-sample"],
                        format_func={"random": "random vectors", "manual": "the manual template's words",
                                     "vocab-sample": "random vocabulary tokens"}.get,
                        help="Initialisation of the source prompt, when one has to be tuned.")
        placement = ui.bound(a5.selectbox, "Vectors placed", "place", DEFAULTS.placement,
                             options=["postfix", "prefix", "split", "template"],
                             format_func={"postfix": "after [X] (the paper)", "prefix": "before [X]",
                                          "split": "around [X]", "template": "like the manual template"}.get,
                             help="“Like the manual template”: one vector per template token before and after [X] "
                                  "(m follows the template); with the template's words as the start it begins as "
                                  "the manual prompt. It tunes best on causal models (docs/transferability.md).")
        b1, b2, b3 = st.columns(3)

        def choice(column, label: str, key: str, default: str, labels: dict[str, str], help: str) -> str:
            return ui.bound(column.selectbox, label, key, default, options=list(labels), format_func=labels.get,
                            disabled=method != "transfer", help=help)

        space = choice(b1, "Similarities to the anchors", "space", DEFAULTS.space,
                       {"raw": "cosine (the paper)", "centred": "cosine, centred on the vocabulary",
                        "standardised": "standardised (centred, z-scored per anchor)"},
                       "Standardised: cosines taken around the anchors' mean, then each anchor's similarity z-scored "
                       "over the anchor set. It removes each model's common offset and the hub words that are near "
                       "everything. On SmolLM2 ↔ Gemma a word's encoding finds the same word in the other model 0 % "
                       "of the time with plain cosines, 13–63 % standardised, about 60 % with the hub penalty as well "
                       "(docs/transferability.md).")
        projection = choice(b2, "Afterwards, move onto target tokens", "proj_out", DEFAULTS.projection,
                            {"none": "no (the paper)", "nearest": "nearest token", "shared": "nearest shared word",
                             "mix": "mix of nearest tokens"},
                            "A label-free last step: replace each vector by its nearest target token, by its nearest "
                            "word among those the models share (the default: best in the study), or by a "
                            "similarity-weighted mix of its nearest tokens.")
        solver = choice(b3, "Find target vectors by", "solver", DEFAULTS.solver,
                        {"adam": "search (Adam, the paper)", "lstsq": "closed form (least squares)",
                         "vocabulary": "best-matching target words"},
                        "The closed form solves for the best-matching direction of each vector at once (milliseconds) "
                        "and normalises it afterwards. “Best-matching target words” picks, for each vector, the shared "
                        "word whose relative encoding in the target matches the source's best. Neither has steps to "
                        "pick from, so the result is chosen by matching loss.")
        hubs = ui.bound(st.toggle, "Penalise hub words (CSLS)", "hubs", False,
                        disabled=method != "transfer" or solver != "vocabulary",
                        help="For “best-matching target words”: subtract each word's mean similarity to its 10 nearest "
                             "source words, so words that are near everything stop winning every vector.")
        weights = None
        if mode == "multi" and multi_ok and method == "transfer":
            st.caption("Blend of the source prompts (relative weight of each model's encoding)")
            cols = st.columns(len(sel.sources))
            weights = tuple(float(col.slider(name, 0.0, 1.0, 1.0, 0.05, key=f"w_{i}")) for i, (col, name)
                            in enumerate(zip(cols, sel.sources)))
    return pipeline.RunSettings(
        method=method, n_anchors=k or None, top_k=top_k or None, normalize=normalize,
        selection="loss" if solver != "adam" else selection, solver=solver,
        steps=int(steps), patience=int(patience) or None, weights=weights, n_vectors=int(n_vectors), tune_epochs=int(epochs),
        space=space, hub_penalty=bool(hubs), projection=projection, tune_init=init, placement=placement, seed=sel.seed)


def run_sources(sel: ui.Selection, settings: pipeline.RunSettings) -> list[str]:
    if settings.method == "transfer" and st.session_state.get("mode") == "multi" and len(sel.sources) > 1:
        return list(sel.sources)
    return sel.sources[:1]


def source_status(sel, settings, sources) -> None:
    """One line per source: where its tuned prompt will come from."""
    uploaded = st.session_state.get("uploaded", {})
    known = services.preset_source_prompts()
    for name in sources:
        if name in uploaded and uploaded[name].relation == sel.relation_id:
            st.caption(f":material/upload_file: {name}: your uploaded prompt is the source.")
        elif pipeline.find_cached_source(name, sel.relation_id, settings, known) is not None:
            st.caption(f":material/check_circle: {name}: a tuned prompt for {sel.relation_id} is cached.")
        else:
            slow = "" if catalog.is_tiny(name) else " On this 2-core CPU that takes minutes for a real model."
            st.caption(f":material/schedule: {name}: no tuned prompt for {sel.relation_id} with these settings yet; "
                       f"it is tuned first ({settings.tune_epochs} epochs) and cached.{slow}")


# ----------------------------------------------------------------------------- running


def start(sel: ui.Selection, settings: pipeline.RunSettings, sources: list[str]) -> None:
    """Start the run in a background thread: loading the models is part of it, so the page never blocks."""
    st.session_state.pop("last_error_detail", None)
    names = list(dict.fromkeys([*sources, sel.target]))
    relation, rid, data_dir, target = sel.relation, sel.relation_id, sel.data_dir, sel.target
    uploaded = {k: v for k, v in st.session_state.get("uploaded", {}).items() if v.relation == rid}
    known = services.preset_source_prompts()

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
        job.begin("prepare", "Preparing data and anchors", 1)
        splits = services.splits(rid, data_dir)
        candidates = {n: services.candidates(lm, data_dir) for n, lm in lms.items()}
        pipeline.check_enough_facts(relation, splits, candidates)
        if settings.method == "direct-transfer" and lms[sources[0]].width != lms[target].width:
            raise DimensionMismatchError(
                f"Direct transfer copies the vectors unchanged, so both models need the same embedding width: "
                f"{sources[0]} has {lms[sources[0]].width}, {target} has {lms[target].width}. "
                "Use the relative-space transfer instead.")
        anchors = services.anchors(tuple(names), settings.n_anchors) if settings.method == "transfer" else None
        shared_words = services.anchors(tuple(dict.fromkeys([sources[0], target])), None)
        job.report(1)
        return pipeline.run_transfer(job, sources=[(n, lms[n]) for n in sources], target=lms[target],
                                     relation=relation, splits=splits, candidates=candidates, settings=settings,
                                     anchors=anchors, uploaded=uploaded, known_prompts=known,
                                     shared_words=shared_words)

    st.session_state[JOB] = Job(work, "transfer", setup=pipeline.cpu_setup).start()


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


def result_card(result: pipeline.Outcome) -> None:
    st.subheader("Result", anchor=False)
    ui.outcome_caption(result)
    order = [result.method, "manual", "discretization", "random"]
    cols = st.columns(len(order))
    manual = result.scores.get("manual", {}).get("p_at_1")
    for col, method in zip(cols, order):
        score = result.scores.get(method)
        if score is None:
            col.metric(pipeline.METHOD_LABELS.get(method, method), "—")
            continue
        delta = None
        if method == result.method and manual is not None and abs(score["p_at_1"] - manual) >= 0.05:
            delta = f"{score['p_at_1'] - manual:+.1f} vs manual"
        col.metric(pipeline.METHOD_LABELS.get(method, method), f"{score['p_at_1']:.1f}", delta=delta,
                   delta_color="normal", help=f"P@1 (%) over {score['n_facts']} test facts of {result.target}")
    transferred = result.scores.get(result.method, {}).get("p_at_1")
    if manual and transferred is not None and transferred < manual / 2:
        why = results.why_transfer_fell_short(result.sources[0], result.target) if result.sources else None
        if why:
            st.info(f"**The transferred prompt scores below half the manual template.** {why}",
                    icon=":material/science:")
    n = result.scores.get(result.method, {}).get("n_facts", 0)
    st.caption(f"Precision@1 (%) on {n} test facts of {result.relation.id} whose answer is a single token of "
               f"{result.target}. Random: vectors drawn like {result.target}'s embeddings. Discretisation: each source "
               f"vector replaced by its nearest shared word" +
               (f" ({', '.join(result.discretized_tokens)})." if result.discretized_tokens else "."))
    left, right = st.columns([3, 2], gap="large")
    with left:
        traj = result.transferred.trajectory
        if traj:
            st.plotly_chart(charts.trajectory(traj, "Matching loss of the search"), key="result_chart",
                            config={"displayModeBar": False})
        else:
            st.caption("Direct transfer has no search: the vectors are copied.")
    with right:
        prov = result.transferred.provenance
        st.markdown("**The prompt**")
        st.code(result.transferred.template.replace("[V]", "▢"), language=None)
        facts = [f"{result.transferred.n_vectors} vectors of width {result.transferred.width}"]
        if "selected_step" in prov:
            facts.append(f"kept step {prov['selected_step']} of {prov.get('steps_run')} "
                         f"({'by matching loss' if prov.get('config', {}).get('selection') == 'loss' else 'by target dev P@1'})")
        if "n_anchors" in prov:
            facts.append(f"{prov['n_anchors']:,} anchors")
        if result.timings:
            order = lambda k: (0 if k.startswith("source") else 1 if k == "search" else 2 if k.startswith("evaluate") else 3, k)
            facts.append("time: " + ", ".join(f"{k} {result.timings[k]:.1f} s" for k in sorted(result.timings, key=order)))
        st.caption(" · ".join(facts))
        data, meta = result.transferred.to_bytes()
        stem = f"{result.target}_{result.relation.id}_{result.method}"
        st.download_button("Download the prompt (.safetensors)", data, f"{stem}.safetensors",
                           "application/octet-stream", key="dl_st", icon=":material/download:", width="stretch")
        st.download_button("Download its metadata (.json)", meta, f"{stem}.json", "application/json", key="dl_json",
                           icon=":material/download:", width="stretch")
        if result.source_prompts:
            src_data, _ = result.source_prompts[0].to_bytes()
            st.download_button(f"Source prompt ({result.sources[0]})", src_data,
                               f"{result.sources[0]}_{result.relation.id}_tuned.safetensors", key="dl_src",
                               icon=":material/download:", type="tertiary")


# ----------------------------------------------------------------------------- upload


def upload_panel(sel: ui.Selection) -> None:
    with st.expander("Continue from a saved prompt"):
        st.caption("Upload a tuned prompt (.safetensors, optionally with its .json) to use it as the source instead of "
                   "tuning one.")
        files = st.file_uploader("Prompt files", type=["safetensors", "json"], accept_multiple_files=True,
                                 key="upload", label_visibility="collapsed")
        uploaded = st.session_state.setdefault("uploaded", {})
        if files:
            tensors = [f for f in files if f.name.endswith(".safetensors")]
            sidecars = [f for f in files if f.name.endswith(".json")]
            if not tensors:
                st.error("Add the .safetensors file: the .json alone holds no vectors.", icon=":material/error:")
            else:
                f = tensors[0]
                try:
                    prompt = services.vectors_from_upload(f.getvalue(), sidecars[0].getvalue() if sidecars else None, f.name)
                except PTferError as exc:
                    st.error(f"**{f.name} is not a usable prompt.** {exc}", icon=":material/error:")
                    prompt = None
                if prompt is not None:
                    st.caption(f"{f.name}: {prompt.n_vectors} vectors of width {prompt.width}, tuned on "
                               f"**{prompt.model}** for **{prompt.relation}** ({prompt.method}).")
                    if prompt.model in sel.sources and prompt.relation == sel.relation_id:
                        if uploaded.get(prompt.model) is not prompt:
                            uploaded[prompt.model] = prompt
                        st.success(f"The next run uses it as the {prompt.model} source prompt.", icon=":material/check:")
                    else:
                        st.info(f"It belongs to {prompt.model} and {prompt.relation}; the sidebar selects "
                                f"{', '.join(sel.sources) or 'no source'} and {sel.relation_id}.")
                        st.button(f"Use {prompt.model} as the source, relation {prompt.relation}", key="use_upload",
                                  on_click=_select_upload, args=(prompt.model, prompt.relation))
        for name, prompt in list(uploaded.items()):
            c1, c2 = st.columns([5, 1], vertical_alignment="center")
            c1.caption(f"Uploaded source prompt in use: {name} · {prompt.relation}")
            c2.button("Remove", key=f"rm_{name}", on_click=uploaded.pop, args=(name, None), type="tertiary")


def _select_upload(model: str, relation: str) -> None:
    st.session_state["src"] = [model]
    st.session_state["rel"] = relation


# ----------------------------------------------------------------------------- page


def body() -> None:
    sel = ui.selection()
    ui.header("Transfer", f"Move a tuned prompt from {sel.pair_label} for {sel.relation_id or 'a relation'}, then "
                          "score it on the target's test facts.")
    ui.require_selection(sel)
    busy = st.session_state.get(JOB) is not None
    settings_box, run_area, upload_area = st.container(border=True), st.container(), st.container()
    with upload_area:  # shown last, read first: the source status below reflects an upload at once
        upload_panel(sel)
    with settings_box:
        settings = settings_panel(sel)
        sources = run_sources(sel, settings)
        if not busy:
            source_status(sel, settings, sources)
        clicked = st.button("Run transfer", type="primary", key="run", icon=":material/play_arrow:", disabled=busy)
    with run_area:
        if clicked and not busy:
            start(sel, settings, sources)
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
