"""Where a page's drawing time goes in the browser, and paired before/after runs of the same pages.

Two modes, both on the toy models with a private cache, one fresh `streamlit run` per page, Chromium headless, warm
loads only (the first load and the server's warm-ups are waited out), median of `--loads`:

    # settle time (as benchmarks/first_paint.py measures it) and the main thread's JavaScript time
    # (Chrome's Performance.ScriptDuration) of the same pages served from two checkouts at once, loaded in turn
    .venv/bin/python benchmarks/browser_time.py --pair /tmp/before,. --paths "/,/query?preset=toy-bert-gpt2-language"

    # JavaScript self time by bundle (Chrome's sampling profiler), averaged over the loads
    .venv/bin/python benchmarks/browser_time.py --profile --paths "/relative-space?preset=toy-bert-gpt2-language"

    # one line per load: when the page's element count and state changed, and when the browser's main thread was
    # too busy to answer the 20 ms probe (a "busy" gap: JavaScript drawing the page)
    .venv/bin/python benchmarks/browser_time.py --timeline --loads 3 --paths "/transfer?preset=toy-bert-gpt2-language"

The floor (a one-title page) is measured first in both modes.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.first_paint import FLOOR_SRC, PROBE, Server, browser, find_binary, load  # noqa: E402


def one_load(driver, server: Server, path: str) -> tuple[float, float]:
    """Seconds until settled, and seconds of main-thread JavaScript, of one warm load."""
    driver.get("about:blank")
    driver.execute_cdp_cmd("Performance.enable", {"timeDomain": "timeTicks"})
    settled = load(driver, server.url + path, 60)[0]
    metrics = {m["name"]: m["value"] for m in driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]}
    driver.execute_cdp_cmd("Performance.disable", {})
    return settled, metrics["ScriptDuration"]


def medians(rows: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)


def script_by_bundle(driver, server: Server, path: str, loads: int) -> collections.Counter:
    """Milliseconds of JavaScript self time per bundle file (or V8's own categories), mean over `loads` loads."""
    spent: collections.Counter = collections.Counter()
    for _ in range(loads):
        driver.get("about:blank")
        driver.execute_cdp_cmd("Profiler.enable", {})
        driver.execute_cdp_cmd("Profiler.setSamplingInterval", {"interval": 200})
        driver.execute_cdp_cmd("Profiler.start", {})
        load(driver, server.url + path, 60)
        profile = driver.execute_cdp_cmd("Profiler.stop", {})["profile"]
        nodes = {n["id"]: n["callFrame"] for n in profile["nodes"]}
        for node, delta_us in zip(profile["samples"], profile["timeDeltas"]):
            frame = nodes[node]
            name = frame["functionName"] if frame["functionName"].startswith("(") else frame["url"].rsplit("/", 1)[-1]
            spent[name or frame["functionName"] or "(native)"] += delta_us / 1000 / loads
    return spent


def timeline(driver, url: str, timeout: float = 30.0) -> str:
    """One warm load as events: `t:STATE` when the element count or state changes (R running, B busy indicator,
    C content drawn, then the element count) and `t:busy D` when the probe waited D s for the main thread."""
    driver.get("about:blank")
    started = time.monotonic()
    driver.get(url)
    events, last, since, before = [], None, 0.0, 0.0
    while time.monotonic() - started < timeout:
        busy, content, elements, _, running = driver.execute_script(PROBE)
        now = time.monotonic() - started
        if events and now - before > 0.08:
            events.append(f"{before:.2f}:busy {now - before:.2f}")
        before = now
        state = ("R" if running else "") + ("B" if busy else "") + ("C" if content else "") + str(elements)
        if state != last:
            events.append(f"{now:.2f}:{state}")
            last, since = state, now
        elif now - since > 0.6 and not busy:
            break
        time.sleep(0.02)
    return " ".join(events)


def warm(driver, server: Server, path: str) -> None:
    load(driver, server.url + path, 120)
    time.sleep(5)  # the app's warm-ups start a few seconds after a first run
    server.wait_idle()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paths", required=True, help="comma list of URL paths, e.g. /,/query?preset=…")
    ap.add_argument("--pair", help="two checkouts, comma separated: each serves the paths in turn")
    ap.add_argument("--profile", action="store_true", help="JavaScript self time by bundle (this checkout)")
    ap.add_argument("--timeline", action="store_true", help="each load's element and busy timeline (this checkout)")
    ap.add_argument("--loads", type=int, default=6)
    ap.add_argument("--real-models", action="store_true", help="use this machine's models (default: none fetched)")
    args = ap.parse_args()
    if sum((bool(args.pair), args.profile, args.timeline)) != 1:
        ap.error("choose one of --pair, --profile and --timeline")
    chromium, chromedriver = find_binary("/usr/bin/chromium"), find_binary("/usr/bin/chromedriver")
    if not chromium or not chromedriver:
        sys.exit("browser_time: Chromium and chromedriver are needed (apt-get install chromium chromium-driver)")
    tmp = Path(tempfile.mkdtemp(prefix="browser-time-"))
    env = {"PTFER_APP_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PTFER_MODEL_DIR": str(tmp / "no-models"), "PTFER_APP_CACHE": str(tmp / "app-cache")}  # fmt: skip
    if args.real_models:
        del env["PTFER_MODEL_DIR"]
    (tmp / "floor.py").write_text(FLOOR_SRC, encoding="utf-8")
    if args.pair and len(args.pair.split(",")) != 2:
        ap.error("--pair takes two checkouts")
    roots = [Path(r).resolve() for r in args.pair.split(",")] if args.pair else [ROOT]
    driver = browser(chromium, chromedriver, tmp / "chromium-profile")
    try:
        with Server(tmp / "floor.py", env, tmp / "floor.log") as floor:
            warm(driver, floor, "/")
            floor_rows = [one_load(driver, floor, "/") for _ in range(args.loads)]
        print("floor: settled {:.3f} s, JavaScript {:.3f} s".format(*medians(floor_rows)), flush=True)
        for path in args.paths.split(","):
            if args.timeline:
                with Server(ROOT / "app.py", env, tmp / "app.log") as server:
                    warm(driver, server, path)
                    for i in range(args.loads):
                        print(f"{path} load {i + 1}: {timeline(driver, server.url + path)}", flush=True)
                continue
            if args.profile:
                with Server(ROOT / "app.py", env, tmp / "app.log") as server:
                    warm(driver, server, path)
                    spent = script_by_bundle(driver, server, path, args.loads)
                print(f"{path}: JavaScript self time, ms per load")
                for bundle, ms in spent.most_common(12):
                    print(f"  {ms:8.1f}  {bundle}")
                continue
            # Both checkouts served at once and loaded in turn (A B, then B A, ...): a browser that drifts slower
            # over a run then favours neither.
            with (
                # each in its own checkout: its .streamlit/config.toml is part of what is compared
                Server(roots[0] / "app.py", env, tmp / "a.log", cwd=roots[0]) as a,
                Server(roots[1] / "app.py", env, tmp / "b.log", cwd=roots[1]) as b,
            ):
                warm(driver, a, path)
                warm(driver, b, path)
                rows: dict[str, list] = {"a": [], "b": []}
                for i in range(args.loads):
                    for side, server in (("a", a), ("b", b)) if i % 2 == 0 else (("b", b), ("a", a)):
                        rows[side].append(one_load(driver, server, path))
            for side, root in zip("ab", roots):
                settled, script = medians(rows[side])
                print(f"{path} [{root}]: settled {settled:.3f} s, JavaScript {script:.3f} s (medians of {args.loads})")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
