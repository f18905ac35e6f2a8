"""Sentiment and price: one ticker's close with the mean news sentiment of each trading session, and its alerts
marked on the same time axis."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from apps.finance_sentiment.ui.render import plain, price_chart
from apps.finance_sentiment.ui.resources import call, filters, refresh_every, require_service

TICKER = "fin_chart_ticker"

service = require_service()
st.subheader("Sentiment and price")
f = filters()
tickers = f.tickers or call(service.tickers) or []
if not tickers:
    st.info("No ticker is known yet: add entities to the feeds file, or let the worker store some news.")
    st.stop()
if st.session_state.get(TICKER) not in tickers:
    st.session_state[TICKER] = tickers[0]
ticker = st.selectbox("Ticker", tickers, key=TICKER, help="The sidebar's ticker filter narrows this list.")


@st.fragment(run_every=refresh_every())
def live_chart() -> None:
    frame = call(service.sentiment_vs_price, ticker)
    if frame is None:
        return
    if frame.empty:
        st.info(f"No prices stored for {plain(ticker)} yet: the worker loads them from the prices folder "
                f"({service.settings.prices_folder}) when it starts.")
        return
    frame = frame[[f.in_range(t) for t in frame["ts"]]]
    alerts = call(service.alerts, ticker, f.since, 500)
    alerts = alerts if alerts is not None else pd.DataFrame(columns=["fired_at", "rule", "severity", "reason"])
    alerts = alerts[[f.in_range(t) for t in alerts["fired_at"]]] if len(alerts) else alerts
    if frame.empty:
        st.info(f"No price of {plain(ticker)} falls in the time range: widen it in the sidebar.")
        return
    if f.since is None and len(frame) > 20:
        shown = st.slider("Sessions shown", 20, len(frame), min(40, len(frame)), step=5, key="fin_sessions",
                          help="The most recent trading sessions.")
        frame = frame.tail(shown)
        alerts = alerts[alerts["fired_at"] >= frame["ts"].iloc[0]] if len(alerts) else alerts
    last = frame.iloc[-1]
    news = frame[frame["sentiment_n"] > 0]
    m = st.columns(4)
    ret = last.get("ret")
    m[0].metric(f"Close {pd.Timestamp(last['ts']).tz_convert(service.settings.price_tz):%d %b}",
                f"{last['close']:.2f}", None if pd.isna(ret) else f"{ret:+.2%}")
    recent = news.tail(5)
    m[1].metric("News sentiment", "n/a" if recent.empty else f"{recent['sentiment_mean'].mean():+.3f}",
                help="Mean of the last five sessions with news.")
    m[2].metric("Articles", int(frame["sentiment_n"].sum()), help="Scored articles counted in the sessions shown.")
    m[3].metric("Alerts", len(alerts))
    st.altair_chart(price_chart(frame, alerts, service.settings.price_tz), width="stretch", key="price_chart")
    st.caption("Bars: the mean score of the news counted for each session (news after the 16:00 close counts for "
               "the next session). Dashed rules: alerts, coloured by severity.")
    if news.empty:
        st.info(f"No scored news about {plain(ticker)} in these sessions.")
    else:
        table = pd.DataFrame({
            "session": news["ts"].dt.tz_convert(service.settings.price_tz).dt.strftime("%Y-%m-%d"),
            "close": news["close"], "1-day return": news.get("ret"), "articles": news["sentiment_n"],
            "mean sentiment": news["sentiment_mean"], "sentiment z": news["sentiment_z"]})
        st.dataframe(table.iloc[::-1], hide_index=True, key="sessions", column_config={
            "close": st.column_config.NumberColumn(format="%.2f"),
            "1-day return": st.column_config.NumberColumn(format="percent"),
            "mean sentiment": st.column_config.NumberColumn(format="%+.3f"),
            "sentiment z": st.column_config.NumberColumn(format="%+.2f")})


live_chart()
