"""The customer-service app's data shapes: knowledge-base entries, retrieval hits, replies, conversations, feedback."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Action = Literal["answer", "clarify", "handoff"]
Verdict = Literal["accepted", "edited", "rejected"]
Role = Literal["customer", "bot", "agent"]
ConversationState = Literal["open", "claimed", "handoff", "closed"]


class KBEntry(BaseModel):
    """One knowledge-base entry: a question (or passage title) and its answer."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Stable id, unique within the KB (from the file, or a content hash).")
    question: str
    answer: str
    category: str = ""
    source: str = Field("", description="Where the entry came from: file name and row, or 'feedback'.")
    paraphrases: tuple[str, ...] = Field((), description="Extra phrasings of the question, indexed with the entry.")


class KBBuild(BaseModel):
    """What one KB ingest produced."""

    entries: list[KBEntry]
    version: str = Field(description="Content hash of the entries: the same files give the same version.")
    n_read: int = Field(description="Rows or passages read before cleaning.")
    n_duplicates: int = Field(0, description="Rows dropped as duplicates.")
    n_empty: int = Field(0, description="Rows dropped for an empty question or answer.")
    n_redacted: int = Field(0, description="Entries in which personal data was redacted.")
    sources: list[str] = Field(default_factory=list)


class Hit(BaseModel):
    """One retrieved KB entry with its score."""

    entry: KBEntry
    score: float = Field(description="Fused relevance score; higher is better.")
    dense: float | None = Field(None, description="Cosine similarity from the embedding index.")
    sparse: float | None = Field(None, description="BM25 score.")
    rank: int = 1


class Intent(BaseModel):
    """The detected intent of a message."""

    label: str
    confidence: float
    alternatives: list[tuple[str, float]] = Field(default_factory=list)


class Reply(BaseModel):
    """What the bot suggests for one customer message."""

    action: Action
    text: str = Field(description="The reply to send (the answer, a clarifying question, or the handoff notice).")
    confidence: float = Field(description="Calibrated probability that the top answer is right.")
    intent: Intent | None = None
    hits: list[Hit] = Field(default_factory=list)
    cited_ids: list[str] = Field(default_factory=list, description="KB entries the text is grounded in.")
    resolved_query: str = Field("", description="The message as understood in the conversation's context.")
    redacted_message: str = ""
    latency_ms: float = 0.0


class Turn(BaseModel):
    """One message in a conversation."""

    id: int | None = None
    role: Role
    text: str
    created_at: datetime | None = None
    reply: Reply | None = None
    verdict: Verdict | None = Field(None, description="A customer message's verdict on its suggestion; None: none yet.")
    verdict_by: str | None = Field(None, description="The agent who gave the verdict.")


class StoredKBEntry(BaseModel):
    """A KB entry as the database holds it, with the version an edit must name."""

    entry: KBEntry
    version: int = Field(description="1 when created, one more with every change.")
    origin: str = Field(description="file (ingested) or feedback (saved from an agent's edit).")
    updated_at: datetime | None = None


class KBRevision(BaseModel):
    """One change of a stored KB entry: who made which version when, and the text it replaced."""

    entry_id: str
    version: int
    action: Literal["created", "replaced", "edited"]
    agent: str = Field(description="Who made the change: the agent or admin, or the source for a bulk write.")
    at: datetime
    question: str
    answer: str
    previous_question: str | None = Field(None, description="The text this version replaced; None when created.")
    previous_answer: str | None = None


class Conversation(BaseModel):
    """A conversation and its turns."""

    id: str
    customer: str = ""
    state: ConversationState = "open"
    claimed_by: str | None = None
    version: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None
    turns: list[Turn] = Field(default_factory=list)


class Feedback(BaseModel):
    """An agent's verdict on a suggestion."""

    conversation_id: str
    turn_id: int
    agent: str
    verdict: Verdict
    query: str = Field(description="The (redacted) customer message the suggestion answered.")
    suggested_entry_id: str | None = None
    new_entry_id: str | None = Field(None, description="KB entry saved from the agent's edit, if any.")
    final_text: str = Field("", description="What was sent: the suggestion, or the agent's edit.")
    created_at: datetime | None = None
