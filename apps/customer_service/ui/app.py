"""The support agents' console: ``streamlit run apps/customer_service/ui/app.py``.

Reads the same settings as the CLI (``CS_*``, ``TRIDENT_*``); the service is built once per server process.
"""

from __future__ import annotations

from apps.common.ui import navigation
from apps.customer_service.ui.resources import agent_input

page = navigation("Support console", [
    ("views/conversations.py", "Conversations"),
    ("views/knowledge_base.py", "Knowledge base"),
    ("views/evaluation.py", "Evaluation"),
    ("views/admin.py", "Admin"),
])
agent_input()  # after st.navigation: a widget drawn before it loses its value on every rerun
page.run()
