"""``trident users ...``: the dashboards' accounts (:mod:`apps.common.users`) in the database of ``TRIDENT_*``.

A password is asked twice on the terminal (never echoed), or read from the first line of stdin with
``--password-stdin`` (scripts, containers); it is never printed, and ``list`` shows no hash.
"""

from __future__ import annotations

import getpass
import json
import sys

from rich.console import Console
from rich.table import Table

from apps.common.commands import CLIError, command_adder, settings_from_args
from apps.common.output import emit
from apps.common.settings import CoreSettings
from apps.common.users import ROLES, User, UserStore, check_name, check_password, check_role


def _store(args) -> UserStore:
    return UserStore(settings_from_args(CoreSettings, args).effective_database_url).create()


def _password(args) -> str:
    """The new password: stdin's first line with ``--password-stdin``, else asked twice on the terminal."""
    if args.password_stdin:
        return check_password(sys.stdin.readline().rstrip("\r\n"))
    if not sys.stdin.isatty():
        raise CLIError("no terminal to ask the password on: give it on stdin with --password-stdin")
    first = check_password(getpass.getpass("New password: "))
    if getpass.getpass("Again: ") != first:
        raise CLIError("the two passwords differ")
    return first


def _row(user: User) -> dict:
    return {"name": user.name, "role": user.role, "created": user.created_at.isoformat(timespec="seconds")}


def users_add(args) -> None:
    name, role = check_name(args.name), check_role(args.role)
    with _store(args) as store:
        if store.get(name) is not None:  # before asking for a password that would be thrown away
            raise CLIError(f"a user named {name!r} already exists")
        emit(_row(store.add(name, role, _password(args))), args.json)


def users_remove(args) -> None:
    with _store(args) as store:
        store.remove(args.name)
    emit({"removed": args.name}, args.json)


def users_passwd(args) -> None:
    with _store(args) as store:
        if store.get(args.name) is None:
            raise CLIError(f"no user named {args.name!r}")
        store.set_password(args.name, _password(args))
    emit({"password changed": args.name}, args.json)


def users_list(args) -> None:
    with _store(args) as store:
        rows = [_row(u) for u in store.list()]
    if args.json:
        print(json.dumps(rows))
        return
    table = Table("name", "role", "created")
    for r in rows:
        table.add_row(r["name"], r["role"], r["created"])
    Console().print(table if rows else "no users: add one with `trident users add NAME --role ROLE`")


def register(sub) -> None:
    """Add ``trident users`` and its commands to the CLI."""
    users = sub.add_parser("users", help="the dashboards' accounts: add, remove, list, change a password")
    add = command_adder(users.add_subparsers(dest="command", required=True), CoreSettings, ("database_url", "var_dir"))

    def with_password(sp) -> None:
        sp.add_argument("--password-stdin", action="store_true",
                        help="read the password from stdin's first line instead of asking twice")

    sp = add("add", "create an account (asks for its password)", users_add)
    sp.add_argument("name", help="user name: lowercase letters, digits, '.', '_', '-' (up to 32)")
    sp.add_argument("--role", required=True, metavar="|".join(ROLES),
                    help="agent: the support console; analyst: the finance and recommender dashboards; admin: "
                         "everything")
    with_password(sp)
    add("remove", "delete an account", users_remove).add_argument("name")
    sp = add("passwd", "change an account's password", users_passwd)
    sp.add_argument("name")
    with_password(sp)
    add("list", "every account: name, role, created (never a password)", users_list)
