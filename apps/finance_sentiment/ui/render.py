"""How the dashboard draws what the service returns: articles with their sentences and explanations, article
lists, and the sentiment-against-price chart.

Feed text (headlines, summaries, words) is untrusted: it is only ever shown through ``st.dataframe``, altair, or
``st.markdown`` after :func:`plain` has escaped every markdown character (``apps.common.ui.escape_markdown``); HTML is
never rendered.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import altair as alt
import pandas as pd
import streamlit as st

from apps.common.ui import escape_markdown

LABEL_COLOURS = {"positive": "green", "neutral": "gray", "negative": "red"}
SEVERITY_COLOURS = {"critical": "red", "warning": "orange", "info": "blue"}
SEVERITY_HEX = {"critical": "#d62728", "warning": "#ff7f0e", "info": "#1f77b4"}
POSITIVE_HEX, NEGATIVE_HEX = "#2e7d32", "#c62828"
STRONG, VISIBLE = 0.5, 0.15  # a word's share of the sentence's largest |attribution| for a badge / a coloured word


def plain(text: object) -> str:
    """Untrusted text shown literally by ``st.markdown``: every markdown character escaped, newlines as spaces."""
    return escape_markdown(" ".join(str(text or "").split()))


def when(ts: datetime | pd.Timestamp | None) -> str:
    """A UTC time as ``2026-03-12 16:30 UTC`` (empty for a missing one)."""
    if ts is None or pd.isna(ts):
        return ""
    return pd.Timestamp(ts).tz_convert("UTC").strftime("%Y-%m-%d %H:%M UTC")


def web_link(url: object) -> str | None:
    """The URL when it is http(s) (a ``javascript:`` or ``data:`` link from a feed is never offered)."""
    text = str(url or "").strip()
    return text if urlsplit(text).scheme in ("http", "https") and urlsplit(text).netloc else None


def label_badge(label: str | None, score: float | None, where=st) -> None:
    """The article's label and score as a coloured badge."""
    if label is None or score is None or pd.isna(score):
        where.badge("not scored", color="gray")
        return
    where.badge(f"{label} {score:+.2f}", color=LABEL_COLOURS.get(label, "gray"))


def news_table(news: pd.DataFrame) -> pd.DataFrame:
    """The news rows as shown: time, source, tickers, headline, label, score, link."""
    return pd.DataFrame({
        "time (UTC)": news["ts"].dt.tz_convert("UTC").dt.tz_localize(None),
        "source": news["source"],
        "tickers": news["tickers"],
        "headline": news["title"],
        "label": news["label"].fillna("not scored"),
        "score": news["score"],
        "link": [web_link(u) for u in news["url"]],
    })


NEWS_COLUMNS = {
    "time (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm", width="medium"),
    "source": st.column_config.TextColumn(),
    "tickers": st.column_config.ListColumn(width="small"),
    "headline": st.column_config.TextColumn(width="large"),
    "label": st.column_config.TextColumn(width="small"),
    "score": st.column_config.NumberColumn(format="%+.3f", width="small",
                                           help="p(positive) - p(negative) of the article, in [-1, 1]."),
    "link": st.column_config.LinkColumn(display_text="open", width="small"),
}


# ------------------------------------------------------------------------------------------------ explanations
def word_markdown(words: Sequence[Sequence[Any]]) -> str:
    """A sentence's words in text order as markdown: the words that moved it most as green (towards positive) or
    red (towards negative) badges, the next ones in colour, the rest plain; every word escaped."""
    largest = max((abs(float(a)) for _, a in words), default=0.0)
    parts = []
    for word, attribution in words:
        a, text = float(attribution), plain(word)
        colour = "green" if a > 0 else "red"
        if largest > 0 and abs(a) >= STRONG * largest:
            parts.append(f":{colour}-badge[{text}]")
        elif largest > 0 and abs(a) >= VISIBLE * largest:
            parts.append(f":{colour}[{text}]")
        else:
            parts.append(text)
    return " ".join(parts)


def word_chart(words: Sequence[Sequence[Any]], top: int = 10) -> alt.Chart:
    """A bar per word (the ``top`` largest attributions), green towards positive and red towards negative."""
    # the y key is "position word", so two equal words stay apart; the axis shows the word only
    frame = pd.DataFrame([(str(w), float(a), i) for i, (w, a) in enumerate(words)],
                         columns=["word", "attribution", "position"])
    frame = frame.loc[frame["attribution"].abs().sort_values(ascending=False).index[:top]]
    frame["towards"] = ["positive" if a > 0 else "negative" for a in frame["attribution"]]
    frame["key"] = [f"{p:03d} {w}" for p, w in zip(frame["position"], frame["word"])]
    order = frame.sort_values("attribution", ascending=False)["key"].tolist()
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("attribution:Q", title="← negative · positive →"),
        y=alt.Y("key:N", sort=order, title=None,
                axis=alt.Axis(labelExpr="substring(datum.label, 4)", labelOverlap=False, labelLimit=140)),
        color=alt.Color("towards:N", scale=alt.Scale(domain=["positive", "negative"],
                                                     range=[POSITIVE_HEX, NEGATIVE_HEX]), legend=None),
        tooltip=[alt.Tooltip("word:N"), alt.Tooltip("attribution:Q", format="+.3f")],
    )


def explanation(expl: Mapping[str, Any] | None, key: str) -> None:
    """The words that moved each explained sentence: coloured words in text order, and a bar chart of the largest."""
    items = (expl or {}).get("sentences") or []
    if not items:
        st.caption("No word attributions stored for this article.")
        return
    st.caption(f"Words that moved the score ({expl.get('method', 'attribution')} of "
               f"{expl.get('quantity', 'the score')}): green pushed towards positive, red towards negative.")
    for n, item in enumerate(items):
        words = item.get("words") or []
        with st.container(border=True):
            text, chart = st.columns([3, 2], gap="large")
            text.markdown(word_markdown(words) if words else plain(item.get("text", "")))
            if words:
                n_bars = min(len(words), 10)
                chart.altair_chart(word_chart(words), width="stretch", height=22 * n_bars + 60,  # + x axis, title
                                   key=f"{key}_words_{n}")


def sentences_table(sentences: Sequence[Mapping[str, Any]], key: str) -> None:
    """The article's sentences with their labels, scores and class probabilities."""
    rows = [{"#": s.get("idx", i), "sentence": s["text"], "label": s.get("label") or "",
             "score": s.get("score"), "positive": s.get("positive"), "neutral": s.get("neutral"),
             "negative": s.get("negative")} for i, s in enumerate(sentences)]
    prob = st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="%.2f", width="small")
    st.dataframe(pd.DataFrame(rows), hide_index=True, key=key, column_config={
        "#": st.column_config.NumberColumn(width="small"),
        "sentence": st.column_config.TextColumn(width="large"),
        "score": st.column_config.NumberColumn(format="%+.3f", width="small"),
        **dict.fromkeys(("positive", "neutral", "negative"), prob),
    })


def article_detail(article: Mapping[str, Any], key: str) -> None:
    """One article: headline, label and score, where it came from, its sentences and its explanation."""
    head, badge = st.columns([5, 1], vertical_alignment="center")
    head.markdown(f"**{plain(article.get('title'))}**")
    label_badge(article.get("label"), article.get("score"), where=badge)
    published = article.get("published") or article.get("seen_at")
    where = [article.get("source") or "", when(published)]
    if "tickers" in article:
        where.append(", ".join(article["tickers"] or []) or "no ticker")
    if any(where):
        st.caption(plain(" · ".join(w for w in where if w)))
    link = web_link(article.get("url"))
    if link:
        st.link_button("Open the story", link, icon=":material/open_in_new:")
    probs = article.get("probs") or {}
    if probs:
        for col, name in zip(st.columns(3), ("positive", "neutral", "negative")):
            col.metric(f"p({name})", f"{probs.get(name, 0.0):.2f}")
    if article.get("sentences"):
        sentences_table(article["sentences"], key=f"{key}_sentences")
    explanation(article.get("explanation"), key=key)


def article_list(articles: pd.DataFrame, key: str) -> None:
    """Articles as bordered cards (headline, label, source, time), each readable in full in an expander."""
    for i, row in enumerate(articles.itertuples(index=False)):
        with st.container(border=True, key=f"{key}_{i}"):
            head, badge = st.columns([5, 1], vertical_alignment="center")
            head.markdown(f"**{plain(row.title)}**")
            label_badge(row.label, row.score, where=badge)
            st.caption(plain(f"{row.source} · {when(row.ts)} · {', '.join(row.tickers) or 'no ticker'}"))


# ---------------------------------------------------------------------------------------------- price chart
def price_chart(frame: pd.DataFrame, alerts: pd.DataFrame, tz: str) -> alt.LayerChart:
    """Close price (line, left axis) with the mean news sentiment of each session (bars, right axis) and the
    ticker's alerts as vertical rules with a marker on top (colour: severity)."""
    days = pd.DataFrame({
        "day": frame["ts"].dt.tz_convert(tz).dt.strftime("%Y-%m-%d"),
        "close": frame["close"],
        "ret": frame["ret"] if "ret" in frame.columns else float("nan"),
        "sentiment": frame["sentiment_mean"],
        "articles": frame["sentiment_n"],
    })
    x = alt.X("day:T", title=None, scale=alt.Scale(type="utc", padding=14), axis=alt.Axis(format="%d %b", labelAngle=0))
    base = alt.Chart(days).encode(x=x)
    close = base.mark_line(color="#4c78a8", strokeWidth=2).encode(
        y=alt.Y("close:Q", title="Close", scale=alt.Scale(zero=False)),
        tooltip=[alt.Tooltip("day:N", title="session"),
                 alt.Tooltip("close:Q", format=".2f"), alt.Tooltip("ret:Q", format="+.2%", title="1-day return")])
    # symmetric around 0, wide enough for the largest mean (mild scores stay visible, the sign's side stays fixed)
    largest = float(days["sentiment"].abs().max()) if days["sentiment"].notna().any() else 0.0
    reach = min(1.0, max(0.2, math.ceil(largest * 10) / 10))
    bars = base.transform_filter("datum.articles > 0").mark_bar(opacity=0.75, size=9).encode(
        y=alt.Y("sentiment:Q", title="Mean news sentiment", scale=alt.Scale(domain=[-reach, reach]),
                axis=alt.Axis(orient="right")),
        color=alt.condition("datum.sentiment >= 0", alt.value(POSITIVE_HEX), alt.value(NEGATIVE_HEX)),
        tooltip=[alt.Tooltip("day:N", title="session"), alt.Tooltip("sentiment:Q", format="+.3f"),
                 alt.Tooltip("articles:Q", title="articles")])
    layers: list[alt.Chart] = [bars, close]
    if len(alerts):
        marks = pd.DataFrame({"day": alerts["fired_at"].dt.tz_convert(tz).dt.strftime("%Y-%m-%d"),
                              "rule": alerts["rule"], "severity": alerts["severity"], "reason": alerts["reason"]})
        colour = alt.Color("severity:N", title="Alert", scale=alt.Scale(domain=list(SEVERITY_HEX),
                                                                         range=list(SEVERITY_HEX.values())))
        tips = [alt.Tooltip("day:N", title="session"), "rule:N", "severity:N", "reason:N"]
        rule = alt.Chart(marks).mark_rule(strokeDash=[5, 3], strokeWidth=2).encode(x=x, color=colour, tooltip=tips)
        point = alt.Chart(marks).mark_point(shape="triangle-down", size=120, filled=True, yOffset=8).encode(
            x=x, y=alt.value(0), color=colour, tooltip=tips)
        layers += [rule, point]
    return alt.layer(*layers).resolve_scale(y="independent").properties(height=380)


def row_selector(table: str, shown: str, target: str) -> Callable[[], None]:
    """An ``on_select`` callback of a single-row table: put the selected row's id in ``st.session_state[target]``.

    Args:
        table: The table's widget key.
        shown: The session-state key of the ids of the table's rows, as last drawn.
        target: The session-state key that holds the selected id.
    """
    def select() -> None:
        rows = st.session_state[table]["selection"]["rows"]
        ids = st.session_state.get(shown, [])
        if rows and rows[0] < len(ids):
            st.session_state[target] = ids[rows[0]]

    return select
