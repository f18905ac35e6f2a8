"""Alert rules for the finance-sentiment monitor: TOML rules in, de-duplicable alerts out.

Rules are a ``[[rules]]`` list in a TOML file (:func:`load_rules`); each has a ``name`` (unique), a ``kind``, a
``severity`` and a ``threshold`` whose meaning depends on the kind:

* ``sentiment_z``: the ticker's mean article score over one UTC day, as a z-score against the daily means of the
  previous ``lookback_days`` days that had news (sample std, ddof=1; the day itself is not in the baseline). Fires
  when ``z <= threshold`` (e.g. -2), once ``min_days`` earlier days with news exist.
* ``negative_spike``: fires when at least ``threshold`` articles about the ticker with ``score <= negative_score``
  fall in one window of ``window_hours``.
* ``news_burst``: fires when the ticker's article count in one window is at least ``threshold`` times its average
  count per window over the ``lookback_windows`` windows before it (that average floored at ``min_baseline``, so a
  quiet ticker needs a real burst), and at least ``min_articles``.
* ``indicator_move``: the latest indicator row of the ticker at or before ``now``: ``metric = "return"`` fires when
  ``|1-day return| >= threshold`` (a fraction: 0.05 is 5%), ``"volatility"`` when the annualised volatility
  ``>= threshold``, ``"drawdown"`` when the fall from the running high is at least ``threshold`` (0.2 is 20% below),
  ``"rsi_above"`` / ``"rsi_below"`` when the RSI is ``>=`` / ``<=`` threshold.
* ``risk_model``: the fusion risk model (``risk.py``) gives a probability ``>= threshold`` of a loss of 3% or more in
  the session after the ticker's latest close, reading the indicator window and the news of that session; the window
  is the session (previous close to close), so it fires at most once per session.

Windows. Time is cut into fixed windows aligned to the Unix epoch (so windows of 1, 2, 3, 4, 6, 8, 12 or 24 hours
start at UTC midnight; ``sentiment_z`` uses UTC days). :func:`evaluate` looks at the window that contains ``now`` and
the one before it (so an article that arrives just after a window closes still counts for its own window), using
only data stamped at or before ``now``. An indicator rule's window is the span from the previous row to the row.

De-duplication. An alert's id is a hash of the rule name, the ticker and the window start, so evaluating again (each
poll cycle, after a restart, with more articles in the same window) yields the same id, and the store keeps only the
first alert of each id. A burst that straddles two windows may stay under the threshold in both; pick the window
size with that in mind.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from apps.finance_sentiment.feeds import nonblank, one_line, read_document, ticker_list

Severity = Literal["info", "warning", "critical"]
_EPOCH = pd.Timestamp(0, tz="UTC")


class AlertConfigError(ValueError):
    """A rules file that cannot be used; the message is one line and names the file."""


# --------------------------------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------------------------------


class _Rule(BaseModel):
    """Fields every rule has."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="Unique name; part of every alert id, so renaming re-fires alerts.")
    severity: Severity = Field("warning", description="info | warning | critical.")
    tickers: list[str] = Field(default_factory=list, description="Tickers the rule watches; empty means all.")
    description: str = Field("", description="Free text for the dashboard.")

    _strip_name = field_validator("name")(nonblank)
    _upper_tickers = field_validator("tickers", mode="before")(ticker_list)


class SentimentZRule(_Rule):
    """Daily mean sentiment far below its own recent history."""

    kind: Literal["sentiment_z"] = "sentiment_z"
    threshold: float = Field(-2.0, description="Fires when the day's z-score <= this.")
    lookback_days: int = Field(20, ge=2, description="Days before the evaluated day that form the baseline.")
    min_days: int = Field(5, ge=2, description="Days with news needed in the baseline.")
    min_articles: int = Field(1, ge=1, description="Scored articles needed on the evaluated day.")


class NegativeSpikeRule(_Rule):
    """Many clearly negative articles in a short window."""

    kind: Literal["negative_spike"] = "negative_spike"
    threshold: int = Field(3, ge=1, description="Fires at this many negative articles in one window.")
    window_hours: float = Field(6.0, gt=0, description="Window length in hours.")
    negative_score: float = Field(-0.5, ge=-1, le=1, description="An article is negative when its score <= this.")


class NewsBurstRule(_Rule):
    """Far more articles than usual in a window."""

    kind: Literal["news_burst"] = "news_burst"
    threshold: float = Field(3.0, gt=0, description="Fires when count >= this x the trailing average per window.")
    window_hours: float = Field(6.0, gt=0, description="Window length in hours.")
    lookback_windows: int = Field(28, ge=1, description="Windows before the evaluated one that form the average.")
    min_articles: int = Field(5, ge=1, description="Articles needed in the window, whatever the average.")
    min_baseline: float = Field(1.0, gt=0, description="Floor of the trailing average (articles per window).")


class IndicatorMoveRule(_Rule):
    """A large price move, high volatility, a deep drawdown or an extreme RSI on the latest indicator row."""

    kind: Literal["indicator_move"] = "indicator_move"
    metric: Literal["return", "volatility", "drawdown", "rsi_above", "rsi_below"] = Field(
        "return", description="Indicator and direction, see the module docstring.")
    threshold: float = Field(0.05, ge=0, description="Fraction for return / volatility / drawdown, 0-100 for RSI.")


class RiskModelRule(_Rule):
    """The fusion risk model's probability of a large loss in the next session (``risk.py``)."""

    kind: Literal["risk_model"] = "risk_model"
    threshold: float = Field(0.3, gt=0, lt=1, description="Fires when the model's probability >= this.")


AlertRule = Annotated[SentimentZRule | NegativeSpikeRule | NewsBurstRule | IndicatorMoveRule | RiskModelRule,
                      Field(discriminator="kind")]
_RULES = TypeAdapter(list[AlertRule])


def parse_rules(document: object, where: str = "rules") -> list[AlertRule]:
    """Validate a parsed rules document (``{"rules": [...]}``).

    Args:
        document: The parsed TOML (or any mapping of the same shape).
        where: Prefix of error messages (the file name).

    Returns:
        The rules in document order.

    Raises:
        AlertConfigError: Wrong layout, an unknown kind or field, an invalid value, or two rules with one name.
    """
    if not isinstance(document, dict):
        raise AlertConfigError(f"{where}: expected a table with a 'rules' list, got {type(document).__name__}")
    unknown = sorted(set(document) - {"rules"})
    if unknown:
        raise AlertConfigError(f"{where}: unknown top-level key(s) {', '.join(map(repr, unknown))}; expected 'rules'")
    raw = document.get("rules") or []
    if not isinstance(raw, list):
        raise AlertConfigError(f"{where}: 'rules' must be a list of tables ([[rules]])")
    try:
        rules = _RULES.validate_python(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = list(error["loc"])
        label = f"rule #{loc.pop(0) + 1}" if loc and isinstance(loc[0], int) else "rules"
        if loc and loc[0] in ("sentiment_z", "negative_spike", "news_burst", "indicator_move", "risk_model"):
            loc.pop(0)  # the union member pydantic tried
        field = ".".join(str(part) for part in loc)
        message = str(error["msg"]).removeprefix("Value error, ")
        raise AlertConfigError(one_line(f"{where}: {label}: {field + ': ' if field else ''}{message}")) from None
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise AlertConfigError(f"{where}: duplicate rule name {rule.name!r}")
        seen.add(rule.name)
    return rules


def load_rules(path: str | Path) -> list[AlertRule]:
    """Read the alert rules from a TOML file with a ``[[rules]]`` list (see ``samples/alert_rules.toml``).

    Args:
        path: The TOML file (``.yaml`` / ``.yml``: the same layout in YAML).

    Returns:
        The rules in file order.

    Raises:
        AlertConfigError: Missing or unreadable file, invalid TOML (the message gives the line), or an invalid rule.
    """
    return parse_rules(read_document(Path(path), "alert rules file", AlertConfigError), where=str(path))


# --------------------------------------------------------------------------------------------------------------------
# Alerts
# --------------------------------------------------------------------------------------------------------------------


class Alert(BaseModel):
    """One fired rule for one ticker and one window."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Hash of rule name, ticker and window start (see alert_id).")
    ticker: str = Field(description="The ticker.")
    rule: str = Field(description="Name of the rule that fired.")
    severity: Severity = Field(description="The rule's severity.")
    fired_at: datetime = Field(description="The evaluation time (UTC).")
    window_start: datetime = Field(description="Start of the window the rule looked at (UTC).")
    window_end: datetime = Field(description="End of that window (UTC).")
    reason: str = Field(description="One sentence with the numbers.")
    value: float = Field(description="The measured value (count, z-score, ratio or indicator).")
    threshold: float = Field(description="The rule's threshold.")
    article_ids: list[str] = Field(default_factory=list, description="Articles behind the alert.")
    acknowledged: bool = Field(False, description="Whether a user acknowledged it.")


def alert_id(rule: str, ticker: str, window_start: datetime) -> str:
    """The deterministic id of an alert: 32 hex digits of SHA-256 over ``rule|ticker|window start (UTC ISO)``.

    Args:
        rule: Rule name.
        ticker: Ticker.
        window_start: Window start; a naive datetime is read as UTC.

    Returns:
        The id.
    """
    start = pd.Timestamp(window_start)
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    return hashlib.sha256(f"{rule}|{ticker}|{start.isoformat()}".encode()).hexdigest()[:32]


def _utc(value: datetime | pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _window_start(now: pd.Timestamp, hours: float) -> pd.Timestamp:
    """Start of the epoch-aligned window of ``hours`` that contains ``now``."""
    size = pd.Timedelta(hours=hours)
    return _EPOCH + ((now - _EPOCH) // size) * size


def _hours(hours: float) -> str:
    return f"{hours:g} h"


def _split_tickers(value: object) -> list[str]:
    if isinstance(value, str):
        return [t.strip().upper() for t in value.split(",") if t.strip()]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return [str(t).strip().upper() for t in value if str(t).strip()]


def _article_rows(articles: pd.DataFrame | None, now: pd.Timestamp) -> pd.DataFrame:
    """One row per (article, ticker): ``id, ticker, ts, score``, articles stamped after ``now`` dropped."""
    columns = ["id", "ticker", "ts", "score"]
    if articles is None or len(articles) == 0:
        return pd.DataFrame({"id": pd.Series(dtype=object), "ticker": pd.Series(dtype=object),
                             "ts": pd.Series(dtype="datetime64[ns, UTC]"), "score": pd.Series(dtype="float64")})
    if "ts" in articles.columns:
        ts = pd.to_datetime(articles["ts"], utc=True)
    else:
        published = pd.to_datetime(articles["published"], utc=True)
        ts = published.fillna(pd.to_datetime(articles["seen_at"], utc=True))
    score = articles["score"].astype("float64") if "score" in articles.columns else float("nan")
    frame = pd.DataFrame({"id": articles["id"].astype(str), "ts": ts, "score": score}, index=articles.index)
    frame["ticker"] = [_split_tickers(v) for v in articles["tickers"]]
    frame = frame.explode("ticker").dropna(subset=["ticker", "ts"])
    frame = frame[frame["ts"] <= now]
    return frame[columns].sort_values(["ticker", "ts", "id"], kind="stable").reset_index(drop=True)


def _watched(rule: _Rule, available: Iterable[str]) -> list[str]:
    return sorted(set(rule.tickers) if rule.tickers else set(available))


def _alert(rule: _Rule, ticker: str, now: pd.Timestamp, start: pd.Timestamp, end: pd.Timestamp, reason: str,
           value: float, ids: Sequence[str]) -> Alert:
    return Alert(id=alert_id(rule.name, ticker, start), ticker=ticker, rule=rule.name, severity=rule.severity,
                 fired_at=now.to_pydatetime(), window_start=start.to_pydatetime(), window_end=end.to_pydatetime(),
                 reason=reason, value=float(value), threshold=float(rule.threshold), article_ids=list(ids))


def _in_window(rows: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    return rows[(rows["ts"] >= start) & (rows["ts"] < end)]


def _sentiment_z(rule: SentimentZRule, rows: pd.DataFrame, now: pd.Timestamp) -> list[Alert]:
    out: list[Alert] = []
    scored = rows.dropna(subset=["score"])
    day = pd.Timedelta(days=1)
    for ticker in _watched(rule, scored["ticker"].unique()):
        mine = scored[scored["ticker"] == ticker]
        if mine.empty:
            continue
        daily = mine.groupby(mine["ts"].dt.floor("D"))["score"].mean()
        for start in (_window_start(now, 24) - day, _window_start(now, 24)):
            today = _in_window(mine, start, start + day)
            if len(today) < rule.min_articles:
                continue
            base = daily[(daily.index >= start - rule.lookback_days * day) & (daily.index < start)]
            if len(base) < rule.min_days:
                continue
            mean, std = float(base.mean()), float(base.std(ddof=1))
            if not std > 0:
                continue
            level = float(today["score"].mean())
            z = (level - mean) / std
            if z <= rule.threshold:
                reason = (f"{ticker}: daily sentiment z-score {z:.2f} (mean score {level:.2f} over {len(today)} "
                          f"articles vs {mean:.2f} ± {std:.2f} over the previous {len(base)} days with news) "
                          f"(threshold {rule.threshold:.2f})")
                out.append(_alert(rule, ticker, now, start, start + day, reason, z, today["id"].tolist()))
    return out


def _negative_spike(rule: NegativeSpikeRule, rows: pd.DataFrame, now: pd.Timestamp) -> list[Alert]:
    out: list[Alert] = []
    size = pd.Timedelta(hours=rule.window_hours)
    negative = rows[rows["score"] <= rule.negative_score]
    for ticker in _watched(rule, negative["ticker"].unique()):
        mine = negative[negative["ticker"] == ticker]
        for start in (_window_start(now, rule.window_hours) - size, _window_start(now, rule.window_hours)):
            hits = _in_window(mine, start, start + size)
            if len(hits) >= rule.threshold:
                reason = (f"{ticker}: {len(hits)} negative articles in {_hours(rule.window_hours)} "
                          f"(threshold {rule.threshold})")
                out.append(_alert(rule, ticker, now, start, start + size, reason, len(hits), hits["id"].tolist()))
    return out


def _news_burst(rule: NewsBurstRule, rows: pd.DataFrame, now: pd.Timestamp) -> list[Alert]:
    out: list[Alert] = []
    size = pd.Timedelta(hours=rule.window_hours)
    for ticker in _watched(rule, rows["ticker"].unique()):
        mine = rows[rows["ticker"] == ticker]
        for start in (_window_start(now, rule.window_hours) - size, _window_start(now, rule.window_hours)):
            hits = _in_window(mine, start, start + size)
            if len(hits) < rule.min_articles:
                continue
            before = _in_window(mine, start - rule.lookback_windows * size, start)
            average = len(before) / rule.lookback_windows
            ratio = len(hits) / max(average, rule.min_baseline)
            if ratio >= rule.threshold:
                span = _hours(rule.window_hours)
                reason = (f"{ticker}: {len(hits)} articles in {span}, {ratio:.1f}x the average of {average:.1f} per "
                          f"{span} over the previous {rule.lookback_windows} windows "
                          f"(threshold {rule.threshold:.1f}x)")
                out.append(_alert(rule, ticker, now, start, start + size, reason, ratio, hits["id"].tolist()))
    return out


def _indicator_rows(indicators: pd.DataFrame | None, now: pd.Timestamp) -> pd.DataFrame:
    """Indicator rows with a ``ts`` column (UTC), at or before ``now``, sorted by ticker then time."""
    if indicators is None or len(indicators) == 0:
        return pd.DataFrame(columns=["ticker", "ts"])
    frame = indicators.reset_index() if "ts" not in indicators.columns else indicators.reset_index(drop=True)
    if "ts" not in frame.columns and "index" in frame.columns:
        frame = frame.rename(columns={"index": "ts"})
    missing = {"ticker", "ts"} - set(frame.columns)
    if missing:
        raise ValueError(f"indicators frame lacks column(s): {', '.join(sorted(missing))}")
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame = frame[frame["ts"] <= now]
    return frame.sort_values(["ticker", "ts"], kind="stable").reset_index(drop=True)


_METRIC_COLUMN = {"return": "ret", "volatility": "volatility", "drawdown": "drawdown", "rsi_above": "rsi",
                  "rsi_below": "rsi"}


def _indicator_move(rule: IndicatorMoveRule, frame: pd.DataFrame, rows: pd.DataFrame,
                    now: pd.Timestamp) -> list[Alert]:
    out: list[Alert] = []
    column = _METRIC_COLUMN[rule.metric]
    if column not in frame.columns:
        return out
    for ticker in _watched(rule, frame["ticker"].unique()):
        mine = frame[frame["ticker"] == ticker]
        if mine.empty:
            continue
        value = float(mine[column].iloc[-1])
        if math.isnan(value):
            continue
        end = mine["ts"].iloc[-1]
        start = mine["ts"].iloc[-2] if len(mine) > 1 else end
        x = rule.threshold
        if rule.metric == "return":
            fired, what = abs(value) >= x, f"1-day return {value:+.1%} (threshold ±{x:.1%})"
        elif rule.metric == "volatility":
            fired, what = value >= x, f"annualised volatility {value:.1%} (threshold {x:.1%})"
        elif rule.metric == "drawdown":
            fired, what = -value >= x, f"drawdown {value:.1%} from the high (threshold -{x:.1%})"
        elif rule.metric == "rsi_above":
            fired, what = value >= x, f"RSI {value:.1f} (threshold >= {x:g})"
        else:
            fired, what = value <= x, f"RSI {value:.1f} (threshold <= {x:g})"
        if fired:
            news = rows[(rows["ticker"] == ticker) & (rows["ts"] > start) & (rows["ts"] <= end)]
            out.append(_alert(rule, ticker, now, start, end, f"{ticker}: {what}", value, news["id"].tolist()))
    return out


def _risk_model(rule: RiskModelRule, risk: pd.DataFrame | None, now: pd.Timestamp) -> list[Alert]:
    out: list[Alert] = []
    if risk is None or len(risk) == 0:
        return out
    for row in risk.itertuples(index=False):
        if rule.tickers and row.ticker not in rule.tickers:
            continue
        end = _utc(row.ts)
        if end > now or float(row.p) < rule.threshold:
            continue
        start = _utc(row.window_start)
        reason = (f"{row.ticker}: the risk model gives {float(row.p):.0%} for a loss of 3% or more in the next "
                  f"session (threshold {rule.threshold:.0%})")
        out.append(_alert(rule, row.ticker, now, start, end, reason, float(row.p), list(row.article_ids)))
    return out


def evaluate(rules: Sequence[AlertRule], articles_df: pd.DataFrame | None, indicators_df: pd.DataFrame | None,
             now: datetime, risk_df: pd.DataFrame | None = None) -> list[Alert]:
    """Run every rule over the data known at ``now``.

    Args:
        rules: Rules from :func:`load_rules`.
        articles_df: Articles with ``id``, ``tickers`` (a list, or a comma-separated string), ``score`` (NaN when
            unscored) and a time: ``ts``, else ``published`` falling back to ``seen_at`` (e.g.
            ``FinanceStore.articles()``).
        indicators_df: Indicator rows of one or more tickers: a ``ticker`` column, the time as a UTC index or a
            ``ts`` column, and ``ret`` / ``volatility`` / ``drawdown`` / ``rsi`` (e.g. ``indicator_frame`` outputs
            concatenated). May be None when no rule needs it.
        risk_df: The risk model's rows (``RiskScorer.score``): ``ticker, ts`` (the session close), ``window_start``
            (the previous close), ``p`` and ``article_ids``; None without a risk model (risk rules then never fire).
        now: Evaluation time (a naive datetime is read as UTC); later data is ignored.

    Returns:
        The alerts, sorted by ticker, rule and window start. Ids repeat exactly when the rule, ticker and window do.
    """
    now_ts = _utc(now)
    rows = _article_rows(articles_df, now_ts)
    frame: pd.DataFrame | None = None
    alerts: list[Alert] = []
    for rule in rules:
        if isinstance(rule, SentimentZRule):
            alerts += _sentiment_z(rule, rows, now_ts)
        elif isinstance(rule, NegativeSpikeRule):
            alerts += _negative_spike(rule, rows, now_ts)
        elif isinstance(rule, NewsBurstRule):
            alerts += _news_burst(rule, rows, now_ts)
        elif isinstance(rule, RiskModelRule):
            alerts += _risk_model(rule, risk_df, now_ts)
        else:
            frame = _indicator_rows(indicators_df, now_ts) if frame is None else frame
            alerts += _indicator_move(rule, frame, rows, now_ts)
    return sorted(alerts, key=lambda a: (a.ticker, a.rule, a.window_start))
