"""The finance worker end to end: real feeds served over HTTP, the real (quick) model, real SQLite and PostgreSQL.

Covers one cycle (poll, de-duplicate, score, store, alert), idempotence across cycles and restarts, a cycle that
fails half-way (rolled back whole), the captured real feeds, and the `trident fin monitor` process, on SQLite and
PostgreSQL, killed by SIGKILL inside its cycle's open transaction (a restart then stores every article, sentence score
and alert of a clean run, each once) and sent SIGTERM in the middle of a cycle (it finishes the cycle, then exits 0)."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from apps.common.settings import REPO_ROOT, CoreSettings
from apps.finance_sentiment import store as fin_store
from apps.finance_sentiment.feeds import FeedConfig
from apps.finance_sentiment.monitor import Monitor
from apps.finance_sentiment.settings import FinSettings, ScoringSettings
from apps.finance_sentiment.store import FinanceStore

SAMPLES = REPO_ROOT / "samples"
AS_OF = datetime(2026, 3, 13, 20, 0, tzinfo=UTC)
ENTITIES = {"NWT": ["Northwind Traders", "Northwind"], "CTSO": ["Contoso Freight", "Contoso"], "FBKM": ["Fabrikam"]}
CAPTURED = Path(os.environ.get("TRIDENT_DATA_DIR", REPO_ROOT.parent / "shared" / "datasets")) / "finance_feeds"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _serve(folder: Path):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


@pytest.fixture(scope="module")
def sample_server():
    httpd, base = _serve(SAMPLES / "feeds")
    yield base
    httpd.shutdown()


def _feeds(base: str) -> list[FeedConfig]:
    return [FeedConfig(name="larkspur_wire", url=f"{base}/larkspur_wire.rss", poll_seconds=60),
            FeedConfig(name="market_digest", url=f"{base}/market_digest.atom", poll_seconds=60)]


def _settings(url: str, **kw) -> FinSettings:
    kw = {"prices_dir": SAMPLES / "prices", "rules_path": SAMPLES / "alert_rules.toml", **kw}
    return FinSettings(core=CoreSettings(database_url=url), **kw)


@pytest.fixture(scope="module")
def scorer(fin_artifact):
    from apps.finance_sentiment.model import load_sentiment_model
    from apps.finance_sentiment.scoring import SentimentScorer

    return SentimentScorer(load_sentiment_model(fin_artifact), ScoringSettings(explain_sentences=1))


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_one_cycle_polls_scores_stores_and_alerts_and_a_second_adds_nothing(db_url, sample_server, scorer):
    store = FinanceStore(db_url).create()
    clock = Clock()
    mon = Monitor(_settings(db_url), store, scorer, feeds=_feeds(sample_server), entities=ENTITIES, clock=clock)
    try:
        assert mon.load_prices() == {"CTSO": 140, "FBKM": 140, "NWT": 140}
        report = mon.cycle(AS_OF)
        assert report.polled == {"larkspur_wire": "ok", "market_digest": "ok"}
        assert report.fetched == 11 and report.new_articles == 10 and report.scored == 10  # lw-007 is in both feeds
        assert report.alerts >= 1
        counts = store.counts()
        assert counts["articles"] == 10 and counts["prices"] == 420 and counts["alerts"] == report.alerts
        frame = store.articles()
        assert frame["score"].notna().all() and set(frame["label"]) <= {"positive", "neutral", "negative"}
        buyback = frame[frame["title"].str.contains("buyback")].iloc[0]
        assert "ir@northwind.example" not in buyback["summary"] and "555 0134" not in buyback["summary"]
        detail = store.article(frame["id"].iloc[0])
        assert detail["sentences"] and detail["explanation"]["sentences"][0]["words"]
        ctso = store.articles(tickers="CTSO")
        assert len(ctso) == 5
        alerts = store.alerts()
        assert set(alerts["ticker"]) <= set(ENTITIES)
        # the next cycle: feeds answer 304 or repeat themselves; nothing is stored twice, no alert fires twice
        clock.now += 120
        again = mon.cycle(AS_OF)
        assert again.new_articles == 0 and again.alerts == 0
        assert store.counts() == counts
    finally:
        mon.close()
    # a restart (new monitor, same database) de-duplicates against what is stored
    mon2 = Monitor(_settings(db_url), store, scorer, feeds=_feeds(sample_server), entities=ENTITIES)
    try:
        assert mon2.cycle(AS_OF).new_articles == 0
        assert store.counts() == counts
    finally:
        mon2.close()
        store.close()


class _FailingMonitor(Monitor):
    """Fails inside the cycle's transaction, after the articles are written: the cycle must vanish whole."""

    def indicators(self, as_of):
        raise SystemExit(143)


def test_a_cycle_that_fails_inside_its_transaction_leaves_nothing_and_earlier_data_intact(sqlite_url, sample_server,
                                                                                         scorer):
    store = FinanceStore(sqlite_url).create()
    store.save_prices("CTSO", __import__("apps.finance_sentiment.indicators", fromlist=["read_prices"])
                      .read_prices(SAMPLES / "prices" / "CTSO.csv"))
    before = store.counts()
    mon = _FailingMonitor(_settings(sqlite_url), store, scorer, feeds=_feeds(sample_server), entities=ENTITIES)
    with pytest.raises(SystemExit):
        mon.cycle(AS_OF)
    mon.close()
    assert store.counts() == before  # no article, no feed state, no alert; the prices stored before are kept
    assert store.feed_states() == {}
    ok = Monitor(_settings(sqlite_url), store, scorer, feeds=_feeds(sample_server), entities=ENTITIES)
    try:
        assert ok.cycle(AS_OF).new_articles == 10  # nothing was lost: the rolled-back articles come again
    finally:
        ok.close()
        store.close()


def test_bad_price_file_is_skipped_and_stored_prices_are_kept(sqlite_url, tmp_path, sample_server, caplog):
    store = FinanceStore(sqlite_url).create()
    folder = tmp_path / "prices"
    folder.mkdir()
    (folder / "NWT.csv").write_text((SAMPLES / "prices" / "NWT.csv").read_text())
    mon = Monitor(_settings(sqlite_url, prices_dir=folder), store, None, feeds=_feeds(sample_server),
                  entities=ENTITIES)
    assert mon.load_prices() == {"NWT": 140}
    (folder / "NWT.csv").write_text("day,price\n2026-01-02,1\n")
    os.utime(folder / "NWT.csv", (time.time() + 5, time.time() + 5))
    assert mon.load_prices() == {}
    assert "bad header" in caplog.text
    assert len(store.prices("NWT")) == 140
    mon.close()
    store.close()


MOVE_RULE = ('[[rules]]\nname = "big-daily-move"\nkind = "indicator_move"\nseverity = "warning"\nmetric = "return"\n'
             'threshold = 0.05\n')


def _closes(closes: list) -> str:
    """A price file of one row per weekday from Monday 2026-02-02 on, every price of a row its close."""
    days = pd.bdate_range("2026-02-02", periods=len(closes))
    return "date,open,high,low,close,adj_close,volume\n" + "".join(
        f"{d.date()},{c},{c},{c},{c},{c},1000\n" for d, c in zip(days, closes))


@pytest.mark.parametrize("last", [0, -3, "inf", "nan"])  # 0: a 1-day return of -100%
def test_a_price_row_that_is_not_finite_or_positive_is_never_stored_and_fires_no_alert(sqlite_url, tmp_path,
                                                                                      sample_server, caplog, last):
    store = FinanceStore(sqlite_url).create()
    (tmp_path / "prices").mkdir()
    (tmp_path / "prices" / "NWT.csv").write_text(_closes([100.0] * 30 + [last]))
    (tmp_path / "rules.toml").write_text(MOVE_RULE)
    mon = Monitor(_settings(sqlite_url, prices_dir=tmp_path / "prices", rules_path=tmp_path / "rules.toml"), store,
                  None, feeds=_feeds(sample_server), entities=ENTITIES)
    try:
        assert mon.load_prices() == {"NWT": 30}
        stored = store.prices("NWT")
        assert len(stored) == 30 and (stored[["open", "high", "low", "close", "adj_close"]] > 0).all().all()
        assert "NWT.csv (NWT): 1 rows rejected" in caplog.text
        report = mon.cycle(as_of=datetime(2026, 3, 16, 21, 30, tzinfo=UTC))  # after the bad row's session
        assert report.alerts == 0 and store.alerts().empty
    finally:
        mon.close()
        store.close()


def test_a_nan_close_does_not_hide_the_real_move_after_it(sqlite_url, tmp_path, sample_server):
    """The NaN session is left out, so the next close is measured against the last good one: a 20% fall alerts."""
    store = FinanceStore(sqlite_url).create()
    (tmp_path / "prices").mkdir()
    (tmp_path / "prices" / "NWT.csv").write_text(_closes([100.0] * 29 + ["nan", 80.0]))
    (tmp_path / "rules.toml").write_text(MOVE_RULE)
    mon = Monitor(_settings(sqlite_url, prices_dir=tmp_path / "prices", rules_path=tmp_path / "rules.toml"), store,
                  None, feeds=_feeds(sample_server), entities=ENTITIES)
    try:
        mon.load_prices()
        report = mon.cycle(as_of=datetime(2026, 3, 16, 21, 30, tzinfo=UTC))
        assert report.alerts == 1
        alert = store.alerts().iloc[0]
        assert alert["rule"] == "big-daily-move" and alert["value"] == pytest.approx(-0.2)
    finally:
        mon.close()
        store.close()


def test_cli_monitor_refuses_a_prices_folder_that_does_not_exist(tmp_path, capsys):
    from apps.cli import main

    assert main(["fin", "monitor", "--once", "--prices", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: prices folder not found: {tmp_path / 'missing'} (--prices, FIN_PRICES_DIR)\n"


@pytest.mark.skipif(not CAPTURED.is_dir(), reason="needs ../shared/datasets/finance_feeds")
def test_one_cycle_over_the_ten_captured_real_feeds(sqlite_url):
    from apps.finance_sentiment.feeds import load_feeds_file

    httpd, base = _serve(CAPTURED)
    try:
        feeds, entities = load_feeds_file(SAMPLES / "feeds.toml")
        feeds = [f.model_copy(update={"url": f.url.replace("http://127.0.0.1:8765", base)}) for f in feeds]
        store = FinanceStore(sqlite_url).create()
        mon = Monitor(_settings(sqlite_url), store, None, feeds=feeds, entities=entities, rules=[])
        report = mon.cycle(datetime(2026, 3, 13, 20, tzinfo=UTC))
        mon.close()
        assert len(report.polled) == 10 and set(report.polled.values()) == {"ok"}
        assert report.fetched == 530 and 0 < report.new_articles <= report.fetched
        assert store.counts()["articles"] == report.new_articles
        assert len(store.articles(tickers="AAPL")) >= 20  # the per-ticker Seeking Alpha feed tags every entry
        store.close()
    finally:
        httpd.shutdown()


# ------------------------------------------------------------------------------------------- the worker process
# The worker runs as a real `trident fin monitor` process. To stop it inside its cycle's open transaction the tests
# start it through tests/apps/fin_worker_seam.py: a SQLAlchemy listener, installed from outside the product, that
# pauses the process right after the cycle's first INSERT into a table, writes what its own (uncommitted) transaction
# holds to a marker file, and waits for a release file.
def _worker(db: str, feeds_file: Path, artifact: Path, logs: Path, *extra: str,
            seam: tuple[str, Path, Path] | None = None) -> subprocess.Popen:
    env = {**os.environ, "TRIDENT_DATABASE_URL": db, "FIN_MONITOR__INTERVAL_SECONDS": "1",
           "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    flags = ["--feeds", str(feeds_file), "--prices", str(SAMPLES / "prices"), "--rules",
             str(SAMPLES / "alert_rules.toml"), "--artifact", str(artifact), "--as-of", AS_OF.isoformat(), "--json",
             *extra]
    cmd = ([sys.executable, "-m", "tests.apps.fin_worker_seam", *map(str, seam), *flags] if seam else
           [sys.executable, "-m", "apps.cli", "fin", "monitor", *flags])
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "stdout", "w") as out, open(logs / "stderr", "w") as err:
        return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=out, stderr=err)


def _finished(proc: subprocess.Popen, logs: Path, timeout: float = 300) -> tuple[str, str]:
    """Wait for the worker to exit with 0; return its stdout and stderr."""
    rc = proc.wait(timeout=timeout)
    out, err = (logs / "stdout").read_text(), (logs / "stderr").read_text()
    assert rc == 0, err[-3000:]
    return out, err


def _paused(proc: subprocess.Popen, marker: Path, logs: Path) -> dict:
    """Wait until the seam paused the worker inside its cycle's transaction; return the marker's contents."""
    deadline = time.time() + 300
    while not marker.exists():
        assert proc.poll() is None, f"the worker exited before the pause: {(logs / 'stderr').read_text()[-3000:]}"
        assert time.time() < deadline, "the worker never reached the pause"
        time.sleep(0.2)
    return json.loads(marker.read_text())


def _feeds_file(tmp_path: Path, base: str) -> Path:
    text = (SAMPLES / "demo_feeds.toml").read_text().replace("http://127.0.0.1:8766", base)
    path = tmp_path / "feeds.toml"
    path.write_text(text)
    return path


def _contents(url: str) -> dict:
    """What the worker stored, by the keys that identify each row (an alert as the product identifies it: rule,
    ticker, window start), with the row counts and the keys stored more than once."""
    a, s, al = fin_store.articles.c, fin_store.sentence_scores.c, fin_store.alerts.c
    duplicates = {"article_url": sa.select(a.url).where(a.url.is_not(None)).group_by(a.url),
                  "article_content": sa.select(a.content_hash).group_by(a.content_hash),
                  "sentence": sa.select(s.article_id, s.idx).group_by(s.article_id, s.idx),
                  "alert": sa.select(al.rule, al.ticker, al.window_start).group_by(al.rule, al.ticker, al.window_start)}
    with FinanceStore(url) as store, store.engine.connect() as conn:
        return {
            "counts": store.counts(),
            "articles": {tuple(r) for r in conn.execute(sa.select(a.id, a.url))},
            "sentences": {tuple(r) for r in conn.execute(sa.select(s.article_id, s.idx))},
            "alerts": {tuple(r) for r in conn.execute(sa.select(al.rule, al.ticker, al.window_start))},
            "duplicates": {k: conn.execute(q.having(sa.func.count() > 1)).all() for k, q in duplicates.items()},
        }


def _committed(url: str) -> dict[str, int]:
    """Row counts as another connection sees them (committed rows only)."""
    with FinanceStore(url) as store:
        return store.counts()


def _assert_complete(got: dict, reference: dict) -> None:
    """Every article, sentence score and alert of the reference run is stored, exactly once, and nothing else."""
    assert got["duplicates"] == {k: [] for k in got["duplicates"]}
    assert got["articles"] == reference["articles"]
    assert got["sentences"] == reference["sentences"]
    assert got["alerts"] == reference["alerts"]
    assert got["counts"] == reference["counts"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, sample_server, fin_artifact) -> dict:
    """What one clean `trident fin monitor --once` stores from the sample feeds, in a SQLite file of its own."""
    import feedparser

    folder = tmp_path_factory.mktemp("reference")
    url = f"sqlite:///{folder / 'fin.db'}"
    _finished(_worker(url, _feeds_file(folder, sample_server), fin_artifact, folder, "--once"), folder)
    ref = _contents(url)
    links = {e.link for f in ("larkspur_wire.rss", "market_digest.atom")
             for e in feedparser.parse(str(SAMPLES / "feeds" / f)).entries}
    assert len(links) == 10 and {u for _, u in ref["articles"]} == links  # one article per story (lw-007 twice)
    per_article = {}
    for aid, idx in ref["sentences"]:
        per_article.setdefault(aid, set()).add(idx)
    assert set(per_article) == {aid for aid, _ in ref["articles"]}
    assert all(idx == set(range(len(idx))) for idx in per_article.values())  # 0..n-1, one row each
    assert ref["alerts"] and ref["counts"]["alerts"] == len(ref["alerts"])
    assert ref["counts"]["feeds"] == 2 and ref["counts"]["prices"] == 420
    return ref


NOTHING = {"feeds": 0, "articles": 0, "article_tickers": 0, "sentence_scores": 0, "alerts": 0}


def test_sigkill_inside_the_cycle_transaction_loses_and_duplicates_nothing_after_a_restart(
        db_url, tmp_path, sample_server, fin_artifact, reference):
    feeds_file = _feeds_file(tmp_path, sample_server)
    marker, release = tmp_path / "paused.json", tmp_path / "release"
    # paused after the cycle's last write (its alerts): everything it stores is written, nothing committed
    proc = _worker(db_url, feeds_file, fin_artifact, tmp_path / "killed", "--once", seam=("alerts", marker, release))
    try:
        inside = _paused(proc, marker, tmp_path / "killed")
        # the kill lands inside the open transaction: it holds every row of the cycle, none of them committed
        assert inside["in_transaction"]
        assert inside["counts"]["feeds"] == 2
        assert inside["counts"]["articles"] == len(reference["articles"])
        assert inside["counts"]["sentence_scores"] == len(reference["sentences"])
        assert inside["counts"]["alerts"] == len(reference["alerts"])
        committed = _committed(db_url)
        assert {k: committed[k] for k in NOTHING} == NOTHING
        assert committed["prices"] == 420  # loaded before the cycle, in transactions of their own
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    after = _committed(db_url)
    assert {k: after[k] for k in NOTHING} == NOTHING and after["prices"] == 420  # nothing half-stored
    out, _ = _finished(_worker(db_url, feeds_file, fin_artifact, tmp_path / "restart", "--once"), tmp_path / "restart")
    report = json.loads(out)
    assert report["new_articles"] == report["scored"] == len(reference["articles"])
    assert report["alerts"] == len(reference["alerts"])
    _assert_complete(_contents(db_url), reference)


def test_sigterm_in_the_middle_of_a_cycle_finishes_it_then_exits_cleanly(db_url, tmp_path, sample_server,
                                                                        fin_artifact, reference):
    marker, release, logs = tmp_path / "paused.json", tmp_path / "release", tmp_path / "logs"
    proc = _worker(db_url, _feeds_file(tmp_path, sample_server), fin_artifact, logs,
                   seam=("sentence_scores", marker, release))  # a loop (no --once): only the signal ends it
    try:
        inside = _paused(proc, marker, logs)
        # mid-cycle: its articles and sentence scores are written (uncommitted), its alerts not yet
        assert inside["counts"]["articles"] == len(reference["articles"]) and inside["counts"]["alerts"] == 0
        proc.send_signal(signal.SIGTERM)
        deadline = time.time() + 60
        while "SIGTERM: stopping after the cycle in hand" not in (logs / "stderr").read_text():
            assert proc.poll() is None and time.time() < deadline, (logs / "stderr").read_text()[-3000:]
            time.sleep(0.1)
        # the signal was handled while the cycle's transaction was open: nothing of the cycle is committed yet
        committed = _committed(db_url)
        assert {k: committed[k] for k in NOTHING} == NOTHING
        release.touch()
        out, err = _finished(proc, logs, timeout=120)
    finally:
        proc.kill()
    assert "Traceback" not in err and "rolling back" not in err
    report = json.loads(out)  # exactly one cycle report: the cycle in hand, and no other after it
    assert report["new_articles"] == report["scored"] == len(reference["articles"])
    assert report["alerts"] == len(reference["alerts"])
    _assert_complete(_contents(db_url), reference)
