"""Shared Streamlit pieces: the sidebar (models, relation, seed; mirrored in the URL), session state, error display."""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING

import streamlit as st

from ptfer_core.config import METHOD_LABELS
from ptfer_core.errors import ModelLoadError, PTferError

from . import catalog, services
from .html_table import html_table, unbroken
from .url_state import bound, initial, note, setting_key, url_init, url_keep  # noqa: F401 - pages call ui.bound

if TYPE_CHECKING:  # compare pulls in torch, which the first page of a fresh server does not need
    from ptfer_core.compare import Outcome

PAGES = {
    "home": "app_pages/home.py",
    "transfer": "app_pages/transfer.py",
    "nearest": "app_pages/nearest_tokens.py",
    "space": "app_pages/relative_space.py",
    "query": "app_pages/query.py",
    "results": "app_pages/results.py",
}


@dataclass
class Selection:
    """What the sidebar selects; `problem` is a blocking message (e.g. the data are missing)."""

    sources: list[str]
    target: str
    task_id: str | None
    seed: int
    data_dir: str | None
    tasks: dict = field(default_factory=dict)
    problem: str | None = None

    @property
    def task(self):
        return self.tasks.get(self.task_id)

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys([*self.sources, self.target]))

    @property
    def pair_label(self) -> str:
        return f"{' + '.join(self.sources) or '—'} → {self.target}"


# ----------------------------------------------------------------------------- session state


def outcome() -> Outcome | None:
    return st.session_state.get("outcome")


def set_outcome(value: Outcome | None) -> None:
    st.session_state["outcome"] = value


def selection() -> Selection:
    return st.session_state["_selection"]


def _differences(recipe: str, cfg: dict) -> dict:
    from ptfer_core.settings import recipe_settings

    now = recipe_settings(recipe)
    out = {}
    for group in ("tune", "transfer", "projector"):
        current = getattr(now, group).to_dict()
        changed = {
            k: v for k, v in (cfg.get(group) or {}).items() if k != "settings_version" and current.get(k, v) != v
        }
        out[group] = {**(cfg.get("overrides") or {}).get(group, {}), **changed}
    return {g: v for g, v in out.items() if v}


def _apply_preset_keys(result: Outcome, only_missing: bool = False) -> None:
    """Select the preset's models, task, recipe and settings, so that "Run transfer" repeats it."""
    cfg = result.settings
    recipe = cfg.get("recipe", "studio")
    values = {
        "src": list(result.sources),
        "tgt": result.target,
        "rel": result.task.id,
        "seed": int(cfg.get("tune", {}).get("seed", 0)),
        "mode": "multi" if len(result.sources) > 1 else "single",
        "method": cfg.get("method", "transfer"),
        "recipe": recipe,
    }
    for group in ("tune", "transfer"):
        for name, value in (cfg.get(group) or {}).items():
            if name != "settings_version":
                values[setting_key(recipe, group, name)] = value
    # Settings without a widget (a learning rate, say) still come from the preset, so "Run transfer" repeats it:
    # every recorded value that differs from the recipe as it is now (a default may have changed since).
    values["_hidden_overrides"] = {"recipe": recipe, "overrides": _differences(recipe, cfg)}
    for key, value in values.items():
        if only_missing and (key in st.query_params or key.split(".")[-1] in st.query_params):
            continue
        st.session_state[key] = value


def open_preset(path: str, goto: str | None = "transfer") -> None:
    """Button callback: make a preset the current result, select its models, go to its page."""
    try:
        result = services.preset(path)
    except PTferError as exc:
        st.session_state["_flash"] = ("error", f"This preset cannot be opened: {exc}")
        return
    set_outcome(result)
    _apply_preset_keys(result)
    if goto:
        st.session_state["_goto"] = goto


def sync_preset_from_url() -> None:
    """On a session's first run, ?preset=ID opens that preset (before the sidebar widgets are drawn).

    Only then: afterwards the URL follows the session (`sync_preset_to_url`), and a live result that replaced an
    opened preset must never be swapped back for the preset the URL still names on the rerun that shows it."""
    if st.session_state.get("_url_preset_done"):
        return
    st.session_state["_url_preset_done"] = True
    wanted = st.query_params.get("preset")
    current = outcome()
    if not wanted or (current is not None and current.origin == f"preset:{wanted}"):
        return
    match = next((m for m in services.preset_list() if m["id"] == wanted), None)
    if match is None:
        st.session_state["_flash"] = ("warning", f"There is no preset called {wanted!r}.")
        return
    try:
        result = services.preset(match["path"])
    except PTferError as exc:
        st.session_state["_flash"] = ("error", f"Preset {wanted!r} cannot be opened: {exc}")
        return
    set_outcome(result)
    _apply_preset_keys(result, only_missing=True)


def sync_preset_to_url() -> None:
    current = outcome()
    pid = current.origin.split(":", 1)[1] if current is not None and current.origin.startswith("preset:") else None
    if pid and st.query_params.get("preset") != pid:
        st.query_params["preset"] = pid
    elif not pid and "preset" in st.query_params:
        del st.query_params["preset"]


# ----------------------------------------------------------------------------- sidebar


SEED_MAX = 99_999


def _load_tasks(sel: Selection) -> None:
    """The selection's data directory and tasks; a missing data set, or no source model, becomes its problem."""
    try:
        sel.data_dir = services.data_dir_for(sel.models)
        sel.tasks = services.tasks(sel.data_dir)
    except PTferError as exc:
        sel.problem = str(exc)
    if not sel.sources:
        sel.problem = sel.problem or "Pick at least one source model in the sidebar."


def _default_task(d_rel: str, options: list[str]) -> str:
    return d_rel if d_rel in options else "P36" if "P36" in options else options[0]


def quiet_selection() -> Selection:
    """What the sidebar selects, without drawing it: the session's values, else a shared link's, else the defaults.

    The home page has no sidebar: its presets choose their own models, and the four pickers alone cost a fresh
    browser ~0.7 s of drawing on two cores (`docs/first_paint_anatomy.json`). Values from a link are moved into the
    session here, so the sidebar of the next page starts from them (page links drop the URL's parameters)."""
    names = catalog.model_names()
    d_src, d_tgt, d_rel = catalog.default_selection()
    url_init("src", names, multi=True)
    url_init("tgt", names)
    url_init("seed", cast=int)
    sources = [n for n in st.session_state.get("src", [d_src]) if n in names]
    target = st.session_state.get("tgt", d_tgt)
    seed = st.session_state.get("seed", 0)
    sel = Selection(
        sources=sources,
        target=target if target in names else d_tgt,
        task_id=None,
        seed=seed if isinstance(seed, int) and 0 <= seed <= SEED_MAX else 0,  # the sidebar says so when it draws
        data_dir=None,
    )
    _load_tasks(sel)
    if sel.tasks:
        options = list(sel.tasks)
        url_init("rel", options)
        current = st.session_state.get("rel")
        sel.task_id = current if current in options else _default_task(d_rel, options)
    return sel


def selection_line(sel: Selection) -> str:
    """The sidebar's summary of the chosen models, relation or task and seed."""
    task = sel.task
    what = (task.label if task.is_classification else f"{sel.task_id} · {task.label}") if task else "no relation"
    sources = " + ".join(sel.sources) or "no source"
    return f"{sources} → {sel.target}\n{what} · seed {sel.seed}"


def sidebar() -> Selection:
    names = catalog.model_names()
    d_src, d_tgt, d_rel = catalog.default_selection()
    summary = st.sidebar.empty()  # the heading and what is chosen, as one element
    # The pickers sit in a popover: closed, the browser draws none of them (they were ~0.35 s of a page's ~1 s
    # first paint on 2 cores; `benchmarks/first_paint.py --anatomy --blocks pickers`). The line above says what
    # is chosen.
    sb = st.sidebar.popover("Change", icon=":material/tune:", width="stretch")
    url_init("src", names, multi=True)
    url_init("tgt", names)
    url_init("seed", cast=int)
    sources = sb.multiselect(
        "Source model(s)",
        names,
        **initial("src", default=[d_src]),
        format_func=catalog.label,
        key="src",
        persist_state="session",  # kept while the home page, which has no sidebar, is shown
        max_selections=3,
        select_all=False,  # Enter after typing picks the model typed, not every match
        help="The model(s) whose tuned prompt is transferred. Pick two or three for multi-source transfer.",
    )
    target = sb.selectbox(
        "Target model",
        names,
        **initial("tgt", index=names.index(d_tgt)),
        format_func=catalog.label,
        key="tgt",
        persist_state="session",
        help="The model that receives the prompt, zero-shot.",
    )
    url_keep("src", list(sources), [d_src])
    url_keep("tgt", target, d_tgt)
    sel = Selection(sources=list(sources), target=target, task_id=None, seed=0, data_dir=None)
    _load_tasks(sel)
    options = list(sel.tasks)
    if options:
        url_init("rel", options)
        if st.session_state.get("rel") not in options:
            st.session_state.pop("rel", None)
        default = _default_task(d_rel, options)
        sel.task_id = sb.selectbox(
            "Relation or task",
            options,
            **initial("rel", index=options.index(default)),
            key="rel",
            persist_state="session",
            # a classification task by its label alone ("SST-2 sentiment"): with its id it did not fit the sidebar
            format_func=lambda r: (
                (sel.tasks[r].label if sel.tasks[r].is_classification else f"{r} · {sel.tasks[r].label}")
                if r in sel.tasks
                else r
            ),
            help="A LAMA relation the prompt asks about (e.g. P36, capital), or a classification task (SST-2 "
            "sentiment, DBpedia topic) when the data has them.",
        )
        url_keep("rel", sel.task_id, default)
    else:
        sb.selectbox("Relation", ["—"], disabled=True, key="rel_none")
    if "seed" in st.session_state and not 0 <= int(st.session_state["seed"]) <= SEED_MAX:
        note(f"The link's seed={st.session_state['seed']} is outside 0–{SEED_MAX}; 0 is used.")
        st.session_state["seed"] = 0
    sel.seed = int(
        sb.number_input(
            "Seed",
            min_value=0,
            max_value=SEED_MAX,
            **initial("seed", value=0),
            step=1,
            key="seed",
            persist_state="session",
            help="Seeds prompt tuning, the transfer search and the random baseline.",
        )
    )
    url_keep("seed", sel.seed, 0)
    # a model's name is not broken at its hyphen ("gemma3-" / "270m") in the narrow sidebar
    lines = "<br>".join(unbroken(line) for line in selection_line(sel).split("\n"))
    summary.html(text_html("**Models and relation**") + f'<div style="line-height:1.6">{lines}</div>')
    sb = st.sidebar
    for name in sel.models:
        if catalog.is_available(name):
            continue
        if catalog.is_local(name):
            sb.warning(
                f"**{name}** is not on this machine. Fetch it once:\n\n`{catalog.fetch_command(name)}`",
                icon=":material/download:",
            )
        else:
            sb.info(
                f"**{name}** loads from the Hugging Face hub, which needs internet access.", icon=":material/cloud:"
            )
    if sel.problem:
        sb.error(sel.problem, icon=":material/error:")
    if any(catalog.is_toy(n) for n in sel.models):
        sb.caption(
            "Toy models: tiny networks trained on a miniature LAMA (162 words). They show the mechanics "
            "quickly; their numbers say nothing about real language models."
        )
    current = outcome()
    if current is not None:  # a rule and a caption, one element
        line = f"**Current prompt** · {current.pair_label} · {current.task.id}"
        line += " · preset" if current.origin.startswith("preset:") else ""
        sb.html('<hr style="margin:1rem 0">' + text_html(line, caption=True))
    return sel


# ----------------------------------------------------------------------------- page helpers

# The page-wide style, one <style> (st.html sends a style-only block to its event container: no element to draw).
# The top navigation's "N more" button ran 13 px past an 800 px window: Streamlit's overflow count measures the
# navigation's full width; a margin keeps that button inside the window.
# Below 1100 px the open sidebar is 240 px, not 300: at 800 px the page kept 490 px (its facts table scrolled sideways
# and three pages hid behind "3 more"), now 550 px. Only while open: a folded sidebar keeps Streamlit's zero width.
PAGE_STYLE = (
    '[data-testid="stTopNav"]{margin-right:1rem}'
    '@media (max-width:1100px){[data-testid="stSidebar"][data-collapsed="false"]{width:240px!important;'
    "min-width:240px!important;max-width:240px!important}}"
)


def page_style() -> None:
    st.html(f"<style>{PAGE_STYLE}</style>")


def header(title: str, intro: str | None = None, result: Outcome | None = None) -> None:
    """The page's title, then its intro and the shown prompt's line (`result`) as one block of captions."""
    st.title(title, anchor=False)
    lines = [intro] if intro else []
    if result is not None:
        lines.append(outcome_line(result))
    if lines:
        block(*(text_html(line, caption=True) for line in lines))


def flash() -> None:
    """The last run's outcome message, and notes about link values that were clamped or ignored."""
    message = st.session_state.pop("_flash", None)
    if message:
        getattr(st, message[0])(message[1])
    url_notes()


def url_notes() -> None:
    """Notes about link values that were clamped or ignored (the page's own settings add theirs as it runs)."""
    for text in st.session_state.pop("_url_notes", []):
        st.caption(f":material/info: {text}")


def show_error(exc: BaseException, what: str = "") -> None:
    """A PTferError in plain words; anything else as a short message with the details folded away."""
    prefix = f"{what}: " if what else ""
    result = outcome()
    if isinstance(exc, ModelLoadError) and result is not None and result.origin.startswith("preset:"):
        # the preset's own views need no model: this one was not recorded with it
        prefix += (
            "This view is not among those recorded with the preset (its pages' default settings and its test "
            "examples, on the data it was made with). "
        )
    if isinstance(exc, PTferError):
        st.error(prefix + str(exc), icon=":material/error:")
    else:
        st.error(f"{prefix}something went wrong ({type(exc).__name__}: {exc}).", icon=":material/error:")
        with st.expander("Details for a bug report"):
            st.code("".join(traceback.format_exception(exc)), language=None)


def guard(body) -> None:
    """Run a page body; errors become in-app messages, never tracebacks."""
    try:
        body()
    except Exception as exc:
        show_error(exc)


def require_selection(sel: Selection) -> None:
    if sel.problem or sel.task is None:
        st.info(sel.problem or "Choose models and a relation in the sidebar.", icon=":material/info:")
        st.stop()


def require_outcome(what: str) -> Outcome:
    result = outcome()
    if result is None:
        st.info(
            f"{what} needs a transferred prompt. Open a preset on the Home page or run a transfer first.",
            icon=":material/info:",
        )
        c1, c2, _ = st.columns([1, 1, 3])
        c1.page_link(PAGES["home"], label="Presets", icon=":material/home:")
        c2.page_link(PAGES["transfer"], label="Transfer", icon=":material/swap_horiz:")
        st.stop()
    return result


def recipe_label(settings: dict) -> str | None:
    """A run's recipe as every page names it: a run whose settings differ from its recipe's says which (a solver
    switched to Adam is no longer plain studio), on a preset's card as on its pages."""
    recipe = settings.get("recipe")
    try:
        differences = _differences(recipe, settings) if recipe else {}
    except PTferError:  # a recipe this version no longer has: its name as recorded
        return recipe
    changed = [f"{k} {v}" for group in differences.values() for k, v in group.items()]
    if changed:
        recipe += f" (changed: {', '.join(changed[:4])}{', …' if len(changed) > 4 else ''})"
    return recipe


def outcome_line(result: Outcome) -> str:
    """Which prompt a page shows: its pair, task, method, recipe and origin (markdown)."""
    origin = "preset" if result.origin.startswith("preset:") else "your run"
    recipe = recipe_label(result.settings)
    return (
        f"Prompt: **{result.pair_label}** · {result.task.id} ({result.task.label}) · "
        f"{METHOD_LABELS.get(result.method, result.method).lower()}"
        + (f" · recipe {recipe}" if recipe else "")
        + f" · {origin}"
    )


def digest(vectors) -> str:
    """A hash naming these exact vectors, their type and shape (keys for the cached tables and recorded views)."""
    import hashlib

    array = vectors.detach().cpu().numpy()
    return hashlib.sha256(f"{array.dtype}{array.shape}".encode() + array.tobytes()).hexdigest()[:32]


KEPT = 0xF0000  # the first of the private-use characters `inline_html` sets code spans and escapes aside as

# Inline code as Streamlit's markdown draws it: the browser's default monospace ran a size larger than the text.
CODE = "font-size:0.875em;padding:0.1em 0.25em;border-radius:0.25rem;background:rgba(172,177,195,0.25)"


def inline_html(text: str) -> str:
    """Markdown's inline marks as HTML, for text drawn through st.html (which shows `**` and backticks as typed):
    **bold**, *italic*, `code`, line breaks and backslash escapes (`literal`); everything else escaped."""
    import re

    # code spans and escaped characters stand aside as private-use characters (plane 15: 65,534 of them) while the
    # marks are read; a text with more falls back to no marks at all
    if text.count("`") + text.count("\\") > 2 * 65_000:
        return escape(text)
    kept: list[str] = []

    def keep(match) -> str:
        code, escaped = match.group(1), match.group(2)
        kept.append(
            f'<code style="{CODE}">{escape(code)}</code>' if code is not None else escape(escaped or match.group(0))
        )
        return chr(KEPT + len(kept) - 1)

    # (private-use characters of the text itself, a tokenizer's, stand aside too)
    out = escape(re.sub(r"`([^`]+)`|\\([\\*`_])|[\U000f0000-\U000ffffd]", keep, text))
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", out)
    out = re.sub(r" *\n", "<br>", out)
    return re.sub("[\U000f0000-\U000ffffd]", lambda m: kept[ord(m.group(0)) - KEPT], out)


def literal(text: str) -> str:
    """`text` (a token, a user's input) with the marks `inline_html` reads (\\, *, `, _) escaped, so that it shows
    them as typed; in Streamlit's own markdown these are escaped too, but links, $…$ and :colour[…] are not."""
    import re

    return re.sub(r"([\\*`_])", r"\\\1", text)


# st.caption's look (its text colour is the body's at 60 %), for captions drawn inside an st.html block.
CAPTION = "font-size:0.875rem;opacity:0.6;line-height:1.5"


def text_html(text: str, caption: bool = False, lines: int = 0, marks: bool = True) -> str:
    """A paragraph for `block`, a caption or body text; `marks`: markdown's inline marks are read (`inline_html`),
    else the text is shown as typed (a user's input); `lines`: the height it keeps at least, so panels abreast
    start their tables on one line."""
    style = CAPTION if caption else "line-height:1.6"
    style += f";min-height:{1.5 * lines}em" if lines else ""
    return f'<div style="{style};margin-bottom:0.5rem">{inline_html(text) if marks else escape(text)}</div>'


def block(*parts: str, where=None) -> None:
    """Texts, a table or a picture drawn as one st.html element, laid out as one box: panels abreast line up, and
    the browser has fewer elements to draw (three answer panels as one block each settled 0.07 s sooner in the
    anatomy, `benchmarks/first_paint.py --anatomy --interleave --blocks panels:`; on the app's pages, within the
    run-to-run spread)."""
    (where or st).html("".join(parts))


def row(align: str = "bottom", gap: str = "medium"):
    """Controls or figures side by side that wrap onto another line when the page is narrow (st.columns keeps its
    columns and clipped their segmented controls and labels at 800 px with the sidebar open)."""
    return st.container(horizontal=True, vertical_alignment=align, gap=gap)


def panels(widths: list, gap: str = "large", align: str = "top") -> list:
    """Side-by-side panels of these widths (px, or "content") that wrap onto the next line on a narrow page. In
    st.columns, three answer tables shared 450 px at 800 px with the sidebar open, and their words broke mid-token
    ("diseas/e"); four settings cut their values."""
    line = row(align=align, gap=gap)
    return [line.container(width=width) for width in widths]


def file_name(what: str, source: str, target: str, task: str, ext: str) -> str:
    """A download's name with its pair and task, so files from different runs do not overwrite each other; a hub id's
    "/" and other characters a file name cannot hold become "-"."""
    import re

    stem = "_".join([what, f"{source}_to_{target}", task])
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem) + f".{ext}"


def svg_image(svg: str | bytes, alt: str, style: str = "width:100%") -> str:
    """An <img> of an SVG, for st.html: st.image would import numpy (~0.25 s) into a fresh server's first run, and
    st.html sanitises inline <svg> away."""
    import base64

    data = base64.b64encode(svg.encode() if isinstance(svg, str) else svg).decode("ascii")
    return f'<img src="data:image/svg+xml;base64,{data}" style="{style}" alt="{escape(alt)}">'


def table(frame, **options) -> None:
    """A small static table (`html_table.html_table`'s options): HTML, not st.table, whose cells each go through
    Streamlit's markdown renderer."""
    st.html(html_table(frame, **options))


def bar_table_html(frame, column: str, color: str = "#F4B6A6", digits: int = 3) -> str:
    """A small static table whose `column` (a share in 0..1) is drawn as an in-cell bar, for a `block`. Three answer
    tables as data grids cost a browser on 2 cores ~0.7 s to paint, as static tables ~0.1 s
    (`benchmarks/first_paint.py --anatomy --blocks answer`)."""
    return html_table(frame, formats={column: f"{{:.{digits}f}}".format}, bar=column, bar_color=color, index=False)


def chart(drawn, key: str, where=None, selectable: bool = False):
    """Draw a `charts.Chart` (an ECharts option object) at its height; `selectable`: a lasso or click reruns the
    page and the selection is in `st.session_state[key]`."""
    on_select = "rerun" if selectable else "ignore"
    return (where or st).echarts_chart(drawn.spec, height=drawn.height, key=key, on_select=on_select)


MONOSPACE = (
    "background:rgba(172,177,195,0.15);border-radius:0.5rem;padding:0.85rem 1rem;margin:0 0 1rem 0;"
    "font-family:'Source Code Pro',monospace;font-size:0.85rem;line-height:1.5;white-space:pre-wrap;"
    "overflow-wrap:anywhere"
)


def monospace(text: str) -> None:
    """Text in a monospace box like st.code's, without st.code's syntax-highlighting bundle (1.5 MB): one st.code
    took a warm page from 0.49 to 1.06 s, the same text as markdown 0.54 s (`benchmarks/first_paint.py --anatomy
    --blocks st.code,markdown`)."""
    from html import escape

    # a <div>, not a <pre>: Streamlit's markdown hands a <pre> to its own code-block renderer, which dropped the style
    st.markdown(f'<div style="{MONOSPACE}">{escape(text)}</div>', unsafe_allow_html=True)
