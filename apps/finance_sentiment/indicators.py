"""Daily / intraday OHLCV files -> technical indicators -> a per-ticker frame joined with news sentiment.

Reading (:func:`read_prices`)
    Files have the header ``date,open,high,low,close,adj_close,volume`` (names matched case-insensitively, a BOM is
    allowed, the order is fixed). Every problem a user can fix in the file raises :class:`PriceFileError` with a
    one-line message that names the file and, where there is one, the line (line 1 is the header).

    Time stamps. A plain date (``2026-03-13``) is a daily bar and is stamped at the session close, 16:00 in the
    exchange time zone (``tz``), then converted to UTC: 21:00 UTC in winter (EST) and 20:00 UTC in summer (EDT). An
    intraday ISO-8601 time stamp keeps its own offset (``2026-03-13T09:30:00-04:00``, ``...Z``) and is converted to
    UTC; one without an offset is read as exchange-local time. Anything else is an unparseable date.

    Order and duplicates. Rows are sorted by time (stably, so file order breaks ties). Exact duplicate rows are
    dropped, and of rows that share a time stamp but differ, the last one in the file is kept (a later row is taken
    as a correction). Both counts are logged as one warning.

    Gaps. Empty cells (or ``nan``, ``null``, ``na``, ``n/a``, ``none``) become NaN, and a row whose values are all
    empty stays as an all-NaN row at its time stamp. Missing trading days are *not* filled in: no rows are invented,
    so a day absent from the file is absent from the frame (e.g. MSFT and NVDA lack 2025-12-31 in the Yahoo set).
    Indicators therefore treat "the previous row" as the previous session present in the file.

Indicators (pure functions of a price frame sorted by time; row ``t`` uses only rows ``<= t``, so no look-ahead)
    * :func:`returns`: ``ret_t = adj_t / adj_{t-1} - 1`` and ``log_ret_t = ln(adj_t / adj_{t-1})`` on ``adj_close``.
      NaN at the first row and next to a NaN price (a gap is not bridged).
    * :func:`rolling_volatility`: sample std (ddof=1) of the last ``window`` log returns, times ``sqrt(252)`` when
      annualised. NaN until ``window`` valid returns are in the window.
    * :func:`rsi`: Wilder's RSI on ``close``. With ``d_t = c_t - c_{t-1}``, ``g_t = max(d_t, 0)``,
      ``l_t = max(-d_t, 0)``: the first averages are the simple means of the first ``period`` gains and losses, then
      ``avg_t = (avg_{t-1} * (period - 1) + x_t) / period``. ``RSI = 100 - 100 / (1 + avg_gain / avg_loss)``; it is 100
      when ``avg_loss`` is 0 (and 50 when both are 0). A NaN price restarts the seeding after it.
    * :func:`volume_zscore`: ``(v_t - mean(v_{t-w+1..t})) / std(v_{t-w+1..t})`` (ddof=1), current and past values
      only; NaN when the window is incomplete or its std is 0.
    * :func:`drawdown`: ``close_t / max(close_{..t}) - 1``, in ``[-1, 0]``.

Sentiment join (:func:`join_sentiment`)
    A row at time ``ts`` sees only news published strictly before ``ts``. Daily (``freq="D"``): a news item counts
    for the first trading session whose 16:00 close is after it. So news during a session counts for that day, news
    at or after the 16:00 close counts for the next trading day, and weekend or holiday news counts for the next
    session (Saturday's news goes to Monday, Good Friday's to the Monday after). The sessions are the rows of the
    ticker in the indicator frame, which is the trading calendar here. News before the first session's window (the
    previous weekday's close) or after the last row is dropped. Hourly (``freq="h"``): the same rule with hourly rows;
    news in ``(previous row, row)`` counts for the row, so overnight news lands on the first bar of the morning.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "adj_close", "volume")
HEADER: tuple[str, ...] = ("date", *PRICE_COLUMNS)
TRADING_DAYS = 252
SESSION_CLOSE = pd.Timedelta(hours=16)
INDICATOR_COLUMNS: tuple[str, ...] = ("ret", "log_ret", "volatility", "rsi", "volume_z", "drawdown")

_MISSING = frozenset({"", "nan", "null", "na", "n/a", "none"})
_DAILY = re.compile(r"\d{4}-\d{2}-\d{2}")
_INTRADAY = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?")


class PriceFileError(ValueError):
    """A price file the reader cannot use; the message is one line naming the file and the problem."""


# ---------------------------------------------------------------------------------------------------------------------
# Reading


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


def _drop_blank_rows(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Drop rows whose every cell is empty (blank lines); raise when no data row is left."""
    blank = (table == "").all(axis=1)
    table = table[~blank]
    if table.empty:
        raise PriceFileError(f"{path}: empty file (header only, no data rows)")
    return table


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


def read_prices(path: str | Path, ticker: str | None = None, tz: str = "America/New_York") -> pd.DataFrame:
    """Read one ticker's OHLCV CSV into a sorted frame indexed by UTC time.

    See the module docstring for the date, duplicate and gap rules.

    Args:
        path: CSV file with the header ``date,open,high,low,close,adj_close,volume``.
        ticker: Name stored in ``frame.attrs["ticker"]``; defaults to the upper-cased file stem.
        tz: Exchange time zone, for the 16:00 session close of daily rows and for intraday stamps without offset.

    Returns:
        float64 columns ``open, high, low, close, adj_close, volume`` on a UTC ``DatetimeIndex`` named ``"ts"``
        (strictly increasing), with ``attrs["ticker"]`` set.

    Raises:
        PriceFileError: missing file, empty file, bad header, unparseable date or non-numeric value.
    """
    path = Path(path)
    ticker = ticker or path.stem.upper()
    table = _read_text_table(path)
    if tuple(table.columns) != HEADER:
        raise PriceFileError(f"{path}: bad header: expected {','.join(HEADER)}; found {','.join(table.columns)}")
    table = _drop_blank_rows(table, path)
    index = _parse_timestamps(table["date"], tz, path)
    frame = _parse_numbers(table, PRICE_COLUMNS, path).set_axis(index, axis=0)

    frame = frame.sort_index(kind="stable")
    exact = frame.reset_index().duplicated(keep="last").to_numpy()
    frame = frame[~exact]
    repeated = frame.index.duplicated(keep="last")
    frame = frame[~repeated]
    if exact.any() or repeated.any():
        logger.warning("%s (%s): dropped %d exact duplicate rows and %d rows with a repeated time stamp (kept the "
                       "last)", path, ticker, int(exact.sum()), int(repeated.sum()))
    n_gap = int(frame.isna().any(axis=1).sum())
    if n_gap:
        logger.info("%s (%s): %d rows with missing values kept as NaN", path, ticker, n_gap)
    frame.index.name = "ts"
    frame.attrs["ticker"] = ticker
    return frame


# ---------------------------------------------------------------------------------------------------------------------
# Indicators


def returns(prices: pd.DataFrame) -> pd.DataFrame:
    """Simple and log returns of ``adj_close`` from one row to the next.

    Args:
        prices: Price frame sorted by time with an ``adj_close`` column.

    Returns:
        Frame on the same index with ``ret = adj_t / adj_{t-1} - 1`` and ``log_ret = ln(adj_t / adj_{t-1})``.
    """
    adj = prices["adj_close"].astype("float64")
    ratio = adj / adj.shift(1)
    return pd.DataFrame({"ret": ratio - 1.0, "log_ret": np.log(ratio)}, index=prices.index)


def rolling_volatility(prices: pd.DataFrame, window: int = 20, annualise: bool = True) -> pd.Series:
    """Rolling sample standard deviation of log returns, ``* sqrt(252)`` when annualised.

    Args:
        prices: Price frame sorted by time with an ``adj_close`` column.
        window: Number of returns (rows) in the window; the value is NaN until ``window`` valid returns are in it.
        annualise: Scale daily volatility to a year of 252 trading days.

    Returns:
        Series named ``"volatility"`` on the price index.
    """
    vol = returns(prices)["log_ret"].rolling(window, min_periods=window).std(ddof=1)
    if annualise:
        vol = vol * np.sqrt(TRADING_DAYS)
    return vol.rename("volatility")


def rsi(prices: pd.DataFrame, period: int = 14, column: str = "close") -> pd.Series:
    """Wilder's Relative Strength Index (formula in the module docstring), in ``[0, 100]``.

    Args:
        prices: Price frame sorted by time.
        period: Smoothing period; the first value is at row ``period`` (it needs ``period`` price changes).
        column: Price column to use.

    Returns:
        Series named ``"rsi"``; NaN while the averages are being seeded and at and after NaN prices until re-seeded.
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
    """Z-score of volume against the trailing window that ends at (and includes) the current row.

    Args:
        prices: Price frame sorted by time with a ``volume`` column.
        window: Rows in the window; NaN until it is full of valid volumes.

    Returns:
        Series named ``"volume_z"``; NaN where the window's std is 0.
    """
    volume = prices["volume"].astype("float64")
    roll = volume.rolling(window, min_periods=window)
    std = roll.std(ddof=1)
    z = (volume - roll.mean()) / std.where(std > 0)
    return z.rename("volume_z")


def drawdown(prices: pd.DataFrame, column: str = "close") -> pd.Series:
    """Fall from the running maximum: ``close / running max(close) - 1`` (0 at a new high, -0.25 for 25% below).

    Args:
        prices: Price frame sorted by time.
        column: Price column to use.

    Returns:
        Series named ``"drawdown"`` in ``[-1, 0]``; NaN at NaN prices (the running max skips them).
    """
    close = prices[column].astype("float64")
    return (close / close.cummax() - 1.0).rename("drawdown")


def indicator_frame(prices: pd.DataFrame, vol_window: int = 20, rsi_period: int = 14,
                    volume_window: int = 20) -> pd.DataFrame:
    """All indicators of one ticker on its price index.

    Args:
        prices: Output of :func:`read_prices` (or any frame with its columns), sorted by time.
        vol_window: Window of :func:`rolling_volatility` (annualised).
        rsi_period: Period of :func:`rsi`.
        volume_window: Window of :func:`volume_zscore`.

    Returns:
        Columns ``ticker, close, ret, log_ret, volatility, rsi, volume_z, drawdown`` on the price index (``"ts"``);
        ``ticker`` is ``prices.attrs["ticker"]`` (empty string when unset).
    """
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


def indicator_window(frame: pd.DataFrame, at: pd.Timestamp, steps: int = 30,
                     features: Sequence[str] = INDICATOR_COLUMNS) -> np.ndarray:
    """The last ``steps`` rows at or before ``at``, z-scored per feature over the window: the model's series prefix.

    Each feature column ``x`` becomes ``(x - mean) / std`` with the mean and population std (ddof=0) of its non-NaN
    values inside the window only, so nothing after ``at`` (and nothing outside the window) is used. NaN stays NaN;
    a constant feature becomes 0. When fewer than ``steps`` rows exist up to ``at``, the front is padded with NaN rows.

    Args:
        frame: One ticker's indicator frame (e.g. :func:`indicator_frame`), indexed by UTC time and sorted.
        at: Cut-off time; a tz-naive time is read as UTC.
        steps: Window length in rows.
        features: Columns to take, in this order.

    Returns:
        float32 array of shape ``(steps, len(features))``, oldest row first.

    Raises:
        ValueError: no row at or before ``at``, several tickers in ``frame``, or ``steps < 1``.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if "ticker" in frame.columns and frame["ticker"].nunique() > 1:
        raise ValueError("indicator_window needs one ticker's frame; filter by ticker first")
    at = pd.Timestamp(at)
    at = at.tz_localize("UTC") if at.tzinfo is None else at.tz_convert("UTC")
    end = int(frame.index.searchsorted(at, side="right"))  # rows [0, end) are at or before `at`
    if end == 0:
        raise ValueError(f"no row at or before {at} (first row is {frame.index[0] if len(frame) else 'absent'})")
    values = frame[list(features)].iloc[max(0, end - steps):end].to_numpy(dtype="float64")
    with warnings.catch_warnings():  # an all-NaN column warns "mean of empty slice"; it just stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=0)
        std = np.nanstd(values, axis=0)
    scale = np.where(std > 0, std, np.inf)  # a constant column: (x - mean) / inf = 0
    z = (values - mean) / scale
    if len(z) < steps:
        z = np.vstack([np.full((steps - len(z), z.shape[1]), np.nan), z])
    return z.astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------------
# Sentiment join


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

    Each news row counts for the first indicator row of its ticker that is strictly after it (so after-close news
    counts for the next trading day and weekend news for Monday; the full rule is in the module docstring).

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
    rows = indicators.reset_index() if "ts" not in indicators.columns else indicators.reset_index(drop=True)
    if "ts" not in rows.columns and "index" in rows.columns:
        rows = rows.rename(columns={"index": "ts"})
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
    weighted = agg["weighted"].reindex(rows.index)
    rows["sentiment_mean"] = weighted / n.where(n > 0)
    rows["sentiment_n"] = n.astype("int64")
    by_ticker = rows.groupby("ticker", sort=False)["sentiment_mean"]
    roll_mean = by_ticker.transform(lambda s: s.rolling(z_window, min_periods=z_min_periods).mean())
    roll_std = by_ticker.transform(lambda s: s.rolling(z_window, min_periods=z_min_periods).std(ddof=1))
    rows["sentiment_z"] = (rows["sentiment_mean"] - roll_mean) / roll_std.where(roll_std > 0)
    first = ["ticker", "ts"]
    return rows[first + [c for c in rows.columns if c not in first]]
