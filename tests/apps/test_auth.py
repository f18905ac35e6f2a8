"""The dashboards' accounts and sign-in: the ``users`` table on SQLite and PostgreSQL (bcrypt hashes, never a
password), the cookie key, the demo accounts, the sign-in gate of each dashboard with Streamlit's AppTest (no model
needed: nothing of a dashboard runs before the sign-in), and Markdown escaping."""

from __future__ import annotations

import html
import os
import re
import stat
import threading

import pytest
import sqlalchemy as sa
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest
from streamlit_authenticator import Hasher

from apps.common.settings import REPO_ROOT, CoreSettings
from apps.common.ui import escape_markdown
from apps.common.users import AuthSettings, UserError, UserStore, cookie_key, users
from tests.apps.apptest import PASSWORD, USERS, add_users, fresh_service, sign_in  # noqa: F401 (an autouse fixture)

APPS = {"cs": (REPO_ROOT / "apps" / "customer_service" / "ui" / "app.py", "Support console"),
        "fin": (REPO_ROOT / "apps" / "finance_sentiment" / "ui" / "app.py", "Finance sentiment"),
        "rec": (REPO_ROOT / "apps" / "recommender" / "ui" / "app.py", "Recommender")}
HOSTILE = "**bold** [x](javascript:alert(1)) <script>alert(2)</script> :red[red] $x$ # h"


# ------------------------------------------------------------------------------------------------ the store
def test_accounts_are_stored_as_bcrypt_hashes_and_listed_without_them(db_url):
    with UserStore(db_url).create() as store:
        store.add("ada", "agent", "first password")
        store.add("root", "admin", "second password")
        assert [(u.name, u.role) for u in store.list()] == [("ada", "agent"), ("root", "admin")]
        assert store.get("ada").created_at.tzinfo is not None and store.get("nobody") is None
        with store.engine.connect() as conn:
            rows = {r.name: r._mapping for r in conn.execute(sa.select(users))}
        assert "first password" not in str(rows) and "second password" not in str(rows)
        creds = store.credentials()["usernames"]
        assert creds["ada"]["roles"] == ["agent"] and Hasher.is_hash(creds["ada"]["password"])
        assert Hasher.check_pw("first password", rows["ada"]["password_hash"])  # what the sign-in form checks
        assert not Hasher.check_pw("second password", rows["ada"]["password_hash"])
        assert not hasattr(store.list()[0], "password_hash")

        store.set_password("ada", "a new password")
        assert Hasher.check_pw("a new password", store.credentials()["usernames"]["ada"]["password"])
        store.remove("ada")
        assert [u.name for u in store.list()] == ["root"]


@pytest.mark.parametrize("call, message", [
    (lambda s: s.add("root", "agent", "whatever password"), "a user named 'root' already exists"),
    (lambda s: s.add("bob", "boss", "whatever password"), "unknown role 'boss': choose agent, analyst or admin"),
    (lambda s: s.add("Bob", "agent", "whatever password"), "a user name is 1 to 32 lowercase letters"),
    (lambda s: s.add("bob", "agent", ""), "the password is empty"),
    (lambda s: s.add("bob", "agent", "seven77"), "the password is too short: 8 characters or more"),
    (lambda s: s.add("bob", "agent", "é" * 37), "the password is too long: 72 bytes at most"),
    (lambda s: s.add("bob", "agent", " padded password"), "the password starts or ends with a space"),
    (lambda s: s.remove("nobody"), "no user named 'nobody'"),
    (lambda s: s.set_password("nobody", "whatever password"), "no user named 'nobody'"),
])
def test_refused_changes_are_one_line_and_change_nothing(sqlite_url, call, message):
    with UserStore(sqlite_url).create() as store:
        store.add("root", "admin", "root password")
        with pytest.raises(UserError, match=re.escape(message)):
            call(store)
        assert [(u.name, u.role) for u in store.list()] == [("root", "admin")]


def test_demo_accounts_are_created_once_for_the_roles_nobody_has(sqlite_url):
    with UserStore(sqlite_url).create() as store:
        store.add("root", "admin", "root password")
        created = store.ensure_demo_accounts()
        assert [(u.name, u.role) for u, _ in created] == [("demo-agent", "agent"), ("demo-analyst", "analyst")]
        creds = store.credentials()["usernames"]
        assert all(Hasher.check_pw(pw, creds[u.name]["password"]) and len(pw) >= 16 for u, pw in created)
        assert store.ensure_demo_accounts() == []


def test_the_cookie_key_is_generated_once_into_a_private_file(tmp_path, monkeypatch):
    monkeypatch.delenv("TRIDENT_AUTH__COOKIE_KEY", raising=False)
    settings = AuthSettings(core=CoreSettings(var_dir=tmp_path / "var"))
    keys: list[str] = []
    threads = [threading.Thread(target=lambda: keys.append(cookie_key(settings))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    path = tmp_path / "var" / "auth" / "cookie.key"
    assert len(set(keys)) == 1 and len(keys[0]) >= 32 and path.read_text() == keys[0]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert os.listdir(path.parent) == ["cookie.key"]  # no temporary file left
    assert cookie_key(settings) == keys[0]
    monkeypatch.setenv("TRIDENT_AUTH__COOKIE_KEY", "k" * 40)
    assert cookie_key(AuthSettings(core=settings.core)) == "k" * 40
    assert "k" * 40 not in repr(AuthSettings())


# ------------------------------------------------------------------------------------------------ the gate
@pytest.fixture
def accounts_db(monkeypatch, tmp_path) -> str:
    """The environment of a dashboard with an empty database of its own; no model anywhere."""
    url = f"sqlite:///{tmp_path / 'trident.db'}"
    monkeypatch.setenv("TRIDENT_DATABASE_URL", url)
    monkeypatch.setenv("TRIDENT_VAR_DIR", str(tmp_path / "var"))
    for name in ("CS_ARTIFACT", "FIN_ARTIFACT", "REC_ARTIFACT"):
        monkeypatch.setenv(name, str(tmp_path / "no-model"))
    return url


def only_the_sign_in_form(at: AppTest, title: str) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert [t.label for t in at.text_input] == ["User name", "Password"]
    assert [b.label for b in at.button] == ["Sign in"] and not at.sidebar.button
    assert [h.value for h in at.subheader] == [f"Sign in · {title}"]
    assert not (at.dataframe or at.main.markdown or at.caption or at.metric or at.selectbox or at.sidebar.caption)


@pytest.mark.parametrize("app", APPS)
def test_signed_out_sees_the_sign_in_form_and_nothing_else(accounts_db, app):
    path, title = APPS[app]
    at = AppTest.from_file(str(path), default_timeout=60).run()
    only_the_sign_in_form(at, title)
    assert [i.value for i in at.info] == ["No account exists yet: create one with "
                                          "`trident users add NAME --role ROLE`."]
    assert not at.error
    add_users()
    only_the_sign_in_form(at.run(), title)
    assert not at.info


def test_a_wrong_password_or_unknown_name_is_one_line(accounts_db):
    add_users()
    path, title = APPS["rec"]
    for name, password in ((USERS["analyst"], "not the password"), ("nobody", PASSWORD)):
        at = sign_in(AppTest.from_file(str(path), default_timeout=60).run(), name, password)
        assert [e.value for e in at.error] == ["Wrong user name or password."]
        assert [h.value for h in at.subheader] == [f"Sign in · {title}"]


@pytest.mark.parametrize("app, role, what", [("cs", "analyst", "the support console"),
                                             ("fin", "agent", "the finance dashboard"),
                                             ("rec", "agent", "the recommender dashboard")])
def test_a_role_without_access_sees_one_line(accounts_db, app, role, what):
    add_users()
    at = sign_in(AppTest.from_file(str(APPS[app][0]), default_timeout=60).run(), USERS[role])
    assert [e.value for e in at.error] == [f"Your account (role {role}) cannot open {what}."]
    assert not (at.text_input or at.subheader or at.dataframe or at.main.markdown or at.info or at.metric)
    assert [b.label for b in at.sidebar.button] == ["Sign out"]


@pytest.mark.parametrize("app", APPS)
def test_an_admin_gets_past_the_gate_of_every_dashboard(accounts_db, app):
    add_users()
    at = sign_in(AppTest.from_file(str(APPS[app][0]), default_timeout=60).run(), USERS["admin"])
    assert not at.exception and not at.text_input
    assert at.sidebar.caption[0].value == "Signed in as **root** (admin)"
    assert not any("cannot open" in e.value for e in at.error)  # the dashboard itself ran (and found no model)
    assert f"Sign in · {APPS[app][1]}" not in [h.value for h in at.subheader]


def test_a_page_kept_for_admins_is_neither_listed_nor_opened_for_others(accounts_db, tmp_path):
    add_users()
    (tmp_path / "app.py").write_text(
        "from apps.common.auth import guarded_navigation\n"
        "guarded_navigation('T', [('a.py', 'A'), ('admin.py', 'Admin', ())], roles=('agent',), what='T').run()\n")
    for name in ("a", "admin"):
        (tmp_path / f"{name}.py").write_text(f"import streamlit as st\nst.subheader('page {name}')\n")
    agent = sign_in(AppTest.from_file(str(tmp_path / "app.py"), default_timeout=60).run(), USERS["agent"])
    assert [h.value for h in agent.subheader] == ["page a"]
    with pytest.raises(ValueError, match="Known pages: \\[.*a.py'\\]"):  # not registered for an agent
        agent.switch_page("admin.py")
    admin = sign_in(AppTest.from_file(str(tmp_path / "app.py"), default_timeout=60).run(), USERS["admin"])
    assert [h.value for h in admin.switch_page("admin.py").run().subheader] == ["page admin"]


def test_an_account_removed_while_signed_in_is_signed_out(accounts_db):
    add_users()
    path, title = APPS["rec"]
    at = sign_in(AppTest.from_file(str(path), default_timeout=60).run(), USERS["agent"])
    assert at.error  # the refusal line
    UserStore(accounts_db).remove(USERS["agent"])
    only_the_sign_in_form(at.run(), title)


# ------------------------------------------------------------------------------------------------ escaping
def rendered(markdown: str) -> str:
    return MarkdownIt("commonmark").render(markdown)


def test_escaped_text_renders_literally_without_links_emphasis_or_html():
    for text in (HOSTILE, "1. not a list", "- not a bullet", "> not a quote", "a_b_c *x* `y` ~~z~~", "\\*",
                 "line one\nline two"):
        out = rendered(escape_markdown(text))
        assert not re.search(r"<(?!/?p>)", out.replace("\n", "")), (text, out)  # nothing but the paragraph
        assert html.unescape(re.sub(r"</?p>", "", out)).strip() == text.strip(), (text, out)
    assert "<a " in rendered("[x](https://example.org)") and "<strong>" in rendered("**bold**")  # the check works
    assert escape_markdown(None) == "" and escape_markdown(7) == "7"
