"""``trident suite prepare`` and ``trident suite up``: the whole suite on one machine (what ``make demo`` runs).

``prepare`` makes sure that everything the three dashboards and the finance worker need exists, and reuses what does:

1. a model per app: the full artifact under ``<artifacts>/<cs|fin|rec>`` (``make artifacts``) when it is there, else
   a quick one trained now under ``<var>/demo/artifacts/<samples|real>/<app>``;
2. the customer-service index (FAISS + BM25 + calibrator) of the knowledge base, in ``<var>/demo/cs-index``;
3. one finance-worker cycle over the sample feeds (``samples/feeds``, served on 127.0.0.1 for the cycle) into the
   database, with the alert rules replayed at the closes of 12 and 13 March 2026, when the sample feeds were written;
4. the recommender's batch job: every user's top-K in ``<var>/demo/rec/recommendations.parquet`` and the database.

Data: where ``TRIDENT_DATA_DIR`` holds an app's real data sets, its quick artifact trains on a capped part of them, so
that the whole of ``prepare`` stays within 10 minutes on 2 CPU cores: Banking77, 16 sentences per intent, two epochs,
and StackFAQ's 625 dev queries for retrieval (one epoch), with its 125 threads as the knowledge base; Financial
PhraseBank, 1,500 sentences, one epoch; MovieLens-100k with the recommender's tiny preset. Elsewhere the samples of
``samples/`` (a fictional bank's intents and FAQ, labelled sentences, a fictional film catalogue). The finance feeds
and prices are always the samples: the suite serves those feeds itself.

``up`` runs ``prepare`` (as a child process), then starts the sample feed server, the finance worker and the three
dashboards, each in its own process group, waits until every dashboard's health endpoint answers ``ok``, prints the
URLs, and on Ctrl-C or SIGTERM stops them all (SIGTERM, then SIGKILL after a grace period). Every child reads the same
artifacts, index and database through the environment that ``Plan.env`` writes (``TRIDENT_*``, ``CS_*``, ``FIN_*``,
``REC_*``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from apps.common.output import emit
from apps.common.settings import REPO_ROOT, CoreSettings

SAMPLES = REPO_ROOT / "samples"
APPS = ("cs", "fin", "rec")
# The sample feeds were written as of these two closes (16:00 New York = 20:00 UTC): the prepare cycle evaluates the
# alert rules at both, as `trident fin monitor --as-of` would, so the dashboard shows the alerts of that week.
REPLAY_CLOSES = (datetime(2026, 3, 12, 20, tzinfo=UTC), datetime(2026, 3, 13, 20, tzinfo=UTC))
# The files that make an app's data "real" (all of them must be under TRIDENT_DATA_DIR).
REAL_FILES = {"cs": ("banking77/train.csv", "banking77/test_dev.csv", "stackfaq/faq_threads.jsonl",
                     "stackfaq/queries_dev.jsonl"),
              "fin": ("financial_phrasebank/Sentences_50Agree.txt",),
              "rec": ("movielens-100k/u.data", "movielens-100k/u.item")}
INTENTS_PER_CLASS = 16  # Banking77 sentences per intent for the quick artifact (77 intents: 1,232 sentences)
FIN_SENTENCES = 1500  # PhraseBank sentences for the quick artifact (70% train, 10% validation, 20% test)


class SuiteError(RuntimeError):
    """Something the user can fix: a port in use, an artifact missing under ``--no-train``."""


class SuiteSettings(BaseSettings):
    """Ports and timings of the suite (env prefix ``TRIDENT_SUITE_``)."""

    model_config = SettingsConfigDict(env_prefix="TRIDENT_SUITE_", frozen=True, extra="ignore")

    cs_port: int = Field(8501, ge=1, le=65535, description="Port of the support console.")
    fin_port: int = Field(8502, ge=1, le=65535, description="Port of the finance dashboard.")
    rec_port: int = Field(8503, ge=1, le=65535, description="Port of the recommender dashboard.")
    feeds_port: int = Field(8766, ge=1, le=65535, description="Port of the local server of the sample feeds.")
    address: str = Field("127.0.0.1", description="Interface the dashboards listen on (0.0.0.0: every interface).")
    worker_interval: float = Field(30.0, gt=0.0, description="Seconds between the finance worker's cycles.")
    health_timeout: float = Field(300.0, gt=0.0, description="Seconds to wait for every dashboard to answer.")
    stop_timeout: float = Field(20.0, gt=0.0, description="Seconds a child has to stop before it is killed.")
    train: bool = Field(True, description="Train the quick artifacts that are missing (off: fail instead).")


# ---------------------------------------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class Plan:
    """Where every part of the suite lives, decided once from the settings and the files present.

    Args:
        core: Paths and database (absolute).
        suite: Ports and timings.
    """

    core: CoreSettings
    suite: SuiteSettings

    @classmethod
    def build(cls, core: CoreSettings, suite: SuiteSettings) -> Plan:
        """A plan with every path of ``core`` made absolute (children run elsewhere and read them from the env)."""
        paths = {k: Path(getattr(core, k)).resolve() for k in ("data_dir", "artifacts_dir", "var_dir")}
        return cls(core.model_copy(update=paths), suite)

    @property
    def demo_dir(self) -> Path:
        """What the suite writes (besides the database)."""
        return self.core.var_dir / "demo"

    @property
    def database_url(self) -> str:
        """The one database of the suite (``TRIDENT_DATABASE_URL``, else SQLite under ``<var>``)."""
        return self.core.effective_database_url

    def real(self, app: str) -> bool:
        """Whether the real data sets of ``app`` are under the data folder."""
        return all((self.core.data_dir / f).is_file() for f in REAL_FILES[app])

    def full_artifact(self, app: str) -> Path | None:
        """The complete artifact of ``make artifacts`` for ``app``, if there is one."""
        path = self.core.artifacts_dir / app
        return path if complete(app, path) else None

    def quick_artifact(self, app: str) -> Path:
        """Where the quick artifact of ``app`` is (or goes), one per kind of data."""
        return self.demo_dir / "artifacts" / ("real" if self.real(app) else "samples") / app

    def artifact(self, app: str) -> Path:
        """The artifact every part of the suite uses for ``app``."""
        return self.full_artifact(app) or self.quick_artifact(app)

    @property
    def kb(self) -> Path:
        """The knowledge base: StackFAQ's threads with the real data, else the sample FAQ."""
        return self.core.data_dir / "stackfaq" / "faq_threads.jsonl" if self.real("cs") else SAMPLES / "faq.csv"

    @property
    def calibration(self) -> Path:
        """Queries with gold KB ids that calibrate the bot's confidence."""
        return self.core.data_dir / "stackfaq" / "queries_dev.jsonl" if self.real("cs") else SAMPLES / "faq_queries.csv"

    @property
    def intents_eval(self) -> Path:
        """Labelled intents for the console's evaluation page (Banking77's test set with the real data)."""
        return self.core.data_dir / "banking77" / "test_dev.csv" if self.real("cs") else SAMPLES / "intents.csv"

    @property
    def rec_data(self) -> tuple[Path, Path | None]:
        """Interactions and items of the recommender."""
        if self.real("rec"):
            return self.core.data_dir / "movielens-100k", None
        return SAMPLES / "rec_interactions.csv", SAMPLES / "rec_items.csv"

    @property
    def feeds_file(self) -> Path:
        """``samples/demo_feeds.toml`` with the feed server's port (written by ``write_feeds_file``)."""
        return self.demo_dir / "feeds.toml"

    @property
    def rec_out(self) -> Path:
        """The batch job's Parquet file."""
        return self.demo_dir / "rec" / "recommendations.parquet"

    @property
    def state_path(self) -> Path:
        """What ``prepare`` did last, to know what it can reuse."""
        return self.demo_dir / "suite.json"

    @property
    def logs_dir(self) -> Path:
        """One log file per child of ``up``."""
        return self.demo_dir / "logs"

    def cs_settings(self):
        """The customer-service settings of the suite."""
        from apps.customer_service.settings import CSSettings

        return CSSettings(core=self.core, artifact=self.artifact("cs"), index_dir=self.demo_dir / "cs-index",
                          kb_path=self.kb, intents_path=self.intents_eval, calibration_path=self.calibration)

    def fin_settings(self):
        """The finance settings of the suite (sample feeds, rules and prices)."""
        from apps.finance_sentiment.settings import FinSettings, MonitorSettings

        return FinSettings(core=self.core, artifact=self.artifact("fin"), feeds_path=self.feeds_file,
                           rules_path=SAMPLES / "alert_rules.toml", prices_dir=SAMPLES / "prices",
                           monitor=MonitorSettings(interval_seconds=self.suite.worker_interval))

    def rec_settings(self):
        """The recommender settings of the suite (the tiny preset, which only matters for training)."""
        from apps.recommender.settings import tiny_settings

        data, items = self.rec_data
        s = tiny_settings(core=self.core, data=data, items=items, artifact=self.artifact("rec"))
        return s.model_copy(update={"train": s.train.model_copy(update={"progress": True})})

    def env(self) -> dict[str, str]:
        """The environment variables that give every child (dashboards, worker, ``prepare``) this plan."""
        s = self.suite
        data, items = self.rec_data
        env = {"TRIDENT_DATA_DIR": self.core.data_dir, "TRIDENT_ARTIFACTS_DIR": self.core.artifacts_dir,
               "TRIDENT_VAR_DIR": self.core.var_dir, "TRIDENT_DATABASE_URL": self.database_url,
               "TRIDENT_SUITE_FEEDS_PORT": s.feeds_port, "TRIDENT_SUITE_WORKER_INTERVAL": s.worker_interval,
               "TRIDENT_SUITE_TRAIN": s.train,
               "CS_ARTIFACT": self.artifact("cs"), "CS_INDEX_DIR": self.demo_dir / "cs-index", "CS_KB_PATH": self.kb,
               "CS_INTENTS_PATH": self.intents_eval, "CS_CALIBRATION_PATH": self.calibration,
               "FIN_ARTIFACT": self.artifact("fin"), "FIN_FEEDS_PATH": self.feeds_file,
               "FIN_RULES_PATH": SAMPLES / "alert_rules.toml", "FIN_PRICES_DIR": SAMPLES / "prices",
               "FIN_MONITOR__INTERVAL_SECONDS": s.worker_interval,
               "REC_ARTIFACT": self.artifact("rec"), "REC_DATA": data}
        if items is not None:
            env["REC_ITEMS"] = items
        return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in env.items()}


def complete(app: str, path: Path) -> bool:
    """Whether ``path`` holds a whole artifact of ``app`` (the customer-service one needs its retrieval adapter, which
    `trident cs train` writes last)."""
    if app == "cs":
        return (path / "config.json").is_file() and (path / "adapters" / "retrieval.safetensors").is_file()
    if app == "fin":
        return (path / "config.json").is_file() or (path / "ensemble.json").is_file()
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def stamp(artifact: Path) -> str:
    """What identifies an artifact's weights: a hash of its config (a retrained artifact gets a new one)."""
    config = next((artifact / n for n in ("config.json", "ensemble.json") if (artifact / n).is_file()), None)
    return hashlib.sha256(config.read_bytes()).hexdigest()[:16] if config else ""


def write_feeds_file(plan: Plan) -> Path:
    """``samples/demo_feeds.toml`` pointed at the feed server's port; rewritten only when it changes."""
    text = (SAMPLES / "demo_feeds.toml").read_text(encoding="utf-8").replace(
        "http://127.0.0.1:8766/", f"http://127.0.0.1:{plan.suite.feeds_port}/")
    path = plan.feeds_file
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------------------- prepare
@dataclass
class Step:
    """What one step of ``prepare`` did."""

    app: str
    name: str
    status: str  # full (the benchmark artifact), reused, trained, built, ran
    detail: str
    seconds: float = 0.0


def _read_state(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _write_state(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.replace(path)


def _train_into(out: Path, train: Callable[[Path], object]) -> None:
    """Train into ``OUT.tmp`` and rename it to ``out``: an interrupted run never leaves half an artifact."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    train(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def _present_model(plan: Plan, app: str) -> Step | None:
    """The model step of ``app`` when its artifact is there already (the full one of `make artifacts`, else a quick
    one from an earlier run); None when it has to be trained, which ``--no-train`` refuses."""
    full = plan.full_artifact(app)
    if full:
        return Step(app, "model", "full", str(full))
    out = plan.quick_artifact(app)
    if complete(app, out):
        return Step(app, "model", "reused", str(out))
    if not plan.suite.train:
        raise SuiteError(f"no {app} artifact in {plan.core.artifacts_dir / app} or {out}; "
                         "run without --no-train, or `make artifacts`")
    return None


def _subset_csv(path: Path, rows: list[tuple[str, str]], header: tuple[str, str]) -> Path:
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)
        tmp.replace(path)
    return path


def _banking77_subset(plan: Plan) -> Path:
    """The first ``INTENTS_PER_CLASS`` sentences of every Banking77 intent, after a seeded shuffle."""
    import numpy as np

    with (plan.core.data_dir / "banking77" / "train.csv").open(encoding="utf-8") as f:
        rows = [(r["text"], r["category"]) for r in csv.DictReader(f)]
    order = np.random.default_rng(13).permutation(len(rows))
    taken: dict[str, int] = {}
    keep = []
    for i in order:
        text, label = rows[i]
        if taken.get(label, 0) < INTENTS_PER_CLASS:
            taken[label] = taken.get(label, 0) + 1
            keep.append((text, label))
    return _subset_csv(plan.demo_dir / "data" / f"banking77_{INTENTS_PER_CLASS}_per_intent.csv", keep,
                       ("text", "category"))


def _phrasebank_subset(plan: Plan) -> Path:
    """``FIN_SENTENCES`` PhraseBank sentences (50% agreement), stratified by label, seeded."""
    import numpy as np

    from apps.finance_sentiment.pipeline import read_sentiment_data

    texts, labels = read_sentiment_data(plan.core.data_dir / "financial_phrasebank" / "Sentences_50Agree.txt",
                                        "phrasebank")
    rng = np.random.default_rng(13)
    share = min(1.0, FIN_SENTENCES / len(texts))
    keep = []
    for label in sorted(set(labels)):
        idx = [i for i, y in enumerate(labels) if y == label]
        keep += rng.choice(idx, size=max(1, round(share * len(idx))), replace=False).tolist()
    return _subset_csv(plan.demo_dir / "data" / f"phrasebank_{FIN_SENTENCES}.csv",
                       [(texts[i], labels[i]) for i in sorted(keep)], ("text", "label"))


def cs_model(plan: Plan, state: dict) -> Step:
    """The customer-service artifact: intents and retrieval adapters on all-MiniLM-L6-v2."""
    present = _present_model(plan, "cs")
    if present:
        return present
    out = plan.quick_artifact("cs")
    from apps.customer_service.knowledge import entry_text, load_kb, read_queries
    from apps.customer_service.pipeline import train_cs
    from core.config import TrainConfig

    if plan.real("cs"):
        intents = _banking77_subset(plan)
        icfg = TrainConfig.quick(max_epochs=2, batch_size=32, lr=1e-3, head_lr=3e-3, max_length=32, patience=2)
        rcfg = TrainConfig.quick(max_epochs=1, batch_size=32, lr=5e-4, head_lr=5e-4, max_length=64)
        what = f"Banking77, {INTENTS_PER_CLASS} per intent, 2 epochs; StackFAQ dev queries, 1 epoch"
    else:
        intents = SAMPLES / "intents.csv"
        icfg = TrainConfig.quick(max_epochs=4, batch_size=16, lr=1e-3, head_lr=3e-3, max_length=32, patience=4)
        rcfg = TrainConfig.quick(max_epochs=2, batch_size=16, lr=5e-4, head_lr=5e-4, max_length=64)
        what = "the sample intents and FAQ queries"
    kb = {e.id: e for e in load_kb(plan.kb).entries}
    with_answer = plan.cs_settings().retrieval.index_answers
    pairs = [(q, entry_text(kb[g], with_answer=with_answer)) for q, g in read_queries(plan.calibration) if g in kb]
    _train_into(out, lambda tmp: train_cs(tmp, intents, pairs, intents_cfg=icfg, retrieval_cfg=rcfg, lora_r=8))
    return Step("cs", "model", "trained", f"{out} ({what}; {len(pairs)} retrieval pairs)")


def cs_index(plan: Plan, state: dict) -> Step:
    """The knowledge base's index, rebuilt when the artifact or the KB file changed."""
    s = plan.cs_settings()
    art = s.artifact_dir
    key = {"artifact": str(art), "stamp": stamp(art), "kb": str(s.kb_path),
           "kb_mtime": s.kb_path.stat().st_mtime_ns if s.kb_path.exists() else 0}
    done = state.get("cs_index", {})
    if done.get("key") == key and (s.index_folder / "kb" / "CURRENT").is_file():
        return Step("cs", "index", "reused", f"{done['entries']} entries in {s.index_folder}")
    from apps.customer_service.index import build_index
    from core.engine import InferenceEngine

    build, retriever = build_index(s, InferenceEngine(art))
    state["cs_index"] = {"key": key, "entries": len(build.entries), "version": build.version}
    kind = retriever.dense.kind if retriever.mode != "sparse" else "bm25"
    return Step("cs", "index", "built", f"{len(build.entries)} entries of {s.kb_path.name} ({kind} + BM25) in "
                                        f"{s.index_folder}")


def fin_model(plan: Plan, state: dict) -> Step:
    """The sentiment artifact: all-MiniLM-L6-v2 fine-tuned on labelled financial sentences."""
    present = _present_model(plan, "fin")
    if present:
        return present
    out = plan.quick_artifact("fin")
    from apps.finance_sentiment.pipeline import train_sentiment
    from core.config import TrainConfig

    if plan.real("fin"):
        data, what = _phrasebank_subset(plan), f"{FIN_SENTENCES} PhraseBank sentences, 1 epoch"
        cfg = TrainConfig.quick(max_epochs=1, batch_size=32, lr=8e-5, head_lr=2e-3, max_length=64, warmup_ratio=0.1)
    else:
        data, what = SAMPLES / "fin_sentences.csv", "the sample sentences"
        cfg = TrainConfig.quick(max_epochs=4, batch_size=16, lr=1e-4, head_lr=3e-3, max_length=48, patience=4)
    report = train_sentiment(data, out, fmt="csv", cfg=cfg)  # writes OUT.tmp, then renames it
    return Step("fin", "model", "trained", f"{out} ({what}; test accuracy {report['test']['accuracy']:.2f})")


def _feeds_handler(directory: Path):
    """A ``SimpleHTTPRequestHandler`` class over ``directory`` that writes no request lines to stderr."""
    import functools
    from http.server import SimpleHTTPRequestHandler

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    return functools.partial(Quiet, directory=str(directory))


def fin_cycle(plan: Plan, state: dict) -> Step:
    """One worker cycle over the sample feeds (served here for the cycle) into the database, once."""
    from apps.finance_sentiment.feeds import load_feeds_file
    from apps.finance_sentiment.store import FinanceStore

    s = plan.fin_settings()
    names = {f.name for f in load_feeds_file(write_feeds_file(plan))[0]}
    store = FinanceStore(s.core.effective_database_url).create()
    try:
        counts = store.counts()
        if names <= set(store.feed_states()) and counts["articles"] > 0:
            return Step("fin", "feeds", "reused", f"{counts['articles']} articles, {counts['alerts']} alerts in the "
                                                  "database")
        from http.server import ThreadingHTTPServer

        from apps.finance_sentiment.model import load_sentiment_model
        from apps.finance_sentiment.monitor import Monitor
        from apps.finance_sentiment.scoring import SentimentScorer

        scorer = SentimentScorer(load_sentiment_model(s.artifact_dir), s.scoring)
        try:
            httpd = ThreadingHTTPServer(("127.0.0.1", plan.suite.feeds_port), _feeds_handler(SAMPLES / "feeds"))
        except OSError as exc:
            raise SuiteError(f"cannot serve the sample feeds on 127.0.0.1:{plan.suite.feeds_port} ({exc.strerror}); "
                             "choose another port with --feeds-port") from exc
        httpd.daemon_threads = True
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            monitor = Monitor(s, store, scorer)
            try:
                report = monitor.run(once=True, as_of=REPLAY_CLOSES[0])[-1]
                monitor.cycle(as_of=REPLAY_CLOSES[1])  # the feeds are not due again: the rules at the next close
            finally:
                monitor.close()
        finally:
            httpd.shutdown()
            httpd.server_close()
            thread.join(timeout=5)
        if report.errors:
            raise SuiteError(f"the sample feeds could not be read: {report.errors}")
        counts = store.counts()
    finally:
        store.close()
    return Step("fin", "feeds", "ran", f"{report.new_articles} new articles scored; {counts['articles']} articles, "
                                       f"{counts['alerts']} alerts, {counts['prices']} price rows in the database")


def rec_model(plan: Plan, state: dict) -> Step:
    """The recommender artifact: the generative model, SASRec and popularity, with their test report."""
    present = _present_model(plan, "rec")
    if present:
        return present
    out = plan.quick_artifact("rec")
    from apps.recommender.data import load_data
    from apps.recommender.pipeline import train_all

    s = plan.rec_settings()
    data = load_data(s.data, s.items)
    _train_into(out, lambda tmp: train_all(s, data, tmp))
    report = json.loads((out / "report.json").read_text())
    return Step("rec", "model", "trained", f"{out} ({data.n_users} users, {data.n_items} items, tiny preset; test "
                                           f"NDCG@10 {report['ndcg@10']:.3f})")


def rec_batch(plan: Plan, state: dict) -> Step:
    """Every user's top-K, into Parquet and the database; again only when the artifact changed."""
    from apps.recommender.store import RecStore

    s = plan.rec_settings()
    art = s.artifact_dir
    key = {"artifact": str(art), "stamp": stamp(art), "out": str(plan.rec_out)}
    store = RecStore(plan.database_url).create()
    try:
        rows = store.count()
        if state.get("rec_batch", {}).get("key") == key and plan.rec_out.is_file() and rows > 0:
            return Step("rec", "batch", "reused", f"{state['rec_batch']['users']} users' top-{s.batch.k}; {rows} "
                                                  "rows in the database")
        from apps.recommender.batch import run_batch
        from apps.recommender.pipeline import load_artifact

        res = run_batch(load_artifact(art), plan.rec_out, s.batch, store=store, restart=True, progress=True)
        rows = store.count()
    finally:
        store.close()
    state["rec_batch"] = {"key": key, "users": res.users}
    return Step("rec", "batch", "ran", f"{res.users} users' top-{s.batch.k} in {plan.rec_out}; {rows} rows in the "
                                       "database")


STEPS: tuple[tuple[str, Callable[[Plan, dict], Step]], ...] = (
    ("customer service: model", cs_model), ("customer service: knowledge-base index", cs_index),
    ("finance: sentiment model", fin_model), ("finance: one worker cycle over the sample feeds", fin_cycle),
    ("recommender: model", rec_model), ("recommender: batch job", rec_batch))


def prepare(plan: Plan, console=None) -> list[Step]:
    """Build what is missing, reuse what is there, and say which.

    Args:
        plan: The suite's plan.
        console: A ``rich`` console for the step headings (default: one on stderr).

    Returns:
        One ``Step`` per step, in order.
    """
    from rich.console import Console

    console = console or Console(stderr=True)
    plan.demo_dir.mkdir(parents=True, exist_ok=True)
    write_feeds_file(plan)
    state = _read_state(plan.state_path)
    steps = []
    for n, (title, fn) in enumerate(STEPS, 1):
        console.rule(f"[bold]{n}/{len(STEPS)} {title}", align="left")
        t0 = time.perf_counter()
        before = json.dumps(state, sort_keys=True)
        step = fn(plan, state)
        step.seconds = round(time.perf_counter() - t0, 1)
        if json.dumps(state, sort_keys=True) != before:  # a run that reuses everything writes nothing
            _write_state(plan.state_path, state)
        console.print(f"[green]{step.status}[/green] {step.detail} [dim]({step.seconds:.1f} s)[/dim]", soft_wrap=True)
        steps.append(step)
    return steps


# ---------------------------------------------------------------------------------------------------------- up
@dataclass
class Child:
    """One process of the running suite."""

    name: str
    label: str
    cmd: list[str]
    port: int | None = None
    url: str = ""
    log: Path | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)


def _die_with_parent() -> None:
    # Linux: the child gets SIGTERM if the suite itself dies (even by SIGKILL), so no dashboard outlives it
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _port_free(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def _answers(url: str, expect: bytes | None = None) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # local: never through a proxy
    try:
        with opener.open(url, timeout=2) as r:
            return r.status == 200 and (expect is None or r.read().strip() == expect)
    except OSError:
        return False


def children(plan: Plan) -> list[Child]:
    """The processes of the running suite, in start order: feed server, worker, three dashboards."""
    py, s = sys.executable, plan.suite
    host = "127.0.0.1" if s.address in ("0.0.0.0", "") else s.address
    cli = [py, "-m", "apps.cli"]
    out = [Child("feeds", "sample feed server", [py, "-m", "http.server", str(s.feeds_port), "--bind", "127.0.0.1",
                                                 "--directory", str(SAMPLES / "feeds")], s.feeds_port,
                 f"http://127.0.0.1:{s.feeds_port}/"),
           Child("worker", "finance worker", [*cli, "fin", "monitor", "--json"])]
    for name, label, group, command, port in (
            ("cs", "support console", "cs", "console", s.cs_port),
            ("fin", "finance dashboard", "fin", "dashboard", s.fin_port),
            ("rec", "recommender dashboard", "rec", "dashboard", s.rec_port)):
        out.append(Child(name, label, [*cli, group, command, "--port", str(port), "--address", s.address], port,
                         f"http://{host}:{port}"))
    for c in out:
        c.log = plan.logs_dir / f"{c.name}.log"
    return out


def _start(child: Child, env: dict[str, str]) -> None:
    child.log.parent.mkdir(parents=True, exist_ok=True)
    with child.log.open("w", encoding="utf-8") as log:
        child.proc = subprocess.Popen(child.cmd, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True,
                                      preexec_fn=_die_with_parent if sys.platform == "linux" else None)


def _dead(kids: list[Child]) -> Child | None:
    return next((c for c in kids if c.proc is not None and c.proc.poll() is not None), None)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def stop_all(kids: list[Child], timeout: float) -> list[str]:
    """SIGTERM every child's process group (the worker finishes its cycle), wait, then SIGKILL what is left.

    Returns:
        The names of the children that had to be killed.
    """
    started = [c for c in kids if c.proc is not None]
    for c in reversed(started):
        if _group_alive(c.proc.pid):
            try:
                os.killpg(c.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    killed = []
    for c in reversed(started):
        try:
            c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            killed.append(c.name)
        while _group_alive(c.proc.pid) and time.monotonic() < deadline:  # the group's other members, if any
            time.sleep(0.1)
        if _group_alive(c.proc.pid):
            os.killpg(c.proc.pid, signal.SIGKILL)
            if c.name not in killed:
                killed.append(c.name)
        c.proc.wait()
    return killed


def up(plan: Plan, console=None) -> int:
    """Prepare, start the suite, wait for Ctrl-C or SIGTERM (or a child's death), stop everything.

    Returns:
        The exit status: 0 after a requested stop, 1 when a child died or a dashboard never answered, ``prepare``'s
        status when it failed.
    """
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    s = plan.suite
    ports = {"support console": s.cs_port, "finance dashboard": s.fin_port, "recommender dashboard": s.rec_port}
    busy = [f"{name} ({port})" for name, port in ports.items() if not _port_free(s.address, port)]
    if len(set(ports.values())) < len(ports):
        raise SuiteError(f"the dashboards need three different ports, not {sorted(ports.values())}")
    if busy:
        raise SuiteError(f"port in use: {', '.join(busy)}; stop what uses it or choose other ports "
                         "(--cs-port, --fin-port, --rec-port)")
    env = {**os.environ, **plan.env(), "PYTHONUNBUFFERED": "1"}
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    kids = children(plan)
    try:
        t0 = time.perf_counter()
        prep = subprocess.Popen([sys.executable, "-m", "apps.cli", "suite", "prepare"], cwd=REPO_ROOT, env=env,
                                preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        while prep.poll() is None:
            if stop.wait(0.2):
                prep.terminate()  # an artifact in training is left as OUT.tmp, which the next run replaces
                prep.wait()
                console.print("interrupted while preparing")
                return 130
        if prep.returncode != 0:
            return prep.returncode
        console.rule("[bold]starting the suite", align="left")
        feeds, rest = kids[0], kids[1:]
        _start(feeds, env)
        deadline = time.monotonic() + 15
        while not _answers(feeds.url + "larkspur_wire.rss") and not stop.is_set():
            if feeds.proc.poll() is not None or time.monotonic() > deadline:
                return _failed(console, kids, s, f"the {feeds.label} did not start (log: {feeds.log})")
            time.sleep(0.1)
        for c in rest:
            _start(c, env)
        waiting = [c for c in rest if c.port is not None]
        deadline = time.monotonic() + s.health_timeout
        while waiting and not stop.is_set():
            dead = _dead(kids)
            if dead:
                return _failed(console, kids, s, _death(dead))
            for c in [c for c in waiting if _answers(f"http://127.0.0.1:{c.port}/_stcore/health", b"ok")]:
                waiting.remove(c)
                console.print(f"[green]up[/green] {c.label} [dim]({time.perf_counter() - t0:.0f} s)[/dim]")
            if waiting and time.monotonic() > deadline:
                names = ", ".join(f"{c.label} (log: {c.log})" for c in waiting)
                return _failed(console, kids, s, f"no answer within {s.health_timeout:.0f} s from {names}")
            stop.wait(0.5)
        if not stop.is_set():
            table = Table("", "URL", title=f"Trident is up ({time.perf_counter() - t0:.0f} s)")
            for c in kids:
                table.add_row(c.label, c.url or f"polls {plan.feeds_file} every {s.worker_interval:g} s")
            console.print(table)
            console.print(f"database: {plan.database_url}\nlogs: {plan.logs_dir}\nCtrl-C stops everything.",
                          soft_wrap=True)
            _write_state(plan.demo_dir / "up.json", {"pid": os.getpid(), "database_url": plan.database_url,
                                                     "children": {c.name: {"pid": c.proc.pid, "url": c.url,
                                                                           "log": str(c.log)} for c in kids}})
        while not stop.wait(0.5):
            dead = _dead(kids)
            if dead:
                return _failed(console, kids, s, _death(dead))
        console.print("stopping...")
        killed = stop_all(kids, s.stop_timeout)
        console.print("stopped" + (f" (killed after {s.stop_timeout:g} s: {', '.join(killed)})" if killed else ""))
        return 0
    finally:
        stop_all(kids, s.stop_timeout)  # a no-op when they are stopped already; an exception on the way: stop them
        (plan.demo_dir / "up.json").unlink(missing_ok=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _death(child: Child) -> str:
    return f"the {child.label} exited with status {child.proc.returncode} (log: {child.log})"


def _failed(console, kids: list[Child], s: SuiteSettings, message: str) -> int:
    console.print(f"[red]error:[/red] {message}; stopping the rest", soft_wrap=True)
    stop_all(kids, s.stop_timeout)
    return 1


# ---------------------------------------------------------------------------------------------------------- CLI
def _plan(args) -> Plan:
    core = {k: v for k, v in (("data_dir", args.data_dir), ("artifacts_dir", args.artifacts_dir)) if v}
    names = ("cs_port", "fin_port", "rec_port", "feeds_port", "address", "worker_interval", "health_timeout")
    suite = {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}
    if args.no_train:
        suite["train"] = False
    return Plan.build(CoreSettings(**core), SuiteSettings(**suite))


def suite_prepare(args) -> None:
    from rich.console import Console
    from rich.table import Table

    t0 = time.perf_counter()
    plan = _plan(args)
    steps = prepare(plan)
    seconds = round(time.perf_counter() - t0, 1)
    if args.json:
        emit({"steps": [asdict(s) for s in steps], "seconds": seconds, "database_url": plan.database_url,
              "data": {app: "real" if plan.real(app) else "samples" for app in APPS}}, True)
        return
    table = Table("app", "step", "status", "detail", "s", title=f"prepared in {seconds:.1f} s")
    for s in steps:
        table.add_row(s.app, s.name, s.status, s.detail, f"{s.seconds:.1f}")
    Console().print(table)


def suite_up(args) -> None:
    rc = up(_plan(args))
    if rc:
        raise SystemExit(rc)


def register(sub, common) -> None:
    """Add ``trident suite`` (``prepare``, ``up``) to the CLI."""
    suite = sub.add_parser("suite", help="the whole suite on one machine: prepare, then run the dashboards and worker")
    c = suite.add_subparsers(dest="command", required=True)

    def shared(sp):
        sp.add_argument("--feeds-port", type=int, help="port of the local sample-feed server (default 8766, env "
                                                       "TRIDENT_SUITE_FEEDS_PORT)")
        sp.add_argument("--no-train", action="store_true", help="fail instead of training a missing artifact")
        return sp

    sp = shared(common(c.add_parser("prepare", help="train what is missing (quick preset), build the FAQ index, run "
                                                    "one finance cycle and the recommender batch job"), False))
    sp.set_defaults(fn=suite_prepare)
    sp = shared(c.add_parser("up", help="prepare, then start the three dashboards and the finance worker until "
                                        "Ctrl-C"))
    sp.add_argument("--data-dir", help="data sets folder (env TRIDENT_DATA_DIR)")
    sp.add_argument("--artifacts-dir", help="artifacts folder (env TRIDENT_ARTIFACTS_DIR)")
    sp.add_argument("--cs-port", type=int, help="support console (default 8501, env TRIDENT_SUITE_CS_PORT)")
    sp.add_argument("--fin-port", type=int, help="finance dashboard (default 8502, env TRIDENT_SUITE_FIN_PORT)")
    sp.add_argument("--rec-port", type=int, help="recommender dashboard (default 8503, env TRIDENT_SUITE_REC_PORT)")
    sp.add_argument("--address", help="interface the dashboards listen on (default 127.0.0.1)")
    sp.add_argument("--worker-interval", type=float, help="seconds between the worker's cycles (default 30)")
    sp.add_argument("--health-timeout", type=float, help="seconds to wait for the dashboards (default 300)")
    sp.set_defaults(fn=suite_up)
