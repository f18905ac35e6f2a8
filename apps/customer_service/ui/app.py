"""The support agents' console: ``streamlit run apps/customer_service/ui/app.py``.

Reads the same settings as the CLI (``CS_*``, ``TRIDENT_*``); the service is built once per server process.
"""

from __future__ import annotations

import streamlit as st

from apps.customer_service.ui.resources import agent_input

st.set_page_config(page_title="Trident · Support console", page_icon="🔱", layout="wide")

# No page icons: the browser makes the current page's icon the favicon, a :material/...: one is fetched from
# fonts.gstatic.com (unreachable offline: a console error on every visit), and emoji need an emoji font.
page = st.navigation([
    st.Page("views/conversations.py", title="Conversations", default=True),
    st.Page("views/knowledge_base.py", title="Knowledge base"),
    st.Page("views/evaluation.py", title="Evaluation"),
])
agent_input()  # after st.navigation: a widget drawn before it loses its value on every rerun
page.run()
