"""What the three dashboards share: a failure reaches the user as one sentence, never as a traceback.

Each app's ``ui/resources.py`` builds its service once per process (``st.cache_resource``) and wraps these with its
own service type, user errors and wording.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

S = TypeVar("S")
T = TypeVar("T")


def sentence(exc: BaseException) -> str:
    """An exception's message as a sentence: first line, capital first letter, final full stop."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0].strip() or type(exc).__name__
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def service_or_reason(build: Callable[[], S], user_errors: tuple[type[BaseException], ...], prefix: str,
                      log: logging.Logger, what: str) -> S | str:
    """``build()``, or the sentence to show when it fails: ``"<prefix> <why>"``. Errors the user can act on are
    shown as they are; anything else is also logged (as ``"<what> could not start"``) with its traceback."""
    try:
        return build()
    except user_errors as exc:
        return f"{prefix} {sentence(exc)}"
    except Exception as exc:  # a bad setting, an unreachable database, a broken artifact: still one sentence
        log.exception("%s could not start", what)
        return f"{prefix} {type(exc).__name__}: {sentence(exc)}"


def require(service: S | str) -> S:
    """The service; when it is a reason it cannot start, show it with ``st.error`` and stop the page."""
    if isinstance(service, str):
        st.error(service)
        st.stop()
    return service


def show_failure(exc: BaseException, user_errors: tuple[type[BaseException], ...], log: logging.Logger,
                 fn: Callable) -> None:
    """Show a failed service call with ``st.error``: a user error as it is, anything else as a short sentence (with
    its traceback in the server log)."""
    if isinstance(exc, user_errors):
        st.error(sentence(exc))
        return
    log.exception("service call %s failed", getattr(fn, "__name__", fn), exc_info=exc)
    st.error(f"That did not work ({type(exc).__name__}: {sentence(exc)}) The details are in the server log.")


def guarded(fn: Callable[..., T], args: tuple, kwargs: dict[str, Any], user_errors: tuple[type[BaseException], ...],
            log: logging.Logger) -> T | None:
    """Run one service call; on failure show it (``show_failure``) and return None."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        show_failure(exc, user_errors, log, fn)
    return None
