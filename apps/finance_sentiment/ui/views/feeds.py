"""Feed health: each feed's state as the worker left it (status, consecutive failures, last error, next poll), and
what the database holds."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from apps.finance_sentiment.ui.resources import call, filters, refresh_every, require_service

HEALTH_ORDER = ("failing", "warning", "ok", "pending")

service = require_service()
st.subheader("Feed health")


@st.fragment(run_every=refresh_every())
def live_health() -> None:
    rows = call(service.feed_health)
    counts = call(service.counts) if rows is not None else None  # one error, not two, when the database is down
    if rows is None or counts is None:
        return
    m = st.columns(4)
    m[0].metric("Articles", counts.get("articles", 0))
    m[1].metric("Alerts", counts.get("alerts", 0))
    m[2].metric("Price rows", counts.get("prices", 0))
    m[3].metric("Feeds", len(rows))
    st.caption(f"Database {service.database} · read at {datetime.now(UTC):%H:%M:%S} UTC")
    if not rows:
        st.info("No feed is configured: list feeds in the feeds file (`FIN_FEEDS_PATH`) and start the worker.")
        return
    frame = pd.DataFrame(rows)
    wanted = filters().sources
    if wanted:
        frame = frame[frame["feed"].isin(wanted)]
    if frame.empty:
        st.info("No feed matches the source filter.")
        return
    by_health = frame["health"].value_counts()
    st.markdown("  ".join(f":{c}-badge[{by_health.get(h, 0)} {h}]" for h, c in
                          zip(HEALTH_ORDER, ("red", "orange", "green", "gray"))))
    if (frame["health"] == "pending").all():
        st.info("No feed has been polled yet: start the worker (`trident fin monitor`).")
    for column in ("last_ok_at", "next_poll_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True).dt.tz_localize(None)
    st.dataframe(frame, hide_index=True, key="feed_health", column_config={
        "feed": st.column_config.TextColumn("feed"),
        "health": st.column_config.TextColumn("health", help="pending: never polled; warning: malformed, or "
                                                              "failing for a while; failing: many failures in a row."),
        "last_status": st.column_config.TextColumn("last status"),
        "failures": st.column_config.NumberColumn("failures", help="Consecutive failures."),
        "last_error": st.column_config.TextColumn("last error", width="medium"),
        "last_ok_at": st.column_config.DatetimeColumn("last ok (UTC)", format="YYYY-MM-DD HH:mm:ss"),
        "next_poll_at": st.column_config.DatetimeColumn("next poll (UTC)", format="YYYY-MM-DD HH:mm:ss"),
        "entries_seen": st.column_config.NumberColumn("entries seen")})


live_health()
