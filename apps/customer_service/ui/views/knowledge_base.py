"""Knowledge base: search it as the bot does, browse every entry, and (an admin) rebuild the index from the KB
file."""

from __future__ import annotations

import streamlit as st

from apps.common.auth import is_admin
from apps.customer_service.ui.resources import call, require_service

service = require_service()

head, action = st.columns([4, 1], vertical_alignment="bottom")
head.subheader("Knowledge base")
if action.button("Rebuild index", key="rebuild", icon=":material/refresh:", disabled=not is_admin(),
                 help="Re-read the KB file and re-index it; entries agents added are kept (admins only)."):
    with st.spinner("Rebuilding the index..."):
        n = call(service.rebuild_index)
    if n is not None:
        st.success(f"Index rebuilt: {n} entries.")

query = st.text_input("Search", key="kb_query", placeholder="e.g. my card was stolen")
if query.strip():
    hits = call(service.search_kb, query)
    if hits == []:
        st.info("No entry matches this search.")
    elif hits:
        st.dataframe([{"score": round(h.score, 3), "id": h.entry.id, "question": h.entry.question,
                       "answer": h.entry.answer} for h in hits], hide_index=True, key="kb_hits")

entries = call(service.kb_entries) or []
st.metric("Entries", len(entries))
st.dataframe([{"id": e.id, "question": e.question, "answer": e.answer, "category": e.category, "source": e.source}
              for e in entries], hide_index=True, key="kb_entries")
