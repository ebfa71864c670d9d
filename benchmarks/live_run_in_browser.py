"""A live transfer in headless Chromium on a fresh server, while its background warm-up may still be running.

Starts `streamlit run app.py` (this machine's real models, a private cache), loads the home page (the default
pair starts warming up), opens a real preset on the Transfer page and clicks *Run transfer* twice; prints the
click-to-result seconds of each run. The server and browser are `first_paint`'s. Run it with nothing else on the CPU.

    python benchmarks/live_run_in_browser.py --preset real-self-gemma-capital
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from first_paint import ROOT, Server, browser, find_binary


def main() -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="real-self-gemma-capital")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for one run")
    args = parser.parse_args()
    chromium = find_binary("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
    chromedriver = find_binary("/usr/bin/chromedriver")
    if not chromium or not chromedriver:
        sys.exit("live_run_in_browser: Chromium and chromedriver are needed (apt-get install chromium chromium-driver)")
    tmp = Path(tempfile.mkdtemp(prefix="ptfer-live-"))
    driver = browser(chromium, chromedriver, tmp / "chromium-profile")
    try:
        with Server(ROOT / "app.py", {"PTFER_APP_CACHE": str(tmp / "app-cache")}, tmp / "streamlit.log") as server:
            driver.get(server.url + "/")
            time.sleep(8)
            driver.get(f"{server.url}/transfer?preset={args.preset}")
            run_button = (By.XPATH, "//button[contains(normalize-space(.), 'Run transfer')]")
            shown = lambda d: d.find_elements(*run_button) and "Random prompt" in d.page_source  # the preset's card
            WebDriverWait(driver, 120).until(shown)
            for run in range(1, args.runs + 1):
                driver.find_element(*run_button).click()
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
        driver.quit()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
