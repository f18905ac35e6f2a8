"""The finance worker end to end: real feeds served over HTTP, the real (quick) model, real SQLite and PostgreSQL.

Covers one cycle (poll, de-duplicate, score, store, alert), idempotence across cycles and restarts, a cycle that
fails half-way (rolled back whole), the captured real feeds, and the `trident fin monitor` process stopped by
SIGTERM and killed by SIGKILL in the middle of its work."""

from __future__ import annotations

import functools
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

from apps.common.settings import REPO_ROOT, CoreSettings
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
def _worker(db: str, feeds_file: Path, artifact: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "TRIDENT_DATABASE_URL": db, "FIN_MONITOR__INTERVAL_SECONDS": "1",
           "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "apps.cli", "fin", "monitor", "--feeds", str(feeds_file), "--prices",
           str(SAMPLES / "prices"), "--rules", str(SAMPLES / "alert_rules.toml"), "--artifact", str(artifact),
           "--as-of", AS_OF.isoformat(), "--json", *extra]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _feeds_file(tmp_path: Path, base: str) -> Path:
    text = (SAMPLES / "demo_feeds.toml").read_text().replace("http://127.0.0.1:8766", base)
    path = tmp_path / "feeds.toml"
    path.write_text(text)
    return path


def _consistent(store: FinanceStore) -> dict[str, int]:
    counts = store.counts()
    frame = store.articles()
    for aid in frame["id"]:
        assert store.article(aid)["sentences"], "an article was stored without its sentence scores"
    assert counts["articles"] in (0, 10)
    assert (counts["feeds"] == 2) == (counts["articles"] == 10)  # feed states commit with their articles
    return counts


def test_sigterm_finishes_the_cycle_in_hand_then_exits_cleanly(tmp_path, sample_server, fin_artifact):
    url = f"sqlite:///{tmp_path / 'fin.db'}"
    proc = _worker(url, _feeds_file(tmp_path, sample_server), fin_artifact)
    store = FinanceStore(url)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
            if (tmp_path / "fin.db").exists():
                try:
                    if store.create().counts()["articles"] == 10:
                        break
                except Exception:  # noqa: BLE001 - the worker may be creating the schema
                    continue
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-2000:]
        assert '"new_articles": 10' in out
        assert _consistent(store)["articles"] == 10
    finally:
        proc.kill()
        store.close()


def test_sigkill_mid_cycle_loses_nothing_committed_and_a_restart_completes(tmp_path, sample_server, fin_artifact):
    url = f"sqlite:///{tmp_path / 'fin.db'}"
    feeds_file = _feeds_file(tmp_path, sample_server)
    proc = _worker(url, feeds_file, fin_artifact, "--once")
    # the worker needs a few seconds to load torch and the model; scoring with explanations takes a few more:
    # wait until the schema exists, then kill it while it is scoring the first cycle
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "fin.db").exists():
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    store = FinanceStore(url).create()
    first = _consistent(store)
    rerun = _worker(url, feeds_file, fin_artifact, "--once")
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-2000:]
    final = _consistent(store)
    assert final["articles"] == 10 and final["prices"] == 420
    assert first["articles"] in (0, 10)
    store.close()
