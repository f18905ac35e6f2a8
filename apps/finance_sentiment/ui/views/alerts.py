"""Alerts: the stored alerts under the sidebar's filters, most recent first; the selected alert's reason, numbers and
the articles behind it (for an indicator alert without any: the ticker's news just before it), and acknowledging it.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import streamlit as st

from apps.finance_sentiment.ui.render import SEVERITY_COLOURS, article_list, plain, row_selector, when
from apps.finance_sentiment.ui.resources import call, filters, refresh_every, require_service

ALERT = "fin_alert"  # the selected alert's id (the selectbox's key; the table's selection sets it too)
SHOWN = "fin_alert_ids"
CONTEXT_DAYS = 3  # news shown before an alert that no article is behind

service = require_service()
st.subheader("Alerts")


_row_selected = row_selector("alerts_table", SHOWN, ALERT)


def _acknowledge(alert_id: str) -> bool:
    service.acknowledge(alert_id)
    return True


def _label(row: pd.Series) -> str:
    done = " · acknowledged" if bool(row["acknowledged"]) else ""
    return f"{row['ticker']} · {row['rule']} · {when(row['fired_at'])}{done}"


def _drill_down(alert: pd.Series) -> None:
    head, badge = st.columns([5, 1], vertical_alignment="center")
    head.markdown(f"**{plain(alert['ticker'])} · {plain(alert['rule'])}**")
    badge.badge(alert["severity"], color=SEVERITY_COLOURS.get(alert["severity"], "gray"))
    st.markdown(plain(alert["reason"]))
    m = st.columns(3)
    m[0].metric("Value", f"{alert['value']:.4g}")
    m[1].metric("Threshold", f"{alert['threshold']:.4g}")
    m[2].metric("Articles behind it", len(alert["article_ids"]))
    st.caption(f"Fired {when(alert['fired_at'])} · window {when(alert['window_start'])} to "
               f"{when(alert['window_end'])}")
    if bool(alert["acknowledged"]):
        st.caption("Acknowledged.")
    elif st.button("Acknowledge", key="acknowledge", icon=":material/done:", help="Mark the alert as seen."):
        if call(_acknowledge, alert["id"]):
            st.rerun()
    articles = call(service.alert_articles, alert["id"])
    if articles is None:
        return
    if len(articles):
        st.markdown(f"**The {len(articles)} article{'s' * (len(articles) != 1)} behind this alert**")
        article_list(articles, key="alert_article")
        return
    since = alert["window_start"] - timedelta(days=CONTEXT_DAYS)
    st.info(f"No article is behind this alert (an indicator rule raised it). News about {plain(alert['ticker'])} in "
            f"the {CONTEXT_DAYS} days before it:")
    context = call(service.news, [alert["ticker"]], None, since, alert["window_end"] + timedelta(seconds=1), 50)
    if context is not None and len(context):
        article_list(context, key="alert_context")
    elif context is not None:
        st.caption("None.")


@st.fragment(run_every=refresh_every())
def live_alerts() -> None:
    f = filters()
    alerts = call(service.alerts, None, f.since, 1000)
    if alerts is None:
        return
    if alerts.empty and not (call(service.counts) or {}).get("alerts", 0):
        st.info("No alerts yet: the worker raises them when its rules fire (see the rules file, `FIN_RULES_PATH`).")
        return
    if f.tickers:
        alerts = alerts[alerts["ticker"].isin(f.tickers)]
    if f.until is not None:
        alerts = alerts[alerts["fired_at"] < f.until]
    open_only = st.toggle("Unacknowledged only", key="fin_open_alerts")
    if open_only:
        alerts = alerts[~alerts["acknowledged"]]
    if alerts.empty:
        st.info("No alert matches the filters: widen the time range, or clear the ticker filter.")
        return
    alerts = alerts.reset_index(drop=True)
    ids = alerts["id"].tolist()
    st.session_state[SHOWN] = ids
    table = pd.DataFrame({
        "fired (UTC)": alerts["fired_at"].dt.tz_localize(None), "ticker": alerts["ticker"],
        "severity": alerts["severity"], "rule": alerts["rule"], "reason": alerts["reason"],
        "articles": alerts["article_ids"].map(len), "acknowledged": alerts["acknowledged"]})
    st.caption(f"{len(alerts)} alert{'s' * (len(alerts) != 1)}, {int((~alerts['acknowledged']).sum())} "
               "unacknowledged. Select one to see the articles behind it.")
    st.dataframe(table, hide_index=True, key="alerts_table", on_select=_row_selected, selection_mode="single-row",
                 column_config={"fired (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
                                "reason": st.column_config.TextColumn(width="large"),
                                "acknowledged": st.column_config.CheckboxColumn()})
    if st.session_state.get(ALERT) not in ids:
        st.session_state[ALERT] = ids[0]
    labels = {row["id"]: _label(row) for _, row in alerts.iterrows()}
    st.selectbox("Alert", ids, key=ALERT, format_func=lambda i: labels.get(i, i), help="Or select a row of the table.")
    _drill_down(alerts.iloc[ids.index(st.session_state[ALERT])])


live_alerts()
