"""Persistent state of the customer-service app: conversations, turns, agent feedback, KB entries and their history.

One ``Store`` works on SQLite and PostgreSQL through SQLAlchemy Core; every write is one transaction. Concurrency
between agents is settled in the database by conditional ``UPDATE``s, never by a read followed by a write: ``claim``,
``release`` and ``set_state`` write only while the conversation is held by the caller (or by nobody) and, given
``expected_version``, still at the version the caller loaded (else ``ClaimConflict`` or ``StaleWrite``); of many
agents claiming at once exactly one wins. ``answer`` does an agent's whole answer to one customer message in one
transaction: the conditional update of the conversation, the message's verdict marker (set once: a second answer is
``AlreadyAnswered``), the feedback row, the agent's turn and the KB entry made from an edit. ``version`` counts
changes of state and claim and the agents' answers; customer and bot turns do not bump it.

KB entries carry their own ``version``; ``edit_kb_entry`` writes only at the version the editor loaded, and every
change of an entry leaves a row in ``kb_history`` (who, when, what it replaced). ``kb_version`` counts the changes of
the KB entries, so that a running service sees another process's. ``erase`` removes conversations and what was made
from them, history included (forgetting a customer, the retention period). ``create`` also adds the columns that a
database made by an earlier version lacks. Timestamps are timezone-aware UTC.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, get_args

import sqlalchemy as sa

from apps.common.db import BaseStore, UnknownRow, UTCDateTime, upsert_insert, utcnow
from apps.common.erasure import REMOVED, ErasureReport, purge_deleted
from apps.customer_service.schemas import (
    Conversation,
    ConversationState,
    Feedback,
    KBEntry,
    KBRevision,
    Reply,
    StoredKBEntry,
    Turn,
    Verdict,
)

STATES: tuple[str, ...] = get_args(ConversationState)
VERDICTS: tuple[str, ...] = get_args(Verdict)
ORIGINS = ("file", "feedback")
CHUNK = 500  # ids per IN (...) list


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
    """A conversation or a KB entry changed since the caller loaded it; nothing was written."""

    def __init__(self, what: str, loaded: int | None, now: int) -> None:
        super().__init__(f"{what} changed since you loaded it (version {loaded}, now {now}); reload")
        self.loaded, self.now = loaded, now


class AlreadyAnswered(RuntimeError):
    """The customer message has its answer (or its suggestion was rejected) already; nothing was written."""

    def __init__(self, conversation_id: str, turn_id: int, verdict: str, agent: str) -> None:
        what = f"message {turn_id} of conversation {conversation_id[:8]}"
        if verdict == "rejected":
            msg = f"{agent} already rejected the suggestion for {what}; answer it with an edit"
        else:
            msg = f"{what} was already answered by {agent} ({verdict}); reload"
        super().__init__(msg)
        self.turn_id, self.verdict, self.agent = turn_id, verdict, agent


class UnknownKBEntry(UnknownRow):
    """No stored KB entry has this id (it may have been removed meanwhile)."""

    def __init__(self, entry_id: str) -> None:
        super().__init__(f"KB entry {entry_id} is not stored (removed meanwhile?); reload")


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
    # a customer message's verdict (accepted, edited, rejected) and the agent who gave it; NULL until judged
    sa.Column("verdict", sa.String(16), nullable=True),
    sa.Column("verdict_by", sa.Text, nullable=True),
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
    sa.Column("version", sa.Integer, nullable=False, default=1, server_default="1"),  # 1 when created, +1 per change
    sa.Index("ix_kb_entries_origin", "origin"),
)

# Every change of a KB entry: the version it made, who made it and when, the text it wrote and the text it replaced
# (NULL for a new entry). Rows go with their entry when it is erased.
kb_history = sa.Table(
    "kb_history",
    metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
    sa.Column("entry_id", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("agent", sa.Text, nullable=False, default=""),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("answer", sa.Text, nullable=False),
    sa.Column("previous_question", sa.Text, nullable=True),
    sa.Column("previous_answer", sa.Text, nullable=True),
    sa.UniqueConstraint("entry_id", "version", name="uq_kb_history_entry_version"),
)

# Columns added since the first version of these tables: ``Store.create`` adds them to a database made before.
ADDED_COLUMNS: dict[str, tuple[str, ...]] = {"turns": ("verdict", "verdict_by"), "kb_entries": ("version",)}

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
    return Turn(id=row["id"], role=row["role"], text=row["text"], created_at=row["created_at"], reply=reply,
                verdict=row["verdict"], verdict_by=row["verdict_by"])


def _kb_entry(row: sa.RowMapping) -> KBEntry:
    return KBEntry(
        id=row["id"], question=row["question"], answer=row["answer"], category=row["category"],
        source=row["source"], paraphrases=tuple(json.loads(row["paraphrases_json"] or "[]")),
    )


def _stored(row: sa.RowMapping) -> StoredKBEntry:
    return StoredKBEntry(entry=_kb_entry(row), version=row["version"], origin=row["origin"],
                         updated_at=row["updated_at"])


class Store(BaseStore):
    """Conversations, turns, feedback and KB entries in one SQL database."""

    metadata = metadata

    def create(self) -> Store:
        """Create the tables and indexes that do not exist yet, and add the columns that a database made by an
        earlier version lacks (safe on every start; two processes adding columns at once wait for each other:
        SQLite's write lock, PostgreSQL's ``ADD COLUMN IF NOT EXISTS``); return the store."""
        super().create()
        with self._writer.begin() as conn:  # SQLite: BEGIN IMMEDIATE, so one process at a time looks and adds
            _add_columns(conn)
        return self

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
                row = _why_not(conn, cid, agent, expected_version)
                if not (holder_only and row.claimed_by is None):  # releasing what nobody holds changes nothing
                    raise StaleWrite(f"conversation {cid[:8]}", expected_version, row.version)
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

    def release(self, conversation_id: str, agent: str, expected_version: int | None = None) -> Conversation:
        """Give a claimed conversation back: ``claimed`` becomes ``handoff`` (it waits for the next agent); return
        it with its turns. Releasing a conversation nobody holds changes nothing. ``expected_version``: the version
        the agent loaded (None skips the check).

        Raises:
            UnknownConversation: No conversation has this id.
            ClaimConflict: Another agent holds it.
            StaleWrite: The agent holds it, but it changed since ``expected_version``.
        """
        c = conversations.c
        return self._change(conversation_id, agent, expected_version, holder_only=True, claimed_by=None,
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
            StaleWrite: It changed since ``expected_version`` ("conversation <id> changed since you loaded it
                (version 3, now 4); reload").
        """
        if state not in STATES or state == "claimed":
            raise ValueError(f"cannot set state {state!r}; use one of open, handoff, closed (claim() to claim)")
        values: dict[str, Any] = {"claimed_by": None} if state in ("open", "handoff") else {}
        return self._change(conversation_id, agent, expected_version, state=state, **values)

    # ------------------------------------------------------------------------------------------------ feedback

    def answer(self, fb: Feedback, expected_version: int | None = None, entry: KBEntry | None = None) -> Turn | None:
        """An agent's verdict ``fb`` on the suggestion for one customer message (``fb.turn_id``), in one
        transaction; return the agent's turn sent to the customer (None for a rejection).

        The conversation must be held by ``fb.agent`` or by nobody and, given ``expected_version``, still be at the
        version the agent loaded: the conditional update that checks it bumps the version. The message must not be
        judged yet (``rejected`` leaves it open to an edit only): its verdict marker is set by a conditional update,
        so of two agents answering at once exactly one wins. Then the feedback row, the agent's turn with
        ``fb.final_text`` (``accepted`` and ``edited``) and ``entry`` (the KB entry made from an edit, with its
        history row) are written; nothing is when anything is refused.

        Raises:
            UnknownConversation: No conversation has this id.
            ClaimConflict: Another agent holds it.
            AlreadyAnswered: The message has its answer, or its suggestion was rejected and this is not an edit.
            StaleWrite: The conversation changed since ``expected_version``.
            ValueError: ``fb.turn_id`` is not a customer message of the conversation, or ``fb.verdict`` unknown.
        """
        if fb.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {fb.verdict!r}; use one of {', '.join(VERDICTS)}")
        c, t = conversations.c, turns.c
        cid, now = fb.conversation_id, utcnow()
        cond = [c.id == cid, sa.or_(c.claimed_by.is_(None), c.claimed_by == fb.agent)]
        cond += [c.version == expected_version] if expected_version is not None else []
        judged = t.verdict.is_(None) if fb.verdict != "edited" else sa.or_(t.verdict.is_(None), t.verdict == "rejected")
        with self._write() as conn:
            res = conn.execute(sa.update(conversations).where(*cond).values(version=c.version + 1, updated_at=now))
            if res.rowcount == 0:
                row = _why_not(conn, cid, fb.agent, expected_version)
                _check_open(conn, fb)
                raise StaleWrite(f"conversation {cid[:8]}", expected_version, row.version)
            res = conn.execute(sa.update(turns).where(
                t.id == fb.turn_id, t.conversation_id == cid, t.role == "customer", judged).values(
                verdict=fb.verdict, verdict_by=fb.agent))
            if res.rowcount == 0:
                _check_open(conn, fb)  # raises why; were it open now, another write judged it in between
                raise StaleWrite(f"message {fb.turn_id} of conversation {cid[:8]}", expected_version,
                                 _why_not(conn, cid, fb.agent, None).version)
            if entry is not None:
                _write_entry(conn, entry, "feedback", fb.agent, now)
                _bump_kb(conn)
            self._insert_feedback(conn, fb, now)
            if fb.verdict == "rejected":
                return None
            res = conn.execute(turns.insert().values(conversation_id=cid, role="agent", text=fb.final_text,
                                                     created_at=now))
            return Turn(id=int(res.inserted_primary_key[0]), role="agent", text=fb.final_text, created_at=now)

    def record_feedback(self, fb: Feedback) -> int:
        """Store an agent's verdict on a suggestion as it is (no claim, version or answered check, nothing sent:
        ``answer`` does the agent's whole answer); return the feedback row's id.

        Raises:
            UnknownConversation: ``fb.conversation_id`` does not exist.
        """
        with self._write() as conn:
            known = sa.select(conversations.c.id).where(conversations.c.id == fb.conversation_id)
            if conn.execute(known).first() is None:
                raise UnknownConversation(fb.conversation_id)
            return self._insert_feedback(conn, fb, utcnow())

    @staticmethod
    def _insert_feedback(conn: sa.Connection, fb: Feedback, now: datetime) -> int:
        res = conn.execute(feedback.insert().values(
            conversation_id=fb.conversation_id, turn_id=fb.turn_id, agent=fb.agent, verdict=fb.verdict,
            query=fb.query, suggested_entry_id=fb.suggested_entry_id, new_entry_id=fb.new_entry_id,
            final_text=fb.final_text, created_at=fb.created_at or now))
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

    def upsert_kb_entries(self, entries: Iterable[KBEntry], origin: str = "feedback", agent: str = "") -> int:
        """Insert or replace KB entries in one transaction (the last of repeated ids wins; ``created_at`` is kept; a
        replaced entry's version grows by one); return how many distinct entries were written. Each write leaves a
        ``kb_history`` row (``created`` or ``replaced``) naming ``agent`` (default: the entry's source).

        Args:
            entries: The entries.
            origin: ``file`` (ingested) or ``feedback`` (saved from an agent's edit).
            agent: Who writes them.
        """
        if origin not in ORIGINS:
            raise ValueError(f"origin must be one of {ORIGINS}, not {origin!r}")
        latest = list({e.id: e for e in entries}.values())
        if not latest:
            return 0
        now = utcnow()
        with self._write() as conn:
            for e in latest:
                _write_entry(conn, e, origin, agent or e.source, now)
            _bump_kb(conn)
        return len(latest)

    def edit_kb_entry(self, entry_id: str, question: str, answer: str, agent: str,
                      expected_version: int) -> StoredKBEntry:
        """Change a stored entry's question and answer, only while it is still at ``expected_version`` (the version
        the editor loaded): one conditional update, with its ``kb_history`` row (``edited``, by ``agent``, with the
        text it replaced), in one transaction; return the entry as stored now.

        Raises:
            UnknownKBEntry: No stored entry has this id (or it was removed).
            StaleWrite: The entry changed since ``expected_version`` ("KB entry X changed since you loaded it
                (version N, now M); reload"); nothing was written.
        """
        k = kb_entries.c
        live = [k.id == entry_id, k.deleted.is_(False)]
        now = utcnow()
        with self._write() as conn:
            # the row is locked (PostgreSQL; SQLite's write lock is the database's) so that the text kept as
            # "previous" is the one the conditional update replaces
            prev = conn.execute(sa.select(kb_entries).where(*live).with_for_update()).mappings().first()
            if prev is None:
                raise UnknownKBEntry(entry_id)
            res = conn.execute(sa.update(kb_entries).where(*live, k.version == expected_version).values(
                question=question, answer=answer, version=k.version + 1, updated_at=now))
            if res.rowcount == 0:
                raise StaleWrite(f"KB entry {entry_id}", expected_version, prev["version"])
            conn.execute(kb_history.insert().values(
                entry_id=entry_id, version=expected_version + 1, action="edited", agent=agent, at=now,
                question=question, answer=answer, previous_question=prev["question"],
                previous_answer=prev["answer"]))
            _bump_kb(conn)
            return _stored(conn.execute(sa.select(kb_entries).where(k.id == entry_id)).mappings().one())

    def kb_entry(self, entry_id: str) -> StoredKBEntry:
        """One stored entry with its version; ``UnknownKBEntry`` when none (or it was removed)."""
        k = kb_entries.c
        with self._read() as conn:
            row = conn.execute(sa.select(kb_entries).where(k.id == entry_id, k.deleted.is_(False))).mappings().first()
        if row is None:
            raise UnknownKBEntry(entry_id)
        return _stored(row)

    def kb_records(self, origin: str | None = None) -> list[StoredKBEntry]:
        """Stored entries with their versions (only ``file`` or only ``feedback`` ones; all when None), by id."""
        k = kb_entries.c
        q = sa.select(kb_entries).where(k.deleted.is_(False)).order_by(k.id)
        if origin is not None:
            q = q.where(k.origin == origin)
        with self._read() as conn:
            return [_stored(r) for r in conn.execute(q).mappings()]

    def kb_history(self, entry_id: str) -> list[KBRevision]:
        """Every recorded change of an entry, newest first (empty for an entry never changed since history was
        kept, or unknown)."""
        h = kb_history.c
        q = sa.select(kb_history).where(h.entry_id == entry_id).order_by(h.version.desc())
        with self._read() as conn:
            rows = conn.execute(q).mappings().all()
        return [KBRevision(**{name: r[name] for name in KBRevision.model_fields}) for r in rows]

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
        feedback, the KB entries made from them with their history, and the mentions of those entries elsewhere, in
        one transaction; on ``report.dry_run`` count only. Counted in ``report`` per kind.

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
            history = sa.inspect(conn).has_table("kb_history")  # a dry run may look at a database made before it
            report.add("kb_history", sum(_count(conn, kb_history, kb_history.c.entry_id.in_(ids))
                                         for ids in _chunked(entry_ids)) if history else 0)
            _scrub_mentions(conn, chosen, entry_ids, report)
            if report.dry_run:
                return report
            for ids in _chunked(entry_ids):
                if history:
                    conn.execute(kb_history.delete().where(kb_history.c.entry_id.in_(ids)))
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


def _why_not(conn: sa.Connection, cid: str, agent: str | None, expected_version: int | None) -> sa.Row:
    """After a conditional update of conversation ``cid`` matched nothing: raise ``UnknownConversation`` or
    ``ClaimConflict`` when that is why; else return its claim and version (a stale ``expected_version``, or a release
    of what nobody holds)."""
    c = conversations.c
    row = conn.execute(sa.select(c.claimed_by, c.version).where(c.id == cid)).first()
    if row is None:
        raise UnknownConversation(cid)
    if row.claimed_by is not None and row.claimed_by != agent:
        raise ClaimConflict(cid, row.claimed_by)
    return row


def _check_open(conn: sa.Connection, fb: Feedback) -> None:
    """Raise why the message ``fb.turn_id`` cannot take ``fb.verdict``: not a customer message of the conversation
    (``ValueError``), or judged already (``AlreadyAnswered``); return when it is open to it."""
    t = turns.c
    row = conn.execute(sa.select(t.role, t.verdict, t.verdict_by).where(
        t.id == fb.turn_id, t.conversation_id == fb.conversation_id)).first()
    if row is None or row.role != "customer":
        raise ValueError(f"turn {fb.turn_id} is not a customer message of conversation {fb.conversation_id}")
    if row.verdict is not None and not (row.verdict == "rejected" and fb.verdict == "edited"):
        raise AlreadyAnswered(fb.conversation_id, fb.turn_id, row.verdict, row.verdict_by or "another agent")


def _write_entry(conn: sa.Connection, e: KBEntry, origin: str, agent: str, now: datetime) -> int:
    """Insert entry ``e`` or replace the stored one (its version + 1, ``created_at`` kept) with its ``kb_history``
    row; return the version written."""
    k = kb_entries.c
    prev = conn.execute(sa.select(k.question, k.answer).where(k.id == e.id).with_for_update()).first()
    ins = upsert_insert(conn, kb_entries)
    row = {"id": e.id, "question": e.question, "answer": e.answer, "category": e.category, "source": e.source,
           "paraphrases_json": json.dumps(list(e.paraphrases)), "origin": origin, "created_at": now,
           "updated_at": now, "deleted": False, "version": 1}
    replace = {name: ins.excluded[name] for name in row if name not in ("id", "created_at", "version")}
    version = int(conn.execute(ins.values(**row).on_conflict_do_update(
        index_elements=[k.id], set_={**replace, "version": k.version + 1}).returning(k.version)).scalar_one())
    conn.execute(kb_history.insert().values(
        entry_id=e.id, version=version, action="created" if version == 1 else "replaced", agent=agent, at=now,
        question=e.question, answer=e.answer, previous_question=prev.question if prev else None,
        previous_answer=prev.answer if prev else None))
    return version


def _add_columns(conn: sa.Connection) -> None:
    """Add the :data:`ADDED_COLUMNS` that a database made by an earlier version lacks, and fill them in: a customer
    message that has feedback gets its verdict (an answer before a rejection; the earliest), so that it cannot be
    answered twice; entries start at version 1."""
    added: set[str] = set()
    for name, columns in ADDED_COLUMNS.items():
        table = metadata.tables[name]
        have = {col["name"] for col in sa.inspect(conn).get_columns(name)}
        for column in columns:
            if column in have:
                continue
            ddl = sa.schema.CreateColumn(table.c[column]).compile(dialect=conn.dialect)
            exists = " IF NOT EXISTS" if conn.dialect.name == "postgresql" else ""
            conn.exec_driver_sql(f"ALTER TABLE {conn.dialect.identifier_preparer.quote(name)} "
                                 f"ADD COLUMN{exists} {ddl}")
            added.add(f"{name}.{column}")
    if "turns.verdict" in added:
        t, f = turns.c, feedback.c

        def first(col: sa.Column) -> sa.ScalarSelect:
            return (sa.select(col).where(f.turn_id == t.id, f.conversation_id == t.conversation_id)
                    .order_by(f.verdict == "rejected", f.id).limit(1).scalar_subquery())

        has_feedback = sa.exists().where(f.turn_id == t.id, f.conversation_id == t.conversation_id)
        conn.execute(sa.update(turns).where(t.role == "customer", t.verdict.is_(None), has_feedback).values(
            verdict=first(f.verdict), verdict_by=first(f.agent)))
