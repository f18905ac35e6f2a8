"""The dialogue: from a customer message to a suggested reply (answer, clarifying question, or handoff).

For each message: redact personal data, resolve a follow-up against the conversation so far, detect the intent,
retrieve the best KB answers, and decide. The reply text is always a KB answer quoted verbatim and cited by id (or a
question listing the candidate KB entries, or a handoff notice): the bot never states a fact that is not in the KB.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from apps.customer_service.retrieval import HybridRetriever, SearchResult
from apps.customer_service.schemas import Hit, Intent, KBEntry, Reply
from apps.customer_service.settings import DialogSettings
from core.privacy import redact

log = logging.getLogger(__name__)

# A follow-up leans on the previous turn: it is short and opens with a connective or refers back.
FOLLOW_UP = re.compile(r"^\s*(and|but|also|what about|how about|what if|same for|for|with|or)\b|\b(it|that|this|them|"
                       r"those|one)\b", re.IGNORECASE)
LEAD = re.compile(r"^\s*(?:(?:and|but|also|so|ok|okay)\b[\s,]*)?(?:(?:what about|how about|what if|same for|for|with|"
                  r"about|or)\b\s*)?", re.IGNORECASE)
HANDOFF_TEXT = "I'm passing you to a colleague who can help with this. Please stay in the chat."


class EmptyMessage(ValueError):
    """A customer message with no text."""


@dataclass
class Calibrator:
    """Maps a retrieval result to the probability that its top answer is right: a logistic model over the top fused
    score and its margin over the second, fitted on labelled queries (``fit``)."""

    w_score: float = 12.0
    w_margin: float = 20.0
    bias: float = -6.0
    fitted_on: int = 0

    def features(self, hits: list[SearchResult]) -> tuple[float, float]:
        """(top score, margin to the second)."""
        if not hits:
            return 0.0, 0.0
        top = hits[0].score
        return top, top - (hits[1].score if len(hits) > 1 else 0.0)

    def prob(self, hits: list[SearchResult]) -> float:
        """Calibrated confidence in [0, 1]."""
        if not hits:
            return 0.0
        s, m = self.features(hits)
        z = self.w_score * s + self.w_margin * m + self.bias
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    @classmethod
    def fit(cls, results: list[list[SearchResult]], correct: list[bool], l2: float = 1e-2,
            steps: int = 2000) -> Calibrator:
        """Fit by gradient descent on the log-loss (numpy only; a few hundred points)."""
        x = np.array([cls().features(r) for r in results], dtype=np.float64)
        y = np.asarray(correct, dtype=np.float64)
        if len(set(y.tolist())) < 2:
            raise ValueError("calibration needs both right and wrong top answers")
        mu, sd = x.mean(0), x.std(0) + 1e-9
        xs = (x - mu) / sd
        w, b = np.zeros(2), 0.0
        for _ in range(steps):
            p = 1 / (1 + np.exp(-(xs @ w + b)))
            g = p - y
            w -= 0.5 * (xs.T @ g / len(y) + l2 * w)
            b -= 0.5 * g.mean()
        w_raw = w / sd
        return cls(float(w_raw[0]), float(w_raw[1]), float(b - (w * mu / sd).sum()), len(y))

    def save(self, path: Path) -> None:
        """Write the coefficients as JSON."""
        path.write_text(json.dumps(self.__dict__))

    @classmethod
    def load(cls, path: Path) -> Calibrator:
        """Read coefficients written by ``save`` (defaults when the file is missing)."""
        return cls(**json.loads(path.read_text())) if path.is_file() else cls()


class Bot:
    """Turns a customer message (and the conversation so far) into a Reply, from ``top_k`` answers of the retriever
    over ``kb`` (entries by id); ``intent_fn`` (text -> Intent) is optional."""

    def __init__(self, retriever: HybridRetriever, kb: dict[str, KBEntry], settings: DialogSettings,
                 calibrator: Calibrator | None = None, intent_fn=None, top_k: int = 5):
        self.retriever, self.kb, self.settings = retriever, kb, settings
        self.calibrator = calibrator or Calibrator()
        self.intent_fn, self.top_k = intent_fn, top_k

    def resolve(self, message: str, history: list[str]) -> tuple[str, str]:
        """(query, context) for a message in its conversation.

        A standalone message is its own query. A follow-up ("and for a business account?") is first rewritten into
        the previous question with the phrase it replaces ("what fees does a business account have?"); when no
        phrase lines up, the previous turn(s) are kept as context for the search.
        """
        if not history or self.settings.context_turns == 0:
            return message, ""
        if len(message.split()) <= 8 and FOLLOW_UP.search(message):
            if rewritten := rewrite_follow_up(history[-1], message):
                return rewritten, ""
            context = " ".join(history[-self.settings.context_turns:])
            return f"{context} {message}", context
        return message, ""

    def _search(self, query: str, message: str, context: str) -> list[SearchResult]:
        if not context or self.retriever.mode == "sparse":
            return self.retriever.search([query], k=self.top_k)[0]
        # The follow-up says what changed ("a business account"); the context says what it is about ("fees"). Mean
        # pooling over the joined text lets the longer context drown the change, so the dense query is the message's
        # own embedding plus a lighter share of the context's.
        e_msg, e_ctx = self.retriever.embed([message, context])
        v = e_msg + self.settings.context_weight * e_ctx
        v = v / max(float(np.linalg.norm(v)), 1e-9)
        return self.retriever.search([query], k=self.top_k, vectors=v[None])[0]

    def reply(self, message: str, history: list[str] | None = None) -> Reply:
        """Suggest a reply to ``message`` given the earlier (already redacted) customer turns."""
        t0 = time.perf_counter()
        if not isinstance(message, str) or not message.strip():
            raise EmptyMessage("the message is empty")
        if len(message) > self.settings.max_message_chars:
            log.warning("message of %d characters cut to %d", len(message), self.settings.max_message_chars)
            message = message[: self.settings.max_message_chars]
        clean = redact(message)
        query, context = self.resolve(clean, history or [])
        intent = self.intent_fn(query) if self.intent_fn else None
        results = [r for r in self._search(query, clean, context) if r.id in self.kb]
        hits = [Hit(entry=self.kb[r.id], score=r.score, dense=r.dense, sparse=r.sparse, rank=i + 1)
                for i, r in enumerate(results)]
        conf = self.calibrator.prob(results)
        action, text, cited = self._decide(results, conf)
        return Reply(action=action, text=text, confidence=conf, intent=intent, hits=hits, cited_ids=cited,
                     resolved_query=query, redacted_message=clean,
                     latency_ms=round(1000 * (time.perf_counter() - t0), 2))

    def _decide(self, results: list[SearchResult], conf: float) -> tuple[str, str, list[str]]:
        s = self.settings
        if results and conf >= s.answer_threshold:
            top = self.kb[results[0].id]
            return "answer", f"{top.answer} [{top.id}]", [top.id]
        if len(results) >= 2 and conf >= s.clarify_floor and results[0].score - results[1].score < s.clarify_margin:
            a, b = self.kb[results[0].id], self.kb[results[1].id]
            return "clarify", f"Do you mean \u201c{a.question}\u201d [{a.id}] or \u201c{b.question}\u201d [{b.id}]?", \
                [a.id, b.id]
        return "handoff", HANDOFF_TEXT, []


def rewrite_follow_up(previous: str, message: str) -> str | None:
    """Put an elliptical follow-up's phrase in place of the phrase of the previous turn that has the same last word.

    ``("what fees does a personal account have?", "and for a business account?")`` gives
    ``"what fees does a business account have?"``; None when no word of the previous turn matches the phrase's head.
    """
    phrase = LEAD.sub("", message).strip(" ?.!,")
    words = phrase.split()
    if not words or len(words) > 5:
        return None
    head = words[-1].lower()
    prev = previous.split()
    bare = [w.strip("?.!,;:").lower() for w in prev]
    if head not in bare:
        return None
    end = len(bare) - 1 - bare[::-1].index(head)
    start = max(0, end - len(words) + 1)
    tail = prev[end][len(prev[end].rstrip("?.!,;:")):]  # keep the punctuation after the replaced word
    return " ".join(prev[:start] + words[:-1] + [words[-1] + tail] + prev[end + 1:])


def intent_from_probs(labels: tuple[str, ...], probs: np.ndarray, k: int = 3) -> Intent:
    """An Intent from one row of class probabilities."""
    order = np.argsort(-probs)[:k]
    return Intent(label=labels[order[0]], confidence=float(probs[order[0]]),
                  alternatives=[(labels[i], float(probs[i])) for i in order[1:]])
