"""Database engines for the apps: SQLite (the embedded default) or PostgreSQL, behind one ``make_engine``.

SQLite engines run in WAL mode with foreign keys on and a 5 s busy timeout, and let SQLAlchemy emit ``BEGIN``
itself, so that a connection carrying the execution option ``WRITE_OPTION`` starts its transaction with
``BEGIN IMMEDIATE``: it takes the write lock up front (waiting up to the busy timeout for it) instead of failing
with "database is locked" when a read inside the transaction is followed by a write. ``postgresql://`` URLs use
the psycopg 3 driver.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

WRITE_OPTION = "trident_write"
"""Execution option: ``engine.execution_options(**{WRITE_OPTION: True})`` begins SQLite transactions IMMEDIATE."""

SQLITE_BUSY_TIMEOUT_MS = 5000
PG_CONNECT_TIMEOUT_S = 10

_PASSWORD_RE = re.compile(r"(://[^:/@]*:)[^@]*@")


class DatabaseError(RuntimeError):
    """The database cannot be reached or opened; the message is one line, without the password."""


def redact_url(url: str | URL) -> str:
    """The URL with its password replaced by ``***``.

    Args:
        url: A SQLAlchemy URL or URL string (an unparsable string is redacted textually).

    Returns:
        The URL as a string, safe to log or show.
    """
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return _PASSWORD_RE.sub(r"\1***@", url)


def normalize_url(url: str | URL) -> URL:
    """The URL SQLAlchemy should use: ``postgresql://`` (or ``postgres://``) becomes ``postgresql+psycopg://``.

    Args:
        url: A SQLAlchemy URL or URL string.

    Returns:
        The parsed URL with the driver filled in.
    """
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u


def _one_line(exc: BaseException) -> str:
    """The driver's reason for ``exc`` with all whitespace (newlines, tabs) collapsed."""
    orig = getattr(exc, "orig", None) or exc
    return " ".join(str(orig).split()) or type(orig).__name__


def _sqlite_engine(u: URL) -> Engine:
    """A SQLite engine with WAL, foreign keys, busy timeout and SQLAlchemy-controlled ``BEGIN``."""
    db = u.database or ""
    in_memory = db in ("", ":memory:") or db.startswith("file:") or u.query.get("mode") == "memory"
    if not in_memory:
        Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(u, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN (see _on_begin); sqlite3 still commits
        cur = dbapi_connection.cursor()
        try:
            cur.execute("PRAGMA busy_timeout=5000")  # SQLITE_BUSY_TIMEOUT_MS
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        options = conn.get_execution_options()
        if options.get("isolation_level") == "AUTOCOMMIT":
            return
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get(WRITE_OPTION) else "BEGIN")

    return engine


def make_engine(url: str | URL) -> Engine:
    """An engine for ``url``, checked by connecting once.

    SQLite: the file's folder is created, connections may be shared across threads, and every connection runs
    ``PRAGMA journal_mode=WAL``, ``foreign_keys=ON`` and ``busy_timeout=5000``. PostgreSQL: ``postgresql://``
    means psycopg 3; connections are pinged before use and time out after 10 s when connecting.

    Args:
        url: A SQLAlchemy URL, e.g. ``CoreSettings().effective_database_url``.

    Returns:
        The engine (call ``dispose()`` when done with it).

    Raises:
        DatabaseError: The database cannot be reached or opened, with a one-line message
            ``cannot reach database <url without password>: <reason>``.
    """
    u = normalize_url(url)
    if u.get_backend_name() == "sqlite":
        try:
            engine = _sqlite_engine(u)
        except OSError as exc:
            raise DatabaseError(f"cannot reach database {redact_url(url)}: {_one_line(exc)}") from exc
    else:
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if u.get_backend_name() == "postgresql" and "connect_timeout" not in u.query:
            kwargs["connect_args"] = {"connect_timeout": PG_CONNECT_TIMEOUT_S}
        engine = sa.create_engine(u, **kwargs)
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        engine.dispose()
        raise DatabaseError(f"cannot reach database {redact_url(url)}: {_one_line(exc)}") from exc
    return engine


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (what every stored timestamp is)."""
    return datetime.now(UTC)


def upsert_insert(conn: sa.Connection, table: sa.Table) -> Any:
    """The dialect's INSERT construct for ``table``, which has ``on_conflict_do_nothing`` / ``on_conflict_do_update``.

    Raises:
        NotImplementedError: The database is neither SQLite nor PostgreSQL.
    """
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"the stores support SQLite and PostgreSQL, not {conn.dialect.name}")


class UnknownRow(KeyError):
    """No row has the id asked for; ``str()`` is the message itself (a plain ``KeyError`` would quote it)."""

    def __str__(self) -> str:
        return str(self.args[0])


class UTCDateTime(sa.types.TypeDecorator):
    """A timestamp stored as UTC and always read back timezone-aware (SQLite keeps no zone: naive means UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class BaseStore:
    """What every app's store shares: an engine (made here, or shared), write transactions whose SQLite ``BEGIN`` is
    IMMEDIATE, batches, idempotent table creation, and closing. Subclasses set ``metadata``.

    Args:
        url_or_engine: A SQLAlchemy URL (``CoreSettings().effective_database_url``), or an engine made by
            :func:`make_engine` (the caller then owns it; ``close`` leaves it open).

    Raises:
        DatabaseError: The database cannot be reached (one-line message).
    """

    metadata: sa.MetaData

    def __init__(self, url_or_engine: str | sa.Engine) -> None:
        self._owns_engine = not isinstance(url_or_engine, sa.Engine)
        self.engine: sa.Engine = make_engine(url_or_engine) if self._owns_engine else url_or_engine
        self._writer = self.engine.execution_options(**{WRITE_OPTION: True})
        self._local = threading.local()  # the connection of the batch this thread is in, if any

    @contextmanager
    def batch(self) -> Iterator[Any]:
        """One transaction for everything this thread writes inside the block (e.g. one poll cycle).

        Committed when the block ends normally, rolled back whole on any exception (``KeyboardInterrupt`` and
        ``SystemExit`` included). A nested ``batch`` joins the outer one. Reads inside the block see its writes.

        Yields:
            This store.
        """
        if getattr(self._local, "conn", None) is not None:
            yield self
            return
        with self._writer.begin() as conn:
            self._local.conn = conn
            try:
                yield self
            finally:
                self._local.conn = None

    @contextmanager
    def _connect(self, write: bool) -> Iterator[sa.Connection]:
        """The connection of this thread's batch; else a write transaction (committed on success, rolled back on any
        exception) or a plain read connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        with self._writer.begin() if write else self.engine.connect() as conn:
            yield conn

    def _write(self) -> AbstractContextManager[sa.Connection]:
        return self._connect(write=True)

    def _read(self) -> AbstractContextManager[sa.Connection]:
        return self._connect(write=False)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact_url(self.engine.url)!r})"

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections (only when this store made the engine)."""
        if self._owns_engine:
            self.engine.dispose()

    def create(self):
        """Create the tables and indexes that do not exist yet (safe on every start); return the store."""
        self.metadata.create_all(self._writer)
        return self
