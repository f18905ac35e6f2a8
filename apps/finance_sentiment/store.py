"""Persistent state of the finance-sentiment monitor: feed states, articles and their scores, prices and alerts.

:class:`FinanceStore` works on SQLite and PostgreSQL (SQLAlchemy Core, bound parameters only). Every write is
idempotent, so a re-poll, a re-run or a restart never duplicates a row: articles are inserted once per id and per URL
(the first fetch wins; no link is a NULL URL, which the unique index ignores) and their scores written onto the
stored row; prices are upserted on ``(ticker, ts)``; alerts are inserted once per deterministic id.

Each call is one transaction, unless it runs inside :meth:`FinanceStore.batch` (a whole poll cycle: an exception
rolls back only the cycle in hand). On SQLite a batch holds the write lock until it ends, so fetch the feeds first.
Workers that store at once check their new articles with :meth:`FinanceStore.unstored` inside their batch, which on
PostgreSQL locks each story's keys first.
Timestamps are aware UTC; :class:`~apps.finance_sentiment.feeds.FeedState` times stay epoch seconds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from apps.common.db import BaseStore, UnknownRow, UTCDateTime, upsert_insert, utcnow
from apps.finance_sentiment.alerts import Alert
from apps.finance_sentiment.feeds import DEFAULT_MIN_HASH_CHARS, Article, Deduper, FeedState, normalise_url
from apps.finance_sentiment.indicators import PRICE_COLUMNS

# Rows per executemany call: large enough to amortise round trips, small enough to bound memory.
BATCH_ROWS = 2000
SENTENCE_COLUMNS = ("text", "label", "positive", "neutral", "negative", "score")


class UnknownArticle(UnknownRow):
    """No article has this id."""

    def __init__(self, article_id: str) -> None:
        super().__init__(f"unknown article {article_id}")


metadata = sa.MetaData()

feeds = sa.Table(
    "feeds",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("url", sa.Text, nullable=True),
    sa.Column("etag", sa.Text, nullable=True),
    sa.Column("last_modified", sa.Text, nullable=True),
    sa.Column("failures", sa.Integer, nullable=False, default=0),
    sa.Column("next_poll_at", sa.Double, nullable=False, default=0.0),
    sa.Column("last_status", sa.String(16), nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("last_ok_at", sa.Double, nullable=True),
    sa.Column("entries_seen", sa.Integer, nullable=False, default=0),
)

articles = sa.Table(
    "articles",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("url", sa.Text, nullable=True, unique=True),  # NULL for entries without a link
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("published", UTCDateTime, nullable=True),
    sa.Column("seen_at", UTCDateTime, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("tickers", sa.Text, nullable=False, default=""),  # comma-separated, sorted
    sa.Column("score", sa.Double, nullable=True),
    sa.Column("label", sa.String(16), nullable=True),
    sa.Column("probs_json", sa.Text, nullable=True),
    sa.Column("explanation_json", sa.Text, nullable=True),
    sa.Column("scored_at", UTCDateTime, nullable=True),
    sa.Index("ix_articles_content_hash", "content_hash"),
    sa.Index("ix_articles_source", "source"),
    sa.Index("ix_articles_published", "published"),
)

sentence_scores = sa.Table(
    "sentence_scores",
    metadata,
    sa.Column("article_id", sa.Text, sa.ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("idx", sa.Integer, primary_key=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("label", sa.String(16), nullable=True),
    sa.Column("positive", sa.Double, nullable=True),
    sa.Column("neutral", sa.Double, nullable=True),
    sa.Column("negative", sa.Double, nullable=True),
    sa.Column("score", sa.Double, nullable=True),
)

article_tickers = sa.Table(
    "article_tickers",
    metadata,
    sa.Column("article_id", sa.Text, sa.ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("ticker", sa.String(16), primary_key=True),
    sa.Index("ix_article_tickers_ticker", "ticker", "article_id"),
)

prices = sa.Table(
    "prices",
    metadata,
    sa.Column("ticker", sa.String(16), primary_key=True),
    sa.Column("ts", UTCDateTime, primary_key=True),
    *(sa.Column(name, sa.Double, nullable=True) for name in PRICE_COLUMNS),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),  # deterministic: hash of rule, ticker, window start
    sa.Column("ticker", sa.String(16), nullable=False),
    sa.Column("rule", sa.Text, nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("fired_at", UTCDateTime, nullable=False),
    sa.Column("window_start", UTCDateTime, nullable=False),
    sa.Column("window_end", UTCDateTime, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("value", sa.Double, nullable=True),
    sa.Column("threshold", sa.Double, nullable=True),
    sa.Column("article_ids", sa.Text, nullable=False, default="[]"),  # JSON list
    sa.Column("acknowledged", sa.Boolean, nullable=False, default=False),
    sa.Index("ix_alerts_fired_at", "fired_at"),
    sa.Index("ix_alerts_ticker", "ticker", "fired_at"),
)

ARTICLE_COLUMNS = ("id", "ts", "published", "seen_at", "source", "title", "summary", "url", "tickers", "score",
                   "label", "scored_at", "content_hash")
ALERT_COLUMNS = ("id", "ticker", "rule", "severity", "fired_at", "window_start", "window_end", "reason", "value",
                 "threshold", "article_ids", "acknowledged")


def _chunks(rows: Sequence[Any], size: int = BATCH_ROWS) -> Iterator[list[Any]]:
    for start in range(0, len(rows), size):
        yield list(rows[start:start + size])


def _float(value: Any) -> float | None:
    """``value`` as a float, None for None and NaN (stored as NULL)."""
    if value is None:
        return None
    value = float(value)
    return None if np.isnan(value) else value


def _utc_column(values: Iterable[Any]) -> pd.Series:
    return pd.to_datetime(pd.Series(list(values), dtype=object), utc=True)


def _plain(value: Any) -> Any:
    """A pydantic model or a mapping as a plain dict (anything else unchanged)."""
    if hasattr(value, "model_dump"):
        return value.model_dump()
    return dict(value) if isinstance(value, Mapping) else value


def _score_values(score: Mapping[str, Any]) -> dict[str, Any]:
    """The articles-row columns of one scoring result."""
    explanation = score.get("explanation")
    probs = score.get("probs")
    return {
        "score": _float(score.get("score")),
        "label": score.get("label"),
        "probs_json": json.dumps(probs) if probs is not None else None,
        "explanation_json": json.dumps(explanation, default=str) if explanation is not None else None,
        "scored_at": score.get("scored_at") or utcnow(),
    }


def _sentence_rows(article_id: str, sentences: Iterable[Any]) -> list[dict[str, Any]]:
    return [{"article_id": article_id, "idx": idx, "text": str(s.get("text", "")), "label": s.get("label"),
             **{k: _float(s.get(k)) for k in SENTENCE_COLUMNS[2:]}} for idx, s in enumerate(map(_plain, sentences))]


def _lock_key(key: str) -> int:
    """A PostgreSQL advisory lock key (signed 64 bits) for a text key."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big", signed=True)


def _tickers(value: str | None) -> list[str]:
    return [t for t in (value or "").split(",") if t]


class FinanceStore(BaseStore):
    """Feed states, articles, sentence scores, tickers, prices and alerts in one SQL database."""

    metadata = metadata

    # ---------------------------------------------------------------------------------------------- feeds

    def save_feed_state(self, name: str, state: FeedState, url: str | None = None) -> None:
        """Insert or replace the poller's state of one feed; ``url`` is for the record (kept when None)."""
        row = {"name": name, **state.model_dump()}
        with self._write() as conn:
            ins = upsert_insert(conn, feeds)
            changes = {k: ins.excluded[k] for k in row if k != "name"}
            if url is not None:
                row["url"] = url
                changes["url"] = ins.excluded.url
            conn.execute(ins.values(**row).on_conflict_do_update(index_elements=[feeds.c.name], set_=changes))

    def feed_states(self) -> dict[str, FeedState]:
        """The stored state of every feed, by name."""
        fields = list(FeedState.model_fields)
        with self._read() as conn:
            rows = conn.execute(sa.select(feeds).order_by(feeds.c.name)).mappings().all()
        return {r["name"]: FeedState(**{k: r[k] for k in fields}) for r in rows}

    # ------------------------------------------------------------------------------------------- articles

    def known_keys(self) -> tuple[set[str], set[str], set[str]]:
        """``(ids, urls, content_hashes)`` of every stored article, to seed a ``Deduper`` after a restart."""
        a = articles.c
        with self._read() as conn:
            rows = conn.execute(sa.select(a.id, a.url, a.content_hash)).all()
        return {r.id for r in rows}, {r.url for r in rows if r.url}, {r.content_hash for r in rows}

    def unstored(self, items: Sequence[Article], min_hash_chars: int = DEFAULT_MIN_HASH_CHARS) -> list[int]:
        """The positions of ``items`` that repeat no stored article by id, URL or content hash (as a ``Deduper``
        with ``min_hash_chars`` judges them).

        Inside :meth:`batch` on PostgreSQL it first takes a transaction lock on each of their keys, in one order for
        every caller: of two workers storing the same story at once, the second waits until the first commits and
        then sees its row. The locks end with the batch; SQLite's batch holds the database's write lock already.
        """
        items = list(items)
        if not items:
            return []
        ids = {x.id for x in items}
        urls = {u for x in items if x.url for u in (x.url, normalise_url(x.url))}
        hashes = {x.content_hash for x in items}
        a = articles.c
        with self._write() as conn:
            if conn.dialect.name == "postgresql":
                keys = {*(f"id:{k}" for k in ids), *(f"url:{normalise_url(x.url)}" for x in items if x.url),
                        *(f"hash:{k}" for k in hashes)}
                for key in sorted({_lock_key(k) for k in keys}):
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
            stored: list[Any] = []
            for column, values in ((a.id, ids), (a.url, urls), (a.content_hash, hashes)):
                for chunk in _chunks(sorted(values), 500):
                    stored += conn.execute(sa.select(a.id, a.url, a.content_hash).where(column.in_(chunk))).all()
        seen = Deduper((r.id for r in stored), (r.url for r in stored if r.url), (r.content_hash for r in stored),
                       min_hash_chars=min_hash_chars)
        return [i for i, x in enumerate(items) if not seen.is_duplicate(x)]

    def save_articles(self, items: Sequence[Article], scores: Sequence[Mapping[str, Any] | None] | None = None) -> int:
        """Store articles with their tickers and, when given, their scores and sentence scores, in one transaction.

        An article whose id or URL is already stored is not inserted again (the first fetch wins). A score given
        for a stored article (new or not) is written onto it and replaces its sentence scores.

        Args:
            items: The articles.
            scores: None, or one entry per article: None (not scored) or a mapping (or pydantic model) with
                ``score``, ``label``, ``probs`` and ``explanation`` (JSON-able), ``sentences`` (items with
                ``text, label, positive, neutral, negative, score``) and optionally ``scored_at`` (default now).

        Returns:
            How many articles were new. Raises ValueError when ``scores`` is not as long as ``items``.
        """
        items = list(items)
        if scores is not None and len(scores) != len(items):
            raise ValueError(f"got {len(scores)} scores for {len(items)} articles")
        if not items:
            return 0
        rows = [{"id": x.id, "url": x.url or None, "title": x.title, "summary": x.summary, "published": x.published,
                 "seen_at": x.seen_at, "source": x.source, "content_hash": x.content_hash,
                 "tickers": ",".join(sorted(x.tickers))} for x in items]
        scored = {x.id: _plain(s) for x, s in zip(items, scores or ()) if s is not None}
        new: set[str] = set()
        with self._write() as conn:
            ins = upsert_insert(conn, articles).on_conflict_do_nothing().returning(articles.c.id)
            for chunk in _chunks(rows):
                new.update(conn.execute(ins, chunk).scalars())
            stored: set[str] = set()
            for ids in _chunks(list(dict.fromkeys(r["id"] for r in rows)), 500):
                stored.update(conn.execute(sa.select(articles.c.id).where(articles.c.id.in_(ids))).scalars())
            ticker_rows = [{"article_id": x.id, "ticker": t} for x in items if x.id in stored for t in x.tickers]
            if ticker_rows:
                conn.execute(upsert_insert(conn, article_tickers).on_conflict_do_nothing(), ticker_rows)
            score_rows = [{"key": aid, **_score_values(s)} for aid, s in scored.items() if aid in stored]
            if score_rows:
                conn.execute(sa.update(articles).where(articles.c.id == sa.bindparam("key")), score_rows)
                ids = [r["key"] for r in score_rows]
                conn.execute(sa.delete(sentence_scores).where(sentence_scores.c.article_id.in_(ids)))
                sentence_rows = [row for aid in ids for row in _sentence_rows(aid, scored[aid].get("sentences") or ())]
                for chunk in _chunks(sentence_rows):
                    conn.execute(sentence_scores.insert(), chunk)
        return len(new)

    def articles(self, tickers: Iterable[str] | str | None = None, sources: Iterable[str] | str | None = None,
                 since: datetime | None = None, until: datetime | None = None, limit: int = 500) -> pd.DataFrame:
        """At most ``limit`` stored articles, newest first by ``ts`` (the publication time, else the fetch time),
        tagged with one of ``tickers``, from ``sources``, with ``since <= ts < until`` (None: no filter).

        Returns:
            Columns ``id, ts, published, seen_at, source, title, summary, url, tickers (list), score (NaN when
            unscored), label, scored_at, content_hash``; times are UTC.
        """
        a = articles.c
        ts = sa.func.coalesce(a.published, a.seen_at)
        q = sa.select(*(getattr(a, c) for c in ARTICLE_COLUMNS if c != "ts"), ts.label("ts"))
        if tickers is not None:
            wanted = [t.upper() for t in ([tickers] if isinstance(tickers, str) else tickers)]
            q = q.where(a.id.in_(sa.select(article_tickers.c.article_id).where(article_tickers.c.ticker.in_(wanted))))
        if sources is not None:
            q = q.where(a.source.in_([sources] if isinstance(sources, str) else list(sources)))
        if since is not None:
            q = q.where(ts >= since)
        if until is not None:
            q = q.where(ts < until)
        q = q.order_by(ts.desc(), a.id).limit(int(limit))
        with self._read() as conn:
            rows = conn.execute(q).mappings().all()
        frame = pd.DataFrame([dict(r) for r in rows], columns=list(ARTICLE_COLUMNS))
        frame["tickers"] = [_tickers(v) for v in frame["tickers"]]
        frame["score"] = frame["score"].astype("float64")
        for column in ("ts", "published", "seen_at", "scored_at"):
            frame[column] = _utc_column(frame[column])
        return frame

    def article(self, article_id: str) -> dict[str, Any]:
        """One article's columns (``tickers`` as a list, ``probs`` and ``explanation`` parsed from JSON) and its
        ``sentences`` (dicts ``idx, text, label, positive, neutral, negative, score``, in order).

        Raises:
            UnknownArticle: No article has this id.
        """
        with self._read() as conn:
            row = conn.execute(sa.select(articles).where(articles.c.id == article_id)).mappings().first()
            if row is None:
                raise UnknownArticle(article_id)
            s = sentence_scores.c
            q = (sa.select(s.idx, *(getattr(s, c) for c in SENTENCE_COLUMNS))
                 .where(s.article_id == article_id).order_by(s.idx))
            sentences = [dict(r) for r in conn.execute(q).mappings()]
        out = {k: v for k, v in row.items() if k not in ("probs_json", "explanation_json")}
        return {**out, "url": out["url"] or "", "tickers": _tickers(row["tickers"]),
                **{k: json.loads(row[f"{k}_json"]) if row[f"{k}_json"] else None for k in ("probs", "explanation")},
                "sentences": sentences}

    def sentiment_series(self, ticker: str, freq: str | None = "D") -> pd.DataFrame:
        """The mean score of a ticker's scored articles per period, for charts and ``join_sentiment``.

        Args:
            ticker: The ticker.
            freq: ``"D"`` (UTC days) or ``"h"`` (hours): one row per period with news, stamped at the period's start;
                None: one row per article at its own time (``n_articles`` = 1). Pass the per-article rows to
                ``join_sentiment``: a period's start stamp would let news from later in the period count early.

        Returns:
            Columns ``ts, ticker, score, n_articles``, oldest first; unscored articles are left out.
        """
        ticker = ticker.upper()
        a = articles.c
        ts = sa.func.coalesce(a.published, a.seen_at)
        q = (sa.select(ts.label("ts"), a.score)
             .join(article_tickers, article_tickers.c.article_id == a.id)
             .where(article_tickers.c.ticker == ticker, a.score.is_not(None)))
        with self._read() as conn:
            rows = conn.execute(q).all()
        news = pd.DataFrame({"ts": _utc_column(r.ts for r in rows), "score": [float(r.score) for r in rows]})
        if freq is None:
            out = news.assign(n_articles=1)
        else:
            news["ts"] = news["ts"].dt.floor(freq)
            out = news.groupby("ts", as_index=False).agg(score=("score", "mean"), n_articles=("score", "size"))
        out.insert(1, "ticker", ticker)
        out["score"] = out["score"].astype("float64")
        out["n_articles"] = out["n_articles"].astype("int64")
        return out.sort_values("ts", kind="stable").reset_index(drop=True)[["ts", "ticker", "score", "n_articles"]]

    # --------------------------------------------------------------------------------------------- prices

    def save_prices(self, ticker: str, frame: pd.DataFrame) -> int:
        """Upsert a ticker's price rows on ``(ticker, ts)`` and return how many were written.

        ``frame`` is ``read_prices`` output: the price columns on a time index (or a ``ts`` column); naive times are
        read as UTC, of repeated times the last row wins, NaN is NULL. Raises ValueError when a column is missing.
        """
        missing = [c for c in PRICE_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"price frame lacks column(s): {', '.join(missing)}")
        times = pd.DatetimeIndex(frame["ts"] if "ts" in frame.columns else frame.index)
        times = times.tz_localize("UTC") if times.tz is None else times.tz_convert("UTC")
        keep = ~times.duplicated(keep="last")  # PostgreSQL refuses to update one row twice in one statement
        values = frame[list(PRICE_COLUMNS)].to_numpy(dtype="float64")[keep]
        cells = values.astype(object)
        cells[np.isnan(values)] = None
        ticker = ticker.upper()
        keys = ("ticker", "ts", *PRICE_COLUMNS)
        rows = [dict(zip(keys, (ticker, ts, *row))) for ts, row in zip(times[keep].to_pydatetime(), cells.tolist())]
        if not rows:
            return 0
        with self._write() as conn:
            ins = upsert_insert(conn, prices)
            stmt = ins.on_conflict_do_update(index_elements=[prices.c.ticker, prices.c.ts],
                                             set_={c: ins.excluded[c] for c in PRICE_COLUMNS})
            for chunk in _chunks(rows):
                conn.execute(stmt, chunk)
        return len(rows)

    def prices(self, ticker: str, since: datetime | None = None) -> pd.DataFrame:
        """A ticker's stored prices with ``ts >= since``, oldest first, in the shape of ``read_prices``: float64
        price columns on a UTC index named ``"ts"``, with ``attrs["ticker"]`` set."""
        ticker = ticker.upper()
        p = prices.c
        q = sa.select(p.ts, *(getattr(p, c) for c in PRICE_COLUMNS)).where(p.ticker == ticker).order_by(p.ts)
        if since is not None:
            q = q.where(p.ts >= since)
        with self._read() as conn:
            rows = conn.execute(q).all()
        index = pd.DatetimeIndex(_utc_column(r[0] for r in rows), name="ts")
        data = np.array([r[1:] for r in rows], dtype="float64").reshape(len(rows), len(PRICE_COLUMNS))
        frame = pd.DataFrame(data, index=index, columns=list(PRICE_COLUMNS))
        frame.attrs["ticker"] = ticker
        return frame

    # --------------------------------------------------------------------------------------------- alerts

    def save_alerts(self, items: Iterable[Alert | Mapping[str, Any]]) -> int:
        """Store ``Alert`` objects (or mappings with their fields) and return how many were new; one whose id is
        already stored is skipped (the first firing is kept, acknowledged or not)."""
        rows = [{**row, "article_ids": json.dumps(row["article_ids"]), "value": _float(row["value"]),
                 "threshold": _float(row["threshold"])}
                for row in (Alert.model_validate(item).model_dump() for item in items)]
        if not rows:
            return 0
        with self._write() as conn:
            ins = upsert_insert(conn, alerts).on_conflict_do_nothing(index_elements=[alerts.c.id])
            ins = ins.returning(alerts.c.id)
            return len(set(conn.execute(ins, rows).scalars()))

    def alerts(self, ticker: str | None = None, since: datetime | None = None, limit: int = 200) -> pd.DataFrame:
        """At most ``limit`` stored alerts (of ``ticker``, fired at or after ``since``), most recent first.

        Returns:
            Columns ``id, ticker, rule, severity, fired_at, window_start, window_end, reason, value, threshold,
            article_ids (list), acknowledged (bool)``.
        """
        c = alerts.c
        q = sa.select(*(getattr(c, name) for name in ALERT_COLUMNS)).order_by(c.fired_at.desc(), c.id).limit(limit)
        if ticker is not None:
            q = q.where(c.ticker == ticker.upper())
        if since is not None:
            q = q.where(c.fired_at >= since)
        with self._read() as conn:
            rows = conn.execute(q).mappings().all()
        frame = pd.DataFrame([dict(r) for r in rows], columns=list(ALERT_COLUMNS))
        frame["article_ids"] = [json.loads(v or "[]") for v in frame["article_ids"]]
        frame["acknowledged"] = frame["acknowledged"].astype(bool)
        for column in ("value", "threshold"):
            frame[column] = frame[column].astype("float64")
        for column in ("fired_at", "window_start", "window_end"):
            frame[column] = _utc_column(frame[column])
        return frame

    def acknowledge(self, alert_id: str) -> bool:
        """Mark an alert as acknowledged; False when no alert has this id."""
        with self._write() as conn:
            res = conn.execute(sa.update(alerts).where(alerts.c.id == alert_id).values(acknowledged=True))
            return res.rowcount > 0

    # ---------------------------------------------------------------------------------------------- stats

    def counts(self) -> dict[str, int]:
        """How many rows each table holds, by table name."""
        with self._read() as conn:
            return {name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
                    for name, t in metadata.tables.items()}
