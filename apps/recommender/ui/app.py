"""The recommender's dashboard: ``streamlit run apps/recommender/ui/app.py`` (or ``trident rec dashboard``).

Reads the same settings as the CLI (``REC_*``, ``TRIDENT_*``); the service is built once per server process.
"""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="Trident · Recommender", page_icon="🔱", layout="wide")

# No page icons (see the support console): an icon font would be fetched from the internet.
page = st.navigation([
    st.Page("views/users.py", title="Recommendations", default=True),
    st.Page("views/metrics.py", title="Metrics"),
    st.Page("views/items.py", title="Item explorer"),
])
page.run()
