"""What the analysts' dashboard and the CLI ask of the finance monitor, in one object.

``FinService`` reads the store (news, sentiment against price, alerts, feed health) and scores ad-hoc text. It never
polls: the worker (``trident fin monitor``) writes, the dashboard reads, both at once on the same database.
The sentiment model is loaded on first use only, so a dashboard over stored data starts without it.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from apps.common.db import DatabaseError, redact_url
from apps.finance_sentiment.alerts import AlertConfigError
from apps.finance_sentiment.fairness import FAIRNESS_FILE, FairnessError, FairnessReport, read_report
from apps.finance_sentiment.feeds import FeedConfig, FeedConfigError, FeedState, health_table, load_feeds_file
from apps.finance_sentiment.indicators import PriceFileError, indicator_frame, join_sentiment
from apps.finance_sentiment.names import NamesError
from apps.finance_sentiment.scoring import ScoringError, SentimentScorer
from apps.finance_sentiment.settings import FinSettings
from apps.finance_sentiment.store import FinanceStore, UnknownArticle
from core.artifacts import ArtifactError
from core.modalities import InputError  # = core.engine.InputError, without importing Lightning
from core.model_card import CardText, read_card

log = logging.getLogger(__name__)


class UnknownAlert(KeyError):
    """No alert has this id."""

    def __str__(self) -> str:
        return f"unknown alert {self.args[0]}"


# Errors whose message is meant for the user (one sentence); anything else is a bug.
USER_ERRORS = (DatabaseError, ScoringError, FeedConfigError, AlertConfigError, PriceFileError, UnknownArticle,
               UnknownAlert, FileNotFoundError, ArtifactError, InputError, FairnessError, NamesError)


class FinService:
    """The finance monitor's read side and ad-hoc scoring, over a created store.

    ``feeds`` (for source names and feed health) and ``entities`` (for the ticker list) default to the feeds file.
    """

    def __init__(self, settings: FinSettings, store: FinanceStore, feeds: list[FeedConfig] | None = None,
                 entities: dict[str, list[str]] | None = None) -> None:
        self.settings, self.store = settings, store
        if feeds is None:
            try:
                feeds, entities = load_feeds_file(settings.feeds_path)
            except FeedConfigError as exc:
                log.warning("feeds file not read: %s", exc)
                feeds, entities = [], {}
        self.feeds, self.entities = feeds, dict(entities or {})
        self._scorer = None
        self._lock = threading.Lock()

    @classmethod
    def build(cls, settings: FinSettings | None = None) -> FinService:
        """A service over the configured database (created when missing)."""
        settings = settings or FinSettings()
        return cls(settings, FinanceStore(settings.core.effective_database_url).create())

    # ------------------------------------------------------------------------------------------------- model
    @property
    def scorer(self):
        """The sentiment scorer, loaded on first use (ArtifactError when no model is trained yet)."""
        with self._lock:
            if self._scorer is None:
                # heavy (Lightning, the weights) and optional: a dashboard over stored data starts without the model
                from apps.finance_sentiment.model import load_sentiment_model

                s = self.settings.scoring
                model = load_sentiment_model(self.settings.artifact_dir, self.settings.core.inference, task=s.task)
                self._scorer = SentimentScorer(model, s)
            return self._scorer

    def score_text(self, text: str, title: str = ""):
        """Score one text as an article (sentences, aggregate, explanation); InputError when it is empty."""
        if not (text or "").strip() and not (title or "").strip():
            raise InputError("the text is empty")
        result = self.scorer.score_articles([{"title": title, "summary": text}])[0]
        if result is None:
            raise InputError("the text has no sentence to score")
        return result

    @property
    def fairness_path(self) -> Path:
        """Where ``trident fin fairness`` writes the model's fairness report: beside the artifact."""
        return self.settings.artifact_dir / FAIRNESS_FILE

    def fairness(self) -> FairnessReport | None:
        """The model's counterfactual fairness report, or None when none was measured (FairnessError when the file is
        not a report)."""
        return read_report(self.settings.artifact_dir)

    def model_card(self) -> CardText:
        """The card of the sentiment artifact (its ``MODEL_CARD.md``; generated from its records when it has none):
        ArtifactError when there is no model."""
        # heavy (Lightning, through the model's module) and read on that page only
        from apps.finance_sentiment.card import model_card

        return read_card(self.settings.artifact_dir, lambda: model_card(self.settings.artifact_dir))

    # ---------------------------------------------------------------------------------------------- reading
    def tickers(self) -> list[str]:
        """Tickers known from the entity map, the feeds and the stored articles."""
        stored = {t for ts in self.store.articles(limit=100_000)["tickers"] for t in ts}
        return sorted(set(self.entities) | {t for f in self.feeds for t in f.tickers} | stored)

    def sources(self) -> list[str]:
        """Feed names: configured and stored."""
        stored = set(self.store.articles(limit=100_000)["source"])
        return sorted({f.name for f in self.feeds} | stored)

    def news(self, tickers: list[str] | None = None, sources: list[str] | None = None,
             since: datetime | None = None, until: datetime | None = None, limit: int = 500) -> pd.DataFrame:
        """Stored articles, newest first (see ``FinanceStore.articles``); empty filters mean all."""
        return self.store.articles(tickers=tickers or None, sources=sources or None, since=since, until=until,
                                   limit=limit)

    def article(self, article_id: str) -> dict[str, Any]:
        """One article with sentences, probabilities and explanation (UnknownArticle when no article has this id)."""
        return self.store.article(article_id)

    def sentiment_vs_price(self, ticker: str, freq: str = "D") -> pd.DataFrame:
        """The ticker's indicator rows joined with its news sentiment (``join_sentiment``): columns ``ticker, ts, close,
        ret, ..., sentiment_mean, sentiment_n, sentiment_z``; empty without prices."""
        prices = self.store.prices(ticker)
        if prices.empty:
            return pd.DataFrame(columns=["ticker", "ts", "close", "sentiment_mean", "sentiment_n", "sentiment_z"])
        news = self.store.sentiment_series(ticker, freq=None)
        return join_sentiment(indicator_frame(prices), news, freq=freq, tz=self.settings.price_tz)

    def alerts(self, ticker: str | None = None, since: datetime | None = None, limit: int = 200) -> pd.DataFrame:
        """Stored alerts, most recent first."""
        return self.store.alerts(ticker=ticker or None, since=since, limit=limit)

    def alert(self, alert_id: str) -> dict[str, Any]:
        """One alert as a dict (UnknownAlert when no alert has this id)."""
        frame = self.store.alerts(limit=100_000)
        row = frame[frame["id"] == alert_id]
        if row.empty:
            raise UnknownAlert(alert_id)
        return row.iloc[0].to_dict()

    def alert_articles(self, alert_id: str) -> pd.DataFrame:
        """The articles behind an alert, newest first."""
        ids = set(self.alert(alert_id)["article_ids"])
        frame = self.store.articles(limit=100_000)
        return frame[frame["id"].isin(ids)].reset_index(drop=True)

    def acknowledge(self, alert_id: str) -> None:
        """Mark an alert as seen (UnknownAlert when no alert has this id)."""
        if not self.store.acknowledge(alert_id):
            raise UnknownAlert(alert_id)

    def feed_health(self) -> list[dict[str, Any]]:
        """One row per feed (configured or stored): health, last status, failures, last error, times."""
        states = self.store.feed_states()
        for f in self.feeds:
            states.setdefault(f.name, FeedState())
        return health_table(states)

    def counts(self) -> dict[str, int]:
        """Rows per table."""
        return self.store.counts()

    @property
    def database(self) -> str:
        """The database URL without its password."""
        return redact_url(self.settings.core.effective_database_url)
