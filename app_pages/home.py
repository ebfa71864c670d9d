"""Home: what prompt transfer is, one diagram, and presets that open instantly."""

import functools
from html import escape

import streamlit as st

from ptfer_app import catalog, palette, services, ui, wording
from ptfer_core.paths import REPO_ROOT

LABELS = {
    "transfer": "transferred",
    "manual": "manual",
    "discretization": "discretised",
    "random": "random",
    "direct-transfer": "direct",
}

CAPTION = ui.CAPTION + ";margin-bottom:0.25rem"  # st.caption's look, in either theme
DIAGRAM = REPO_ROOT / "assets" / "diagram.svg"
INTRO_WIDTH, DIAGRAM_WIDTH = 420, 620  # px: side by side from a 1280 px window; the diagram's words stay >= 10 px
DIAGRAM_ALT = (
    "A prompt vector in the source model, its cosines to shared anchor words, and the target vector with the same "
    "cosines"
)


@functools.cache
def diagram_img() -> str:
    return ui.svg_image(DIAGRAM.read_bytes(), DIAGRAM_ALT)


def intro() -> None:
    st.title("PTfer Studio", anchor=False)
    st.markdown("##### Move a learned prompt from one language model to another, without training on the target.")
    # Fixed widths that wrap: in st.columns at 800 px the diagram shrank to 420 px and its words to ~5 px.
    left, right = ui.panels([INTRO_WIDTH, DIAGRAM_WIDTH], align="center")
    with left:
        st.markdown(
            "A **soft prompt** is a handful of learned vectors that make a language model answer one kind of question, "
            "such as *the capital of [X] is …*, and it only works inside the model it was tuned for.  \n"
            "PTfer describes every prompt vector by its cosine similarity to thousands of **anchor words** that both "
            "models know: this relative encoding means the same thing in either model.  \n"
            "It then searches the target model for vectors with the same similarities, so the prompt carries over "
            "**zero-shot**, with no labelled data for the target (Wu, Wu & Mou, ICLR 2024)."
        )
    with right:
        if DIAGRAM.is_file():
            st.html(diagram_img())


def card_html(meta: dict) -> str:
    """A preset card's text, score bars and story as one HTML block: the browser draws one element instead of five
    markdown blocks and an expander (each costs it ~10-20 ms on two cores; `docs/benchmarks.md`)."""
    scores = meta.get("scores") or {}
    task = meta.get("task") or {}
    toy = " · toy models" if catalog.is_toy(meta["target"] or "") else ""
    pair = (
        f"{' + '.join(meta['sources'])} → {meta['target']} · {task.get('id')} ({task.get('label', '')})"
        f" · recipe {ui.recipe_label(meta.get('settings') or {}) or '?'}{toy}"
    )
    parts = [f'<div style="font-weight:600;margin-bottom:0.25rem">{escape(meta["title"])}</div>']
    caption = escape(pair) + (f"<br>{escape(meta['description'])}" if meta.get("description") else "")
    parts.append(f'<div style="{CAPTION}">{caption}</div>')
    if scores:
        n = scores.get("transfer", next(iter(scores.values()))).get("n_facts")
        metric = wording.score_word(task).capitalize()  # "Accuracy", "P@1"
        bars = palette.scores_svg(scores, LABELS, text_color="#808495")
        parts.append(ui.svg_image(bars, "scores", "width:100%;max-width:320px;margin:0.4rem 0"))
        parts.append(f'<div style="{CAPTION}">{metric} (%) on {n} test examples of the target</div>')
    if meta.get("story"):
        parts.append(
            f'<details style="margin-top:0.5rem"><summary style="cursor:pointer">What this shows</summary>'
            f'<div style="margin-top:0.4rem">{ui.inline_html(meta["story"])}</div></details>'
        )
    return "".join(parts)


CARD_WIDTH = 340  # px: three abreast from a 1280 px window up (3 x 360 + gaps was 34 px too wide there)


def preset_card(meta: dict, where) -> None:
    # as tall as its row's tallest card, its text at the top and its button at the bottom: the Open buttons of a row
    # sat up to 71 px apart
    with where.container(border=True, width=CARD_WIDTH, height="stretch", vertical_alignment="distribute"):
        st.html(card_html(meta))
        st.button(
            "Open",
            key=f"preset_open_{meta['id']}",
            type="primary",
            icon=":material/play_arrow:",
            on_click=ui.open_preset,
            args=(meta["path"],),
            width="stretch",
        )


def presets() -> None:
    st.subheader("Presets", anchor=False)
    st.caption("Finished transfers stored with the app: they open at once, with no model to load.")
    # presets whose models are on this machine first: their other pages work right away
    items = sorted(
        services.preset_list(),
        key=lambda m: not all(catalog.is_available(n) for n in [*(m["sources"] or []), m["target"] or ""]),
    )
    if not items:
        st.info("No presets are installed (assets/presets/ is empty). Run a transfer on the Transfer page.")
        return
    # Cards of a fixed width in one wrapping row: three abreast on a wide window, one under another on a narrow one
    # (three columns at 800 px drew the score bars' labels ~7 px high).
    cards = st.container(horizontal=True, vertical_alignment="distribute", gap="medium")  # "distribute": a card
    # stretches to its row's height
    for meta in items:
        preset_card(meta, cards)


def next_steps() -> None:
    st.subheader("Explore", anchor=False)
    # One block of text, not ten widgets: the pages are one click away in the navigation at the top.
    st.markdown(
        "The pages at the top: **Transfer** runs a transfer live · **Nearest tokens** shows what the prompt vectors "
        "look like · **Relative space** puts anchors and prompts on a map · **Query** asks the target model · "
        "**Results** has every relation and method."
    )
    if not all(catalog.is_available(n) for n in catalog.REAL_DEFAULT[:2]):
        st.caption(
            "The real models are not fetched on this machine, so the other pages' sidebar starts with the built-in "
            f"tiny demo models. Fetch the real pair with `{catalog.fetch_command('smollm2-135m')}` and "
            f"`{catalog.fetch_command('gemma3-270m')}`."
        )


def body() -> None:
    intro()
    presets()
    next_steps()


ui.guard(body)
