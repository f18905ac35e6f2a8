"""The analysts' dashboard of the finance-sentiment monitor: ``streamlit run apps/finance_sentiment/ui/app.py``
(or ``trident fin dashboard``).

Reads the same settings as the CLI (``FIN_*``, ``TRIDENT_*``); the service is built once per server process. It only
reads the database (and scores texts on demand): ``trident fin monitor`` writes to it at the same time.
"""

from __future__ import annotations

import streamlit as st

from apps.finance_sentiment.ui.resources import get_service, sidebar

st.set_page_config(page_title="Trident · Finance sentiment", page_icon="🔱", layout="wide")

# No page icons: the browser makes the current page's icon the favicon, a :material/...: one is fetched from
# fonts.gstatic.com (unreachable offline: a console error on every visit), and emoji need an emoji font.
page = st.navigation([
    st.Page("views/news.py", title="News", default=True),
    st.Page("views/prices.py", title="Sentiment and price"),
    st.Page("views/alerts.py", title="Alerts"),
    st.Page("views/feeds.py", title="Feed health"),
    st.Page("views/score.py", title="Score a text"),
])
service = get_service()
if not isinstance(service, str):  # otherwise the page says why, in one st.error
    sidebar(service)  # after st.navigation: a widget drawn before it loses its value on every rerun
page.run()
