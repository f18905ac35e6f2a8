"""The recommender's dashboard: ``streamlit run apps/recommender/ui/app.py`` (or ``trident rec dashboard``), with the
CLI's settings (``REC_*``, ``TRIDENT_*``)."""

from __future__ import annotations

from apps.common.ui import navigation

page = navigation("Recommender", [
    ("views/users.py", "Recommendations"),
    ("views/metrics.py", "Metrics"),
    ("views/items.py", "Item explorer"),
])
page.run()
