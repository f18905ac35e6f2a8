"""The finance workers on the job queue (``trident fin worker``, procrastinate on PostgreSQL), as real processes.

Two workers share ten feeds served over HTTP by this test, with the quick model: every feed is fetched once per tick
of the schedule, a job that fails is run again, and each story, score and alert is stored once, although two feeds
carry the same story (one under the same id, one under other ids and links). A worker killed inside a job, with its
transaction open, has that feed taken over by the other worker within ``QueueSettings.takeover_seconds``. The seam
that fails and blocks jobs is ``tests/apps/fin_queue_seam.py``, installed from outside the product. The figures
(feeds per worker, duplicates, takeover seconds) are printed; ``bench/fin_scaleout.py`` records them."""

from __future__ import annotations

import collections
import functools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa

from apps.common.settings import REPO_ROOT, CoreSettings
from apps.finance_sentiment.feeds import Article, content_hash
from apps.finance_sentiment.settings import QueueSettings
from apps.finance_sentiment.store import FinanceStore

SAMPLES = REPO_ROOT / "samples"
AS_OF = datetime(2026, 3, 13, 20, 0, tzinfo=UTC)
N_FEEDS = 10
FAIL, BLOCK = "feed-5", "feed-9"  # feeds of their own stories only
# each feed two stories of its own; feeds 0 and 1 carry one story under one id; feeds 2 and 3 one text under two ids
STORIES = 2 * N_FEEDS + 1 + 1
QUICK = {"heartbeat_seconds": 1, "stalled_seconds": 3, "recover_seconds": 1, "retry_wait_seconds": 1}
COMPANIES = ("Northwind Traders", "Contoso Freight", "Fabrikam")
SENTENCES = ("The company raised its full-year outlook after record orders.",
             "Quarterly profit fell sharply as costs rose and demand weakened.",
             "The board approved a new share buyback programme worth EUR 40 million.",
             "Analysts downgraded the stock to sell after a profit warning.")


def _item(guid: str, title: str, text: str, minute: int) -> str:
    return (f"<item><guid>{guid}</guid><link>http://wire.example/{guid}</link><title>{title}</title>"
            f"<description>{text}</description><pubDate>Fri, 13 Mar 2026 14:{minute:02d}:00 +0000</pubDate></item>")


def write_feeds(folder: Path) -> None:
    """Ten RSS files ``feed-<i>.rss`` (see the module notes)."""
    folder.mkdir()
    same_text = (f"{COMPANIES[1]} cuts its forecast", f"{SENTENCES[1]} {SENTENCES[3]}")
    for i in range(N_FEEDS):
        items = [_item(f"f{i}-{j}", f"{COMPANIES[(i + j) % 3]} story {i}-{j}",
                       f"{SENTENCES[(i + j) % 4]} {SENTENCES[(i + 2 * j + 1) % 4]}", 2 * i + j) for j in range(2)]
        if i in (0, 1):
            items.append(_item("shared-id", f"{COMPANIES[0]} wins a contract", SENTENCES[2], 40))
        if i in (2, 3):
            items.append(_item(f"same-text-{i}", *same_text, 41 + i))
        (folder / f"feed-{i}.rss").write_text(
            '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>wire</title>'
            + "".join(items) + "</channel></rss>", encoding="utf-8")


@pytest.fixture
def feed_server(tmp_path):
    """The ten feeds over HTTP: ``(base URL, Counter of GET requests by file name)``."""
    write_feeds(tmp_path / "feeds")
    hits: collections.Counter = collections.Counter()
    lock = threading.Lock()

    class Counting(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            with lock:
                hits[self.path.lstrip("/")] += 1
            super().do_GET()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Counting, directory=str(tmp_path / "feeds")))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()
    httpd.server_close()


def feeds_file(tmp_path: Path, base: str, poll_seconds: float) -> Path:
    path = tmp_path / "feeds.toml"
    path.write_text("".join(f'[[feeds]]\nname = "feed-{i}"\nurl = "{base}/feed-{i}.rss"\n'
                            f'poll_seconds = {poll_seconds}\n\n' for i in range(N_FEEDS))
                    + '[entities]\nNWT = ["Northwind Traders", "Northwind"]\nCTSO = ["Contoso Freight", "Contoso"]\n'
                    'FBKM = ["Fabrikam"]\n')
    return path


def start_worker(tmp_path: Path, name: str, db: str, feeds: Path, artifact: Path, queue: dict, seam: dict,
                 *extra: str):
    """One ``trident fin worker`` process under the seam (``seam``: SEAM_FAIL or SEAM_BLOCK); its stdout (the job
    reports) and stderr go to files."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FIN_", "TRIDENT_DATABASE"))}
    env.update(TRIDENT_DATABASE_URL=db, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", FIN_SCORING__EXPLAIN="false",
               SEAM_DIR=str(tmp_path), **seam,
               **{f"FIN_QUEUE__{k.upper()}": str(v) for k, v in queue.items()})
    cmd = [sys.executable, "-m", "tests.apps.fin_queue_seam", "fin", "worker", "--feeds", str(feeds), "--prices",
           str(SAMPLES / "prices"), "--rules", str(SAMPLES / "alert_rules.toml"), "--artifact", str(artifact),
           "--as-of", AS_OF.isoformat(), "--json", *extra]
    out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=o, stderr=e)
    return proc, out, err


def reports(path: Path) -> list[dict]:
    """The job reports a worker printed (JSON objects starting a line, on one line or several)."""
    text, decoder, out = path.read_text(errors="replace"), json.JSONDecoder(), []
    for match in re.finditer(r"^\{", text, re.M):
        try:
            out.append(decoder.raw_decode(text, match.start())[0])
        except json.JSONDecodeError:  # still being written
            continue
    return out


def stop(procs, timeout: float = 90) -> dict:
    for proc, *_ in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    codes = {}
    for proc, out, _ in procs:
        try:
            codes[out.stem] = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            codes[out.stem] = "killed"
    return codes


def tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


def wait_for(what: str, check, procs, timeout: float, every: float = 0.5):
    """Poll ``check()`` until it returns something true; fail (with the workers' logs) on timeout or a dead worker."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc, out, err in procs:
            assert proc.poll() is None or proc.returncode == -signal.SIGKILL, \
                f"{out.stem} exited with {proc.returncode}:\n{tail(err)}"
        value = check()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"{what}: not within {timeout:.0f} s\n" + "\n".join(f"--- {o.stem}\n{tail(e)}" for _, o, e in procs))


def no_duplicates(engine: sa.Engine) -> dict[str, int]:
    """The stored rows, checked: every story once (by id, URL and text), scored with its sentences; every alert
    once. Returns the counts."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, url, title, summary, content_hash, score FROM articles")).all()
        sentences = conn.execute(sa.text("SELECT article_id, count(*) FROM sentence_scores GROUP BY 1")).all()
        alerts = conn.execute(sa.text("SELECT rule, ticker, window_start FROM alerts")).all()
    assert len({r.id for r in rows}) == len({r.url for r in rows}) == len({r.content_hash for r in rows}) == len(rows)
    assert all(r.content_hash == content_hash(r.title, r.summary) for r in rows)
    assert all(r.score is not None for r in rows)
    assert {a for a, _ in sentences} == {r.id for r in rows}  # every article with its sentence scores
    assert len(set(alerts)) == len(alerts)
    return {"articles": len(rows), "sentences": sum(n for _, n in sentences), "alerts": len(alerts)}


def pg_engine(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))


@pytest.mark.slow
def test_two_workers_poll_each_of_ten_feeds_once_per_tick_and_store_each_row_once(tmp_path, pg_url, fin_artifact,
                                                                                 feed_server):
    base, hits = feed_server
    feeds = feeds_file(tmp_path, base, poll_seconds=1)  # every tick polls every feed
    queue = {**QUICK, "cron": "* * * * * */5"}
    seam = {"SEAM_FAIL": FAIL}
    procs = [start_worker(tmp_path, "worker-a", pg_url, feeds, fin_artifact, queue, seam, "--concurrency", "2"),
             start_worker(tmp_path, "worker-b", pg_url, feeds, fin_artifact, queue, seam)]
    names = {f"feed-{i}" for i in range(N_FEEDS)}

    def enough():
        if not all(any(r["status"] == "polled" for r in reports(out)) for _, out, _ in procs):
            return False  # both workers at work
        polled = [r for _, out, _ in procs for r in reports(out) if r["status"] == "polled"]
        ticks = collections.defaultdict(set)
        for r in polled:
            ticks[r["tick"]].add(r["feed"])
        failed_then_stored = (tmp_path / "fail").exists() and any(r["feed"] == FAIL and r["new_articles"]
                                                                  for r in polled)
        return failed_then_stored and sum(feeds == names for feeds in ticks.values()) >= 3

    try:
        wait_for("three ticks with every feed polled, and the failed poll run again", enough, procs, timeout=300)
    finally:
        codes = stop(procs)
    assert codes == {"worker-a": 0, "worker-b": 0}, {o.stem: tail(e) for _, o, e in procs}

    by_worker = {out.stem: [r for r in reports(out) if r["status"] == "polled"] for _, out, _ in procs}
    polled = [r for rs in by_worker.values() for r in rs]
    per_tick = collections.Counter((r["feed"], r["tick"]) for r in polled)
    assert set(per_tick.values()) == {1}  # no feed polled twice in one tick
    # every fetch of a feed is a job that finished, except the one the seam failed (its transaction rolled back)
    for name in names:
        assert hits[f"{name}.rss"] == sum(r["feed"] == name for r in polled) + (name == FAIL), name
    assert (tmp_path / "fail").exists()
    engine = pg_engine(pg_url)
    try:
        with engine.connect() as conn:
            jobs = conn.execute(sa.text(
                "SELECT args->>'feed' AS feed, (args->>'timestamp')::bigint AS tick, status, attempts "
                "FROM procrastinate_jobs WHERE task_name = 'fin.poll_feed'")).all()
        assert collections.Counter((j.feed, j.tick) for j in jobs).most_common(1)[0][1] == 1  # one job per tick
        # the job the seam failed ran again after 1 s and succeeded; or, when the feed's job of the next tick was
        # queued meanwhile, ended as failed and that job polled the feed (test_a_retry_beside_...)
        (stored,) = [r for r in polled if r["feed"] == FAIL and r["new_articles"]]
        retried = stored["attempt"] == 1
        failed = [(j.feed, j.status, j.attempts) for j in jobs if j.status not in ("succeeded", "todo")]
        assert failed == ([] if retried else [(FAIL, "failed", 1)])
        if retried:
            assert [(j.status, j.attempts) for j in jobs if (j.feed, j.tick) == (FAIL, stored["tick"])] == [
                ("succeeded", 2)]
        assert stored["new_articles"] == 2
        counts = no_duplicates(engine)
        assert counts["articles"] == STORIES and counts["alerts"] >= 1
        assert sum(r["new_articles"] for r in polled) == STORIES
    finally:
        engine.dispose()
    feeds_per_worker = {name: len(rs) for name, rs in by_worker.items()}
    assert all(feeds_per_worker.values()), feeds_per_worker  # both workers polled
    print(json.dumps({"feed_polls_per_worker": feeds_per_worker, "ticks": len({t for _, t in per_tick}),
                      "duplicate_polls": 0, "duplicate_rows": 0, "failed_job": "retried" if retried else
                      "replaced by the next tick's job", **counts}))


@pytest.mark.slow
def test_a_worker_killed_inside_a_job_has_its_feed_taken_over_by_the_other_within_the_bound(tmp_path, pg_url,
                                                                                         fin_artifact, feed_server):
    base, hits = feed_server
    feeds = feeds_file(tmp_path, base, poll_seconds=3600)  # each feed is polled once
    queue = {**QUICK, "cron": "* * * * *"}
    bound = QueueSettings(**QUICK).takeover_seconds
    procs = [start_worker(tmp_path, f"worker-{n}", pg_url, feeds, fin_artifact, queue, {"SEAM_BLOCK": BLOCK})
             for n in "ab"]
    engine = pg_engine(pg_url)

    def scalar(sql: str, **params):
        with engine.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar()

    try:
        marker = wait_for("a worker inside the job of " + BLOCK, lambda: (tmp_path / "block").exists()
                          and (tmp_path / "block").read_text().strip(), procs, timeout=240)
        victim = int(marker.split()[0])
        # both workers up, the other nine feeds done and nothing else running: the survivor is idle when the
        # victim dies
        wait_for("the other feeds stored", lambda: scalar("SELECT count(*) FROM procrastinate_workers") == 2 and scalar(
            "SELECT count(DISTINCT source) FROM articles WHERE source <> :f", f=BLOCK) == N_FEEDS - 1
                 and scalar("SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'fin.poll_feed' "
                            "AND status IN ('todo', 'doing')") == 1,
                 procs, timeout=180)
        assert scalar("SELECT count(*) FROM articles WHERE source = :f", f=BLOCK) == 0  # uncommitted
        killed = time.time()
        os.kill(victim, signal.SIGKILL)
        survivor = [p for p in procs if p[0].pid != victim]
        wait_for(f"{BLOCK} stored by the other worker", lambda: scalar(
            "SELECT count(*) FROM articles WHERE source = :f", f=BLOCK), survivor, timeout=bound + 120)
        with engine.connect() as conn:
            started, succeeded = conn.execute(sa.text(
                "SELECT min(e.at) FILTER (WHERE e.type = 'started'), min(e.at) FILTER (WHERE e.type = 'succeeded') "
                "FROM procrastinate_events e JOIN procrastinate_jobs j ON j.id = e.job_id "
                "WHERE j.task_name = 'fin.poll_feed' AND j.args->>'feed' = :f AND e.at > to_timestamp(:t)"),
                {"f": BLOCK, "t": killed}).one()
        takeover = started.timestamp() - killed
        assert 0 < takeover <= bound, (takeover, bound)
        counts = no_duplicates(engine)
        assert counts["articles"] == STORIES
        assert scalar("SELECT count(*) FROM articles WHERE source = :f", f=BLOCK) == 2
        assert hits[f"{BLOCK}.rss"] == 2  # fetched by the killed worker, then once by the survivor
    finally:
        codes = stop(procs)
        engine.dispose()
    survivor_name = next(o.stem for p, o, _ in procs if p.pid != victim)
    assert codes[survivor_name] == 0, tail(tmp_path / f"{survivor_name}.err")
    took = [r for r in reports(tmp_path / f"{survivor_name}.out") if r["feed"] == BLOCK and r["status"] == "polled"]
    assert [r["new_articles"] for r in took] == [2]
    print(json.dumps({"takeover_s": round(takeover, 2), "stored_after_s": round(succeeded.timestamp() - killed, 2),
                      "bound_s": bound, **counts}))


# ---------------------------------------------------------------------------------------------- the queue's parts
def test_a_retry_beside_a_queued_job_of_the_same_feed_ends_the_job_instead_of_stranding_it(pg_url, tmp_path):
    """procrastinate alone raises on that retry (the feed's queueing lock allows one waiting job) and leaves the job in
    ``doing``, holding the feed's lock for good; here the job ends as failed and the waiting one can run. A retry with
    no job waiting puts the job back in the queue."""
    import asyncio

    from procrastinate.jobs import Status

    from apps.finance_sentiment.feeds import FeedConfig
    from apps.finance_sentiment.jobs import POLL_TASK, QUEUE, FeedJobs, apply_schema, build_app, queue_conninfo
    from apps.finance_sentiment.settings import FinSettings

    conninfo = queue_conninfo(pg_url)
    assert apply_schema(conninfo) and not apply_schema(conninfo)  # created once
    settings = FinSettings(core=CoreSettings(database_url=pg_url, var_dir=tmp_path))
    store = FinanceStore(pg_url).create()
    jobs = FeedJobs(settings, store, None, [FeedConfig(name="feed-0", url="http://127.0.0.1:9/f.rss")], {})
    app = build_app(conninfo, settings.queue, jobs)
    key = f"{POLL_TASK}:feed-0"

    async def scenario() -> list[Status]:
        async with app.open_async():
            manager, task = app.job_manager, app.tasks[POLL_TASK].configure(lock=key, queueing_lock=key)
            worker = await manager.register_worker()
            first = await task.defer_async(feed="feed-0", timestamp=1)
            job = await manager.fetch_job(queues=[QUEUE], worker_id=worker)
            second = await task.defer_async(feed="feed-0", timestamp=2)
            await manager.retry_job(job)
            again = await manager.fetch_job(queues=[QUEUE], worker_id=worker)  # the waiting job, lock free
            await manager.retry_job(again)  # nothing else waits: back in the queue
            return [await manager.get_job_status_async(i) for i in (job.id, again.id)] + [first == job.id,
                                                                                          second == again.id]

    assert asyncio.run(scenario()) == [Status.FAILED, Status.TODO, True, True]
    store.close()


# ------------------------------------------------------------------------------------------- the store's own check
def _article(aid: str, text: str) -> Article:
    now = datetime.now(UTC)
    return Article(id=aid, url=f"http://wire.example/{aid}", title="Fabrikam story", summary=text, published=now,
                   seen_at=now, source="wire", content_hash=content_hash("Fabrikam story", text), tickers=["FBKM"])


def test_two_batches_storing_one_story_at_once_store_it_once(pg_url):
    """The second batch waits for the first's lock on the story's text, then sees its row (without the lock it would
    not see the uncommitted row and would store the story again, under its own id)."""
    store = FinanceStore(pg_url).create()
    text = SENTENCES[0] + " " + SENTENCES[2]
    first, second = _article("a-1", text), _article("b-1", text)
    inside, release, kept = threading.Event(), threading.Event(), {}

    def one(article: Article, hold: bool) -> None:
        with store.batch():
            kept[article.id] = store.unstored([article])
            store.save_articles([article for _ in kept[article.id]])
            if hold:
                inside.set()
                release.wait(30)

    a = threading.Thread(target=one, args=(first, True))
    a.start()
    assert inside.wait(30)
    b = threading.Thread(target=one, args=(second, False))
    b.start()
    b.join(1.0)
    assert b.is_alive()  # waiting for the first batch's lock
    release.set()
    a.join(30)
    b.join(30)
    assert kept == {"a-1": [0], "b-1": []}
    assert store.counts()["articles"] == 1
    store.close()


def test_unstored_drops_what_is_stored_by_id_url_or_text(sqlite_url):
    store = FinanceStore(sqlite_url).create()
    stored = _article("a-1", SENTENCES[0] + " " + SENTENCES[1])
    store.save_articles([stored])
    same_url = _article("a-2", SENTENCES[2]).model_copy(update={"url": stored.url})
    same_text = _article("a-3", stored.summary)
    new = _article("a-4", SENTENCES[3] + " " + SENTENCES[0])
    assert store.unstored([stored, same_url, same_text, new]) == [3]
    store.close()


def test_the_queue_refuses_sqlite_in_one_line():
    from apps.finance_sentiment.jobs import QueueError, queue_conninfo

    settings = CoreSettings(database_url="sqlite:////tmp/x.db")
    with pytest.raises(QueueError, match=r"^the job queue needs PostgreSQL, not sqlite:////tmp/x.db "
                                         r"\(TRIDENT_DATABASE_URL\); use `trident fin monitor` on one machine$"):
        queue_conninfo(settings.effective_database_url)
    assert queue_conninfo("postgresql+psycopg://u:p@h:5432/d") == "postgresql://u:p@h:5432/d"
