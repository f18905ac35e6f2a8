"""CSService: what the console and the terminal chat call. Built once (``CSService.build``), then shared.

It ties the store (conversations, feedback, KB entries added by agents), the engine (intents + retrieval adapters),
the intent ensemble, the retriever and the bot together.
Every method returns a schema; errors a user can fix are ``CSError``. The KB entries agents add live in the database:
another process may add, edit or remove some (another console, ``trident privacy forget`` or ``retention``), and every
call that reads the KB first catches up with such changes (``refresh``).

Every write an agent makes names the version it was based on (``expected_version``: the version the page showed) and
is one guarded transaction in the store: two agents answering the same message, an answer into a conversation another
agent holds, or an edit of a KB entry someone changed meanwhile is refused with one sentence, and nothing is written.
"""

from __future__ import annotations

import logging
import threading

from apps.common.erasure import AuditRecord, AuditStore, ErasureError, ErasureReport
from apps.customer_service.bot import Bot, Calibrator, EmptyMessage, intent_from_probs
from apps.customer_service.card import model_card
from apps.customer_service.erasure import apply_retention, forget_customer
from apps.customer_service.index import build_index, index_entries, load_index
from apps.customer_service.intents import TASK, evaluation_report, load_intents
from apps.customer_service.knowledge import KBFormatError, clean_text
from apps.customer_service.retrieval import HybridRetriever, IndexMissingError
from apps.customer_service.schemas import Conversation, Feedback, Hit, KBEntry, KBRevision, Reply, StoredKBEntry, Turn
from apps.customer_service.settings import CSSettings
from apps.customer_service.store import (
    AlreadyAnswered,
    ClaimConflict,
    StaleWrite,
    Store,
    UnknownConversation,
    UnknownKBEntry,
)
from core.artifacts import ArtifactError
from core.engine import Ensemble, InferenceEngine
from core.model_card import CardText, read_card
from core.privacy import redact

log = logging.getLogger(__name__)


class CSError(RuntimeError):
    """A problem the agent or operator can fix, in one sentence."""


USER_ERRORS = (EmptyMessage, KBFormatError, UnknownConversation, ClaimConflict, StaleWrite, AlreadyAnswered,
               UnknownKBEntry, IndexMissingError, CSError, ErasureError)


class CSService:
    """The customer-service back end."""

    def __init__(self, settings: CSSettings, store: Store, engine: InferenceEngine, intents: Ensemble | None,
                 retriever: HybridRetriever, kb: dict[str, KBEntry], calibrator: Calibrator):
        self.settings, self.store, self.engine, self.intents = settings, store, engine, intents
        self.retriever, self.kb = retriever, kb
        self._lock = threading.RLock()
        self._evaluation: dict | None = None
        # what the KB holds of the database's entries, as of which change (read in this order: a change in between
        # makes the next refresh catch up)
        self._kb_version = store.kb_version()
        self._db_ids = {e.id for e in store.kb_entries(origin="feedback")} & set(kb)
        intent_fn = self._intent if intents is not None else None
        self.bot = Bot(retriever, kb, settings.dialog, calibrator, intent_fn, settings.retrieval.top_k)

    @classmethod
    def build(cls, settings: CSSettings, store: Store | None = None) -> CSService:
        """Load the artifact, its intent ensemble and the index (building the index from the KB file if there is
        none yet)."""
        try:
            engine = InferenceEngine(settings.artifact_dir, settings.core.inference)
        except ArtifactError as exc:
            raise CSError(f"{exc} (train it with `trident cs train`)") from exc
        try:
            intents = load_intents(engine)
        except ArtifactError as exc:  # the message says what to retrain
            raise CSError(str(exc)) from exc
        store = store or Store(settings.core.effective_database_url).create()
        try:
            build, retriever, calibrator = load_index(settings, engine)
        except (IndexMissingError, KBFormatError, FileNotFoundError):
            log.info("no index in %s: building it from %s", settings.index_folder, settings.kb_path)
            build, retriever = build_index(settings, engine)
            calibrator = Calibrator.load(settings.index_folder / "calibrator.json")
        kb = {e.id: e for e in build.entries}
        extra = store.kb_entries(origin="feedback")  # entries agents added since the last build
        if extra:
            index_entries(retriever, extra, settings.retrieval, rebuild=False)
            kb.update({e.id: e for e in extra})
        return cls(settings, store, engine, intents, retriever, kb, calibrator)

    def _intent(self, text: str):
        return intent_from_probs(self.intents.labels, self.intents.classify_proba([text])[0])

    # ------------------------------------------------------------------ conversations
    def start_conversation(self, customer: str = "") -> Conversation:
        """Open a new conversation."""
        return self.store.open_conversation(customer=redact(customer))

    def conversations(self) -> list[Conversation]:
        """The conversations, most recently updated first."""
        return self.store.list_conversations()

    def conversation(self, conversation_id: str) -> Conversation:
        """One conversation with its turns."""
        return self.store.get_conversation(conversation_id)

    def customer_message(self, conversation_id: str, text: str) -> tuple[Turn, Reply]:
        """Store a customer message (redacted) and the bot's suggestion; hand over when the bot is unsure."""
        self.refresh()
        conv = self.store.get_conversation(conversation_id)
        history = [t.text for t in conv.turns if t.role == "customer"]
        reply = self.bot.reply(text, history)
        turn = self.store.add_turn(conversation_id, "customer", reply.redacted_message, reply=reply)
        if reply.action == "handoff" and conv.state == "open":
            self._hand_over(conv)
        return turn, reply

    def _hand_over(self, conv: Conversation) -> None:
        """Move an open conversation to ``handoff``; if an agent changed it meanwhile, only while it is still open
        and unclaimed (an agent's claim or close stands)."""
        for _ in range(5):  # each retry follows another write to this conversation
            try:
                self.store.set_state(conv.id, "handoff", expected_version=conv.version)
                return
            except (StaleWrite, ClaimConflict):
                conv = self.store.get_conversation(conv.id)
                if conv.state != "open" or conv.claimed_by is not None:
                    return

    def claim(self, conversation_id: str, agent: str, expected_version: int | None = None) -> Conversation:
        """An agent takes a conversation (refused if another agent holds it, or it changed since
        ``expected_version``)."""
        return self.store.claim(conversation_id, agent, expected_version=expected_version)

    def release(self, conversation_id: str, agent: str, expected_version: int | None = None) -> Conversation:
        """An agent lets a conversation go (refused if it changed since ``expected_version``)."""
        return self.store.release(conversation_id, agent, expected_version=expected_version)

    def close(self, conversation_id: str, agent: str, expected_version: int | None = None) -> Conversation:
        """Close a conversation."""
        return self.store.set_state(conversation_id, "closed", agent=agent, expected_version=expected_version)

    # ------------------------------------------------------------------ feedback
    def feedback(self, conversation_id: str, turn_id: int, agent: str, verdict: str, final_text: str = "",
                 question: str = "", expected_version: int | None = None) -> Feedback:
        """Record an agent's verdict on the suggestion for ``turn_id``, as one guarded transaction
        (``Store.answer``).

        accepted: the suggestion is sent as it is. edited: the agent's text is sent and becomes a KB entry at once
        (question = the customer's message unless ``question`` is given). rejected: nothing is sent (the message
        can still be answered with an edit). ``expected_version``: the conversation's version the agent's page
        showed (None: the version read here).

        Raises:
            ClaimConflict: Another agent holds the conversation.
            AlreadyAnswered: The message was answered already (or its suggestion rejected and this is not an edit).
            StaleWrite: The conversation changed since ``expected_version``.
            CSError: Not a customer message of the conversation, an empty edit, nothing to accept, a bad verdict.
        """
        self.refresh()
        conv = self.store.get_conversation(conversation_id)
        if conv.claimed_by not in (None, agent):
            raise ClaimConflict(conversation_id, conv.claimed_by)
        turn = next((t for t in conv.turns if t.id == turn_id), None)
        if turn is None or turn.role != "customer":
            raise CSError(f"turn {turn_id} is not a customer message of conversation {conversation_id}")
        top = turn.reply.hits[0].entry.id if turn.reply and turn.reply.hits else None
        entry = None
        if verdict == "edited":
            final_text = clean_text(redact(final_text))
            if not final_text:
                raise CSError("an edited answer cannot be empty")
            entry = KBEntry(id=f"fb-{conversation_id[:8]}-{turn_id}", question=question or turn.text,
                            answer=final_text, category="feedback", source=f"feedback:{agent}")
        elif verdict == "accepted":
            if not turn.reply:
                raise CSError("there is no suggestion to accept")
            final_text = turn.reply.text
        elif verdict != "rejected":
            raise CSError(f"unknown verdict {verdict!r}; use accepted, edited or rejected")
        fb = Feedback(conversation_id=conversation_id, turn_id=turn_id, agent=agent, verdict=verdict,
                      query=turn.text, suggested_entry_id=top, final_text=final_text,
                      new_entry_id=entry.id if entry else None)
        self.store.answer(fb, conv.version if expected_version is None else expected_version, entry)
        if entry is not None:
            self._serve([entry])
        return fb

    # ------------------------------------------------------------------ knowledge base
    def add_kb_entry(self, entry: KBEntry, agent: str = "") -> None:
        """Store an entry (a new one, or a new version of a stored one) and index it at once (no rebuild)."""
        self.store.upsert_kb_entries([entry], origin="feedback", agent=agent)
        self._serve([entry])

    def _serve(self, entries: list[KBEntry]) -> None:
        """Index entries just stored and answer with them at once (no rebuild)."""
        with self._lock:
            index_entries(self.retriever, entries, self.settings.retrieval, rebuild=False)
            self.kb.update({e.id: e for e in entries})
            self._db_ids.update(e.id for e in entries)

    def stored_kb_entries(self) -> list[StoredKBEntry]:
        """The KB entries kept in the database (those agents saved), with the versions an edit names, by id."""
        return self.store.kb_records(origin="feedback")

    def kb_history(self, entry_id: str) -> list[KBRevision]:
        """Every recorded change of a stored entry, newest first."""
        return self.store.kb_history(entry_id)

    def edit_kb_entry(self, entry_id: str, question: str, answer: str, agent: str,
                      expected_version: int) -> StoredKBEntry:
        """Change a stored entry's question and answer (PII redacted), only if it is still at ``expected_version``
        (the version the editor loaded); the change is kept in the entry's history under ``agent`` and served at
        once.

        Raises:
            CSError: An empty question or answer, or nothing changed.
            UnknownKBEntry: No stored entry has this id.
            StaleWrite: Someone changed the entry since ``expected_version``; nothing was written.
        """
        question, answer = clean_text(redact(question)), clean_text(redact(answer))
        if not question or not answer:
            raise CSError("a KB entry needs a question and an answer")
        stored = self.store.kb_entry(entry_id)
        if (stored.entry.question, stored.entry.answer) == (question, answer) and stored.version == expected_version:
            raise CSError(f"nothing to save: KB entry {entry_id} is unchanged")
        saved = self.store.edit_kb_entry(entry_id, question, answer, agent, expected_version)
        self._serve([saved.entry])
        return saved

    def refresh(self) -> bool:
        """Catch up with the KB entries another process added, changed or removed since this service last looked
        (one read of the database's change counter when nothing changed); return whether anything was re-read."""
        version = self.store.kb_version()
        if version == self._kb_version:
            return False
        with self._lock:
            stored = {e.id: e for e in self.store.kb_entries(origin="feedback")}
            gone = sorted(self._db_ids - set(stored))
            changed = [e for i, e in stored.items() if self.kb.get(i) != e]
            if gone:
                self.retriever.remove(gone)
                for i in gone:
                    self.kb.pop(i, None)
            if changed:
                index_entries(self.retriever, changed, self.settings.retrieval, rebuild=False)
                self.kb.update({e.id: e for e in changed})
            self._db_ids, self._kb_version = set(stored), version
            log.info("KB refreshed: %d entries removed, %d added or changed", len(gone), len(changed))
        return True

    def search_kb(self, query: str, k: int = 10) -> list[Hit]:
        """KB search for agents."""
        query = query.strip()
        if not query:
            raise EmptyMessage("the search is empty")
        self.refresh()
        res = self.retriever.search([redact(query)], k=k)[0]
        return [Hit(entry=self.kb[r.id], score=r.score, dense=r.dense, sparse=r.sparse, rank=i + 1)
                for i, r in enumerate(res) if r.id in self.kb]

    def kb_entries(self) -> list[KBEntry]:
        """Every KB entry, by id."""
        self.refresh()
        return sorted(self.kb.values(), key=lambda e: e.id)

    def rebuild_index(self) -> int:
        """Re-ingest the KB file and re-index (agents' entries kept); return the number of entries."""
        with self._lock:
            build, retriever = build_index(self.settings, self.engine)
            version = self.store.kb_version()
            extra = self.store.kb_entries(origin="feedback")
            if extra:
                index_entries(retriever, extra, self.settings.retrieval, rebuild=False)
            self.retriever = self.bot.retriever = retriever
            self.kb = self.bot.kb = {e.id: e for e in build.entries + extra}
            self._db_ids, self._kb_version = {e.id for e in extra}, version
            return len(self.kb)

    # ------------------------------------------------------------------ privacy
    def forget_customer(self, customer: str, actor: str, dry_run: bool = False) -> ErasureReport:
        """Remove everything stored about a customer (``apps.customer_service.erasure.forget_customer``), or on
        ``dry_run`` say what would go; this console stops serving their KB entries at once."""
        report = forget_customer(self.settings, self.store, customer, actor, dry_run)
        self.refresh()
        return report

    def apply_retention(self, actor: str, dry_run: bool = False) -> ErasureReport:
        """Remove the conversations older than the retention period (``CS_RETENTION_DAYS``), or on ``dry_run`` say
        which would go."""
        report = apply_retention(self.settings, self.store, actor, dry_run)
        self.refresh()
        return report

    def audit_trail(self, limit: int = 50) -> list[AuditRecord]:
        """The latest forget requests and retention runs, newest first."""
        if not self.store.has_table("privacy_audit"):
            return []
        with AuditStore(self.store.engine) as trail:
            return trail.records(limit)

    # ------------------------------------------------------------------ evaluation
    def evaluation(self) -> dict:
        """Intent accuracy, macro-F1 and confusion matrix on the intents file of the settings; computed once and
        kept, as the artifact does not change while the service lives."""
        with self._lock:
            if self._evaluation is None:
                if self.intents is None:
                    raise CSError(f"the artifact has no {TASK} task: train it with `trident cs train`")
                try:
                    self._evaluation = evaluation_report(self.intents, self.settings.intents_path.resolve())
                except KBFormatError:
                    raise
                except ValueError as exc:  # a missing / malformed file
                    raise CSError(str(exc)) from exc
            return self._evaluation

    def model_card(self) -> CardText:
        """The card of the artifact the console serves (its ``MODEL_CARD.md``; generated from its records when it has
        none)."""
        try:
            return read_card(self.settings.artifact_dir, lambda: model_card(self.settings.artifact_dir))
        except ArtifactError as exc:
            raise CSError(str(exc)) from exc
