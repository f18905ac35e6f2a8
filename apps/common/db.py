"""Database engines for the apps: SQLite (the embedded default) or PostgreSQL (psycopg 3), behind one ``make_engine``.

SQLite engines run in WAL mode with foreign keys on and a 5 s busy timeout, and let SQLAlchemy emit ``BEGIN``
itself, so that a connection carrying the execution option ``WRITE_OPTION`` starts its transaction with
``BEGIN IMMEDIATE``: it takes the write lock up front (waiting up to the busy timeout for it) instead of failing
with "database is locked" when a read inside the transaction is followed by a write.
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
from sqlalchemy.exc import ArgumentError, DBAPIError

WRITE_OPTION = "trident_write"
"""Execution option: ``engine.execution_options(**{WRITE_OPTION: True})`` begins SQLite transactions IMMEDIATE."""

SQLITE_BUSY_TIMEOUT_MS = 5000
PG_CONNECT_TIMEOUT_S = 10

# PostgreSQL advisory lock under which one process at a time creates a store's tables
CREATE_LOCK = 0x7472_6964_656E_7400

_PASSWORD_RE = re.compile(r"(://[^:/@]*:)[^@]*@")


class DatabaseError(RuntimeError):
    """The database cannot be reached or opened; the message is one line, without the password."""


def redact_url(url: str | URL) -> str:
    """The URL (a string is redacted textually if unparsable) with its password replaced by ``***``."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        return _PASSWORD_RE.sub(r"\1***@", url)


def _unreachable(url: str | URL, exc: BaseException) -> DatabaseError:
    orig = getattr(exc, "orig", None) or exc
    why = " ".join(str(orig).split()) or type(orig).__name__  # the driver's reason on one line
    return DatabaseError(f"cannot reach database {redact_url(url)}: {why}")


def _sqlite_engine(u: URL) -> Engine:
    """A SQLite engine with WAL, foreign keys, busy timeout and SQLAlchemy-controlled ``BEGIN``."""
    db = u.database or ""
    if not (db in ("", ":memory:") or db.startswith("file:") or u.query.get("mode") == "memory"):
        Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(u, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN (see _on_begin); sqlite3 still commits
        for pragma in (f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}", "journal_mode=WAL", "foreign_keys=ON"):
            dbapi_connection.execute(f"PRAGMA {pragma}").close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        options = conn.get_execution_options()
        if options.get("isolation_level") != "AUTOCOMMIT":
            conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get(WRITE_OPTION) else "BEGIN")

    return engine


def make_engine(url: str | URL) -> Engine:
    """An engine for ``url`` (e.g. ``CoreSettings().effective_database_url``), checked by connecting once; call
    ``dispose()`` when done with it.

    SQLite: the file's folder is created, connections may be shared across threads, WAL, foreign keys and a 5 s busy
    timeout. PostgreSQL: ``postgresql://`` means psycopg 3; connections are pinged before use and time out after
    10 s when connecting.

    Raises:
        DatabaseError: ``cannot reach database <url without password>: <reason>``, or ``not a usable database URL
            ...`` (one line each).
    """
    try:
        u = make_url(url)
        if u.drivername in ("postgresql", "postgres"):
            u = u.set(drivername="postgresql+psycopg")
        if u.get_backend_name() == "sqlite":
            engine = _sqlite_engine(u)
        else:
            kwargs: dict[str, Any] = {"pool_pre_ping": True}
            if u.get_backend_name() == "postgresql" and "connect_timeout" not in u.query:
                kwargs["connect_args"] = {"connect_timeout": PG_CONNECT_TIMEOUT_S}
            engine = sa.create_engine(u, **kwargs)
    except OSError as exc:  # the SQLite file's folder cannot be created
        raise _unreachable(url, exc) from exc
    except (ArgumentError, ImportError, ValueError) as exc:  # unparsable, an unknown dialect or driver, a bad port
        raise DatabaseError(f"not a usable database URL {redact_url(url)!r}: {' '.join(str(exc).split())} "
                            "(expected sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB)") from None
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:  # cannot connect, or not a database (a SQLite path that is some other file)
        engine.dispose()
        raise _unreachable(url, exc) from exc
    return engine


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (what every stored timestamp is)."""
    return datetime.now(UTC)


_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def upsert_insert(conn: sa.Connection, table: sa.Table) -> Any:
    """The dialect's INSERT construct for ``table``, which has ``on_conflict_do_nothing`` / ``on_conflict_do_update``;
    ``NotImplementedError`` for a database other than SQLite and PostgreSQL."""
    if conn.dialect.name not in _INSERTS:
        raise NotImplementedError(f"the stores support SQLite and PostgreSQL, not {conn.dialect.name}")
    return _INSERTS[conn.dialect.name](table)


class UnknownRow(KeyError):
    """No row has the id asked for; ``str()`` is the message itself (a plain ``KeyError`` would quote it)."""

    def __str__(self) -> str:
        return str(self.args[0])


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class UTCDateTime(sa.types.TypeDecorator):
    """A timestamp stored as UTC and always read back timezone-aware (SQLite keeps no zone: naive means UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        value = _as_utc(value)
        return value.replace(tzinfo=None) if value is not None and dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return _as_utc(value)


class BaseStore:
    """What every app's store shares: an engine (made here from a URL, or an engine of :func:`make_engine` that the
    caller owns and ``close`` leaves open), write transactions whose SQLite ``BEGIN`` is IMMEDIATE, batches,
    idempotent table creation, and closing. Subclasses set ``metadata``. Raises ``DatabaseError`` (one line) when
    the database cannot be reached."""

    metadata: sa.MetaData

    def __init__(self, url_or_engine: str | sa.Engine) -> None:
        self._owns_engine = not isinstance(url_or_engine, sa.Engine)
        self.engine: sa.Engine = make_engine(url_or_engine) if self._owns_engine else url_or_engine
        self._writer = self.engine.execution_options(**{WRITE_OPTION: True})
        self._local = threading.local()  # the connection of the batch this thread is in, if any

    @contextmanager
    def batch(self) -> Iterator[Any]:
        """One transaction for everything this thread writes inside the block (e.g. one poll cycle); yields the store.

        Committed when the block ends normally, rolled back whole on any exception (``KeyboardInterrupt`` and
        ``SystemExit`` included). A nested ``batch`` joins the outer one. Reads inside the block see its writes.
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
        """Create the tables and indexes that do not exist yet (safe on every start, also when several processes
        start at once on PostgreSQL: they take turns); return the store."""
        with self._writer.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(CREATE_LOCK)))
            self.metadata.create_all(conn)
        return self

    def has_table(self, name: str) -> bool:
        """Whether the table ``name`` exists (a check that creates nothing, for a dry run on a new database)."""
        return sa.inspect(self.engine).has_table(name)
