"""The finance worker: poll, score, store, alert, at an interval.

One cycle (:meth:`Monitor.cycle`) polls the due feeds and de-duplicates against everything stored, scores the new
articles (both outside any transaction), then in ONE transaction stores the feed states, the articles with their
scores and the alerts the rules raise at the cycle's time: a cycle is stored whole or not at all. The first SIGTERM /
SIGINT stops the loop after the cycle in hand; a second one rolls that cycle back (its feeds are fetched again on the
next start). At start, and when their files change, the watched tickers' price files are upserted into the store,
where the indicator rules read them.

Inside the cycle's transaction the new articles are checked against the store once more, so that workers polling
different feeds at once (``apps.finance_sentiment.jobs``, each job a cycle over one feed) never store a story twice.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, Field

from apps.finance_sentiment.alerts import AlertRule, evaluate, load_rules
from apps.finance_sentiment.feeds import Deduper, FeedConfig, FeedPoller, load_feeds_file
from apps.finance_sentiment.indicators import PriceFileError, indicator_frame, read_prices
from apps.finance_sentiment.settings import FinSettings
from apps.finance_sentiment.store import FinanceStore

log = logging.getLogger(__name__)


class CycleReport(BaseModel):
    """What one cycle did."""

    started_at: datetime
    as_of: datetime = Field(description="The time the alert rules were evaluated at.")
    seconds: float
    polled: dict[str, str] = Field(default_factory=dict, description="Feed -> poll status.")
    fetched: int = Field(0, description="Entries parsed from the polled feeds.")
    new_articles: int = Field(0, description="Articles stored for the first time.")
    scored: int = 0
    alerts: int = Field(0, description="Alerts raised for the first time.")
    errors: dict[str, str] = Field(default_factory=dict, description="Feed -> error of this cycle.")


class StopFlag:
    """Set by the first SIGTERM/SIGINT (stop after this cycle); the second raises ``SystemExit`` (roll back)."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        """Handle SIGTERM and SIGINT in the main thread."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum, _frame) -> None:
        if self.event.is_set():
            log.warning("second %s: rolling back the cycle in hand", signal.Signals(signum).name)
            raise SystemExit(128 + signum)
        log.warning("%s: stopping after the cycle in hand", signal.Signals(signum).name)
        self.event.set()

    @property
    def stopped(self) -> bool:
        """Whether a stop was asked for."""
        return self.event.is_set()


class Monitor:
    """Polls, scores, stores and alerts.

    Args:
        settings: Finance settings (feeds file, rules file, prices folder, scoring and loop settings).
        store: The store (created).
        scorer: A ``SentimentScorer`` (None: articles are stored unscored, e.g. before a model is trained).
        feeds: Feed configs (default: read from ``settings.feeds_path``), with ``entities``.
        entities: Ticker -> names and aliases.
        rules: Alert rules (default: read from ``settings.rules_path``).
        poller: A ``FeedPoller`` (default: one over ``feeds``).
        clock: Epoch seconds (tests pass a fake one).
    """

    def __init__(self, settings: FinSettings, store: FinanceStore, scorer=None,
                 feeds: Sequence[FeedConfig] | None = None, entities: dict[str, list[str]] | None = None,
                 rules: Sequence[AlertRule] | None = None, poller: FeedPoller | None = None,
                 clock: Callable[[], float] = time.time, risk=None) -> None:
        self.settings, self.store, self.scorer, self.clock = settings, store, scorer, clock
        if feeds is None:
            feeds, file_entities = load_feeds_file(settings.feeds_path)
            entities = entities if entities is not None else file_entities
        self.feeds, self.entities = list(feeds), dict(entities or {})
        self.rules = list(rules) if rules is not None else load_rules(settings.rules_path)
        self.poller = poller or FeedPoller(self.feeds, self.entities, clock=clock)
        self.deduper = Deduper(*store.known_keys())
        self._price_mtimes: dict[str, float] = {}
        self.risk = risk if risk is not None else self._default_risk()

    def _default_risk(self):
        """The fusion risk scorer when a risk rule exists and the model is trained; else None (rules stay quiet)."""
        if not any(r.kind == "risk_model" for r in self.rules):
            return None
        path = self.settings.risk_artifact_dir
        if not (path / "config.json").is_file():
            log.warning("risk_model rules need the fusion model at %s (`trident fin risk`); they will not fire", path)
            return None
        # heavy (torch, Lightning) and optional: loaded only when a risk rule and its model exist
        from apps.finance_sentiment.risk import RiskScorer
        from core.engine import InferenceEngine

        return RiskScorer(InferenceEngine(path))

    # ----------------------------------------------------------------------------------------------- prices
    @property
    def tickers(self) -> list[str]:
        """Every ticker the monitor watches: the entity map's and the feeds' defaults."""
        return sorted(set(self.entities) | {t for f in self.feeds for t in f.tickers})

    def load_prices(self, folder: Path | None = None) -> dict[str, int]:
        """Upsert the price file of each watched ticker that is new or changed since the last load.

        Returns ticker -> rows written; a bad file is logged (one line) and skipped, keeping what is stored.
        """
        folder = Path(folder or self.settings.prices_folder)
        written = {}
        for ticker in self.tickers:
            path = folder / f"{ticker}.csv"
            if not path.is_file():
                continue
            mtime = path.stat().st_mtime
            if self._price_mtimes.get(ticker) == mtime:
                continue
            try:
                frame = read_prices(path, ticker, tz=self.settings.price_tz)
            except PriceFileError as exc:
                log.error("prices of %s not loaded: %s", ticker, exc)
                continue
            written[ticker] = self.store.save_prices(ticker, frame)
            self._price_mtimes[ticker] = mtime
        return written

    def indicators(self, as_of: datetime) -> pd.DataFrame | None:
        """The indicator rows of every watched ticker up to ``as_of`` (None when no prices are stored)."""
        since = as_of - timedelta(days=self.settings.monitor.price_history_days)
        frames = []
        for ticker in self.tickers:
            prices = self.store.prices(ticker, since=since)
            prices = prices[prices.index <= pd.Timestamp(as_of)]
            if len(prices):
                frames.append(indicator_frame(prices))
        return pd.concat(frames) if frames else None

    # ----------------------------------------------------------------------------------------------- cycle
    def cycle(self, as_of: datetime | None = None, only: Collection[str] | None = None) -> CycleReport:
        """Run one poll / score / store / alert cycle, the alert rules evaluated at ``as_of`` (default: now; a replay
        of captured feeds passes their capture time, so their windows are the current ones). ``only``: poll these
        feeds alone (a queue job polls one, ``apps.finance_sentiment.jobs``)."""
        t0 = time.perf_counter()
        started = datetime.fromtimestamp(self.clock(), tz=UTC)
        as_of = (as_of or started).astimezone(UTC)
        states = self.store.feed_states()
        results = self.poller.poll_due(states, only)  # adds a state for each feed without one
        fetched = [a for r in results.values() for a in r.articles]
        new = self.deduper.filter(fetched)
        scores = self.scorer.score_articles(new) if self.scorer is not None and new else None
        urls = {f.name: f.url for f in self.feeds}
        with self.store.batch():
            # other workers may have stored some of them since this one remembered what was stored
            kept = self.store.unstored(new, self.deduper.min_hash_chars)
            if len(kept) < len(new):
                new, scores = [new[i] for i in kept], scores and [scores[i] for i in kept]
            for name in results:
                self.store.save_feed_state(name, states[name], url=urls.get(name))
            n_new = self.store.save_articles(new, scores)
            since = as_of - timedelta(days=self.settings.monitor.lookback_days)
            recent = self.store.articles(since=since, until=as_of + timedelta(seconds=1), limit=100_000)
            risk = None
            if self.risk is not None:
                prices = {t: self.store.prices(t) for t in self.tickers}
                risk = self.risk.score({t: p for t, p in prices.items() if len(p)}, recent, as_of)
            alerts = evaluate(self.rules, recent, self.indicators(as_of), as_of, risk) if self.rules else []
            n_alerts = self.store.save_alerts(alerts)
        report = CycleReport(
            started_at=started, as_of=as_of, seconds=round(time.perf_counter() - t0, 3),
            polled={n: r.status for n, r in results.items()}, fetched=len(fetched), new_articles=n_new,
            scored=sum(s is not None for s in scores or ()), alerts=n_alerts,
            errors={n: r.error for n, r in results.items() if r.error})
        log.info("cycle: %d feeds polled, %d entries, %d new articles, %d alerts, %.1fs", len(results), len(fetched),
                 n_new, n_alerts, report.seconds)
        return report

    def run(self, once: bool = False, stop: StopFlag | None = None, as_of: datetime | None = None,
            on_cycle: Callable[[CycleReport], None] | None = None) -> list[CycleReport]:
        """Loop cycles every ``interval_seconds`` until ``stop`` is set (or once) and return their reports.

        Args:
            once: Run a single cycle.
            stop: The stop flag (install its signal handlers in the main thread first).
            as_of: Fixed evaluation time for every cycle (replays); default: each cycle's own time.
            on_cycle: Called with each cycle's report.
        """
        stop = stop or StopFlag()
        reports = []
        self.load_prices()
        while not stop.stopped:
            report = self.cycle(as_of)
            reports.append(report)
            if on_cycle:
                on_cycle(report)
            if once:
                break
            stop.event.wait(self.settings.monitor.interval_seconds)
            if not stop.stopped:
                self.load_prices()
        return reports

    def close(self) -> None:
        """Close the poller's HTTP client."""
        self.poller.close()
