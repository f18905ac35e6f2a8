"""Item explorer: find an item, see its nearest neighbours in the model's item space."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from apps.common.ui import escape_markdown
from apps.recommender.ui.resources import call, require_service

service = require_service()
st.subheader("Item explorer")

query = st.text_input("Search titles", key="item_query", placeholder="a word of the title, or an item id")
found = call(service.search_items, query, limit=200)
if not found:
    if found is not None:
        st.info("No item matches that search.")
    st.stop()
labels = {f"{it.title} [{it.item_id}]": it for it in found}
choice = st.selectbox("Item", list(labels), key="item")
item = labels[choice]
st.markdown(f"**{escape_markdown(item.title)}** · {escape_markdown(', '.join(item.genres)) or 'no genres'} · "
            f"id {escape_markdown(item.item_id)}")
k = st.slider("Neighbours", 5, 30, 10, key="n_similar")
similar = call(service.similar_items, item.item_id, k=k)
if similar:
    st.dataframe(pd.DataFrame([{"title": s.item.title, "genres": ", ".join(s.item.genres),
                                "similarity": s.similarity, "users": s.users} for s in similar]),
                 hide_index=True, width="stretch", key="similar",
                 column_config={"similarity": st.column_config.NumberColumn(format="%.3f")})
