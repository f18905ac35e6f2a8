"""What every page of the recommender dashboard shares: the service (built once per process) and one way to call it
so that a failure reaches the user as a sentence, never as a traceback."""

from __future__ import annotations

import logging

import streamlit as st

from apps.common.ui import ServiceAccess
from apps.recommender.service import USER_ERRORS, RecService
from apps.recommender.settings import RecSettings

log = logging.getLogger(__name__)


@st.cache_resource(show_spinner="Loading the recommender...")
def _build_service() -> RecService:
    # exceptions are not cached: a dashboard started before `trident rec train` works once the artifact exists
    return RecService.build(RecSettings())


_access = ServiceAccess(_build_service, USER_ERRORS, "The recommender cannot start:", "the recommender dashboard",
                        log)
get_service = _access.get
require_service = _access.require
call = _access.call
