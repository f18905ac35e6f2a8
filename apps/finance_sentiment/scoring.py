"""Sentence and article sentiment from the shared core.

An article is its headline plus the sentences of its summary (:func:`split_sentences`), each scored by the core's
classifier; a **score** is ``p(positive) - p(negative)``, in [-1, 1]. The article's probabilities are the weighted
mean of its sentences', sentence ``i`` weighing ``t_i * (1 - p_i(neutral)) + 0.05`` with ``t_i`` the
``title_weight`` (2 by default) for the headline and 1 otherwise: opinionated sentences count far more than neutral
boilerplate, and an all-neutral article gets roughly the plain mean. Its label is their arg-max and its score is
taken from them, so label and score agree in sign.

Explanations: for the ``explain_sentences`` sentences that weigh most in the score, occlusion attributions of
``log p(positive) - log p(negative)`` to each word (positive: the word pushed towards positive). At most
``max_chars`` characters and ``max_sentences`` sentences are read (``truncated`` says so); an article with no text is
not scored (None).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from apps.finance_sentiment.settings import ScoringSettings

log = logging.getLogger(__name__)

LABELS = ("positive", "neutral", "negative")
_EXPLAIN_WEIGHTS = {"positive": 1.0, "negative": -1.0}
# Abbreviations after which a full stop does not end a sentence (compared lower-case, without the dot).
_ABBREVIATIONS = frozenset("""
    inc corp co ltd plc llc lp mr mrs ms dr prof sr jr st vs etc e.g i.e u.s u.k u.n no nos fig approx est dept
    jan feb mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri sat sun oy oyj ab ag sa nv bhd
""".split())
_END_RE = re.compile(r"([.!?]+)([\"'\u201d\u2019)\]]*)\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9$\u20ac\u00a3])")


class ScoringError(ValueError):
    """The model cannot score sentiment (wrong artifact or task); one line."""


class SentenceScore(BaseModel):
    """One scored sentence."""

    model_config = ConfigDict(frozen=True)

    text: str
    label: str = Field(description="positive | neutral | negative (arg-max).")
    positive: float
    neutral: float
    negative: float
    score: float = Field(description="p(positive) - p(negative), in [-1, 1].")
    weight: float = Field(0.0, description="Weight in the article's aggregate (0 for a lone sentence).")


class ArticleScore(BaseModel):
    """One scored article: what ``FinanceStore.save_articles`` stores."""

    model_config = ConfigDict(frozen=True)

    score: float = Field(description="p(positive) - p(negative) of the aggregated probabilities, in [-1, 1].")
    label: str
    probs: dict[str, float]
    sentences: list[SentenceScore]
    explanation: dict[str, Any] | None = None
    truncated: bool = Field(False, description="Whether text beyond max_chars / max_sentences was left out.")
    scored_at: datetime


def split_sentences(text: str) -> list[str]:
    """Split text into sentences: at ``. ! ?`` (and closing quotes) followed by a capital, digit or currency sign,
    except after a known abbreviation ("Inc.", "U.S.") or an initial ("J. Smith"); and at line breaks.

    Args:
        text: Plain text.

    Returns:
        The non-empty sentences, stripped, in order.
    """
    out: list[str] = []
    for block in re.split(r"\s*\n\s*", text or ""):
        start = 0
        for m in _END_RE.finditer(block):
            before = block[start:m.start()].split()
            last = before[-1].lower().rstrip(".") if before else ""
            if m.group(1) == "." and (last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha())):
                continue
            out.append(block[start:m.end()].strip())
            start = m.end()
        out.append(block[start:].strip())
    return [s for s in out if s]


def article_sentences(title: str, summary: str, settings: ScoringSettings) -> tuple[list[str], bool]:
    """The sentences of an article that are scored: the headline followed by the summary's sentences, within the
    limits of ``settings``; and whether anything was cut."""
    text = (summary or "").strip()
    truncated = len(text) > settings.max_chars
    sentences = [x for x in [(title or "").strip()] if x] + split_sentences(text[:settings.max_chars])
    if len(sentences) > settings.max_sentences:
        sentences, truncated = sentences[:settings.max_sentences], True
    # a summary that only repeats the headline adds nothing
    if len(sentences) > 1 and sentences[1] == sentences[0]:
        sentences.pop(1)
    return sentences, truncated


class SentimentScorer:
    """Scores sentences and articles with a sentiment classifier of the core.

    Args:
        engine: The sentiment model (:func:`apps.finance_sentiment.model.load_sentiment_model`: one artifact or an
            ``Ensemble``), or any ``InferenceEngine`` with a ``classify`` task with the labels positive, neutral and
            negative.
        settings: Batch size, limits, weights and explanations.

    Raises:
        ScoringError: The artifact has no such task.
    """

    def __init__(self, engine, settings: ScoringSettings | None = None) -> None:
        self.engine = engine
        self.settings = settings or ScoringSettings()
        task = self.settings.task
        if task not in engine.tasks:
            raise ScoringError(f"the model at {engine.path} has no task {task!r}; it has {sorted(engine.tasks)}")
        labels = tuple(engine.tasks[task].labels)
        if set(labels) != set(LABELS) or engine.tasks[task].kind != "classify":
            raise ScoringError(f"task {task!r} must classify into {list(LABELS)}, not {list(labels)}")
        self.task = task
        self._cols = [labels.index(lab) for lab in LABELS]

    # ------------------------------------------------------------------------------------------- sentences
    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities (N, 3) in the order positive, neutral, negative, scored in batches."""
        if not texts:
            return np.zeros((0, 3), dtype=np.float32)
        bs = self.settings.batch_size
        return np.concatenate([self.engine.classify_proba(list(texts[start:start + bs]), self.task)[:, self._cols]
                               for start in range(0, len(texts), bs)])

    # -------------------------------------------------------------------------------------------- articles
    def article_sentences(self, title: str, summary: str) -> tuple[list[str], bool]:
        """The headline followed by the summary's sentences, within the limits; and whether anything was cut."""
        return article_sentences(title, summary, self.settings)

    def score_articles(self, articles: Sequence[Any]) -> list[ArticleScore | None]:
        """Score articles (objects or mappings with ``title`` and ``summary``), all sentences in shared batches.

        Returns:
            One :class:`ArticleScore` per article, or None for an article without text.
        """
        s = self.settings
        parts, flat = [], []
        for a in articles:
            title, summary = _field(a, "title"), _field(a, "summary")
            sentences, truncated = self.article_sentences(title, summary)
            has_title = bool((title or "").strip())
            parts.append((len(flat), len(sentences), truncated, has_title))
            flat += sentences
        probs = self.probabilities(flat)
        now = datetime.now(UTC)
        out: list[ArticleScore | None] = []
        to_explain: list[tuple[int, list[int]]] = []
        for start, n, truncated, has_title in parts:
            if n == 0:
                out.append(None)
                continue
            p = probs[start:start + n]
            t = np.ones(n)
            if has_title:
                t[0] = s.title_weight
            w = t * (1.0 - p[:, 1]) + 0.05
            agg = (w[:, None] * p).sum(0) / w.sum()
            sentences = [_sentence(flat[start + i], p[i], float(w[i] / w.sum())) for i in range(n)]
            pick = np.argsort(-(w * np.abs(p[:, 0] - p[:, 2])), kind="stable")[:s.explain_sentences]
            to_explain.append((len(out), [int(i) for i in pick]))
            out.append(ArticleScore(score=float(agg[0] - agg[2]), label=LABELS[int(agg.argmax())],
                                    probs={lab: round(float(v), 6) for lab, v in zip(LABELS, agg)},
                                    sentences=sentences, truncated=truncated, scored_at=now))
        if s.explain and s.explain_sentences:
            self._attach_explanations(out, to_explain)
        return out

    def _attach_explanations(self, out: list[ArticleScore | None], picks: list[tuple[int, list[int]]]) -> None:
        texts = [out[k].sentences[i].text for k, idx in picks for i in idx]
        if not texts:
            return
        words = iter(self.engine.explain(texts, self.task, weights=_EXPLAIN_WEIGHTS, max_words=48))
        for k, idx in picks:
            items = [{"idx": i, "text": out[k].sentences[i].text,
                      "words": [[w, round(a, 4)] for w, a in next(words)]} for i in idx]
            out[k] = out[k].model_copy(update={"explanation": {
                "method": "occlusion", "quantity": "log p(positive) - log p(negative)", "sentences": items}})


def _field(item: Any, name: str) -> str:
    value = item.get(name) if isinstance(item, dict) else getattr(item, name, "")
    return str(value or "")


def _sentence(text: str, p: np.ndarray, weight: float = 0.0) -> SentenceScore:
    return SentenceScore(text=text, label=LABELS[int(np.argmax(p))], positive=float(p[0]), neutral=float(p[1]),
                         negative=float(p[2]), score=float(p[0] - p[2]), weight=weight)
