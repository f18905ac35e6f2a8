"""Agents racing each other on SQLite and PostgreSQL: each agent is a thread with its own Store (its own engine and
connections, as a second console process has), all released together by a barrier, and every race is run
``ROUNDS`` times. Whatever the interleaving, exactly one write wins, the customer never gets two replies, no answer
lands in a conversation another agent holds, and no KB edit is lost without its author being told."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from functools import partial

import pytest
import sqlalchemy as sa

from apps.customer_service.schemas import Feedback, KBEntry
from apps.customer_service.store import (
    AlreadyAnswered,
    ClaimConflict,
    StaleWrite,
    Store,
    feedback,
    kb_history,
)

ROUNDS = 20


@pytest.fixture
def stores(db_url):
    """The database's tables, then one Store per agent (three) on it."""
    Store(db_url).create().close()
    opened = [Store(db_url) for _ in range(3)]
    yield opened
    for s in opened:
        s.close()


def race(*actions: Callable[[], object], turn: int = 0) -> list[object]:
    """Run ``actions`` at once, one thread each, released together; return what each returned, or the exception it
    raised. The threads start in an order rotated by ``turn``, so that over the rounds each racer starts first."""
    barrier = threading.Barrier(len(actions))
    out: list[object] = [None] * len(actions)

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = actions[i]()
        except BaseException as exc:  # judged by the test
            out[i] = exc

    order = [(i + turn) % len(actions) for i in range(len(actions))]
    threads = [threading.Thread(target=run, args=(i,)) for i in order]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a racer hangs"
    return out


def _answer(store: Store, cid: str, turn_id: int, agent: str, verdict: str, version: int) -> Callable[[], object]:
    text = f"{agent}'s answer" if verdict != "rejected" else ""
    entry = (KBEntry(id=f"fb-{cid[:8]}-{turn_id}", question="where is my card?", answer=text,
                     source=f"feedback:{agent}") if verdict == "edited" else None)
    fb = Feedback(conversation_id=cid, turn_id=turn_id, agent=agent, verdict=verdict, query="where is my card?",
                  final_text=text, new_entry_id=entry.id if entry else None)
    return partial(store.answer, fb, expected_version=version, entry=entry)


def _feedback_rows(store: Store, turn_id: int) -> list[tuple[str, str]]:
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(feedback.c.agent, feedback.c.verdict)
                                               .where(feedback.c.turn_id == turn_id))]


@pytest.mark.parametrize("verdicts", [("accepted", "accepted"), ("accepted", "edited"), ("edited", "edited"),
                                      ("rejected", "edited")])
def test_two_agents_answering_one_message_exactly_one_wins(stores, verdicts):
    a, b, reader = stores
    wins = Counter()
    for i in range(ROUNDS):
        conv = reader.open_conversation(f"cust-{i}")
        turn = reader.add_turn(conv.id, "customer", "where is my card?")
        out = race(_answer(a, conv.id, turn.id, "alice", verdicts[0], conv.version),
                   _answer(b, conv.id, turn.id, "bob", verdicts[1], conv.version), turn=i)
        won = [j for j, r in enumerate(out) if not isinstance(r, BaseException)]
        assert len(won) == 1, out
        (w,), loser = won, out[1 - won[0]]
        agent, verdict = ("alice", "bob")[w], verdicts[w]
        # the loser is told why in one line: the message was answered (or rejected) already, or, when the winner
        # rejected it, the conversation changed since the edit was based on it
        assert isinstance(loser, AlreadyAnswered | StaleWrite), loser
        if isinstance(loser, AlreadyAnswered):
            assert loser.agent == agent and f"already {'rejected' if verdict == 'rejected' else 'answered'}" in \
                str(loser) and "\n" not in str(loser)
        wins[agent] += 1

        stored = reader.get_conversation(conv.id)
        sent = [t for t in stored.turns if t.role == "agent"]
        assert len(sent) == (verdict != "rejected")  # one reply at most, never two
        assert all(t.text == f"{agent}'s answer" for t in sent)
        assert (stored.turns[0].verdict, stored.turns[0].verdict_by) == (verdict, agent)
        assert _feedback_rows(reader, turn.id) == [(agent, verdict)]
        assert stored.version == conv.version + 1
        entry = f"fb-{conv.id[:8]}-{turn.id}"
        saved = [r for r in reader.kb_records() if r.entry.id == entry]
        if verdict == "edited":
            assert [(r.entry.answer, r.version) for r in saved] == [(f"{agent}'s answer", 1)]
            assert [(h.version, h.agent) for h in reader.kb_history(entry)] == [(1, agent)]
        else:
            assert saved == [] and reader.kb_history(entry) == []
    assert sum(wins.values()) == ROUNDS


def test_an_answer_racing_a_claim_never_lands_in_the_claimers_conversation(stores):
    a, b, reader = stores
    outcomes = Counter()
    for i in range(ROUNDS):
        conv = reader.open_conversation(f"cust-{i}")
        turn = reader.add_turn(conv.id, "customer", "where is my card?")
        versioned = i % 2 == 0  # the console's claim names the version; a claim without one is checked too
        claim_version = conv.version if versioned else None
        claimed, answered = race(partial(a.claim, conv.id, "alice", expected_version=claim_version),
                                 _answer(b, conv.id, turn.id, "bob", "accepted", conv.version), turn=i // 2)
        stored = reader.get_conversation(conv.id)
        sent = [t for t in stored.turns if t.role == "agent"]
        if isinstance(answered, BaseException):
            # alice's claim came first: bob is told who holds it, nothing was sent or recorded
            assert isinstance(answered, ClaimConflict) and answered.holder == "alice", answered
            assert not isinstance(claimed, BaseException)
            assert sent == [] and _feedback_rows(reader, turn.id) == [] and stored.turns[0].verdict is None
            assert stored.claimed_by == "alice"
            outcomes["claim first"] += 1
        else:
            # bob answered a conversation nobody held; alice's claim, if it went through, came after the answer
            assert len(sent) == 1 and _feedback_rows(reader, turn.id) == [("bob", "accepted")]
            if isinstance(claimed, BaseException):
                assert versioned and isinstance(claimed, StaleWrite), claimed  # she had not seen the answer
                assert stored.claimed_by is None
                outcomes["answer first, claim refused"] += 1
            else:
                assert not versioned and stored.claimed_by == "alice"
                assert [t.role for t in claimed.turns] == ["customer", "agent"]  # her claim saw the answer
                outcomes["answer first, then claim"] += 1
    assert sum(outcomes.values()) == ROUNDS


def test_two_admins_editing_one_kb_entry_one_wins_and_history_keeps_both(stores):
    a, b, reader = stores
    wins = Counter()
    for i in range(ROUNDS):
        entry = KBEntry(id=f"fb-race-{i}", question="How do I block my card?", answer="Call us.")
        reader.upsert_kb_entries([entry], agent="ada")
        loaded = reader.kb_entry(entry.id)
        assert loaded.version == 1
        out = race(partial(a.edit_kb_entry, entry.id, entry.question, "Block it in the app.", "alice", loaded.version),
                   partial(b.edit_kb_entry, entry.id, entry.question, "Tap Cards > Block.", "bob", loaded.version),
                   turn=i)
        won = [j for j, r in enumerate(out) if not isinstance(r, BaseException)]
        assert len(won) == 1, out
        w = won[0]
        agent, text = (("alice", "Block it in the app."), ("bob", "Tap Cards > Block."))[w]
        loser = out[1 - w]
        assert isinstance(loser, StaleWrite)
        assert str(loser) == f"KB entry {entry.id} changed since you loaded it (version 1, now 2); reload"
        wins[agent] += 1
        now = reader.kb_entry(entry.id)
        assert (now.entry.answer, now.version) == (text, 2)
        history = reader.kb_history(entry.id)
        assert [(h.version, h.action, h.agent, h.answer, h.previous_answer) for h in history] == [
            (2, "edited", agent, text, "Call us."), (1, "created", "ada", "Call us.", None)]
    assert sum(wins.values()) == ROUNDS


def test_admins_who_reload_and_retry_lose_no_edit(stores):
    """Three admins each save their own text to one entry at once, reloading on every refusal until it is saved:
    every edit lands as a version of its own, in the history, and the versions have no gap."""
    entry = KBEntry(id="fb-retry", question="How do I block my card?", answer="Call us.")
    stores[0].upsert_kb_entries([entry], agent="ada")
    refusals = Counter()

    def admin(store: Store, name: str) -> Callable[[], int]:
        def run() -> int:
            for n in range(ROUNDS):
                text = f"{name}'s text {n}"
                while True:
                    loaded = store.kb_entry(entry.id)
                    try:
                        store.edit_kb_entry(entry.id, entry.question, text, name, loaded.version)
                        break
                    except StaleWrite:
                        refusals[name] += 1
            return ROUNDS
        return run

    out = race(*(admin(s, name) for s, name in zip(stores, ("alice", "bob", "carol"), strict=True)))
    assert out == [ROUNDS] * 3
    history = stores[0].kb_history(entry.id)
    assert [h.version for h in history] == list(range(3 * ROUNDS + 1, 0, -1))
    assert sorted(h.answer for h in history if h.action == "edited") == sorted(
        f"{name}'s text {n}" for name in ("alice", "bob", "carol") for n in range(ROUNDS))
    # each version replaced the one before it: nothing was overwritten unseen
    ordered = history[::-1]
    assert all(later.previous_answer == earlier.answer for earlier, later in zip(ordered, ordered[1:]))
    assert stores[0].kb_entry(entry.id).version == 3 * ROUNDS + 1
    with stores[0].engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(kb_history)).scalar_one() == 3 * ROUNDS + 1
