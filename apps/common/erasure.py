"""Forgetting a person, as every app does it: the report of what was (or would be) removed, the audit trail, the
keyed hash that names the person in it, and the removal of log lines that name them.

The audit trail (table ``privacy_audit``, in the apps' database) records who asked, when, what kind of request it
was and how many rows of each kind went; it holds no personal data: the person appears only as an HMAC-SHA256 of
their id under a key kept in ``<var>/privacy.key`` (made on first use, readable by its owner only). Whoever holds the
key can check that a given id was forgotten; without it the audit says nothing about whom.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from apps.common.db import BaseStore, UTCDateTime, utcnow

KEY_FILE = "privacy.key"
REMOVED = "[removed on request]"  # what replaces a person's words where the row itself stays (another's record)

metadata = sa.MetaData()
privacy_audit = sa.Table(
    "privacy_audit", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("subject", sa.String(64), nullable=False, default=""),  # keyed hash of the id; "" for retention
    sa.Column("counts_json", sa.Text, nullable=False),
)


class ErasureError(ValueError):
    """A forget request that cannot run as given (an empty id); the message is one line."""


def check_id(value: str | None, kind: str) -> str:
    """The id stripped; ``ErasureError`` when it is empty (nothing may be matched by an empty id)."""
    value = (value or "").strip()
    if not value:
        raise ErasureError(f"give a non-empty {kind} id")
    return value


def default_actor() -> str:
    """Who asks, when no one is named: the operating-system user."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in the environment or the password database
        return "unknown"


@dataclass
class ErasureReport:
    """What one request removed, or would remove on a dry run: rows (or lines, files) per kind, and what exactly.

    ``items`` names what goes, per kind (conversation ids, KB entry ids, files with their count); ``notes`` say what
    stays and why. Neither is stored: the audit record keeps ``counts`` only.
    """

    action: str  # forget-customer, forget-user, retention
    dry_run: bool
    counts: dict[str, int] = field(default_factory=dict)
    items: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    audit_id: int | None = None

    def add(self, kind: str, n: int, *items: str) -> None:
        """Count ``n`` more of ``kind`` (kept at 0 when nothing), naming ``items``."""
        self.counts[kind] = self.counts.get(kind, 0) + int(n)
        if items:
            self.items.setdefault(kind, []).extend(items)

    @property
    def total(self) -> int:
        """Everything found, of every kind."""
        return sum(self.counts.values())

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class AuditRecord:
    """One row of the audit trail."""

    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    counts: dict[str, int]

    def as_dict(self) -> dict:
        return {**asdict(self), "at": self.at.isoformat(timespec="seconds")}


def _key(var_dir: Path, create: bool = True) -> bytes | None:
    """The installation's audit key, made on first use (mode 0600) unless not ``create``."""
    path = Path(var_dir) / KEY_FILE
    if not path.is_file():
        if not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it meanwhile
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def subject_hash(var_dir: Path, kind: str, value: str, create: bool = True) -> str | None:
    """How the audit names a person: 32 hex characters of HMAC-SHA256(key, ``kind:value``); None when there is no
    key yet and not ``create``."""
    key = _key(var_dir, create)
    return None if key is None else hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:32]


class AuditStore(BaseStore):
    """The audit trail of forget requests and retention runs."""

    metadata = metadata

    def record(self, action: str, actor: str, subject: str, counts: dict[str, int]) -> int:
        """Append one record; return its id."""
        with self._write() as conn:
            res = conn.execute(privacy_audit.insert().values(at=utcnow(), actor=actor or default_actor(),
                                                             action=action, subject=subject,
                                                             counts_json=json.dumps(counts, sort_keys=True)))
            return int(res.inserted_primary_key[0])

    def records(self, limit: int = 100, subject: str | None = None) -> list[AuditRecord]:
        """The latest ``limit`` records (of ``subject`` only, when given), newest first."""
        a = privacy_audit.c
        q = sa.select(privacy_audit).order_by(a.id.desc()).limit(int(limit))
        if subject is not None:
            q = q.where(a.subject == subject)
        with self._read() as conn:
            return [AuditRecord(r.id, r.at, r.actor, r.action, r.subject, json.loads(r.counts_json))
                    for r in conn.execute(q)]


def audit(engine: sa.Engine, report: ErasureReport, actor: str, var_dir: Path, kind: str = "",
          value: str = "") -> ErasureReport:
    """Record a report that removed something (not a dry run) on ``engine``'s database, naming the person (``kind``
    and id ``value``; none for retention) by :func:`subject_hash`; return it with its record's id."""
    if not report.dry_run and report.total:
        subject = subject_hash(var_dir, kind, value) if kind else ""
        with AuditStore(engine) as trail:
            report.audit_id = trail.create().record(report.action, actor, subject, report.counts)
    return report


def purge_deleted(conn: sa.Connection) -> None:
    """Make the deletes of this SQLite transaction overwrite the deleted content with zeros (a no-op elsewhere).

    Without it SQLite leaves deleted rows readable in free space of the file until it is vacuumed."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA secure_delete = ON")


def checkpoint(engine: sa.Engine) -> None:
    """SQLite: copy the write-ahead log into the file and empty it, so that no earlier copy of a deleted row stays in
    the log (best effort: a reader holding an old snapshot makes it partial). A no-op elsewhere."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


# ------------------------------------------------------------------------------------------------------------ logs
_CONTEXT = re.compile(r"(?i)\b(user|customer|client|conversation)\b")


def _pattern(ids: Iterable[str]) -> Iterator[tuple[re.Pattern, bool]]:
    """Per id: a pattern that finds it as a whole token, and whether the line must also say whose id it is (short or
    numeric ids, which would otherwise match counts and dates)."""
    for i in sorted(set(ids)):
        yield re.compile(r"(?<![\w-])" + re.escape(i) + r"(?![\w-])"), len(i) < 6 or i.isdigit()


def log_files(folder: Path) -> list[Path]:
    """Every log file under ``folder``: ``*.log`` and rotated ``*.log.N``."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and (p.suffix == ".log" or ".log." in p.name))


def scrub_logs(folders: Iterable[Path], ids: Iterable[str], report: ErasureReport) -> None:
    """Remove every line that names one of ``ids`` from the log files under ``folders`` (counted as ``log_lines``,
    each file named with its count); nothing is written on a dry run.

    A file is rewritten in place, so a process that appends to it (the suite's children) keeps writing to it."""
    patterns = list(_pattern(i for i in ids if i))
    report.add("log_lines", 0)
    if not patterns:
        return
    seen: set[Path] = set()
    for folder in folders:
        for path in log_files(folder):
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            text = path.read_text(encoding="utf-8", errors="replace")
            lines = text.splitlines(keepends=True)
            keep = [line for line in lines if not any(p.search(line) and (not ctx or _CONTEXT.search(line))
                                                      for p, ctx in patterns)]
            if len(keep) == len(lines):
                continue
            report.add("log_lines", len(lines) - len(keep), f"{path} ({len(lines) - len(keep)})")
            if not report.dry_run:
                with path.open("r+", encoding="utf-8") as f:
                    f.write("".join(keep))
                    f.truncate()
