"""Persistent state of the customer-service app: conversations, turns, agent feedback and KB entries.

One ``Store`` works on SQLite and PostgreSQL through SQLAlchemy Core; every write is one transaction. Concurrency
between agents is settled in the database: ``claim`` is one conditional ``UPDATE`` (of many agents claiming at once
exactly one wins, the others get ``ClaimConflict``), and ``set_state`` with ``expected_version`` writes only when the
version is still the one the caller loaded (else ``StaleWrite``). ``version`` counts changes of state and claim; new
turns do not bump it. ``kb_version`` counts the changes of the KB entries, so that a running service sees another
process's. ``erase`` removes conversations and what was made from them (forgetting a customer, the retention period).
Timestamps are timezone-aware UTC.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, get_args

import sqlalchemy as sa

from apps.common.db import BaseStore, UnknownRow, UTCDateTime, upsert_insert, utcnow
from apps.common.erasure import REMOVED, ErasureReport, purge_deleted
from apps.customer_service.schemas import (
    Conversation,
    ConversationState,
    Feedback,
    KBEntry,
    Reply,
    Turn,
    Verdict,
)

STATES: tuple[str, ...] = get_args(ConversationState)
VERDICTS: tuple[str, ...] = get_args(Verdict)
ORIGINS = ("file", "feedback")
CHUNK = 500  # ids per IN (...) list
STALE_MESSAGE = "conversation changed since you loaded it; reload"


class UnknownConversation(UnknownRow):
    """No conversation has this id."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__(f"unknown conversation {conversation_id}")


class ClaimConflict(RuntimeError):
    """Another agent holds the conversation."""

    def __init__(self, conversation_id: str, holder: str) -> None:
        super().__init__(f"conversation {conversation_id} is claimed by {holder}")
        self.conversation_id = conversation_id
        self.holder = holder


class StaleWrite(RuntimeError):
    """The conversation changed since the caller loaded it; nothing was written."""

    def __init__(self, message: str = STALE_MESSAGE) -> None:
        super().__init__(message)


# INTEGER PRIMARY KEY is SQLite's rowid (autoincrementing); BIGSERIAL on PostgreSQL.
_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData()

conversations = sa.Table(
    "conversations",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("customer", sa.Text, nullable=False, default=""),
    sa.Column("state", sa.String(16), nullable=False, default="open"),
    sa.Column("claimed_by", sa.Text, nullable=True),
    sa.Column("version", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_conversations_updated_at", "updated_at"),
)

turns = sa.Table(
    "turns",
    metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.Text, sa.ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("reply_json", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_turns_conversation_id", "conversation_id", "id"),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.Text, sa.ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
    sa.Column("turn_id", sa.BigInteger, nullable=False),
    sa.Column("agent", sa.Text, nullable=False),
    sa.Column("verdict", sa.String(16), nullable=False),
    sa.Column("query", sa.Text, nullable=False),
    sa.Column("suggested_entry_id", sa.Text, nullable=True),
    sa.Column("new_entry_id", sa.Text, nullable=True),
    sa.Column("final_text", sa.Text, nullable=False, default=""),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_feedback_verdict", "verdict"),
)

kb_entries = sa.Table(
    "kb_entries",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("answer", sa.Text, nullable=False),
    sa.Column("category", sa.Text, nullable=False, default=""),
    sa.Column("source", sa.Text, nullable=False, default=""),
    sa.Column("paraphrases_json", sa.Text, nullable=False, default="[]"),
    sa.Column("origin", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),  # soft-deleted rows are not listed
    sa.Index("ix_kb_entries_origin", "origin"),
)

# One row (id 1): a counter bumped by every change of the KB entries, so that a running service sees that another
# process (another console, a forget request, the retention run) changed them and catches up (CSService.refresh).
kb_state = sa.Table(
    "kb_state",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.BigInteger, nullable=False),
)


def _conversation(row: sa.RowMapping, turns_: list[Turn] | None = None) -> Conversation:
    return Conversation(**row, turns=turns_ or [])


def _turn(row: sa.RowMapping) -> Turn:
    reply = Reply.model_validate_json(row["reply_json"]) if row["reply_json"] else None
    return Turn(id=row["id"], role=row["role"], text=row["text"], created_at=row["created_at"], reply=reply)


def _kb_entry(row: sa.RowMapping) -> KBEntry:
    return KBEntry(
        id=row["id"], question=row["question"], answer=row["answer"], category=row["category"],
        source=row["source"], paraphrases=tuple(json.loads(row["paraphrases_json"] or "[]")),
    )


class Store(BaseStore):
    """Conversations, turns, feedback and KB entries in one SQL database."""

    metadata = metadata

    # ----------------------------------------------------------------------------------------- conversations

    def open_conversation(self, customer: str = "") -> Conversation:
        """Start a conversation (a new uuid4 hex id) in state ``open``, version 0, for ``customer`` (free text)."""
        now = utcnow()
        row = {"id": uuid.uuid4().hex, "customer": customer, "state": "open", "claimed_by": None, "version": 0,
               "created_at": now, "updated_at": now}
        with self._write() as conn:
            conn.execute(conversations.insert().values(**row))
        return Conversation(**row)

    def _load(self, conn: sa.Connection, cid: str) -> Conversation:
        row = conn.execute(sa.select(conversations).where(conversations.c.id == cid)).mappings().first()
        if row is None:
            raise UnknownConversation(cid)
        q = sa.select(turns).where(turns.c.conversation_id == cid).order_by(turns.c.id)
        return _conversation(row, [_turn(r) for r in conn.execute(q).mappings()])

    def get_conversation(self, conversation_id: str) -> Conversation:
        """A conversation with its turns, oldest first; ``UnknownConversation`` if there is none with this id."""
        with self._read() as conn:
            return self._load(conn, conversation_id)

    def list_conversations(self, states: Iterable[str] | str | None = None, limit: int = 100) -> list[Conversation]:
        """At most ``limit`` conversations (in ``states``: one or several; all when None), most recently updated
        first, without their turns."""
        c = conversations.c
        q = sa.select(conversations).order_by(c.updated_at.desc(), c.id.desc()).limit(int(limit))
        if states is not None:
            q = q.where(c.state.in_([states] if isinstance(states, str) else list(states)))
        with self._read() as conn:
            return [_conversation(r) for r in conn.execute(q).mappings()]

    def add_turn(self, conversation_id: str, role: str, text: str, reply: Reply | None = None) -> Turn:
        """Append a message (by ``customer``, ``bot`` or ``agent``; the bot's full ``reply`` is kept with it) to a
        conversation and touch its ``updated_at``; return the stored turn, with its id.

        Raises:
            UnknownConversation: No conversation has this id (e.g. it was deleted meanwhile).
            pydantic.ValidationError: ``role`` is not one of the three.
        """
        now = utcnow()
        turn = Turn(role=role, text=text, reply=reply, created_at=now)  # validates role before touching the db
        with self._write() as conn:
            touched = conn.execute(
                sa.update(conversations).where(conversations.c.id == conversation_id).values(updated_at=now))
            if touched.rowcount == 0:
                raise UnknownConversation(conversation_id)
            res = conn.execute(turns.insert().values(
                conversation_id=conversation_id, role=turn.role, text=turn.text, created_at=now,
                reply_json=reply.model_dump_json() if reply is not None else None))
            turn_id = int(res.inserted_primary_key[0])
        return turn.model_copy(update={"id": turn_id})

    def _change(self, cid: str, agent: str | None, expected_version: int | None, holder_only: bool = False,
                **values: Any) -> Conversation:
        """Update conversation ``cid`` held by ``agent`` (or, unless ``holder_only``, by nobody) at ``expected_version``
        (None: any), bumping its version; return it with its turns. Raise why nothing matched (unless nobody holds
        it and ``holder_only``)."""
        c = conversations.c
        held = c.claimed_by == agent  # IS NULL when agent is None
        cond = [c.id == cid, held if holder_only else sa.or_(c.claimed_by.is_(None), held)]
        cond += [c.version == expected_version] if expected_version is not None else []
        with self._write() as conn:
            res = conn.execute(sa.update(conversations).where(*cond).values(
                version=c.version + 1, updated_at=utcnow(), **values))
            if res.rowcount == 0:
                row = conn.execute(sa.select(c.claimed_by).where(c.id == cid)).first()
                if row is None:
                    raise UnknownConversation(cid)
                if row.claimed_by is not None and row.claimed_by != agent:
                    raise ClaimConflict(cid, row.claimed_by)
                if not holder_only:
                    raise StaleWrite()
            return self._load(conn, cid)

    def claim(self, conversation_id: str, agent: str, expected_version: int | None = None) -> Conversation:
        """Take a conversation for ``agent`` (non-empty), atomically; return it with its turns.

        Succeeds when nobody holds it or ``agent`` already does; an ``open`` or ``handoff`` conversation becomes
        ``claimed``. ``expected_version``: the version the agent loaded (None skips the check).

        Raises:
            UnknownConversation: No conversation has this id.
            ClaimConflict: Another agent holds it (the message names the holder).
            StaleWrite: ``expected_version`` is not the stored version.
        """
        if not agent:
            raise ValueError("agent must be a non-empty name")
        c = conversations.c
        return self._change(conversation_id, agent, expected_version, claimed_by=agent,
                            state=sa.case((c.state.in_(("open", "handoff")), "claimed"), else_=c.state))

    def release(self, conversation_id: str, agent: str) -> Conversation:
        """Give a claimed conversation back: ``claimed`` becomes ``handoff`` (it waits for the next agent); return
        it with its turns. Releasing a conversation nobody holds changes nothing.

        Raises:
            UnknownConversation: No conversation has this id.
            ClaimConflict: Another agent holds it.
        """
        c = conversations.c
        return self._change(conversation_id, agent, None, holder_only=True, claimed_by=None,
                            state=sa.case((c.state == "claimed", "handoff"), else_=c.state))

    def set_state(self, conversation_id: str, state: str, agent: str | None = None,
                  expected_version: int | None = None) -> Conversation:
        """Move a conversation to ``open``, ``handoff`` or ``closed``; return it with its turns.

        Only the agent holding the conversation may change it (anyone, ``agent=None`` for the bot or the system
        included, when nobody holds it). ``open`` and ``handoff`` also clear the claim; ``closed`` keeps it as a
        record of who closed it. ``expected_version``: the version the caller loaded (None skips the check).

        Raises:
            ValueError: ``state`` is unknown or ``claimed`` (use ``claim``).
            UnknownConversation: No conversation has this id.
            ClaimConflict: Another agent holds it.
            StaleWrite: It changed since ``expected_version`` ("conversation changed since you loaded it; reload").
        """
        if state not in STATES or state == "claimed":
            raise ValueError(f"cannot set state {state!r}; use one of open, handoff, closed (claim() to claim)")
        values: dict[str, Any] = {"claimed_by": None} if state in ("open", "handoff") else {}
        return self._change(conversation_id, agent, expected_version, state=state, **values)

    # ------------------------------------------------------------------------------------------------ feedback

    def record_feedback(self, fb: Feedback) -> int:
        """Store an agent's verdict on a suggestion; return the feedback row's id.

        Raises:
            UnknownConversation: ``fb.conversation_id`` does not exist.
        """
        with self._write() as conn:
            known = sa.select(conversations.c.id).where(conversations.c.id == fb.conversation_id)
            if conn.execute(known).first() is None:
                raise UnknownConversation(fb.conversation_id)
            res = conn.execute(feedback.insert().values(
                conversation_id=fb.conversation_id, turn_id=fb.turn_id, agent=fb.agent, verdict=fb.verdict,
                query=fb.query, suggested_entry_id=fb.suggested_entry_id, new_entry_id=fb.new_entry_id,
                final_text=fb.final_text, created_at=fb.created_at or utcnow()))
            return int(res.inserted_primary_key[0])

    def feedback_pairs(self, verdicts: Iterable[str] = ("accepted", "edited")) -> list[tuple[str, str]]:
        """(query, KB entry id) pairs of feedback with ``verdicts``, for retrieval training, oldest first.

        The entry is the one saved from the agent's edit when there is one, else the suggested entry; feedback
        with neither is skipped.
        """
        f = feedback.c
        entry = sa.func.coalesce(f.new_entry_id, f.suggested_entry_id)
        q = (sa.select(f.query, entry.label("entry_id"))
             .where(f.verdict.in_(list(verdicts)), entry.is_not(None)).order_by(f.id))
        with self._read() as conn:
            return [(r.query, r.entry_id) for r in conn.execute(q)]

    def feedback_stats(self) -> dict[str, int]:
        """How many feedback rows each verdict has (every verdict present, zero included)."""
        q = sa.select(feedback.c.verdict, sa.func.count()).group_by(feedback.c.verdict)
        stats = dict.fromkeys(VERDICTS, 0)
        with self._read() as conn:
            stats.update({v: int(n) for v, n in conn.execute(q)})
        return stats

    # ---------------------------------------------------------------------------------------------- KB entries

    def upsert_kb_entries(self, entries: Iterable[KBEntry], origin: str = "feedback") -> int:
        """Insert or replace KB entries in one transaction (the last of repeated ids wins; ``created_at`` is kept);
        return how many distinct entries were written.

        Args:
            entries: The entries.
            origin: ``file`` (ingested) or ``feedback`` (saved from an agent's edit).
        """
        if origin not in ORIGINS:
            raise ValueError(f"origin must be one of {ORIGINS}, not {origin!r}")
        now = utcnow()
        rows = list({e.id: {"id": e.id, "question": e.question, "answer": e.answer, "category": e.category,
                            "source": e.source, "paraphrases_json": json.dumps(list(e.paraphrases)),
                            "origin": origin, "created_at": now, "updated_at": now, "deleted": False}
                     for e in entries}.values())
        if not rows:
            return 0
        with self._write() as conn:
            ins = upsert_insert(conn, kb_entries)
            keep = {"id", "created_at"}
            conn.execute(ins.on_conflict_do_update(
                index_elements=[kb_entries.c.id],
                set_={col.name: ins.excluded[col.name] for col in kb_entries.columns if col.name not in keep}), rows)
            _bump_kb(conn)
        return len(rows)

    def kb_version(self) -> int:
        """The KB entries' change counter: it grows with every write or removal of entries (0 before the first)."""
        with self._read() as conn:
            return int(conn.execute(sa.select(kb_state.c.version).where(kb_state.c.id == 1)).scalar() or 0)

    def kb_entries(self, origin: str | None = None) -> list[KBEntry]:
        """Stored KB entries (only ``file`` or only ``feedback`` ones; all when None), oldest first."""
        k = kb_entries.c
        q = sa.select(kb_entries).where(k.deleted.is_(False)).order_by(k.created_at, k.id)
        if origin is not None:
            q = q.where(k.origin == origin)
        with self._read() as conn:
            return [_kb_entry(r) for r in conn.execute(q).mappings()]

    # ------------------------------------------------------------------------------------------------- erasure

    def erase(self, where: sa.ColumnElement[bool], report: ErasureReport) -> ErasureReport:
        """Remove the conversations matching ``where`` (a condition on ``conversations``) with their turns and
        feedback, the KB entries made from them, and the mentions of those entries elsewhere, in one transaction;
        on ``report.dry_run`` count only. Counted in ``report`` per kind.

        The KB entries made from a conversation are those saved from an agent's edit of one of its messages (the
        entry's question is the customer's message: the two cannot be separated, so the entry goes). Elsewhere, a
        stored suggestion that listed such an entry loses it from its hits, and its text becomes ``[removed on
        request]`` when it quoted it; an agent's message or feedback text that quoted it (``[<entry id>]``) becomes
        the same; feedback that pointed at it no longer does.
        """
        c, t, f, k = conversations.c, turns.c, feedback.c, kb_entries.c
        with self._read() if report.dry_run else self._write() as conn:
            if not report.dry_run:
                purge_deleted(conn)
            cids = [r.id for r in conn.execute(sa.select(c.id).where(where).order_by(c.created_at, c.id))]
            chosen = sa.select(c.id).where(c.id.in_(cids)) if len(cids) <= CHUNK else sa.select(c.id).where(where)
            chunks = [cids[i:i + CHUNK] for i in range(0, len(cids), CHUNK)]
            linked: set[str] = set()
            n_turns = n_feedback = 0
            for ids in chunks:
                n_turns += _count(conn, turns, t.conversation_id.in_(ids))
                n_feedback += _count(conn, feedback, f.conversation_id.in_(ids))
                linked.update(r[0] for r in conn.execute(sa.select(f.new_entry_id).where(
                    f.conversation_id.in_(ids), f.new_entry_id.is_not(None))))
            # an entry saved from an edit whose feedback row is missing: named after its conversation and not
            # claimed by the feedback of another one
            others = sa.select(f.new_entry_id).where(f.new_entry_id.is_not(None), f.conversation_id.not_in(chosen))
            for cid in cids:
                named = sa.select(k.id).where(k.origin == "feedback", k.id.not_in(others),
                                              k.id.startswith(f"fb-{cid[:8]}-", autoescape=True))
                linked.update(r[0] for r in conn.execute(named))
            entry_ids = sorted(r[0] for ids in _chunked(sorted(linked))
                               for r in conn.execute(sa.select(k.id).where(k.id.in_(ids))))
            report.add("conversations", len(cids), *cids)
            report.add("turns", n_turns)
            report.add("feedback", n_feedback)
            report.add("kb_entries", len(entry_ids), *entry_ids)
            _scrub_mentions(conn, chosen, entry_ids, report)
            if report.dry_run:
                return report
            for ids in _chunked(entry_ids):
                conn.execute(kb_entries.delete().where(k.id.in_(ids)))
            for ids in chunks:
                conn.execute(feedback.delete().where(f.conversation_id.in_(ids)))
                conn.execute(turns.delete().where(t.conversation_id.in_(ids)))
                conn.execute(conversations.delete().where(c.id.in_(ids)))
            if entry_ids:
                _bump_kb(conn)
        return report


def _chunked(ids: Sequence[str]) -> list[Sequence[str]]:
    return [ids[i:i + CHUNK] for i in range(0, len(ids), CHUNK)]


def _scrub_mentions(conn: sa.Connection, chosen: sa.Select, entry_ids: Sequence[str], report: ErasureReport) -> None:
    """Take the removed entries out of the turns and feedback of the conversations not ``chosen`` (see
    :meth:`Store.erase`)."""
    t, f = turns.c, feedback.c
    gone = set(entry_ids)
    scrubbed_turns: set[int] = set()
    scrubbed_feedback: set[int] = set()
    for eid in entry_ids:
        mentioned = sa.or_(t.reply_json.contains(f'"{eid}"', autoescape=True),
                           t.text.contains(f"[{eid}]", autoescape=True))
        for row in conn.execute(sa.select(t.id, t.text, t.reply_json).where(
                t.conversation_id.not_in(chosen), mentioned)).all():
            scrubbed_turns.add(row.id)
            if report.dry_run:
                continue
            text = REMOVED if any(f"[{g}]" in row.text for g in gone) else row.text
            reply = Reply.model_validate_json(row.reply_json) if row.reply_json else None
            if reply is not None:
                quoted = bool(gone & set(reply.cited_ids))
                reply = reply.model_copy(update={
                    "hits": [h for h in reply.hits if h.entry.id not in gone],
                    "cited_ids": [i for i in reply.cited_ids if i not in gone],
                    **({"text": REMOVED} if quoted else {})})
            conn.execute(sa.update(turns).where(t.id == row.id).values(
                text=text, reply_json=reply.model_dump_json() if reply is not None else None))
        pointed = sa.or_(f.suggested_entry_id == eid, f.new_entry_id == eid,
                         f.final_text.contains(f"[{eid}]", autoescape=True))
        for row in conn.execute(sa.select(f.id, f.suggested_entry_id, f.new_entry_id, f.final_text).where(
                f.conversation_id.not_in(chosen), pointed)).all():
            scrubbed_feedback.add(row.id)
            if report.dry_run:
                continue
            conn.execute(sa.update(feedback).where(f.id == row.id).values(
                suggested_entry_id=None if row.suggested_entry_id in gone else row.suggested_entry_id,
                new_entry_id=None if row.new_entry_id in gone else row.new_entry_id,
                final_text=REMOVED if any(f"[{g}]" in row.final_text for g in gone) else row.final_text))
    report.add("other_turns_scrubbed", len(scrubbed_turns))
    report.add("other_feedback_scrubbed", len(scrubbed_feedback))


def _count(conn: sa.Connection, table: sa.Table, where: sa.ColumnElement[bool]) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(where)).scalar_one())


def _bump_kb(conn: sa.Connection) -> None:
    """Count one more change of the KB entries (inside the transaction that made it)."""
    ins = upsert_insert(conn, kb_state).values(id=1, version=1)
    conn.execute(ins.on_conflict_do_update(index_elements=[kb_state.c.id],
                                           set_={"version": kb_state.c.version + 1}))
