"""Pick a user: their history by title, and the recommendations with score and reason."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from apps.common.ui import escape_markdown
from apps.recommender.ui.resources import call, require_service

service = require_service()
st.subheader("Recommendations")

users = service.users()
c = st.columns([2, 2, 1, 1])
picked = c[0].selectbox("User", users, index=0, key="user", help="A user of the training data.")
typed = c[1].text_input("…or any user id", key="user_typed", placeholder="an id the model has never seen",
                        help="Overrides the list; an unknown user gets the most popular items, labelled as such.")
k = c[2].slider("Items", 5, 30, 10, key="k")
lam = c[3].slider("Relevance vs variety (MMR λ)", 0.0, 1.0, 1.0, 0.1, key="mmr_lambda",
                  help="1: the best-scored items. Lower: each next item must differ more from those already chosen.")
user = typed.strip() or picked
if not user:
    st.stop()

recs = call(service.recommend, str(user), k=k, mmr_lambda=lam)
if recs is None:
    st.stop()
label = "decoded by the generative model" if recs.source == "model" else "POPULARITY (unknown user)"
st.markdown(f"**Top picks** for {escape_markdown(recs.user_id)}: {label}")
for col, r in zip(st.columns(3), recs.items[:3]):
    with col.container(border=True):  # st.text: titles are shown as they are, never read as markdown
        st.text(f"#{r.rank}  {r.item.title}")
        st.text(f"score {r.score:.3f} · {', '.join(r.item.genres) or 'no genres'}")
        st.text(r.reason)
left, right = st.columns([2, 3])
with left:
    history = service.history(recs.user_id)
    st.markdown(f"**History** of {escape_markdown(recs.user_id)}: {len(history)} items, most recent first")
    if history:
        st.dataframe(pd.DataFrame([{"when": h.timestamp.strftime("%Y-%m-%d %H:%M"), "title": h.item.title,
                                    "genres": ", ".join(h.item.genres)} for h in reversed(history)]),
                     hide_index=True, width="stretch", height=min(560, 38 + 35 * len(history)), key="history")
    else:
        st.info("No history for this user.")
with right:
    st.markdown(f"**Recommendations**: {label}")
    st.caption(recs.note)
    st.dataframe(pd.DataFrame([{"rank": r.rank, "title": r.item.title, "genres": ", ".join(r.item.genres),
                                "score": r.score, "why": r.reason} for r in recs.items]),
                 hide_index=True, width="stretch", height=38 + 35 * len(recs.items), key="recommendations",
                 column_config={"score": st.column_config.NumberColumn(format="%.3f")})
