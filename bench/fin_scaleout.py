"""Benchmark of the finance workers on the job queue (``trident fin worker``): two worker processes over ten feeds on
a fresh PostgreSQL database, then one of them killed inside a job. Prints one JSON object (and writes it to --out).

The feeds are served by a local HTTP server, each worker reading them under its own path prefix (its feeds file), so
the server knows which worker fetched what. The first fetch of ``feed-9`` is held open: the worker that sent it is in
the middle of that job, and is killed (SIGKILL) once the other feeds have been polled for two ticks. Figures: feed
polls per worker, polls per feed and tick (duplicates), stored rows against distinct stories (duplicates), and the
takeover: from the kill to the other worker starting the feed's job, against the bound of the settings
(``QueueSettings.takeover_seconds``). Articles are stored unscored (no model): the queue is measured, not scoring.

Usage: python bench/fin_scaleout.py [--out bench/results/scaleout.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apps.finance_sentiment.settings import QueueSettings  # noqa: E402

PG_ADMIN = os.environ.get("TRIDENT_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
N_FEEDS, HELD = 10, "feed-9"
QUEUE = {"cron": "* * * * * */5", "concurrency": 2, "heartbeat_seconds": 1, "stalled_seconds": 3, "recover_seconds": 1}
COMPANIES = ("Northwind Traders", "Contoso Freight", "Fabrikam")


def write_feeds(folder: Path) -> int:
    """Ten RSS files; each feed has two stories of its own and feeds 0 and 1 share a third. Returns the stories."""
    folder.mkdir()
    shared = "<item><guid>shared</guid><link>http://wire.example/shared</link><title>Fabrikam wins a contract</title>" \
             "<description>Fabrikam signed a five-year supply agreement.</description></item>"
    for i in range(N_FEEDS):
        items = "".join(f"<item><guid>f{i}-{j}</guid><link>http://wire.example/f{i}-{j}</link><title>"
                        f"{COMPANIES[(i + j) % 3]} story {i}-{j}</title><description>Story {i}-{j} of the wire, "
                        f"with its own words.</description></item>" for j in range(2))
        (folder / f"feed-{i}.rss").write_text(f'<?xml version="1.0"?><rss version="2.0"><channel><title>w</title>'
                                              f'{items}{shared if i < 2 else ""}</channel></rss>')
    return 2 * N_FEEDS + 1


class Server:
    """The feeds under ``/<worker>/feed-<i>.rss``; counts requests; holds the first request of ``HELD`` open."""

    def __init__(self, folder: Path) -> None:
        self.hits: collections.Counter = collections.Counter()
        self.held_by: str | None = None
        self.release = threading.Event()
        lock, server = threading.Lock(), self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                worker, _, name = self.path.strip("/").partition("/")
                with lock:
                    server.hits[worker, name.removesuffix(".rss")] += 1
                    hold = name == f"{HELD}.rss" and server.held_by is None
                    if hold:
                        server.held_by = worker
                if hold:
                    server.release.wait(300)
                self.path = "/" + name
                try:
                    super().do_GET()
                except OSError:  # the worker that asked is gone
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: Handler(*a, directory=str(folder)))
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()


def reports(path: Path) -> list[dict]:
    text, decoder, out = path.read_text(errors="replace"), json.JSONDecoder(), []
    for match in re.finditer(r"^\{", text, re.M):
        try:
            out.append(decoder.raw_decode(text, match.start())[0])
        except json.JSONDecodeError:
            continue
    return out


def run(tmp: Path, db: str) -> dict:
    stories = write_feeds(tmp / "feeds")
    server = Server(tmp / "feeds")
    procs = {}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FIN_", "TRIDENT_DATABASE"))}
    env.update(TRIDENT_DATABASE_URL=db, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
               **{f"FIN_QUEUE__{k.upper()}": str(v) for k, v in QUEUE.items()})
    t_start = time.monotonic()
    for w in ("worker-a", "worker-b"):
        feeds = tmp / f"{w}.toml"
        feeds.write_text("".join(f'[[feeds]]\nname = "feed-{i}"\nurl = "{server.base}/{w}/feed-{i}.rss"\n'
                                 f'poll_seconds = 1\ntimeout_seconds = 300\n\n' for i in range(N_FEEDS)))
        out = open(tmp / f"{w}.out", "wb")
        procs[w] = subprocess.Popen([sys.executable, "-m", "apps.cli", "fin", "worker", "--feeds", str(feeds),
                                     "--prices", str(ROOT / "samples" / "prices"), "--artifact", str(tmp / "none"),
                                     "--allow-unscored", "--json"], cwd=ROOT, env=env, stdout=out,
                                    stderr=open(tmp / f"{w}.err", "wb"))
    engine = sa.create_engine(db.replace("postgresql://", "postgresql+psycopg://", 1))

    def polled() -> list[dict]:
        return [dict(r, by=w) for w in procs for r in reports(tmp / f"{w}.out") if r["status"] == "polled"]

    def wait(what: str, check, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline or any(p.poll() not in (None, -9) for p in procs.values()):
                raise SystemExit(f"{what}: not within {timeout:.0f} s\n" + "\n".join(
                    (tmp / f"{w}.err").read_text()[-2000:] for w in procs))
            time.sleep(0.2)

    def full_ticks(rs: list[dict], feeds: set[str]) -> int:
        ticks = collections.defaultdict(set)
        for r in rs:
            ticks[r["tick"]].add(r["feed"])
        return sum(feeds <= f for f in ticks.values())

    others = {f"feed-{i}" for i in range(N_FEEDS)} - {HELD}
    try:
        wait("two ticks of the other feeds, each worker at work, and one inside the held job",
             lambda: server.held_by is not None and full_ticks(polled(), others) >= 2
             and {r["by"] for r in polled()} == set(procs))
        started_s = round(time.monotonic() - t_start, 1)
        victim, survivor = server.held_by, next(w for w in procs if w != server.held_by)
        killed = time.time()
        procs[victim].send_signal(signal.SIGKILL)
        procs[victim].wait()
        server.release.set()
        wait("the held feed taken over", lambda: any(r["feed"] == HELD and r["by"] == survivor for r in polled()))
        with engine.connect() as conn:
            started = conn.execute(sa.text(
                "SELECT min(e.at) FROM procrastinate_events e JOIN procrastinate_jobs j ON j.id = e.job_id "
                "WHERE j.args->>'feed' = :f AND e.type = 'started' AND e.at > to_timestamp(:t)"),
                {"f": HELD, "t": killed}).scalar_one()
        takeover = started.timestamp() - killed
        n = full_ticks(polled(), others | {HELD})
        wait("one more tick with every feed", lambda: full_ticks(polled(), others | {HELD}) > n, timeout=60)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = {w: p.wait(timeout=120) for w, p in procs.items()}
        server.close()
    rs = polled()
    per_tick = collections.Counter((r["feed"], r["tick"]) for r in rs)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, url, content_hash FROM articles")).all()
    engine.dispose()
    requests = collections.Counter()
    for (_, feed), n in server.hits.items():
        requests[feed] += n
    return {
        "workers": 2, "feeds": N_FEEDS, "stories": stories, "queue": QUEUE,
        "feed_polls_per_worker": {w: sum(r["by"] == w for r in rs) for w in procs},
        "ticks_with_every_feed": full_ticks(rs, others | {HELD}),
        "duplicate_polls": sum(n - 1 for n in per_tick.values()),
        # every request is a finished poll, except the held one whose worker was killed
        "requests_without_a_finished_poll": sum(requests.values()) - len(rs),
        "articles": len(rows),
        "duplicate_rows": len(rows) - len({r.content_hash for r in rows}),  # ids and URLs are unique keys
        "missing_stories": stories - len(rows),
        "killed": victim, "takeover_s": round(takeover, 2),
        "takeover_bound_s": QueueSettings(**QUEUE).takeover_seconds,
        "takeover_bound_at_defaults_s": QueueSettings().takeover_seconds,
        "workers_up_and_two_ticks_s": started_s, "exit_codes": {w: codes[w] for w in procs},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "scaleout.json"))
    args = ap.parse_args()
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"trident_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    t = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            url = admin.url.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
            result = {"machine": {"cpu_count": os.cpu_count(), "python": platform.python_version()},
                      **run(Path(tmp), url)}
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
    result["seconds"] = round(time.perf_counter() - t, 1)
    text = json.dumps(result, indent=2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
