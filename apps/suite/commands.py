"""``trident suite prepare`` and ``trident suite up``: the commands over the plan, the steps and the supervisor."""

from __future__ import annotations

import time
from dataclasses import asdict

from rich.console import Console
from rich.table import Table

from apps.common.commands import settings_flags, settings_from_args
from apps.common.db import make_engine
from apps.common.output import emit
from apps.common.settings import CoreSettings
from apps.suite.plan import APPS, Plan, SuiteSettings
from apps.suite.supervisor import up


def _plan(args) -> Plan:
    plan = Plan.build(settings_from_args(CoreSettings, args), settings_from_args(SuiteSettings, args))
    make_engine(plan.database_url).dispose()  # a database that cannot be used: one line now, not after the trainings
    return plan


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
    if rc := up(_plan(args)):
        raise SystemExit(rc)


def register(sub) -> None:
    """Add ``trident suite`` (``prepare``, ``up``) to the CLI; the flags are ``CoreSettings`` and ``SuiteSettings``
    fields."""
    suite = sub.add_parser("suite", help="the whole suite on one machine: prepare, then run the dashboards and worker")
    c = suite.add_subparsers(dest="command", required=True)

    def add(name: str, help_: str, fn, *fields: str):
        sp = c.add_parser(name, help=help_)
        settings_flags(sp, CoreSettings, ("data_dir", "artifacts_dir"))
        settings_flags(sp, SuiteSettings, ("feeds_port", "train", *fields))
        sp.set_defaults(fn=fn)
        return sp

    add("prepare", "train what is missing (quick preset), build the FAQ index, run one finance cycle and the "
                   "recommender batch job", suite_prepare).add_argument("--json", action="store_true",
                                                                       help="print JSON")
    add("up", "prepare, then start the three dashboards and the finance worker until Ctrl-C", suite_up,
        "cs_port", "fin_port", "rec_port", "address", "worker_interval", "health_timeout")
