"""Smoke tests of the Streamlit app with streamlit.testing.v1.AppTest.

The cached model loader is patched to load only the built-in toy models (real models read as "not fetched"), the
model directory is empty and the app cache lives in a temporary directory.
"""

from __future__ import annotations

import functools
import html
import json
import os
import re
import time
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest

from ptfer_app import catalog, services
from ptfer_core import presets
from ptfer_core.errors import ModelLoadError
from ptfer_core.mini_lama import write_mini_lama
from ptfer_core.toy_models import load_toy

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "router.py")  # the router; app.py serves it with a start-up import
PAGE_NAMES = ("home", "transfer", "nearest_tokens", "relative_space", "query", "results")
PAGE = {name: f"app_pages/{name}.py" for name in PAGE_NAMES}
DEMO_PRESET = "toy-bert-gpt2-language"
LOADS: list[str] = []


@functools.cache
def _tiny(name: str):
    LOADS.append(name)
    if not catalog.is_toy(name):
        raise ModelLoadError(f"{name} is not on this machine yet. Fetch it once with `{catalog.fetch_command(name)}`")
    return load_toy(name)


def skey(name: str, group: str = "transfer", recipe: str = "studio") -> str:
    """The session key of a settings widget (each recipe keeps its own edits)."""
    return f"set.{recipe}.{group}.{name}"


@pytest.fixture(autouse=True)
def app_env(tmp_path_factory, monkeypatch):
    """Tiny models in the cached loader, no real weights, a private app cache."""
    monkeypatch.setenv("PTFER_MODEL_DIR", str(tmp_path_factory.mktemp("no-models")))
    monkeypatch.setenv("PTFER_APP_CACHE", str(tmp_path_factory.mktemp("app-cache")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(services, "load_model", _tiny)
    yield


def new_app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=60)


def texts(at: AppTest) -> str:
    """The page's text: its markdown, captions, alerts and headings, and the text of its HTML blocks (`ui.block`)."""
    import html as html_module

    parts = [
        e.value
        for kind in ("markdown", "caption", "info", "error", "warning", "success", "title", "subheader")
        for e in getattr(at, kind)
    ]
    for block in at.get("html"):  # its paragraphs, one a line; its tables (`tables`) and pictures left out
        shown = re.sub(r"<table.*?</table>|<style.*?</style>|<img[^>]*>", "", block.value, flags=re.S)
        shown = re.sub(r"<br>|</div>", "\n", shown)
        parts.append(html_module.unescape(re.sub(r"<[^>]+>", "", shown)).strip())
    return "\n".join(str(p) for p in parts)


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def svg_of(html_block: str) -> str:
    """The SVG inside the first <img> of an st.html block (`ui.svg_image`)."""
    import base64

    return base64.b64decode(re.search(r'src="data:image/svg\+xml;base64,([^"]+)"', html_block).group(1)).decode()


def tables(at: AppTest) -> list:
    """The page's static tables (`ui.table`: HTML drawn with st.html) as frames of their cells' text; a table drawn
    with its index has it as the frame's index."""
    from html.parser import HTMLParser

    import pandas as pd

    class Cells(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tables, self.rows, self.text = [], [], None

        def handle_starttag(self, tag, attrs):
            if tag == "table":
                self.tables.append(([], ("data-index", "1") in attrs))
                self.rows = self.tables[-1][0]
            if tag == "tr":
                self.rows.append([])
            elif tag in ("td", "th"):
                self.text = ""

        def handle_data(self, data):
            if self.text is not None:
                self.text += data

        def handle_endtag(self, tag):
            if tag in ("td", "th"):
                self.rows[-1].append(self.text)
                self.text = None

    found = []
    for block in at.get("html"):  # a block may hold texts and a table (`ui.block`)
        if "<table" not in block.value:
            continue
        cells = Cells()
        cells.feed(block.value)
        for rows, indexed in cells.tables:
            head, *body = rows
            frame = pd.DataFrame(body, columns=head)
            found.append(frame.set_index(head[0]) if indexed else frame)
    return found


def goto(at: AppTest, page: str) -> AppTest:
    return at.switch_page(PAGE[page]).run()


def fresh_python(code: str, tmp_path: Path):
    """`code` in a new Python process from the repository root (a fresh server's imports), without real models."""
    import subprocess
    import sys

    env = {**os.environ, "PTFER_MODEL_DIR": str(tmp_path / "no-models"), "PTFER_APP_CACHE": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)


def open_demo_preset(at: AppTest) -> AppTest:
    at.run()
    at.button(key=f"preset_open_{DEMO_PRESET}").click().run()
    return at


def job_of(at: AppTest):
    return at.session_state["transfer_job"] if "transfer_job" in at.session_state else None  # noqa: SIM401


def wait_for_job(at: AppTest, timeout: float = 60.0) -> AppTest:
    deadline = time.perf_counter() + timeout
    while job_of(at) is not None:
        assert time.perf_counter() < deadline, "transfer did not finish in time"
        time.sleep(0.2)
        at.run()
    return at


# ----------------------------------------------------------------------------- pages


def test_every_page_renders_without_a_result():
    at = new_app().run()
    assert not at.exception
    assert at.title[0].value == "PTfer Studio"
    assert "anchor words" in texts(at)
    assert any("data:image/svg+xml;base64," in h.value for h in at.get("html")), "the diagram is shown"
    assert any(b.key.startswith("preset_open_") for b in at.button)
    assert not at.sidebar.get("multiselect") and not at.sidebar.get("selectbox"), "the home page has no sidebar"
    for page in ("transfer", "nearest_tokens", "relative_space", "query", "results"):
        goto(at, page)
        assert not at.exception, page
        assert not errors(at), (page, errors(at))
        assert at.title, page
        if page == "results":  # its tables span models and relations, with filters of their own
            assert not at.sidebar.get("multiselect") and not at.sidebar.get("selectbox"), "no dead sidebar"
            continue
        # sidebar: every widget is keyed and the demo models are the default here (no real weights)
        assert at.sidebar.multiselect(key="src").value == ["tiny-demo-llama"], page
        assert at.sidebar.selectbox(key="tgt").value == "tiny-demo-gpt2", page
        assert at.sidebar.selectbox(key="rel").value == "P103", page
    goto(at, "transfer")
    assert at.button(key="run") and at.slider(key=skey("steps"))


def test_text_drawn_as_html_reads_markdowns_marks_and_shows_tokens_and_inputs_as_typed():
    """`ui.inline_html`: what st.caption would show, as HTML for st.html blocks; `ui.literal` and `marks=False` keep a
    token's or a user's `*`, backticks, `<` and private-use characters as they are."""
    from ptfer_app import ui

    assert ui.inline_html("a **b** *it* x*y 2 * 3\nnext") == "a <strong>b</strong> <em>it</em> x*y 2 * 3<br>next"
    code = ui.inline_html("run `a*b* <c>` now")
    assert code.startswith("run <code") and ">a*b* &lt;c&gt;</code> now" in code, "code taken as typed"
    tokens = ["**", "a*b*c", "`x`", "\\", "<unused7>", "\ue001"]
    shown = ui.inline_html("tokens: " + ui.literal(", ".join(tokens)) + " **end**")
    assert shown == "tokens: **, a*b*c, `x`, \\, &lt;unused7&gt;, \ue001 <strong>end</strong>"
    typed = ui.text_html("*Paris* <b>", caption=True, lines=2, marks=False)
    assert "*Paris* &lt;b&gt;" in typed and "min-height:3.0em" in typed


def test_a_masked_word_is_shown_masked_wherever_a_page_shows_words(monkeypatch):
    """`wording.MASKED` words (profanity a real model's anchors hold) keep their first letter on screen, in the
    nearest-token lists and overview, the fingerprint strip, the Query answers and its test facts (picker and table);
    the lists keep their ranks and cosines."""
    import hashlib

    from ptfer_app import wording

    assert wording.shown_word("▁Fuck") == "▁F∗∗∗" and wording.shown_word("Scunthorpe") == "Scunthorpe"
    at = open_demo_preset(new_app())
    overview, listed = tables(goto(at, "nearest_tokens"))[:2]
    strip = svg_of(next(h.value for h in goto(at, "relative_space").get("html") if "fingerprint strip" in h.value))
    answers = [t for t in tables(goto(at, "query")) if "probability" in t.columns]
    words = {w for w in listed["token"]} | {a.removeprefix("✓ ") for t in answers for a in t["answer"]}
    words |= set(re.findall(r'text-anchor="end" fill="[^"]+">([^<]+)<', strip))
    words |= {f[k] for f in at.session_state["outcome"].per_fact for k in f if k != "subject" and f[k]}
    words |= {w.strip() for cell in overview.to_numpy().ravel() for w in cell.split(",")}
    letters = {run for w in words for run in re.findall(r"[A-Za-z]{3,}", w)}
    assert len(letters) > 10
    monkeypatch.setattr(wording, "MASKED", {hashlib.sha256(r.lower().encode()).hexdigest()[:16] for r in letters})

    masked = tables(goto(at, "nearest_tokens"))[1]
    assert list(masked["cosine"]) == list(listed["cosine"]) and list(masked["rank"]) == list(listed["rank"])
    assert [wording.shown_word(w) for w in listed["token"]] == list(masked["token"])
    strip = svg_of(next(h.value for h in goto(at, "relative_space").get("html") if "fingerprint strip" in h.value))
    answers = [t for t in tables(goto(at, "query")) if "probability" in t.columns]
    shown = list(re.findall(r'text-anchor="end" fill="[^"]+">([^<]+)<', strip))
    shown += [a.removeprefix("✓ ") for t in answers for a in t["answer"]] + list(masked["token"])
    glance = tables(goto(at, "nearest_tokens"))[0]
    shown += [w.strip() for cell in glance.to_numpy().ravel() for w in cell.split(",")]
    # the Query page's test facts: the picker's answers and predictions, and the table's
    picked = [o.split(" → ", 1)[1] for o in goto(at, "query").selectbox(key="fact_pick").options]
    shown += [w for o in picked for w in re.split(r" · transferred [✓✗] ", o)]
    at.session_state["facts_table"] = True
    grid = at.run().dataframe[-1].value
    shown += [cell.removeprefix("✓ ").removeprefix("✗ ") for c in grid.columns[1:] for cell in grid[c]]
    assert shown and not any(re.search(r"[A-Za-z]{3,}", w) for w in shown), [
        w for w in shown if re.search("[A-Za-z]{3,}", w)
    ]


def test_a_maps_colour_scale_is_as_wide_as_its_largest_cosine():
    """On -1..1 a real model's cosines to a vector (most within ±0.3) drew nearly every dot pale: the scale runs to
    the largest cosine shown, rounded up to a tenth, in the picture and in the interactive chart alike."""
    import numpy as np

    from ptfer_app import charts, static_charts

    assert charts.sim_bound([0.31, -0.2]) == 0.4 and charts.sim_bound([0.3]) == 0.3
    assert charts.sim_bound([0.01]) == 0.1 and charts.sim_bound([np.nan]) == 1.0 and charts.sim_bound([-3.0]) == 1.0
    xy, prompts = np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.2]]), np.array([[0.4, 0.4]])
    svg = static_charts.map_svg(xy, ["a", "b", "c"], np.array([0.3, -0.3, 0.0]), prompts, "#d33")
    assert ">0.3</text>" in svg and ">-0.3</text>" in svg, "the colour bar's ends"
    assert f'fill="{static_charts._SCALE[-1]}"' in svg and f'fill="{static_charts._SCALE[0]}"' in svg, "full colour"
    spec = charts.relative_map(xy, ["a", "b", "c"], np.array([0.3, -0.3, 0.0]), prompts, "t", "#d33").spec
    assert (spec["visualMap"]["min"], spec["visualMap"]["max"]) == (-0.3, 0.3)
    wide = static_charts.map_svg(xy, ["a", "b", "c"], np.array([0.1, 0.0, 0.0]), prompts, "#d33", bound=0.6)
    assert ">0.6</text>" in wide, "a bound given: the scale a page shares between its two maps"
    # the page's two maps share one scale, so that a colour means one cosine in either
    at = goto(open_demo_preset(new_app()), "relative_space")
    ends = [
        re.findall(r">(-?\d\.\d)</text>", svg_of(h.value))[-2:]
        for h in at.get("html")
        if "map of the anchor words" in h.value
    ]
    assert len(ends) == 2 and ends[0] == ends[1], ends


def test_each_preset_card_is_one_block_with_its_bars_story_and_open_button():
    """A card is one HTML block (title, pair, score bars as an image, the story folded in <details>) and its button:
    fewer elements for the browser to draw. Every installed preset has one, with its own numbers."""
    import re

    from ptfer_app import ui

    at = new_app().run()
    cards = [h.value for h in at.get("html") if "What this shows" in h.value or "test examples" in h.value]
    listed = services.preset_list()
    assert len(cards) == len(listed) and {b.key for b in at.button} >= {f"preset_open_{m['id']}" for m in listed}
    for meta in listed:
        card = next(c for c in cards if html.escape(meta["title"]) in c)
        assert html.escape(meta["target"]) in card and "<svg" not in card, "inline SVG is sanitised away by st.html"
        # the recipe as the preset's own pages name it: every real preset's tuning had max_train 200
        recipe = html.escape(ui.recipe_label(meta["settings"]))
        assert f"recipe {recipe}" in card and ("(changed: max_train 200)" in recipe) == meta["id"].startswith("real")
        svg = svg_of(card)
        for method, score in meta["scores"].items():
            if method in ("transfer", "manual", "discretization", "random"):
                assert f'data-method="{method}"' in svg and f">{score['p_at_1']:.1f}<" in svg, (meta["id"], method)
        score = "Accuracy" if meta["task"].get("kind") == "classification" else "P@1"
        assert f"{score} (%) on {meta['scores']['transfer']['n_facts']} test examples" in card, meta["id"]
        if meta.get("story"):
            story = re.search(r"<details[^>]*><summary[^>]*>What this shows</summary><div[^>]*>(.*?)</div></details>",
                              card, re.S)  # fmt: skip
            shown = story and html.unescape(re.sub(r"</?(strong|code)( [^>]*)?>", "", story.group(1)))
            assert shown == meta["story"].replace("**", "").replace("`", ""), meta["id"]
            assert "**" not in story.group(1) and "`" not in story.group(1), "markdown marks drawn as HTML"
    assert ui.recipe_label({"recipe": "retired", "tune": {"lr": 1}}) == "retired", "an unknown recipe, as recorded"
    toy = next(c for c in cards if "Be careful" in c)
    assert "<strong>Be careful with this number:</strong>" in toy


def test_a_result_no_better_than_a_random_prompt_says_so():
    """A gain over the manual template means nothing when a random prompt does as well: the result says so wherever
    the transferred prompt scores no more than the random one, and only there (every shipped preset, both ways)."""
    for meta in services.preset_list():
        at = new_app().run()
        at.button(key=f"preset_open_{meta['id']}").click().run()
        assert not at.exception, meta["id"]
        scores = {k: v["p_at_1"] for k, v in meta["scores"].items()}
        note = "\n".join(i.value for i in at.info)
        said = "no better than a random prompt" in note
        assert said == (scores["transfer"] <= scores["random"]), (meta["id"], scores)
        assert note.count("The transferred prompt scores") <= 1, ("one note, one opening", note)
        # a headline number picked with the target's labels says so where it is shown
        picked_on_labels = meta["settings"]["transfer"]["selection"] == "dev"
        assert any("**Not zero-shot:**" in w.value for w in at.warning) == picked_on_labels, meta["id"]
        # and the prompt's facts name the same rule (a one-step solver keeps no step, so says none)
        searched = meta["settings"]["transfer"]["solver"] == "adam"
        assert ("(by target dev" in texts(at)) == (searched and picked_on_labels), meta["id"]
        assert ("(by matching loss)" in texts(at)) == (searched and not picked_on_labels), meta["id"]
        # every shipped preset departs from its recipe somewhere (the training cap, the toy's tuning), and says so
        recipe = meta["settings"]["recipe"]
        expected = "epochs 40" if meta["id"] == DEMO_PRESET else "max_train 200"
        assert f"recipe {recipe} (changed: " in texts(at) and expected in texts(at), meta["id"]


def test_the_results_page_offers_only_tables_it_can_read(tmp_path):
    """Every file in the Results page's data list reads as a results table; a JSON file that holds something else
    (the transferability study's summary) is not offered."""
    from ptfer_app import results

    listed = results.find_tables()
    assert "assets/results/transferability-summary.json" not in listed
    assert (ROOT / "assets" / "results" / "transferability-summary.json").is_file(), "the case this test is about"
    for label, path in listed.items():
        assert len(results.read_table(path.read_bytes(), path.name)), label


def test_a_page_opened_by_its_url_is_told_where_the_server_is():
    """`base_hint.PageBaseHint` puts the server's base into a page's HTML shell (the frontend otherwise first asks
    under the page's own path, gets a 404 and waits 100 ms); the root, files and other requests pass untouched, and
    the edited shell carries no validators or encoding of the original file."""
    import asyncio

    from ptfer_app.base_hint import HINT, PageBaseHint

    shell = b"<!DOCTYPE html><html><head><meta charset='UTF-8'/><script>x</script></head></html>"
    seen = []

    async def streamlit(scope, receive, send):  # what Streamlit's static files answer, in two body parts
        seen.append(dict(scope["headers"]))
        html = scope["path"] != "/favicon.png"
        kind = b"text/html; charset=utf-8" if html else b"image/png"
        body = shell if html else b"PNG"
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", kind), (b"content-length", str(len(body)).encode()), (b"etag", b'"abc"'),
            (b"cache-control", b"no-cache")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body[:10], "more_body": True})
        await send({"type": "http.response.body", "body": body[10:]})

    def get(path: str, base: str = "", method: str = "GET"):
        sent = []

        async def send(message):
            sent.append(message)

        headers = [(b"accept-encoding", b"gzip"), (b"if-none-match", b'"abc"'), (b"cookie", b"c=1")]
        scope = {"type": "http", "method": method, "path": path, "headers": headers}
        asyncio.run(PageBaseHint(streamlit, base)(scope, None, send))
        start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
        return dict(start["headers"]), body

    headers, body = get("/transfer")
    assert body == shell.replace(b"<head>", b"<head>" + HINT) and HINT.startswith(b"<script>")
    assert headers[b"content-length"] == str(len(body)).encode() and b"etag" not in headers
    assert headers[b"cache-control"] == b"no-cache"
    assert seen[-1] == {b"cookie": b"c=1"}, "asked without compression or validators, other headers kept"
    for path, base in (("/", ""), ("/favicon.png", ""), ("/a/b", ""), ("/_stcore/health", ""), ("/transfer", "/x")):
        headers, body = get(path, base)
        assert body in (shell, b"PNG") and headers[b"etag"] == b'"abc"', path
        assert b"accept-encoding" in seen[-1], path
    assert get("/x/relative-space", "x/")[1].count(HINT) == 1, "under a base path"
    assert get("/transfer", method="POST")[1] == shell


def test_the_home_page_runs_without_importing_torch(tmp_path):
    """A fresh server's first page should not wait ~4 s for torch, nor ~1 s for numpy and pandas: the home page's
    script run (demo models, no real ones) imports none of them. The background warm-ups, which do, are switched off
    to keep this exact."""

    code = (
        "import sys\nfrom ptfer_app import services\n"
        "services.warm_up = lambda *a, **k: None\nservices.warm_umap = lambda: None\n"
        "from streamlit.testing.v1 import AppTest\n"
        f"at = AppTest.from_file({APP!r}, default_timeout=120).run()\n"
        "assert not at.exception, at.exception\n"
        "heavy = [m for m in ('torch', 'numpy', 'pandas') if m in sys.modules]\n"
        "print('TITLE', at.title[0].value, 'HEAVY', heavy, 'STREAMLIT', 'streamlit' in sys.modules)\n"
    )
    out = fresh_python(code, tmp_path)
    assert "TITLE PTfer Studio HEAVY [] STREAMLIT True" in out.stdout, out.stdout + out.stderr[-2000:]


def test_the_server_imports_the_engine_at_start_up_not_on_the_first_page(tmp_path):
    """`streamlit run app.py` serves router.py as an st.App whose start-up imports torch and the engine (the browser
    tests run the server itself): the first page of a fresh server, often a link to a preset, does not wait for it."""

    code = (
        "import asyncio, runpy, sys\n"
        "ns = runpy.run_path('app.py')\n"
        "from streamlit.web.server.starlette.starlette_app import App\n"
        "assert isinstance(ns['app'], App) and ns['app'].script_path.name == 'router.py'\n"
        "print('BEFORE', 'torch' in sys.modules, 'ptfer_app.result_card' in sys.modules)\n"
        "from ptfer_app import services\n"
        "services.warm_up_defaults = lambda: None\n"
        "async def start():\n"
        "    async with ns['start_up'](ns['app']):\n"
        "        import gc\n"
        "        print('AFTER', all(m in sys.modules for m in services.PRELOAD))\n"
        "        print('FROZEN', gc.get_freeze_count() > 20 * len(gc.get_objects()))\n"
        "        from streamlit import delta_generator, env_util\n"
        "        env_util.is_repl = lambda: print('STACK WALKED') or False\n"
        "        delta_generator._maybe_print_use_warning()  # what the first element of a page calls\n"
        "asyncio.run(start())\n"
    )
    out = fresh_python(code, tmp_path)
    assert "BEFORE False False" in out.stdout and "AFTER True" in out.stdout, out.stdout + out.stderr[-2000:]
    # The imported heap is frozen, and Streamlit's full collection after every run is off: with it, every page load
    # waited ~0.2 s for a pass over torch's and transformers' objects (benchmarks/first_paint.py, docs/benchmarks.md).
    assert "FROZEN True" in out.stdout, out.stdout
    # Streamlit's once-per-process REPL check (inspect.stack() over thousands of modules: 0.08 s) is answered.
    assert "STACK WALKED" not in out.stdout, out.stdout
    import tomllib

    runner = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))["runner"]
    assert runner == {"magicEnabled": False, "postScriptGC": False}


def test_after_the_start_up_imports_no_page_imports_a_module_of_its_own(tmp_path):
    """Every page's first run on a fresh server finds what it imports already imported (`services.PRELOAD`): the
    preset on each page, run in turn after the start-up preload, imports no module of the app, the engine or the
    heavy libraries."""

    pages = [f"app_pages/{name}.py" for name in ("transfer", "nearest_tokens", "relative_space", "query", "results")]
    code = (
        "import sys\n"
        "from ptfer_app import services\n"
        "services.preload()\n"
        "from streamlit.testing.v1 import AppTest\n"
        "before = set(sys.modules)\n"
        f"for page in {pages!r} + ['app_pages/home.py']:\n"
        "    at = AppTest.from_file('router.py', default_timeout=120)\n"
        f"    at.query_params['preset'] = {DEMO_PRESET!r}\n"
        "    at.run()\n"
        "    at.switch_page(page).run()\n"
        "    assert not at.exception, (page, at.exception)\n"
        "heavy = ('ptfer_core', 'ptfer_app', 'torch', 'transformers', 'pandas', 'pyarrow', 'scipy', 'sklearn')\n"
        "new = sorted(m for m in set(sys.modules) - before if m.split('.')[0] in heavy or 'icon' in m)\n"
        "print('NEW', new)\n"
    )
    out = fresh_python(code, tmp_path)
    assert "NEW []" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]


def test_preset_opens_instantly_and_feeds_every_page():
    at = new_app()
    started = time.perf_counter()
    open_demo_preset(at)
    assert time.perf_counter() - started < 10
    assert not at.exception
    assert at.query_params.get("preset") == DEMO_PRESET
    assert [m.label for m in at.metric][:4] == ["Transferred", "Manual template", "Discretisation", "Random prompt"]
    helps = [m.proto.help for m in at.metric][:4]
    assert len(set(helps)) == 4 and "relative space" in helps[0] and "hand-written" in helps[1], "each says what it is"
    assert at.subheader[0].value == "Result"
    assert {b.key for b in at.get("download_button")} >= {"dl_st", "dl_json"}
    assert "No PEFT adapter: a PEFT PROMPT_TUNING adapter holds vectors placed before everything else" in texts(at)
    assert "[X] ▢ ▢ ▢ ▢ ▢ [Y]" in texts(at) and not at.code, "the prompt in a box, without st.code's 1.5 MB bundle"
    assert "a tuned prompt for P103 with these settings is stored" in texts(at), (
        "the preset's settings are selected, so its source is reused"
    )
    # An opened preset folds its settings away: none of their widgets is drawn, yet they are the preset's.
    assert all(w.key not in ("recipe", skey("solver")) for w in at.selectbox)
    assert [e.label for e in at.expander][:1] == ["The preset's settings (open to change them and run again)"]
    at.session_state["exp_settings"] = True
    at.run()
    assert at.selectbox(key="recipe").value == "studio" and at.selectbox(key=skey("solver")).value == "lstsq"
    assert not at.get("number_input") or all(w.key != skey("epochs", "tune") for w in at.number_input)  # closed
    at.session_state["exp_tuning"] = True
    at.run()
    assert at.number_input(key=skey("epochs", "tune")).value == 40
    assert at.sidebar.multiselect(key="src").value == ["tiny-demo-bert"]

    goto(at, "nearest_tokens")
    assert not at.exception and not errors(at)
    shown = tables(at)
    assert len(shown) == 3 and not at.table and not at.dataframe, "an overview, then source and target, all static"
    assert list(shown[1].columns) == ["rank", "token", "cosine"]
    assert list(shown[0].index) == ["V1", "V2", "V3", "V4", "V5"][: len(shown[0])]
    assert shown[0].index.name == "vector" and all(w.strip() for w in shown[0].iloc[:, 0]), "words per vector"
    cosines = [float(c) for c in shown[1]["cosine"]]
    assert cosines == sorted(cosines, reverse=True) and list(shown[1]["rank"]) == [str(i + 1) for i in range(8)]
    assert "Source prompt" in texts(at)
    words = at.session_state["outcome"].discretized_tokens
    assert words and f"nearest shared word, a whole word that is one token in both models: {', '.join(words)}" in (
        texts(at)
    ), "why the discretised words need not lead these lists"
    assert any(b.key == "nn_csv" for b in at.get("download_button"))
    assert "are as long as a real token" in texts(at) and not at.get("echarts_chart"), "histograms wait, undrawn"
    at.session_state["nn_hist"] = True
    at.run()
    assert len(at.get("echarts_chart")) == 2
    at.toggle(key="nn_norm").set_value(True).run()
    assert not at.exception

    goto(at, "relative_space")
    assert not at.exception and not errors(at)
    sizes = at.get("button_group")[[b.key for b in at.get("button_group")].index("npts")]
    n_anchors = at.session_state["outcome"].transferred.provenance["n_anchors"]
    assert n_anchors < 300 and sizes.proto.disabled, "the toy run's few anchors: one map, no dead choices"
    assert list(sizes.proto.options[i].content for i in range(len(sizes.proto.options))) == [f"all {n_anchors}"]
    selection = next(b for b in at.get("download_button") if b.key == "map_sel_csv").proto
    assert selection.disabled and "turn on *Interactive charts*" in selection.help, "no lasso among pictures"
    pictures = [h.value for h in at.get("html") if "data:image/svg+xml;base64," in h.value]
    assert len(pictures) == 3 and not at.get("echarts_chart"), "the maps and the strip open as pictures"
    source_map = svg_of(pictures[0])
    shown = int(re.search(r"similarities to all ([\d,]+) anchors", texts(at)).group(1).replace(",", ""))
    assert source_map.count("<circle") == min(shown, 1000) and source_map.count("<polygon") == 5, "anchors, vectors"
    at.toggle(key="live").set_value(True).run()
    assert not at.exception and at.query_params.get("live") == "true", "the choice is in the link"
    assert len(at.get("echarts_chart")) == 3, "two linked maps and the fingerprint strip"
    per_vector = [float(v) for v in re.findall(r"\*\*V\d\*\* (\d\.\d{3})", texts(at))]
    assert [m.label for m in at.metric] == ["Mean match"] and len(per_vector) == 5, "one metric, one line per prompt"
    assert float(at.metric[0].value) == pytest.approx(sum(per_vector) / 5, abs=1e-3)
    assert re.search(
        r"r = -?\d\.\d\d over all [\d,]+ compared anchors and r = -?\d\.\d\d over the \d+ shown", texts(at)
    )
    selection = next(b for b in at.get("download_button") if b.key == "map_sel_csv").proto
    assert selection.disabled and "pick the lasso" in selection.help, "a disabled export says why"
    at.text_input(key="find").input("French").run()
    assert not at.exception
    selection = next(b for b in at.get("download_button") if b.key == "map_sel_csv").proto
    assert not selection.disabled, "a found token is a selection to export"
    assert at.query_params.get("find") == "French", "page settings are mirrored in the URL"

    goto(at, "query")
    assert not at.exception and not errors(at)
    shown = tables(at)
    assert len(shown) == 3 and not at.dataframe, "three static answer tables; the facts grid waits, undrawn"
    assert list(shown[0].columns) == ["answer", "probability"]
    assert all(0 < float(v) <= 1 for v in shown[0]["probability"])
    assert "Manual template" in texts(at) and "Transferred prompt" in texts(at)
    result = at.session_state["outcome"]
    fact = result.per_fact[0]
    at.text_input(key="subject").input(fact["subject"]).run()
    assert not at.exception
    assert f"The known answer is **{fact['object']}**" in texts(at)

    goto(at, "results")
    assert not at.exception and not errors(at)
    assert tables(at) and not at.get("echarts_chart"), "the paper layout first; charts once their tab is opened"
    assert all(re.fullmatch(r"\d+\.\d", v) for v in tables(at)[0].loc["manual"]), "the manual row's numbers"
    at.session_state["res_tab"] = "Relation × method"
    at.run()
    assert [c.key for c in at.get("echarts_chart")] == ["res_heat"]


VIEW_PAGES = ("nearest_tokens", "relative_space", "query")


def page_view(at: AppTest) -> list:
    """What a page shows: its text, its HTML blocks (tables, pictures) and its metrics."""
    return [texts(at), [h.value for h in at.get("html")], [(m.label, m.value) for m in at.metric]]


def test_a_preset_draws_its_pages_from_recorded_views_without_a_model(monkeypatch):
    """A shipped preset's pages need no model with their default controls (a fresh server shows them at once, and
    a machine without the weights shows them at all); a control the preset did not record computes live."""
    import streamlit as st

    def no_model(name):
        raise ModelLoadError(f"{name} is not on this machine yet")

    monkeypatch.setattr(services, "load_model", no_model)
    st.cache_data.clear()  # nothing computed by earlier tests: no table, anchor set or map
    st.cache_resource.clear()
    at = open_demo_preset(new_app())
    for page in VIEW_PAGES:
        goto(at, page)
        assert not at.exception and not errors(at), (page, errors(at))
    assert len(tables(at)) == 3 and "The known answer is" in texts(at)
    last = at.session_state["outcome"].per_fact[-1]
    at.session_state["subject"] = last["subject"]  # another test example, as the list or the table picks it
    at.run()
    assert not errors(at) and f"The known answer is **{last['object']}**" in texts(at) and len(tables(at)) == 3
    goto(at, "relative_space")
    for word, said in (
        ("French", None),
        ("Qwzx", "No anchor spells “Qwzx”"),
        ("**b** :red[r]", "No anchor spells “**b** :red[r]”"),  # as typed, not drawn as markdown
    ):  # the toy maps show every anchor
        at.text_input(key="find").input(word).run()
        assert not at.exception and not errors(at) and (said is None or said in texts(at)), (word, errors(at))
    goto(at, "nearest_tokens")
    at.slider(key="nn_k").set_value(9).run()
    assert [e for e in errors(at) if "not on this machine" in e] == [
        "This view is not among those recorded with the preset (its pages' default settings and its test examples, "
        "on the data it was made with). tiny-demo-bert is not on this machine yet"
    ], "nine tokens a vector were not recorded, and the page says so"


def test_recorded_views_are_what_the_pages_compute(monkeypatch, tmp_path):
    """The toy preset's recorded views draw exactly what the pages draw when they compute everything afresh (a
    changed toy model, or a change to what a page computes, fails here until `python -m ptfer_app.record_views`)."""
    import streamlit as st

    from ptfer_app import views

    at = open_demo_preset(new_app())
    recorded = {page: page_view(goto(at, page)) for page in VIEW_PAGES}
    monkeypatch.setattr(views, "STORE", views.Views(tmp_path))  # no recorded views at all
    st.cache_data.clear()
    for page in VIEW_PAGES:
        assert page_view(goto(at, page)) == recorded[page], page


def same(a, b) -> bool:
    """Equal views: frames, arrays (dtype too), containers and floats (NaN equal to NaN), all the way down."""
    import math

    import numpy as np
    import pandas as pd

    if isinstance(a, pd.DataFrame) or isinstance(b, pd.DataFrame):
        return isinstance(a, pd.DataFrame) and isinstance(b, pd.DataFrame) and a.equals(b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return type(a) is type(b) and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


def test_record_views_writes_the_views_the_shipped_file_holds_and_keeps_the_old_file_when_a_check_fails(
    monkeypatch, tmp_path
):
    """`python -m ptfer_app.record_views`, on a copy of the toy preset: it records the same views as the shipped
    file (keys, models and values), and a page that still fails once the views are written puts the old file back."""
    import shutil

    from ptfer_app import record_views, views
    from ptfer_core.presets import PRESETS_DIR

    root = tmp_path / "presets"
    shutil.copytree(PRESETS_DIR / DEMO_PRESET, root / DEMO_PRESET, ignore=shutil.ignore_patterns(views.FILE))
    monkeypatch.setattr(views, "STORE", views.Views(root))
    count, _ = record_views.record(DEMO_PRESET, root)
    shipped, shipped_models = views.decode_views((PRESETS_DIR / DEMO_PRESET / views.FILE).read_bytes())
    written, written_models = views.decode_views((root / DEMO_PRESET / views.FILE).read_bytes())
    assert count == len(written) == len(shipped) and written.keys() == shipped.keys()
    assert written_models == shipped_models
    for key in shipped:
        assert same(views._decode(*written[key]), views._decode(*shipped[key])), key

    # A check that fails after writing: the file that was there before is back, byte for byte
    before = (root / DEMO_PRESET / views.FILE).read_bytes()
    runs = iter([[], ["query: a page asked for a model"]])
    monkeypatch.setattr(record_views, "run_pages", lambda preset: next(runs))
    with pytest.raises(SystemExit, match="do not cover the pages"):
        record_views.record(DEMO_PRESET, root)
    assert (root / DEMO_PRESET / views.FILE).read_bytes() == before
    # A page that fails while recording: nothing is written
    monkeypatch.setattr(record_views, "run_pages", lambda preset: ["nearest tokens: an error"])
    (root / DEMO_PRESET / views.FILE).unlink()
    with pytest.raises(SystemExit, match="an error"):
        record_views.record(DEMO_PRESET, root)
    assert not (root / DEMO_PRESET / views.FILE).exists()
    with pytest.raises(SystemExit, match="no preset 'nope'"):
        record_views.record("nope", root)


def test_umap_maps_place_the_prompts_from_a_map_fitted_once_on_the_anchors():
    import numpy as np

    from ptfer_app import services

    at = goto(open_demo_preset(new_app()), "relative_space")
    at.toggle(key="live").set_value(True)
    at.segmented_control(key="proj").set_value("umap").run()
    assert not at.exception and not errors(at), errors(at)
    maps = at.get("echarts_chart")
    assert len(maps) == 3
    series = json.loads(maps[0].proto.spec)["series"]
    diamonds = next(s for s in series if s.get("symbol") == "diamond")
    assert [d["value"][2] for d in diamonds["data"]] == ["V1", "V2", "V3", "V4", "V5"], "the prompts are on the map"
    assert diamonds["z"] > series[0].get("z", 2), "drawn above the anchor dots"
    named = [d["label"]["formatter"] for d in diamonds["data"] if d["label"]["show"]]
    assert ", ".join(named).count("V") == 5, "every vector is named once"
    assert "weighted centre of the 15 anchors whose similarity profiles" in texts(at)
    result = at.session_state["outcome"]
    spec = services.anchor_spec(result, services.data_dir_for([*result.sources, result.target]))
    vectors = result.source_prompts[0].vectors
    args = (result.sources[0], spec, "raw")
    first = services.relative_map(*args, "a", vectors, 1000, "umap", 0)
    again = services.relative_map(*args, "b", vectors * (1 + 1e-6), 1000, "umap", 0)  # same profile, new key
    assert np.allclose(first["prompt_xy"], again["prompt_xy"], atol=1e-4)
    assert np.array_equal(first["anchor_xy"], again["anchor_xy"]), "the anchors' map is fitted once and reused"


def test_map_labels_of_close_prompt_vectors_are_merged_and_fingerprint_rows_can_have_their_own_scale():
    import numpy as np

    from ptfer_app import charts

    points = np.array([[0.0, 0.0], [0.01, 0.0], [5.0, 5.0], [0.0, 0.02]])
    texts, sides = charts.prompt_labels(points, np.array([[0.0, 0.0], [10.0, 10.0]]))
    assert texts == ["", "V1, V2, V4", "V3", ""] and sides == ["right"] * 4, "at the cluster's right-most point"
    right_half = points + np.array([9.0, 0.0])  # now in the map's right half: the label runs to the left
    texts, sides = charts.prompt_labels(right_half, np.vstack([right_half, [[0.0, 0.0]]]))
    assert texts == ["V1, V2, V4", "", "V3", ""] and sides == ["left"] * 4, (texts, sides)
    src, tgt = np.array([0.6, 0.5, 0.55]), np.array([0.1, 0.08, 0.09])
    shared = charts.fingerprint(src, tgt, list("abc"), ("s", "t")).spec
    own = charts.fingerprint(src, tgt, list("abc"), ("s", "t"), per_row=True).spec
    assert own["visualMap"]["max"] == pytest.approx(1.0) and shared["visualMap"]["max"] == pytest.approx(0.6)
    assert "cos {@[3]}" in own["tooltip"]["formatter"], "hover reads the raw cosine"
    assert [cell[3] for cell in own["series"][0]["data"]] == [0.6, 0.5, 0.55, 0.1, 0.08, 0.09]


def test_the_map_export_lists_every_point_and_marks_only_the_marked_anchors():
    """Relative space's CSV (built when its button is clicked): both maps' anchors and prompt vectors with their
    coordinates, and the selection file with just the marked anchors of each map."""
    import csv

    import numpy as np

    from ptfer_app.charts import map_coordinates_csv

    words = ["Paris", "London", "Rome"]
    source = {"anchor_xy": np.array([[0.5, 1.0], [2.0, -1.0], [3.0, 0.0]]), "prompt_xy": np.array([[9.0, 8.0]])}
    target = {"anchor_xy": np.array([[-1.0, 0.25], [0.0, 0.0], [1.0, 1.0]]), "prompt_xy": np.array([[7.0, 6.0]])}
    maps = [("source", "m", source), ("target", "m", target)]  # one model on both sides: `space` tells them apart
    every = list(csv.DictReader(map_coordinates_csv(maps, words, {2}).decode().splitlines()))
    assert [(r["space"], r["model"], r["kind"], r["label"]) for r in every] == [
        *[("source", "m", "anchor", w) for w in words], ("source", "m", "prompt", "V1"),
        *[("target", "m", "anchor", w) for w in words], ("target", "m", "prompt", "V1"),
    ]  # fmt: skip
    assert (float(every[4]["x"]), float(every[4]["y"])) == (-1.0, 0.25), "each row carries its own map's position"
    assert [r["label"] for r in every if r["selected"] == "True"] == ["Rome", "Rome"]
    marked = list(csv.DictReader(map_coordinates_csv(maps, words, [0, 2], marked_only=True).decode().splitlines()))
    assert [(r["space"], r["label"], float(r["x"])) for r in marked] == [
        ("source", "Paris", 0.5), ("source", "Rome", 3.0), ("target", "Paris", -1.0), ("target", "Rome", 1.0)
    ]  # fmt: skip


def test_the_static_map_and_fingerprint_draw_what_the_charts_draw():
    import xml.etree.ElementTree as ET

    import numpy as np

    from ptfer_app import charts, static_charts

    ends = [static_charts.colour(v, -1, 1) for v in (-1, 0, 1, 5, float("nan"))]
    assert ends == [charts.RED_BLUE[0], charts.RED_BLUE[4], charts.RED_BLUE[-1], charts.RED_BLUE[-1], "#cccccc"]
    ns = {"s": "http://www.w3.org/2000/svg"}
    rng = np.random.default_rng(0)
    anchors, prompts = rng.normal(size=(50, 2)), np.array([[0.0, 0.0], [0.001, 0.0], [3.0, 3.0]])
    words = [f"w{i}" for i in range(49)] + ["<b>&"]
    sims = np.linspace(-1, 1, 50)
    svg = ET.fromstring(static_charts.map_svg(anchors, words, sims, prompts, "#E4572E", [49, 3], selected=2))
    dots = svg.findall("s:g/s:circle", ns)
    assert len(dots) == 50 and dots[0].get("fill") == charts.RED_BLUE[0] and dots[-1].get("fill") == charts.RED_BLUE[-1]
    frame = svg.findall("s:rect", ns)[1]
    inside = [(float(d.get("cx")), float(d.get("cy"))) for d in dots]
    x0, y0 = float(frame.get("x")), float(frame.get("y"))
    x1, y1 = x0 + float(frame.get("width")), y0 + float(frame.get("height"))
    assert all(x0 < x < x1 and y0 < y < y1 for x, y in inside), "every anchor inside the plot"
    top = max(range(50), key=lambda i: anchors[i, 1])
    assert min(inside, key=lambda p: p[1]) == inside[top], "y grows upwards, as in the chart"
    rings = [c for c in svg.findall("s:circle", ns) if c.get("fill") == "none"]
    texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert len(rings) == 2 and {"<b>&", "w3"} <= set(texts), "marked anchors ringed and named, the name escaped"
    assert len(svg.findall("s:polygon", ns)) == 3 and "V1, V2" in texts and "V3" in texts, "close vectors share a label"
    crowd = ET.fromstring(static_charts.map_svg(anchors, words, sims, prompts, "#000", list(range(30))))
    assert not {f"w{i}" for i in range(30)} & {t.text for t in crowd.iter("{http://www.w3.org/2000/svg}text")}

    src, tgt = np.array([0.6, 0.5, 0.55]), np.array([0.1, 0.08, 0.09])
    strip = ET.fromstring(static_charts.fingerprint_svg(src, tgt, list("abc"), ("s", "t")))
    cells = [r.get("fill") for r in strip.findall("s:rect", ns) if r.get("stroke") == "#fff"]
    assert len(cells) == 6 and cells[0] == charts.RED_BLUE[-1], "the largest cosine at the top of the shared scale"
    words = [t for t in strip.iter("{http://www.w3.org/2000/svg}text") if t.text in ("a", "b", "c")]
    assert strip.get("width") == str(static_charts.FINGERPRINT_WIDTH) and len(words) == 3
    assert not [t for t in words if t.get("transform")], "level words, a word a line"
    assert float(words[0].get("y")) < float(words[1].get("y")) < float(words[2].get("y")), "in order, down the side"
    bars = [r for r in strip.findall("s:rect", ns) if r.get("width") == "10"]
    scale = max(float(r.get("y")) + float(r.get("height")) for r in bars)
    assert float(strip.get("height")) >= scale + 20, "a short strip is still tall enough for its colour scale"
    long = ET.fromstring(static_charts.fingerprint_svg(src, tgt, ["ManagementPlaneProtection", "b", "c"], ("s", "t")))
    assert "ManagementPlanePr…" in {t.text for t in long.iter("{http://www.w3.org/2000/svg}text")}, "cut, with …"
    own = ET.fromstring(static_charts.fingerprint_svg(src, tgt, list("abc"), ("s", "t"), per_row=True))
    own_cells = [r.get("fill") for r in own.findall("s:rect", ns) if r.get("stroke") == "#fff"]
    assert own_cells[0] == own_cells[3] == charts.RED_BLUE[-1], "each side on its own scale: both columns' tops are red"


def test_a_far_off_anchor_is_drawn_hollow_at_the_frame_edge_and_kept_true_in_the_csv():
    """UMAP can set one anchor, or a small island of them, far from the rest; a frame round it left the map mostly
    empty with every other point in a corner. Both renderers frame the crowd and every prompt vector, and pin the far
    anchors to the edge."""
    import xml.etree.ElementTree as ET

    import numpy as np

    from ptfer_app import charts, static_charts

    rng = np.random.default_rng(0)
    anchors = np.vstack([rng.normal(size=(999, 2)), [[200.0, -150.0]]])
    prompts = np.array([[0.0, 0.0], [30.0, 0.0]])  # a far prompt vector is what the map is about: framed
    frame = charts.map_frame(anchors, prompts)
    assert frame["pinned"].tolist() == [False] * 999 + [True]
    assert frame["hi"][0] > 30 and frame["hi"][0] < 40 and frame["lo"][1] > -10, frame
    assert np.array_equal(frame["anchor_xy"][:999], anchors[:999]) and frame["anchor_xy"][999, 1] > frame["lo"][1]
    island = np.vstack(
        [rng.normal(size=(981, 2)), rng.normal(size=(19, 2)) * 0.1 + [12.0, 0.0]]
    )  # UMAP's, in a real map
    framed = charts.map_frame(island, island[:1])
    assert framed["pinned"].tolist() == [False] * 981 + [True] * 19 and framed["hi"][0] < 6, "an island is left out"
    plain = charts.map_frame(anchors[:999], prompts[:1])
    assert not plain["pinned"].any() and np.allclose(plain["hi"] - plain["lo"], 1.08 * np.ptp(anchors[:999], axis=0)), (
        "without a far-off point the frame is the data's, as before"
    )

    words, sims = [f"w{i}" for i in range(1000)], np.zeros(1000)
    ns = {"s": "http://www.w3.org/2000/svg"}
    svg = ET.fromstring(static_charts.map_svg(anchors, words, sims, prompts, "#000"))
    dots = svg.findall("s:g/s:circle", ns)
    assert [d.get("fill") == "none" for d in dots] == [False] * 999 + [True], "the far anchor alone is hollow"
    plot = svg.findall("s:rect", ns)[1]
    xs = sorted(float(d.get("cx")) for d in dots[:999])
    assert xs[-1] - xs[0] > 0.1 * float(plot.get("width")), "the crowd spreads over the map, not one corner"
    spec = charts.relative_map(anchors, words, sims, prompts, "t", "#000").spec
    data = spec["series"][0]["data"]
    assert isinstance(data[999], dict) and data[999]["symbol"] == "emptyCircle" and isinstance(data[0], list)
    assert spec["xAxis"]["max"] < 40 and spec["yAxis"]["min"] > -10
    drawn = {"anchor_xy": anchors, "prompt_xy": prompts}
    rows = charts.map_coordinates_csv([("source", "m", drawn)], words, []).decode().splitlines()
    assert rows[1000].split(",")[4:6] == ["200.0", "-150.0"], "the CSV has where it lies"


def test_search_chart_has_a_zero_based_score_axis_names_its_score_and_marks_the_kept_step():
    from ptfer_app import charts

    rows = [{"step": i, "loss": 1 / (i + 1), "dev_p_at_1": 80.1 if i % 100 == 0 else None} for i in range(0, 600, 10)]
    spec = charts.trajectory(rows, "Matching loss of the search", score="accuracy", kept_step=300).spec
    dev = spec["yAxis"][1]
    assert dev["min"] == 0 and dev["max"] > 80.1, "every point under the top tick"
    assert dev["interval"] in (10, 20, 25) and dev["max"] % dev["interval"] == 0, "round ticks up to the top"
    assert dev["name"] == "dev accuracy (%)"
    kept = spec["series"][0]["markLine"]
    assert kept["data"] == [{"xAxis": 300}] and kept["label"]["formatter"] == "kept: step 300"
    plain = charts.trajectory(rows, "Matching loss of the search", score="accuracy").spec
    # the label above the plot has a line of its own, under the axes' names (on one line they met at 800 px)
    assert all(a["nameGap"] - p["nameGap"] >= 12 for a, p in zip(spec["yAxis"], plain["yAxis"]))
    assert spec["grid"]["top"] - plain["grid"]["top"] >= 12
    assert spec["title"]["top"] < spec["legend"]["top"] < spec["grid"]["top"], "title, legend and plot, one per line"


def test_a_folded_preset_runs_again_with_its_own_settings():
    at = open_demo_preset(new_app())
    preset = at.session_state["outcome"]
    assert all(w.key != skey("solver") for w in at.selectbox), "folded: no settings widget drawn"
    at.button(key="run").click().run()
    job = job_of(at)
    wait_for_job(at)
    assert not at.exception and not errors(at), errors(at)
    rerun = at.session_state["outcome"]
    assert rerun is not preset and not rerun.origin.startswith("preset:")
    assert {k: v for k, v in rerun.settings.items() if k != "settings_version"} == {
        k: v for k, v in preset.settings.items() if k != "settings_version"
    }, "the undrawn settings are the preset's"
    assert not any(p.name.startswith("tune") for p in job.phases), "its stored source prompt is found, not re-tuned"
    assert at.selectbox(key=skey("solver")).value == "lstsq", "a live result leaves the settings open"


def test_shared_url_opens_the_preset():
    at = new_app()
    at.query_params["preset"] = DEMO_PRESET
    at.run()
    assert not at.exception
    assert at.session_state["outcome"].origin == f"preset:{DEMO_PRESET}"
    at = new_app()
    at.query_params["preset"] = "no-such-preset"
    at.run()
    assert "no preset called" in texts(at)


def test_sidebar_state_is_in_the_url_and_survives_reruns():
    at = goto(new_app().run(), "query")
    at.sidebar.multiselect(key="src").set_value(["tiny-demo-bert"]).run()
    at.sidebar.selectbox(key="rel").set_value("P17").run()
    at.sidebar.number_input(key="seed").set_value(3).run()
    goto(at, "transfer")
    at.selectbox(key=skey("solver")).set_value("refined").run()  # the default closed form has no steps
    at.slider(key=skey("steps")).set_value(200).run()
    goto(at, "home")  # no sidebar there: its values are kept for the next page all the same
    at.query_params.clear()
    at.run()
    goto(at, "transfer")
    assert at.sidebar.multiselect(key="src").value == ["tiny-demo-bert"]
    assert at.sidebar.selectbox(key="rel").value == "P17"
    assert at.sidebar.number_input(key="seed").value == 3
    assert at.slider(key=skey("steps")).value == 200, "page settings survive a trip to another page"
    assert at.query_params.get("rel") == "P17" and at.query_params.get("seed") == "3"
    assert at.query_params.get("steps") == "200"


def test_url_restores_the_view():
    at = new_app()
    at.query_params.update(
        {"src": ["tiny-demo-llama", "tiny-demo-bert"], "tgt": "tiny-demo-gpt2", "rel": "P17", "seed": "7", "bogus": "1"}
    )
    at.run()  # the home page: no sidebar, but the link's values are taken into the session
    at.query_params.clear()  # page links drop the URL's parameters
    goto(at, "transfer")
    assert at.sidebar.multiselect(key="src").value == ["tiny-demo-llama", "tiny-demo-bert"]
    assert at.sidebar.selectbox(key="rel").value == "P17"
    assert at.sidebar.number_input(key="seed").value == 7
    at = new_app()
    at.query_params.update({"rel": "P999", "seed": "x"})  # junk is ignored, not an error
    at.run()
    goto(at, "transfer")
    assert not at.exception and at.sidebar.selectbox(key="rel").value == "P103"


@pytest.mark.parametrize(
    "params,key,expected",
    [
        ({"steps": "-5"}, "steps", 20),
        ({"steps": "99999999"}, "steps", 5000),
        ({"steps": "x"}, "steps", 2000),
        ({"nn_k": "1000"}, "nn_k", 20),
        ({"seed": "-4"}, "seed", 0),
    ],
)
def test_out_of_range_url_values_are_clamped_not_fatal(params, key, expected):
    at = new_app()
    page = "nearest_tokens" if key == "nn_k" else "transfer"
    if key == "nn_k":
        open_demo_preset(at)
        at.switch_page(PAGE[page])
    at.query_params.update(params)
    shown = texts(at.run())
    goto(at, page)
    shown += texts(at)
    assert not at.exception and not errors(at), errors(at)
    assert "is outside" in shown or "is not a valid value" in shown, "the clamp is said, not silent"
    if key == "steps":
        assert at.slider(key=skey("steps")).value == expected and at.button(key="run")
    elif key == "nn_k":
        assert at.slider(key="nn_k").value == expected
    else:
        assert at.sidebar.number_input(key="seed").value == expected


# ----------------------------------------------------------------------------- live transfer


def test_transfer_runs_end_to_end():
    at = goto(new_app().run(), "transfer")
    at.selectbox(key=skey("solver")).set_value("refined").run()
    at.slider(key=skey("steps")).set_value(100).run()
    at.button(key="run").click().run()
    assert not at.exception and not errors(at), errors(at)
    assert job_of(at) is not None
    wait_for_job(at)
    assert not at.exception and not errors(at), errors(at)
    result = at.session_state["outcome"]
    assert result.origin == "live" and result.target == "tiny-demo-gpt2" and result.task.id == "P103"
    assert set(result.scores) == {"transfer", "manual", "discretization", "random"}
    assert result.settings["recipe"] == "studio" and result.settings["transfer"]["steps"] == 100
    assert result.settings["transfer"]["solver"] == "refined"
    from ptfer_core.data import load_split
    from ptfer_core.evaluation import candidates_for

    cands = candidates_for(load_toy("tiny-demo-gpt2"), None, services.demo_data_dir())
    test = [f for f in load_split("P103", "test", services.demo_data_dir()) if f.object in cands.index]
    assert result.scores["transfer"]["n_facts"] == len(test) and [f["uuid"] for f in result.per_fact] == [
        f.uuid for f in test
    ], "scored on the test split"
    assert "Transfer finished" in texts(at)
    assert [m.label for m in at.metric][:4] == ["Transferred", "Manual template", "Discretisation", "Random prompt"]
    # the tuned source prompt was cached: a second run goes straight to the search
    at.button(key="run").click().run()
    job = job_of(at)
    wait_for_job(at)
    assert [p.name for p in job.phases if not p.name.startswith(("load:", "prepare"))] == ["search", "evaluate"]


@pytest.mark.parametrize("solver,space", [("lstsq", "raw"), ("vocabulary", "standardised")])
def test_one_step_solvers_disable_what_they_do_not_use(solver, space):
    at = goto(new_app().run(), "transfer")
    assert at.selectbox(key=skey("solver")).value == "lstsq" and at.slider(key=skey("steps")).disabled  # the default
    at.selectbox(key=skey("solver")).set_value("refined").run()
    assert not at.slider(key=skey("steps")).disabled
    assert at.selectbox(key=skey("selection")).disabled  # only the Adam search has steps to choose from
    at.session_state["exp_anchors"] = True  # its widgets are drawn only while it is open
    at.run()
    assert at.toggle(key=skey("hub_penalty")).disabled  # CSLS only re-scores candidate words
    at.selectbox(key=skey("solver")).set_value(solver).run()
    at.selectbox(key=skey("space")).set_value(space).run()
    assert at.slider(key=skey("steps")).disabled and "Not used now" in at.slider(key=skey("steps")).help
    if solver == "vocabulary":
        at.toggle(key=skey("hub_penalty")).set_value(True).run()
        assert at.query_params.get("solver") == solver  # differs from the recipe: kept in the URL
    at.session_state["exp_anchors"] = False  # closed again: the choices made inside still apply
    at.run()
    assert all(w.key != skey("space") for w in at.selectbox)
    assert at.query_params.get("space") == (None if space == "raw" else space)
    at.button(key="run").click().run()
    wait_for_job(at)
    assert not at.exception and not errors(at), errors(at)
    result = at.session_state["outcome"]
    config = result.transferred.provenance["transfer"]
    assert config["solver"] == solver and config["space"] == space and config["hub_penalty"] == (solver == "vocabulary")
    assert config["selection"] == "loss" and len(result.transferred.trajectory) == 1
    assert not at.get("echarts_chart") or all(c.key != "result_chart" for c in at.get("echarts_chart")), (
        "no empty chart frame for a one-step solver"
    )
    assert "answers in one step" in texts(at) and f"The {solver} solver" not in texts(at), (
        "named as the control names it"
    )
    assert "kept step" not in texts(at), "one step: nothing was chosen"


def test_a_searched_prompt_says_how_its_step_was_kept():
    """The Adam search keeps one of its steps; the prompt's facts name the rule, and only target dev labels earn the
    "Not zero-shot" note."""
    at = goto(new_app().run(), "transfer")
    at.selectbox(key="recipe").set_value("paper-zero-shot").run()
    at.slider(key=skey("steps", recipe="paper-zero-shot")).set_value(40).run()
    at.button(key="run").click().run()
    wait_for_job(at)
    assert not at.exception and not errors(at), errors(at)
    assert at.session_state["outcome"].transferred.provenance["transfer"]["selection"] == "loss"
    assert "(by matching loss)" in texts(at) and "(by target dev" not in texts(at)
    steps = [row["step"] for row in at.session_state["outcome"].transferred.trajectory]
    # the range the chart's x axis shows, unbroken (no-break space, word joiners round the dash)
    assert f"of steps\u00a0{steps[0]}\u2060–\u2060{steps[-1]}" in texts(at)
    assert not any("Not zero-shot" in w.value for w in at.warning)


def test_recipe_choice_sets_every_control():
    at = goto(new_app().run(), "transfer")
    at.selectbox(key="recipe").set_value("paper").run()
    assert at.selectbox(key=skey("solver", recipe="paper")).value == "adam"
    assert at.selectbox(key=skey("selection", recipe="paper")).value == "dev"
    at.session_state["exp_tuning"] = True
    at.run()
    assert at.selectbox(key=skey("init", "tune", "paper")).value == "optiprompt"
    assert at.query_params.get("recipe") == "paper"


def test_cancel_stops_within_a_second():
    at = goto(new_app().run(), "transfer")
    at.selectbox(key="recipe").set_value("paper-zero-shot").run()  # the paper's search: long enough to cancel
    at.slider(key=skey("steps", recipe="paper-zero-shot")).set_value(5000).run()
    at.button(key="run").click().run()
    job = job_of(at)
    deadline = time.perf_counter() + 60
    while not (job.phase and job.phase.name == "search" and job.phase.step > 5):
        assert job.running and time.perf_counter() < deadline, job.error
        time.sleep(0.05)
    at.run()
    assert at.button(key="cancel")
    at.button(key="cancel").click()
    pressed = time.perf_counter()
    at.run()
    shown = texts(at)
    # The engine checks should_stop before every search step: it stops at the next step, whatever the machine's
    # load (a step is milliseconds). The bound is generous for a busy shared CI core; the step count is the proof.
    assert job.join(timeout=10.0), "the job did not stop after Cancel"
    assert time.perf_counter() - pressed < 10.0
    assert job.state == job.CANCELLED
    search = next(p for p in job.phases if p.name == "search")
    assert search.step < 5000, "it stopped mid-search, not at the end"
    at.run()
    shown += texts(at)
    assert job_of(at) is None
    assert "Run cancelled" in shown
    assert "outcome" not in at.session_state, "a cancelled run changes nothing"


def test_live_progress_counts_steps_only_in_a_phase_that_has_several():
    """A one-step phase (loading a model) read "step 0 of 1", as if stuck; a counted phase shows its steps."""
    import threading

    from ptfer_core.jobs import Job

    gates = [threading.Event(), threading.Event()]

    def work(job):
        job.begin("load:x", "Loading x…", 1)
        gates[0].wait(30)
        job.begin("tune", "Tuning", 30)
        job.report(3)
        gates[1].wait(30)

    at = goto(new_app().run(), "transfer")
    job = at.session_state["transfer_job"] = Job(work, "test").start()
    try:
        at.run()
        shown = [p.proto.text for p in at.get("progress")]
        assert len(shown) == 1 and shown[0].startswith("working… · ") and " of " not in shown[0], shown
        gates[0].set()
        deadline = time.perf_counter() + 30
        while job.phase.name != "tune" or job.phase.step != 3:
            assert time.perf_counter() < deadline
            time.sleep(0.01)
        at.run()
        assert [p.proto.text.split(" · ")[0] for p in at.get("progress")] == ["3 of 30 steps done"]
        assert ":material/check: Loading x" in texts(at) and "Loading x…" not in texts(at), "a done phase is ticked"
    finally:
        for gate in gates:
            gate.set()
        job.join(10)


def test_two_sessions_are_independent():
    first, second = new_app(), new_app()
    open_demo_preset(first)
    second.run()
    assert "outcome" not in second.session_state
    goto(second, "transfer")
    second.selectbox(key=skey("solver")).set_value("refined").run()
    second.slider(key=skey("steps")).set_value(40).run()
    second.button(key="run").click().run()
    goto(first, "query")
    assert job_of(first) is None
    wait_for_job(second)
    assert second.session_state["outcome"].origin == "live"
    assert first.session_state["outcome"].origin == f"preset:{DEMO_PRESET}"


# ----------------------------------------------------------------------------- clear errors


def test_model_that_cannot_be_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("PTFER_DATA_DIR", str(write_mini_lama(tmp_path)))
    at = new_app()
    at.query_params.update({"src": "smollm2-135m", "tgt": "gemma3-270m"})
    goto(at.run(), "transfer")  # the sidebar says so (the home page has none)
    assert "not on this machine" in texts(at) and "ptfer models fetch" in texts(at)
    at.button(key="run").click().run()
    wait_for_job(at)
    assert not at.exception
    assert any("cannot be loaded" in e for e in errors(at)), errors(at)


def test_missing_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("PTFER_DATA_DIR", str(tmp_path / "nowhere"))
    at = new_app()
    at.query_params.update({"src": "smollm2-135m", "tgt": "gemma3-270m"})
    at.run()
    assert not at.exception
    goto(at, "transfer")
    assert not at.exception
    assert any("LAMA data is not in" in e for e in errors(at)), errors(at)


def test_mixing_demo_and_real_models_is_explained():
    at = new_app()
    at.query_params.update({"src": "smollm2-135m", "tgt": "tiny-demo-gpt2"})
    at.run()
    assert not at.exception
    goto(at, "transfer")
    assert any("toy models only know" in e for e in errors(at))


def test_relation_with_too_few_facts():
    at = new_app()
    at.query_params["rel"] = "P36"  # 8 facts in the mini data, 1 in its test split
    at.run()
    goto(at, "transfer")
    at.button(key="run").click().run()
    wait_for_job(at)
    assert not at.exception
    assert any("too few examples" in e for e in errors(at)), errors(at)
    assert "outcome" not in at.session_state


def test_width_mismatch_for_direct_transfer():
    at = goto(new_app().run(), "transfer")
    at.segmented_control(key="method").set_value("direct-transfer").run()
    at.button(key="run").click().run()
    wait_for_job(at)
    assert not at.exception
    assert any("needs equal widths" in e for e in errors(at)), errors(at)


def open_upload(at):
    assert not at.get("file_uploader"), "the upload panel is drawn only when opened"
    at.session_state["exp_upload"] = True
    return at.run()


def test_corrupt_uploaded_prompt():
    at = open_upload(goto(new_app().run(), "transfer"))
    uploader = at.get("file_uploader")[0]
    uploader.set_value(("prompt.safetensors", b"\x00\x01 this is not a tensor file", "application/octet-stream"))
    at.run()
    assert not at.exception
    assert any("is not a usable prompt" in e for e in errors(at)), errors(at)


def test_uploaded_prompt_is_used_as_the_source(tmp_path):
    source = presets.read_preset(ROOT / "assets" / "presets" / DEMO_PRESET).source_prompts[0]
    data, meta = source.to_bytes()
    at = new_app()
    at.query_params["src"] = "tiny-demo-bert"
    at = open_upload(goto(at.run(), "transfer"))
    at.get("file_uploader")[0].set_value(
        [("p.safetensors", data, "application/octet-stream"), ("p.json", meta, "application/json")]
    )
    at.run()
    assert not at.exception and not errors(at)
    assert "uses it as the tiny-demo-bert source prompt" in texts(at)
    assert "your uploaded prompt is the source" in texts(at)
    at.session_state["exp_upload"] = False  # closed again: the accepted prompt stays the source
    at.run()
    assert "your uploaded prompt is the source" in texts(at) and not at.get("file_uploader")


def test_an_upload_of_the_wrong_width_is_refused_at_upload():
    import dataclasses

    source = presets.read_preset(ROOT / "assets" / "presets" / DEMO_PRESET).source_prompts[0]  # width 32 (bert)
    mislabelled = dataclasses.replace(source, model="tiny-demo-gpt2")  # says gpt2 (width 48), holds bert's vectors
    at = goto(new_app().run(), "transfer")
    at.sidebar.multiselect(key="src").set_value(["tiny-demo-gpt2"]).run()
    open_upload(at)
    at.get("file_uploader")[0].set_value([("p.safetensors", mislabelled.to_bytes()[0], "application/octet-stream")])
    at.run()
    assert not at.exception
    assert any("width 32" in e and "tiny-demo-gpt2 has" in e for e in errors(at)), errors(at)


def upload_into(sources: list[str], prompt, *others) -> AppTest:
    at = goto(new_app().run(), "transfer")
    at.sidebar.multiselect(key="src").set_value(sources).run()
    open_upload(at)
    files = [("p.safetensors", prompt.to_bytes()[0], "application/octet-stream"), *others]
    at.get("file_uploader")[0].set_value(files)
    return at.run()


def test_an_upload_is_checked_against_its_own_model_and_the_data_sets_tasks():
    """The width was checked against the first source whatever the prompt's model (a bert prompt refused with bert
    selected second); a prompt for a relation of another data set offered a switch that did nothing; a PEFT zip for
    another relation was said to be used and then dropped."""
    import dataclasses
    import io
    import tempfile
    import zipfile

    from ptfer_core.peft_io import peft_template, write_peft_adapter

    bert = presets.read_preset(ROOT / "assets" / "presets" / DEMO_PRESET).source_prompts[0]
    at = upload_into(["tiny-demo-gpt2", "tiny-demo-bert"], bert)  # multi-source: bert is the second
    assert not at.exception and not errors(at), errors(at)
    assert "uses it as the tiny-demo-bert source prompt" in texts(at)
    at = upload_into(["tiny-demo-gpt2"], bert)  # another selected model: a switch to the prompt's own
    assert not errors(at) and at.button(key="use_upload").label.startswith("Use tiny-demo-bert as the source")
    at = upload_into(["tiny-demo-bert"], dataclasses.replace(bert, relation="P999"))
    assert "P999 is not a task of this data set" in texts(at) and not [b for b in at.button if b.key == "use_upload"]
    # a PEFT adapter whose metadata names another relation: not used, and said so
    peft = dataclasses.replace(bert, template=peft_template(bert.n_vectors))
    folder = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp:
        out = write_peft_adapter(
            dataclasses.replace(peft, relation="P36"), Path(tmp) / "a", kind="masked", base_model="x"
        )
        with zipfile.ZipFile(folder, "w") as z:
            for f in out.iterdir():
                z.write(f, f.name)
    at = goto(new_app().run(), "transfer")
    at.sidebar.multiselect(key="src").set_value(["tiny-demo-bert"]).run()
    open_upload(at)
    at.get("file_uploader")[0].set_value([("a.zip", folder.getvalue(), "application/zip")])
    at.run()
    assert not at.exception
    assert "uses it as" not in texts(at) and "It belongs to tiny-demo-bert and P36" in texts(at), texts(at)
    # two prompts at once: the second is named as unread; a bad zip's error names the upload, not a server path
    at = upload_into(["tiny-demo-bert"], bert, ("q.safetensors", bert.to_bytes()[0], "application/octet-stream"))
    assert "Only p.safetensors is read" in texts(at) and "q.safetensors left unread" in texts(at)
    # its own .json only: another prompt's is named as unread, not paired with it
    at = upload_into(["tiny-demo-bert"], bert, ("other.json", bert.to_bytes()[1], "application/json"))
    assert "other.json left unread" in texts(at) and "uses it as the tiny-demo-bert source prompt" in texts(at)
    at = goto(new_app().run(), "transfer")
    open_upload(at)
    at.get("file_uploader")[0].set_value([("p.zip", b"", "application/zip")])
    at.run()
    assert any("p.zip is not a readable zip file" in e and "/tmp" not in e for e in errors(at)), errors(at)


def test_an_upload_above_the_size_limit_is_refused():
    at = open_upload(goto(new_app().run(), "transfer"))
    at.get("file_uploader")[0].set_value(
        ("big.safetensors", b"x" * ((services.UPLOAD_LIMIT_MB << 20) + 1), "application/octet-stream")
    )
    at.run()
    assert not at.exception
    assert any("larger than" in e for e in errors(at)), errors(at)


def test_the_upload_cache_keeps_at_most_eight_prompts(monkeypatch):
    import torch

    from ptfer_core.artifacts import SoftPrompt

    services.prompt_from_upload.clear()
    parsed = []
    real = SoftPrompt.from_bytes
    monkeypatch.setattr(SoftPrompt, "from_bytes", lambda *a, **k: parsed.append(1) or real(*a, **k))
    files = [
        SoftPrompt(torch.full((2, 4), float(i)), "tiny:gpt2:4:0", "P36", "transfer", "[X] [V] [V] [Y] .").to_bytes()
        for i in range(10)
    ]
    for data, sidecar in files:
        services.prompt_from_upload(data, sidecar, "p.safetensors")
    assert len(parsed) == 10
    services.prompt_from_upload(*files[-1], "p.safetensors")  # recent: served from the cache
    assert len(parsed) == 10
    services.prompt_from_upload(*files[0], "p.safetensors")  # the oldest was evicted: parsed again
    assert len(parsed) == 11
    services.prompt_from_upload.clear()


def test_query_page_picks_a_test_fact_from_the_list_or_the_table_opened_on_demand():
    """First paint has a searchable picker over the test facts (filtered by the Show control); the data grid of all
    facts is drawn only when its expander is opened (a click on one of its rows is tested in a real browser)."""
    at = goto(open_demo_preset(new_app()), "query")
    result = at.session_state["outcome"]
    facts = result.per_fact
    right = [f for f in facts if f[result.method] == f["object"]]
    assert 0 < len(right) < len(facts), "the toy preset has facts of both kinds"
    picker = at.selectbox(key="fact_pick")
    assert picker.value is None and len(picker.options) == len(facts) and not at.dataframe
    shown = f"{len(facts)} of {len(facts)} test facts shown · the transferred prompt is right on {len(right)} of all"
    assert shown in texts(at)

    wrong = next(f for f in facts if f[result.method] != f["object"])
    label = next(o for o in picker.options if o.startswith(f"{wrong['subject']} → {wrong['object']} "))
    assert label.endswith(f"transferred ✗ {wrong[result.method]}")
    at.selectbox(key="fact_pick").select(label).run()
    assert not at.exception
    assert at.text_input(key="subject").value == wrong["subject"]
    assert f"The known answer is **{wrong['object']}**" in texts(at)
    shown = [line for line in texts(at).splitlines() if "___" in line and wrong["subject"] in line]
    assert len(shown) == 3 and all(s.endswith("___\u00a0.") for s in shown), "the blank and its '.' on one line"

    at.segmented_control(key="fact_show").set_value("right").run()
    options = at.selectbox(key="fact_pick").options
    assert len(options) == len(right) and all("transferred ✓" in o for o in options)

    at.session_state["facts_table"] = True  # the expander opened
    at.run()
    grid = at.dataframe[-1].value
    assert list(grid.columns) == ["subject", "answer", "transferred", "manual", "discretised"]
    assert len(grid) == len(right), "the table shows what the Show control keeps"
    config = json.loads(at.dataframe[-1].proto.columns)
    assert config["subject"]["width"] == 150, "the input column has a width: answers stay in sight at 800 px"
    assert "background-color" not in str(at.dataframe[-1].proto), "the queried fact is not among those shown"


def test_the_query_pages_table_tints_the_fact_being_queried():
    at = goto(open_demo_preset(new_app()), "query")
    facts = at.session_state["outcome"].per_fact
    queried = 2
    at.text_input(key="subject").input(facts[queried]["subject"])
    at.session_state["facts_table"] = True  # the expander opened
    at.run()
    styles = at.dataframe[-1].proto.arrow_data.styler.styles
    tinted = re.findall(r"row(\d+)_col(\d+)", styles)
    assert sorted(tinted) == [(str(queried), str(c)) for c in range(5)], "its row, all five cells"
    assert "background-color" in styles


def test_a_200_word_subject_on_the_query_page_is_refused_and_the_facts_stay():
    at = goto(open_demo_preset(new_app()), "query")
    at.text_input(key="subject").input(" ".join(["Paris"] * 200)).run()
    assert not at.exception
    assert any("tokens long" in e for e in errors(at)), errors(at)
    assert "Test facts" in texts(at) and at.selectbox(key="fact_pick").options, "the facts are still there"


def test_query_page_explains_token_boundaries_only_when_the_prompts_read_alike_and_names_examples_by_task():
    from types import SimpleNamespace

    from ptfer_app import wording

    template = "The capital of [X] is [Y] ."
    assert wording.read_alike(template, "[V] [V] [V] [X] [V] [Y] .", ["The", "capital", "of", "is"])
    assert wording.read_alike(template, "[S] [V] [V] [V] [X] [V] [Y] .", ["the", "Capital", "of", "is"])
    assert not wording.read_alike(template, "[X] [V] [V] [V] [V] [V] [Y] .", ["ይች", "ኣ", "コー", "Headache", "Marble"])
    assert wording.task_words(SimpleNamespace(is_classification=True))["Examples"] == "Test examples"
    assert wording.task_words(SimpleNamespace(is_classification=False))["input"] == "subject"
    at = goto(open_demo_preset(new_app()), "query")
    assert not at.exception
    assert at.session_state["outcome"].discretized_tokens == ["German", "Brazil", "French", "Spain", "Cairo"]
    assert not [e for e in at.expander if "read alike" in e.label], "these prompts do not read alike"
    assert "Test facts" in texts(at) and at.selectbox(key="fact_pick").options


def test_a_presets_settings_without_a_control_are_named_as_a_reader_says_them():
    at = goto(open_demo_preset(new_app()), "transfer")
    at.session_state["exp_settings"] = True
    at.run()
    note = next((c.value for c in at.caption if "Also from the opened preset" in c.value), None)
    assert note is not None, [c.value for c in at.caption]
    assert "source tuning learning rate 0.2" in note and "=" not in note, note


def test_a_setting_of_all_shows_all_not_an_empty_choice():
    # The demo preset reads every anchor (n_anchors None): a selectbox holding None showed "Choose an option".
    at = goto(open_demo_preset(new_app()), "transfer")
    at.session_state["exp_settings"] = True
    at.session_state["exp_anchors"] = True
    at.run()
    anchors, top_k = at.selectbox(key=skey("n_anchors")), at.selectbox(key=skey("top_k"))
    assert anchors.index == 0 and anchors.options[0] == "all", (anchors.index, anchors.options)
    assert top_k.index == 0
    top_k.select_index(2).run()  # 64
    assert at.query_params.get("top_k") == "64"
    at.selectbox(key=skey("top_k")).select_index(0).run()
    assert "top_k" not in at.query_params, "back to the preset's 'all' (the recipe's value) leaves the link"
    assert at.selectbox(key=skey("top_k")).index == 0 and not at.exception


def test_every_settings_value_fits_its_field():
    """A field is FIELD_WIDTH px: values of 22 characters fit it; longer ones were cut ("whole vocabulary (C")."""
    from ptfer_app.transfer_settings import FIELD_WIDTH

    at = goto(open_demo_preset(new_app()), "transfer")
    for box in ("exp_settings", "exp_anchors", "exp_tuning"):
        at.session_state[box] = True
    at.run()
    shown = [(s.key, o) for s in at.selectbox if s.key.startswith("set.") for o in s.options]
    assert len({k for k, _ in shown}) >= 10, shown
    assert FIELD_WIDTH >= 200 and [(k, o) for k, o in shown if len(o) > 22] == []


def test_results_page_runs_a_fresh_grid(tmp_path, monkeypatch):
    from ptfer_app import results

    config = tmp_path / "mini.yaml"
    config.write_text(
        'models: ["tiny:llama:32:0", "tiny:gpt2:48:1"]\nrelations: [P103]\n'
        "methods: [manual, discretization, transfer]\n"
        "overrides: {tune: {epochs: 1}, transfer: {steps: 20, anchor_source: frequency, "
        "anchor_filter: all, top_k: null}}\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(results, "grid_configs", lambda: {"mini": config})
    at = goto(new_app().run(), "results")
    at.selectbox(key="res_src").set_value("run").run()
    at.button(key="grid_run").click().run()
    assert not at.exception and not errors(at), errors(at)
    deadline = time.perf_counter() + 60
    while at.session_state["grid_job"] is not None:
        assert time.perf_counter() < deadline, "grid did not finish"
        time.sleep(0.3)
        at.run()
    assert not at.exception and not errors(at), errors(at)
    assert "Grid finished" in texts(at)
    assert at.selectbox(key="res_src").value.endswith("mini")
    assert not at.get("echarts_chart"), "tabs and the analysis are drawn only when opened"
    at.session_state["res_tab"] = "Table"
    at.run()
    table = next(d for d in at.dataframe if "method" in d.value.columns).value
    assert set(table["method"]) == {"manual", "discretization", "transfer"}
    assert "pair" not in table.columns and not table.isna().all().any(), "no derived or empty columns"
    text = table.select_dtypes(include=["object", "string"])  # pandas 3 reads text as `str`
    assert "source" in text.columns and not text.isna().any().any(), "blanks, not None"
    shipped = next(k for k in at.selectbox(key="res_src").options if k.endswith("grid-real/results.csv"))
    at.selectbox(key="res_src").set_value(shipped).run()  # its failed cells leave most of `error` empty
    table = next(d for d in at.dataframe if "method" in d.value.columns).value
    assert table["error"].ne("").any() and not table.select_dtypes(include=["object", "string"]).isna().any().any()
    grid = next(d for d in at.dataframe if "method" in d.value.columns)
    assert table["matching_loss"].isna().any() and grid.proto.placeholder == "", "a missing number is blank"
    assert "could not run (e.g. direct transfer across widths): see their error column in the table above" in texts(at)
    at.session_state["res_tab"] = "By method"
    at.run()
    assert [c.key for c in at.get("echarts_chart")] == ["res_bars"]
    at.session_state["res_analysis"] = True
    at.run()
    assert "an_loss" in [c.key for c in at.get("echarts_chart")]


def test_results_page_opens_on_the_shipped_real_grid():
    import pandas as pd

    at = goto(new_app().run(), "results")
    assert not at.exception and not errors(at), errors(at)
    assert at.selectbox(key="res_src").value == "assets/grid-real/results.csv"
    shipped = pd.read_csv(Path(__file__).parents[1] / "assets" / "grid-real" / "results.csv")
    assert {"self-transfer", "transfer", "manual", "direct-tuning"} <= set(shipped["method"])
    assert shipped["relation"].nunique() >= 7 and set(shipped["relation_type"]) == {"1-1", "N-1", "N-M"}
    headings = [m.value for m in at.markdown if m.value.startswith("**Recipe")]
    assert headings and all("methods × targets, as the paper's Tables 2-3" in h for h in headings)
    counts = [int(re.search(r"over (\d+) relations", h).group(1)) for h in headings]
    assert counts[0] == 41 and counts == sorted(counts, reverse=True), "the most complete recipe first"
    assert {re.match(r"\*\*Recipe (\S+)\*\*", h).group(1) for h in headings} >= {"paper", "paper-zero-shot", "studio"}
    at.segmented_control(key="res_avg").set_value("pooled").run()
    headings = [m.value for m in at.markdown if m.value.startswith("**Recipe")]
    assert re.match(r"\*\*Recipe \S+\*\* · pooled P@1 \(%\) over 41 relations", headings[0]), headings[0]
    at.segmented_control(key="res_avg").set_value("relation mean").run()
    assert any(c.value.endswith("41 relations · no filter.") for c in at.caption)
    # no "Select N matches" entry heading a filter's list, which Enter took after typing "P17" (every match)
    assert all(at.multiselect(key=k).proto.select_all == 0 for k in ("res_rec", "res_rel", "res_met", "res_pair"))
    at.multiselect(key="res_rec").set_value(["paper"]).run()
    at.multiselect(key="res_met").set_value(["manual", "transfer"]).run()
    headings = [m.value for m in at.markdown if m.value.startswith("**Recipe")]
    assert len(headings) == 1 and headings[0].startswith("**Recipe paper**")
    assert list(tables(at)[0].index) == ["manual", "transfer"], "the filters (in their popover) apply"
    assert any("· only recipes: paper; methods: manual, transfer." in c.value for c in at.caption)
    assert [p.proto.popover.label for p in at.get("popover")] == ["Filters (2)"], "the popover counts them"
    at.multiselect(key="res_rec").set_value([]).run()
    at.multiselect(key="res_met").set_value([]).run()
    at.selectbox(key="res_src").set_value("assets/grid-dbpedia/results.csv").run()  # classification: Table 6
    headings = [m.value for m in at.markdown if m.value.startswith("**Recipe")]
    assert headings and all("task mean of accuracy (%) over 1 classification task: methods" in h for h in headings)
    assert all("Table 6" in h for h in headings)


def test_a_row_is_classification_by_its_type_or_when_untyped_by_its_name():
    import pandas as pd

    from ptfer_app import results

    rows = pd.DataFrame(
        {"relation": ["P36", "sst2", "sst2", "P17"], "relation_type": ["1-1", None, "classification", None]}
    )
    assert results.is_classification(rows).tolist() == [False, True, True, False]
    assert results.is_classification(rows.drop(columns="relation_type")).tolist() == [False, True, True, False]
    assert (
        results.score_name(rows) == "P@1 / accuracy"
        and results.count_tasks(rows) == "2 relations · 1 classification task"
    )


def test_the_presets_table_never_averages_relation_p_at_1_with_classification_accuracy():
    from ptfer_app import results

    at = goto(new_app().run(), "results")
    at.selectbox(key="res_src").set_value("presets").run()
    assert not at.exception
    table = results.presets_table(presets.list_presets())
    lama = table[~results.is_classification(table)]
    assert set(table.loc[results.is_classification(table), "relation"]) == {"sst2"}
    headings = [m.value for m in at.markdown if m.value.startswith("**Recipe")]
    n_lama = lama[lama["recipe"] == "studio"]["relation"].nunique()
    assert f"**Recipe studio** · relation mean of P@1 (%) over {n_lama} relations" in headings[0]
    assert any(h.startswith("**Recipe studio**") and "accuracy (%) over 1 classification task" in h for h in headings)
    assert any(h.startswith("**Recipe paper**") and "Table 6" in h for h in headings), "the SST-2 paper preset"
    assert not any("Tables 2-3" in h and "paper**" in h for h in headings), "no relation preset has recipe paper"
    # the studio relations table's gemma self-transfer is the mean over the relation presets only
    shown = tables(at)[0]
    own = lama[(lama.recipe == "studio") & (lama.method == "self-transfer") & (lama.target == "gemma3-270m")]
    assert float(shown.loc["self-transfer", "gemma3-270m"]) == pytest.approx(
        own.groupby("relation")["p_at_1"].mean().mean(), abs=0.05
    )
    assert "classification task" in next(c.value for c in at.caption if "rows from the presets" in c.value)


def test_the_relation_heat_map_and_filter_list_relations_by_number():
    import pandas as pd

    from ptfer_app import charts

    rows = [("P101", "manual", 10.0), ("P17", "manual", 20.0), ("sst2", "manual", 50.0), ("P19", "transfer", 5.0)]
    frame = pd.DataFrame(rows, columns=["relation", "method", "p_at_1"])
    spec = charts.grid_heatmap(frame).spec
    assert spec["yAxis"]["data"] == ["P17", "P19", "P101", "sst2"], "as text, P101 came before P17"
    long = "languages spoken, written or signed"
    named = charts.grid_heatmap(frame, labels={"P17": "country", "P101": long}).spec
    assert named["yAxis"]["data"] == ["P17 · country", "P19", "P101 · languages spoken, …", "sst2"]
    cells = {c[4] for c in named["series"][0]["data"]}
    assert f"P101 · {long}" in cells, "the tooltip names it in full"
    assert sorted(["P190", "P20", "P1001", "dbpedia"], key=charts.task_key) == ["P20", "P190", "P1001", "dbpedia"]
    assert charts.task_key("P²") == (1, 0, "P²"), "a name int() cannot read sorts as a name, it does not raise"


def test_results_charts_never_average_recipes_or_model_pairs_together():
    import pandas as pd

    at = goto(new_app().run(), "results")
    at.selectbox(key="res_src").set_value("assets/grid-classification/results.csv").run()
    shipped = pd.read_csv(Path(__file__).parents[1] / "assets" / "grid-classification" / "results.csv")
    assert shipped["recipe"].nunique() > 1
    at.session_state["res_tab"] = "By method"
    at.run()
    assert not at.exception
    recipe = at.segmented_control(key="res_bars_recipe")
    assert recipe.value == shipped.groupby("recipe")["relation"].nunique().idxmax()  # the widest recipe first
    bars = json.loads(at.get("echarts_chart")[0].proto.spec)
    assert f"mean over the selected classification tasks · recipe {recipe.value}." in texts(at)
    transfer = next(s for s in bars["series"] if s["name"] == "transfer")
    one = shipped[(shipped.recipe == recipe.value) & (shipped.method == "transfer") & shipped.p_at_1.notna()]
    for target, p in one.groupby("target")["p_at_1"].mean().items():  # one sst2 row per target and recipe
        bar = transfer["data"][bars["xAxis"]["data"].index(target)]
        assert bar["value"] == round(p, 1) and bar["label"]["formatter"] == f"{p:.1f}", (target, p)
    at.session_state["res_tab"] = "Relation × method"
    at.run()
    assert at.segmented_control(key="res_heat_recipe") and at.segmented_control(key="res_heat_target")
    assert not at.exception
    heat = json.loads(at.get("echarts_chart")[0].proto.spec)
    methods = heat["xAxis"]["data"]
    assert "manual" in methods and "transfer" in methods, "a target's baselines and its transfers, side by side"
    cells = heat["series"][0]["data"]
    assert heat["series"][0]["label"]["formatter"] == "{@[5]}", "each cell prints its own label"
    assert cells and all(re.fullmatch(r"\d+\.\d", c[5]) and float(c[5]) == c[2] for c in cells), (
        "one decimal in every cell (18.0, not 18), as in the tables"
    )


def test_averages_count_each_relation_once_and_presets_keep_their_recipe():
    import pandas as pd

    from ptfer_app import results

    rows = pd.DataFrame(
        {"relation": ["P1", "P1", "P1", "P2"], "method": ["transfer"] * 4, "target": ["B"] * 4,
         "p_at_1": [10.0, 20.0, 30.0, 80.0], "n_correct": [1, 2, 3, 8], "n_facts": [10] * 4}
    )  # fmt: skip
    assert results.averaged(rows, ["target"])["p_at_1"].item() == pytest.approx((20.0 + 80.0) / 2)
    assert results.averaged(rows, ["target"], "pooled")["p_at_1"].item() == pytest.approx(100 * 14 / 40)
    assert not results.can_pool(rows.drop(columns="n_correct"))
    table = results.presets_table(presets.list_presets())
    self_rows = table[(table["preset"] == "real-self-gemma-capital")]
    assert set(self_rows["method"]) == {"self-transfer", "manual", "discretization", "random"}
    assert set(table.loc[table["preset"] == "real-smollm2-gemma-sst2-paper", "recipe"]) == {"paper"}
    # two presets of one target and relation share its manual score: one row, counted once when pooled (a pooled
    # manual → Gemma read 40.0 for 48.0)
    key = ["relation", "recipe", "method", "source", "target"]
    assert not table.duplicated(key).any()
    manual = table[(table.method == "manual") & (table.target == "gemma3-270m") & ~results.is_classification(table)]
    assert manual["source"].eq("—").all() and manual["relation"].is_unique
    pooled = results.averaged(manual, ["target"], "pooled")["p_at_1"].item()
    assert pooled == pytest.approx(100 * manual["n_correct"].sum() / manual["n_facts"].sum())


def test_results_upload_of_a_bad_table_is_explained():
    at = goto(new_app().run(), "results")
    at.selectbox(key="res_src").set_value("upload").run()
    at.get("file_uploader")[0].set_value(("grid.csv", b"a,b\n1,2\n", "text/csv"))
    at.run()
    assert not at.exception
    assert any("is not a results table" in e for e in errors(at)), errors(at)
    for name, data in (("x.json", b"[1, 2, 3]"), ("x.jsonl", b'"a"\n"b"\n')):  # rows that are not objects
        at.get("file_uploader")[0].set_value((name, data, "application/json"))
        at.run()
        assert not at.exception and any("each row must be a JSON object" in e for e in errors(at)), errors(at)
    rows = b"relation,method,target,p_at_1\nP36,manual,m,n/a\nP17,manual,m,\n"  # no score is a number
    at.get("file_uploader")[0].set_value(("grid.csv", rows, "text/csv"))
    at.run()
    assert not at.exception and "2 of 2 rows have no P@1 that is a number" in texts(at), texts(at)
    rows = b"relation,method,target,p_at_1,error\nP36,manual,m,,no facts\nP17,manual,m,,\nP19,manual,m,50,\n"
    at.get("file_uploader")[0].set_value(("grid.csv", rows, "text/csv"))
    at.run()  # one cell that could not run (its error), one row the file gives no score
    assert "1 cells could not run" in texts(at) and "1 of 3 rows have no P@1" in texts(at), texts(at)


def test_saved_figures_prefer_the_interactive_plotly_json(tmp_path):
    from ptfer_app import results

    for name in ("fig2_loss_vs_dev.png", "fig2_loss_vs_dev.json", "fig4_anchor_count.png", "notes.txt"):
        (tmp_path / name).write_text("x", encoding="utf-8")
    assert [p.name for p in results.figures(tmp_path)] == ["fig2_loss_vs_dev.json", "fig4_anchor_count.png"]
    assert results.figures(tmp_path / "missing") == []


def test_a_cross_model_shortfall_is_explained_with_its_own_numbers():
    at = new_app()
    at.query_params["preset"] = "real-smollm2-gemma-capital"
    goto(at.run(), "transfer")
    assert not at.exception
    shown = texts(at)
    preset = ROOT / "assets" / "presets" / "real-smollm2-gemma-capital"
    scores = json.loads((preset / "preset.json").read_text(encoding="utf-8"))["scores"]
    loss = json.loads((preset / "transfer.json").read_text(encoding="utf-8"))["metrics"]["matching_loss"]
    assert scores["transfer"]["p_at_1"] < scores["manual"]["p_at_1"]
    assert (
        f"scores {scores['transfer']['p_at_1']:.1f} against {scores['manual']['p_at_1']:.1f} for the manual template"
        in shown
    )
    assert f"matching loss {loss:.3g}" in shown and "fingerprints on the Relative space page" in shown
    # Its models are not on this machine (the test's empty model folder): say so, never "it is tuned first".
    assert "smollm2-135m is not on this machine: fetch it first" in shown and "tuned first" not in shown
    at = new_app()
    at.query_params["preset"] = "real-self-gemma-capital"
    goto(at.run(), "transfer")
    assert "against" not in texts(at), "a transfer that beats the template gets no shortfall note"


@pytest.mark.parametrize(
    "preset_dir", sorted(p for p in (Path(APP).parent / "assets" / "presets").iterdir() if p.is_dir()), ids=str
)
def test_every_shipped_preset_shows_its_recorded_numbers(preset_dir):
    import json

    meta = json.loads((preset_dir / "preset.json").read_text(encoding="utf-8"))
    at = new_app()
    at.query_params["preset"] = meta["id"]
    goto(at.run(), "transfer")
    assert not at.exception
    shown = {m.label: str(m.value) for m in at.metric}
    for label, key in (("Transferred", "transfer"), ("Manual template", "manual"), ("Random prompt", "random")):
        assert f"{meta['scores'][key]['p_at_1']:.1f}" in shown[label], (label, shown)
    assert meta.get("story") and meta.get("description"), "every preset says what it teaches"
    for key in ("transfer", "manual"):  # a re-made preset with a stale story fails here
        v = meta["scores"][key]["p_at_1"]
        assert f"{v:.1f} %" in meta["story"] or (v == round(v) and f"{v:.0f} %" in meta["story"]), (key, v)
    story = [e for e in at.expander if e.label == "What this preset shows"]
    assert len(story) == 1 and meta["story"] in [m.value for m in story[0].markdown]
    score = "Accuracy" if meta["task"].get("kind") == "classification" else "P@1"
    n = meta["scores"]["transfer"]["n_facts"]
    assert f"{score} (%) on {n} test examples of {meta['task']['id']}" in texts(at), "the score's caption, a sentence"


@pytest.mark.parametrize(
    "preset_dir", sorted(p for p in (Path(APP).parent / "assets" / "presets").iterdir() if p.is_dir()), ids=str
)
def test_every_shipped_preset_shows_every_page_without_its_models(preset_dir):
    """No real weights here (the loader refuses them): a shipped preset's pages still draw in full from its
    recorded views, so a fresh clone shows every preset before `ptfer models fetch`."""
    from ptfer_core.paths import data_dir

    if not preset_dir.name.startswith("toy-") and not (data_dir() / "relations.jsonl").is_file():
        pytest.skip(f"the LAMA data is not at {data_dir()}")
    at = new_app()
    at.query_params["preset"] = preset_dir.name
    at.run()
    for page in VIEW_PAGES:
        goto(at, page)
        assert not at.exception and not errors(at), (page, errors(at))
    assert len(tables(at)) >= 2 and "known answer is" in texts(at), "the Query page answered"
    task = at.session_state["outcome"].task
    if task.is_classification:  # the classes' label words, which the preset's story names
        words = "; ".join(f"{c} ← {' / '.join(w)}" for c, w in zip(task.classes, task.label_words))
        assert f"each scored through its label word ({words}:" in texts(at)


def test_the_self_transfer_preset_shows_the_method_working():
    import json

    meta = json.loads(
        (Path(APP).parent / "assets" / "presets" / "real-self-gemma-capital" / "preset.json").read_text(
            encoding="utf-8"
        )
    )
    scores = {k: v["p_at_1"] for k, v in meta["scores"].items()}
    assert scores["transfer"] >= scores["manual"] + 20 and scores["transfer"] > scores["discretization"]


def test_the_manufacturer_preset_carries_across_models_and_its_story_counts_are_its_own():
    """The cross-model case that works: the transfer beats the discretised words and a random prompt by a wide
    margin, and the story's counts (answers written in the subject) are recomputed from the preset's own facts."""
    import json

    meta = json.loads(
        (Path(APP).parent / "assets" / "presets" / "real-smollm2-gemma-manufacturer" / "preset.json").read_text(
            encoding="utf-8"
        )
    )
    assert meta["sources"] == ["smollm2-135m"] and meta["target"] == "gemma3-270m"
    scores = {k: v["p_at_1"] for k, v in meta["scores"].items()}
    assert scores["transfer"] >= 20 + max(scores["discretization"], scores["random"])
    facts = meta["per_fact"]
    inside = [f for f in facts if f["object"] in f["subject"]]
    hits = [f for f in facts if f["transfer"] == f["object"]]
    assert 100 * len(hits) / len(facts) == pytest.approx(scores["transfer"])
    story = meta["story"]
    assert f"in {len(inside)} of its {len(facts)} test facts the answer is written in the subject" in story
    assert f"{sum(f in inside for f in hits)} of the transferred prompt's {len(hits)} hits" in story
    assert f"answers {scores['transfer']:.1f} %" in story and f"({scores['manual']:.1f} %)" in story


def test_the_fingerprint_colours_span_the_data_not_minus_one_to_one():
    import numpy as np

    from ptfer_app import charts

    spec = charts.fingerprint(
        np.array([0.21, 0.25, 0.3]), np.array([0.2, 0.28, 0.24]), ["a", "b", "c"], ("s", "t")
    ).spec
    colours = spec["visualMap"]
    assert colours["max"] == pytest.approx(0.3) and colours["min"] == pytest.approx(-0.3), "symmetric about 0"
    assert colours["text"] == ["cos\n0.30", "-0.30"], "the scale's title and both ends are written out"
    # The page's caption puts the source column on the left and the strongest word first, at the top: a category
    # axis draws its first entry at the bottom unless it is inverted. The words are level, every one shown.
    assert spec["xAxis"]["data"] == ["s", "t"]
    assert spec["yAxis"]["data"] == ["a", "b", "c"] and spec["yAxis"]["inverse"] is True
    assert spec["yAxis"]["axisLabel"] == {"fontSize": 12, "interval": 0}
    cell = spec["series"][0]["data"][4]  # the transferred side's second word
    assert cell[:2] == [1, 1] and cell[3:] == [0.28, "b", "t"]


def test_preset_cards_share_one_scale():
    import re

    from ptfer_app import palette

    def bars(scores):
        svg = palette.scores_svg(scores, {"transfer": "transferred"}, width=320)
        return {m: float(w) for m, w in re.findall(r'data-method="([^"]+)"[^>]*width="([0-9.]+)"', svg)}, svg

    small, _ = bars({"manual": {"p_at_1": 18.0}, "transfer": {"p_at_1": 0.0}})
    large, svg = bars({"manual": {"p_at_1": 18.0}, "transfer": {"p_at_1": 59.0}, "random": {"p_at_1": 100.0}})
    assert small["manual"] == large["manual"] == pytest.approx(0.18 * large["random"], abs=0.1)  # one 0-100 scale
    assert small["transfer"] == 0 and large["transfer"] == pytest.approx(0.59 * large["random"], abs=0.1)
    assert ">transferred<" in svg and ">59.0<" in svg and svg.index("transferred") < svg.index("manual")


def test_long_curves_are_thinned_for_drawing_but_keep_what_a_reader_looks_for():
    from ptfer_app import charts

    rows = [{"step": i, "loss": 1.0 / (i + 1) + (0.5 if i != 1234 else 0.0)} for i in range(2000)]
    for i in range(49, 2000, 50):
        rows[i]["dev_p_at_1"] = float(i % 7)
    thin = charts.thin_curve(rows)
    steps = [r["step"] for r in thin]
    assert len(thin) <= 400 + 40 + 2 and steps == sorted(steps)
    assert 1234 in steps and 1999 in steps and 0 in steps  # the lowest loss, the last step, the first
    assert all(i in steps for i in range(49, 2000, 50))  # every dev check
    assert charts.thin_curve(rows[:300]) == rows[:300]
    drawn = charts.trajectory(rows).series_named("loss")
    assert len(drawn["data"]) == sum(1 for r in thin if r.get("loss") is not None)


def test_the_background_warm_up_runs_once_per_pair_with_the_apps_settings(monkeypatch, tmp_path):
    import queue
    import threading

    import ptfer_core.compare as compare_module
    from ptfer_core.settings import BUDGET_MAX_DEV

    mini = write_mini_lama(tmp_path / "lama")
    models = {"real-a": load_toy("tiny-demo-llama"), "real-b": load_toy("tiny-demo-gpt2")}
    calls, done = [], threading.Event()
    monkeypatch.setattr(services, "_warm_started", set())
    # a warm-up thread of its own: the shared one may still be compiling UMAP for an earlier test's app run
    monkeypatch.setattr(services, "_warm_queue", queue.SimpleQueue())
    monkeypatch.setattr(services, "_warm_worker", [])
    monkeypatch.setattr(services, "WARM_UP_DELAY_S", 0.0)
    monkeypatch.setattr(catalog, "is_toy", lambda name: name.startswith("tiny"))
    monkeypatch.setattr(catalog, "is_available", lambda name: name in models or name.startswith("tiny"))
    monkeypatch.setattr(services, "load_model", lambda name: models[name])

    def record(sources, target, data, settings, pause=None):
        calls.append((sources, target, data, settings, pause))
        done.set()

    monkeypatch.setattr(compare_module, "warm_up", record)
    services.warm_up(["real-a"], "real-b", "P36", str(mini))
    assert done.wait(30)
    ((sources, target, data, settings, pause),) = calls
    assert pause is services._wait_for_runs, "the warm-up steps aside between its steps while a user's run goes on"
    assert sources == [models["real-a"]] and target is models["real-b"]
    assert data.task.id == "P36" and data.max_dev == BUDGET_MAX_DEV and settings.recipe.value == "studio"
    services.warm_up(["real-a"], "real-b", "P36", str(mini))  # once per pair and process
    services.warm_up(["tiny-demo-llama"], "tiny-demo-gpt2", "P36", str(mini))  # toy models: nothing to warm
    time.sleep(0.5)
    assert len(calls) == 1


def test_warm_ups_run_one_at_a_time_in_the_order_asked(monkeypatch):
    """One warm-up thread: model loads, tables and UMAP's compile never compete for the CPU or import torch at once."""
    import queue
    import threading

    monkeypatch.setattr(services, "_warm_queue", queue.SimpleQueue())
    monkeypatch.setattr(services, "_warm_worker", [])
    monkeypatch.setattr(services, "WARM_UP_DELAY_S", 0.0)
    events, done = [], threading.Event()

    def job(name):
        def run():
            events.append(("start", name))
            time.sleep(0.2)
            events.append(("end", name))
            if name == "c":
                done.set()

        return run

    for name in "abc":
        services._in_background(job(name))
    assert done.wait(10)
    assert events == [(edge, n) for n in "abc" for edge in ("start", "end")]
    assert len(services._warm_worker) == 1


def test_a_queued_warm_up_waits_while_a_users_run_is_going(monkeypatch):
    """A warm-up only saves time: it does not start on the two cores while someone's transfer runs."""
    import queue
    import threading

    from ptfer_core.jobs import Job

    monkeypatch.setattr(services, "_warm_queue", queue.SimpleQueue())
    monkeypatch.setattr(services, "_warm_worker", [])
    monkeypatch.setattr(services, "WARM_UP_DELAY_S", 0.0)
    monkeypatch.setattr(services, "JOB_POLL_S", 0.02)
    release, warmed = threading.Event(), threading.Event()
    before = Job.active()  # another test's job may still be finishing
    run = Job(lambda job: release.wait(10), "transfer").start()
    assert Job.active() == before + 1, "counted as soon as it is started"
    services._in_background(warmed.set)
    assert not warmed.wait(0.5), "the warm-up started during the run"
    release.set()
    run.join(5)
    assert warmed.wait(5) and Job.active() == before


def test_the_uploader_states_the_apps_own_upload_limit():
    text = (Path(APP).parent / ".streamlit" / "config.toml").read_text(encoding="utf-8")
    found = re.search(r"^maxUploadSize\s*=\s*(\d+)\s*$", text, re.M)  # tomllib needs Python 3.11
    assert found and int(found.group(1)) == services.UPLOAD_LIMIT_MB  # not Streamlit's default 200 MB


def test_charts_keep_tiny_losses_print_one_decimal_and_stay_json_with_blank_cells():
    import numpy as np
    import pandas as pd

    from ptfer_app import charts

    # A closed-form match reaches ~1e-6: rounded to 6 decimals it read 0 in the hover.
    curve = charts.trajectory([{"step": 0, "loss": 2.56e-6}, {"step": 1, "loss": 1.234567e-3}]).series_named("loss")
    assert [v for _, v in curve["data"]] == [2.56e-6, 1.235e-3]
    blank = pd.DataFrame(
        {"matching_loss": [3.1e-6], "p_at_1": [float("nan")], "method": ["transfer"], "relation": [None],
         "pair": [float("nan")]}
    )  # fmt: skip
    point = charts.loss_vs_score(blank).spec["series"][0]["data"][0]
    assert point["value"] == [3.1e-6, None, "", ""]
    json.dumps(charts.loss_vs_score(blank).spec, allow_nan=False)  # Streamlit rejects NaN in a spec
    bar = charts.bars(["on", "off"], [18.0, 7.25], "P@1 (%)", x_label="normalisation").spec["series"][0]["data"]
    assert [b["label"]["formatter"] for b in bar] == ["18.0", "7.2"] and bar[0]["tooltip"]["formatter"] == "on: 18.0"
    empty_row = charts.fingerprint(np.array([np.nan, np.nan]), np.array([np.nan, np.nan]), ["a", "b"], ("s", "t"))
    json.dumps(empty_row.spec, allow_nan=False)


def test_static_tables_escape_their_text_and_draw_bars_in_proportion():
    import numpy as np
    import pandas as pd

    from ptfer_app.html_table import html_table

    frame = pd.DataFrame(
        {"token": ["<b>", "Paris & co"], "rank": np.array([1, 2]), "cosine": [0.25, float("nan")]},
        index=pd.Index(["V1", "V2"], name="vector"),
    )
    html = html_table(frame, formats={"cosine": "{:.3f}".format}, bar="cosine", bar_color="#abc")
    assert html.startswith("<table style=") and 'data-index="1"' in html
    assert "&lt;b&gt;" in html and "Paris &amp; co" in html and "<b>" not in html, "cell text is escaped"
    assert ">0.250<" in html and ">—<" in html, "formatted, and a blank cell is a dash"
    assert "#abc 25.0%,transparent 25.0%) no-repeat" in html and html.count("linear-gradient") == 1, "a bar, once"
    assert 'text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap">1<' in html, "numpy ints are numbers"
    assert 'overflow-wrap:anywhere">Paris &amp; co<' in html, "a long token breaks rather than widen the table"
    assert ">vector</th>" in html
    heads = re.findall(r'<th style="([^"]*)">([^<]*)</th>', html)
    right = [name for style, name in heads if "text-align:right" in style]
    assert right == ["rank", "cosine"], "a column of numbers (a blank among them too) has its header on their side"
    named = html_table(frame.rename(columns={"token": "source · smollm2-135m <vocab>"}))
    assert '· <span style="white-space:nowrap">smollm2-135m</span> &lt;vocab&gt;</th>' in named, "a name stays whole"
    plain = html_table(frame, index=False)
    assert "data-index" not in plain and ">vector<" not in plain and ">V1<" not in plain


def test_the_start_up_warm_up_skips_the_pair_tables_when_there_is_no_data(monkeypatch):
    """At server start the default pair's models are queued for loading; without the LAMA data the pair's tables are
    not (they would fail in the background and mark the pair as warmed, so the page's own warm-up would skip it)."""
    from ptfer_core.errors import DataError

    calls = []
    monkeypatch.setattr(services.catalog, "default_selection", lambda: ("smollm2-135m", "gemma3-270m", "P36"))
    monkeypatch.setattr(services, "warm_up", lambda *args: calls.append(args))
    monkeypatch.setattr(services, "warm_umap", lambda: calls.append("umap"))
    monkeypatch.setattr(services, "data_dir_for", lambda names: (_ for _ in ()).throw(DataError("no data")))
    services.warm_up_defaults()
    assert calls == [(["smollm2-135m"], "gemma3-270m", None, None), "umap"]
    monkeypatch.setattr(services, "data_dir_for", lambda names: "/data")
    calls.clear()
    services.warm_up_defaults()
    assert calls == [(["smollm2-135m"], "gemma3-270m", "P36", "/data"), "umap"]


@pytest.mark.parametrize("method", ["pca", "umap"])
def test_a_found_word_beyond_the_anchors_shown_lands_where_the_map_would_put_it(method):
    """*Find a token* places an anchor beyond the first n (the maps are not refitted): placed that way, anchors the
    map does show land on their own points with their own similarities, and one beyond them lands inside the map."""
    import numpy as np
    import torch

    names = ("tiny-demo-bert", "tiny-demo-gpt2")
    spec = (names, None, "common-vocab", "words", services.demo_data_dir())
    anchor_set = services.anchors(*spec)
    vectors = torch.randn(3, services.load_model(names[0]).width, generator=torch.Generator().manual_seed(0))
    args = (names[0], spec, "raw")
    shown = services.relative_map(*args, "v", vectors, 16, method, 0)
    assert len(anchor_set) > 20 and len(shown["words"]) == 16
    # the common vocabulary is alphabetical: the map spreads its 16 over the whole set, not the first 16
    assert shown["shown"][0] == 0 and shown["shown"][-1] == len(anchor_set) - 1 and len(set(shown["shown"])) == 16
    assert shown["words"] == [anchor_set.words[i] for i in shown["shown"]]
    two = shown["shown"][[5, 11]]
    beyond = next(i for i in range(len(anchor_set)) if i not in set(shown["shown"]))
    placed = services.placed_anchors(*args, "v", vectors, 16, method, 0, (*two.tolist(), beyond))
    assert np.allclose(placed["sim"][:2], shown["anchor_sim"][[5, 11]], atol=1e-6)
    placed = placed["xy"]
    if method == "pca":  # UMAP places by neighbours: an anchor's own point is one of several it is averaged from
        assert np.allclose(placed[:2], shown["anchor_xy"][[5, 11]], atol=1e-4)
    low, high = shown["anchor_xy"].min(0), shown["anchor_xy"].max(0)
    span = high - low
    assert np.all(placed[2] >= low - span) and np.all(placed[2] <= high + span), "on the map"


def test_a_results_table_scored_in_two_precisions_says_so_and_how_much_it_moves_the_manual_template():
    """The shipped real grid's studio rows were scored in float32 and its paper rows in bfloat16 (what `auto` meant
    on each machine): the Results page says so, with the manual template's spread between them, computed from the
    rows; a table in one precision gets no note."""
    import pandas as pd

    from ptfer_app import results

    label = "assets/grid-real/results.csv"
    table = results.with_precision(results.read_table((ROOT / label).read_bytes(), "results.csv"), label)
    assert set(zip(table.recipe, table.precision)) == {
        ("studio", "float32"), ("paper", "bfloat16"), ("paper-zero-shot", "bfloat16"), ("paper", "float32"),
        ("paper-zero-shot", "float32"),
    }  # fmt: skip
    assert set(table[table.precision.eq("float32") & table.recipe.eq("paper")].relation) == {"P36", "P17"}
    note = results.precision_note(table)
    assert note and "paper: bfloat16/float32" in note and "studio: float32" in note
    manual = table[table.method == "manual"]
    manual = manual.pivot_table(index=["relation", "target"], columns="recipe", values="p_at_1")
    assert f"up to {(manual.paper - manual.studio).abs().max():.1f} points" in note
    p36 = manual.loc["P36"]
    assert (p36.paper == p36.studio).all(), "P36's paper rows were scored in float32, as the studio ones"
    assert results.precision_note(table[table.recipe == "studio"]) is None
    plain = pd.DataFrame({"relation": ["P1"], "method": ["manual"], "target": ["t"], "p_at_1": [1.0]})
    assert results.precision_note(results.with_precision(results.tidy(plain), "mine.csv")) is None

    at = new_app()
    at.switch_page(PAGE["results"]).run()
    assert at.selectbox(key="res_src").value == label and "Rows scored in different precisions" in texts(at)


def test_a_subject_with_braces_or_slot_marks_is_shown_as_typed():
    """ "Paris {2024}" went through str.format (a traceback, and the facts list gone); "[V] Spain" took a
    discretised word's slot, shifting the words shown after it."""
    from app_pages.query import filled

    assert filled("[X] [V] [V] [Y] .", "Paris {2024} [V]", ["a", "b"]) == "Paris {2024} [V] a b ___ ."
    assert filled("[V] [S][X] [Y] .", "{0} [Y]", ["⟨ w⟩"], blank="→") == "⟨ w⟩ {0} [Y] → ."
    at = goto(open_demo_preset(new_app()), "query")
    typed = "Person3 {0} [V] [Y]"
    at.text_input(key="subject").input(typed).run()
    assert not at.exception and not errors(at), errors(at)
    assert "Test facts" in texts(at)
    prompts = [line.replace("\u00a0", " ") for line in texts(at).splitlines() if typed in line]
    assert len(prompts) == 3 and all(line.endswith("___ .") for line in prompts), prompts
    assert any("German Brazil French Spain Cairo ___ ." in line for line in prompts), prompts


def test_a_links_values_are_matched_or_said_to_be_left_out():
    """?rel=p36 left the sidebar on another relation, and ?seed=1e9, ?tgt=nonsense, ?src=Tiny-Demo-Bert were
    dropped, each without a word."""
    at = new_app()
    at.query_params.update(
        {"rel": "p36", "src": ["Tiny-Demo-Bert", "nonsense", "tiny-demo-bert"], "tgt": "nonsense", "seed": "1e9"}
    )
    shown = texts(at.run())  # the home page says what it took from the link, then the page opened next
    goto(at, "transfer")
    assert not at.exception and not errors(at), errors(at)
    assert at.session_state["rel"] == "P36" and at.session_state["src"] == ["tiny-demo-bert"]
    shown += texts(at)
    for said in ("src=nonsense", "tgt=nonsense", "seed=1e9"):
        assert f"The link's {said} is not a valid value; it is left out." in shown, (said, shown)


def test_a_right_answer_spelled_otherwise_is_ticked_in_the_query_answers():
    """An uncased tokenizer answers "Spanish" for a fact written "SPANISH" (one token): the facts table said ✓ and
    the answer list left it unticked. The scored run's verdict ticks the first answer."""
    import dataclasses

    at = goto(open_demo_preset(new_app()), "query")
    outcome = at.session_state["outcome"]
    right = next(f for f in outcome.per_fact if f[outcome.method] == f["object"])
    spelled = [
        {**f, "object": f["object"].upper(), outcome.method: f["object"].upper()} if f is right else dict(f)
        for f in outcome.per_fact
    ]
    at.session_state["outcome"] = dataclasses.replace(outcome, per_fact=spelled)
    at.text_input(key="subject").input(right["subject"]).run()
    assert not at.exception and not errors(at), errors(at)
    transferred = tables(at)[-1]
    assert transferred.iloc[0, 0] == "✓ " + right["object"], transferred
    assert not any(str(a).startswith("✓") for a in transferred.iloc[1:, 0]), transferred


def test_a_prompt_length_set_with_the_templates_layout_does_not_stop_the_page():
    """The settings refuse a prompt length with the template's layout (its words set the length); the page passed
    the widget's value along and stopped before its Run button."""
    at = new_app()
    at.query_params.update({"placement": "template", "n_vectors": "8"})
    at = goto(at.run(), "transfer")
    at.session_state["exp_tuning"] = True
    at.run()
    assert not at.exception and not errors(at), errors(at)
    length = next(w for w in at.get("slider") + at.get("number_input") if w.key == skey("n_vectors", "tune"))
    assert length.disabled and "one vector for each word" in length.help
    assert at.button(key="run")
