"""Score a text: any headline or paragraph scored by the monitor's own model, with its sentences and the words that
moved them (nothing is stored)."""

from __future__ import annotations

import streamlit as st

from apps.finance_sentiment.ui.render import article_detail
from apps.finance_sentiment.ui.resources import call, require_service

RESULT = "fin_score_result"  # the last result, kept so that a rerun (a sidebar change) does not lose it

service = require_service()
st.subheader("Score a text")
st.caption("The text is split into sentences and scored as an article would be; the headline, when given, counts "
           "double. Nothing is stored.")
title = st.text_input("Headline (optional)", key="fin_score_title")
text = st.text_area("Text", key="fin_score_text", height=150,
                    placeholder="e.g. Contoso Freight cut its outlook after fuel costs rose sharply.")
if st.button("Score", key="fin_score", type="primary", icon=":material/analytics:"):
    st.session_state.pop(RESULT, None)
    with st.spinner("Scoring (the model loads on first use)..."):
        result = call(service.score_text, text, title=title)
    if result is not None:
        st.session_state[RESULT] = {
            "title": title.strip() or "Your text", "label": result.label, "score": result.score,
            "probs": result.probs, "explanation": result.explanation, "truncated": result.truncated,
            "sentences": [dict(s.model_dump(), idx=i) for i, s in enumerate(result.sentences)]}

scored = st.session_state.get(RESULT)
if scored:
    if scored["truncated"]:
        st.warning("The text is long: only its first part was scored (see FIN_SCORING__MAX_CHARS and "
                   "FIN_SCORING__MAX_SENTENCES).")
    article_detail(scored, key="scored")
