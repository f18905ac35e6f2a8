"""Evaluation: how well the intents adapter classifies the evaluation CSV (accuracy, macro-F1, confusion)."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from apps.customer_service.ui.resources import call, require_service

service = require_service()

st.subheader("Intent evaluation")
with st.spinner("Classifying the evaluation file..."):
    report = call(service.evaluation)
if report is None:
    st.stop()

path = service.settings.intents_path
st.caption(f"Intents of `{path.name}` ({report['n']} messages). By default this is the file the intents adapter "
           "was trained on, so read it as a fit check; point `CS_INTENTS_PATH` at held-out data for a real score.")
m = st.columns(3)
m[0].metric("Accuracy", f"{report['accuracy']:.1%}")
m[1].metric("Macro-F1", f"{report['macro_f1']:.3f}")
m[2].metric("Messages", report["n"])

labels = report["labels"]
cells = pd.DataFrame([{"true": t, "predicted": p, "count": report["confusion"][i][j]}
                      for i, t in enumerate(labels) for j, p in enumerate(labels)])
base = alt.Chart(cells).encode(x=alt.X("predicted:N", sort=labels, title="Predicted intent"),
                               y=alt.Y("true:N", sort=labels, title="True intent"))
heat = base.mark_rect(stroke="white").encode(
    color=alt.condition(alt.datum.count > 0, alt.Color("count:Q", scale=alt.Scale(scheme="blues"), title="Messages"),
                        alt.value("#f4f4f6")),
    tooltip=["true", "predicted", "count"])
text = base.mark_text(baseline="middle").encode(
    text=alt.condition(alt.datum.count > 0, "count:Q", alt.value("")),
    color=alt.condition(alt.datum.count > int(cells["count"].max()) / 2, alt.value("white"), alt.value("black")))
st.altair_chart((heat + text).properties(title="Confusion matrix"), width="stretch", height=80 + 40 * len(labels),
                key="confusion")
