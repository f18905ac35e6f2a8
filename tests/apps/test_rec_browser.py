"""The recommender dashboard in a real browser: `streamlit run` as a subprocess, headless Chromium through playwright.

The analyst signs in, a user is picked, their recommendations appear (the top pick is the one the service computes),
and the browser logs no console error on the way. Leaves a screenshot in docs/screenshots/recommender.png.
"""

from __future__ import annotations

import pytest

from apps.recommender.service import RecService
from apps.recommender.settings import RecSettings
from tests.apps import browser
from tests.apps.apptest import PASSWORD, USERS, add_users

sync_api = browser.playwright_or_skip()
pytestmark = browser.needs_chromium


@pytest.fixture
def dashboard(rec_artifact, tmp_path):
    """The dashboard served by `streamlit run` on a free port; yields (base URL, server log)."""
    db_url = f"sqlite:///{tmp_path / 'trident.db'}"
    add_users(db_url)
    env = {"REC_ARTIFACT": str(rec_artifact), "TRIDENT_VAR_DIR": str(tmp_path / "var"), "TRIDENT_DATABASE_URL": db_url}
    with browser.serve_streamlit("apps/recommender/ui/app.py", env, tmp_path) as (base, log):
        yield base, log


def test_pick_a_user_and_see_recommendations_in_a_real_browser(dashboard, rec_artifact):
    expected = RecService.build(RecSettings(artifact=rec_artifact)).recommend("u007", k=10).items[0].item.title
    base, log = dashboard
    with browser.open_page(base, viewport=(1440, 1100), timeout_ms=60_000) as (page, errors):
        browser.sign_in(page, USERS["analyst"], PASSWORD)
        page.get_by_text("Top picks for").wait_for()
        box = page.get_by_role("combobox", name="User")
        box.click()
        box.fill("u007")
        page.get_by_role("option", name="u007", exact=True).click()
        sync_api.expect(page.get_by_text("Top picks for u007")).to_be_visible()
        sync_api.expect(page.get_by_text(f"#1  {expected}", exact=True)).to_be_visible()
        sync_api.expect(page.get_by_test_id("stDataFrame")).to_have_count(2)  # history + recommendations
        page.wait_for_timeout(800)  # let the grids draw before the picture
        browser.save_screenshot(page, "recommender")
    browser.assert_no_errors(errors, log)
