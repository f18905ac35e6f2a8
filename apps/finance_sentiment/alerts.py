"""Alert rules for the finance-sentiment monitor: TOML rules in, de-duplicable alerts out.

Rules are a ``[[rules]]`` list (:func:`load_rules`); each has a unique ``name``, a ``kind``, a ``severity`` and a
``threshold`` whose meaning depends on the kind:

* ``sentiment_z``: the ticker's mean article score over one UTC day, as a z-score against the daily means of the
  previous ``lookback_days`` days that had news (ddof=1, the day itself left out); fires when ``z <= threshold``, once
  ``min_days`` earlier days with news exist.
* ``negative_spike``: at least ``threshold`` articles with ``score <= negative_score`` in one window.
* ``news_burst``: the window's article count is at least ``threshold`` times the average count per window over the
  ``lookback_windows`` before it (floored at ``min_baseline``), and at least ``min_articles``.
* ``indicator_move``: the latest indicator row at or before ``now``: ``|1-day return|`` (``return``), annualised
  ``volatility``, the fall from the running high (``drawdown``), all as fractions, or the RSI (``rsi_above`` /
  ``rsi_below``), against the threshold. Its window is the span from the previous row to the row.
* ``risk_model``: the fusion risk model (``risk.py``) gives a probability ``>= threshold`` of a loss of 3% or more in
  the session after the latest close; the window is that session, so it fires at most once per session.

Windows are fixed and aligned to the Unix epoch (1, 2, 3, 4, 6, 8, 12 or 24 hours start at UTC midnight). The window
that contains ``now`` and the one before it are evaluated (an article that arrives just after its window closes still
counts), on data stamped at or before ``now``. An alert's id hashes the rule name, the ticker and the window start, so
evaluating again yields the same id and the store keeps the first alert of each. A burst that straddles two windows
may stay under the threshold in both; pick the window size with that in mind.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from apps.finance_sentiment.feeds import nonblank, read_document, ticker_list, validation_message
from apps.finance_sentiment.indicators import ts_rows, utc

Severity = Literal["info", "warning", "critical"]
_EPOCH = pd.Timestamp(0, tz="UTC")


class AlertConfigError(ValueError):
    """A rules file that cannot be used; the message is one line and names the file."""


# -------------------------------------------------------------------------------------------------------------- rules


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
_KINDS = ("sentiment_z", "negative_spike", "news_burst", "indicator_move", "risk_model")


def parse_rules(document: object, where: str = "rules") -> list[AlertRule]:
    """Validate a parsed rules document (``{"rules": [...]}``); ``where`` (the file name) prefixes error messages.

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
        loc = exc.errors()[0]["loc"]
        if loc and isinstance(loc[0], int):  # the rule's index, then the union member pydantic tried
            label, skip = f"rule #{loc[0] + 1}", 1 + (len(loc) > 1 and loc[1] in _KINDS)
        else:
            label, skip = "rules", 0
        raise AlertConfigError(f"{where}: {label}: {validation_message(exc, skip)}") from None
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise AlertConfigError(f"{where}: duplicate rule name {rule.name!r}")
        seen.add(rule.name)
    return rules


def load_rules(path: str | Path) -> list[AlertRule]:
    """Read the alert rules from a TOML file with a ``[[rules]]`` list (``.yaml`` / ``.yml``: the same in YAML).

    Raises:
        AlertConfigError: Missing or unreadable file, invalid TOML (the message gives the line), or an invalid rule.
    """
    return parse_rules(read_document(Path(path), "alert rules file", AlertConfigError), where=str(path))


# ------------------------------------------------------------------------------------------------------------- alerts


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
    """32 hex digits of SHA-256 over ``rule|ticker|window start (UTC ISO)``; a naive start is read as UTC."""
    return hashlib.sha256(f"{rule}|{ticker}|{utc(window_start).isoformat()}".encode()).hexdigest()[:32]


def _split_tickers(value: object) -> list[str]:
    if isinstance(value, str):
        return [t.strip().upper() for t in value.split(",") if t.strip()]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return [str(t).strip().upper() for t in value if str(t).strip()]


def _article_rows(articles: pd.DataFrame | None, now: pd.Timestamp) -> pd.DataFrame:
    """One row per (article, ticker): ``id, ticker, ts, score``, articles stamped after ``now`` dropped."""
    if articles is None or len(articles) == 0:
        return pd.DataFrame({"id": pd.Series(dtype=object), "ticker": pd.Series(dtype=object),
                             "ts": pd.Series(dtype="datetime64[ns, UTC]"), "score": pd.Series(dtype="float64")})
    if "ts" in articles.columns:
        ts = pd.to_datetime(articles["ts"], utc=True)
    else:
        ts = pd.to_datetime(articles["published"], utc=True).fillna(pd.to_datetime(articles["seen_at"], utc=True))
    score = articles["score"].astype("float64") if "score" in articles.columns else float("nan")
    frame = pd.DataFrame({"id": articles["id"].astype(str), "ts": ts, "score": score}, index=articles.index)
    frame["ticker"] = [_split_tickers(v) for v in articles["tickers"]]
    frame = frame.explode("ticker").dropna(subset=["ticker", "ts"])
    frame = frame[frame["ts"] <= now]
    return frame[["id", "ticker", "ts", "score"]].sort_values(["ticker", "ts", "id"], kind="stable").reset_index(
        drop=True)


def _alert(rule: _Rule, ticker: str, now: pd.Timestamp, start: pd.Timestamp, end: pd.Timestamp, reason: str,
           value: float, ids: Sequence[str]) -> Alert:
    return Alert(id=alert_id(rule.name, ticker, start), ticker=ticker, rule=rule.name, severity=rule.severity,
                 fired_at=now.to_pydatetime(), window_start=start.to_pydatetime(), window_end=end.to_pydatetime(),
                 reason=reason, value=float(value), threshold=float(rule.threshold), article_ids=list(ids))


def _in_window(rows: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    return rows[(rows["ts"] >= start) & (rows["ts"] < end)]


def _windows(rule: _Rule, rows: pd.DataFrame, now: pd.Timestamp,
             hours: float) -> Iterator[tuple[str, pd.DataFrame, pd.Timestamp, pd.Timestamp, pd.DataFrame]]:
    """For each watched ticker and each of the window before ``now``'s and ``now``'s own (epoch-aligned, of
    ``hours``): the ticker, its rows, the window's start and end, and its rows in the window."""
    size = pd.Timedelta(hours=hours)
    current = _EPOCH + ((now - _EPOCH) // size) * size
    for ticker in sorted(set(rule.tickers) if rule.tickers else set(rows["ticker"].unique())):
        mine = rows[rows["ticker"] == ticker]
        for start in (current - size, current):
            yield ticker, mine, start, start + size, _in_window(mine, start, start + size)


def _sentiment_z(rule: SentimentZRule, rows: pd.DataFrame, now: pd.Timestamp) -> Iterable[Alert]:
    scored = rows.dropna(subset=["score"])
    for ticker, mine, start, end, today in _windows(rule, scored, now, 24):
        if len(today) < rule.min_articles:
            continue
        daily = mine.groupby(mine["ts"].dt.floor("D"))["score"].mean()
        base = daily[(daily.index >= start - pd.Timedelta(days=rule.lookback_days)) & (daily.index < start)]
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
            yield _alert(rule, ticker, now, start, end, reason, z, today["id"].tolist())


def _negative_spike(rule: NegativeSpikeRule, rows: pd.DataFrame, now: pd.Timestamp) -> Iterable[Alert]:
    negative = rows[rows["score"] <= rule.negative_score]
    for ticker, _, start, end, hits in _windows(rule, negative, now, rule.window_hours):
        if len(hits) >= rule.threshold:
            reason = f"{ticker}: {len(hits)} negative articles in {rule.window_hours:g} h (threshold {rule.threshold})"
            yield _alert(rule, ticker, now, start, end, reason, len(hits), hits["id"].tolist())


def _news_burst(rule: NewsBurstRule, rows: pd.DataFrame, now: pd.Timestamp) -> Iterable[Alert]:
    for ticker, mine, start, end, hits in _windows(rule, rows, now, rule.window_hours):
        if len(hits) < rule.min_articles:
            continue
        before = _in_window(mine, start - rule.lookback_windows * (end - start), start)
        average = len(before) / rule.lookback_windows
        ratio = len(hits) / max(average, rule.min_baseline)
        if ratio >= rule.threshold:
            span = f"{rule.window_hours:g} h"
            reason = (f"{ticker}: {len(hits)} articles in {span}, {ratio:.1f}x the average of {average:.1f} per "
                      f"{span} over the previous {rule.lookback_windows} windows (threshold {rule.threshold:.1f}x)")
            yield _alert(rule, ticker, now, start, end, reason, ratio, hits["id"].tolist())


def _indicator_rows(indicators: pd.DataFrame | None, now: pd.Timestamp) -> pd.DataFrame:
    """Indicator rows with a ``ts`` column (UTC), at or before ``now``, sorted by ticker then time."""
    if indicators is None or len(indicators) == 0:
        return pd.DataFrame(columns=["ticker", "ts"])
    frame = ts_rows(indicators)
    missing = {"ticker", "ts"} - set(frame.columns)
    if missing:
        raise ValueError(f"indicators frame lacks column(s): {', '.join(sorted(missing))}")
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame = frame[frame["ts"] <= now]
    return frame.sort_values(["ticker", "ts"], kind="stable").reset_index(drop=True)


# metric -> (indicator column, whether value v fires at threshold x, what the reason says)
_METRICS = {
    "return": ("ret", lambda v, x: abs(v) >= x, "1-day return {v:+.1%} (threshold ±{x:.1%})"),
    "volatility": ("volatility", lambda v, x: v >= x, "annualised volatility {v:.1%} (threshold {x:.1%})"),
    "drawdown": ("drawdown", lambda v, x: -v >= x, "drawdown {v:.1%} from the high (threshold -{x:.1%})"),
    "rsi_above": ("rsi", lambda v, x: v >= x, "RSI {v:.1f} (threshold >= {x:g})"),
    "rsi_below": ("rsi", lambda v, x: v <= x, "RSI {v:.1f} (threshold <= {x:g})"),
}


def _indicator_move(rule: IndicatorMoveRule, frame: pd.DataFrame, rows: pd.DataFrame,
                    now: pd.Timestamp) -> Iterable[Alert]:
    column, fires, what = _METRICS[rule.metric]
    if column not in frame.columns:
        return
    for ticker in sorted(set(rule.tickers) if rule.tickers else set(frame["ticker"].unique())):
        mine = frame[frame["ticker"] == ticker]
        if mine.empty or math.isnan(value := float(mine[column].iloc[-1])):
            continue
        end = mine["ts"].iloc[-1]
        start = mine["ts"].iloc[-2] if len(mine) > 1 else end
        if fires(value, rule.threshold):
            news = rows[(rows["ticker"] == ticker) & (rows["ts"] > start) & (rows["ts"] <= end)]
            reason = f"{ticker}: {what.format(v=value, x=rule.threshold)}"
            yield _alert(rule, ticker, now, start, end, reason, value, news["id"].tolist())


def _risk_model(rule: RiskModelRule, risk: pd.DataFrame | None, now: pd.Timestamp) -> Iterable[Alert]:
    for row in risk.itertuples(index=False) if risk is not None else ():
        end = utc(row.ts)
        if (rule.tickers and row.ticker not in rule.tickers) or end > now or float(row.p) < rule.threshold:
            continue
        reason = (f"{row.ticker}: the risk model gives {float(row.p):.0%} for a loss of 3% or more in the next "
                  f"session (threshold {rule.threshold:.0%})")
        yield _alert(rule, row.ticker, now, utc(row.window_start), end, reason, float(row.p), list(row.article_ids))


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
        now: Evaluation time (a naive datetime is read as UTC); later data is ignored.
        risk_df: The risk model's rows (``RiskScorer.score``): ``ticker, ts`` (the session close), ``window_start``
            (the previous close), ``p`` and ``article_ids``; None without a risk model (risk rules then never fire).

    Returns:
        The alerts, sorted by ticker, rule and window start. Ids repeat exactly when the rule, ticker and window do.
    """
    now_ts = utc(now)
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
