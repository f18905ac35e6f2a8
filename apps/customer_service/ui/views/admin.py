"""Admin: forget a customer on request (a preview of what would go, then a confirmation), and the audit trail of
forget requests and retention runs."""

from __future__ import annotations

import streamlit as st

from apps.common.ui import escape_markdown
from apps.customer_service.ui.resources import agent_name, call, require_service

PREVIEW = "admin_preview"  # (customer id, dry-run report) of the last preview
DONE = "admin_done"  # the sentence that reports the last forget, shown once after the rerun

service = require_service()

st.subheader("Forget a customer")
st.caption("Removes the customer's conversations with their messages and feedback, the knowledge-base entries made "
           "from their messages (this console stops serving them at once), and the log lines that name them. An "
           "audit record keeps who asked, when and how many rows went, never the customer id. Preview first: the "
           "removal cannot be undone.")
if done := st.session_state.pop(DONE, None):
    st.success(done)
customer = st.text_input("Customer id", key="forget_id", placeholder="the id the conversations were opened with")
customer = customer.strip()
if st.button("Preview", key="forget_preview", icon=":material/visibility:", disabled=not customer):
    if (report := call(service.forget_customer, customer, agent_name(), dry_run=True)) is not None:
        st.session_state[PREVIEW] = (customer, report)

shown = st.session_state.get(PREVIEW)
if shown is not None and shown[0] == customer:
    report, shown_id = shown[1], escape_markdown(customer)
    if not report.total:
        st.info(f"No data for customer {shown_id}.")
    else:
        st.dataframe([{"kind": kind, "rows": n, "what": ", ".join(report.items.get(kind, []))}
                      for kind, n in report.counts.items()], hide_index=True, key="forget_plan")
        sure = st.checkbox(f"Forget customer {shown_id}: I understand this cannot be undone", key="forget_sure")
        if st.button("Forget customer", key="forget_run", type="primary", icon=":material/delete_forever:",
                     disabled=not sure):
            if (gone := call(service.forget_customer, customer, agent_name())) is not None:
                rows = ", ".join(f"{kind} {n}" for kind, n in gone.counts.items() if n) or "nothing"
                st.session_state[DONE] = f"Customer {shown_id} forgotten: {rows} (audit record {gone.audit_id})."
                st.session_state.pop(PREVIEW, None)
                st.rerun()
    for note in report.notes:
        st.caption(note)

st.subheader("Audit trail")
days = service.settings.retention_days
st.caption(f"Conversations not updated for {days} days are deleted daily (CS_RETENTION_DAYS; `trident privacy "
           "retention`)." if days else "Retention is off (CS_RETENTION_DAYS=0): conversations are kept.")
records = call(service.audit_trail) or []
if not records:
    st.info("No forget request or retention run yet.")
else:
    st.dataframe([{"id": r.id, "when": r.at.astimezone().strftime("%Y-%m-%d %H:%M:%S"), "actor": r.actor,
                   "action": r.action, "rows": ", ".join(f"{kind} {n}" for kind, n in r.counts.items() if n)}
                  for r in records], hide_index=True, key="audit_trail")
