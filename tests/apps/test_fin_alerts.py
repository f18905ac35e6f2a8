"""Alert rules on hand-made frames: each kind fires at its threshold and not just below, ids are stable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from apps.common.settings import REPO_ROOT
from apps.finance_sentiment.alerts import (
    AlertConfigError,
    IndicatorMoveRule,
    NegativeSpikeRule,
    NewsBurstRule,
    SentimentZRule,
    alert_id,
    evaluate,
    load_rules,
    parse_rules,
)

NOW = datetime(2026, 3, 9, 14, 0, tzinfo=UTC)  # in the 6 h window [12:00, 18:00) and the day [00:00, 24:00)
WINDOW = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
DAY = datetime(2026, 3, 9, tzinfo=UTC)


def _frame(rows: list[tuple[str, str, datetime, float]]) -> pd.DataFrame:
    """Articles like FinanceStore.articles(): id, tickers, ts, score."""
    return pd.DataFrame({"id": [r[0] for r in rows], "tickers": [r[1].split(",") if r[1] else [] for r in rows],
                         "ts": pd.to_datetime([r[2] for r in rows], utc=True), "score": [r[3] for r in rows]})


def _at(hour: float, day: int = 0) -> datetime:
    return DAY + timedelta(days=day, hours=hour)


# ------------------------------------------------------------------------------------------------ negative_spike

SPIKE = NegativeSpikeRule(name="spike", threshold=3, window_hours=6, negative_score=-0.5, severity="critical")


def _spike_articles() -> list[tuple[str, str, datetime, float]]:
    return [("a1", "AAPL", _at(12.2), -0.6), ("a2", "AAPL,MSFT", _at(12.5), -0.5), ("a3", "AAPL", _at(13), -0.9),
            ("a4", "AAPL", _at(13.5), -0.4),  # not negative enough
            ("a5", "AAPL", _at(11.5), -0.8),  # previous window
            ("a6", "AAPL", _at(15), -0.9),  # after now
            ("m1", "MSFT", _at(13), -0.7)]


def test_negative_spike_fires_at_the_threshold_with_the_numbers_in_the_reason():
    alerts = evaluate([SPIKE], _frame(_spike_articles()), None, NOW)
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.ticker == "AAPL"
    assert alert.reason == "AAPL: 3 negative articles in 6 h (threshold 3)"
    assert (alert.value, alert.threshold) == (3.0, 3.0)
    assert alert.article_ids == ["a1", "a2", "a3"]
    assert alert.severity == "critical"
    assert alert.window_start == WINDOW
    assert alert.window_end == WINDOW + timedelta(hours=6)
    assert alert.id == alert_id("spike", "AAPL", WINDOW)


def test_negative_spike_stays_quiet_one_article_below_the_threshold():
    rows = [r for r in _spike_articles() if r[0] != "a3"]
    assert evaluate([SPIKE], _frame(rows), None, NOW) == []


def test_negative_spike_counts_a_late_article_for_its_own_window():
    late = [("b1", "AAPL", _at(9), -0.9), ("b2", "AAPL", _at(10), -0.9), ("b3", "AAPL", _at(11.9), -0.6)]
    alerts = evaluate([SPIKE], _frame(late), None, _at(12.1))
    assert [a.window_start for a in alerts] == [_at(6)]


def test_alert_ids_are_stable_across_re_evaluation():
    first = evaluate([SPIKE], _frame(_spike_articles()), None, NOW)
    again = evaluate([SPIKE], _frame(_spike_articles()), None, NOW)
    assert [a.id for a in first] == [a.id for a in again]
    later = _spike_articles() + [("a7", "AAPL", _at(14.5), -0.7)]
    later_alerts = evaluate([SPIKE], _frame(later), None, NOW + timedelta(hours=1))
    assert [a.id for a in later_alerts] == [a.id for a in first]
    assert later_alerts[0].value == 5.0  # a6 (15:00) and a7 are now known; same window, same id
    renamed = SPIKE.model_copy(update={"name": "spike-2"})
    assert evaluate([renamed], _frame(_spike_articles()), None, NOW)[0].id != first[0].id


def test_rules_restricted_to_tickers_ignore_the_others():
    rule = SPIKE.model_copy(update={"tickers": ["MSFT"]})
    assert evaluate([rule], _frame(_spike_articles()), None, NOW) == []


# --------------------------------------------------------------------------------------------------- sentiment_z

def _z_articles(today: list[float]) -> list[tuple[str, str, datetime, float]]:
    # Daily means of the five previous days: 0.1, 0.2, 0.0, 0.1, 0.1 -> mean 0.1, sample std sqrt(0.02 / 4).
    rows = [("d5a", "AAPL", _at(10, -5), 0.0), ("d5b", "AAPL", _at(11, -5), 0.2),
            ("d4", "AAPL", _at(10, -4), 0.2), ("d3", "AAPL", _at(10, -3), 0.0), ("d2", "AAPL", _at(10, -2), 0.1),
            ("d1", "AAPL", _at(23, -1), 0.1), ("u1", "AAPL", _at(9, -1), float("nan"))]
    return rows + [(f"t{i}", "AAPL", _at(8 + i), score) for i, score in enumerate(today)]


def test_sentiment_z_fires_when_the_day_is_far_below_its_history():
    rule = SentimentZRule(name="z", threshold=-2.0, min_days=5, lookback_days=20)
    alerts = evaluate([rule], _frame(_z_articles([-0.1, 0.0])), None, NOW)
    assert len(alerts) == 1
    alert = alerts[0]
    std = (0.02 / 4) ** 0.5
    assert alert.value == pytest.approx((-0.05 - 0.1) / std)  # -2.1213
    assert alert.threshold == -2.0
    assert alert.window_start == DAY
    assert alert.article_ids == ["t0", "t1"]
    assert alert.reason.startswith("AAPL: daily sentiment z-score -2.12 (mean score -0.05 over 2 articles vs "
                                   "0.10 ± 0.07 over the previous 5 days with news)")
    assert alert.reason.endswith("(threshold -2.00)")


def test_sentiment_z_stays_quiet_just_above_the_threshold():
    rule = SentimentZRule(name="z", threshold=-2.2, min_days=5)
    assert evaluate([rule], _frame(_z_articles([-0.1, 0.0])), None, NOW) == []


def test_sentiment_z_needs_enough_days_of_history():
    rule = SentimentZRule(name="z", threshold=-2.0, min_days=6)
    assert evaluate([rule], _frame(_z_articles([-0.1, 0.0])), None, NOW) == []


# ---------------------------------------------------------------------------------------------------- news_burst

def _burst_articles(current: int) -> list[tuple[str, str, datetime, float]]:
    # Two articles in each of the four windows before [12:00, 18:00): an average of 2.0 per window.
    rows = [(f"p{w}{i}", "AAPL", WINDOW - timedelta(hours=6 * w - 1 - i), 0.0) for w in range(1, 5) for i in range(2)]
    rows += [(f"c{i}", "AAPL", WINDOW + timedelta(minutes=10 * i), 0.0) for i in range(current)]
    return rows + [("old", "AAPL", WINDOW - timedelta(days=3), 0.0)]  # outside the lookback


BURST = NewsBurstRule(name="burst", threshold=3.0, window_hours=6, lookback_windows=4, min_articles=3)


def test_news_burst_fires_at_k_times_the_trailing_average():
    alerts = evaluate([BURST], _frame(_burst_articles(6)), None, NOW)
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.value == pytest.approx(3.0)
    assert alert.article_ids == [f"c{i}" for i in range(6)]
    assert alert.reason == ("AAPL: 6 articles in 6 h, 3.0x the average of 2.0 per 6 h over the previous 4 windows "
                            "(threshold 3.0x)")


def test_news_burst_stays_quiet_just_below():
    assert evaluate([BURST], _frame(_burst_articles(5)), None, NOW) == []


def test_news_burst_floors_a_quiet_baseline():
    rows = [(f"c{i}", "AAPL", WINDOW + timedelta(minutes=i), 0.0) for i in range(3)]
    assert [a.value for a in evaluate([BURST], _frame(rows), None, NOW)] == [3.0]  # 3 / max(0, 1.0)
    assert evaluate([BURST], _frame(rows[:2]), None, NOW) == []  # under min_articles


# ------------------------------------------------------------------------------------------------ indicator_move

def _indicators(ret: float, volatility: float, drawdown: float, rsi: float) -> pd.DataFrame:
    index = pd.DatetimeIndex(pd.to_datetime(["2026-03-05 21:00", "2026-03-06 21:00", "2026-03-09 13:00",
                                             "2026-03-09 21:00"], utc=True), name="ts")
    return pd.DataFrame({"ticker": "AAPL", "ret": [0.0, 0.01, ret, 0.5], "volatility": [0.2, 0.2, volatility, 9.0],
                         "drawdown": [0.0, 0.0, drawdown, -0.9], "rsi": [50.0, 50.0, rsi, 99.0]}, index=index)


@pytest.mark.parametrize(("metric", "threshold", "fires", "quiet", "reason"), [
    ("return", 0.05, dict(ret=-0.06), dict(ret=-0.049), "AAPL: 1-day return -6.0% (threshold ±5.0%)"),
    ("volatility", 0.6, dict(volatility=0.62), dict(volatility=0.59),
     "AAPL: annualised volatility 62.0% (threshold 60.0%)"),
    ("drawdown", 0.2, dict(drawdown=-0.22), dict(drawdown=-0.19),
     "AAPL: drawdown -22.0% from the high (threshold -20.0%)"),
    ("rsi_above", 70, dict(rsi=81.2), dict(rsi=69.9), "AAPL: RSI 81.2 (threshold >= 70)"),
    ("rsi_below", 30, dict(rsi=24.0), dict(rsi=30.1), "AAPL: RSI 24.0 (threshold <= 30)"),
])
def test_indicator_move_fires_on_the_latest_row_and_not_just_below(metric, threshold, fires, quiet, reason):
    rule = IndicatorMoveRule(name=f"ind-{metric}", metric=metric, threshold=threshold)
    base = dict(ret=0.0, volatility=0.2, drawdown=0.0, rsi=50.0)
    news = _frame([("n1", "AAPL", _at(13), -0.3), ("n2", "AAPL", _at(-72), 0.0), ("n3", "MSFT", _at(13), 0.0)])
    alerts = evaluate([rule], news, _indicators(**{**base, **fires}), NOW)  # the 21:00 row is after NOW
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.reason == reason
    assert alert.value == pytest.approx(next(iter(fires.values())))
    assert alert.threshold == threshold
    assert alert.window_start == datetime(2026, 3, 6, 21, tzinfo=UTC)
    assert alert.window_end == datetime(2026, 3, 9, 13, tzinfo=UTC)
    assert alert.article_ids == ["n1"]
    assert evaluate([rule], news, _indicators(**{**base, **quiet}), NOW) == []


def test_indicator_move_reads_a_ts_column_and_several_tickers():
    frame = _indicators(-0.08, 0.2, 0.0, 50.0).reset_index()
    other = frame.assign(ticker="MSFT", ret=0.01)
    rule = IndicatorMoveRule(name="move", metric="return", threshold=0.05)
    alerts = evaluate([rule], None, pd.concat([frame, other]), NOW)
    assert [a.ticker for a in alerts] == ["AAPL"]


# ----------------------------------------------------------------------------------------------------- loading

def test_sample_rules_load_and_cover_every_kind():
    rules = load_rules(REPO_ROOT / "samples" / "alert_rules.toml")
    assert {r.kind for r in rules} == {"sentiment_z", "negative_spike", "news_burst", "indicator_move"}
    assert len({r.name for r in rules}) == len(rules)


def test_all_rules_together_on_one_dataset_sort_by_ticker_and_rule():
    rules = [SPIKE, BURST, IndicatorMoveRule(name="move", threshold=0.05)]
    rows = _spike_articles() + [(f"c{i}", "MSFT", WINDOW + timedelta(minutes=i), 0.0) for i in range(3)]
    alerts = evaluate(rules, _frame(rows), _indicators(-0.06, 0.2, 0.0, 50.0), NOW)
    assert [(a.ticker, a.rule) for a in alerts] == [("AAPL", "burst"), ("AAPL", "move"), ("AAPL", "spike"),
                                                    ("MSFT", "burst")]


def test_articles_with_published_and_seen_at_instead_of_ts():
    frame = _frame(_spike_articles()).rename(columns={"ts": "published"})
    frame["seen_at"] = frame["published"]
    frame.loc[0, "published"] = pd.NaT  # falls back to seen_at
    frame["tickers"] = [",".join(t) for t in frame["tickers"]]  # comma strings work too
    assert [a.article_ids for a in evaluate([SPIKE], frame, None, NOW)] == [["a1", "a2", "a3"]]


@pytest.mark.parametrize(("text", "message"), [
    ('[[rules]]\nname = "x"\nkind = "nope"\nthreshold = 1\n', "rule #1"),
    ('[[rules]]\nname = "x"\nkind = "negative_spike"\nthreshold = 0\n', "rule #1: threshold"),
    ('[[rules]]\nname = "x"\nkind = "news_burst"\nwindow = 6\n', "rule #1: window"),
    ('[[rules]]\nname = "x"\nkind = "sentiment_z"\n[[rules]]\nname = "x"\nkind = "news_burst"\n',
     "duplicate rule name 'x'"),
    ('rule = 1\n', "unknown top-level key"),
    ('[[rules]\n', "invalid TOML"),
])
def test_bad_rules_files_raise_one_line_errors(tmp_path, text, message):
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(AlertConfigError, match=message) as info:
        load_rules(path)
    assert "\n" not in str(info.value)
    assert str(path) in str(info.value)


def test_missing_rules_file_and_empty_document():
    with pytest.raises(AlertConfigError, match="not found"):
        load_rules("/nonexistent/rules.toml")
    assert parse_rules({}) == []
