"""The customer-service Store on SQLite and PostgreSQL: roundtrips, claims, optimistic writes, rollbacks."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from apps.common.db import DatabaseError, make_engine, redact_url
from apps.common.erasure import ErasureReport
from apps.customer_service.schemas import Feedback, Hit, Intent, KBEntry, Reply
from apps.customer_service.store import (
    ADDED_COLUMNS,
    AlreadyAnswered,
    ClaimConflict,
    StaleWrite,
    Store,
    UnknownConversation,
    UnknownKBEntry,
    conversations,
    feedback,
    turns,
)
from apps.customer_service.store import metadata as store_metadata


@pytest.fixture
def store(db_url):
    s = Store(db_url).create()
    yield s
    s.close()


@pytest.fixture
def second_store(db_url, store):
    """Another Store on the same database: a second browser, or a second process."""
    s = Store(db_url)
    yield s
    s.close()


def _reply() -> Reply:
    entry = KBEntry(id="kb-1", question="How do I activate my card?", answer="Open the app and tap Activate.",
                    category="card", source="faq.csv:1", paraphrases=("activate card",))
    return Reply(action="answer", text=entry.answer, confidence=0.87, intent=Intent(label="activate_card",
                 confidence=0.9, alternatives=[("card_arrival", 0.05)]),
                 hits=[Hit(entry=entry, score=1.5, dense=0.8, sparse=3.2)], cited_ids=["kb-1"],
                 resolved_query="how do i activate my card", latency_ms=12.5)


# ------------------------------------------------------------------------------------------------- make_engine


def test_make_engine_unreachable_postgres_is_one_line_database_error():
    with pytest.raises(DatabaseError) as info:
        make_engine("postgresql://postgres:s3cret@127.0.0.1:1/x")
    msg = str(info.value)
    assert msg.startswith("cannot reach database postgresql://postgres:***@127.0.0.1:1/x: ")
    assert "\n" not in msg and "s3cret" not in msg
    assert len(msg) > len("cannot reach database postgresql://postgres:***@127.0.0.1:1/x: ")


def test_make_engine_unopenable_sqlite_is_database_error(tmp_path):
    (tmp_path / "adir.db").mkdir()  # a folder where the file should be
    with pytest.raises(DatabaseError, match="cannot reach database sqlite:///"):
        make_engine(f"sqlite:///{tmp_path / 'adir.db'}")


@pytest.mark.parametrize("url, reason", [
    ("bogus://x", "Can't load plugin"),  # an unknown dialect
    ("not a url", "Could not parse"),
    ("mysql://u:s3cret@h/db", "No module named"),  # a dialect whose driver is not installed
    ("postgresql://u:s3cret@h:notaport/db", "invalid literal"),
])
def test_make_engine_unusable_url_is_one_line_database_error(url, reason):
    with pytest.raises(DatabaseError) as info:
        make_engine(url)
    msg = str(info.value)
    assert msg.startswith("not a usable database URL ") and reason in msg
    assert "\n" not in msg and "s3cret" not in msg


def test_make_engine_sqlite_path_to_another_kind_of_file_is_database_error(tmp_path):
    (tmp_path / "notes.db").write_bytes(b"not a database " * 400)
    with pytest.raises(DatabaseError, match="cannot reach database sqlite:///.*file is not a database"):
        make_engine(f"sqlite:///{tmp_path / 'notes.db'}")


def test_make_engine_maps_postgresql_to_psycopg(pg_url):
    engine = make_engine(pg_url)
    try:
        assert engine.url.drivername == "postgresql+psycopg"
        assert engine.pool._pre_ping
    finally:
        engine.dispose()


def test_redact_url():
    assert redact_url("postgresql://u:pw@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert redact_url("sqlite:///x.db") == "sqlite:///x.db"
    assert "pw" not in redact_url("not a url://u:pw@h")


def test_sqlite_file_created_with_wal_and_pragmas(tmp_path):
    path = tmp_path / "new" / "folder" / "t.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        assert path.exists()
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
    finally:
        engine.dispose()
    with sqlite3.connect(path) as raw:  # WAL is persistent: a plain connection sees it too
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# ----------------------------------------------------------------------------------------------- conversations


def test_conversation_roundtrip_with_turns_and_reply(store, second_store):
    conv = store.open_conversation(customer="alice")
    assert len(conv.id) == 32 and conv.state == "open" and conv.version == 0
    assert conv.created_at.tzinfo is not None
    t1 = store.add_turn(conv.id, "customer", "how do I activate my card?")
    t2 = store.add_turn(conv.id, "bot", _reply().text, reply=_reply())
    assert t1.id is not None and t2.id > t1.id

    loaded = second_store.get_conversation(conv.id)  # read through another engine: really stored
    assert loaded.customer == "alice"
    assert [(t.role, t.text) for t in loaded.turns] == [("customer", "how do I activate my card?"),
                                                          ("bot", "Open the app and tap Activate.")]
    assert loaded.turns[0].reply is None
    assert loaded.turns[1].reply == _reply()
    assert loaded.turns[1].id == t2.id
    for ts in (loaded.created_at, loaded.updated_at, *(t.created_at for t in loaded.turns)):
        assert ts.tzinfo is not None and ts.utcoffset() == UTC.utcoffset(None)
    assert loaded.updated_at >= loaded.turns[1].created_at >= loaded.created_at


def test_list_conversations_newest_updated_first_and_by_state(store):
    a = store.open_conversation("a")
    b = store.open_conversation("b")
    c = store.open_conversation("c")
    store.add_turn(a.id, "customer", "hello")  # a is now the most recently updated
    listed = store.list_conversations()
    assert [x.id for x in listed] == [a.id, c.id, b.id]
    assert all(x.turns == [] for x in listed)
    store.set_state(b.id, "handoff")
    assert [x.id for x in store.list_conversations(states=["handoff"])] == [b.id]
    assert [x.id for x in store.list_conversations(states="open")] == [a.id, c.id]
    assert len(store.list_conversations(limit=2)) == 2


def test_unknown_conversation(store):
    with pytest.raises(UnknownConversation, match="unknown conversation nope") as info:
        store.get_conversation("nope")
    assert isinstance(info.value, KeyError) and str(info.value) == "unknown conversation nope"
    with pytest.raises(UnknownConversation):
        store.add_turn("nope", "customer", "hi")
    with pytest.raises(UnknownConversation):
        store.claim("nope", "agent-a")
    with pytest.raises(UnknownConversation):
        store.set_state("nope", "closed")


def test_add_turn_rejects_bad_role(store):
    conv = store.open_conversation()
    with pytest.raises(ValueError):
        store.add_turn(conv.id, "robot", "hi")
    assert store.get_conversation(conv.id).turns == []


# ------------------------------------------------------------------------------------------ claims and states


def test_claim_conflict_and_same_agent_reclaim(store):
    conv = store.open_conversation()
    claimed = store.claim(conv.id, "agent-a")
    assert claimed.claimed_by == "agent-a" and claimed.state == "claimed" and claimed.version == 1
    with pytest.raises(ClaimConflict, match="agent-a") as info:
        store.claim(conv.id, "agent-b")
    assert info.value.holder == "agent-a"
    again = store.claim(conv.id, "agent-a")
    assert again.claimed_by == "agent-a" and again.version == 2
    assert store.get_conversation(conv.id).claimed_by == "agent-a"


def test_claim_with_stale_version(store):
    conv = store.open_conversation()
    store.set_state(conv.id, "handoff")
    with pytest.raises(StaleWrite):
        store.claim(conv.id, "agent-a", expected_version=conv.version)
    assert store.claim(conv.id, "agent-a", expected_version=conv.version + 1).claimed_by == "agent-a"


def test_release_and_only_holder_changes_state(store):
    conv = store.open_conversation()
    store.claim(conv.id, "agent-a")
    with pytest.raises(ClaimConflict):
        store.set_state(conv.id, "closed", agent="agent-b")
    with pytest.raises(ClaimConflict):
        store.set_state(conv.id, "closed")  # the bot cannot close an agent's conversation
    with pytest.raises(ClaimConflict):
        store.release(conv.id, "agent-b")
    released = store.release(conv.id, "agent-a")
    assert released.claimed_by is None and released.state == "handoff"
    assert store.release(conv.id, "agent-a").version == released.version  # nothing held: no change
    store.claim(conv.id, "agent-b")
    closed = store.set_state(conv.id, "closed", agent="agent-b")
    assert closed.state == "closed" and closed.claimed_by == "agent-b"
    with pytest.raises(ValueError):
        store.set_state(conv.id, "claimed", agent="agent-b")
    with pytest.raises(ValueError):
        store.set_state(conv.id, "archived", agent="agent-b")


def test_two_browsers_first_write_wins(store, second_store):
    conv = store.open_conversation()
    store.claim(conv.id, "agent-a")
    browser1 = store.get_conversation(conv.id)
    browser2 = second_store.get_conversation(conv.id)
    assert browser1.version == browser2.version == 1

    store.set_state(conv.id, "closed", agent="agent-a", expected_version=browser1.version)
    with pytest.raises(StaleWrite) as info:
        second_store.set_state(conv.id, "handoff", agent="agent-a", expected_version=browser2.version)
    assert str(info.value) == f"conversation {conv.id[:8]} changed since you loaded it (version 1, now 2); reload"
    stored = second_store.get_conversation(conv.id)
    assert stored.state == "closed" and stored.version == 2 and stored.claimed_by == "agent-a"


def test_concurrent_claims_exactly_one_wins(db_url, store):
    conv = store.open_conversation()
    stores = [Store(db_url) for _ in range(8)]  # one engine per thread, like eight agents' processes
    barrier = threading.Barrier(8)
    winners: list[str] = []
    conflicts: list[str] = []
    errors: list[BaseException] = []

    def claim(i: int) -> None:
        barrier.wait()
        try:
            stores[i].claim(conv.id, f"agent-{i}")
            winners.append(f"agent-{i}")
        except ClaimConflict as exc:
            conflicts.append(exc.holder)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        for s in stores:
            s.close()
    assert not errors, errors
    assert len(winners) == 1 and len(conflicts) == 7
    assert set(conflicts) == set(winners)
    final = store.get_conversation(conv.id)
    assert final.claimed_by == winners[0] and final.version == 1


# --------------------------------------------------------------------------------------------------- rollbacks


def test_add_turn_to_conversation_deleted_meanwhile(store, second_store):
    keep = store.open_conversation("keep")
    store.add_turn(keep.id, "customer", "first")
    gone = store.open_conversation("gone")
    store.add_turn(gone.id, "customer", "hello")
    with second_store.engine.begin() as conn:  # another process deletes it
        conn.execute(sa.delete(turns).where(turns.c.conversation_id == gone.id))
        conn.execute(sa.delete(conversations).where(conversations.c.id == gone.id))
    with pytest.raises(UnknownConversation):
        store.add_turn(gone.id, "bot", "too late")
    assert [t.text for t in store.get_conversation(keep.id).turns] == ["first"]
    assert [c.id for c in store.list_conversations()] == [keep.id]


def test_failed_write_rolls_back_whole_transaction(store):
    conv = store.open_conversation()
    store.add_turn(conv.id, "customer", "first")
    before = store.get_conversation(conv.id)

    def fail_turn_insert(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO TURNS"):
            raise RuntimeError("injected failure")

    event.listen(store.engine, "before_cursor_execute", fail_turn_insert)
    try:
        with pytest.raises(RuntimeError, match="injected failure"):
            store.add_turn(conv.id, "bot", "lost")  # its UPDATE of updated_at ran first: must be rolled back
    finally:
        event.remove(store.engine, "before_cursor_execute", fail_turn_insert)
    after = store.get_conversation(conv.id)
    assert after == before
    store.add_turn(conv.id, "bot", "works again")
    assert [t.text for t in store.get_conversation(conv.id).turns] == ["first", "works again"]


def test_constraint_violation_in_batch_keeps_earlier_rows(store):
    store.upsert_kb_entries([KBEntry(id="kept", question="q", answer="a")], origin="file")
    bad = KBEntry.model_construct(id="bad", question=None, answer="x", category="", source="", paraphrases=())
    with pytest.raises(sa.exc.IntegrityError):  # NOT NULL question: the whole batch is rolled back
        store.upsert_kb_entries([KBEntry(id="new", question="q2", answer="a2"), bad], origin="file")
    assert [e.id for e in store.kb_entries()] == ["kept"]


# ------------------------------------------------------------------------------------------------ feedback, KB


def test_feedback_recorded_pairs_and_stats(store):
    conv = store.open_conversation()
    turn = store.add_turn(conv.id, "bot", "answer", reply=_reply())
    ids = [
        store.record_feedback(Feedback(conversation_id=conv.id, turn_id=turn.id, agent="a", verdict="accepted",
                                       query="activate card", suggested_entry_id="kb-1", final_text="answer")),
        store.record_feedback(Feedback(conversation_id=conv.id, turn_id=turn.id, agent="a", verdict="edited",
                                       query="card not working", suggested_entry_id="kb-1",
                                       new_entry_id="fb-7", final_text="edited answer")),
        store.record_feedback(Feedback(conversation_id=conv.id, turn_id=turn.id, agent="b", verdict="edited",
                                       query="lost card", suggested_entry_id="kb-2")),
        store.record_feedback(Feedback(conversation_id=conv.id, turn_id=turn.id, agent="b", verdict="rejected",
                                       query="weather today", suggested_entry_id="kb-9")),
        store.record_feedback(Feedback(conversation_id=conv.id, turn_id=turn.id, agent="b", verdict="accepted",
                                       query="no entry")),
    ]
    assert len(set(ids)) == 5
    assert store.feedback_pairs() == [("activate card", "kb-1"), ("card not working", "fb-7"),
                                      ("lost card", "kb-2")]
    assert store.feedback_pairs(verdicts=("rejected",)) == [("weather today", "kb-9")]
    assert store.feedback_stats() == {"accepted": 2, "edited": 2, "rejected": 1}
    with pytest.raises(UnknownConversation):
        store.record_feedback(Feedback(conversation_id="nope", turn_id=1, agent="a", verdict="accepted", query="q"))
    assert store.feedback_stats() == {"accepted": 2, "edited": 2, "rejected": 1}


def test_feedback_stats_empty(store):
    assert store.feedback_stats() == {"accepted": 0, "edited": 0, "rejected": 0}
    assert store.feedback_pairs() == []


def test_kb_upsert_and_update(store):
    e1 = KBEntry(id="e1", question="q1", answer="a1", category="card", source="faq.csv:1", paraphrases=("p1", "p2"))
    e2 = KBEntry(id="e2", question="q2", answer="a2")
    assert store.upsert_kb_entries([e1, e2], origin="file") == 2
    assert store.kb_entries() == [e1, e2]

    e1b = e1.model_copy(update={"answer": "a1 (edited)", "source": "feedback"})
    assert store.upsert_kb_entries([e1b]) == 1  # origin defaults to feedback
    assert {e.id: e for e in store.kb_entries()}["e1"] == e1b
    assert store.kb_entries(origin="feedback") == [e1b]
    assert store.kb_entries(origin="file") == [e2]
    with pytest.raises(ValueError):
        store.upsert_kb_entries([e2], origin="elsewhere")


def test_create_is_idempotent_and_data_survives_reopen(db_url, store):
    conv = store.open_conversation("persist")
    store.add_turn(conv.id, "customer", "still here?")
    with Store(db_url) as again:
        again.create()
        assert [t.text for t in again.get_conversation(conv.id).turns] == ["still here?"]


# ---------------------------------------------------------------------------------------- answers, guarded writes


def _ask(store: Store, text: str = "How do I activate my card?"):
    conv = store.open_conversation()
    return conv, store.add_turn(conv.id, "customer", text, reply=_reply())


def _fb(conv, turn, agent: str, verdict: str, text: str = "") -> Feedback:
    return Feedback(conversation_id=conv.id, turn_id=turn.id, agent=agent, verdict=verdict, query=turn.text,
                    suggested_entry_id="kb-1", final_text=text, new_entry_id=f"fb-{turn.id}" if verdict == "edited"
                    else None)


def _feedback_rows(store: Store) -> list[tuple]:
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(feedback.c.turn_id, feedback.c.agent, feedback.c.verdict)
                                               .order_by(feedback.c.id))]


def test_an_answer_is_sent_once_and_a_second_is_refused(store, second_store):
    conv, turn = _ask(store)
    sent = store.answer(_fb(conv, turn, "agent-a", "accepted", "Open the app."), expected_version=0)
    assert (sent.role, sent.text) == ("agent", "Open the app.")
    stored = store.get_conversation(conv.id)
    assert [(t.role, t.verdict, t.verdict_by) for t in stored.turns] == [("customer", "accepted", "agent-a"),
                                                                         ("agent", None, None)]
    assert stored.version == 1  # an answer is a change the next write must have seen
    for verdict in ("accepted", "edited", "rejected"):  # a second browser that loaded the message unanswered
        with pytest.raises(AlreadyAnswered) as info:
            second_store.answer(_fb(conv, turn, "agent-b", verdict, "Mine."), expected_version=0)
        assert str(info.value) == (f"message {turn.id} of conversation {conv.id[:8]} was already answered by "
                                   "agent-a (accepted); reload")
    assert len(store.get_conversation(conv.id).turns) == 2 and _feedback_rows(store) == [
        (turn.id, "agent-a", "accepted")]


def test_a_rejected_suggestion_can_still_be_answered_with_an_edit_only(store):
    conv, turn = _ask(store)
    assert store.answer(_fb(conv, turn, "agent-a", "rejected"), expected_version=0) is None
    with pytest.raises(AlreadyAnswered, match="agent-a already rejected the suggestion for message"):
        store.answer(_fb(conv, turn, "agent-a", "accepted", "x"), expected_version=1)
    with pytest.raises(AlreadyAnswered, match="already rejected"):
        store.answer(_fb(conv, turn, "agent-b", "rejected"), expected_version=1)
    with pytest.raises(StaleWrite, match="version 0, now 1"):  # based on the page from before the rejection
        store.answer(_fb(conv, turn, "agent-a", "edited", "Tap Activate."), expected_version=0)
    entry = KBEntry(id=f"fb-{turn.id}", question=turn.text, answer="Tap Activate.", source="feedback:agent-a")
    store.answer(_fb(conv, turn, "agent-a", "edited", "Tap Activate."), expected_version=1, entry=entry)
    assert [t.text for t in store.get_conversation(conv.id).turns] == [turn.text, "Tap Activate."]
    assert _feedback_rows(store) == [(turn.id, "agent-a", "rejected"), (turn.id, "agent-a", "edited")]
    assert store.kb_entries() == [entry]
    assert [(h.version, h.action, h.agent) for h in store.kb_history(entry.id)] == [(1, "created", "agent-a")]


def test_an_answer_based_on_a_page_from_before_a_claim_is_refused(store, second_store):
    conv, turn = _ask(store)
    seen = second_store.get_conversation(conv.id)  # agent-b's page: nobody holds it
    store.claim(conv.id, "agent-a", expected_version=0)
    with pytest.raises(ClaimConflict, match="claimed by agent-a"):
        second_store.answer(_fb(conv, turn, "agent-b", "accepted", "x"), expected_version=seen.version)
    store.release(conv.id, "agent-a", expected_version=1)
    with pytest.raises(StaleWrite, match=f"conversation {conv.id[:8]} changed since you loaded it"):
        second_store.answer(_fb(conv, turn, "agent-b", "accepted", "x"), expected_version=seen.version)
    stored = store.get_conversation(conv.id)
    assert [t.role for t in stored.turns] == ["customer"] and stored.turns[0].verdict is None
    assert _feedback_rows(store) == []
    second_store.answer(_fb(conv, turn, "agent-b", "accepted", "x"), expected_version=stored.version)
    assert [t.role for t in store.get_conversation(conv.id).turns] == ["customer", "agent"]


def test_an_answer_to_what_is_not_a_customer_message_is_refused(store):
    conv, turn = _ask(store)
    bot = store.add_turn(conv.id, "bot", "hello")
    other, _ = _ask(store)
    for turn_id in (bot.id, 10_000):
        with pytest.raises(ValueError, match="is not a customer message"):
            store.answer(_fb(conv, turn, "a", "accepted", "x").model_copy(update={"turn_id": turn_id}))
    with pytest.raises(ValueError, match="is not a customer message"):  # a message of another conversation
        store.answer(_fb(other, turn, "a", "accepted", "x"))
    with pytest.raises(UnknownConversation):
        store.answer(_fb(conv, turn, "a", "accepted", "x").model_copy(update={"conversation_id": "nope"}))
    assert store.get_conversation(conv.id).version == 0 and _feedback_rows(store) == []


def test_a_failed_answer_writes_nothing(store):
    conv, turn = _ask(store)
    kb = store.kb_version()

    def fail_agent_turn(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO TURNS"):
            raise RuntimeError("injected failure")

    entry = KBEntry(id=f"fb-{turn.id}", question=turn.text, answer="Tap Activate.")
    event.listen(store.engine, "before_cursor_execute", fail_agent_turn)
    try:
        with pytest.raises(RuntimeError, match="injected failure"):  # the reply's insert comes last
            store.answer(_fb(conv, turn, "a", "edited", "Tap Activate."), expected_version=0, entry=entry)
    finally:
        event.remove(store.engine, "before_cursor_execute", fail_agent_turn)
    stored = store.get_conversation(conv.id)
    assert stored.version == 0 and stored.turns[0].verdict is None and len(stored.turns) == 1
    assert _feedback_rows(store) == [] and store.kb_entries() == [] and store.kb_history(entry.id) == []
    assert store.kb_version() == kb
    store.answer(_fb(conv, turn, "a", "edited", "Tap Activate."), expected_version=0, entry=entry)
    assert store.kb_entries() == [entry]


def test_release_and_close_name_the_version_they_saw(store):
    conv = store.open_conversation()
    store.claim(conv.id, "agent-a", expected_version=0)
    with pytest.raises(StaleWrite, match="version 0, now 1"):
        store.release(conv.id, "agent-a", expected_version=0)
    with pytest.raises(StaleWrite, match="version 0, now 1"):
        store.set_state(conv.id, "closed", agent="agent-a", expected_version=0)
    assert store.get_conversation(conv.id).claimed_by == "agent-a"
    assert store.release(conv.id, "agent-a", expected_version=1).claimed_by is None
    assert store.release(conv.id, "agent-a", expected_version=0).version == 2  # nothing held: nothing to refuse


# ---------------------------------------------------------------------------------------------- KB versions


def test_kb_entries_carry_versions_and_keep_their_history(store, second_store):
    e = KBEntry(id="fb-1", question="How do I block my card?", answer="Call us.", source="feedback:ada")
    store.upsert_kb_entries([e])
    first = store.kb_entry("fb-1")
    assert (first.entry, first.version, first.origin) == (e, 1, "feedback")
    kb = store.kb_version()
    saved = store.edit_kb_entry("fb-1", e.question, "Block it in the app.", "root", expected_version=1)
    assert (saved.entry.answer, saved.version) == ("Block it in the app.", 2) and store.kb_version() == kb + 1
    with pytest.raises(StaleWrite) as info:  # a second browser still showing version 1
        second_store.edit_kb_entry("fb-1", e.question, "Visit a branch.", "bob", expected_version=1)
    assert str(info.value) == "KB entry fb-1 changed since you loaded it (version 1, now 2); reload"
    assert store.kb_entry("fb-1").entry.answer == "Block it in the app." and store.kb_version() == kb + 1
    store.upsert_kb_entries([e.model_copy(update={"answer": "Call us 24/7."})], agent="ada")  # an agent's new save
    assert [(h.version, h.action, h.agent, h.answer, h.previous_answer) for h in store.kb_history("fb-1")] == [
        (3, "replaced", "ada", "Call us 24/7.", "Block it in the app."),
        (2, "edited", "root", "Block it in the app.", "Call us."),
        (1, "created", "feedback:ada", "Call us.", None)]
    assert [r.entry.id for r in store.kb_records()] == ["fb-1"] and store.kb_entry("fb-1").version == 3
    with pytest.raises(UnknownKBEntry, match="KB entry nope is not stored"):
        store.edit_kb_entry("nope", "q", "a", "root", expected_version=1)
    with pytest.raises(UnknownKBEntry):
        store.kb_entry("nope")
    assert store.kb_history("nope") == []


# ------------------------------------------------------------------------------------- a database made before


def _previous_schema(engine: sa.Engine) -> None:
    """The tables as the version before answers and KB entries had versions made them: without the added columns
    and without ``kb_history``."""
    old = sa.MetaData()
    for table in store_metadata.sorted_tables:
        if table.name != "kb_history":
            sa.Table(table.name, old, *[c._copy() for c in table.columns
                                        if c.name not in ADDED_COLUMNS.get(table.name, ())])
    old.create_all(engine)


def test_a_database_made_before_versions_opens_and_keeps_its_answers(db_url):
    engine = make_engine(db_url)
    _previous_schema(engine)
    now = sa.func.now() if engine.dialect.name == "postgresql" else sa.text("CURRENT_TIMESTAMP")
    with engine.begin() as conn:  # rows written by the earlier version
        conn.execute(conversations.insert().values(id="c0ffee00", customer="", state="open", version=0,
                                                   created_at=now, updated_at=now))
        old_turns = sa.table("turns", *map(sa.column, ("id", "conversation_id", "role", "text", "created_at")))
        ids = [conn.execute(sa.insert(old_turns).values(conversation_id="c0ffee00", role=role, text=text,
                                                        created_at=now).returning(old_turns.c.id)).scalar_one()
               for role, text in [("customer", "answered"), ("agent", "the answer"), ("customer", "open"),
                                  ("customer", "rejected")]]
        for turn_id, verdict in ((ids[0], "rejected"), (ids[0], "edited"), (ids[3], "rejected")):
            conn.execute(feedback.insert().values(conversation_id="c0ffee00", turn_id=turn_id, agent="old-agent",
                                                  verdict=verdict, query="q", final_text="", created_at=now))
        conn.execute(sa.insert(sa.table("kb_entries", *map(sa.column, ("id", "question", "answer", "category",
                                                                      "source", "paraphrases_json", "origin",
                                                                      "created_at", "updated_at", "deleted"))))
                     .values(id="fb-old", question="q", answer="a", category="", source="", paraphrases_json="[]",
                             origin="feedback", created_at=now, updated_at=now, deleted=False))
    engine.dispose()

    with Store(db_url) as before:  # a dry run (`trident privacy forget --dry-run`) creates nothing, and still works
        dry = before.erase(conversations.c.id == "c0ffee00", ErasureReport("forget-customer", dry_run=True))
        assert (dry.counts["turns"], dry.counts["feedback"], dry.counts["kb_history"]) == (4, 3, 0)
        assert not before.has_table("kb_history")
    store = Store(db_url).create()
    store.create()  # again: nothing to add
    with store.engine.connect() as conn:
        for name, columns in ADDED_COLUMNS.items():
            have = [c["name"] for c in sa.inspect(conn).get_columns(name)]
            assert all(have.count(c) == 1 for c in columns), (name, have)
    conv = store.get_conversation("c0ffee00")
    assert [(t.text, t.verdict, t.verdict_by) for t in conv.turns] == [
        ("answered", "edited", "old-agent"), ("the answer", None, None), ("open", None, None),
        ("rejected", "rejected", "old-agent")]
    with pytest.raises(AlreadyAnswered, match="already answered by old-agent"):  # answered before the upgrade
        store.answer(Feedback(conversation_id="c0ffee00", turn_id=ids[0], agent="a", verdict="accepted", query="q",
                              final_text="again"), expected_version=0)
    store.answer(Feedback(conversation_id="c0ffee00", turn_id=ids[2], agent="a", verdict="accepted", query="q",
                          final_text="now"), expected_version=0)
    old = store.kb_entry("fb-old")
    assert old.version == 1 and store.kb_history("fb-old") == []
    store.edit_kb_entry("fb-old", "q", "a, better", "root", expected_version=1)
    assert [(h.version, h.previous_answer) for h in store.kb_history("fb-old")] == [(2, "a")]
    store.close()
