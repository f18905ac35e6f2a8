"""The recommender dashboard in a real browser: `streamlit run` as a subprocess, headless Chromium through playwright.

A user is picked, their recommendations appear (the top pick is the one the service computes), and the browser logs
no console error on the way. Leaves a screenshot in docs/screenshots/recommender.png.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from apps.common.settings import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOT = REPO_ROOT / "docs" / "screenshots" / "recommender.png"

sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright Python package (dev extra)")
pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(proc: subprocess.Popen, url: str, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"{url} not healthy after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def dashboard(rec_artifact, tmp_path):
    port = free_port()
    env = {**os.environ, "REC_ARTIFACT": str(rec_artifact), "TRIDENT_VAR_DIR": str(tmp_path / "var")}
    log = tmp_path / "streamlit.log"
    cmd = [sys.executable, "-m", "streamlit", "run", "apps/recommender/ui/app.py", "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(proc, f"http://127.0.0.1:{port}/_stcore/health", log)
        yield f"http://127.0.0.1:{port}", log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_pick_a_user_and_see_recommendations_in_a_real_browser(dashboard, rec_artifact):
    from apps.recommender.service import RecService
    from apps.recommender.settings import RecSettings

    expected = RecService.build(RecSettings(artifact=rec_artifact)).recommend("u007", k=10).items[0].item.title
    base, log = dashboard
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1100})
            page.set_default_timeout(60_000)
            page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text} ({m.location.get('url')})")
                    if m.type == "error" else None)
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url} ({r.failure})"))
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            page.goto(base)
            page.get_by_text("Top picks for").wait_for()
            box = page.get_by_role("combobox", name="User")
            box.click()
            box.fill("u007")
            page.get_by_role("option", name="u007", exact=True).click()
            sync_api.expect(page.get_by_text("Top picks for u007")).to_be_visible()
            sync_api.expect(page.get_by_text(f"#1  {expected}", exact=True)).to_be_visible()
            sync_api.expect(page.get_by_test_id("stDataFrame")).to_have_count(2)  # history + recommendations
            page.wait_for_timeout(800)  # let the grids draw before the picture
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()
    assert errors == [], f"browser console errors: {errors}\nserver log:\n{log.read_text()[-2000:]}"
