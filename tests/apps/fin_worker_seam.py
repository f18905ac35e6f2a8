"""`trident fin monitor` with a pause inside its cycle's open transaction: the seam the worker's kill and SIGTERM
tests install from outside the product.

Usage: ``python -m tests.apps.fin_worker_seam TABLE MARKER RELEASE <fin monitor flags>``

A SQLAlchemy listener on every engine waits for the first INSERT into ``TABLE`` (``sentence_scores``: the cycle's
articles are written, its sentence scores being written, its alerts not yet; ``alerts``: the cycle's last write).
Right after that statement, inside the open transaction, it counts the rows of each table that its own connection
sees (the uncommitted ones included), writes them as JSON to ``MARKER`` (whole, through a rename), then blocks until
the file ``RELEASE`` exists: the test meanwhile kills the process, or signals it and then writes ``RELEASE``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event

from apps.cli import main

TABLES = ("feeds", "articles", "article_tickers", "sentence_scores", "alerts", "prices")


def install(table: str, marker: Path, release: Path) -> None:
    """Listen on every engine for the first INSERT into ``table``, then write ``marker`` and wait for ``release``."""
    fired = False

    def after_execute(conn, clause, multiparams, params, execution_options, result) -> None:
        nonlocal fired
        if fired or not isinstance(clause, sa.Insert) or clause.table.name != table:
            return
        fired = True
        counts = {t: conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar_one() for t in TABLES}
        part = marker.with_name(marker.name + ".part")
        part.write_text(json.dumps({"table": table, "in_transaction": conn.in_transaction(), "counts": counts}))
        part.rename(marker)
        while not release.exists():
            time.sleep(0.05)

    event.listen(sa.Engine, "after_execute", after_execute)


if __name__ == "__main__":
    install(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
    sys.exit(main(["fin", "monitor", *sys.argv[4:]]))
