"""``trident suite prepare`` and ``trident suite up``: the commands over the plan, the steps and the supervisor."""

from __future__ import annotations

import time
from dataclasses import asdict

from rich.console import Console
from rich.table import Table

from apps.common.output import emit
from apps.common.settings import CoreSettings
from apps.suite.plan import APPS, Plan, SuiteSettings
from apps.suite.supervisor import up


def _plan(args) -> Plan:
    core = {k: v for k, v in (("data_dir", args.data_dir), ("artifacts_dir", args.artifacts_dir)) if v}
    names = ("cs_port", "fin_port", "rec_port", "feeds_port", "address", "worker_interval", "health_timeout")
    suite = {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}
    if args.no_train:
        suite["train"] = False
    return Plan.build(CoreSettings(**core), SuiteSettings(**suite))


def suite_prepare(args) -> None:
    from apps.suite.steps import prepare  # loads the three apps and torch: only for this command (`up` runs it)

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
