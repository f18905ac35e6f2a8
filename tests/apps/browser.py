"""The harness of the dashboards' browser tests: `streamlit run` as a subprocess on a free port, Debian's Chromium
headless through playwright, signing in through the dashboard's form, the errors the browser logs, and a screenshot
in docs/screenshots/.

Importing this module skips nothing and imports no playwright: a test module does ``from tests.apps import browser``,
calls ``browser.playwright_or_skip()`` for the ``sync_api`` it drives the page with, and sets
``pytestmark = browser.needs_chromium``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import httpx
import pytest

from apps.common.settings import REPO_ROOT

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"

needs_chromium = pytest.mark.skipif(not CHROMIUM.is_file(),
                                    reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")


def playwright_or_skip() -> ModuleType:
    """``playwright.sync_api``; skips the calling test module when the package is not installed."""
    return pytest.importorskip("playwright.sync_api", reason="needs the playwright Python package (dev extra)")


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(proc: subprocess.Popen, url: str, log: Path, timeout: float = 90.0) -> None:
    """Poll ``url`` until it answers 200; fails with the log's tail if ``proc`` exits or ``timeout`` s pass first."""
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


@contextmanager
def serve_streamlit(app: str, env: Mapping[str, str], log_dir: Path) -> Iterator[tuple[str, Path]]:
    """Serve a dashboard with `streamlit run` on a free port of 127.0.0.1 until the block ends.

    Args:
        app: the app's script, relative to the repository root (the server's working directory).
        env: variables set on top of this process's environment.
        log_dir: where the server's stdout and stderr go, as ``streamlit.log``.

    Yields:
        ``(base URL, server log)`` once ``/_stcore/health`` answers.

    Raises:
        AssertionError: the server exited, or was not healthy within 90 s (with the tail of its log).
    """
    port, log = free_port(), log_dir / "streamlit.log"
    cmd = [sys.executable, "-m", "streamlit", "run", app, "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
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


def watch_errors(page: Page, errors: list[str]) -> None:
    """Append to ``errors``, as lines, each console error, failed request and uncaught error of ``page``."""
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text} ({m.location.get('url')})")
            if m.type == "error" else None)
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url} ({r.failure})"))
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))


@contextmanager
def open_page(url: str, viewport: tuple[int, int], timeout_ms: float) -> Iterator[tuple[Page, list[str]]]:
    """Open ``url`` in a headless Chromium page; the browser closes when the block ends.

    Args:
        url: the page to go to (once the error listeners are on).
        viewport: ``(width, height)`` in pixels.
        timeout_ms: the page's default timeout, which ``goto`` and every locator action and wait use.

    Yields:
        ``(page, errors)``: ``errors`` collects, as lines, each console error, failed request and uncaught page
        error, until the browser closes.
    """
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}).new_page()
            page.set_default_timeout(timeout_ms)
            watch_errors(page, errors)
            page.goto(url)
            yield page, errors
        finally:
            browser.close()


def sign_in(page: Page, name: str, password: str) -> None:
    """Fill the dashboard's sign-in form and submit it (the dashboard, or a refusal, follows)."""
    form = page.get_by_test_id("stForm")
    form.get_by_label("User name").fill(name)
    form.get_by_label("Password", exact=True).fill(password)
    form.get_by_role("button", name="Sign in").click()


def assert_no_errors(errors: list[str], log: Path) -> None:
    """Fail with the errors and the tail of the server log if the browser logged any."""
    assert errors == [], f"browser console errors: {errors}\nserver log:\n{log.read_text()[-2000:]}"


def app_tracebacks(*logs: Path) -> list[str]:
    """The tracebacks in the server logs ``logs``, less Streamlit's own websocket noise: its server logs one when a
    browser tab goes away while its websocket still connects (likely on a loaded machine); no app code is in it."""
    chunks = [c for log in logs for c in log.read_text().split("Traceback (most recent call last):")[1:]]
    return [c[:2000] for c in chunks if "streamlit/web/server/starlette/starlette_websocket.py" not in c]


def save_screenshot(page: Page, name: str) -> Path:
    """Write the full page to ``docs/screenshots/<name>.png`` (the README shows these); returns the path."""
    path = SCREENSHOTS / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path
