"""What every page of the support console shares: the service (built once per process), the signed-in agent's name,
and one way to call the service so that a failure reaches the agent as a sentence, never as a traceback."""

from __future__ import annotations

import logging

import streamlit as st

from apps.common.auth import current_user
from apps.common.ui import ServiceAccess
from apps.customer_service.service import USER_ERRORS, CSService
from apps.customer_service.settings import CSSettings

log = logging.getLogger(__name__)


@st.cache_resource(show_spinner="Loading the model and the knowledge base...")
def _build_service() -> CSService:
    # st.cache_resource does not keep exceptions, so a console that failed to start retries on the next rerun
    # (after `trident cs train`, say) instead of showing the old error until the server restarts.
    return CSService.build(CSSettings())


_access = ServiceAccess(_build_service, USER_ERRORS, "The console cannot start:", "the support console", log)
get_service = _access.get
require_service = _access.require
# Errors the agent can act on (USER_ERRORS) are shown as they are; anything else is logged with its traceback.
call = _access.call


def agent_name() -> str:
    """The agent using this browser session: the signed-in user name, under which every claim and answer is
    recorded."""
    return current_user().name
