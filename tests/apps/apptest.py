"""What the dashboards' AppTests share: a fresh service for every test, and running a dashboard headless, optionally
on a page, failing on any exception it raised."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest


@pytest.fixture(autouse=True)
def fresh_service():
    """Every test builds its own service (its own database and index): nothing cached crosses tests. Autouse in the
    test modules that import it."""
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def start_app(app: Path, page: str | None = None, timeout: float = 60) -> AppTest:
    """Run ``app`` (its ``app.py``), switch to ``page`` if given, and assert that nothing raised."""
    at = AppTest.from_file(str(app), default_timeout=timeout).run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at
