"""First paint of the app's pages in headless Chromium, against a one-title Streamlit page (the floor).

For each page, a fresh `streamlit run` on a free port: the first load after the server start ("cold"), then the
server is left to go idle (background warm-ups such as UMAP's numba compile finish) and `--loads` further loads
("warm"). A load lasts from `driver.get(url)` until the page has settled: content drawn, the script not running,
no running indicator, skeleton, spinner or stale element, and the element count unchanged for 300 ms (polled every
50 ms); the time reported is the start of that quiet window. The app runs on the built-in toy models with a private
cache (`--real-models` uses this machine's model directory instead), one thread per script run. The JSON also has,
per page, when the first element appeared and when the script last finished (the rest is the browser drawing).

    .venv/bin/python benchmarks/first_paint.py --loads 5 --screenshots /tmp/fp_shots
    .venv/bin/python benchmarks/first_paint.py --presets real-self-gemma-capital,toy-bert-gpt2-language   (~8 min)
    .venv/bin/python benchmarks/first_paint.py --anatomy --loads 7 --out docs/first_paint_anatomy.json   (~3 min)

    # a few blocks compared in one go: every server up at once, the loads in turn (A B C, C B A, ...), so the
    # machine's drift over a run (±0.1 s here) favours none of them; one block after another it can reorder them
    .venv/bin/python benchmarks/first_paint.py --anatomy --interleave --blocks "shell: the app's frame" --loads 13
    .venv/bin/python benchmarks/first_paint.py --interleave --loads 9   (the pages, one fresh server each, ~6 min)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from ptfer_app.services import WARM_UP_DELAY_S
from ptfer_core.files import atomic_write_json

ROOT = Path(__file__).resolve().parent.parent
FLOOR_SRC = 'import streamlit as st\n\nst.title("Hello, world")\n'
# Two 1,000-point ECharts maps coloured through a visualMap, with a tooltip (SETTINGS: more options, SHOW: its bar).
_ECHARTS_MAPS = """import numpy as np
xy = np.random.default_rng(0).normal(size=(1000, 2)).round(4)
for i, col in enumerate(st.columns(2)):
    spec = {"xAxis": {"type": "value"}, "yAxis": {"type": "value"}, "tooltip": {}, SETTINGS
            "visualMap": {"show": SHOW, "dimension": 2, "min": -3, "max": 3,
                          "inRange": {"color": ["#3b6fb6", "#eeeeee", "#c0392b"]}},
            "series": [{"type": "scatter", "symbolSize": 7, "data": np.column_stack([xy, xy[:, 0]]).tolist()}]}
    col.echarts_chart(spec, height=420, key=f"m{i}")
"""
# The app's frame, in parts (the --anatomy shell blocks put them together).
_NAV = """pages = [
    st.Page(lambda: None, title=f"Page {i}", icon=":material/home:", url_path=f"p{i}", default=i == 0)
    for i in range(6)
]
nav = st.navigation(pages, position="top")
"""
_SIDEBAR_HEAD = """sb = st.sidebar
sb.markdown("**Models and relation**")
sb.markdown("a → b · P36 · capital · seed 0")
"""
_POPOVER = """{indent}with {where}.popover("Change", icon=":material/tune:"{width}):
{indent}    st.multiselect("Source model(s)", ["a", "b", "c"], default=["a"], help="x")
{indent}    st.selectbox("Target model", ["a", "b"], help="x")
{indent}    st.selectbox("Relation or task", ["P36", "P17"], help="x")
{indent}    st.number_input("Seed", 0, 99999, 0, help="x")
"""
_SIDEBAR_TAIL = """sb.caption("Toy models: tiny networks trained on a miniature LAMA.")
sb.divider()
sb.caption("**Current prompt** · a → b · P36 · preset")
"""
_GC = """import gc
import pandas, torch, transformers.modeling_utils
from streamlit import config
"""
_PANEL_SETUP = """import pandas as pd
from ptfer_app.html_table import html_table
frame = pd.DataFrame({"answer": ["Fiat", "the", "a", "two", "Italian"],
                      "probability": [0.394, 0.333, 0.063, 0.017, 0.011]})
"""
# --anatomy: the floor plus one of the app's building blocks at a time, drawn as the app draws them (toy values), to
# see where a page's drawing time goes.
ANATOMY = {
    "floor + sidebar pickers": """sb = st.sidebar
sb.markdown("**Models and relation**")
sb.multiselect("Source model(s)", ["a", "b", "c"], default=["a"], help="x")
sb.selectbox("Target model", ["a", "b"], help="x")
sb.selectbox("Relation or task", ["P36", "P17"], help="x")
sb.number_input("Seed", 0, 99999, 0, help="x")
""",
    "floor + sidebar pickers in a popover": """sb = st.sidebar
sb.markdown("**Models and relation**")
sb.caption("a → b · P36 (capital) · seed 0")
with sb.popover("Change", width="stretch"):
    st.multiselect("Source model(s)", ["a", "b", "c"], default=["a"], help="x")
    st.selectbox("Target model", ["a", "b"], help="x")
    st.selectbox("Relation or task", ["P36", "P17"], help="x")
    st.number_input("Seed", 0, 99999, 0, help="x")
""",
    "floor + three answer dataframes": """import pandas as pd
frame = pd.DataFrame({"answer": ["Paris", "Lyon", "Nice", "Rome", "Oslo"], "probability": [0.4, 0.2, 0.1, 0.05, 0.01]})
for col in st.columns(3):
    col.dataframe(frame, hide_index=True, column_config={"probability": st.column_config.ProgressColumn(
        "probability", min_value=0.0, max_value=1.0, format="%.3f")})
""",
    "floor + three answer tables (static)": """import pandas as pd
frame = pd.DataFrame({"answer": ["Paris", "Lyon", "Nice", "Rome", "Oslo"], "probability": [0.4, 0.2, 0.1, 0.05, 0.01]})
for col in st.columns(3):
    bars = frame.style.bar(subset=["probability"], vmin=0, vmax=1, color="#f3a5a5")
    col.table(bars.format({"probability": "{:.3f}"}))
""",
    "floor + two 1,000-point maps (WebGL)": """import numpy as np
import plotly.graph_objects as go
xy = np.random.default_rng(0).normal(size=(1000, 2))
for i, col in enumerate(st.columns(2)):
    fig = go.Figure(go.Scattergl(x=xy[:, 0], y=xy[:, 1], mode="markers", marker=dict(color=xy[:, 0], size=7)))
    col.plotly_chart(fig.update_layout(height=420), key=f"m{i}")
""",
    "floor + two 1,000-point maps (SVG)": """import numpy as np
import plotly.graph_objects as go
xy = np.random.default_rng(0).normal(size=(1000, 2))
for i, col in enumerate(st.columns(2)):
    fig = go.Figure(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers", marker=dict(color=xy[:, 0], size=7)))
    col.plotly_chart(fig.update_layout(height=420), key=f"m{i}")
""",
    "floor + two 1,000-point maps (ECharts)": _ECHARTS_MAPS.replace("SETTINGS", "").replace("SHOW", "False"),
    "floor + two 1,000-point maps in one ECharts chart (two grids)": """import numpy as np
xy = np.random.default_rng(0).normal(size=(1000, 2)).round(4)
data = np.column_stack([xy, xy[:, 0]]).tolist()
spec = {"grid": [{"left": "5%", "width": "40%"}, {"left": "55%", "width": "40%"}],
        "xAxis": [{"type": "value", "gridIndex": 0}, {"type": "value", "gridIndex": 1}],
        "yAxis": [{"type": "value", "gridIndex": 0}, {"type": "value", "gridIndex": 1}], "tooltip": {},
        "visualMap": {"show": False, "dimension": 2, "min": -3, "max": 3,
                      "inRange": {"color": ["#3b6fb6", "#eeeeee", "#c0392b"]}},
        "series": [{"type": "scatter", "symbolSize": 7, "data": data, "xAxisIndex": i, "yAxisIndex": i}
                   for i in range(2)]}
st.echarts_chart(spec, height=420, key="m")
""",
    "floor + one 3-point ECharts chart": """spec = {"xAxis": {"type": "value"}, "yAxis": {"type": "value"},
        "series": [{"type": "scatter", "data": [[0, 1], [1, 2], [2, 0]]}]}
st.echarts_chart(spec, height=420, key="m")
""",
    "floor + two 1,000-point maps (ECharts), no tooltip or colour map": """import numpy as np
xy = np.random.default_rng(0).normal(size=(1000, 2)).round(4)
for i, col in enumerate(st.columns(2)):
    spec = {"xAxis": {"type": "value"}, "yAxis": {"type": "value"}, "animation": False,
            "series": [{"type": "scatter", "symbolSize": 7, "data": xy.tolist()}]}
    col.echarts_chart(spec, height=420, key=f"m{i}")
""",
    "floor + two 1,000-point maps (ECharts), colour map and tooltip, no animation": _ECHARTS_MAPS.replace(
        "SETTINGS", '"animation": False, '
    ).replace("SHOW", "True"),
    "floor + two 1,000-point maps (ECharts), colours per point and tooltip, no animation": """import numpy as np
xy = np.random.default_rng(0).normal(size=(1000, 2)).round(4)
shade = lambda v: "#%02x%02x%02x" % tuple(int(a + (b - a) * (v + 3) / 6) for a, b in zip((59, 111, 182), (192, 57, 43)))
for i, col in enumerate(st.columns(2)):
    data = [{"value": [x, y], "itemStyle": {"color": shade(max(-3, min(3, x)))}} for x, y in xy.tolist()]
    spec = {"xAxis": {"type": "value"}, "yAxis": {"type": "value"}, "tooltip": {}, "animation": False,
            "series": [{"type": "scatter", "symbolSize": 7, "data": data}]}
    col.echarts_chart(spec, height=420, key=f"m{i}")
""",
    "floor + two 1,000-point maps (Vega-Lite)": """import numpy as np
xy = np.random.default_rng(0).normal(size=(1000, 2)).round(4)
rows = [{"x": float(a), "y": float(b)} for a, b in xy]
for i, col in enumerate(st.columns(2)):
    spec = {"data": {"values": rows}, "mark": {"type": "circle", "size": 40},
            "encoding": {"x": {"field": "x", "type": "quantitative"}, "y": {"field": "y", "type": "quantitative"},
                         "color": {"field": "x", "type": "quantitative"}}}
    col.vega_lite_chart(spec, height=420, key=f"m{i}")
""",
    "floor + one multiselect": 'st.sidebar.multiselect("Source model(s)", ["a", "b", "c"], default=["a"])\n',
    "floor + two selectboxes": 'st.sidebar.selectbox("Target", ["a"])\nst.sidebar.selectbox("Relation", ["P36"])\n',
    "floor + one number input": 'st.sidebar.number_input("Seed", 0, 99999, 0)\n',
    "floor + top navigation (6 pages)": """pages = [
    st.Page(lambda: None, title=f"Page {i}", url_path=f"p{i}", default=i == 0) for i in range(6)
]
st.navigation(pages, position="top").run()
""",
    "floor + six page links (hidden navigation)": """pages = [
    st.Page(lambda: None, title=f"Page {i}", url_path=f"p{i}", default=i == 0) for i in range(6)
]
nav = st.navigation(pages, position="hidden")
with st.container(horizontal=True):
    for page in pages:
        st.page_link(page)
nav.run()
""",
    "floor + top navigation in the sidebar (6 pages)": """pages = [
    st.Page(lambda: None, title=f"Page {i}", url_path=f"p{i}", default=i == 0) for i in range(6)
]
st.navigation(pages, position="sidebar").run()
""",
    "floor + result: four metrics with help": """for col, (name, value) in zip(st.columns(4), [("Transferred", "58.0"),
        ("Manual template", "18.0"), ("Discretisation", "0.0"), ("Random prompt", "0.0")]):
    col.metric(name, value, delta="+40.0 vs manual" if name == "Transferred" else None, help="x")
""",
    "floor + result: four metrics, no help": """for col, (name, value) in zip(st.columns(4), [("Transferred", "58.0"),
        ("Manual template", "18.0"), ("Discretisation", "0.0"), ("Random prompt", "0.0")]):
    col.metric(name, value, delta="+40.0 vs manual" if name == "Transferred" else None)
""",
    "floor + result: four download buttons": """for name in ("prompt", "metadata", "PEFT adapter", "source prompt"):
    st.download_button(f"Download the {name}", b"x", file_name=f"{name}.bin", width="stretch")
""",
    "floor + result: four downloads in one popover": """with st.popover("Download", width="stretch"):
    for name in ("prompt", "metadata", "PEFT adapter", "source prompt"):
        st.download_button(f"Download the {name}", b"x", file_name=f"{name}.bin", width="stretch")
""",
    "floor + result: three closed expanders": """for name in ("Settings", "What this preset shows", "Continue from"):
    with st.expander(name):
        st.markdown("text")
""",
    "floor + result: the prompt as st.code": 'st.code("[X] ▢ ▢ ▢ ▢ ▢ [Y] .", language=None)\n',
    "floor + result: the prompt as markdown": 'st.markdown("`[X] ▢ ▢ ▢ ▢ ▢ [Y] .`")\n',
    "floor + result: the prompt in a styled HTML box (ui.monospace)": """from ptfer_app import ui
ui.monospace("[X] ▢ ▢ ▢ ▢ ▢ [Y] .")
""",
    "floor + html: twelve HTML blocks as markdown (unsafe_allow_html)": """for i in range(12):
    st.markdown(f'<div style="opacity:0.6;font-size:14px">Card {i}: <b>a → b</b> · P36 (capital)</div>'
                '<img width="300" height="60" alt="bars" src="data:image/svg+xml;base64,PHN2Zy8+">',
                unsafe_allow_html=True)
""",
    "floor + html: twelve HTML blocks as st.html": """for i in range(12):
    st.html(f'<div style="opacity:0.6;font-size:14px">Card {i}: <b>a → b</b> · P36 (capital)</div>'
            '<img width="300" height="60" alt="bars" src="data:image/svg+xml;base64,PHN2Zy8+">')
""",
    "floor + html: twelve plain markdown captions": """for i in range(12):
    st.caption(f"Card {i}: **a → b** · P36 (capital)")
""",
    "floor + shell: the app's frame (wide layout, icons, top navigation, sidebar summary and popover)": _NAV
    + _SIDEBAR_HEAD
    + _POPOVER.format(where="sb", indent="", width=', width="stretch"')
    + _SIDEBAR_TAIL
    + "nav.run()\n",
    "floor + shell: the app's frame, the navigation in the sidebar": _NAV.replace('"top"', '"sidebar"')
    + _SIDEBAR_HEAD
    + _POPOVER.format(where="sb", indent="", width=', width="stretch"')
    + _SIDEBAR_TAIL
    + "nav.run()\n",
    "floor + shell: top navigation with icons": _NAV + "nav.run()\n",
    "floor + shell: sidebar text only (two markdown, two captions, a divider)": _SIDEBAR_HEAD + _SIDEBAR_TAIL,
    "floor + shell: sidebar popover only": _POPOVER.format(where="st.sidebar", indent="", width=', width="stretch"'),
    "floor + shell: sidebar summary and popover (the app's sidebar, no navigation)": _SIDEBAR_HEAD
    + _POPOVER.format(where="sb", indent="", width=', width="stretch"')
    + _SIDEBAR_TAIL,
    "floor + shell: the summary and popover at the top of the page, no sidebar": """
with st.container(horizontal=True, vertical_alignment="center"):
    st.markdown("a → b · P36 · capital · seed 0", width="content")
"""
    + _POPOVER.format(where="st", indent="    ", width=""),
    "floor + shell: wide layout and a material page icon": """
st.set_page_config(layout="wide", page_icon=":material/swap_horiz:")
""",
    "floor + shell: wide layout": """st.set_page_config(layout="wide")
""",
    "floor + shell: a material page icon": """st.set_page_config(page_icon=":material/swap_horiz:")
""",
    "floor + tables: three 9 x 3 tables as st.table": """import pandas as pd
frame = pd.DataFrame({"gemma3-270m": [9.9, 0.0, 52.6, 2.8, 0.6, 0.9, 45.5, 7.5, 1.0],
                      "smollm2-135m": [6.9, 0.0, 30.7, 0.0, 0.2, 1.0, 20.5, 6.8, 2.0]},
                     index=[f"method {i}" for i in range(9)])
for _ in range(3):
    st.table(frame.style.format("{:.1f}"))
""",
    "floor + tables: three 9 x 3 tables as st.html": """import pandas as pd
frame = pd.DataFrame({"gemma3-270m": [9.9, 0.0, 52.6, 2.8, 0.6, 0.9, 45.5, 7.5, 1.0],
                      "smollm2-135m": [6.9, 0.0, 30.7, 0.0, 0.2, 1.0, 20.5, 6.8, 2.0]},
                     index=[f"method {i}" for i in range(9)])
cell = "padding:0.25rem 0.5rem;border:1px solid rgba(49,51,63,0.1)"
rows = "".join(f"<tr><td style='{cell}'>{i}</td>" + "".join(f"<td style='{cell};text-align:right'>{v:.1f}</td>"
               for v in row) + "</tr>" for i, row in frame.iterrows())
head = "<tr><th></th>" + "".join(f"<th style='{cell}'>{c}</th>" for c in frame.columns) + "</tr>"
for _ in range(3):
    st.html(f"<table style='border-collapse:collapse;width:100%;font-size:0.875rem'>{head}{rows}</table>")
""",
    "floor + six preset cards": """cols = st.columns(3)
for i in range(6):
    with cols[i % 3], st.container(border=True):
        st.markdown("**Title**")
        st.caption("a -> b")
        st.caption("description")
        st.markdown("<svg width='100' height='50'></svg>", unsafe_allow_html=True)
        st.caption("P@1")
        with st.expander("What this shows"):
            st.markdown("story")
        st.button("Open", key=f"b{i}", type="primary", width="stretch")
""",
    # The Query page's three answer panels: a title, a caption and a bar table each, as the page drew them (three
    # elements a panel) or as one st.html block a panel.
    "floor + panels: three answer panels, three elements each": _PANEL_SETUP
    + """for col in st.columns(3):
    col.markdown("**Manual template**")
    col.caption("Fiat Multipla is produced by ___ .")
    col.html(html_table(frame, bar="probability", index=False))
""",
    "floor + panels: three answer panels, one st.html block each": _PANEL_SETUP
    + """for col in st.columns(3):
    col.html('<div style="font-weight:600">Manual template</div><div style="font-size:0.875rem;opacity:0.6">'
             'Fiat Multipla is produced by ___ .</div>' + html_table(frame, bar="probability", index=False))
""",
    # The server's heap, not the page: Streamlit's `runner.postScriptGC` runs a full collection after every script
    # run, before the page's last messages go out. These blocks set it per process (the app's config turns it off).
    "floor + gc: torch, transformers and pandas imported, a full collection after each run (Streamlit's default)": _GC
    + "config.set_option('runner.postScriptGC', True)\n",
    "floor + gc: the same imports and collections, the imported heap frozen (ptfer_app.services.freeze_heap)": _GC
    + "config.set_option('runner.postScriptGC', True)\n"
    + "if not gc.get_freeze_count():\n    gc.collect()\n    gc.freeze()\n",
    "floor + gc: the same imports, no collection after a run (the app's .streamlit/config.toml)": _GC
    + "config.set_option('runner.postScriptGC', False)\n",
}
BUSY = ", ".join(
    ['[data-testid="stStatusWidget"] [data-testid^="stStatusWidgetRunning"]', '[data-stale="true"]']
    + [f'[data-testid="{t}"]' for t in ("stStatusWidgetNewYearsIcon", "stSkeleton", "stAppSkeleton", "stSpinner")]
)
# Streamlit's own e2e tests wait on stApp's script and connection state; the status widget may not be drawn at all
# (not in this app's DOM), and a page can sit still with one element for seconds while its script runs.
PROBE = f"""const app = document.querySelector('[data-testid="stApp"]');
const running = !app || app.dataset.testScriptState !== 'notRunning';
return [document.querySelectorAll('{BUSY}').length + (running || app.dataset.testConnectionState !== 'CONNECTED'),
  document.querySelectorAll('[data-testid="stMainBlockContainer"] [data-testid="stElementContainer"]').length,
  document.getElementsByTagName('*').length, document.querySelectorAll('[data-testid="stException"]').length,
  running];"""


def find_binary(*names: str) -> str | None:
    found = (*names, *(shutil.which(Path(n).name) or "" for n in names))
    return next((p for p in found if p and Path(p).exists()), None)


class Server:
    """`streamlit run script` on a free port, in its own process group; a context manager that always kills it.
    `cwd`: the checkout whose .streamlit/config.toml applies (Streamlit reads it from the working directory): this
    one's, also for the floor and the anatomy blocks, so they run under the app's settings."""

    def __init__(self, script: Path, env: dict[str, str], log: Path, cwd: Path = ROOT):
        with socket.socket() as sock:  # a free port
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.script, self.env, self.log_path, self.proc, self.cwd = script, env, log, None, cwd
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        cmd = [sys.executable, "-m", "streamlit", "run", str(self.script), "--server.headless", "true",
               "--server.port", str(self.port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats",
               "false", "--server.fileWatcherType", "none"]  # fmt: skip
        self.log = self.log_path.open("w", encoding="utf-8")
        self.proc = subprocess.Popen(cmd, cwd=self.cwd, env={**os.environ, **self.env}, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as resp:
                    if resp.read().strip() == b"ok":
                        return self
            except OSError:
                time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"streamlit (exit code {self.proc.returncode}) did not become healthy:\n{self.tail()}")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()

    def tail(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(encoding="utf-8")[-3000:]

    def wait_idle(self, limit: float = 180.0, below: float = 0.05) -> float:
        """Seconds until the server process used under `below` of a core over one second (its warm-ups done)."""
        started, stat = time.monotonic(), Path(f"/proc/{self.proc.pid}/stat")
        # utime + stime of the server process
        ticks = lambda: sum(int(x) for x in stat.read_text(encoding="utf-8").split(")")[1].split()[11:13])
        while stat.exists() and time.monotonic() - started < limit:  # no /proc (not Linux): no wait
            before = ticks()
            time.sleep(1.0)
            if (ticks() - before) / os.sysconf("SC_CLK_TCK") < below:
                break
        return time.monotonic() - started


def browser(chromium: str, chromedriver: str, profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1440,1000", "--force-device-scale-factor=1",
                 f"--user-data-dir={profile}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.set_page_load_timeout(120)
    return driver


def load(driver, url: str, timeout: float) -> tuple[float, float, float, int]:
    """Seconds from driver.get(url) until the page settled (start of the 300 ms quiet window), until its first
    element was drawn, until its script last finished (the rest is the browser drawing), and exceptions on screen."""
    driver.get("about:blank")
    started = time.monotonic()
    driver.get(url)
    count, since, first, script_done = -1, None, None, 0.0
    while time.monotonic() - started < timeout:
        busy, content, elements, errors, running = driver.execute_script(PROBE)
        now = time.monotonic()
        first = first if first or not content else now - started
        script_done = now - started if running else script_done
        if busy or not content:
            since = None
        elif elements != count or since is None:
            since = now
        elif now - since >= 0.3:
            return since - started, first, script_done, errors
        count = elements
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not settle in {timeout:.0f} s")


def measure(driver, server: Server, path: str, loads: int, timeout: float, shots: Path | None, name: str) -> dict:
    url = server.url + path
    cold, cold_first, cold_script, errors = load(driver, url, timeout)
    time.sleep(WARM_UP_DELAY_S + 0.5)  # the app's warm-ups begin this long after the first run: let them start
    idle = server.wait_idle()
    warm, firsts, scripts, _ = zip(*(load(driver, url, timeout) for _ in range(loads)))
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
        driver.set_window_size(1440, 1600)
        time.sleep(0.8)
        driver.save_screenshot(str(shots / f"{re.sub(r'[^A-Za-z0-9_-]+', '_', name)}.png"))
        driver.set_window_size(1440, 1000)
    return {"page": name, "path": path, "cold_s": cold, "warm_s": warm, "warm_median_s": statistics.median(warm),
            "warm_min_s": min(warm), "warm_max_s": max(warm), "exceptions": errors, "idle_wait_s": idle,
            "first_element_cold_s": cold_first, "first_element_warm_median_s": statistics.median(firsts),
            "script_done_cold_s": cold_script, "script_done_warm_median_s": statistics.median(scripts)}  # fmt: skip


def measure_interleaved(driver, targets: list[tuple[str, str, Server]], loads: int, timeout: float) -> list[dict]:
    """`measure` for servers that are all up: each one's cold load, the warm-ups, then the warm loads in turn, the
    order reversed every other round."""
    colds = [load(driver, server.url + path, timeout) for _, path, server in targets]
    time.sleep(WARM_UP_DELAY_S + 0.5)
    for _, _, server in targets:
        server.wait_idle()
    warm: list[list[tuple]] = [[] for _ in targets]
    for round_ in range(loads):
        order = list(range(len(targets)))
        for i in order[::-1] if round_ % 2 else order:
            warm[i].append(load(driver, targets[i][2].url + targets[i][1], timeout))
    rows = []
    for (name, path, _), (cold, cold_first, cold_script, errors), runs in zip(targets, colds, warm):
        settled, firsts, scripts, _ = zip(*runs)
        rows.append({"page": name, "path": path, "cold_s": cold, "warm_s": settled,
                     "warm_median_s": statistics.median(settled), "warm_min_s": min(settled),
                     "warm_max_s": max(settled), "exceptions": errors, "first_element_cold_s": cold_first,
                     "first_element_warm_median_s": statistics.median(firsts), "script_done_cold_s": cold_script,
                     "script_done_warm_median_s": statistics.median(scripts)})  # fmt: skip
    return rows


def main() -> None:
    pages_in_app = ["home", *re.findall(r'url_path="([^"]+)"', (ROOT / "router.py").read_text(encoding="utf-8"))]
    presets = sorted(p.name for p in (ROOT / "assets" / "presets").iterdir() if (p / "preset.json").is_file())
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loads", type=int, default=5, help="warm loads per page (after the cold one)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "first_paint.json")
    ap.add_argument("--pages", default=",".join(pages_in_app), help=f"comma list of {', '.join(pages_in_app)}")
    ap.add_argument("--presets", default=",".join(presets), help="comma list of presets opened on each page")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds for one page to settle")
    ap.add_argument("--screenshots", type=Path, default=None, help="folder for one PNG per page")
    ap.add_argument("--real-models", action="store_true", help="use this machine's models (default: toy models)")
    ap.add_argument("--anatomy", action="store_true", help="instead of the app: the floor plus one block at a time")
    ap.add_argument(
        "--blocks",
        default=None,
        help="with --anatomy: only the blocks whose name contains one of these comma-separated words",
    )
    ap.add_argument("--interleave", action="store_true", help="all servers up at once, their loads in turn")
    args = ap.parse_args()
    unknown = set(args.pages.split(",")) - set(pages_in_app)
    if unknown:
        ap.error(f"unknown pages {sorted(unknown)}; known: {pages_in_app}")
    unknown_presets = set(args.presets.split(",")) - set(presets)
    if unknown_presets:
        ap.error(f"unknown presets {sorted(unknown_presets)}; known: {presets}")
    chromium = find_binary("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
    chromedriver = find_binary("/usr/bin/chromedriver")
    if not chromium or not chromedriver:
        sys.exit("first_paint: Chromium and chromedriver are needed (apt-get install chromium chromium-driver)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        sys.exit("first_paint: selenium is needed (.venv/bin/pip install selenium)")

    started, rows, tmp = time.monotonic(), [], Path(tempfile.mkdtemp(prefix="first-paint-"))
    (tmp / "floor.py").write_text(FLOOR_SRC, encoding="utf-8")
    targets = [("floor (hello world)", "/", tmp / "floor.py")]
    if not args.anatomy:  # the app is served as an st.App (app.py): the floor that way too, to show it costs nothing
        (tmp / "floor_app.py").write_text('import streamlit as st\n\napp = st.App("floor.py")\n', encoding="utf-8")
        targets.append(("floor (hello world, served as an st.App)", "/", tmp / "floor_app.py"))
    if args.anatomy:
        wanted = args.blocks.split(",") if args.blocks else None
        for i, (name, block) in enumerate(ANATOMY.items()):
            if wanted and not any(w in name for w in wanted):
                continue
            (tmp / f"block{i}.py").write_text(FLOOR_SRC + block, encoding="utf-8")
            targets.append((name, "/", tmp / f"block{i}.py"))
    else:
        targets += [("home", "/", ROOT / "app.py")] if "home" in args.pages.split(",") else []
        pages, chosen = [p for p in args.pages.split(",") if p != "home"], args.presets.split(",")
        targets += [(f"{p} ?preset={k}", f"/{p}?preset={k}", ROOT / "app.py") for p in pages for k in chosen]
    env = {"PTFER_APP_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if args.anatomy:  # the app's config hides the sidebar's page list: a block with sidebar navigation would draw none
        env["STREAMLIT_CLIENT_SHOW_SIDEBAR_NAVIGATION"] = "true"
    if not args.real_models:
        env |= {"PTFER_MODEL_DIR": str(tmp / "no-models"), "PTFER_APP_CACHE": str(tmp / "app-cache")}
    driver = browser(chromium, chromedriver, tmp / "chromium-profile")
    try:
        if args.interleave:
            with contextlib.ExitStack() as stack:
                servers = [(name, path, stack.enter_context(Server(script, env, tmp / f"streamlit{i}.log")))
                           for i, (name, path, script) in enumerate(targets)]  # fmt: skip
                rows = measure_interleaved(driver, servers, args.loads, args.timeout)
            targets = []
        for name, path, script in targets:
            try:
                with Server(script, env, tmp / "streamlit.log") as server:
                    try:
                        rows.append(measure(driver, server, path, args.loads, args.timeout, args.screenshots, name))
                    except TimeoutError as exc:
                        raise RuntimeError(f"{exc}; server log tail:\n{server.tail()}") from None
            except RuntimeError as exc:
                print(f"{name}: {exc}", file=sys.stderr)
                rows.append({"page": name, "path": path, "error": str(exc).splitlines()[0]})
            print(f"  measured {name}", file=sys.stderr, flush=True)
    finally:
        driver.quit()
        shutil.rmtree(tmp, ignore_errors=True)

    floor = rows[0].get("warm_median_s")
    lines = ["| page | cold s | warm median s | min | max | ratio to floor |", "| --- |" + " ---: |" * 5]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['page']} | {r['error']} | | | | |")
            continue
        r["ratio_to_floor"] = r["warm_median_s"] / floor if floor else None
        ratio = f"{r['ratio_to_floor']:.1f}×" if floor else "n/a"
        note = f" ⚠ {r['exceptions']} exception(s) on screen" if r["exceptions"] else ""
        lines.append(f"| {r['page']} | {r['cold_s']:.2f} | {r['warm_median_s']:.2f} | {r['warm_min_s']:.2f} | "
                     f"{r['warm_max_s']:.2f} | {ratio} |{note}")  # fmt: skip
    wall = time.monotonic() - started
    import streamlit

    meta = {"loads": args.loads, "timeout_s": args.timeout, "streamlit": streamlit.__version__,
            "cpus": os.cpu_count(), "load_average": os.getloadavg(), "real_models": args.real_models,
            "presets": args.presets.split(","), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "wall_s": wall, "anatomy": args.anatomy, "interleaved": args.interleave}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, {"meta": meta, "pages": rows})  # before printing: a narrow terminal cannot lose it
    print("\n".join(lines) + f"\n\nwall time {wall:.0f} s, {args.loads} warm loads per page")


if __name__ == "__main__":
    main()
