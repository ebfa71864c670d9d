"""Results: the grid of relations × methods × model pairs (shipped, found under runs/, uploaded or run here),
with filters, charts and the analysis figures."""

from pathlib import Path

import streamlit as st

from ptfer_app import charts, results, services, ui
from ptfer_core.grid_tables import method_order, split_by_source
from ptfer_core.jobs import Job

GRID_JOB = "grid_job"
LABELS = {"presets": "Presets in this app", "upload": "Upload a results file", "run": "Run a grid now"}
SORT_KEYS = {"method": method_order, "relation": charts.task_key}  # the filters' lists in reading order
FILTERS = (  # session key, column, label
    ("res_rec", "recipe", "Recipes"),
    ("res_rel", "relation", "Relations"),
    ("res_met", "method", "Methods"),
    ("res_pair", "pair", "Model pairs"),
)


@st.cache_data(show_spinner=False, max_entries=16)
def load_table(path: str, mtime: float):
    return results.read_table(Path(path).read_bytes(), Path(path).name)


def grid_root() -> Path:
    return services.cache_root() / "grids"


# ----------------------------------------------------------------------------- a fresh grid run


def start_grid(name: str, path: Path) -> None:
    from ptfer_core.grid import GridConfig, run_grid

    config = GridConfig.from_file(path)
    if any(m.startswith("tiny:") for m in config.models) and config.data_dir is None:
        config.data_dir = services.demo_data_dir()
    out = grid_root() / name

    def work(job):
        job.begin("grid", f"Running grid {name}")

        def on_step(step, metrics):
            job.report(step, None, metrics.get("total_steps"))
            job.note(f"{'skipped (done before)' if metrics.get('skipped') else 'done'}: {metrics.get('task')}")

        run_grid(config, out, on_step=on_step, should_stop=job.should_stop)
        return out / "results.csv"

    st.session_state[GRID_JOB] = Job(work, "grid", setup=services.cpu_setup).start()


def cancel_grid() -> None:
    job = st.session_state.get(GRID_JOB)
    if job is not None:
        job.cancel()


@st.fragment(run_every=0.5)
def grid_progress() -> None:
    job: Job | None = st.session_state.get(GRID_JOB)
    if job is None:
        return
    if not job.running:
        st.session_state[GRID_JOB] = None
        if job.state == Job.FAILED:
            st.session_state["_flash"] = ("error", f"The grid failed: {job.error}")
        else:
            verb = "stopped" if job.state == Job.CANCELLED else "finished"
            st.session_state["_flash"] = (
                "success",
                f"Grid {verb} after {job.elapsed:.0f} s; finished cells are kept, so running it again resumes.",
            )
            st.session_state["_res_src_next"] = (
                str(job.result.parent.relative_to(results.REPO_ROOT))
                if job.result.is_relative_to(results.REPO_ROOT)
                else str(job.result.parent)
            )
        st.rerun(scope="app")
    snap = job.snapshot()
    phase = snap["phase"]
    box = st.status(phase["label"] if phase else "Starting…", state="running", expanded=True)
    with box.container():  # not `with box`: leaving that marks the status complete
        total = (phase or {}).get("total") or 0
        st.progress(
            min(1.0, phase["step"] / total) if total else 0.0,
            text=f"{phase['step']} of {total} grid cells done" if total else "planning…",
        )
        for line in snap["log"][-4:]:
            st.caption(line)
        st.button(
            "Stop", key="grid_cancel", icon=":material/stop_circle:", on_click=cancel_grid, disabled=job.should_stop()
        )


def run_panel() -> None:
    configs = results.grid_configs()
    if not configs:
        st.info("No grid configurations in grids/.")
        st.stop()
    c1, c2 = st.columns([3, 2], vertical_alignment="bottom")
    name = c1.selectbox(
        "Grid configuration",
        list(configs),
        key="grid_cfg",
        help="A YAML file in grids/, as for `ptfer grid`. Results go to the app cache; an interrupted "
        "run resumes where it stopped.",
    )
    text = configs[name].read_text(encoding="utf-8")
    busy = st.session_state.get(GRID_JOB) is not None
    if c2.button("Run grid", type="primary", key="grid_run", icon=":material/play_arrow:", disabled=busy):
        start_grid(name, configs[name])
    with st.expander("Configuration"):
        st.code(text, language="yaml")
    if "tiny:" not in text:
        st.caption(
            "This grid uses real models: on a 2-core CPU it runs for hours. The same grid from the shell: "
            f"`ptfer grid {configs[name].relative_to(results.REPO_ROOT)}`."
        )
    if st.session_state.get(GRID_JOB) is not None:
        grid_progress()
    st.stop()


# ----------------------------------------------------------------------------- choosing a table


def pick_table():
    found = results.find_tables((grid_root(),))
    options = list(found) + ["presets", "upload", "run"]
    if st.session_state.get("_res_src_next") in options:
        st.session_state["res_src"] = st.session_state.pop("_res_src_next")
    if st.session_state.get("res_src") not in options:
        st.session_state.pop("res_src", None)
    choice = ui.bound(
        st.selectbox,
        "Data",
        "res_src",
        options[0],
        options=options,
        format_func=lambda o: LABELS.get(o, o),
        help="The shipped real grids (assets/grid-real/), tables in assets/results/, outputs of `ptfer grid` found "
        "under runs/, the presets, a file you upload, or a grid run from here.",
    )
    if choice == "run":
        run_panel()
    if choice == "presets":
        return results.presets_table(services.preset_list()), "the presets"
    if choice == "upload":
        f = st.file_uploader(
            "A results table written by `ptfer grid` (results.csv), or CSV / JSON / JSON lines",
            type=["csv", "json", "jsonl"],
            key="res_upload",
        )
        if f is None:
            st.info("Upload a results file, or choose another data source.", icon=":material/info:")
            st.stop()
        try:
            return results.read_table(f.getvalue(), f.name), f.name
        except (ValueError, UnicodeDecodeError) as exc:
            st.error(f"**{f.name} is not a results table.** {exc}", icon=":material/error:")
            st.stop()
    path = found[choice]
    try:
        return results.with_precision(load_table(str(path), path.stat().st_mtime), choice), choice
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        st.error(f"**{choice} cannot be read.** {exc}", icon=":material/error:")
        st.stop()


# ----------------------------------------------------------------------------- analysis


@st.cache_data(show_spinner=False, max_entries=32)
def paper_tables(view, how: str) -> list:
    """The paper layout's tables as (heading, methods × targets table): one per recipe and kind of task. Cached: the
    grouping took ~40 ms of each page load, and a table is read far more often than it changes."""
    classification = results.is_classification(view)
    blocks = [(recipe, kind) for recipe in view["recipe"].unique() for kind in (False, True)]
    coverage = {
        block: view[(view["recipe"] == block[0]) & (classification == block[1])]["relation"].nunique()
        for block in blocks
    }
    tables = []
    for recipe, kind in sorted((b for b in blocks if coverage[b]), key=lambda b: (b[1], -coverage[b], b[0])):
        rows = view[(view["recipe"] == recipe) & (classification == kind)]
        sub = results.averaged(rows, ["method", "target"], how)
        if not len(sub):
            continue
        pivot = sub.pivot(index="method", columns="target", values="p_at_1")
        pivot = pivot.loc[sorted(pivot.index, key=method_order)]
        n = coverage[(recipe, kind)]
        # cells over different relation sets, side by side: said, as summary.md says it
        spans = rows[rows["p_at_1"].notna()].groupby(["method", "target"])["relation"].nunique()
        uneven = (
            ""
            if spans.nunique() <= 1
            else f" · its cells cover {spans.min()} to {spans.max()} of these {'tasks' if kind else 'relations'} "
            "(the Table tab has each cell's rows)"
        )
        if kind:
            what = (
                f"accuracy (%) over {n} classification task{'s' * (n != 1)}: methods × targets, as the paper's Table 6"
            )
        else:
            what = f"P@1 (%) over {n} relation{'s' * (n != 1)}: methods × targets, as the paper's Tables 2-3"
        average = "pooled" if how == "pooled" else "task mean of" if kind else "relation mean of"
        tables.append((f"**Recipe {recipe}** · {average} {what}{uneven}", pivot))
    return tables


def paper_layout(view, how: str) -> None:
    """One table per recipe and kind of task: relations (P@1, the paper's Tables 2-3) and classification tasks
    (accuracy, its Table 6) are never averaged together."""
    for heading, pivot in paper_tables(view, how):
        st.markdown(heading)
        # A static table, one decimal everywhere: a dozen numbers need no data grid (a canvas that is slow to paint).
        ui.table(pivot, default_format="{:.1f}".format)


def one_slice(view, columns: list[str], key: str):
    """The rows of one value of each column that has several (a chart that averaged recipes or model pairs together
    would show numbers no run produced), chosen with a control; and a caption fragment naming the slice."""
    named = []
    for column in columns:
        values = sorted(view[column].unique())
        if len(values) > 1:
            label = {"recipe": "Recipe", "target": "Target model", "tasks": "Tasks"}[column]
            widest = view.groupby(column)["relation"].nunique().idxmax()  # e.g. the recipe run on most relations
            chosen = st.segmented_control(label, values, default=widest, key=f"{key}_{column}", required=True)
            view = view[view[column] == chosen]
        if column != "tasks":  # the caption names the kind of task itself ("tasks relations" read garbled)
            named.append(f"{column} {view[column].iloc[0]}")
    return view, " · " + ", ".join(named) if named else ""


def task_labels() -> dict[str, str]:
    """Each relation's or task's name by its id, from this machine's data (none without data: the ids alone)."""
    from ptfer_core.errors import PTferError
    from ptfer_core.paths import data_dir

    try:
        return {task_id: task.label for task_id, task in services.tasks(str(data_dir())).items()}
    except PTferError:
        return {}


def analysis(df) -> None:
    shown = 0
    transfer = df[df["method"].str.startswith("transfer")]
    score = results.score_name(transfer)
    if "matching_loss" in df.columns and transfer["matching_loss"].notna().any():
        points = transfer.dropna(subset=["matching_loss"])
        st.markdown("**Matching loss vs accuracy** · does a lower loss mean a better prompt?")
        ui.chart(charts.loss_vs_score(points, score), "an_loss")
        shapes = charts.pair_shapes(points["pair"])
        st.caption(
            "Colour: the method (legend). Shape: the model pair, "
            + " · ".join(f"{charts.SHAPE_GLYPHS[shape]} {pair}" for pair, shape in shapes.items())
            + "."
        )
        shown += 1
    others = [
        (c, t)
        for c, t in results.ANALYSIS.items()
        if c != "matching_loss" and c in transfer.columns and transfer[c].nunique() > 1
    ]
    if others:
        cols = st.columns(len(others))
        for col, (column, title) in zip(cols, others):
            agg = results.averaged(transfer, [column])
            agg[column] = agg[column].astype(str)
            col.markdown(f"**{title}**")
            drawn = charts.bars(agg[column].tolist(), agg["p_at_1"].tolist(), f"{score} (%)", x_label=title.lower())
            ui.chart(drawn, f"an_{column}", col)
            shown += 1
    for path in results.figures():
        if path.suffix == ".json":
            import plotly.io as pio

            st.plotly_chart(
                pio.from_json(path.read_text(encoding="utf-8")),
                key=f"fig_{path.stem}",
                config={"displayModeBar": False},
            )
        else:
            st.image(str(path), caption=path.stem.replace("_", " "))
        shown += 1
    if not shown:
        st.caption(
            "The analysis charts (matching loss vs accuracy, normalisation, number of anchors, prompt length) "
            "appear when the table has those columns, as `ptfer grid` tables with transfer rows do; figures "
            "placed in assets/figures/ are shown here too."
        )


def readable_table(view):
    """The rows as a reader wants them: no column that is empty throughout, no derived `pair`, blanks not None."""
    shown = view.drop(columns=["pair"], errors="ignore").dropna(axis=1, how="all")
    text = shown.select_dtypes(include=["object", "string"]).columns  # pandas 3 reads text as `str`, not object
    return shown.assign(**{c: shown[c].fillna("") for c in text})


def table_columns(score: str) -> dict:
    number, text = st.column_config.NumberColumn, st.column_config.TextColumn
    return {
        "relation": text("relation"),
        "relation_type": text("type"),
        "p_at_1": number(score, format="%.1f", help="On the target's test split, in %."),
        "n_facts": number("facts", format="%d"),
        "n_correct": number("correct", format="%d"),
        "seconds": number("seconds", format="%.1f"),
        "matching_loss": number("matching loss", format="%.4f"),
        "selected_step": number("kept step", format="%d"),
        "dev_p_at_1": number(f"dev {score}", format="%.1f"),
        "self_cosine_min": number("self cos (min)", format="%.3f"),
        "self_cosine_mean": number("self cos (mean)", format="%.3f"),
        "self_cosine_unnormalised_min": number("self cos before norm. (min)", format="%.3f"),
        "macro_f1": number("macro-F1", format="%.1f"),
        "n_anchors": number("anchors", format="%d"),
        "n_vectors": number("vectors", format="%d"),
    }


def body() -> None:
    ui.header(
        "Results",
        "Precision@1 (accuracy, for classification tasks) on the target's test split across relations, methods "
        "and model pairs.",
    )
    if st.session_state.get(GRID_JOB) is not None and st.session_state.get("res_src") != "run":
        st.caption("A grid is running: choose “Run a grid now” to follow it.")
    df, origin = pick_table()
    if df.empty:
        st.info("This table has no rows yet.")
        return
    if note := results.precision_note(df):
        st.caption(f":material/info: {note}")
    # The four filters wait in a popover: drawn on the page, four multiselects were the heaviest block of its first
    # paint (`docs/benchmarks.md`, the anatomy runs).
    active = [label for key, _, label in FILTERS if st.session_state.get(key)]
    c1, c2 = st.columns([3, 4], vertical_alignment="bottom")
    with c1.popover(
        f"Filters ({len(active)})" if active else "Filters", icon=":material/filter_list:", width="stretch"
    ):
        chosen = {
            (column, label): st.multiselect(
                label,
                sorted(df[column].unique(), key=SORT_KEYS.get(column)),
                key=key,
                placeholder="all",
                # no "Select N matches" entry: it led the list, so Enter after typing "P17" picked every match
                select_all=False,
            )
            for key, column, label in FILTERS
        }
    how = c2.segmented_control(
        "Average",
        ["relation mean", "pooled"],
        default="relation mean",
        key="res_avg",
        required=True,
        help="Relation mean: the mean of per-relation P@1, the paper's "
        "average. Pooled: all correct answers over all facts.",
    )
    view = df
    for (column, _), values in chosen.items():
        if values:
            view = view[view[column].isin(values)]
    if view.empty:
        st.info("No rows match these filters.")
        return
    view = split_by_source(view)  # one method from two sources to one target: two rows of every chart and table
    if how == "pooled" and not results.can_pool(view):
        st.caption(":material/info: This table has no answer counts, so it shows the relation mean, not pooled.")
        how = "relation mean"
    # rows without a score: a cell that could not run (its error says why), or a score the file does not give
    unscored = view["p_at_1"].isna()
    failed = view[unscored & view["error"].notna()] if "error" in view.columns else view.iloc[0:0]
    named = "; ".join(f"{label.lower()}: {', '.join(map(str, v))}" for (_, label), v in chosen.items() if v)
    scope = f" · only {named}." if named else " · no filter."
    st.caption(f"{len(view)} rows from {origin} · {results.count_tasks(view)}{scope}")
    # Lazy tabs and analysis: only what is open is drawn (as plotly charts, a page of them took ~7 s to settle on
    # a small CPU).
    tab_paper, tab_bar, tab_heat, tab_table = st.tabs(
        ["Paper layout", "By method", "Relation × method", "Table"], key="res_tab", on_change="rerun"
    )
    if tab_paper.open is not False:
        with tab_paper:
            paper_layout(view, how)
    if tab_bar.open:
        with tab_bar:
            # relations (P@1) and classification tasks (accuracy) are never averaged into one bar
            kinds = results.is_classification(view).map({True: "classification", False: "relations"})
            sliced, what = one_slice(view.assign(tasks=kinds), ["tasks", "recipe"], "res_bars")
            ui.chart(
                charts.grid_bars(results.averaged(sliced, ["target", "method"], how), results.score_name(sliced)),
                "res_bars",
            )
            over = "classification tasks" if sliced["tasks"].iloc[0] == "classification" else "relations"
            mean = "task mean" if how == "relation mean" and over != "relations" else how
            st.caption(f"{mean.capitalize()} over the selected {over}{what}.")
    if tab_heat.open:
        with tab_heat:
            sliced, what = one_slice(view, ["recipe", "target"], "res_heat")  # a target's baselines have no source
            ui.chart(charts.grid_heatmap(sliced, score=results.score_name(sliced), labels=task_labels()), "res_heat")
            st.caption(f"{results.score_name(sliced)} per relation and method{what}.")
    if tab_table.open:
        with tab_table:
            st.dataframe(
                readable_table(view),
                hide_index=True,
                placeholder="",  # a number a row does not have (a baseline's matching loss) is blank, not "None"
                width="stretch",
                column_config=table_columns(results.score_name(view)),
            )
            st.download_button(
                "Download (.csv)",
                lambda: view.to_csv(index=False).encode(),  # built when clicked, not on every run
                "results.csv",
                "text/csv",
                key="res_csv",
                on_click="ignore",
                icon=":material/download:",
            )
    if len(failed):
        where = "their error column in the table above" if tab_table.open else "the Table tab"
        st.caption(f"{len(failed)} cells could not run (e.g. direct transfer across widths): see {where}.")
    unscored = int(unscored.sum()) - len(failed)
    if unscored:  # a table without an error column whose scores are not numbers drew empty charts, unexplained
        st.caption(
            f":material/info: {unscored} of {len(view)} rows have no {results.score_name(view)} that is a number "
            "(empty or not numeric in the file): the charts leave them out."
        )
    shelf = st.expander("Analysis: loss vs accuracy, ablations, saved figures", key="res_analysis", on_change="rerun")
    if shelf.open:
        with shelf:
            analysis(view)


ui.guard(body)
