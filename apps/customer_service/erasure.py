"""Forgetting a customer on request, and the retention period of conversations: what ``trident privacy forget
--customer`` and ``trident privacy retention`` run, and the console's Admin page through ``CSService``.

Either removes conversations with their turns and feedback, the KB entries made from them and their mentions in
other conversations (``Store.erase``), the log lines that name them, and records what it removed in the audit trail
(``apps.common.erasure``). A running console sees the change at its next call (``CSService.refresh``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from apps.common.db import utcnow
from apps.common.erasure import ErasureReport, audit, check_id, checkpoint, scrub_logs
from apps.customer_service.settings import CSSettings
from apps.customer_service.store import Store, conversations
from core.privacy import redact


def _finish(settings: CSSettings, store: Store, report: ErasureReport, actor: str,
            customer: str = "") -> ErasureReport:
    """Remove the log lines naming the customer or what was removed, empty SQLite's write-ahead log and record the
    report."""
    ids = [customer, *report.items.get("conversations", []), *report.items.get("kb_entries", [])]
    scrub_logs([settings.core.var_dir], ids, report)
    if not report.dry_run:
        checkpoint(store.engine)
    return audit(store.engine, report, actor, settings.core.var_dir, "customer" if customer else "", customer)


def forget_customer(settings: CSSettings, store: Store, customer: str, actor: str = "",
                    dry_run: bool = False) -> ErasureReport:
    """Remove everything stored about ``customer`` (the id their conversations were opened with), or on
    ``dry_run`` say what would go and change nothing.

    Raises:
        ErasureError: ``customer`` is empty.
    """
    customer = check_id(customer, "customer")
    report = ErasureReport("forget-customer", dry_run)
    if store.has_table("conversations"):
        store.erase(conversations.c.customer == customer, report)
    if redact(customer) != customer:
        report.notes.append(f"conversations are opened with the customer id redacted ({redact(customer)!r}): "
                            "none can be found by this id")
    return _finish(settings, store, report, actor, customer)


def retention_cutoff(settings: CSSettings, now: datetime | None = None) -> datetime | None:
    """The time before which a conversation's last update makes it expire (None: retention is off)."""
    if settings.retention_days == 0:
        return None
    return (now or utcnow()) - timedelta(days=settings.retention_days)


def apply_retention(settings: CSSettings, store: Store, actor: str = "", dry_run: bool = False,
                    now: datetime | None = None) -> ErasureReport:
    """Remove the conversations not updated for ``settings.retention_days`` days (none when it is 0), as
    :func:`forget_customer` removes a customer's, or on ``dry_run`` say what would go."""
    report = ErasureReport("retention", dry_run)
    cutoff = retention_cutoff(settings, now)
    if cutoff is None:
        report.notes.append("retention is off (CS_RETENTION_DAYS=0): conversations are kept")
        return report
    if store.has_table("conversations"):
        store.erase(conversations.c.updated_at < cutoff, report)
    report.notes.append(f"conversations last updated before {cutoff.isoformat(timespec='seconds')} "
                        f"({settings.retention_days} days)")
    return _finish(settings, store, report, actor)
