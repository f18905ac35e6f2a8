"""Conversations: the queue on the left; on the right the selected conversation, the bot's suggestion for the
latest customer message with its sources, and the agent's actions (claim, release, close, accept, reject, edit).

Each action runs as its button's callback, with the conversation's version the page showed when it drew the button:
the store refuses it when another agent answered, claimed or changed the conversation since, and the refusal shows
as one line above the page (then drawn as it is now).

The chat input at the bottom types as the customer (demos and tests); a message with no conversation selected
starts one.
"""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from apps.common.ui import escape_markdown
from apps.customer_service.schemas import Conversation, Reply, Turn
from apps.customer_service.ui.resources import CSService, agent_name, call, require_service

ACTION_COLOURS = {"answer": "green", "clarify": "orange", "handoff": "red"}
ACTION_HELP = {"answer": "The bot is confident enough to answer.",
               "clarify": "Two answers are close: the bot asks the customer which one they mean.",
               "handoff": "The bot is unsure: a person should answer."}
AVATARS = {"customer": ":material/person:", "assistant": ":material/smart_toy:", "agent": ":material/support_agent:"}
SELECTED = "cs_selected"  # the selected conversation id; kept outside the widget so it survives page switches
ANSWERED = ("accepted", "edited")


def _select(conversation_id: str) -> None:
    st.session_state[SELECTED] = conversation_id


def _when(ts: datetime | None, short: bool = False) -> str:
    return ts.astimezone().strftime("%d %b %H:%M" if short else "%Y-%m-%d %H:%M:%S") if ts else ""


def _latest_customer_turn(conv: Conversation) -> tuple[Turn | None, bool]:
    """The latest customer turn and whether it still waits for an answer (not answered, no agent turn after it)."""
    for i in range(len(conv.turns) - 1, -1, -1):
        if conv.turns[i].role == "customer":
            turn = conv.turns[i]
            return turn, turn.verdict not in ANSWERED and not any(t.role == "agent" for t in conv.turns[i + 1:])
    return None, False


def _act(fn, *args, **kwargs) -> None:
    """A button's callback: run the action before the page is drawn again (a refusal shows as one line)."""
    call(fn, *args, **kwargs)


def _send_edit(service: CSService, conversation_id: str, turn_id: int, version: int) -> None:
    _act(service.feedback, conversation_id, turn_id, agent_name(), "edited",
         final_text=st.session_state.get("edit_text") or "", expected_version=version)


def _suggestion_panel(service: CSService, conv: Conversation, turn: Turn, reply: Reply, pending: bool,
                      may_act: bool) -> None:
    """The suggestion for the latest customer message: action, confidence, intent, text, sources and actions."""
    agent = agent_name()
    top = st.columns([1, 1, 2], vertical_alignment="center")
    top[0].badge(reply.action, color=ACTION_COLOURS.get(reply.action, "gray"), help=ACTION_HELP.get(reply.action))
    top[1].metric("Confidence", f"{reply.confidence:.0%}")
    if reply.intent is not None:
        top[2].metric("Detected intent", reply.intent.label, help=f"Intent confidence {reply.intent.confidence:.0%}.")
    st.markdown(escape_markdown(reply.text))
    if reply.cited_ids:
        st.caption("Grounded in " + ", ".join(reply.cited_ids))
    if reply.hits:
        st.dataframe([{"rank": h.rank, "score": round(h.score, 3), "KB id": h.entry.id, "question": h.entry.question}
                      for h in reply.hits], hide_index=True, key="sources")
    rejected = turn.verdict == "rejected"
    by = escape_markdown(turn.verdict_by or "an agent")
    if not pending:
        st.caption(f"Answered by {by} ({turn.verdict})." if turn.verdict else "Answered.")
    elif rejected:
        st.caption(f"Rejected by {by}: write the answer below and send it.")
    b = st.columns(2)
    seen = {"expected_version": conv.version}  # what this page shows: a write is refused if it changed since
    b[0].button("Accept", key="accept", type="primary", icon=":material/check:",
                disabled=not (may_act and pending and not rejected), help="Send the suggestion as it is.",
                on_click=_act, args=(service.feedback, conv.id, turn.id, agent, "accepted"), kwargs=seen)
    b[1].button("Reject", key="reject", icon=":material/close:",
                disabled=not (may_act and pending and not rejected), help="Send nothing; answer yourself.",
                on_click=_act, args=(service.feedback, conv.id, turn.id, agent, "rejected"), kwargs=seen)
    marker = (conv.id, turn.id)
    if st.session_state.get("cs_edit_for") != marker or "edit_text" not in st.session_state:
        st.session_state["cs_edit_for"] = marker
        st.session_state["edit_text"] = reply.text
    st.text_area("Edit the answer", key="edit_text", disabled=not (may_act and pending),
                 help="The edited answer is sent and saved as a knowledge-base entry at once.")
    st.button("Send edit", key="send_edit", icon=":material/send:", disabled=not (may_act and pending),
              on_click=_send_edit, args=(service, conv.id, turn.id, conv.version))


service = require_service()
agent = agent_name()

# The customer's side first, so that the page below already shows the message and its suggestion.
message = st.chat_input("Customer message", key="customer_message")
if message:
    if st.session_state.get(SELECTED) is None:
        if (new := call(service.start_conversation, st.session_state.get("new_customer", ""))) is not None:
            _select(new.id)
    if st.session_state.get(SELECTED) is not None:
        call(service.customer_message, st.session_state[SELECTED], message)

queue, detail = st.columns([2, 3], gap="large")
with queue:
    st.subheader("Queue")
    st.text_input("Customer id", key="new_customer", placeholder="optional: the customer's id in your systems",
                  help="Kept with the conversation, so that the customer can be forgotten on request (Admin).")
    if st.button("New conversation", key="new_conversation", icon=":material/add:"):
        if (new := call(service.start_conversation, st.session_state.get("new_customer", ""))) is not None:
            _select(new.id)
    convs = call(service.conversations) or []
    if not convs:
        st.info("No conversations yet: start one, or type a customer message below.")
        st.stop()
    by_id = {c.id: c for c in convs}
    st.dataframe([{"conversation": c.id[:8], "state": c.state, "claimed by": c.claimed_by or "",
                   "last update": _when(c.updated_at, short=True), "customer": c.customer} for c in convs],
                 hide_index=True, key="queue")
    if st.session_state.get(SELECTED) not in by_id:
        _select(convs[0].id)
    st.session_state["conversation"] = st.session_state[SELECTED]
    st.selectbox("Conversation", list(by_id), key="conversation",
                 on_change=lambda: _select(st.session_state["conversation"]),
                 format_func=lambda i: f"{i[:8]} · {by_id[i].state} · {by_id[i].claimed_by or 'unclaimed'}")

with detail:
    conv = call(service.conversation, st.session_state[SELECTED])
    if conv is None:
        st.stop()
    holder = conv.claimed_by
    mine, theirs = holder == agent, holder not in (None, agent)
    st.subheader(f"Conversation {conv.id[:8]}")
    st.caption(f"{escape_markdown(conv.customer) or 'Anonymous customer'} · {conv.state} · "
               f"{'claimed by ' + escape_markdown(holder) if holder else 'unclaimed'} · updated "
               f"{_when(conv.updated_at)}")
    if theirs:
        st.info(f"{escape_markdown(holder)} is handling this conversation: you can read it, but not act on it.")
    c = st.columns(3)
    seen = {"expected_version": conv.version}
    c[0].button("Claim", key="claim", icon=":material/front_hand:", disabled=holder is not None,
                on_click=_act, args=(service.claim, conv.id, agent), kwargs=seen)
    c[1].button("Release", key="release", icon=":material/undo:", disabled=not mine,
                on_click=_act, args=(service.release, conv.id, agent), kwargs=seen)
    c[2].button("Close", key="close", icon=":material/done_all:", disabled=theirs or conv.state == "closed",
                on_click=_act, args=(service.close, conv.id, agent), kwargs=seen)

    latest, pending = _latest_customer_turn(conv)
    if not conv.turns:
        st.caption("No messages yet.")
    for turn in conv.turns:
        if turn.role == "customer":
            with st.chat_message("customer", avatar=AVATARS["customer"]):
                st.markdown(escape_markdown(turn.text))
                st.caption(_when(turn.created_at))
            if turn.reply is None:
                continue
            with st.chat_message("assistant", avatar=AVATARS["assistant"]):
                if turn is latest:
                    _suggestion_panel(service, conv, turn, turn.reply, pending, may_act=not theirs)
                else:
                    r = turn.reply
                    st.caption(f"Suggested ({r.action}, {r.confidence:.0%}): {escape_markdown(r.text)}")
        else:
            with st.chat_message(turn.role, avatar=AVATARS.get(turn.role, AVATARS["assistant"])):
                st.markdown(escape_markdown(turn.text))
                st.caption(f"{turn.role} · {_when(turn.created_at)}")
