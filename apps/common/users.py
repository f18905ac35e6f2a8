"""The dashboards' accounts: a ``users`` table (name, role, bcrypt hash of the password, when it was created) on SQLite
or PostgreSQL, the rules for names, roles and passwords, and the settings of the sign-in cookie.

A password is never stored nor shown: only its bcrypt hash (the format ``streamlit_authenticator.Hasher`` checks at
sign-in), which ``list`` never returns either. The roles:

- ``agent``: the support console;
- ``analyst``: the finance and the recommender dashboards;
- ``admin``: every dashboard, and what only an administrator may do there (rebuild the knowledge base's index, forget
  a customer); user management is the CLI's (``trident users``), on the machine that holds the database.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import bcrypt
import sqlalchemy as sa
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from apps.common.db import BaseStore, UTCDateTime, upsert_insert, utcnow
from apps.common.settings import CoreSettings

ROLES = ("agent", "analyst", "admin")
ADMIN = "admin"
NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")
MIN_PASSWORD = 8
MAX_PASSWORD_BYTES = 72  # bcrypt reads no further (and bcrypt 5 refuses a longer password)
DEMO_PREFIX = "demo-"


class UserError(ValueError):
    """A name, role or password that is refused, or an unknown or duplicate user; the message is one line."""


@dataclass(frozen=True)
class User:
    """An account as everyone may see it: never its password hash."""

    name: str
    role: str
    created_at: datetime

    def may(self, roles: tuple[str, ...] | list[str] | set[str]) -> bool:
        """Whether this account opens what ``roles`` may open (an admin opens everything)."""
        return self.role == ADMIN or self.role in roles


class AuthSettings(BaseSettings):
    """The sign-in of the dashboards (env prefix ``TRIDENT_AUTH__``); the accounts are in the database of ``core``."""

    model_config = SettingsConfigDict(env_prefix="TRIDENT_AUTH__", env_nested_delimiter="__", frozen=True,
                                      extra="ignore", env_ignore_empty=True)

    cookie_key: str = Field("", repr=False,
                            description="Secret (32 characters or more) that signs the dashboards' sign-in cookie; "
                                        "empty: a random key generated once into <var>/auth/cookie.key (mode 0600).")
    cookie_expiry_days: float = Field(1.0, ge=0.0,
                                      description="Days a browser stays signed in after its last visit (0: sign in "
                                                  "on every visit).")
    core: CoreSettings = Field(default_factory=CoreSettings)


def cookie_key(settings: AuthSettings) -> str:
    """The key that signs the sign-in cookie: ``cookie_key`` when set, else the one in ``<var>/auth/cookie.key``,
    generated there once (the folder 0700, the file 0600; dashboards starting at once all read the same one)."""
    if settings.cookie_key:
        return settings.cookie_key
    folder = settings.core.var_dir / "auth"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / "cookie.key"
    if not path.is_file():
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".cookie-")  # created 0600
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(secrets.token_urlsafe(48))
            os.link(tmp, path)  # whole or not at all; of two processes racing here, the first one's key stays
        except FileExistsError:
            pass
        finally:
            Path(tmp).unlink()
    return path.read_text(encoding="ascii").strip()


def check_name(name: str) -> str:
    """``name`` if it is a valid user name (what the sign-in form accepts: it lower-cases what is typed)."""
    if not NAME_RE.fullmatch(name):
        raise UserError(f"a user name is 1 to 32 lowercase letters, digits, '.', '_' or '-', starting with a letter "
                        f"or digit, not {name!r}")
    return name


def check_role(role: str) -> str:
    """``role`` if it is one of :data:`ROLES`."""
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}: choose {', '.join(ROLES[:-1])} or {ROLES[-1]}")
    return role


def check_password(password: str) -> str:
    """``password`` if it may be set: 8 characters or more, at most 72 bytes (bcrypt's limit), no space at either end
    (the sign-in form strips them)."""
    if not password:
        raise UserError("the password is empty")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password is too short: {MIN_PASSWORD} characters or more")
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise UserError(f"the password is too long: {MAX_PASSWORD_BYTES} bytes at most")
    if password != password.strip():
        raise UserError("the password starts or ends with a space")
    return password


def hash_password(password: str) -> str:
    """The bcrypt hash of a checked password."""
    return bcrypt.hashpw(check_password(password).encode(), bcrypt.gensalt()).decode()


metadata = sa.MetaData()

users = sa.Table(
    "users",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.String(60), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)


def _user(row: sa.Row) -> User:
    return User(name=row.name, role=row.role, created_at=row.created_at)


class UserStore(BaseStore):
    """The accounts, in the ``users`` table of the apps' database."""

    metadata = metadata

    def add(self, name: str, role: str, password: str) -> User:
        """Create an account.

        Raises:
            UserError: a bad name, role or password, or a user of that name exists.
        """
        row = {"name": check_name(name), "role": check_role(role), "password_hash": hash_password(password),
               "created_at": utcnow()}
        with self._write() as conn:
            added = conn.execute(upsert_insert(conn, users).values(**row).on_conflict_do_nothing()
                                 .returning(users.c.name)).first()
        if added is None:
            raise UserError(f"a user named {name!r} already exists")
        return User(name=name, role=role, created_at=row["created_at"])

    def get(self, name: str) -> User | None:
        """The account of that name, or None."""
        with self._read() as conn:
            row = conn.execute(sa.select(users.c.name, users.c.role, users.c.created_at)
                               .where(users.c.name == name)).first()
        return _user(row) if row is not None else None

    def list(self) -> list[User]:
        """Every account, by name."""
        with self._read() as conn:
            rows = conn.execute(sa.select(users.c.name, users.c.role, users.c.created_at).order_by(users.c.name))
            return [_user(r) for r in rows]

    def set_password(self, name: str, password: str) -> None:
        """Replace the password of an account (``UserError`` for an unknown user or a refused password)."""
        hashed = hash_password(password)
        with self._write() as conn:
            if conn.execute(users.update().where(users.c.name == name).values(password_hash=hashed)).rowcount != 1:
                raise UserError(f"no user named {name!r}")

    def remove(self, name: str) -> None:
        """Delete an account (``UserError`` for an unknown user)."""
        with self._write() as conn:
            if conn.execute(users.delete().where(users.c.name == name)).rowcount != 1:
                raise UserError(f"no user named {name!r}")

    def credentials(self) -> dict:
        """The accounts as ``streamlit_authenticator.Authenticate`` takes them:
        ``{"usernames": {name: {"name", "password" (the hash), "roles"}}}``."""
        with self._read() as conn:
            rows = conn.execute(sa.select(users.c.name, users.c.role, users.c.password_hash))
            return {"usernames": {r.name: {"name": r.name, "password": r.password_hash, "roles": [r.role]}
                                  for r in rows}}

    def ensure_demo_accounts(self) -> list[tuple[User, str]]:
        """For each role that no account has, create ``demo-<role>`` with a random password.

        Returns:
            The accounts created, each with its password (to show once); empty when every role had an account.
        """
        taken = {u.role for u in self.list()}
        created = []
        for role in ROLES:
            if role in taken or self.get(DEMO_PREFIX + role) is not None:
                continue
            password = secrets.token_urlsafe(12)
            created.append((self.add(DEMO_PREFIX + role, role, password), password))
        return created
