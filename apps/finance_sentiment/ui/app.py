"""The analysts' dashboard of the finance-sentiment monitor: ``streamlit run apps/finance_sentiment/ui/app.py``
(or ``trident fin dashboard``).

Reads the same settings as the CLI (``FIN_*``, ``TRIDENT_*``); the service is built once per server process. It only
reads the database (and scores texts on demand): ``trident fin monitor`` writes to it at the same time. Analysts (and
admins) sign in.
"""

from __future__ import annotations

from apps.common.auth import guarded_navigation
from apps.finance_sentiment.ui.resources import get_service, sidebar

page = guarded_navigation("Finance sentiment", [
    ("views/news.py", "News"),
    ("views/prices.py", "Sentiment and price"),
    ("views/alerts.py", "Alerts"),
    ("views/feeds.py", "Feed health"),
    ("views/score.py", "Score a text"),
    ("views/fairness.py", "Fairness"),
    ("views/model_card.py", "Model card"),
], roles=("analyst",), what="the finance dashboard")
service = get_service()
if not isinstance(service, str):  # otherwise the page says why, in one st.error
    sidebar(service)  # after st.navigation: a widget drawn before it loses its value on every rerun
page.run()
