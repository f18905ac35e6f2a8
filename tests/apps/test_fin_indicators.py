"""Price reading, indicators, indicator windows and the sentiment join of ``apps.finance_sentiment.indicators``."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from apps.common.settings import CoreSettings
from apps.finance_sentiment.indicators import (
    PRICE_COLUMNS,
    PriceFileError,
    drawdown,
    indicator_frame,
    join_sentiment,
    read_prices,
    returns,
    rolling_volatility,
    rsi,
    volume_zscore,
)

MARKET = CoreSettings().data_dir / "market_prices"
HEADER = "date,open,high,low,close,adj_close,volume\n"
UTC = "UTC"


def _prices(close: list[float], volume: list[float] | None = None, start: str = "2026-01-05") -> pd.DataFrame:
    """A price frame on consecutive business-day closes (21:00 UTC in winter), open/high/low/adj_close = close."""
    ts = pd.bdate_range(start, periods=len(close), tz=UTC) + pd.Timedelta(hours=21)
    close_arr = np.asarray(close, dtype="float64")
    vol = np.asarray(volume if volume is not None else [1000.0] * len(close), dtype="float64")
    frame = pd.DataFrame({"open": close_arr, "high": close_arr, "low": close_arr, "close": close_arr,
                          "adj_close": close_arr, "volume": vol}, index=pd.DatetimeIndex(ts, name="ts"))
    frame.attrs["ticker"] = "TEST"
    return frame


def _write(tmp_path: Path, text: str, name: str = "abc.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _random_walk(n: int = 80, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    volume = rng.integers(1_000, 5_000, n).astype(float)
    return _prices(close.tolist(), volume.tolist())


# ---------------------------------------------------------------------------------------------------------------------
# Indicators on hand-computed frames


def test_returns_are_simple_and_log_changes_of_adj_close():
    prices = _prices([100.0, 110.0, 99.0])
    prices["close"] = [1.0, 2.0, 3.0]  # returns must ignore close
    out = returns(prices)
    # 110/100 - 1 = 0.1; 99/110 - 1 = -0.1; logs ln(1.1), ln(0.9)
    np.testing.assert_allclose(out["ret"].to_numpy(), [np.nan, 0.1, -0.1])
    np.testing.assert_allclose(out["log_ret"].to_numpy(), [np.nan, math.log(1.1), math.log(0.9)])


def test_rsi_matches_wilder_on_textbook_sequence():
    # The classic 15-price example (Wilder / StockCharts), plus one more price to check the smoothing step.
    close = [44.34, 44.09, 44.15, 43.61, 44.33, 44.83, 45.10, 45.42, 45.84, 46.08, 45.89, 46.03, 45.61, 46.28, 46.28,
             46.00]
    # Changes: -.25 +.06 -.54 +.72 +.50 +.27 +.32 +.42 +.24 -.19 +.14 -.42 +.67 0.
    # Gains sum 3.34, losses sum 1.40 -> avg gain 3.34/14, avg loss 1.40/14 = 0.1.
    # RSI_14 = 100 - 100 / (1 + 3.34/1.40) = 100 * 3.34 / 4.74 = 70.4641 (StockCharts prints 70.53 from rounded avgs).
    # Next change -0.28: avg gain = (3.34/14 * 13 + 0) / 14 = 43.42/196, avg loss = (0.1 * 13 + 0.28) / 14 = 22.12/196.
    # RSI_15 = 100 * 43.42 / (43.42 + 22.12) = 66.2496.
    out = rsi(_prices(close), period=14)
    assert out.iloc[:14].isna().all()
    assert out.iloc[14] == pytest.approx(100 * 3.34 / 4.74)
    assert out.iloc[14] == pytest.approx(70.4641, abs=1e-4)
    assert out.iloc[15] == pytest.approx(100 * 43.42 / 65.54)
    assert out.iloc[15] == pytest.approx(66.2496, abs=1e-4)


def test_rsi_is_100_when_prices_only_rise_and_stays_in_range():
    assert rsi(_prices([1.0, 2.0, 3.0, 4.0]), period=3).iloc[-1] == 100.0
    assert rsi(_prices([5.0, 5.0, 5.0, 5.0]), period=3).iloc[-1] == 50.0
    values = rsi(_random_walk(300)).dropna()
    assert values.between(0, 100).all()


def test_rolling_volatility_is_annualised_std_of_log_returns():
    # Log returns 0.01, -0.01, 0.02: mean 0.02/3, deviations 1/300, -5/300, 4/300.
    # Sample variance = (1 + 25 + 16) / 300**2 / 2 = 21/90000 -> std = sqrt(21)/300 = 0.0152753.
    close = (100 * np.exp(np.cumsum([0.0, 0.01, -0.01, 0.02]))).tolist()
    daily = rolling_volatility(_prices(close), window=3, annualise=False)
    assert daily.iloc[:3].isna().all()
    assert daily.iloc[3] == pytest.approx(math.sqrt(21) / 300)
    yearly = rolling_volatility(_prices(close), window=3)
    assert yearly.iloc[3] == pytest.approx(math.sqrt(21) / 300 * math.sqrt(252))  # 0.24249


def test_volume_zscore_uses_trailing_window_including_current():
    # Window 3 at row 2: [10, 20, 30] mean 20, std 10 -> (30-20)/10 = 1; row 3: [20, 30, 10] -> (10-20)/10 = -1.
    out = volume_zscore(_prices([1.0] * 5, volume=[10, 20, 30, 10, 10]), window=3)
    assert out.iloc[:2].isna().all()
    assert out.iloc[2] == pytest.approx(1.0)
    assert out.iloc[3] == pytest.approx(-1.0)
    # Row 4: [30, 10, 10] mean 50/3, std sqrt(((40/3)^2 + 2 (20/3)^2) / 2) = sqrt(400/3) -> (10 - 50/3)/11.547.
    assert out.iloc[4] == pytest.approx((10 - 50 / 3) / math.sqrt(400 / 3))


def test_volume_zscore_is_nan_for_constant_volume():
    assert volume_zscore(_prices([1.0] * 4, volume=[7, 7, 7, 7]), window=3).isna().all()


def test_drawdown_is_fall_from_running_max():
    out = drawdown(_prices([100.0, 120.0, 90.0, 110.0]))
    np.testing.assert_allclose(out.to_numpy(), [0.0, 0.0, -0.25, 110 / 120 - 1])
    assert out.iloc[3] == pytest.approx(-0.0833, abs=1e-4)


def test_changing_a_future_row_leaves_earlier_indicators_unchanged():
    prices = _random_walk(80)
    before = indicator_frame(prices, vol_window=10, rsi_period=5, volume_window=10)
    changed = prices.copy()
    changed.iloc[50:, :] = changed.iloc[50:, :] * 3.0
    changed.iloc[60, :] = np.nan
    after = indicator_frame(changed, vol_window=10, rsi_period=5, volume_window=10)
    pd.testing.assert_frame_equal(before.iloc[:50], after.iloc[:50])
    assert not before.iloc[50:].equals(after.iloc[50:])


def test_indicator_frame_has_every_indicator_and_the_ticker():
    frame = indicator_frame(_random_walk(40))
    assert list(frame.columns) == ["ticker", "close", "ret", "log_ret", "volatility", "rsi", "volume_z", "drawdown"]
    assert (frame["ticker"] == "TEST").all()
    assert frame.index.name == "ts"


def test_nan_price_is_a_gap_not_bridged():
    prices = _prices([100.0, 101.0, np.nan, 103.0, 104.0])
    out = returns(prices)["ret"]
    assert out.iloc[2:4].isna().all()
    assert out.iloc[4] == pytest.approx(104 / 103 - 1)


# ---------------------------------------------------------------------------------------------------------------------
# Reading files


def test_read_prices_parses_sorts_and_names_columns(tmp_path):
    path = _write(tmp_path, HEADER + "2026-01-06,2,2,2,2,2,20\n2026-01-05,1,1,1,1,1.5,10\n", "aapl.csv")
    prices = read_prices(path)
    assert list(prices.columns) == list(PRICE_COLUMNS)
    assert prices.attrs["ticker"] == "AAPL"
    assert prices.index.name == "ts"
    assert str(prices.index.tz) == "UTC"
    assert prices.index.is_monotonic_increasing
    assert prices["adj_close"].tolist() == [1.5, 2.0]
    assert read_prices(path, ticker="X").attrs["ticker"] == "X"


def test_daily_row_is_session_close_in_utc_across_dst(tmp_path):
    # New York is UTC-5 in January (EST) and UTC-4 in July (EDT); 2026-03-09 is the Monday after DST starts (03-08).
    path = _write(tmp_path, HEADER + "2026-01-15,1,1,1,1,1,1\n2026-03-06,1,1,1,1,1,1\n2026-03-09,1,1,1,1,1,1\n"
                  "2026-07-15,1,1,1,1,1,1\n")
    assert list(read_prices(path).index) == [
        pd.Timestamp("2026-01-15 21:00", tz=UTC), pd.Timestamp("2026-03-06 21:00", tz=UTC),
        pd.Timestamp("2026-03-09 20:00", tz=UTC), pd.Timestamp("2026-07-15 20:00", tz=UTC)]


def test_intraday_timestamps_keep_their_offset(tmp_path):
    path = _write(tmp_path, HEADER + "2026-03-13T09:30:00-04:00,1,1,1,1,1,1\n2026-03-13T14:00:00Z,1,1,1,1,1,1\n"
                  "2026-01-13 10:00,1,1,1,1,1,1\n")
    assert list(read_prices(path).index) == [
        pd.Timestamp("2026-01-13 15:00", tz=UTC),  # no offset: exchange time (EST)
        pd.Timestamp("2026-03-13 13:30", tz=UTC), pd.Timestamp("2026-03-13 14:00", tz=UTC)]


def test_duplicates_drop_exact_copies_and_keep_last_of_a_timestamp(tmp_path, caplog):
    text = HEADER + ("2026-01-05,1,1,1,1,1,10\n2026-01-06,2,2,2,2,2,20\n2026-01-06,2,2,2,2,2,20\n"
                     "2026-01-07,3,3,3,3,3,30\n2026-01-07,3,3,3,3,3.5,31\n")
    with caplog.at_level(logging.WARNING, logger="apps.finance_sentiment.indicators"):
        prices = read_prices(_write(tmp_path, text))
    assert len(prices) == 3
    assert prices.index.is_unique
    assert prices["adj_close"].tolist() == [1.0, 2.0, 3.5]
    assert prices["volume"].iloc[-1] == 31
    assert "1 exact duplicate rows and 1 rows with a repeated time stamp" in caplog.text


def test_rows_with_a_missing_price_are_rejected_and_no_rows_are_invented(tmp_path, caplog):
    # 2026-01-07 is missing from the file; 2026-01-08 has empty values, 2026-01-09 a NaN adj_close, 2026-01-12 no volume
    text = HEADER + ("2026-01-05,1,1,1,1,1,10\n2026-01-06,2,2,2,2,2,20\n2026-01-08,,,,,,\n2026-01-09,4,4,4,4,NaN,40\n"
                     "2026-01-12,5,5,5,5,5,\n")
    path = _write(tmp_path, text)
    with caplog.at_level(logging.WARNING, logger="apps.finance_sentiment.indicators"):
        prices = read_prices(path)
    assert [ts.day for ts in prices.index] == [5, 6, 12]  # neither the rejected sessions nor 2026-01-07 come back
    assert prices[list(PRICE_COLUMNS[:-1])].notna().all().all()
    assert np.isnan(prices["volume"].iloc[2])  # a missing volume is kept as NaN
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and str(path) in warnings[0]
    assert "2 rows rejected" in warnings[0] and "the first on line 4" in warnings[0]


@pytest.mark.parametrize("cells", ["0,1,1,1,1", "1,1,1,0,1", "1,1,1,1,0", "1,1,1,-5,-5", "1,1,1,inf,inf",
                                   "1,1,1,-inf,1", "1,1,1,1e999,1", "1,1,1,NaN,1", "1,,1,1,1"])
def test_a_price_that_is_not_finite_or_not_positive_is_rejected_with_a_warning(tmp_path, caplog, cells):
    text = HEADER + f"2026-01-05,2,2,2,2,2,10\n2026-01-06,{cells},20\n2026-01-07,3,3,3,3,3,30\n"
    with caplog.at_level(logging.WARNING, logger="apps.finance_sentiment.indicators"):
        prices = read_prices(_write(tmp_path, text))
    assert [ts.day for ts in prices.index] == [5, 7] and prices["close"].tolist() == [2.0, 3.0]
    assert "1 rows rejected" in caplog.text and "the first on line 3" in caplog.text
    assert returns(prices)["ret"].iloc[1] == pytest.approx(0.5)  # measured against the last good close


@pytest.mark.parametrize("volume", ["-1", "inf"])
def test_a_negative_or_infinite_volume_is_rejected_but_a_zero_volume_is_kept(tmp_path, caplog, volume):
    text = HEADER + f"2026-01-05,2,2,2,2,2,0\n2026-01-06,2,2,2,2,2,{volume}\n"
    prices = read_prices(_write(tmp_path, text))
    assert prices["volume"].tolist() == [0.0] and "1 rows rejected" in caplog.text


def test_a_file_of_nothing_but_bad_prices_is_a_price_file_error(tmp_path):
    path = _write(tmp_path, HEADER + "2026-01-05,0,0,0,0,0,1\n2026-01-06,nan,nan,nan,nan,nan,1\n")
    with pytest.raises(PriceFileError, match="no usable row: .* missing, not finite or not positive .*line 2"):
        read_prices(path)


@pytest.mark.parametrize(("text", "needle"), [
    ("date,open,high,low,close,volume\n2026-01-05,1,1,1,1,1\n",
     "bad header: expected date,open,high,low,close,adj_close,volume; found date,open,high,low,close,volume"),
    (HEADER + "2026-01-05,1,1,1,1,1,1\n2026-01-06,1,1,1,1,1,1\n01/07/2026,1,1,1,1,1,1\n",
     "unparseable date '01/07/2026' on line 4"),
    (HEADER + "2026-02-30,1,1,1,1,1,1\n", "unparseable date '2026-02-30' on line 2"),
    (HEADER + "2026-01-05,1,1,1,1,1,1\n2026-01-06,1,1,1,abc,1,1\n", "non-numeric close 'abc' on line 3"),
    (HEADER, "empty file (header only"),
    ("", "empty file (no header"),
])
def test_bad_files_raise_price_file_error_naming_the_problem(tmp_path, text, needle):
    path = _write(tmp_path, text)
    with pytest.raises(PriceFileError) as info:
        read_prices(path)
    message = str(info.value)
    assert needle in message
    assert str(path) in message
    assert "\n" not in message


def test_missing_file_raises_price_file_error(tmp_path):
    with pytest.raises(PriceFileError, match="file not found"):
        read_prices(tmp_path / "nope.csv")


# ---------------------------------------------------------------------------------------------------------------------
# Sentiment join


def _session_rows(days: list[str], ticker: str = "AAPL") -> pd.DataFrame:
    """Indicator-like rows at the 16:00 New York close of each day."""
    ts = pd.DatetimeIndex([pd.Timestamp(f"{d} 16:00", tz="America/New_York").tz_convert(UTC) for d in days], name="ts")
    return pd.DataFrame({"ticker": ticker, "close": np.arange(len(days), dtype=float)}, index=ts)


def _news(rows: list[tuple[str, str, float, int]]) -> pd.DataFrame:
    """News rows from (New York local time, ticker, score, n_articles), stored in UTC."""
    return pd.DataFrame({
        "ts": [pd.Timestamp(t, tz="America/New_York").tz_convert(UTC) for t, *_ in rows],
        "ticker": [r[1] for r in rows], "score": [r[2] for r in rows], "n_articles": [r[3] for r in rows]})


def test_daily_join_assigns_after_close_and_weekend_news_to_next_session():
    rows = _session_rows(["2026-03-12", "2026-03-13", "2026-03-16", "2026-03-17"])  # Thu, Fri, Mon, Tue
    news = _news([
        ("2026-03-12 15:59", "AAPL", 0.5, 1),  # before Thursday's close -> Thursday
        ("2026-03-12 16:00", "AAPL", -0.5, 1),  # at the close -> Friday
        ("2026-03-12 18:30", "AAPL", -0.1, 3),  # after the close -> Friday
        ("2026-03-14 11:00", "AAPL", 0.8, 2),  # Saturday -> Monday
        ("2026-03-15 20:00", "AAPL", 0.2, 2),  # Sunday -> Monday
        ("2026-03-16 09:00", "MSFT", 1.0, 5),  # another ticker: not joined to AAPL
        ("2026-03-17 17:00", "AAPL", 0.9, 1),  # after the last close: no row
        ("2026-03-01 10:00", "AAPL", 0.9, 1),  # before the first session's window: no row
    ])
    out = join_sentiment(rows, news)
    assert list(out.columns) == ["ticker", "ts", "close", "sentiment_mean", "sentiment_n", "sentiment_z"]
    assert out["sentiment_n"].tolist() == [1, 4, 4, 0]
    # Friday: (-0.5 * 1 + -0.1 * 3) / 4 = -0.2; Monday: (0.8 * 2 + 0.2 * 2) / 4 = 0.5
    np.testing.assert_allclose(out["sentiment_mean"].to_numpy(), [0.5, -0.2, 0.5, np.nan])


def test_daily_join_moves_holiday_news_to_next_session():
    rows = _session_rows(["2026-04-02", "2026-04-06"])  # Good Friday 2026-04-03 is closed
    out = join_sentiment(rows, _news([("2026-04-03 12:00", "AAPL", 0.4, 1), ("2026-04-01 17:00", "AAPL", 0.1, 1)]))
    assert out["sentiment_mean"].tolist() == [0.1, 0.4]


def test_join_handles_several_tickers_and_rolling_z():
    days = ["2026-03-09", "2026-03-10", "2026-03-11", "2026-03-12"]
    rows = pd.concat([_session_rows(days, "AAPL"), _session_rows(days, "MSFT")])
    news = _news([(f"{d} 10:00", "AAPL", s, 1) for d, s in zip(days, [0.1, 0.2, 0.6, 0.1])]
                 + [("2026-03-10 10:00", "MSFT", -0.3, 2)])
    out = join_sentiment(rows, news, z_window=3, z_min_periods=3)
    aapl = out[out["ticker"] == "AAPL"]
    msft = out[out["ticker"] == "MSFT"]
    # Row 3 (03-11): window [0.1, 0.2, 0.6], mean 0.3, sample std sqrt(0.07) -> z = 0.3 / 0.264575 = 1.1339.
    assert aapl["sentiment_z"].iloc[2] == pytest.approx(0.3 / math.sqrt(0.07))
    assert aapl["sentiment_z"].iloc[:2].isna().all()
    assert msft["sentiment_n"].tolist() == [0, 2, 0, 0]
    assert msft["sentiment_z"].isna().all()


def test_hourly_join_counts_news_strictly_before_each_row():
    ts = pd.DatetimeIndex(pd.to_datetime(["2026-03-13 14:00", "2026-03-13 15:00", "2026-03-13 16:00"], utc=True),
                          name="ts")
    rows = pd.DataFrame({"ticker": "SPY", "close": [1.0, 2.0, 3.0]}, index=ts)
    news = pd.DataFrame({"ts": pd.to_datetime(["2026-03-13 13:30", "2026-03-13 14:00", "2026-03-13 14:59",
                                               "2026-03-13 11:00"], utc=True),
                         "ticker": "SPY", "score": [0.2, 0.4, 0.6, 0.9], "n_articles": 1})
    out = join_sentiment(rows, news, freq="h")
    assert out["sentiment_n"].tolist() == [1, 2, 0]
    np.testing.assert_allclose(out["sentiment_mean"].to_numpy(), [0.2, 0.5, np.nan])


def test_join_rejects_scores_outside_range_and_unknown_freq():
    rows = _session_rows(["2026-03-12"])
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        join_sentiment(rows, _news([("2026-03-12 10:00", "AAPL", 1.5, 1)]))
    with pytest.raises(ValueError, match="freq"):
        join_sentiment(rows, _news([("2026-03-12 10:00", "AAPL", 0.5, 1)]), freq="W")


# ---------------------------------------------------------------------------------------------------------------------
# Real data (skipped when ../shared/datasets is absent)

REAL_FILES = sorted(MARKET.glob("*.csv")) + sorted((MARKET / "stooq_2026").glob("*.csv")) if MARKET.is_dir() else []
needs_market = pytest.mark.skipif(not MARKET.is_dir(), reason=f"market_prices not found at {MARKET}")


@pytest.mark.data
@needs_market
def test_every_real_price_file_reads_with_sane_indicators():
    assert len(REAL_FILES) >= 18
    for path in REAL_FILES:
        prices = read_prices(path)
        frame = indicator_frame(prices)
        assert len(prices) > 60, path
        assert prices.index.is_unique and prices.index.is_monotonic_increasing, path
        assert set(prices.index.hour) <= {20, 21}, path  # 16:00 New York in EDT / EST
        assert (prices[["open", "high", "low", "close", "adj_close"]] > 0).all().all(), path
        assert frame["rsi"].dropna().between(0, 100).all(), path
        assert (frame["volatility"].dropna() > 0).all(), path
        assert frame["volatility"].dropna().lt(3).all(), path
        assert frame["drawdown"].dropna().between(-1, 0).all(), path
        assert frame["ret"].iloc[1:].notna().all(), path


@pytest.mark.data
@needs_market
def test_real_files_match_readme_facts():
    spy = read_prices(MARKET / "stooq_2026" / "SPY.csv")
    assert spy.loc[pd.Timestamp("2026-03-13 20:00", tz=UTC), "close"] == 657.1572
    assert len(spy) == 82
    msft = read_prices(MARKET / "MSFT.csv")
    assert pd.Timestamp("2025-12-31 21:00", tz=UTC) not in msft.index  # removed copy-paste row, not re-invented
