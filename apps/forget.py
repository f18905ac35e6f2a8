"""``trident privacy forget / retention / audit``: forgetting a person on request across the apps, the retention period
of conversations, and the audit trail of both.

``forget --customer ID`` removes what the support console stored about a customer (``apps.customer_service.erasure``);
``forget --user ID`` what the recommender holds about a user (``apps.recommender.erasure``); both may be given at
once, and every id is checked before anything is removed. ``--dry-run`` lists what would go, per kind, and changes
nothing. An id with no data prints ``no data for customer X`` and exits 0 (forgetting twice is not an error); an
empty id is an error (exit 2). Each request that removed something leaves one audit record, which names the person
only by a keyed hash (``apps.common.erasure``).
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from apps.common.commands import CLIError, flag, settings_flags, settings_from_args
from apps.common.erasure import AuditStore, ErasureReport, check_id, default_actor, subject_hash
from apps.common.output import emit
from apps.customer_service.erasure import apply_retention, forget_customer
from apps.customer_service.settings import CSSettings
from apps.customer_service.store import Store
from apps.recommender.settings import RecSettings

CORE = ("core.var_dir", "core.database_url")
KINDS = {"customer": "the support console's customer id", "user": "the recommender's user id"}


def _settings(args) -> tuple[CSSettings, RecSettings]:
    cs = settings_from_args(CSSettings, args)
    return cs, settings_from_args(RecSettings, args, core=cs.core)


def _store(cs: CSSettings, dry_run: bool) -> Store:
    store = Store(cs.core.effective_database_url)
    return store if dry_run else store.create()


def _print(kind: str, value: str, report: ErasureReport) -> None:
    console = Console(soft_wrap=True)
    if not report.total:
        console.print(f"no data for {kind} {value}" if value else "nothing to remove", highlight=False)
    else:
        title = f"{kind} {value}: " if value else ""
        title += "would remove (dry run: nothing changed)" if report.dry_run else "removed"
        table = Table("kind", "rows", "what", title=title, title_justify="left")
        for name, n in report.counts.items():
            table.add_row(name, str(n), "\n".join(report.items.get(name, [])))
        console.print(table)
        if report.audit_id is not None:
            console.print(f"audit record {report.audit_id}", highlight=False)
    for note in report.notes:
        console.print(f"note: {note}", highlight=False)


def privacy_forget(args) -> None:
    asked = {kind: getattr(args, kind) for kind in KINDS if getattr(args, kind) is not None}
    if not asked:
        raise CLIError("give --customer ID, --user ID or both")
    asked = {kind: check_id(value, kind) for kind, value in asked.items()}  # every id checked before any removal
    cs, rec = _settings(args)
    actor = args.actor or default_actor()
    results = {}
    for kind, value in asked.items():
        if kind == "customer":
            with _store(cs, args.dry_run) as store:
                report = forget_customer(cs, store, value, actor, args.dry_run)
        else:
            from apps.recommender.erasure import forget_user  # heavy: pandas, pyarrow

            report = forget_user(rec, value, actor, args.dry_run, outputs=[Path(p) for p in args.rec_out or ()])
        results[kind] = {"id": value, "found": bool(report.total), **report.as_dict()}
        if not args.json:  # at once: what went is said even if the next part fails
            _print(kind, value, report)
    if args.json:
        emit(results, True)


def privacy_retention(args) -> None:
    cs, _ = _settings(args)
    with _store(cs, args.dry_run) as store:
        report = apply_retention(cs, store, args.actor or default_actor(), args.dry_run)
    if args.json:
        emit({"retention": report.as_dict()}, True)
    else:
        _print("retention", "", report)


def privacy_audit(args) -> None:
    cs, _ = _settings(args)
    subject = None
    for kind in KINDS:
        if getattr(args, kind) is not None:
            # no key yet: nobody was forgotten, so no record can match
            subject = subject_hash(cs.core.var_dir, kind, check_id(getattr(args, kind), kind), create=False) or "-"
    with AuditStore(cs.core.effective_database_url) as trail:
        records = trail.records(args.limit, subject) if trail.has_table("privacy_audit") else []
    if args.json:
        emit([r.as_dict() for r in records], True)
        return
    table = Table("id", "at", "actor", "action", "subject", "rows")
    for r in records:
        table.add_row(str(r.id), r.at.isoformat(timespec="seconds"), r.actor, r.action, r.subject[:12],
                      ", ".join(f"{k} {n}" for k, n in r.counts.items() if n))
    Console().print(table if records else "no audit records")


def register(sub) -> None:
    """Add ``forget``, ``retention`` and ``audit`` to the subcommands ``sub`` of ``trident privacy``."""

    def add(name: str, help_: str, fn) -> object:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--json", action="store_true", help="print JSON")
        settings_flags(sp, CSSettings, CORE)
        sp.set_defaults(fn=fn)
        return sp

    sp = add("forget", "remove everything stored about a customer or a user; --dry-run lists it", privacy_forget)
    for kind, what in KINDS.items():
        sp.add_argument(f"--{kind}", metavar="ID", help=what)
    sp.add_argument("--dry-run", action="store_true", help="list what would be removed, per kind; change nothing")
    sp.add_argument("--actor", help="who asks, for the audit record (default: the operating-system user)")
    settings_flags(sp, CSSettings, ("core.artifacts_dir",))
    settings_flags(sp, RecSettings, (flag("artifact", "--rec-artifact"),))
    sp.add_argument("--rec-out", action="append", metavar="PARQUET",
                    help="a batch output outside the var folder (repeat); those under it are found")

    sp = add("retention", "delete the conversations older than CS_RETENTION_DAYS; --dry-run lists them",
             privacy_retention)
    settings_flags(sp, CSSettings, (flag("retention_days", "--days"),))
    sp.add_argument("--dry-run", action="store_true", help="list what would be removed; change nothing")
    sp.add_argument("--actor", help="who runs it, for the audit record (default: the operating-system user)")

    sp = add("audit", "the audit trail of forget requests and retention runs, newest first", privacy_audit)
    for kind, what in KINDS.items():
        sp.add_argument(f"--{kind}", metavar="ID", help=f"only the records of this id ({what})")
    sp.add_argument("--limit", type=int, default=100)
