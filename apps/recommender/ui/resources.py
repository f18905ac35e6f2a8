"""What every page of the recommender dashboard shares: the service (built once per process) and one way to call it
so that a failure reaches the user as a sentence, never as a traceback."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from apps.common.ui import guarded, require, service_or_reason
from apps.recommender.service import USER_ERRORS, RecService
from apps.recommender.settings import RecSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


@st.cache_resource(show_spinner="Loading the recommender...")
def _build_service() -> RecService:
    # exceptions are not cached: a dashboard started before `trident rec train` works once the artifact exists
    return RecService.build(RecSettings())


def get_service() -> RecService | str:
    """The shared service, or a sentence saying why the dashboard cannot start."""
    return service_or_reason(_build_service, USER_ERRORS, "The recommender cannot start:", log,
                             "the recommender dashboard")


def require_service() -> RecService:
    """The shared service; when it cannot start, show why with ``st.error`` and stop the page."""
    return require(get_service())


def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Run one service call; on failure show ``st.error`` with a sentence and return None."""
    return guarded(fn, args, kwargs, USER_ERRORS, log)
