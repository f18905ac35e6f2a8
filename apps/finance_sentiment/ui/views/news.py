"""News: the stored articles under the sidebar's filters, newest first, with their scores; the selected article's
sentences with their labels and scores, and the words that moved each explained sentence."""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from apps.finance_sentiment.ui.render import NEWS_COLUMNS, article_detail, news_table, row_selector
from apps.finance_sentiment.ui.resources import call, filters, refresh_every, require_service

ARTICLE = "fin_article"  # the selected article's id (the selectbox's key; the table's selection sets it too)
SHOWN = "fin_news_ids"  # ids of the table's rows as last drawn, to map a selected row back to its article
LIMIT = 500

service = require_service()
st.subheader("News")


_row_selected = row_selector("news_table", SHOWN, ARTICLE)


@st.fragment(run_every=refresh_every())
def live_news() -> None:
    f = filters()
    news = call(service.news, f.tickers, f.sources, f.since, f.until, limit=LIMIT)
    if news is None:
        return
    if news.empty:
        stored = (call(service.counts) or {}).get("articles", 0)
        if stored:
            st.info("No article matches the filters: widen the time range, or clear the ticker and source filters.")
        else:
            st.info("No news stored yet: start the worker (`trident fin monitor`) and articles appear here as "
                    "they are scored.")
        return
    scored = news["score"].notna()
    count = f"{len(news)} article{'s' if len(news) != 1 else ''}"
    count += f" (the newest {LIMIT})" if len(news) == LIMIT else ""
    if scored.any():
        count += f" · mean score {news.loc[scored, 'score'].mean():+.3f} over {int(scored.sum())} scored"
    st.caption(f"{count} · read at {datetime.now(UTC):%H:%M:%S} UTC")
    ids = news["id"].tolist()
    st.session_state[SHOWN] = ids
    st.dataframe(news_table(news), hide_index=True, key="news_table", column_config=NEWS_COLUMNS,
                 on_select=_row_selected, selection_mode="single-row")
    if st.session_state.get(ARTICLE) not in ids:
        st.session_state[ARTICLE] = ids[0]
    titles = dict(zip(ids, news["title"]))
    st.selectbox("Article", ids, key=ARTICLE, format_func=lambda i: titles.get(i, i),
                 help="Or select a row of the table.")
    article = call(service.article, st.session_state[ARTICLE])
    if article is not None:
        article_detail(article, key="news_article")


live_news()
