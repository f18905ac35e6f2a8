"""The finance workers' job queue: procrastinate on the suite's PostgreSQL, for several workers on one database.

Each feed is a periodic job (``FIN_QUEUE__CRON``): at every tick procrastinate queues one ``fin.poll_feed`` job per
feed, once for all workers (periodic defers are unique per tick), with a queueing lock (the feed is never queued twice)
and a lock (never polled by two workers at once). A job is :meth:`Monitor.cycle <apps.finance_sentiment.monitor.
Monitor.cycle>` over its one feed: poll and score outside any transaction, then the feed's state, articles, sentence
scores and alerts in one transaction, in which the new articles are checked against what other workers stored (see
``FinanceStore.unstored``). A feed that is not due yet (its ``poll_seconds``, or back-off after failures) is skipped.

A job that raises is run again ``retry_attempts`` times, ``retry_wait_seconds`` apart. A worker that dies (SIGKILL,
a lost machine) stops sending heartbeats; every ``recover_seconds`` one live worker runs ``fin.retry_stalled``, which
puts the jobs of workers silent for ``stalled_seconds`` back in the queue, so another worker takes them over within
``QueueSettings.takeover_seconds``. The first SIGTERM lets a worker finish its jobs in hand, then it exits.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Literal

import procrastinate
import psycopg
from procrastinate import JobContext, RetryStrategy
from procrastinate.exceptions import UniqueViolation
from procrastinate.jobs import Job, Status
from procrastinate.manager import QUEUEING_LOCK_CONSTRAINT, JobManager
from procrastinate.schema import SchemaManager
from pydantic import BaseModel, Field
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from apps.common.db import CREATE_LOCK, redact_url
from apps.finance_sentiment.alerts import load_rules
from apps.finance_sentiment.feeds import Deduper, FeedConfig
from apps.finance_sentiment.monitor import Monitor
from apps.finance_sentiment.settings import FinSettings, QueueSettings
from apps.finance_sentiment.store import FinanceStore

log = logging.getLogger(__name__)

QUEUE = "fin"
POLL_TASK = "fin.poll_feed"
RECOVER_TASK = "fin.retry_stalled"
CLEANUP_TASK = "fin.remove_old_jobs"
# the recovery runs before the feed jobs waiting in the queue
RECOVER_PRIORITY = 10


class QueueError(ValueError):
    """The job queue cannot run here (e.g. not on PostgreSQL); the message is one line."""


class JobReport(BaseModel):
    """What one ``fin.poll_feed`` job did."""

    feed: str
    tick: int = Field(description="The schedule's time (epoch seconds) the job was queued for.")
    job_id: int | None = None
    attempt: int = Field(0, description="0 for the first run; each retry (after a failure or a dead worker) adds 1.")
    worker: str = Field("", description="The worker that ran it: host and process id.")
    status: Literal["polled", "not_due", "unknown_feed"] = Field(
        description="polled; not_due: the feed's poll interval or back-off has not passed; unknown_feed: not in "
                    "this worker's feeds file.")
    poll: str | None = Field(None, description="ok | not_modified | error | bozo (see PollResult).")
    new_articles: int = 0
    scored: int = 0
    alerts: int = 0
    error: str | None = Field(None, description="The feed's error of this poll (the job itself succeeded).")
    seconds: float = 0.0


def queue_conninfo(url: str) -> str:
    """The libpq URL of the database ``url`` (``TRIDENT_DATABASE_URL``) for the queue's own connections.

    Raises:
        QueueError: The database is not PostgreSQL (one line).
    """
    try:
        u = make_url(url)
    except (ArgumentError, ValueError):
        u = None
    if u is None or u.get_backend_name() != "postgresql":
        raise QueueError(f"the job queue needs PostgreSQL, not {redact_url(url)} (TRIDENT_DATABASE_URL); "
                         "use `trident fin monitor` on one machine")
    return u.set(drivername="postgresql").render_as_string(hide_password=False)


def apply_schema(conninfo: str) -> bool:
    """Create procrastinate's tables, functions and triggers unless they exist (one worker at a time, under an
    advisory lock); return whether they were created. An older procrastinate schema is left as it is (upgrade it
    with procrastinate's migrations)."""
    with psycopg.connect(conninfo) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (CREATE_LOCK,))  # as the stores' tables
        if conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()[0]:
            return False
        conn.execute(SchemaManager.get_schema())  # no parameters: the script runs as it is
        log.info("created the job queue's tables")
        return True


class _JobManager(JobManager):
    """procrastinate's job manager, except for a retry that would queue a job beside a newer one of the same feed
    (both under the feed's queueing lock, which allows one waiting job): that job ends as failed instead, and the
    waiting one polls the feed. procrastinate itself leaves such a job in ``doing``, holding the feed's lock for good
    (procrastinate issue #1446)."""

    async def retry_job(self, job: Job, retry_at: datetime | None = None, priority: int | None = None,
                        queue: str | None = None, lock: str | None = None) -> None:
        try:
            await super().retry_job(job, retry_at=retry_at, priority=priority, queue=queue, lock=lock)
        except UniqueViolation as exc:
            if exc.constraint_name != QUEUEING_LOCK_CONSTRAINT:
                raise
            log.warning("job %s (%s) not retried: a newer job of %s is queued and takes over", job.id,
                        job.call_string, exc.queueing_lock)
            await self.finish_job(job, status=Status.FAILED, delete_job=False)


class _LockedScorer:
    """One scorer shared by the job threads of a worker, one batch at a time."""

    def __init__(self, scorer) -> None:
        self.scorer, self.lock = scorer, threading.Lock()

    def score_articles(self, articles):
        with self.lock:
            return self.scorer.score_articles(articles)


class FeedJobs:
    """What the jobs of one worker process run: a :class:`Monitor` per job thread over one store and scorer.

    Args:
        settings: Finance settings (rules, prices, scoring, queue).
        store: The store (created).
        scorer: A ``SentimentScorer``, or None to store articles unscored.
        feeds: The feeds (of the feeds file), with ``entities``.
        entities: Ticker -> names and aliases.
        as_of: Evaluate the alert rules at this time (replays); default: each job's own time.
        on_report: Called with each job's report.
        clock: Epoch seconds.
    """

    def __init__(self, settings: FinSettings, store: FinanceStore, scorer, feeds: Sequence[FeedConfig],
                 entities: dict[str, list[str]], as_of: datetime | None = None,
                 on_report: Callable[[JobReport], None] | None = None, clock: Callable[[], float] = time.time) -> None:
        self.settings, self.store, self.as_of, self.on_report, self.clock = settings, store, as_of, on_report, clock
        self.scorer = _LockedScorer(scorer) if scorer is not None else None
        self.feeds, self.entities = list(feeds), dict(entities)
        self.names = {f.name for f in self.feeds}
        self.rules = load_rules(settings.rules_path)  # read once, and a bad file stops the worker before it starts
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._local = threading.local()
        self._monitors: list[Monitor] = []
        self._lock = threading.Lock()

    def _monitor(self) -> Monitor:
        monitor = getattr(self._local, "monitor", None)
        if monitor is None:
            monitor = Monitor(self.settings, self.store, self.scorer, feeds=self.feeds, entities=self.entities,
                              rules=self.rules, clock=self.clock)
            self._local.monitor = monitor
            with self._lock:
                self._monitors.append(monitor)
        return monitor

    def poll_feed(self, feed: str, tick: int, job_id: int | None = None, attempt: int = 0) -> JobReport:
        """Poll one feed and store what it brings in one transaction (a feed that is not due is skipped)."""
        t0 = time.perf_counter()
        report = dict(feed=feed, tick=tick, job_id=job_id, attempt=attempt, worker=self.worker)
        if feed not in self.names:
            log.warning("job %s: feed %r is not in the feeds file %s; skipped", job_id, feed, self.settings.feeds_path)
            return self._done(JobReport(**report, status="unknown_feed"))
        state = self.store.feed_states().get(feed)
        if state is not None and state.next_poll_at > self.clock():
            return self._done(JobReport(**report, status="not_due", seconds=round(time.perf_counter() - t0, 3)))
        monitor = self._monitor()
        monitor.load_prices()
        try:
            cycle = monitor.cycle(self.as_of, only={feed})
        except BaseException:
            # the transaction rolled back: forget what it had remembered as stored, so that a retry stores it
            monitor.deduper = Deduper(*self.store.known_keys(), min_hash_chars=monitor.deduper.min_hash_chars)
            raise
        return self._done(JobReport(**report, status="polled", poll=cycle.polled.get(feed),
                                    new_articles=cycle.new_articles, scored=cycle.scored, alerts=cycle.alerts,
                                    error=cycle.errors.get(feed), seconds=round(time.perf_counter() - t0, 3)))

    def _done(self, report: JobReport) -> JobReport:
        if self.on_report is not None:
            self.on_report(report)
        return report

    def close(self) -> None:
        """Close the monitors' HTTP clients."""
        for monitor in self._monitors:
            monitor.close()


def build_app(conninfo: str, queue: QueueSettings, jobs: FeedJobs) -> procrastinate.App:
    """The procrastinate app of the finance workers: ``fin.poll_feed`` scheduled per feed, ``fin.retry_stalled`` and
    ``fin.remove_old_jobs``; its connection pool is opened by ``App.run_worker``."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(
        conninfo=conninfo, min_size=1, max_size=queue.concurrency + 4))
    app.job_manager = _JobManager(app.connector)
    retry = RetryStrategy(max_attempts=queue.retry_attempts, wait=queue.retry_wait_seconds) \
        if queue.retry_attempts else False

    def poll_feed(context: JobContext, feed: str, timestamp: int) -> dict[str, Any]:
        job = context.job
        return jobs.poll_feed(feed, timestamp, job.id, job.attempts).model_dump(mode="json")

    task = app.task(name=POLL_TASK, queue=QUEUE, retry=retry, pass_context=True)(poll_feed)
    for feed in jobs.feeds:
        key = f"{POLL_TASK}:{feed.name}"
        app.periodic_registry.register_task(task=task, cron=queue.cron, periodic_id=feed.name, configure_kwargs={
            "task_kwargs": {"feed": feed.name}, "lock": key, "queueing_lock": key})

    async def retry_stalled(context: JobContext, timestamp: int) -> int:
        manager = context.app.job_manager
        stalled = await manager.get_stalled_jobs(queue=QUEUE, seconds_since_heartbeat=queue.stalled_seconds)
        for job in stalled:
            if job.task_name == POLL_TASK and job.attempts >= queue.retry_attempts:
                log.error("job %s (%s) failed: its worker died on each of %d attempts", job.id, job.call_string,
                          job.attempts + 1)
                await manager.finish_job(job, status=Status.FAILED, delete_job=False)
                continue
            log.warning("job %s (%s): its worker stopped answering; running it again", job.id, job.call_string)
            await manager.retry_job(job)
        return len(stalled)

    recover = app.task(name=RECOVER_TASK, queue=QUEUE, pass_context=True, priority=RECOVER_PRIORITY,
                       lock=RECOVER_TASK, queueing_lock=RECOVER_TASK)(retry_stalled)
    app.periodic(cron=f"* * * * * */{queue.recover_seconds}", periodic_id="recover")(recover)

    async def remove_old_jobs(context: JobContext, timestamp: int) -> None:
        await context.app.job_manager.delete_old_jobs(nb_hours=queue.keep_jobs_hours, queue=QUEUE)

    cleanup = app.task(name=CLEANUP_TASK, queue=QUEUE, pass_context=True, queueing_lock=CLEANUP_TASK)(remove_old_jobs)
    app.periodic(cron="17 * * * *", periodic_id="cleanup")(cleanup)
    return app


def run_worker(settings: FinSettings, jobs: FeedJobs) -> None:
    """Run one worker until SIGTERM / SIGINT (then it finishes the jobs in hand): create the queue's tables when
    missing, then fetch and run jobs, ``settings.queue.concurrency`` at a time.

    Raises:
        QueueError: The database is not PostgreSQL.
    """
    queue = settings.queue
    conninfo = queue_conninfo(settings.core.effective_database_url)
    apply_schema(conninfo)
    app = build_app(conninfo, queue, jobs)
    app.run_worker(queues=[QUEUE], name=jobs.worker, concurrency=queue.concurrency,
                   update_heartbeat_interval=queue.heartbeat_seconds, stalled_worker_timeout=queue.stalled_seconds)
