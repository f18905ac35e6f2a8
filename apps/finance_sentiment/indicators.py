"""Daily / intraday OHLCV files -> technical indicators -> a per-ticker frame joined with news sentiment.

Reading (:func:`read_prices`): the header is ``date,open,high,low,close,adj_close,volume`` (case-insensitive, BOM
allowed). A plain date is a daily bar stamped at the 16:00 session close in the exchange time zone, then converted to
UTC (21:00 UTC in winter, 20:00 in summer); an ISO-8601 time stamp keeps its offset (none: exchange-local). Rows are
sorted stably; exact duplicates are dropped and of rows sharing a time stamp the last is kept (a correction). Empty
cells (or ``nan``, ``null``, ``na``, ``n/a``, ``none``) are missing values. A row whose open, high, low, close or
adj_close is missing, not finite or not positive, or whose volume is negative or infinite, is rejected: left out,
with one warning line per file (the count and the first line); a missing volume stays NaN. Missing trading days (and
rejected rows) are not filled in, so "the previous row" of an indicator is the previous session present in the file.
Every problem a user can fix in the file is a one-line :class:`PriceFileError` naming the file and, where there is
one, the line (line 1 is the header).

Indicators are functions of a price frame sorted by time; row ``t`` uses only rows ``<= t`` (no look-ahead).

Sentiment join (:func:`join_sentiment`): a row at ``ts`` sees only news strictly before ``ts``. Daily, a news item
counts for the first session whose 16:00 close is after it: news after the close, on a weekend or a holiday counts
for the next session in the ticker's rows (the trading calendar here). News before the first session's window (the
previous weekday's close) or after the last row is dropped. Hourly, news in ``(previous row, row)`` counts for the row.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "adj_close", "volume")
HEADER: tuple[str, ...] = ("date", *PRICE_COLUMNS)
TRADING_DAYS = 252
SESSION_CLOSE = pd.Timedelta(hours=16)

_MISSING = frozenset({"", "nan", "null", "na", "n/a", "none"})
_DAILY = re.compile(r"\d{4}-\d{2}-\d{2}")
_INTRADAY = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?")


class PriceFileError(ValueError):
    """A price file the reader cannot use; the message is one line naming the file and the problem."""


def utc(value: datetime | pd.Timestamp | str) -> pd.Timestamp:
    """``value`` as a UTC timestamp; a naive time is read as UTC."""
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def ts_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (time as its index or a ``ts`` column) with the time as a ``ts`` column and a fresh index."""
    rows = frame.reset_index() if "ts" not in frame.columns else frame.reset_index(drop=True)
    if "ts" not in rows.columns and "index" in rows.columns:
        rows = rows.rename(columns={"index": "ts"})
    return rows


# ------------------------------------------------------------------------------------------------------------ reading


def _read_text_table(path: Path) -> pd.DataFrame:
    """Every cell as a stripped string; row ``i`` is line ``i + 2`` of the file (blank lines are kept as rows)."""
    if not path.is_file():
        raise PriceFileError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise PriceFileError(f"{path}: empty file (no header, no rows)")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False, encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PriceFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise PriceFileError(f"{path}: unreadable CSV ({' '.join(str(exc).split())})") from exc
    table.columns = [str(c).strip().lower() for c in table.columns]
    return table.apply(lambda col: col.str.strip())


def _parse_numbers(table: pd.DataFrame, columns: Sequence[str], path: Path) -> pd.DataFrame:
    """Columns as float64; missing tokens become NaN, anything else non-numeric raises on its first line."""
    out = {}
    for col in columns:
        text = table[col]
        missing = text.str.lower().isin(_MISSING)
        values = pd.to_numeric(text.where(~missing), errors="coerce").astype("float64")
        bad = values.isna() & ~missing
        if bad.any():
            row = bad.to_numpy().nonzero()[0][0]
            line = int(table.index[row]) + 2
            raise PriceFileError(f"{path}: non-numeric {col} {text.iloc[row]!r} on line {line}")
        out[col] = values.to_numpy()
    return pd.DataFrame(out, index=table.index)


def _parse_timestamps(dates: pd.Series, tz: str, path: Path) -> pd.DatetimeIndex:
    """Daily dates -> the 16:00 session close in ``tz``; intraday stamps keep their offset (else ``tz``); all in UTC."""
    stamps = pd.Series(pd.NaT, index=dates.index, dtype="datetime64[ns, UTC]")
    daily = dates.str.fullmatch(_DAILY.pattern)
    if daily.any():
        day = pd.to_datetime(dates[daily], format="%Y-%m-%d", errors="coerce")
        close = (day + SESSION_CLOSE).dt.tz_localize(tz, nonexistent="shift_forward", ambiguous="NaT")
        stamps[daily] = close.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    for label, text in dates[~daily].items():
        if not _INTRADAY.fullmatch(text):
            continue
        try:
            ts = pd.Timestamp(text)
        except ValueError:
            continue
        ts = ts.tz_localize(tz, nonexistent="shift_forward", ambiguous="NaT") if ts.tzinfo is None else ts
        stamps[label] = ts.tz_convert("UTC")
    bad = stamps.isna()
    if bad.any():
        label = bad.index[bad.to_numpy().nonzero()[0][0]]
        raise PriceFileError(f"{path}: unparseable date {dates[label]!r} on line {int(label) + 2} "
                             "(expected YYYY-MM-DD or an ISO-8601 time stamp)")
    return pd.DatetimeIndex(stamps.to_numpy(), name="ts").as_unit("ns")


def _reject_bad_rows(frame: pd.DataFrame, labels: pd.Index, path: Path, ticker: str) -> pd.DataFrame:
    """``frame`` without the rows whose price is missing, not finite or not positive, or whose volume is negative or
    infinite (``labels``: the table's row labels, for the line number); one warning when any is rejected."""
    prices = frame[list(PRICE_COLUMNS[:-1])].to_numpy()
    volume = frame["volume"].to_numpy()
    bad = ~(np.isfinite(prices) & (prices > 0)).all(axis=1) | np.isinf(volume) | (volume < 0)
    if not bad.any():
        return frame
    first = int(labels[bad.nonzero()[0][0]]) + 2
    if bad.all():
        raise PriceFileError(f"{path}: no usable row: every price row has a price that is missing, not finite or not "
                             f"positive (the first on line {first})")
    logger.warning("%s (%s): %d rows rejected, with a price that is missing, not finite or not positive or a negative "
                   "volume (the first on line %d); they are not used", path, ticker, int(bad.sum()), first)
    return frame[~bad]


def read_prices(path: str | Path, ticker: str | None = None, tz: str = "America/New_York") -> pd.DataFrame:
    """Read one ticker's OHLCV CSV (rules in the module docstring) into a frame sorted by UTC time.

    Args:
        path: CSV file with the header ``date,open,high,low,close,adj_close,volume``.
        ticker: Name stored in ``frame.attrs["ticker"]``; defaults to the upper-cased file stem.
        tz: Exchange time zone, for the 16:00 session close of daily rows and for intraday stamps without offset.

    Returns:
        float64 price columns on a strictly increasing UTC ``DatetimeIndex`` named ``"ts"``.

    Raises:
        PriceFileError: missing file, empty file, bad header, unparseable date, non-numeric value, or no row left
            once the rows with a bad price are rejected.
    """
    path = Path(path)
    ticker = ticker or path.stem.upper()
    table = _read_text_table(path)
    if tuple(table.columns) != HEADER:
        raise PriceFileError(f"{path}: bad header: expected {','.join(HEADER)}; found {','.join(table.columns)}")
    table = table[~(table == "").all(axis=1)]  # blank lines
    if table.empty:
        raise PriceFileError(f"{path}: empty file (header only, no data rows)")
    index = _parse_timestamps(table["date"], tz, path)
    frame = _parse_numbers(table, PRICE_COLUMNS, path).set_axis(index, axis=0)
    frame = _reject_bad_rows(frame, table.index, path, ticker)

    frame = frame.sort_index(kind="stable")
    exact = frame.reset_index().duplicated(keep="last").to_numpy()
    frame = frame[~exact]
    repeated = frame.index.duplicated(keep="last")
    frame = frame[~repeated]
    if exact.any() or repeated.any():
        logger.warning("%s (%s): dropped %d exact duplicate rows and %d rows with a repeated time stamp (kept the "
                       "last)", path, ticker, int(exact.sum()), int(repeated.sum()))
    n_gap = int(frame["volume"].isna().sum())
    if n_gap:
        logger.info("%s (%s): %d rows without a volume (kept as NaN)", path, ticker, n_gap)
    frame.index.name = "ts"
    frame.attrs["ticker"] = ticker
    return frame


# --------------------------------------------------------------------------------------------------------- indicators


def returns(prices: pd.DataFrame) -> pd.DataFrame:
    """``ret = adj_t / adj_{t-1} - 1`` and ``log_ret = ln(adj_t / adj_{t-1})`` on ``adj_close``; NaN at the first
    row and next to a NaN price (a gap is not bridged)."""
    adj = prices["adj_close"].astype("float64")
    ratio = adj / adj.shift(1)
    return pd.DataFrame({"ret": ratio - 1.0, "log_ret": np.log(ratio)}, index=prices.index)


def rolling_volatility(prices: pd.DataFrame, window: int = 20, annualise: bool = True) -> pd.Series:
    """Sample std (ddof=1) of the last ``window`` log returns, ``* sqrt(252)`` when annualised; NaN until ``window``
    valid returns are in the window. Named ``"volatility"``."""
    vol = returns(prices)["log_ret"].rolling(window, min_periods=window).std(ddof=1)
    if annualise:
        vol = vol * np.sqrt(TRADING_DAYS)
    return vol.rename("volatility")


def rsi(prices: pd.DataFrame, period: int = 14, column: str = "close") -> pd.Series:
    """Wilder's Relative Strength Index in ``[0, 100]``, named ``"rsi"``.

    With ``d_t = c_t - c_{t-1}``, gains ``max(d_t, 0)`` and losses ``max(-d_t, 0)``: the first averages are the simple
    means of the first ``period`` gains and losses (so the first value is at row ``period``), then
    ``avg_t = (avg_{t-1} * (period - 1) + x_t) / period``. ``RSI = 100 - 100 / (1 + avg_gain / avg_loss)``: 100 when
    ``avg_loss`` is 0, 50 when both are. A NaN price restarts the seeding after it (NaN meanwhile).
    """
    delta = prices[column].astype("float64").diff().to_numpy()
    out = np.full(len(delta), np.nan)
    avg_gain = avg_loss = 0.0
    seen = 0  # consecutive valid changes since the last gap
    for t, d in enumerate(delta):
        if np.isnan(d):
            seen = 0
            avg_gain = avg_loss = 0.0
            continue
        gain, loss = max(d, 0.0), max(-d, 0.0)
        seen += 1
        if seen <= period:  # seeding: a running sum, turned into the simple mean at the period-th change
            avg_gain += gain
            avg_loss += loss
            if seen < period:
                continue
            avg_gain /= period
            avg_loss /= period
        else:
            avg_gain = (avg_gain * (period - 1) + gain) / period
            avg_loss = (avg_loss * (period - 1) + loss) / period
        if avg_loss == 0.0:
            out[t] = 50.0 if avg_gain == 0.0 else 100.0
        else:
            out[t] = 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
    return pd.Series(out, index=prices.index, name="rsi")


def volume_zscore(prices: pd.DataFrame, window: int = 20) -> pd.Series:
    """Z-score (ddof=1) of volume against the trailing ``window`` rows that end at the current one, named
    ``"volume_z"``; NaN until the window is full and where its std is 0."""
    volume = prices["volume"].astype("float64")
    roll = volume.rolling(window, min_periods=window)
    std = roll.std(ddof=1)
    return ((volume - roll.mean()) / std.where(std > 0)).rename("volume_z")


def drawdown(prices: pd.DataFrame, column: str = "close") -> pd.Series:
    """Fall from the running maximum, ``close / running max(close) - 1`` in ``[-1, 0]`` (-0.25 is 25% below), named
    ``"drawdown"``; NaN at NaN prices (the running max skips them)."""
    close = prices[column].astype("float64")
    return (close / close.cummax() - 1.0).rename("drawdown")


def indicator_frame(prices: pd.DataFrame, vol_window: int = 20, rsi_period: int = 14,
                    volume_window: int = 20) -> pd.DataFrame:
    """All indicators of one ticker on its price index: columns ``ticker, close, ret, log_ret, volatility, rsi,
    volume_z, drawdown``; ``ticker`` is ``prices.attrs["ticker"]`` (empty string when unset)."""
    frame = pd.concat([
        prices["close"].astype("float64"),
        returns(prices),
        rolling_volatility(prices, window=vol_window),
        rsi(prices, period=rsi_period),
        volume_zscore(prices, window=volume_window),
        drawdown(prices),
    ], axis=1)
    frame.insert(0, "ticker", str(prices.attrs.get("ticker", "")))
    frame.attrs = dict(prices.attrs)
    return frame


# ----------------------------------------------------------------------------------------------------- sentiment join


def _news_targets(rows: pd.DatetimeIndex, news: pd.DatetimeIndex, freq: str, tz: str) -> np.ndarray:
    """Position in ``rows`` of the row each news time counts for, or -1 (rule in the module docstring)."""
    pos = rows.searchsorted(news, side="right")  # first row strictly after the news
    if freq == "D":
        first_day = rows[0].tz_convert(tz).normalize().tz_localize(None)
        prev_close = (first_day - pd.offsets.BDay(1) + SESSION_CLOSE).tz_localize(tz, nonexistent="shift_forward")
        earliest = prev_close.tz_convert("UTC")
    else:
        earliest = rows[0] - pd.Timedelta(hours=1)
    return np.where((pos < len(rows)) & (news >= earliest), pos, -1)


def join_sentiment(indicators: pd.DataFrame, sentiment: pd.DataFrame, freq: str = "D",
                   tz: str = "America/New_York", z_window: int = 20, z_min_periods: int = 5) -> pd.DataFrame:
    """Aggregate news sentiment per ticker per trading day (or hour) and join it onto the indicator rows.

    Args:
        indicators: Indicator rows of one or more tickers: a ``ticker`` column and the time as a UTC index or a
            ``ts`` column (e.g. several :func:`indicator_frame` outputs concatenated).
        sentiment: Columns ``ts`` (UTC; tz-naive is read as UTC), ``ticker``, ``score`` (in ``[-1, 1]``; NaN ignored)
            and ``n_articles`` (how many articles the score stands for, >= 0).
        freq: ``"D"`` for daily rows (sessions closing at 16:00 in ``tz``) or ``"h"`` for hourly rows.
        tz: Exchange time zone of the daily session close.
        z_window: Rows in the rolling window of ``sentiment_z``.
        z_min_periods: Rows with news needed in that window before ``sentiment_z`` is defined.

    Returns:
        Columns ``ticker, ts``, the indicator columns, then ``sentiment_mean`` (the article-weighted mean score of
        the row's news, NaN without news), ``sentiment_n`` (articles, 0 without news) and ``sentiment_z`` (the row's
        mean minus the rolling mean of the means over the last ``z_window`` rows, divided by their rolling std;
        current and past rows only, rows without news skipped, NaN where undefined). Sorted by ticker then time.

    Raises:
        ValueError: unknown ``freq``, missing columns, or a score outside ``[-1, 1]``.
    """
    if freq not in ("D", "h"):
        raise ValueError(f"freq must be 'D' or 'h', got {freq!r}")
    rows = ts_rows(indicators)
    missing = {"ticker", "ts"} - set(rows.columns)
    missing |= {"ts", "ticker", "score", "n_articles"} - set(sentiment.columns)
    if missing:
        raise ValueError(f"missing columns: {', '.join(sorted(missing))}")
    rows["ts"] = pd.to_datetime(rows["ts"], utc=True).dt.as_unit("ns")
    rows = rows.sort_values(["ticker", "ts"], kind="stable").reset_index(drop=True)

    news = sentiment[["ts", "ticker", "score", "n_articles"]].copy()
    news["ts"] = pd.to_datetime(news["ts"], utc=True).dt.as_unit("ns")
    news["score"] = news["score"].astype("float64")
    news["n_articles"] = news["n_articles"].astype("float64")
    news = news.dropna(subset=["score"])
    if ((news["score"] < -1) | (news["score"] > 1)).any():
        raise ValueError("sentiment scores must be within [-1, 1]")
    if (news["n_articles"] < 0).any():
        raise ValueError("n_articles must be >= 0")

    target = np.full(len(news), -1, dtype=np.int64)  # row position in `rows` each news item counts for
    news_ticker = news["ticker"].to_numpy()
    for ticker, group in rows.groupby("ticker", sort=False):
        mask = news_ticker == ticker
        if mask.any():
            pos = _news_targets(pd.DatetimeIndex(group["ts"]), pd.DatetimeIndex(news.loc[mask, "ts"]), freq, tz)
            target[mask] = np.where(pos >= 0, group.index.to_numpy()[np.maximum(pos, 0)], -1)
    dropped = int((target < 0).sum())
    if dropped:
        logger.info("join_sentiment: %d news rows fall outside the indicator rows of their ticker", dropped)
    news = news.assign(row=target, weighted=news["score"] * news["n_articles"])[target >= 0]
    agg = news.groupby("row").agg(weighted=("weighted", "sum"), n=("n_articles", "sum"))

    n = agg["n"].reindex(rows.index, fill_value=0.0)
    rows["sentiment_mean"] = agg["weighted"].reindex(rows.index) / n.where(n > 0)
    rows["sentiment_n"] = n.astype("int64")
    by_ticker = rows.groupby("ticker", sort=False)["sentiment_mean"]
    roll_mean = by_ticker.transform(lambda s: s.rolling(z_window, min_periods=z_min_periods).mean())
    roll_std = by_ticker.transform(lambda s: s.rolling(z_window, min_periods=z_min_periods).std(ddof=1))
    rows["sentiment_z"] = (rows["sentiment_mean"] - roll_mean) / roll_std.where(roll_std > 0)
    first = ["ticker", "ts"]
    return rows[first + [c for c in rows.columns if c not in first]]
