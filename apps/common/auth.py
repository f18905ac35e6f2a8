"""Sign-in to the dashboards (``streamlit-authenticator``): every ``ui/app.py`` starts with
:func:`guarded_navigation`, which shows the sign-in form to whoever is not signed in, one line to an account whose
role may not open the dashboard, and the dashboard's pages to the others.

The accounts are the ``users`` table (:mod:`apps.common.users`, managed with ``trident users``), read on every run,
so that an account added, removed or given a new password counts at once. A browser stays signed in through a cookie
signed with ``TRIDENT_AUTH__COOKIE_KEY`` (else a key generated once under the var folder); the three dashboards
share it, so one sign-in on a host opens every dashboard the account's role may open. Which roles open what:

- the support console: agent (and admin); its writes are recorded under the signed-in name;
- the finance dashboard and the recommender dashboard: analyst (and admin);
- admin: everything, and the pages or actions a dashboard keeps for administrators (see :func:`is_admin`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import streamlit as st
import streamlit_authenticator as stauth
from streamlit_authenticator.utilities import LoginError

from apps.common.db import DatabaseError
from apps.common.ui import escape_markdown, navigation, sentence
from apps.common.users import ADMIN, AuthSettings, User, UserStore, cookie_key

log = logging.getLogger(__name__)

COOKIE_NAME = "trident_auth"
USER_KEY = "trident_user"  # session state: the signed-in account (a User), set on every run before the page runs
SIGN_OUT_KEY = "trident_sign_out"
SIGNED_OUT = "trident_signed_out"  # session state: signed out here, so the cookie is being deleted
# (script path relative to app.py, title), or (path, title, roles that see the page besides admin; () for admins only)
PageSpec = tuple[str, str] | tuple[str, str, tuple[str, ...]]


@dataclass(frozen=True)
class _Auth:
    store: UserStore
    key: str
    expiry_days: float


@st.cache_resource(show_spinner=False)
def _auth() -> _Auth:
    # exceptions are not cached: a dashboard started while the database was down signs in once it is back
    settings = AuthSettings()
    return _Auth(UserStore(settings.core.effective_database_url).create(), cookie_key(settings),
                 settings.cookie_expiry_days)


def _cannot_start(exc: Exception) -> str:
    if isinstance(exc, DatabaseError):
        return f"The dashboard cannot start: {sentence(exc)}"
    log.exception("the sign-in could not start")
    return f"The dashboard cannot start: {type(exc).__name__}: {sentence(getattr(exc, 'orig', None) or exc)}"


def _signed_in(authenticator: stauth.Authenticate, store: UserStore) -> tuple[bool, User | None]:
    """Whether this session is signed in (by the form earlier, or by the cookie of an earlier visit), and its account
    as the database has it now (None: removed since)."""
    try:
        authenticator.login(location="unrendered")  # signs in by the cookie, if there is a valid one
    except LoginError:  # the cookie names an account that was removed: ignore cookies for this session
        st.session_state["logout"] = True
    name = st.session_state.get("username") if st.session_state.get("authentication_status") else None
    return bool(name), store.get(name) if name else None


def _signed_in_now(_: dict) -> None:
    # Called by the form on success, before it draws the cookie component: rerun at once, for the dashboard without
    # the form (a component drawn here would be dropped by that rerun before it had loaded: no cookie, and an
    # aborted request in the browser). The runs that follow set the cookie.
    st.session_state.pop(SIGNED_OUT, None)
    st.rerun()


def _sign_in_form(authenticator: stauth.Authenticate, store: UserStore, title: str) -> None:
    authenticator.login(location="main", fields={"Form name": f"Sign in · {title}", "Username": "User name",
                                                 "Password": "Password", "Login": "Sign in"}, callback=_signed_in_now)
    if st.session_state.get("authentication_status") is False:
        st.error("Wrong user name or password.")
    elif not store.list():
        st.info("No account exists yet: create one with `trident users add NAME --role ROLE`.")


def guarded_navigation(title: str, pages: Sequence[PageSpec], roles: tuple[str, ...], what: str) -> Any:
    """A dashboard's navigation behind the sign-in: return the page to run for a signed-in account that ``roles``
    (or admin) may use; otherwise show the sign-in form, or the line ``Your account (role R) cannot open <what>.``,
    and stop the run there. Errors (the database cannot be reached) are one ``st.error`` sentence.

    Args:
        title: The dashboard's title (browser tab, sign-in form).
        pages: ``(script, title)`` in menu order, the first the default; ``(script, title, roles)`` for a page only
            those roles and admin see (``()``: admins only); the others can neither see nor open it.
        roles: The roles, besides admin, that open the dashboard.
        what: The dashboard in a sentence, e.g. ``"the finance dashboard"``.
    """
    st.session_state.pop(USER_KEY, None)
    every = [(p[0], p[1]) for p in pages]
    # The hidden components that set or delete the cookie go here, first in the sidebar: drawn again on every run at
    # the same place, they stay loaded until done (one dropped by a rerun while loading would do nothing).
    cookie = st.sidebar.container()
    try:
        auth = _auth()
        authenticator = stauth.Authenticate(auth.store.credentials(), COOKIE_NAME, auth.key, auth.expiry_days,
                                            auto_hash=False, login_sleep_time=0)
        signed_in, user = _signed_in(authenticator, auth.store)
    except Exception as exc:  # noqa: BLE001 - one sentence, the traceback in the server log
        navigation(title, every, hidden=True)
        st.error(_cannot_start(exc))
        st.stop()
    sign_out = signed_in  # an account removed since it signed in is signed out
    if user is not None:  # drawn before the menu, so that signing out hides the menu in this same run
        st.sidebar.caption(f"Signed in as **{escape_markdown(user.name)}** ({user.role})")
        sign_out = st.sidebar.button("Sign out", key=SIGN_OUT_KEY)
    with cookie:
        if sign_out:
            st.session_state[SIGNED_OUT] = True
            authenticator.logout(location="unrendered")  # deletes the cookie too
            user = None
        elif user is not None:
            authenticator.cookie_controller.set_cookie()  # again on every run: the expiry slides
        elif st.session_state.get(SIGNED_OUT):
            authenticator.cookie_controller.delete_cookie()
    allowed = user is not None and user.may(roles)
    shown = [(p[0], p[1]) for p in pages if len(p) < 3 or user.may(p[2])] if allowed else every
    page = navigation(title, shown, hidden=not allowed)  # hidden: every page keeps its URL for after the sign-in
    if user is None:
        _sign_in_form(authenticator, auth.store, title)
        st.stop()
    if not allowed:
        st.error(f"Your account (role {user.role}) cannot open {what}.")
        st.stop()
    st.session_state[USER_KEY] = user
    return page


def current_user() -> User:
    """The account signed in to this session (the pages run after :func:`guarded_navigation` let them)."""
    return st.session_state[USER_KEY]


def is_admin() -> bool:
    """Whether the signed-in account is an administrator (who may edit the knowledge base, forget a customer)."""
    return current_user().role == ADMIN
