"""The finance-sentiment store on SQLite and PostgreSQL: idempotent saves, restarts, batches, filters, series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from apps.finance_sentiment.alerts import Alert, alert_id
from apps.finance_sentiment.feeds import Article, Deduper, FeedState
from apps.finance_sentiment.store import FinanceStore, UnknownArticle

T0 = datetime(2026, 3, 9, 14, 0, tzinfo=UTC)


def _article(n: int, tickers=("AAPL",), source="cnbc", published: datetime | None = None, url: str | None = None,
             hours: float = 0.0) -> Article:
    return Article(id=f"guid-{n}", url=f"https://example.com/story/{n}" if url is None else url,
                   title=f"Story {n}", summary=f"Summary of story number {n}.",
                   published=published if published is not None else T0 + timedelta(hours=hours),
                   seen_at=T0 + timedelta(hours=hours, minutes=5), source=source, content_hash=f"{n:064x}",
                   tickers=sorted(tickers))


def _score(value: float, label: str = "negative") -> dict:
    return {"score": value, "label": label, "probs": {"negative": 0.7, "neutral": 0.2, "positive": 0.1},
            "explanation": {"tokens": ["weak", "demand"], "weights": [0.6, 0.3]},
            "sentences": [{"text": "Demand is weak.", "label": "negative", "positive": 0.1, "neutral": 0.2,
                           "negative": 0.7, "score": -0.6},
                          {"text": "Shares fell.", "label": "negative", "positive": 0.05, "neutral": 0.15,
                           "negative": 0.8, "score": -0.75}]}


def _prices(days: int, start: str = "2026-03-02 21:00") -> pd.DataFrame:
    index = pd.date_range(start, periods=days, freq="D", tz="UTC", name="ts")
    close = 100.0 + np.arange(days, dtype="float64")
    return pd.DataFrame({"open": close - 1, "high": close + 1, "low": close - 2, "close": close, "adj_close": close,
                         "volume": 1e6 + np.arange(days)}, index=index)


def _alert(rule: str = "spike", ticker: str = "AAPL", start: datetime = T0) -> Alert:
    return Alert(id=alert_id(rule, ticker, start), ticker=ticker, rule=rule, severity="warning", fired_at=T0,
                 window_start=start, window_end=start + timedelta(hours=6), reason=f"{ticker}: 3 negative articles",
                 value=3.0, threshold=3.0, article_ids=["guid-1", "guid-2", "guid-3"])


@pytest.fixture
def store(db_url):
    s = FinanceStore(db_url).create()
    yield s
    s.close()


def test_saving_the_same_articles_twice_keeps_the_counts(store):
    batch = [_article(1, ("AAPL", "MSFT")), _article(2), _article(3, ())]
    scores = [_score(-0.6), None, _score(0.4, "positive")]
    assert store.save_articles(batch, scores) == 3
    first = store.counts()
    assert first["articles"] == 3
    assert first["article_tickers"] == 3
    assert first["sentence_scores"] == 4
    assert store.save_articles(batch, scores) == 0
    assert store.save_articles(batch) == 0  # a re-poll without scores keeps the stored scores
    assert store.counts() == first
    assert store.article("guid-1")["score"] == pytest.approx(-0.6)


def test_an_article_with_a_known_url_under_a_new_id_is_not_stored_twice(store):
    store.save_articles([_article(1)])
    again = _article(1).model_copy(update={"id": "other-guid"})
    assert store.save_articles([again], [_score(-0.9)]) == 0
    assert store.counts()["articles"] == 1
    assert store.counts()["sentence_scores"] == 0


def test_articles_without_a_link_do_not_collide_on_the_url(store):
    assert store.save_articles([_article(1, url=""), _article(2, url="")]) == 2
    assert store.article("guid-1")["url"] == ""
    ids, urls, _ = store.known_keys()
    assert ids == {"guid-1", "guid-2"}
    assert urls == set()


def test_scores_saved_later_update_the_article_and_replace_its_sentences(store):
    store.save_articles([_article(1)])
    assert np.isnan(store.articles()["score"].iloc[0])
    store.save_articles([_article(1)], [_score(-0.6)])
    rescored = _score(0.2, "neutral")
    rescored["sentences"] = rescored["sentences"][:1]
    store.save_articles([_article(1)], [rescored])
    article = store.article("guid-1")
    assert article["score"] == pytest.approx(0.2)
    assert article["label"] == "neutral"
    assert article["probs"] == {"negative": 0.7, "neutral": 0.2, "positive": 0.1}
    assert article["explanation"]["tokens"] == ["weak", "demand"]
    assert [s["text"] for s in article["sentences"]] == ["Demand is weak."]
    assert article["sentences"][0]["negative"] == pytest.approx(0.7)
    assert article["scored_at"].tzinfo is not None


def test_unknown_article_raises(store):
    with pytest.raises(UnknownArticle, match="unknown article nope"):
        store.article("nope")


def test_dedup_keys_survive_a_new_store_object(db_url, store):
    batch = [_article(1), _article(2)]
    store.save_articles(batch)
    restarted = FinanceStore(db_url).create()
    try:
        ids, urls, hashes = restarted.known_keys()
        deduper = Deduper(ids, urls, hashes, min_hash_chars=0)
        repeat = _article(3).model_copy(update={"url": "https://EXAMPLE.com/story/1?utm_source=x"})
        assert deduper.filter([*batch, repeat, _article(4)]) == [_article(4)]
    finally:
        restarted.close()


def test_feed_states_roundtrip_and_update(store):
    state = FeedState(etag='"abc"', last_modified="Mon, 09 Mar 2026 14:00:00 GMT", next_poll_at=1773064800.5,
                      last_status="ok", last_ok_at=1773064500.25, entries_seen=12)
    store.save_feed_state("cnbc", state, url="https://cnbc.example/rss")
    store.save_feed_state("nyt", FeedState())
    failed = state.model_copy(update={"failures": 2, "last_status": "error", "last_error": "HTTP 503"})
    store.save_feed_state("cnbc", failed)
    states = store.feed_states()
    assert states == {"cnbc": failed, "nyt": FeedState()}
    assert store.counts()["feeds"] == 2


def test_a_batch_that_raises_rolls_back_whole_and_keeps_earlier_batches(store):
    with store.batch():
        store.save_articles([_article(1)], [_score(-0.5)])
        store.save_feed_state("cnbc", FeedState(entries_seen=1))
    with pytest.raises(RuntimeError, match="SIGTERM"), store.batch():
        store.save_articles([_article(2), _article(3)], [_score(-0.1), None])
        store.save_feed_state("cnbc", FeedState(entries_seen=3))
        store.save_prices("AAPL", _prices(3))
        assert store.counts()["articles"] == 3  # reads inside the batch see its writes
        raise RuntimeError("SIGTERM mid-cycle")
    counts = store.counts()
    assert counts["articles"] == 1
    assert counts["sentence_scores"] == 2
    assert counts["prices"] == 0
    assert store.feed_states()["cnbc"].entries_seen == 1
    assert store.known_keys()[0] == {"guid-1"}


def test_a_keyboard_interrupt_in_a_batch_rolls_it_back(store):
    with pytest.raises(KeyboardInterrupt), store.batch():
        store.save_articles([_article(1)])
        raise KeyboardInterrupt
    assert store.counts()["articles"] == 0


def test_prices_upsert_replaces_rows_and_reads_back_like_read_prices(store):
    frame = _prices(5)
    frame.iloc[2, frame.columns.get_loc("volume")] = np.nan
    assert store.save_prices("aapl", frame) == 5
    corrected = _prices(5).iloc[3:].copy()
    corrected["close"] = [500.0, 600.0]
    extended = pd.concat([corrected, _prices(7).iloc[5:]])
    assert store.save_prices("AAPL", extended) == 4
    back = store.prices("AAPL")
    assert store.counts()["prices"] == 7
    assert back.index.name == "ts"
    assert str(back.index.tz) == "UTC"
    assert back.attrs["ticker"] == "AAPL"
    assert list(back.columns) == ["open", "high", "low", "close", "adj_close", "volume"]
    assert back["close"].tolist() == [100.0, 101.0, 102.0, 500.0, 600.0, 105.0, 106.0]
    assert np.isnan(back["volume"].iloc[2])
    assert back.index[0] == pd.Timestamp("2026-03-02 21:00", tz="UTC")
    assert len(store.prices("AAPL", since=datetime(2026, 3, 6, tzinfo=UTC))) == 3
    assert store.prices("MSFT").empty


def test_alerts_are_saved_once_per_id_and_can_be_acknowledged(store):
    first = [_alert(), _alert("burst")]
    assert store.save_alerts(first) == 2
    assert store.save_alerts([*first, _alert(start=T0 + timedelta(hours=6))]) == 1
    assert store.counts()["alerts"] == 3
    assert store.acknowledge(first[0].id) is True
    assert store.acknowledge("missing") is False
    assert store.save_alerts([_alert()]) == 0  # re-firing does not reset the acknowledgement
    frame = store.alerts(ticker="aapl")
    row = frame.set_index("id").loc[first[0].id]
    assert bool(row["acknowledged"]) is True
    assert row["article_ids"] == ["guid-1", "guid-2", "guid-3"]
    assert row["window_start"] == pd.Timestamp(T0)
    assert store.alerts(ticker="MSFT").empty
    assert len(store.alerts(since=T0 + timedelta(minutes=1))) == 0
    assert len(store.alerts(limit=2)) == 2


def test_articles_filter_by_ticker_source_and_time_newest_first(store):
    store.save_articles([
        _article(1, ("AAPL",), "cnbc", hours=0),
        _article(2, ("MSFT",), "nyt", hours=1),
        _article(3, ("AAPL", "MSFT"), "nyt", hours=2),
        _article(4, ("NVDA",), "cnbc", hours=3),
        _article(5, ("AAPL",), "cnbc", hours=4).model_copy(update={"published": None}),  # ts = seen_at
    ])
    assert store.articles()["id"].tolist() == ["guid-5", "guid-4", "guid-3", "guid-2", "guid-1"]
    assert store.articles(tickers="aapl")["id"].tolist() == ["guid-5", "guid-3", "guid-1"]
    assert store.articles(tickers=["MSFT", "NVDA"])["id"].tolist() == ["guid-4", "guid-3", "guid-2"]
    assert store.articles(sources="nyt")["id"].tolist() == ["guid-3", "guid-2"]
    window = store.articles(since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=3))
    assert window["id"].tolist() == ["guid-3", "guid-2"]
    assert store.articles(tickers="AAPL", sources="cnbc", limit=1)["id"].tolist() == ["guid-5"]
    frame = store.articles()
    assert frame.loc[frame["id"] == "guid-5", "ts"].iloc[0] == pd.Timestamp(T0 + timedelta(hours=4, minutes=5))
    assert frame.loc[frame["id"] == "guid-3", "tickers"].iloc[0] == ["AAPL", "MSFT"]
    assert store.articles(tickers="TSLA").empty


def test_sentiment_series_averages_scored_articles_per_day(store):
    day1 = datetime(2026, 3, 9, 1, 0, tzinfo=UTC)
    day2 = datetime(2026, 3, 10, 23, 0, tzinfo=UTC)
    batch = [_article(1, published=day1), _article(2, published=day1 + timedelta(hours=20)),
             _article(3, published=day1 + timedelta(hours=22)),  # unscored: left out
             _article(4, published=day2), _article(5, ("MSFT",), published=day2)]
    store.save_articles(batch, [_score(-0.6), _score(0.2), None, _score(0.5), _score(-1.0)])
    daily = store.sentiment_series("aapl")
    assert list(daily.columns) == ["ts", "ticker", "score", "n_articles"]
    assert daily["ts"].tolist() == [pd.Timestamp("2026-03-09", tz="UTC"), pd.Timestamp("2026-03-10", tz="UTC")]
    assert daily["ticker"].tolist() == ["AAPL", "AAPL"]
    assert daily["score"].tolist() == pytest.approx([(-0.6 + 0.2) / 2, 0.5])
    assert daily["n_articles"].tolist() == [2, 1]
    hourly = store.sentiment_series("AAPL", freq="h")
    assert hourly["n_articles"].tolist() == [1, 1, 1]
    per_article = store.sentiment_series("AAPL", freq=None)
    assert per_article["ts"].tolist() == [pd.Timestamp(day1), pd.Timestamp(day1 + timedelta(hours=20)),
                                          pd.Timestamp(day2)]
    assert store.sentiment_series("TSLA").empty


def test_save_prices_writes_thousands_of_rows_per_second(store):
    frame = _prices(3000, start="2000-01-03 21:00")
    started = datetime.now(UTC)
    assert store.save_prices("SPY", frame) == 3000
    assert store.save_prices("SPY", frame) == 3000  # the upsert path
    elapsed = (datetime.now(UTC) - started).total_seconds()
    assert store.counts()["prices"] == 3000
    assert elapsed < 10, f"6000 price rows took {elapsed:.1f} s"
