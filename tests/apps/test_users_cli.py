"""``trident users`` through the real CLI: adding, listing, changing a password and removing accounts, every refusal
one ``error:`` line with exit status 2; and the dashboards' commands listen on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
from streamlit_authenticator import Hasher

from apps.cli import main
from apps.common.settings import REPO_ROOT
from apps.common.users import UserStore


@pytest.fixture
def db(monkeypatch, tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'trident.db'}"
    monkeypatch.setenv("TRIDENT_DATABASE_URL", url)
    return url


def users(capsys, monkeypatch, *argv: str, stdin: str | None = None) -> tuple[int, str, str]:
    """``trident users ARGV`` with ``stdin``: (exit status, stdout, stderr)."""
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    rc = main(["users", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def hashes(url: str) -> dict[str, str]:
    return {n: u["password"] for n, u in UserStore(url).credentials()["usernames"].items()}


def test_add_list_passwd_remove(db, capsys, monkeypatch):
    assert users(capsys, monkeypatch, "add", "ada", "--role", "agent", "--password-stdin",
                 stdin="ada's password\n")[0] == 0
    rc, out, _ = users(capsys, monkeypatch, "add", "root", "--role", "admin", "--password-stdin", "--json",
                       stdin="root's password\n")
    assert rc == 0 and json.loads(out)["name"] == "root" and json.loads(out)["role"] == "admin"
    rc, out, _ = users(capsys, monkeypatch, "list", "--json")
    listed = json.loads(out)
    assert rc == 0 and [(u["name"], u["role"]) for u in listed] == [("ada", "agent"), ("root", "admin")]
    assert all(set(u) == {"name", "role", "created"} for u in listed)  # never a hash
    rc, out, _ = users(capsys, monkeypatch, "list")
    assert rc == 0 and "ada" in out and "agent" in out and "$2" not in out and "password" not in out
    assert Hasher.check_pw("ada's password", hashes(db)["ada"])

    assert users(capsys, monkeypatch, "passwd", "ada", "--password-stdin", stdin="another password\n")[0] == 0
    assert Hasher.check_pw("another password", hashes(db)["ada"])
    assert users(capsys, monkeypatch, "remove", "ada")[0] == 0
    assert json.loads(users(capsys, monkeypatch, "list", "--json")[1]) == [
        {"name": "root", "role": "admin", "created": listed[1]["created"]}]


def test_the_password_is_asked_twice_on_a_terminal(db, capsys, monkeypatch):
    answers = iter(["typed password", "typed password", "one password", "another one"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    assert main(["users", "add", "ann", "--role", "analyst"]) == 0
    assert Hasher.check_pw("typed password", hashes(db)["ann"])
    capsys.readouterr()
    assert main(["users", "passwd", "ann"]) == 2
    assert capsys.readouterr().err == "error: the two passwords differ\n"
    assert Hasher.check_pw("typed password", hashes(db)["ann"])


@pytest.mark.parametrize("argv, stdin, message", [
    (["add", "ada", "--role", "agent", "--password-stdin"], "a password\n", "a user named 'ada' already exists"),
    (["add", "bob", "--role", "boss", "--password-stdin"], "a password\n",
     "unknown role 'boss': choose agent, analyst or admin"),
    (["add", "Bob", "--role", "agent", "--password-stdin"], "a password\n", "a user name is 1 to 32 lowercase"),
    (["add", "bob", "--role", "agent", "--password-stdin"], "\n", "the password is empty"),
    (["add", "bob", "--role", "agent", "--password-stdin"], "short\n", "the password is too short"),
    (["add", "bob", "--role", "agent"], "", "no terminal to ask the password on: give it on stdin with "
                                            "--password-stdin"),
    (["remove", "nobody"], None, "no user named 'nobody'"),
    (["passwd", "nobody", "--password-stdin"], "a password\n", "no user named 'nobody'"),
])
def test_bad_input_is_one_error_line_with_status_2(db, capsys, monkeypatch, argv, stdin, message):
    with UserStore(db).create() as store:
        store.add("ada", "agent", "ada's password")
    rc, out, err = users(capsys, monkeypatch, *argv, stdin=stdin)
    assert rc == 2 and out == ""
    assert err.startswith(f"error: {message}") and err.count("\n") == 1, err
    assert [u.name for u in UserStore(db).list()] == ["ada"]


def test_users_runs_as_the_console_script(tmp_path):
    env = {**os.environ, "TRIDENT_DATABASE_URL": f"sqlite:///{tmp_path / 'trident.db'}"}
    cli = [sys.executable, "-m", "apps.cli", "users"]
    add = subprocess.run([*cli, "add", "ann", "--role", "analyst", "--password-stdin"], input="ann's password\n",
                         capture_output=True, text=True, cwd=REPO_ROOT, env=env)
    assert add.returncode == 0, add.stderr
    again = subprocess.run([*cli, "add", "ann", "--role", "analyst", "--password-stdin"], input="x password\n",
                           capture_output=True, text=True, cwd=REPO_ROOT, env=env)
    assert (again.returncode, again.stderr) == (2, "error: a user named 'ann' already exists\n")
    listed = subprocess.run([*cli, "list", "--json"], capture_output=True, text=True, cwd=REPO_ROOT, env=env)
    assert [u["name"] for u in json.loads(listed.stdout)] == ["ann"] and "password" not in listed.stdout


@pytest.mark.parametrize("argv, address", [(["cs", "console"], "127.0.0.1"), (["fin", "dashboard"], "127.0.0.1"),
                                           (["rec", "dashboard", "--address", "0.0.0.0"], "0.0.0.0")])
def test_dashboards_listen_on_the_loopback_unless_told_otherwise(monkeypatch, argv, address):
    started = {}

    def execve(path, cmd, env):
        started["cmd"] = cmd
        raise SystemExit(0)

    monkeypatch.setattr(os, "execve", execve)
    with pytest.raises(SystemExit):
        main(argv)
    cmd = started["cmd"]
    assert cmd[cmd.index("--server.address") + 1] == address
