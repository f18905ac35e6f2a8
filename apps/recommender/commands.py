"""``trident rec ...``: the recommender's commands of the one CLI.

Errors the user can fix (a missing or malformed data file, no artifact yet, a batch job that cannot resume) print one
line ``error: ...`` and exit with status 2 (``apps/cli.py``). The flags are ``RecSettings`` fields. The app's modules
are imported inside each command: ``trident --help`` must not pay for torch.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from apps.common.commands import CLIError, add_dashboard, command_adder, flag, given, settings_from_args
from apps.common.output import emit
from apps.common.settings import REPO_ROOT
from apps.recommender.settings import TRAIN_FIELDS, RecSettings

METRIC_KEYS = ("hr@10", "ndcg@10", "mrr", "coverage", "diversity", "novelty", "n_users")


def user_errors() -> tuple[type[BaseException], ...]:
    """The recommender's exceptions that mean "fix your input", imported only when an error happens."""
    from apps.common.db import DatabaseError  # heavy: sqlalchemy and torch, only when an error is raised
    from apps.recommender.batch import BatchError
    from apps.recommender.data import DataError
    from apps.recommender.model import RecArtifactError
    from apps.recommender.service import UnknownItem

    return DataError, RecArtifactError, BatchError, UnknownItem, DatabaseError


def _settings(args) -> RecSettings:
    # another interactions file than the sample's: the sample catalogue is not its items
    files = given(RecSettings, args)
    other = {"items": None} if "data" in files and "items" not in files else {}
    return settings_from_args(RecSettings, args, **other)


def _data(s):
    from apps.recommender.data import load_data  # heavy: pandas

    return load_data(s.data, s.items)


def _metrics(m: dict) -> dict:
    return {k: (round(m[k], 4) if isinstance(m.get(k), float) else m.get(k)) for k in METRIC_KEYS}


def rec_train(args) -> None:
    from apps.recommender.model import read_config  # heavy: torch, Lightning
    from apps.recommender.pipeline import train_all

    s = _settings(args)
    data = _data(s)
    out = Path(args.out) if args.out else s.artifact_dir
    train_all(s, data, out)
    cfg = read_config(out)
    report_path = out / "report.json"
    summary = {"artifact": str(out), "data": cfg["data"].get("path"), "users": data.n_users, "items": data.n_items,
               "training": {name: {k: h.get(k) for k in ("best_val_ndcg@10", "best_epoch", "epochs",
                                                         "seconds_per_epoch", "train_seconds")}
                            for name, h in cfg["training"].items()}}
    if report_path.is_file():
        r = json.loads(report_path.read_text())
        summary["test"] = {"model": _metrics(r), **{n: _metrics(b) for n, b in r["baselines"].items()}}
    emit(summary, args.json)


def rec_eval(args) -> None:
    from apps.recommender.model import load_artifact  # heavy: torch, Lightning
    from apps.recommender.pipeline import evaluate_artifact

    s = _settings(args)
    art = load_artifact(s.artifact_dir)
    data = _data(s) if "data" in given(RecSettings, args) else None
    r = evaluate_artifact(art, data, mmr_lambdas=() if not args.mmr else s.mmr_lambdas)
    out = {**_metrics(r), "baselines": {n: _metrics(b) for n, b in r["baselines"].items()}}
    if args.details:
        out.update(by_history_length=r["by_history_length"], mmr=r.get("mmr", []), protocol=r["protocol"])
    emit(out, args.json)


def rec_recommend(args) -> None:
    if not args.user.strip():
        raise CLIError("--user: empty; give the id of a user (an unknown one gets the most popular items)")
    from apps.recommender.service import RecService  # heavy: torch

    s = _settings(args)
    recs = RecService.build(s).recommend(args.user, k=s.top_k, mmr_lambda=args.mmr_lambda)
    if args.json:
        emit(recs.model_dump(mode="json"), True)
        return
    table = Table("rank", "item", "title", "score", "why", title=f"user {recs.user_id}: {recs.source} ({recs.note})")
    for r in recs.items:
        table.add_row(str(r.rank), r.item.item_id, r.item.title, f"{r.score:.3f}", r.reason)
    Console().print(table)


def rec_similar(args) -> None:
    from apps.recommender.service import RecService  # heavy: torch

    s = _settings(args)
    sims = RecService.build(s).similar_items(args.item, k=s.top_k)
    emit([{"item_id": x.item.item_id, "title": x.item.title, "similarity": x.similarity} for x in sims], args.json)


def rec_batch(args) -> None:
    from apps.recommender.batch import run_batch  # heavy: torch, Lightning, sqlalchemy
    from apps.recommender.model import load_artifact
    from apps.recommender.store import RecStore

    s = _settings(args)
    out = Path(args.out) if args.out else s.core.var_dir / "rec" / "recommendations.parquet"
    if out.is_dir():
        raise CLIError(f"--out: {out} is a folder; give the path of the Parquet file to write")
    art = load_artifact(s.artifact_dir)
    data = _data(s) if "data" in given(RecSettings, args) else None
    store = None if args.no_db else RecStore(s.core.effective_database_url).create()
    res = run_batch(art, out, s.batch, data=data, store=store, restart=args.restart, progress=not args.json)
    if not res.merged:  # another process of a distributed job reports
        return
    emit({"out": str(res.out), "users": res.users, "rows": res.rows, "chunks": res.chunks,
          "chunks_done_before": res.chunks_done_before, "chunks_run": res.chunks_run, "db_rows": res.db_rows,
          "seconds": res.seconds, "users_per_second": res.users_per_second}, args.json)


def register(sub) -> None:
    """Add ``trident rec`` and its commands to the CLI."""
    rec = sub.add_parser("rec", help="generative recommender: train, evaluate, recommend, batch, dashboard")
    c = rec.add_subparsers(dest="command", required=True)

    base = command_adder(c, RecSettings, ("core.data_dir", "core.artifacts_dir", "artifact"))
    data = ("data", "items")

    sp = base("train", "train the generative model and the SASRec baseline, count popularity, evaluate "
                       "(REC_TRAIN__...)", rec_train, *data, "preset",
              flag("train.max_epochs", "--epochs", "--max-epochs"),
              *(f"train.{f}" for f in TRAIN_FIELDS if f != "max_epochs"), flag("text_init", "--text"))
    sp.add_argument("--out", help="artifact folder (default: <artifacts>/rec)")
    sp = base("eval", "HR@10, NDCG@10, MRR, coverage on the test cases; the baselines beside", rec_eval, *data)
    sp.add_argument("--details", action="store_true", help="also by history length and the MMR trade-off")
    sp.add_argument("--mmr", action="store_true", help="measure the MMR accuracy / diversity trade-off")
    sp = base("recommend", "the next items for one user (unknown users: the most popular, labelled)", rec_recommend,
              flag("top_k", "--k"))
    sp.add_argument("--user", required=True)
    sp.add_argument("--mmr-lambda", type=float, default=1.0, help="below 1: more varied slates (MMR)")
    base("similar", "the items nearest to an item in the model's item space", rec_similar,
         flag("top_k", "--k")).add_argument("--item", required=True)
    sp = base("batch", "top-K for every user into Parquet and the database (resumable)", rec_batch, *data,
              *(f"batch.{f}" for f in ("k", "chunk_size", "accelerator", "devices", "strategy", "num_nodes")),
              "core.database_url")
    sp.add_argument("--out", help="output Parquet (default: <var>/rec/recommendations.parquet)")
    sp.add_argument("--no-db", action="store_true", help="write the Parquet file only")
    sp.add_argument("--restart", action="store_true", help="discard the parts of an earlier, different job")
    add_dashboard(base, RecSettings, "dashboard", "start the recommender dashboard (Streamlit)",
                  REPO_ROOT / "apps" / "recommender" / "ui" / "app.py", 8503)
