"""The recommendations table: every user's top-K list as the batch job wrote it, on SQLite or PostgreSQL.

One row per (user, rank). Writing a user's list is an upsert on that key plus the removal of the ranks beyond the new
list's length, in one transaction per chunk of users: running the same job twice leaves the same rows, and a job that
died half-way is completed by running it again. SQLAlchemy Core with bound parameters only.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from apps.common.db import BaseStore, UTCDateTime, upsert_insert, utcnow
from apps.common.erasure import purge_deleted

metadata = sa.MetaData()
recommendations = sa.Table(
    "rec_recommendations", metadata,
    sa.Column("user_id", sa.String(255), primary_key=True),
    sa.Column("rank", sa.Integer, primary_key=True),
    sa.Column("item_id", sa.String(255), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("version", sa.String(100), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)


class RecStore(BaseStore):
    """The batch job's recommendations (consumers read the table itself)."""

    metadata = metadata

    def upsert(self, rows: Iterable[dict], version: str) -> int:
        """Write whole lists (dicts with ``user_id``, ``rank`` from 1, ``item_id``, ``score``) produced by the artifact
        ``version``, in one transaction; returns the number of rows written."""
        now = utcnow()
        rows = [{"user_id": str(r["user_id"]), "rank": int(r["rank"]), "item_id": str(r["item_id"]),
                 "score": float(r["score"]), "version": version, "created_at": now} for r in rows]
        if not rows:
            return 0
        longest: dict[str, int] = {}
        for r in rows:
            longest[r["user_id"]] = max(longest.get(r["user_id"], 0), r["rank"])
        with self._write() as conn:
            ins = upsert_insert(conn, recommendations)
            conn.execute(ins.on_conflict_do_update(
                index_elements=["user_id", "rank"],
                set_={c: ins.excluded[c] for c in ("item_id", "score", "version", "created_at")}), rows)
            stale = recommendations.delete().where(recommendations.c.user_id == sa.bindparam("u"),
                                                   recommendations.c.rank > sa.bindparam("k"))
            conn.execute(stale, [{"u": u, "k": k} for u, k in longest.items()])
        return len(rows)

    def count(self) -> int:
        """Rows in the table."""
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(recommendations)).scalar_one())

    def forget(self, user_id: str, dry_run: bool = False) -> int:
        """Delete every row of ``user_id`` (on ``dry_run`` only count them); return how many there were."""
        mine = recommendations.c.user_id == str(user_id)
        with self._read() if dry_run else self._write() as conn:
            n = int(conn.execute(sa.select(sa.func.count()).select_from(recommendations).where(mine)).scalar_one())
            if n and not dry_run:
                purge_deleted(conn)
                conn.execute(recommendations.delete().where(mine))
        return n
