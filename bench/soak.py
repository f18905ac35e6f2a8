"""Soak test of the running suite, bounded in time. Prints one JSON object (and writes it to --out).

For --duration seconds (default 180), all on 127.0.0.1, at once:

- the suite itself (`trident suite up`: prepare, the sample feed server and its finance worker, the three dashboards)
  on a database of its own: a fresh PostgreSQL database (the compose target) by default, a SQLite file with --sqlite;
- --agents (20) simulated support agents, one thread each, doing what the console's page actions do through the
  service the console builds (one ``CSService``, shared by every session of a console process): start a
  conversation, a customer message and the bot's suggestion, claim, accept / edit / reject the suggestion, open the
  conversation, list the conversations, release or close. Now and then an agent claims another agent's conversation:
  ``ClaimConflict`` and ``StaleWrite`` are the expected refusals of such races, counted apart from the errors;
- a second finance worker (`trident fin monitor`, a real process) on a feed server of its own (a separate process)
  whose feeds gain an item every --item-seconds, answer 304 while nothing changed, and now and then time out (past
  the worker's timeout), answer malformed or answer 503;
- the recommender batch job (`trident rec batch`, a real process) a third of the way in;
- a probe of the three dashboards' health endpoints (``/_stcore/health``) every 2 s.

Before that, one agent alone for --baseline seconds (the suite and the worker running): each action's latency without
the other agents, the reference for the figures under load.

At the end the worker gets SIGTERM (it finishes its cycle), then the suite. Reported: the errors (target 0) and the
expected refusals, p50 / p95 latency of each page action, the worker's cycles and poll outcomes, the batch job, the
dashboards' health, the row counts, and the integrity checks: every item the feed server served in a complete answer
stored exactly once (and nothing else), no duplicate article, sentence score or alert, every scored article with its
sentence scores, every conversation, customer message, verdict and agent reply that an agent saw succeed stored
exactly once, and the batch job's rows once per (user, rank).

Usage: python bench/soak.py [--duration 180] [--agents 20] [--sqlite] [--out bench/results/soak.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apps.common.db import make_engine  # noqa: E402
from apps.common.settings import CoreSettings  # noqa: E402
from apps.customer_service.service import CSService  # noqa: E402
from apps.customer_service.store import ClaimConflict, StaleWrite, Store  # noqa: E402
from apps.customer_service.store import conversations as cs_conversations  # noqa: E402
from apps.customer_service.store import feedback as cs_feedback  # noqa: E402
from apps.customer_service.store import kb_entries as cs_kb_entries  # noqa: E402
from apps.customer_service.store import turns as cs_turns  # noqa: E402
from apps.finance_sentiment import store as fin  # noqa: E402
from apps.recommender.store import recommendations  # noqa: E402
from apps.suite.plan import SAMPLES, Plan, SuiteSettings  # noqa: E402
from bench.soak_feeds import feeds_toml, read_log  # noqa: E402

PG_ADMIN = os.environ.get("TRIDENT_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REFUSALS = (ClaimConflict, StaleWrite)
CUSTOMER_EXTRA = ["I want to talk to a person about my account", "my email is jane.doe@example.com, please call me",
                  "this is the third time I write, nothing works", "how do I close my account and get my money back"]
ACTIONS = {"accepted": "accept", "edited": "edit", "rejected": "reject"}


# ------------------------------------------------------------------------------------------------------ agents
class Timings:
    """Latency and outcome of every action, shared by the agents' threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ms: dict[str, list[float]] = defaultdict(list)
        self.refusals: Counter = Counter()
        self.errors: Counter = Counter()
        self.examples: list[str] = []

    def call(self, action: str, fn, *args, **kwargs):
        """Run one action; return its result, or None when it was refused or failed (both counted)."""
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        except REFUSALS as exc:
            with self.lock:
                self.refusals[f"{action}:{type(exc).__name__}"] += 1
            return None
        except Exception as exc:  # noqa: BLE001 - every other failure is an error of the soak
            with self.lock:
                self.errors[f"{action}:{type(exc).__name__}"] += 1
                if len(self.examples) < 10:
                    self.examples.append(f"{action}: {type(exc).__name__}: {exc}"[:300])
            return None
        finally:
            with self.lock:
                self.ms[action].append((time.perf_counter() - t) * 1000)

    def summary(self) -> dict:
        return {a: {"n": len(v), "p50_ms": round(float(np.percentile(v, 50)), 1),
                    "p95_ms": round(float(np.percentile(v, 95)), 1), "max_ms": round(max(v), 1)}
                for a, v in sorted(self.ms.items())}


class Ledger:
    """What the agents saw succeed, per conversation: what the database must hold at the end."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.conversations: dict[str, str] = {}  # id -> owner
        self.customer_turns: Counter = Counter()
        self.verdicts: dict[str, Counter] = defaultdict(Counter)
        self.kb_ids: set[str] = set()
        self.closed: set[str] = set()

    def others(self, agent: str, rng: random.Random) -> str | None:
        with self.lock:
            ids = [c for c, owner in list(self.conversations.items())[-200:] if owner != agent]
        return rng.choice(ids) if ids else None


def agent_loop(svc: CSService, name: str, seed: int, deadline: float, think: float, queries: list[str],
               timings: Timings, ledger: Ledger) -> None:
    """One agent: a conversation after another until ``deadline``, with a pause of about ``think`` s per action."""
    rng = random.Random(seed)
    n = 0

    def pause() -> None:
        time.sleep(min(rng.expovariate(1 / think), 4 * think) if think > 0 else 0)

    while time.monotonic() < deadline:
        n += 1
        conv = timings.call("start", svc.start_conversation, f"soak-{name}-{n}")
        if conv is None:
            continue
        with ledger.lock:
            ledger.conversations[conv.id] = name
        for m in range(rng.randint(1, 3)):
            if time.monotonic() >= deadline:
                return
            pause()
            out = timings.call("customer_message", svc.customer_message, conv.id, rng.choice(queries))
            if out is None:
                continue
            turn, reply = out
            with ledger.lock:
                ledger.customer_turns[conv.id] += 1
            if m == 0:
                pause()
                timings.call("claim", svc.claim, conv.id, name)
            pause()
            verdict = rng.choices(["accepted", "edited", "rejected"], weights=[5, 2, 3])[0]
            if verdict == "accepted" and not reply.text:
                verdict = "rejected"
            text = f"Thanks for waiting: {rng.choice(queries)}? Here is what to do (answer {name}-{n}-{m})."
            fb = timings.call(ACTIONS[verdict], svc.feedback, conv.id, turn.id, name, verdict,
                              final_text=text if verdict == "edited" else "")
            if fb is not None:
                with ledger.lock:
                    ledger.verdicts[conv.id][verdict] += 1
                    if fb.new_entry_id:
                        ledger.kb_ids.add(fb.new_entry_id)
        if rng.random() < 0.15 and (other := ledger.others(name, rng)):  # look into a colleague's conversation
            pause()
            if timings.call("claim", svc.claim, other, name) is not None:
                timings.call("release", svc.release, other, name)
        pause()
        timings.call("list", svc.conversations)
        loaded = timings.call("open", svc.conversation, conv.id)
        pause()
        if loaded is None:
            continue
        if rng.random() < 0.7:
            done = timings.call("close", svc.close, conv.id, name, expected_version=loaded.version)
            if done is not None:
                with ledger.lock:
                    ledger.closed.add(conv.id)
        else:
            timings.call("release", svc.release, conv.id, name)


def run_agents(svc: CSService, n: int, seconds: float, think: float, seed: int, queries: list[str],
               ledger: Ledger) -> tuple[list[threading.Thread], Timings]:
    """Start ``n`` agents for ``seconds``; return their threads and their timings."""
    timings = Timings()
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=agent_loop, name=f"agent-{i:02d}", daemon=True,
                                args=(svc, f"agent{i:02d}", seed + i, deadline, think, queries, timings, ledger))
               for i in range(n)]
    for t in threads:
        t.start()
    return threads, timings


# ------------------------------------------------------------------------------------------------ the processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health_probe(urls: dict[str, str], stop: threading.Event, out: dict) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while not stop.wait(2.0):
        for name, url in urls.items():
            t = time.perf_counter()
            try:
                with opener.open(url, timeout=5) as r:
                    ok = r.status == 200 and r.read().strip() == b"ok"
            except OSError:
                ok = False
            rec = out.setdefault(name, {"probes": 0, "failures": 0, "ms": []})
            rec["probes"] += 1
            rec["failures"] += not ok
            rec["ms"].append((time.perf_counter() - t) * 1000)


def json_objects(text: str) -> list[dict]:
    """The JSON objects printed one after another (a worker prints one per cycle)."""
    dec, i, out = json.JSONDecoder(), 0, []
    while (i := text.find("{", i)) >= 0:
        try:
            obj, i = dec.raw_decode(text, i)
            out.append(obj)
        except json.JSONDecodeError:
            i += 1
    return out


def stop_process(proc: subprocess.Popen, timeout: float) -> int:
    """SIGTERM, wait up to ``timeout`` s, then SIGKILL; return the exit status (negative: killed by that signal)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


# ---------------------------------------------------------------------------------------------------- integrity
def integrity(url: str, ledger: Ledger, soak_feeds: list[str], served: set[str], batch: dict | None) -> tuple:
    """Row counts and the checks (each a count that must be 0, except where named otherwise)."""
    eng = make_engine(url)
    a, s, al = fin.articles.c, fin.sentence_scores.c, fin.alerts.c
    c, t, f = cs_conversations.c, cs_turns.c, cs_feedback.c

    def dupes(conn, *cols) -> int:
        q = sa.select(*cols).where(*(col.is_not(None) for col in cols)).group_by(*cols).having(sa.func.count() > 1)
        return len(conn.execute(q).all())

    with eng.connect() as conn:
        count = lambda table: int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())  # noqa: E731
        rows = {"conversations": count(cs_conversations), "turns": count(cs_turns), "feedback": count(cs_feedback),
                "kb_entries": count(cs_kb_entries), "articles": count(fin.articles),
                "sentence_scores": count(fin.sentence_scores), "alerts": count(fin.alerts), "feeds": count(fin.feeds),
                "prices": count(fin.prices), "recommendations": count(recommendations)}
        stored_urls = [u for (u,) in conn.execute(sa.select(a.url).where(a.source.in_(soak_feeds)))]
        rows["soak_articles"] = len(stored_urls)
        per_article = conn.execute(sa.select(s.article_id, sa.func.count(), sa.func.max(s.idx)).group_by(
            s.article_id)).all()
        scored = set(conn.execute(sa.select(a.id).where(a.score.is_not(None))).scalars())
        have_sentences = {r[0] for r in per_article}
        # what the agents saw succeed, against what is stored, per conversation
        ids = list(ledger.conversations)
        stored_convs, cust, agent_turns, verdicts, closed = set(), Counter(), Counter(), defaultdict(Counter), set()
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            stored_convs |= set(conn.execute(sa.select(c.id).where(c.id.in_(chunk))).scalars())
            closed |= set(conn.execute(sa.select(c.id).where(c.id.in_(chunk), c.state == "closed")).scalars())
            for cid, role, n in conn.execute(sa.select(t.conversation_id, t.role, sa.func.count()).where(
                    t.conversation_id.in_(chunk)).group_by(t.conversation_id, t.role)):
                if role == "customer":
                    cust[cid] += n
                elif role == "agent":
                    agent_turns[cid] += n
            for cid, verdict, n in conn.execute(sa.select(f.conversation_id, f.verdict, sa.func.count()).where(
                    f.conversation_id.in_(chunk)).group_by(f.conversation_id, f.verdict)):
                verdicts[cid][verdict] += n
        kb_ids = set(conn.execute(sa.select(cs_kb_entries.c.id).where(cs_kb_entries.c.origin == "feedback")).scalars())
        checks = {
            "soak_items_served_not_stored": len(served - set(stored_urls)),
            "soak_articles_never_served": len(set(stored_urls) - served),
            "articles_duplicate_url": dupes(conn, a.url),
            "articles_duplicate_content": dupes(conn, a.content_hash),
            "sentence_scores_duplicate": dupes(conn, s.article_id, s.idx),
            "sentence_scores_with_gaps": sum(n != top + 1 for _, n, top in per_article),
            "scored_articles_without_sentence_scores": len(scored - have_sentences),
            "alerts_duplicate": dupes(conn, al.rule, al.ticker, al.window_start),
            "conversations_lost": len(set(ids) - stored_convs),
            "customer_messages_lost_or_duplicated": sum(cust[i] != ledger.customer_turns[i] for i in ids),
            "verdicts_lost_or_duplicated": sum(verdicts[i] != ledger.verdicts[i] for i in ids),
            "feedback_duplicate": dupes(conn, f.conversation_id, f.turn_id),
            "agent_replies_lost_or_duplicated": sum(
                agent_turns[i] != ledger.verdicts[i]["accepted"] + ledger.verdicts[i]["edited"] for i in ids),
            "closes_lost": len(ledger.closed - closed),
            "edited_answers_not_in_kb": len(ledger.kb_ids - kb_ids),
            "recommendations_duplicate": dupes(conn, recommendations.c.user_id, recommendations.c.rank),
        }
        if batch and "rows" in batch:
            checks["recommendations_rows_not_users_times_k"] = int(rows["recommendations"] != batch["rows"])
    eng.dispose()
    return rows, checks


# --------------------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=180.0, help="seconds of the soak with every agent (180)")
    ap.add_argument("--baseline", type=float, default=20.0, help="seconds of one agent alone first (0: none)")
    ap.add_argument("--agents", type=int, default=20)
    ap.add_argument("--think", type=float, default=1.0, help="mean pause of an agent between actions, seconds")
    ap.add_argument("--feeds", type=int, default=4, help="changing feeds of the soak's worker")
    ap.add_argument("--item-seconds", type=float, default=10.0, help="a new item in each feed every so many seconds")
    ap.add_argument("--sqlite", action="store_true", help="a SQLite file instead of a fresh PostgreSQL database")
    ap.add_argument("--var", default=None, help="the suite's runtime folder (default: <var>/soak; its quick "
                                                "artifacts are kept for the next run)")
    ap.add_argument("--artifacts-dir", default=None, help="full artifacts (default: TRIDENT_ARTIFACTS_DIR)")
    ap.add_argument("--data-dir", default=None, help="data sets (default: TRIDENT_DATA_DIR)")
    ap.add_argument("--start-timeout", type=float, default=1800.0, help="seconds for the suite to come up "
                                                                        "(prepare may train quick artifacts)")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--keep", action="store_true", help="keep the PostgreSQL database")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "soak.json"))
    args = ap.parse_args()

    base = CoreSettings()
    var = (Path(args.var) if args.var else base.var_dir / "soak").resolve()
    var.mkdir(parents=True, exist_ok=True)
    work = var / "run"  # this run's logs, feeds and batch output
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    admin, db_name = None, None
    if args.sqlite:
        db_file = var / "soak.db"
        for suffix in ("", "-wal", "-shm"):
            db_file.with_name(db_file.name + suffix).unlink(missing_ok=True)
        url = f"sqlite:///{db_file}"
    else:
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        db_name = f"trident_soak_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{db_name}"')
        url = admin.url.set(drivername="postgresql", database=db_name).render_as_string(hide_password=False)
    core = base.model_copy(update={"var_dir": var, "database_url": url,
                                   **({"artifacts_dir": Path(args.artifacts_dir)} if args.artifacts_dir else {}),
                                   **({"data_dir": Path(args.data_dir)} if args.data_dir else {})})
    ports = {"cs_port": free_port(), "fin_port": free_port(), "rec_port": free_port(), "feeds_port": free_port()}
    plan = Plan.build(core, SuiteSettings(**ports))
    env = {**os.environ, **plan.env(), "PYTHONUNBUFFERED": "1", "NO_PROXY": "127.0.0.1,localhost",
           **{f"TRIDENT_SUITE_{k.upper()}": str(v) for k, v in ports.items()}}
    (plan.demo_dir / "up.json").unlink(missing_ok=True)
    result: dict = {
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "database": "sqlite" if args.sqlite else "postgresql",
        "duration_s": args.duration, "baseline_s": args.baseline, "agents": args.agents, "think_s": args.think}
    procs: list[subprocess.Popen] = []
    try:
        # the suite: prepare (may train), then its processes; up.json appears once every dashboard answers
        t = time.perf_counter()
        suite_log = open(work / "suite.log", "w")  # noqa: SIM115 - closed with the process
        suite = subprocess.Popen([sys.executable, "-m", "apps.cli", "suite", "up"], cwd=ROOT, env=env,
                                 stdout=suite_log, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(suite)
        deadline = time.monotonic() + args.start_timeout
        while not (plan.demo_dir / "up.json").is_file():
            if suite.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"error: the suite did not come up (log: {work / 'suite.log'})")
            time.sleep(1)
        result["suite_start_s"] = round(time.perf_counter() - t, 1)
        result["artifacts"] = {app: {"path": str(plan.artifact(app)),
                                     "kind": "full" if plan.full_artifact(app) else "quick"}
                               for app in ("cs", "fin", "rec")}
        result["data"] = {app: "real" if plan.real(app) else "samples" for app in ("cs", "fin", "rec")}

        # the changing feeds, and a worker of their own
        names = [f"soak_{i + 1}" for i in range(args.feeds)]
        feed_log = work / "feeds.jsonl"
        feed_proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "soak_feeds.py"), "--log", str(feed_log),
                                      "--item-seconds", str(args.item_seconds), "--seed", str(args.seed), "--feeds",
                                      *names], stdout=subprocess.PIPE, text=True)
        procs.append(feed_proc)
        feeds_file = work / "soak_feeds.toml"
        feeds_file.write_text(feeds_toml(names, int(feed_proc.stdout.readline())))
        worker_out, worker_err = open(work / "worker.out", "w"), open(work / "worker.err", "w")  # noqa: SIM115
        worker = subprocess.Popen([sys.executable, "-m", "apps.cli", "fin", "monitor", "--json", "--feeds",
                                   str(feeds_file)], cwd=ROOT, env={**env, "FIN_MONITOR__INTERVAL_SECONDS": "2"},
                                  stdout=worker_out, stderr=worker_err)
        procs.append(worker)

        # the console's service, as the console builds it, shared by every agent; one conversation warms it up
        svc = CSService.build(plan.cs_settings(), Store(plan.database_url).create())
        queries = [line.split(",")[0] for line in (SAMPLES / "faq_queries.csv").read_text().splitlines()[1:]]
        queries += [e.question for e in svc.kb_entries()[:200]] + CUSTOMER_EXTRA
        ledger = Ledger()
        warm = svc.start_conversation("soak-warm-up")
        svc.customer_message(warm.id, queries[0])
        ledger.conversations[warm.id] = "warm-up"
        ledger.customer_turns[warm.id] += 1
        # the load starts once the worker has done its first cycle (it loads the model first)
        deadline = time.monotonic() + args.start_timeout
        while not json_objects((work / "worker.out").read_text()):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"error: the soak's worker did not complete a cycle (log: {work / 'worker.err'})")
            time.sleep(1)

        health: dict = {}
        stop_probe = threading.Event()
        probe = threading.Thread(target=health_probe, daemon=True, args=(
            {n: f"http://127.0.0.1:{ports[f'{n}_port']}/_stcore/health" for n in ("cs", "fin", "rec")}, stop_probe,
            health))
        probe.start()

        if args.baseline > 0:
            threads, base_timings = run_agents(svc, 1, args.baseline, args.think, args.seed + 1000, queries, ledger)
            for th in threads:
                th.join()
            result["baseline_one_agent"] = {"actions": base_timings.summary(),
                                            "errors": sum(base_timings.errors.values()),
                                            "refusals": dict(base_timings.refusals)}

        t_main = time.monotonic()
        threads, timings = run_agents(svc, args.agents, args.duration, args.think, args.seed, queries, ledger)
        batch: dict = {}

        def run_batch_job() -> None:
            time.sleep(args.duration / 3)
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "apps.cli", "rec", "batch", "--json", "--out",
                                  str(work / "recommendations.parquet")], cwd=ROOT, env=env, capture_output=True,
                                 text=True)
            objs = json_objects(out.stdout)
            batch.update({"exit_code": out.returncode, "wall_s": round(time.perf_counter() - t, 1),
                          **(objs[-1] if objs else {"stderr": out.stderr[-500:]})})

        batch_thread = threading.Thread(target=run_batch_job, daemon=True)
        batch_thread.start()
        for th in threads:
            th.join(timeout=max(1.0, args.duration - (time.monotonic() - t_main) + 120))
        result["agents_still_running"] = sum(th.is_alive() for th in threads)
        batch_thread.join(timeout=600)
        stop_probe.set()
        probe.join()
        result["soak_wall_s"] = round(time.monotonic() - t_main, 1)

        # stop: the worker finishes its cycle; the suite stops its children the same way
        worker_rc = stop_process(worker, 120)
        worker_out.close()
        worker_err.close()
        stop_process(feed_proc, 10)
        suite_rc = stop_process(suite, 120)
        suite_log.close()

        reports = json_objects((work / "worker.out").read_text())
        polled = Counter(s for r in reports for s in r.get("polled", {}).values())
        cycle_s = [r["seconds"] for r in reports] or [0.0]
        events = read_log(feed_log)
        served = {u for e in events if e["mode"] == "ok" for u in e["items"]}
        worker_err_text = (work / "worker.err").read_text()
        result["worker"] = {
            "exit_code": worker_rc, "cycles": len(reports), "new_articles": sum(r["new_articles"] for r in reports),
            "alerts": sum(r["alerts"] for r in reports), "poll_statuses": dict(polled),
            "cycle_p50_s": round(float(np.percentile(cycle_s, 50)), 2),
            "cycle_p95_s": round(float(np.percentile(cycle_s, 95)), 2),
            "tracebacks": worker_err_text.count("Traceback"),
            "feed_server": {"answers": dict(Counter(e["mode"] for e in events)), "items_served": len(served)}}
        logs = {p.name: p.read_text(errors="replace").count("Traceback") for p in plan.logs_dir.glob("*.log")}
        result["suite"] = {"exit_code": suite_rc, "tracebacks_in_logs": logs}
        result["batch"] = batch
        result["dashboards"] = {n: {"probes": h["probes"], "failures": h["failures"],
                                    "p95_ms": round(float(np.percentile(h["ms"], 95)), 1)}
                                for n, h in sorted(health.items())}
        result["actions"] = timings.summary()
        result["refusals"] = dict(sorted(timings.refusals.items()))
        result["ledger"] = {"conversations": len(ledger.conversations),
                            "customer_messages": sum(ledger.customer_turns.values()),
                            "verdicts": dict(sum(ledger.verdicts.values(), Counter())),
                            "closed": len(ledger.closed), "kb_entries_added": len(ledger.kb_ids)}
        rows, checks = integrity(url, ledger, names, served, batch)
        result["rows"] = rows
        result["integrity"] = {**checks, "ok": not any(checks.values())}
        errors = {"agent_actions": sum(timings.errors.values()),
                  "dashboard_health_failures": sum(h["failures"] for h in health.values()),
                  "worker_exit_not_0": int(worker_rc != 0), "worker_tracebacks": result["worker"]["tracebacks"],
                  "batch_failed": int(batch.get("exit_code") != 0), "suite_exit_not_0": int(suite_rc != 0),
                  "suite_tracebacks": sum(logs.values()), "agents_still_running": result["agents_still_running"]}
        result["errors"] = {"total": sum(errors.values()), **errors, "by_action": dict(timings.errors),
                            "examples": timings.examples}
    finally:
        for proc in procs:
            stop_process(proc, 30)
        if admin is not None:
            if not args.keep:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
            admin.dispose()
    text = json.dumps(result, indent=2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
