"""What the three dashboards share: a failure reaches the user as one sentence, never as a traceback, and text from
users, feeds and catalogues is shown literally.

Each app's ``ui/resources.py`` builds its service once per process (``st.cache_resource``) and reaches it through
one :class:`ServiceAccess` with its own user errors and wording.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import streamlit as st

if TYPE_CHECKING:
    from core.model_card import CardText

S = TypeVar("S")
T = TypeVar("T")

# Characters that Markdown, Streamlit's directives (:red[...], :material/x:) or its LaTeX ($) would interpret.
MARKDOWN_SPECIAL = frozenset("\\`*_{}[]()<>#+-.!|~$:=^&\"'")


def escape_markdown(text: object) -> str:
    """Text from users, feeds or catalogues, to be shown literally by whatever renders Markdown (``st.markdown``,
    ``st.caption``, ``st.info``, an f-string of either): every Markdown character backslash-escaped, so that no link,
    emphasis, directive or HTML tag is made of it. ``None`` is empty; HTML is never rendered anyway."""
    return "".join("\\" + ch if ch in MARKDOWN_SPECIAL else ch for ch in ("" if text is None else str(text)))


def navigation(title: str, pages: Sequence[tuple[str, str]], hidden: bool = False) -> Any:
    """Configure a dashboard's browser tab (``Trident · <title>``) and its navigation over ``pages``
    (``(script path relative to app.py, title)`` in menu order; the first is the default); return the page to run.
    ``hidden``: no menu (the pages still answer their URLs)."""
    st.set_page_config(page_title=f"Trident · {title}", page_icon="🔱", layout="wide")
    # No page icons: the browser makes the current page's icon the favicon, a :material/...: one is fetched from
    # fonts.gstatic.com (unreachable offline: a console error on every visit), and emoji need an emoji font.
    return st.navigation([st.Page(path, title=name, default=i == 0) for i, (path, name) in enumerate(pages)],
                         position="hidden" if hidden else "sidebar")


def sentence(exc: BaseException) -> str:
    """An exception's message as a sentence: first line, capital first letter, final full stop."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0].strip() or type(exc).__name__
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


class ServiceAccess(Generic[S]):
    """How the pages of one dashboard reach its service (``build``, an ``st.cache_resource`` function): a failure
    reaches the user as one sentence. ``user_errors`` are shown as they are; ``prefix`` starts the sentence shown when
    the service cannot start (``"The console cannot start:"``); other failures go to ``log`` with their traceback,
    naming the dashboard ``what``."""

    def __init__(self, build: Callable[[], S], user_errors: tuple[type[BaseException], ...], prefix: str, what: str,
                 log: logging.Logger) -> None:
        self.build, self.user_errors, self.prefix, self.what, self.log = build, user_errors, prefix, what, log

    def get(self) -> S | str:
        """The shared service, or the sentence to show when it cannot start: ``"<prefix> <why>"``."""
        try:
            return self.build()
        except self.user_errors as exc:
            return f"{self.prefix} {sentence(exc)}"
        except Exception as exc:  # a bad setting, an unreachable database, a broken artifact: still one sentence
            self.log.exception("%s could not start", self.what)
            return f"{self.prefix} {type(exc).__name__}: {sentence(exc)}"

    def require(self) -> S:
        """The shared service; when it cannot start, show why with ``st.error`` and stop the page."""
        service = self.get()
        if isinstance(service, str):
            st.error(service)
            st.stop()
        return service

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """Run one service call; on failure show ``st.error`` with a sentence (:meth:`show_failure`) and return None."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            self.show_failure(exc, fn)
        return None

    def show_failure(self, exc: BaseException, fn: Callable) -> None:
        """Show a failed service call with ``st.error``: a user error as it is, anything else as a short sentence
        (with its traceback in the server log)."""
        if isinstance(exc, self.user_errors):
            st.error(sentence(exc))
            return
        self.log.exception("service call %s failed", getattr(fn, "__name__", fn), exc_info=exc)
        st.error(f"That did not work ({type(exc).__name__}: {sentence(exc)}) The details are in the server log.")


def show_model_card(card: CardText) -> None:
    """Show the model card of the artifact a dashboard serves (what its service's ``model_card()`` returns): its
    title as the page's heading, where it lives, then the card. The card is Markdown that Trident generated from the
    artifact's records, every recorded text in it escaped; it is rendered as Markdown, never as HTML."""
    title, _, body = card.markdown.partition("\n")
    st.subheader(title.removeprefix("# ") if title.startswith("# ") else "Model card")
    where = escape_markdown(card.path)
    if card.written:
        st.caption(f"The artifact's {where}, generated from its own records (config, reports) when it was written.")
    else:
        st.caption(f"Generated just now from the artifact's records: it has no {where} yet "
                   "(`trident core model-card --artifact DIR` writes it).")
    st.markdown(body if title.startswith("# ") else card.markdown)
