"""The batch job: every user once, deterministic, resumable after a crash or a real kill, into Parquet and the
database (SQLite and PostgreSQL, idempotent upserts)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from apps.common.settings import REPO_ROOT
from apps.recommender.batch import BatchError, PartWriter, run_batch
from apps.recommender.data import load_data
from apps.recommender.model import load_artifact
from apps.recommender.settings import BatchSettings
from apps.recommender.store import RecStore, recommendations

SAMPLES = REPO_ROOT / "samples"


@pytest.fixture(scope="module")
def art(rec_artifact):
    return load_artifact(rec_artifact)


def read(path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas()


def stored(store: RecStore, user_id: str | None = None) -> list:
    """The rows of one user (default: every user), best first."""
    q = sa.select(recommendations).order_by(recommendations.c.user_id, recommendations.c.rank)
    with store.engine.connect() as conn:
        return list(conn.execute(q if user_id is None else q.where(recommendations.c.user_id == user_id)))


def n_users(store: RecStore) -> int:
    return len({r.user_id for r in stored(store)})


class Crash(RuntimeError):
    """A crash between chunks."""


def crash_after(monkeypatch, n: int) -> None:
    """Make the batch job's part writer raise ``Crash`` as soon as it has written ``n`` parts."""
    write, written = PartWriter.write_on_batch_end, []

    def write_then_crash(self, *args) -> None:
        write(self, *args)
        written.append(1)
        if len(written) >= n:
            raise Crash(f"simulated crash after {n} chunks")

    monkeypatch.setattr(PartWriter, "write_on_batch_end", write_then_crash)


def check_complete(df: pd.DataFrame, art, k: int) -> None:
    """Each user once, ranks 1..k, nothing from the user's own history."""
    assert not df.duplicated(["user_id", "rank"]).any()
    assert sorted(df["user_id"].unique()) == sorted(art.data.users)
    assert (df.groupby("user_id")["rank"].apply(lambda r: sorted(r) == list(range(1, k + 1)))).all()
    for user, group in df.groupby("user_id"):
        seen = {art.data.item_ids[i - 1] for i in art.data.history(user)}
        assert not seen & set(group["item_id"])


def test_batch_writes_every_user_once_and_is_deterministic(art, tmp_path):
    cfg = BatchSettings(chunk_size=32)
    a = run_batch(art, tmp_path / "a.parquet", cfg, k=20, progress=False)
    b = run_batch(art, tmp_path / "b.parquet", cfg, k=20, progress=False)
    assert (a.users, a.rows, a.chunks, a.chunks_run) == (160, 160 * 20, 5, 5)
    df = read(a.out)
    check_complete(df, art, 20)
    pd.testing.assert_frame_equal(df, read(b.out))
    assert (df.groupby("user_id")["score"].apply(lambda s: s.is_monotonic_decreasing)).all()
    again = run_batch(art, tmp_path / "a.parquet", cfg, k=20, progress=False)  # everything done: nothing to run
    assert again.chunks_done_before == 5 and again.chunks_run == 0
    pd.testing.assert_frame_equal(read(again.out), df)


def test_batch_resumes_after_a_crash_between_chunks(art, tmp_path, monkeypatch):
    cfg = BatchSettings(chunk_size=16)
    out = tmp_path / "recs.parquet"
    crash_after(monkeypatch, 3)
    with pytest.raises(Crash):
        run_batch(art, out, cfg, k=10, progress=False)
    monkeypatch.undo()
    parts = sorted(p.name for p in (tmp_path / "recs.parquet.parts").glob("part-*.parquet"))
    assert parts == ["part-000000.parquet", "part-000001.parquet", "part-000002.parquet"] and not out.exists()
    res = run_batch(art, out, cfg, k=10, progress=False)
    assert (res.chunks_done_before, res.chunks_run, res.rows) == (3, 7, 1600)
    clean = run_batch(art, tmp_path / "clean.parquet", cfg, k=10, progress=False)
    pd.testing.assert_frame_equal(read(out), read(clean.out))
    check_complete(read(out), art, 10)


def test_batch_refuses_another_jobs_parts_unless_restarted(art, tmp_path):
    out = tmp_path / "r.parquet"
    run_batch(art, out, BatchSettings(chunk_size=50), k=5, progress=False)
    with pytest.raises(BatchError, match="different job"):
        run_batch(art, out, BatchSettings(chunk_size=50), k=7, progress=False)
    res = run_batch(art, out, BatchSettings(chunk_size=50), k=7, progress=False, restart=True)
    assert res.rows == 160 * 7 and res.chunks_done_before == 0


def test_batch_survives_a_real_kill(art, rec_artifact, tmp_path):
    """`trident rec batch` in a subprocess, killed with SIGKILL mid-run, then run again: same output as a clean run."""
    rng = np.random.default_rng(0)
    n_items = art.data.n_items
    rows = [{"user_id": f"x{u:05d}", "item_id": str(int(i)), "timestamp": t}
            for u in range(3000) for t, i in enumerate(rng.choice(np.arange(1, n_items + 1), 8, replace=False))]
    data = tmp_path / "many.csv"
    pd.DataFrame(rows).to_csv(data, index=False)
    out = tmp_path / "killed.parquet"
    cmd = [sys.executable, "-m", "apps.cli", "rec", "batch", "--artifact", str(rec_artifact), "--data", str(data),
           "--items", str(SAMPLES / "rec_items.csv"), "--out", str(out), "--k", "5", "--chunk-size", "10",
           "--no-db", "--json"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    parts = tmp_path / "killed.parquet.parts"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list(parts.glob("part-*.parquet"))) >= 3:
                break
            time.sleep(0.01)
        assert proc.poll() is None, f"the job ended before it could be killed: {proc.communicate()[1][-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    n_before = len(list(parts.glob("part-*.parquet")))
    assert 3 <= n_before < 300 and not out.exists()

    many = load_data(data, SAMPLES / "rec_items.csv")
    res = run_batch(art, out, BatchSettings(chunk_size=10), k=5, data=many, progress=False)
    assert res.chunks_done_before == n_before and res.chunks_run == 300 - n_before
    df = read(out)
    assert len(df) == 3000 * 5 and not df.duplicated(["user_id", "rank"]).any()
    assert df["user_id"].nunique() == 3000 and not list(parts.glob(".*.tmp-*"))
    clean = run_batch(art, tmp_path / "clean.parquet", BatchSettings(chunk_size=10), k=5, data=many, progress=False)
    pd.testing.assert_frame_equal(df, read(clean.out))


def test_batch_on_two_ddp_processes_with_fewer_chunks_than_processes(art, rec_artifact, tmp_path, monkeypatch):
    """`trident rec batch` on 2 CPU processes (ddp, gloo) resuming a job with one chunk left: one process scores it,
    the other has none; the output equals a single-process run's, and only rank 0 reports. Then nothing is left."""
    cfg = BatchSettings(chunk_size=64)  # 160 users: 3 chunks
    out = tmp_path / "ddp.parquet"
    crash_after(monkeypatch, 2)
    with pytest.raises(Crash):
        run_batch(art, out, cfg, k=10, progress=False)
    monkeypatch.undo()
    cmd = [sys.executable, "-m", "apps.cli", "rec", "batch", "--artifact", str(rec_artifact), "--out", str(out),
           "--k", "10", "--chunk-size", "64", "--no-db", "--json", "--accelerator", "cpu", "--devices", "2",
           "--strategy", "ddp"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for done_before, run in ((2, 1), (3, 0)):
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        report = json.loads(proc.stdout)  # one JSON object: the other process prints nothing
        assert (report["chunks_done_before"], report["chunks_run"], report["users"], report["rows"]) == (
            done_before, run, 160, 1600)
        clean = run_batch(art, tmp_path / "clean.parquet", cfg, k=10, progress=False)
        pd.testing.assert_frame_equal(read(out), read(clean.out))


# ------------------------------------------------------------------------------------------------ database
def test_store_upserts_are_idempotent_and_drop_ranks_beyond_the_new_list(db_url):
    store = RecStore(db_url).create()
    try:
        rows = [{"user_id": u, "rank": r, "item_id": f"i{r}", "score": 1.0 / r} for u in ("a", "b") for r in (1, 2, 3)]
        assert store.upsert(rows, "v1") == 6
        store.upsert(rows, "v1")
        assert store.count() == 6 and n_users(store) == 2
        store.upsert([{"user_id": "a", "rank": 1, "item_id": "new", "score": 9.0},
                      {"user_id": "a", "rank": 2, "item_id": "i2", "score": 0.5}], "v2")
        got = stored(store, "a")
        assert [(r.rank, r.item_id, r.version) for r in got] == [(1, "new", "v2"), (2, "i2", "v2")]
        assert got[0].created_at.tzinfo is not None
        assert len(stored(store, "b")) == 3 and stored(store, "nobody") == []
        assert store.upsert([], "v3") == 0
    finally:
        store.close()


def test_batch_into_the_database_twice_leaves_the_same_rows(art, db_url, tmp_path):
    store = RecStore(db_url).create()
    try:
        res = run_batch(art, tmp_path / "db.parquet", BatchSettings(chunk_size=64), k=5, store=store, progress=False)
        assert res.db_rows == 800 and store.count() == 800 and n_users(store) == 160
        first = stored(store, "u003")
        run_batch(art, tmp_path / "db.parquet", BatchSettings(chunk_size=64), k=5, store=store, progress=False)
        assert store.count() == 800
        assert [(r.rank, r.item_id) for r in stored(store, "u003")] == [(r.rank, r.item_id) for r in first]
        df = read(tmp_path / "db.parquet")
        expected = df[df.user_id == "u003"].sort_values("rank")["item_id"].tolist()
        assert [r.item_id for r in first] == expected
    finally:
        store.close()


@pytest.mark.parametrize("out, needle", [
    ("folder", "error: --out: {out} is a folder; give the path of the Parquet file to write"),
    ("a-file/recs.parquet", "error: [Errno 20] Not a directory: "),  # a file where a folder of the path should be
])
def test_batch_out_that_cannot_be_written_is_one_error_line(rec_artifact, tmp_path, capsys, out, needle):
    from apps.cli import main

    (tmp_path / "folder").mkdir()
    (tmp_path / "a-file").write_text("x")
    assert main(["rec", "batch", "--artifact", str(rec_artifact), "--no-db", "--out", str(tmp_path / out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(needle.format(out=tmp_path / out)) and err.count("\n") == 1


@pytest.mark.parametrize("url, needle", [
    ("bogus://x", "error: not a usable database URL 'bogus://x': Can't load plugin"),
    ("mysql://u:s3cret@h/db", "error: not a usable database URL 'mysql://u:***@h/db': No module named"),
])
def test_batch_with_an_unusable_database_url_is_one_error_line(rec_artifact, tmp_path, capsys, url, needle):
    from apps.cli import main

    assert main(["rec", "batch", "--artifact", str(rec_artifact), "--out", str(tmp_path / "r.parquet"),
                 "--database-url", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith(needle) and err.count("\n") == 1 and "s3cret" not in err
