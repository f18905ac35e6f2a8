"""The support agents' console: ``streamlit run apps/customer_service/ui/app.py``.

Reads the same settings as the CLI (``CS_*``, ``TRIDENT_*``); the service is built once per server process. Agents
(and admins) sign in; what they do is recorded under their user name.
"""

from __future__ import annotations

from apps.common.auth import guarded_navigation

page = guarded_navigation("Support console", [
    ("views/conversations.py", "Conversations"),
    ("views/knowledge_base.py", "Knowledge base"),
    ("views/evaluation.py", "Evaluation"),
    ("views/model_card.py", "Model card"),
    ("views/admin.py", "Admin", ()),
], roles=("agent",), what="the support console")
page.run()
