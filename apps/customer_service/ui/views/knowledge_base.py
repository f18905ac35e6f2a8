"""Knowledge base: search it as the bot does, browse every entry, and (an admin) rebuild the index from the KB
file, or edit an entry agents saved, with its history.

An edit is saved by its button's callback with the version the page showed when it drew the button: if someone
changed the entry since, the save is refused with one line and the text typed stays in the fields (Reload puts the
stored text back)."""

from __future__ import annotations

import streamlit as st

from apps.common.auth import is_admin
from apps.customer_service.ui.resources import agent_name, call, require_service

EDIT_FOR = "kb_edit_for"  # the entry whose text the edit fields hold
SAVED = "kb_saved"  # the sentence that reports the last save, shown once


def _when(ts) -> str:
    return ts.astimezone().strftime("%Y-%m-%d %H:%M:%S") if ts else ""


def _save(entry_id: str, version: int) -> None:
    saved = call(service.edit_kb_entry, entry_id, st.session_state.get("kb_edit_question", ""),
                 st.session_state.get("kb_edit_answer", ""), agent_name(), version)
    if saved is not None:
        st.session_state[SAVED] = f"KB entry {entry_id} saved as version {saved.version}."
        st.session_state.pop(EDIT_FOR, None)  # the fields show the text as stored (cleaned, redacted)


def _reload() -> None:
    st.session_state.pop(EDIT_FOR, None)


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

if is_admin():
    st.subheader("Edit a saved entry")
    st.caption("The entries agents saved from their edited answers. A save names the version you loaded: if someone "
               "changed the entry since, it is refused (reload, then edit again). Every change is kept below. "
               "Entries of the KB file change in the file (then Rebuild index).")
    stored = call(service.stored_kb_entries) or []
    if not stored:
        st.info("No saved entries yet: an agent's edited answer becomes one.")
        st.stop()
    by_id = {r.entry.id: r for r in stored}
    if st.session_state.get("kb_edit_id") not in by_id:
        st.session_state.pop("kb_edit_id", None)
    chosen = st.selectbox("Entry", list(by_id), key="kb_edit_id",
                          format_func=lambda i: f"{i} · version {by_id[i].version}")
    record = by_id[chosen]
    if st.session_state.get(EDIT_FOR) != chosen:
        st.session_state[EDIT_FOR] = chosen
        st.session_state["kb_edit_question"] = record.entry.question
        st.session_state["kb_edit_answer"] = record.entry.answer
    if done := st.session_state.pop(SAVED, None):
        st.success(done)
    st.caption(f"Version {record.version}, saved {_when(record.updated_at)}.")
    st.text_input("Question", key="kb_edit_question")
    st.text_area("Answer", key="kb_edit_answer")
    b = st.columns(2)
    b[0].button("Save", key="kb_save", type="primary", icon=":material/save:", on_click=_save,
                args=(chosen, record.version))
    b[1].button("Reload", key="kb_reload", icon=":material/refresh:", on_click=_reload,
                help="Put the stored text back in the fields.")
    history = call(service.kb_history, chosen) or []
    st.dataframe([{"version": h.version, "when": _when(h.at), "by": h.agent, "action": h.action,
                   "question": h.question, "answer": h.answer, "replaced question": h.previous_question or "",
                   "replaced answer": h.previous_answer or ""} for h in history], hide_index=True, key="kb_history")
