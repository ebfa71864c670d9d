"""PTfer Studio: zero-shot continuous prompt transfer, in the browser.

The app's script (``streamlit run app.py`` serves it; ``streamlit run router.py`` too, without the start-up import
of `app.py`). This file is the router: the shared sidebar (models, relation or task, seed, all
mirrored in the URL; every page but Home and Results), then the selected page from ``app_pages/``. The engine is
``ptfer_core``; ``ptfer_app`` holds the Streamlit glue.
"""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import streamlit as st

from ptfer_app import services, ui

st.set_page_config(page_title="PTfer Studio", page_icon=":material/swap_horiz:", layout="wide")

PAGES = {
    "home": st.Page(ui.PAGES["home"], title="Home", icon=":material/home:", default=True),
    "transfer": st.Page(ui.PAGES["transfer"], title="Transfer", icon=":material/swap_horiz:", url_path="transfer"),
    "nearest": st.Page(
        ui.PAGES["nearest"], title="Nearest tokens", icon=":material/format_list_numbered:", url_path="nearest-tokens"
    ),
    "space": st.Page(
        ui.PAGES["space"], title="Relative space", icon=":material/scatter_plot:", url_path="relative-space"
    ),
    "query": st.Page(ui.PAGES["query"], title="Query", icon=":material/chat:", url_path="query"),
    "results": st.Page(ui.PAGES["results"], title="Results", icon=":material/leaderboard:", url_path="results"),
}

page = st.navigation(list(PAGES.values()), position="top")
ui.page_style()
if page is not PAGES["home"] or "preset" in st.query_params:
    # Per script thread: flush denormals, one intra-op thread ($PTFER_APP_THREADS), torch imported safely. The
    # home page runs no torch, so a fresh server's first page does not wait ~4 s for its import.
    services.cpu_setup()
ui.sync_preset_from_url()
goto = st.session_state.pop("_goto", None)
if goto in PAGES and PAGES[goto] is not page:
    st.switch_page(PAGES[goto])
# The home page draws no sidebar (its presets pick their own models; the pickers are most of its drawing time), nor
# does Results (its tables span many models and relations and have their own filters: the pickers did nothing there).
no_sidebar = page is PAGES["home"] or page is PAGES["results"]
# Folded on those two, else a link from a page with the sidebar left it open and empty (300 px of a narrow window).
st.set_page_config(initial_sidebar_state="collapsed" if no_sidebar else "auto")
selection = st.session_state["_selection"] = ui.quiet_selection() if no_sidebar else ui.sidebar()
ui.sync_preset_to_url()
ui.flash()
try:
    page.run()
    ui.url_notes()  # link values the page itself read and had to clamp
finally:
    # Started once per process, after the page's own work so they do not slow its first paint (and even when the
    # page stops early): real models load and their transfer tables fill; UMAP's numba kernels compile.
    services.warm_up(selection.sources, selection.target, selection.task_id, selection.data_dir)
    services.warm_umap()
