"""A live transfer in headless Chromium on a fresh server, while its background warm-up may still be running.

Starts `streamlit run app.py` (this machine's real models, a private cache), loads the home page (the default
pair starts warming up), opens a real preset on the Transfer page and clicks *Run transfer* twice; prints the
click-to-result seconds of each run. Run it with nothing else on the CPU.

    python benchmarks/live_run_in_browser.py --preset real-self-gemma-capital
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="real-self-gemma-capital")
    parser.add_argument("--port", type=int, default=8612)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for one run")
    args = parser.parse_args()
    cache = tempfile.mkdtemp(prefix="ptfer-live-")
    log = open(Path(cache) / "server.log", "w", encoding="utf-8")  # noqa: SIM115 - closed in finally
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
         "--server.port", str(args.port), "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, env={**os.environ, "PTFER_APP_CACHE": cache}, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    options = Options()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1440,1000"):
        options.add_argument(flag)
    driver = None
    try:
        time.sleep(6)
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        base = f"http://127.0.0.1:{args.port}"
        driver.get(base + "/")
        time.sleep(8)
        driver.get(f"{base}/transfer?preset={args.preset}")
        time.sleep(4)
        for run in range(1, args.runs + 1):
            driver.find_element(By.XPATH, "//button[contains(normalize-space(.), 'Run transfer')]").click()
            started = time.monotonic()
            while time.monotonic() - started < args.timeout:
                time.sleep(1)
                body = driver.find_element(By.TAG_NAME, "body").text
                if "Transfer finished in" in body and "Cancel" not in body:
                    break
            took = time.monotonic() - started
            finished = [line for line in body.splitlines() if "finished in" in line]
            print(f"run {run}: {took:.1f} s click to result {finished or '(not finished)'}", flush=True)
            time.sleep(2)
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(10)
        log.close()
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
