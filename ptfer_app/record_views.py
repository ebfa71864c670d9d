"""Record the shipped presets' page views (`ptfer_app.views`): ``python -m ptfer_app.record_views [PRESET ...]``.

Each preset is opened in the app (Streamlit's AppTest, in this process) and its Nearest tokens, Relative space and
Query pages run with their default controls, and Query once more for each of the preset's test examples; every
recorded service call they make is stored in the preset's folder.
The pages then run again from the stored views with model loading switched off, which must draw them without an
error: a preset whose pages still need a model is reported and nothing of it is written. Needs the preset's models
(real presets: `ptfer models fetch`) and data.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ptfer_core.errors import ModelLoadError
from ptfer_core.files import atomic_write_bytes
from ptfer_core.presets import PRESETS_DIR

ROUTER = Path(__file__).resolve().parents[1] / "router.py"
PAGES = ("app_pages/nearest_tokens.py", "app_pages/relative_space.py", "app_pages/query.py")


def shown_problems(at, where: str) -> list[str]:
    """The errors and exceptions the page just drew, each named by `where`."""
    return [f"{where}: {e.value}" for e in at.error] + [f"{where}: {e.message}" for e in at.exception]


def run_pages(preset: str) -> list[str]:
    """Open `preset` and run the pages that read its views, the Query page on each test example too; returns the
    errors they showed."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROUTER), default_timeout=600)
    at.query_params["preset"] = preset
    at.run()
    problems = shown_problems(at, f"{preset} (opening)")
    for page in PAGES:
        at.switch_page(page).run()
        problems += shown_problems(at, f"{preset} {page}")
    # Query: every test example, as picking it in the list or the table does (the page's own calls, so the keys
    # are the page's)
    for fact in at.session_state["outcome"].per_fact:
        at.session_state["subject"] = fact["subject"]
        at.run()
        problems += shown_problems(at, f"{preset} query {fact['subject']!r}")
    return problems


def record(preset: str, root: Path = PRESETS_DIR) -> tuple[int, float]:
    """Record one preset's views and check them; returns how many views and the seconds it took."""
    import streamlit as st

    from ptfer_app import services, views

    if not (Path(root) / preset / "preset.json").is_file():
        raise SystemExit(f"no preset {preset!r} in {root}")
    started = time.perf_counter()
    st.cache_data.clear()  # every value recorded is computed now, by this code, not taken from the cache
    views.STORE.recording, views.STORE.recorded_models = {}, set()
    try:
        problems = run_pages(preset)
        recorded, models = views.STORE.recording, views.STORE.recorded_models
    finally:
        views.STORE.recording = None
    if problems:
        raise SystemExit("\n".join(problems))
    path = Path(root) / preset / views.FILE
    previous = path.read_bytes() if path.exists() else None
    views.write_views(path.parent, recorded, models)

    def no_model(name):
        raise ModelLoadError(f"{name}: a recorded preset page asked for a model")

    load, services.load_model = services.load_model, no_model
    st.cache_data.clear()
    st.cache_resource.clear()  # no anchor set or map left from recording: a page must need none of them
    try:
        problems = run_pages(preset)
    finally:
        services.load_model = load
    if problems:  # put back what was there: a preset's views are all usable or not written
        if previous is None:
            path.unlink()
        else:
            atomic_write_bytes(path, previous)
        views.STORE.forget()
        raise SystemExit("recorded views do not cover the pages:\n" + "\n".join(problems))
    return len(recorded), time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    from ptfer_core.presets import list_presets

    parser = argparse.ArgumentParser(prog="python -m ptfer_app.record_views", description=__doc__.split("\n\n")[0])
    parser.add_argument("presets", nargs="*", help="preset ids (default: every shipped preset)")
    args = parser.parse_args(argv)
    names = args.presets or [p["id"] for p in list_presets()]
    for name in names:
        count, seconds = record(name)
        print(f"{name}: {count} views in {seconds:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
