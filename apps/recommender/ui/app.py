"""The recommender's dashboard: ``streamlit run apps/recommender/ui/app.py`` (or ``trident rec dashboard``), with the
CLI's settings (``REC_*``, ``TRIDENT_*``). Analysts (and admins) sign in."""

from __future__ import annotations

from apps.common.auth import guarded_navigation

page = guarded_navigation("Recommender", [
    ("views/users.py", "Recommendations"),
    ("views/metrics.py", "Metrics"),
    ("views/items.py", "Item explorer"),
    ("views/model_card.py", "Model card"),
], roles=("analyst",), what="the recommender dashboard")
page.run()
