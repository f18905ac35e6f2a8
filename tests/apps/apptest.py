"""What the dashboards' AppTests share: a fresh service for every test, an account per role, and running a dashboard
headless, signed in through its own sign-in form, optionally on a page, failing on any exception it raised."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import bcrypt
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from apps.common.users import AuthSettings, UserStore

PASSWORD = "a-test-password"
USERS = {"agent": "ada", "analyst": "ann", "admin": "root"}  # one account per role, all with PASSWORD


@pytest.fixture(autouse=True)
def fresh_service():
    """Every test builds its own service (its own database and index): nothing cached crosses tests. Autouse in the
    test modules that import it."""
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def add_users(database_url: str | None = None) -> dict[str, str]:
    """The accounts of :data:`USERS` in ``database_url`` (default: the database of this environment's ``TRIDENT_*``,
    which the dashboard reads); returns :data:`USERS`. Hashed with bcrypt's fewest rounds, to keep the tests quick
    (a hash names its own cost, so signing in checks it as any other)."""
    gensalt = bcrypt.gensalt
    with mock.patch.object(bcrypt, "gensalt", lambda: gensalt(rounds=4)):
        with UserStore(database_url or AuthSettings().core.effective_database_url).create() as store:
            for role, name in USERS.items():
                store.add(name, role, PASSWORD)
    return USERS


def sign_in(at: AppTest, name: str, password: str = PASSWORD) -> AppTest:
    """Fill the dashboard's sign-in form and submit it."""
    next(t for t in at.text_input if t.label == "User name").input(name)
    next(t for t in at.text_input if t.label == "Password").input(password)
    next(b for b in at.button if b.label == "Sign in").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def start_app(app: Path, page: str | None = None, timeout: float = 60, user: str | None = None) -> AppTest:
    """Run ``app`` (its ``app.py``), sign in as ``user`` if given, switch to ``page`` if given, and assert that
    nothing raised."""
    at = AppTest.from_file(str(app), default_timeout=timeout).run()
    if user:
        sign_in(at, user)
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at
