"""What the dashboards' AppTests share: run a dashboard headless, optionally switch to a page, and fail on any
exception it raised."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest


def start_app(app: Path, page: str | None = None, timeout: float = 60) -> AppTest:
    """Run ``app`` (its ``app.py``), switch to ``page`` if given, and assert that nothing raised."""
    at = AppTest.from_file(str(app), default_timeout=timeout).run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at
