"""The recommender's dashboard: ``streamlit run apps/recommender/ui/app.py`` (or ``trident rec dashboard``).

Reads the same settings as the CLI (``REC_*``, ``TRIDENT_*``); the service is built once per server process.
"""

from __future__ import annotations

from apps.common.ui import navigation

page = navigation("Recommender", [
    ("views/users.py", "Recommendations"),
    ("views/metrics.py", "Metrics"),
    ("views/items.py", "Item explorer"),
])
page.run()
