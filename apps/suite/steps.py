"""``prepare``: build what the dashboards and the finance worker need, reuse what is there, and say which.

Each step calls the entry points of one app that its ``commands.py`` calls (``cs train``, ``cs index``, ``fin train``,
``fin monitor --once``, ``rec train``, ``rec batch``) with the suite's plan. With the real data sets the quick
artifacts train on a capped part of them (:data:`INTENTS_PER_CLASS` Banking77 sentences per intent and StackFAQ's dev
queries, :data:`FIN_SENTENCES` PhraseBank sentences, MovieLens-100k with the tiny preset), so that ``prepare`` stays
short on a laptop's CPU.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

from apps.customer_service.index import build_index
from apps.customer_service.pipeline import retrieval_pairs, train_cs
from apps.finance_sentiment.monitor import Monitor
from apps.finance_sentiment.pipeline import read_sentiment_data, train_sentiment
from apps.finance_sentiment.service import FinService
from apps.recommender.batch import run_batch
from apps.recommender.data import load_data
from apps.recommender.pipeline import load_artifact, train_all
from apps.recommender.store import RecStore
from apps.suite.plan import SAMPLES, Plan, SuiteError, complete, read_state, stamp, write_feeds_file, write_state
from core.engine import InferenceEngine
from core.train import route_lightning_logs

# The sample feeds were written as of these two closes (16:00 New York = 20:00 UTC): the prepare cycle evaluates the
# alert rules at both, as `trident fin monitor --as-of` would, so the dashboard shows the alerts of that week.
REPLAY_CLOSES = (datetime(2026, 3, 12, 20, tzinfo=UTC), datetime(2026, 3, 13, 20, tzinfo=UTC))
INTENTS_PER_CLASS = 16  # Banking77 sentences per intent for the quick artifact
FIN_SENTENCES = 1500  # PhraseBank sentences for the quick artifact (70% train, 10% validation, 20% test)


@dataclass
class Step:
    """What one step of ``prepare`` did."""

    app: str
    name: str
    status: str  # full (the benchmark artifact), reused, trained, built, ran
    detail: str
    seconds: float = 0.0


def _model(plan: Plan, app: str, train: Callable[[Path], str]) -> Step:
    """The model step of ``app``: its artifact when it is there already (the full one of `make artifacts`, else a quick
    one from an earlier run), else a quick one that ``train(folder)`` trains now and describes, which ``--no-train``
    refuses. It trains into ``OUT.tmp`` and renames that: an interrupted run never leaves half an artifact."""
    if full := plan.full_artifact(app):
        return Step(app, "model", "full", str(full))
    out = plan.quick_artifact(app)
    if complete(app, out):
        return Step(app, "model", "reused", str(out))
    if not plan.suite.train:
        raise SuiteError(f"no {app} artifact in {plan.core.artifacts_dir / app} or {out}; "
                         "run without --no-train, or `make artifacts`")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    what = train(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return Step(app, "model", "trained", f"{out} ({what})")


def _subset_csv(path: Path, df: pd.DataFrame) -> Path:
    """``df`` written to ``path`` as CSV (atomically), unless it is there already."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        df.to_csv(tmp, index=False)
        tmp.replace(path)
    return path


def banking77_subset(plan: Plan) -> Path:
    """The first ``INTENTS_PER_CLASS`` sentences of every Banking77 intent, after a seeded shuffle."""
    df = pd.read_csv(plan.core.data_dir / "banking77" / "train.csv", dtype=str, keep_default_na=False)
    df = df.iloc[np.random.default_rng(13).permutation(len(df))]
    return _subset_csv(plan.demo_dir / "data" / f"banking77_{INTENTS_PER_CLASS}_per_intent.csv",
                       df.groupby("category", sort=False).head(INTENTS_PER_CLASS)[["text", "category"]])


def phrasebank_subset(plan: Plan) -> Path:
    """``FIN_SENTENCES`` PhraseBank sentences (50% agreement), stratified by label, seeded."""
    texts, labels = read_sentiment_data(plan.core.data_dir / "financial_phrasebank" / "Sentences_50Agree.txt",
                                        "phrasebank")
    df = pd.DataFrame({"text": texts, "label": labels})
    rng = np.random.default_rng(13)
    share = min(1.0, FIN_SENTENCES / len(df))
    keep = [i for _, idx in sorted(df.groupby("label").indices.items())
            for i in rng.choice(idx, size=max(1, round(share * len(idx))), replace=False)]
    return _subset_csv(plan.demo_dir / "data" / f"phrasebank_{FIN_SENTENCES}.csv", df.iloc[sorted(keep)])


def cs_model(plan: Plan, state: dict) -> Step:
    """The customer-service artifact (``trident cs train``): intents and retrieval adapters on all-MiniLM-L6-v2."""

    def train(out: Path) -> str:
        if plan.real("cs"):
            intents = banking77_subset(plan)
            what = f"Banking77, {INTENTS_PER_CLASS} per intent, 2 epochs; StackFAQ dev queries, 1 epoch"
        else:
            intents, what = SAMPLES / "intents.csv", "the sample intents and FAQ queries"
        s = plan.cs_settings()
        pairs = retrieval_pairs(plan.calibration, plan.kb, s.retrieval.index_answers)
        train_cs(out, intents, pairs, intents_cfg=s.train.intents_config(), retrieval_cfg=s.train.retrieval_config(),
                 lora_r=s.train.lora_r)
        return f"{what}; {len(pairs)} retrieval pairs"

    return _model(plan, "cs", train)


def cs_index(plan: Plan, state: dict) -> Step:
    """The knowledge base's index (``trident cs index``), rebuilt when the artifact or the KB file changed."""
    s = plan.cs_settings()
    art = s.artifact_dir
    key = {"artifact": str(art), "stamp": stamp(art), "kb": str(s.kb_path),
           "kb_mtime": s.kb_path.stat().st_mtime_ns if s.kb_path.exists() else 0}
    done = state.get("cs_index", {})
    if done.get("key") == key and (s.index_folder / "kb" / "CURRENT").is_file():
        return Step("cs", "index", "reused", f"{done['entries']} entries in {s.index_folder}")
    build, retriever = build_index(s, InferenceEngine(art, s.core.inference))
    state["cs_index"] = {"key": key, "entries": len(build.entries), "version": build.version}
    kind = retriever.dense.kind if retriever.mode != "sparse" else "bm25"
    return Step("cs", "index", "built", f"{len(build.entries)} entries of {s.kb_path.name} ({kind} + BM25) in "
                                        f"{s.index_folder}")


def fin_model(plan: Plan, state: dict) -> Step:
    """The sentiment artifact (``trident fin train``): all-MiniLM-L6-v2 fine-tuned on labelled financial sentences."""

    def train(out: Path) -> str:
        if plan.real("fin"):
            data, what = phrasebank_subset(plan), f"{FIN_SENTENCES} PhraseBank sentences, 1 epoch"
        else:
            data, what = SAMPLES / "fin_sentences.csv", "the sample sentences"
        fin = plan.fin_settings().train
        report = train_sentiment(data, out, fmt="csv", cfg=fin.config(soft=False), entity_blind=fin.entity_blind)
        return f"{what}; test accuracy {report['test']['accuracy']:.2f}"

    return _model(plan, "fin", train)


class _QuietFiles(SimpleHTTPRequestHandler):
    """Serves files without writing a request line to stderr per request."""

    def log_message(self, *args) -> None:
        pass


def fin_cycle(plan: Plan, state: dict) -> Step:
    """One worker cycle (``trident fin monitor --once``) over the sample feeds, served here for the cycle, once."""
    svc = FinService.build(plan.fin_settings())
    with svc.store:
        counts = svc.counts()
        if {f.name for f in svc.feeds} <= set(svc.store.feed_states()) and counts["articles"] > 0:
            return Step("fin", "feeds", "reused", f"{counts['articles']} articles, {counts['alerts']} alerts in the "
                                                  "database")
        try:
            httpd = ThreadingHTTPServer(("127.0.0.1", plan.suite.feeds_port),
                                        functools.partial(_QuietFiles, directory=str(SAMPLES / "feeds")))
        except OSError as exc:
            raise SuiteError(f"cannot serve the sample feeds on 127.0.0.1:{plan.suite.feeds_port} ({exc.strerror}); "
                             "choose another port with --feeds-port") from exc
        httpd.daemon_threads = True
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            with contextlib.closing(Monitor(svc.settings, svc.store, svc.scorer)) as monitor:
                report = monitor.run(once=True, as_of=REPLAY_CLOSES[0])[-1]
                monitor.cycle(as_of=REPLAY_CLOSES[1])  # the feeds are not due again: the rules at the next close
        finally:
            httpd.shutdown()
            httpd.server_close()
            thread.join(timeout=5)
        if report.errors:
            raise SuiteError(f"the sample feeds could not be read: {report.errors}")
        counts = svc.counts()
    return Step("fin", "feeds", "ran", f"{report.new_articles} new articles scored; {counts['articles']} articles, "
                                       f"{counts['alerts']} alerts, {counts['prices']} price rows in the database")


def rec_model(plan: Plan, state: dict) -> Step:
    """The recommender artifact (``trident rec train``): the generative model, SASRec, popularity, the test report."""

    def train(out: Path) -> str:
        s = plan.rec_settings()
        data = load_data(s.data, s.items)
        train_all(s, data, out)
        report = json.loads((out / "report.json").read_text())
        return f"{data.n_users} users, {data.n_items} items, tiny preset; test NDCG@10 {report['ndcg@10']:.3f}"

    return _model(plan, "rec", train)


def rec_batch(plan: Plan, state: dict) -> Step:
    """Every user's top-K (``trident rec batch``) into Parquet and the database; again only for another artifact."""
    s = plan.rec_settings()
    art = s.artifact_dir
    key = {"artifact": str(art), "stamp": stamp(art), "out": str(plan.rec_out)}
    with RecStore(plan.database_url).create() as store:
        rows = store.count()
        if state.get("rec_batch", {}).get("key") == key and plan.rec_out.is_file() and rows > 0:
            return Step("rec", "batch", "reused", f"{state['rec_batch']['users']} users' top-{s.batch.k}; {rows} "
                                                  "rows in the database")
        res = run_batch(load_artifact(art), plan.rec_out, s.batch, store=store, restart=True, progress=True)
        rows = store.count()
    state["rec_batch"] = {"key": key, "users": res.users}
    return Step("rec", "batch", "ran", f"{res.users} users' top-{s.batch.k} in {plan.rec_out}; {rows} rows in the "
                                       "database")


STEPS: tuple[tuple[str, Callable[[Plan, dict], Step]], ...] = (
    ("customer service: model", cs_model), ("customer service: knowledge-base index", cs_index),
    ("finance: sentiment model", fin_model), ("finance: one worker cycle over the sample feeds", fin_cycle),
    ("recommender: model", rec_model), ("recommender: batch job", rec_batch))


def prepare(plan: Plan, console: Console | None = None) -> list[Step]:
    """Build what is missing, reuse what is there, and say which: one line per step on ``console`` (default: stderr)
    as it starts; returns what each step did, in order (the table of ``trident suite prepare``)."""
    console = console or Console(stderr=True)
    route_lightning_logs()
    plan.demo_dir.mkdir(parents=True, exist_ok=True)
    write_feeds_file(plan)
    state = read_state(plan.state_path)
    steps = []
    for n, (title, fn) in enumerate(STEPS, 1):
        console.rule(f"[bold]{n}/{len(STEPS)} {title}", align="left")
        t0 = time.perf_counter()
        before = json.dumps(state, sort_keys=True)
        step = fn(plan, state)
        step.seconds = round(time.perf_counter() - t0, 1)
        if json.dumps(state, sort_keys=True) != before:  # a run that reuses everything writes nothing
            write_state(plan.state_path, state)
        steps.append(step)
    return steps
