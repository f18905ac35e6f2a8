"""What every page of the analysts' dashboard shares: the service (built once per process), the sidebar's filters
and auto-refresh settings, and one way to call the service so that a failure reaches the analyst as a sentence,
never as a traceback."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
import streamlit as st

from apps.common.ui import ServiceAccess, sentence
from apps.finance_sentiment.service import USER_ERRORS, FinService
from apps.finance_sentiment.settings import FinSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

# Session-state keys of the sidebar's widgets (drawn by app.py on every run, so they keep their values across pages).
TICKERS, SOURCES, RANGE, DATES = "fin_tickers", "fin_sources", "fin_range", "fin_dates"
REFRESH, REFRESH_EVERY = "fin_refresh", "fin_refresh_every"
CUSTOM = "Between dates"
RANGES: dict[str, timedelta | None] = {"All time": None, "Last 24 hours": timedelta(hours=24),
                                       "Last 7 days": timedelta(days=7), "Last 30 days": timedelta(days=30),
                                       "Last 90 days": timedelta(days=90), CUSTOM: None}
REFRESH_CHOICES = (10, 30, 60, 120, 300)  # seconds
DEFAULT_REFRESH = 30


@st.cache_resource(show_spinner="Opening the database...")
def _build_service() -> FinService:
    # st.cache_resource keeps no exception, so a dashboard that failed to start (database down) retries on the next
    # rerun instead of showing the old error until the server restarts. The model is loaded on first scoring only.
    return FinService.build(FinSettings())


_access = ServiceAccess(_build_service, USER_ERRORS, "The dashboard cannot start:", "the finance dashboard", log)
get_service = _access.get
require_service = _access.require


def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Run one service call; on failure show ``st.error`` with a sentence and return None.

    Errors the analyst can act on (``USER_ERRORS``: database unreachable, no model, unknown alert) are shown as
    they are; a database that went away after the start gets its own sentence (the next run retries); anything else
    is logged with its traceback and shown as a short sentence.
    """
    try:
        return fn(*args, **kwargs)
    except sa.exc.OperationalError as exc:
        if isinstance(exc, USER_ERRORS):
            st.error(sentence(exc))
        else:
            log.warning("service call %s: database unreachable: %s", getattr(fn, "__name__", fn), exc)
            st.error(f"The database cannot be reached: {sentence(exc.orig or exc)}")
    except Exception as exc:
        _access.show_failure(exc, fn)
    return None


# ---------------------------------------------------------------------------------------------------- filters
@dataclass(frozen=True)
class Filters:
    """The sidebar's filters: empty lists mean every ticker / source; times are UTC, ``until`` exclusive."""

    tickers: list[str]
    sources: list[str]
    since: datetime | None
    until: datetime | None

    def in_range(self, ts: datetime) -> bool:
        """Whether a time falls in the range."""
        return (self.since is None or ts >= self.since) and (self.until is None or ts < self.until)


def _keep_known(key: str, options: list[str]) -> None:
    # a ticker or feed that disappeared (another database, a renamed feed) must not break the widget
    st.session_state[key] = [v for v in st.session_state.get(key, []) if v in options]


def _options(fn: Callable[[], list[str]]) -> list[str]:
    # silent: when the database is down the page itself says so, in one sentence
    try:
        return fn()
    except Exception:  # noqa: BLE001 - logged; the filter is drawn empty
        log.warning("sidebar options not read", exc_info=True)
        return []


def sidebar(service: FinService) -> None:
    """Draw the sidebar's filters and auto-refresh settings (call it on every run, from ``app.py``, after
    ``st.navigation``: a widget drawn before it loses its value on every rerun)."""
    bar = st.sidebar
    bar.subheader("Filters")
    tickers, sources = _options(service.tickers), _options(service.sources)
    _keep_known(TICKERS, tickers)
    _keep_known(SOURCES, sources)
    bar.multiselect("Tickers", tickers, key=TICKERS, placeholder="All tickers",
                    help="Only news, alerts and charts of these tickers.")
    bar.multiselect("Sources", sources, key=SOURCES, placeholder="All sources", help="Only news from these feeds.")
    st.session_state.setdefault(RANGE, "All time")
    bar.selectbox("Time range", list(RANGES), key=RANGE, help="By publication time (else fetch time), in UTC.")
    if st.session_state[RANGE] == CUSTOM:
        today = datetime.now(UTC).date()
        st.session_state.setdefault(DATES, (today - timedelta(days=30), today))
        bar.date_input("From / to (UTC days)", key=DATES)
    bar.subheader("Auto-refresh")
    st.session_state.setdefault(REFRESH, True)
    st.session_state.setdefault(REFRESH_EVERY, DEFAULT_REFRESH)
    bar.toggle("Refresh live data", key=REFRESH, help="Re-read news, alerts and feed health from the database.")
    bar.select_slider("Every", REFRESH_CHOICES, key=REFRESH_EVERY, disabled=not st.session_state[REFRESH],
                      format_func=lambda s: f"{s} s" if s < 60 else f"{s // 60} min")


def _day_start(d: date) -> datetime:
    return datetime.combine(d, time.min, tzinfo=UTC)


def filters(now: datetime | None = None) -> Filters:
    """The current filters, read from the sidebar's widgets (defaults when they were not drawn)."""
    state = st.session_state
    since = until = None
    choice = state.get(RANGE, "All time")
    if choice == CUSTOM:
        dates = tuple(state.get(DATES) or ())
        if dates:
            since = _day_start(dates[0])
            until = _day_start(dates[-1]) + timedelta(days=1)  # the end day is included
    elif RANGES.get(choice) is not None:
        since = (now or datetime.now(UTC)) - RANGES[choice]
    return Filters(tickers=list(state.get(TICKERS) or []), sources=list(state.get(SOURCES) or []), since=since,
                   until=until)


def refresh_every() -> int | None:
    """Seconds between automatic reruns of the pages' live parts, or None when auto-refresh is off."""
    if not st.session_state.get(REFRESH, True):
        return None
    return int(st.session_state.get(REFRESH_EVERY, DEFAULT_REFRESH))
