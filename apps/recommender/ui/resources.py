"""What every page of the recommender dashboard shares: the service (built once per process) and one way to call it
so that a failure reaches the user as a sentence, never as a traceback."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from apps.recommender.service import USER_ERRORS, RecService
from apps.recommender.settings import RecSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


@st.cache_resource(show_spinner="Loading the recommender...")
def _build_service() -> RecService:
    # exceptions are not cached: a dashboard started before `trident rec train` works once the artifact exists
    return RecService.build(RecSettings())


def sentence(exc: BaseException) -> str:
    """An exception's message as a sentence: first line, capital first letter, final full stop."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0].strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def get_service() -> RecService | str:
    """The shared service, or a sentence saying why the dashboard cannot start."""
    try:
        return _build_service()
    except USER_ERRORS as exc:
        return f"The recommender cannot start: {sentence(exc)}"
    except Exception as exc:
        log.exception("the recommender dashboard could not start")
        return f"The recommender cannot start: {type(exc).__name__}: {sentence(exc)}"


def require_service() -> RecService:
    """The shared service; when it cannot start, show why with ``st.error`` and stop the page."""
    service = get_service()
    if isinstance(service, str):
        st.error(service)
        st.stop()
    return service


def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Run one service call; on failure show ``st.error`` with a sentence and return None."""
    try:
        return fn(*args, **kwargs)
    except USER_ERRORS as exc:
        st.error(sentence(exc))
    except Exception as exc:
        log.exception("service call %s failed", getattr(fn, "__name__", fn))
        st.error(f"That did not work ({type(exc).__name__}: {sentence(exc)}) The details are in the server log.")
    return None
