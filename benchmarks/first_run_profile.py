"""Where a fresh server's first page spends its script time: cProfile of the first run of a page, opened in headless
Chromium as the first request after the server starts, with the start-up imports done as `app.py` does them.

    .venv/bin/python benchmarks/first_run_profile.py "/relative-space?preset=toy-bert-gpt2-language"
    .venv/bin/python benchmarks/first_run_profile.py "/relative-space?preset=real-self-gemma-capital" --real-models

Prints the run's wall time (cProfile slows it by about a third) and the functions with the most cumulative time.
The router is wrapped by a scratch script in the repository root (the pages' paths are relative to the main
script), deleted afterwards.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.first_paint import Server, browser, find_binary, load  # noqa: E402

WRAPPER = """import cProfile, io, pstats, time
from ptfer_app import services
if not getattr(services, "_profiled", False):
    services.preload()  # what app.py's start-up does, outside the profile
pr = cProfile.Profile()
started = time.perf_counter()
pr.enable()
try:
    exec(compile(open(ROUTER).read(), ROUTER, "exec"), {"__name__": "__main__", "__file__": ROUTER})
finally:
    pr.disable()
    if not getattr(services, "_profiled", False):
        services._profiled = True
        text = io.StringIO()
        pstats.Stats(pr, stream=text).sort_stats("cumulative").print_stats(TOP)
        with open(OUT, "w") as f:
            f.write(f"first run: {time.perf_counter() - started:.3f} s (under cProfile)\\n" + text.getvalue())
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", help="URL path of the page, e.g. /relative-space?preset=toy-bert-gpt2-language")
    ap.add_argument("--real-models", action="store_true", help="use this machine's models (default: toy models)")
    ap.add_argument("--top", type=int, default=40, help="functions listed")
    args = ap.parse_args()
    chromium, chromedriver = find_binary("/usr/bin/chromium"), find_binary("/usr/bin/chromedriver")
    if not chromium or not chromedriver:
        sys.exit("first_run_profile: Chromium and chromedriver are needed (apt-get install chromium chromium-driver)")
    tmp = Path(tempfile.mkdtemp(prefix="first-run-"))
    env = {"PTFER_APP_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PTFER_APP_CACHE": str(tmp / "app-cache")}  # fmt: skip
    if not args.real_models:
        env["PTFER_MODEL_DIR"] = str(tmp / "no-models")
    out = tmp / "profile.txt"
    wrapper = ROOT / f"_first_run_profile_{tmp.name}.py"
    source = WRAPPER.replace("ROUTER", repr(str(ROOT / "router.py")))
    wrapper.write_text(source.replace("TOP", str(args.top)).replace("OUT", repr(str(out))), encoding="utf-8")
    driver = browser(chromium, chromedriver, tmp / "chromium-profile")
    try:
        with Server(wrapper, env, tmp / "server.log") as server:
            settled = load(driver, server.url + args.path, 180)[0]
        print(f"settled {settled:.2f} s after the request (this includes the start-up imports, done in that run)")
        print(out.read_text(encoding="utf-8") if out.is_file() else f"no profile: see {tmp / 'server.log'}")
    finally:
        driver.quit()
        wrapper.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
