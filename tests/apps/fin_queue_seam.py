"""``trident fin worker`` with a seam that the queue tests install from outside the product.

Run as ``python -m tests.apps.fin_queue_seam fin worker ...`` (the arguments of ``trident``). ``FinanceStore.
save_articles`` is wrapped: right after it has written, inside a job's open transaction, the articles of the feed
named by the environment variable ``SEAM_BLOCK``, the first worker to get there creates ``$SEAM_DIR/block`` (its pid
and the time) and blocks until the test kills it; for the feed of ``SEAM_FAIL``, the first worker creates
``$SEAM_DIR/fail`` and raises, so that this job fails once. "First" is whoever creates the marker file (exclusively).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from apps.cli import main
from apps.finance_sentiment.store import FinanceStore

_save_articles = FinanceStore.save_articles


def _first(marker: str) -> bool:
    """Create ``$SEAM_DIR/<marker>`` holding this pid and the time; False when another process already has."""
    path = Path(os.environ["SEAM_DIR"]) / marker
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()} {time.time()}\n")
    return True


def save_articles(self, items, scores=None):
    n = _save_articles(self, items, scores)
    sources = {a.source for a in items}
    if os.environ.get("SEAM_BLOCK") in sources and _first("block"):
        while True:  # inside the job's transaction, until SIGKILL
            time.sleep(1)
    if os.environ.get("SEAM_FAIL") in sources and _first("fail"):
        raise RuntimeError("the test seam fails this job once")
    return n


if __name__ == "__main__":
    FinanceStore.save_articles = save_articles
    sys.exit(main(sys.argv[1:]))
