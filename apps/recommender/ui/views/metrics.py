"""Metrics: the model against its baselines on the test cases, by history length, and the MMR trade-off."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from apps.recommender.ui.resources import call, require_service

service = require_service()
st.subheader("Evaluation")
report = call(service.report)
if report is None:
    st.info("This artifact has no evaluation report yet: run `trident rec eval` or retrain with `trident rec train`.")
    st.stop()

st.caption(f"Protocol: {report.get('protocol', '')}. {report.get('n_users', 0)} test users.")
runs = {"generative model": report, **{n: b for n, b in report.get("baselines", {}).items()}}
keys = ["hr@10", "ndcg@10", "mrr", "coverage", "diversity", "novelty"]
table = pd.DataFrame([{"model": name, **{key: m.get(key) for key in keys}} for name, m in runs.items()])
st.dataframe(table, hide_index=True, width="stretch", key="metrics",
             column_config={key: st.column_config.NumberColumn(format="%.4f") for key in keys})

long = table.melt(id_vars="model", value_vars=["hr@10", "ndcg@10", "mrr"], var_name="metric", value_name="value")
bars = alt.Chart(long).mark_bar().encode(x=alt.X("model:N", title=None, axis=alt.Axis(labelAngle=0)),
                                         y=alt.Y("value:Q", title=None), color=alt.Color("model:N", legend=None),
                                         column=alt.Column("metric:N", title=None), tooltip=["model", "metric",
                                                                                             "value"])
st.altair_chart(bars.properties(width=220, height=260), key="accuracy_chart")

rows = [{"model": name, "history length": b, "ndcg@10": v["ndcg@10"], "users": v["n"]}
        for name, m in runs.items() for b, v in m.get("by_history_length", {}).items()]
if rows:
    st.markdown("**NDCG@10 by the length of the history the model read**")
    order = list(dict.fromkeys(r["history length"] for r in rows))
    chart = alt.Chart(pd.DataFrame(rows)).mark_bar().encode(
        x=alt.X("history length:N", sort=order), xOffset="model:N", y="ndcg@10:Q", color="model:N",
        tooltip=["model", "history length", "ndcg@10", "users"])
    st.altair_chart(chart.properties(height=260), width="stretch", key="bucket_chart")

if report.get("mmr"):
    st.markdown("**Relevance vs variety**: MMR re-ranking of the model's slates (λ = 1: no re-ranking)")
    mmr = pd.DataFrame(report["mmr"])
    line = alt.Chart(mmr).mark_line(point=True).encode(
        x=alt.X("diversity:Q", title="intra-list diversity (genres)", scale=alt.Scale(zero=False)),
        y=alt.Y("ndcg@10:Q", scale=alt.Scale(zero=False)), tooltip=["lambda", "ndcg@10", "hr@10", "diversity",
                                                                     "coverage", "novelty"])
    labels = line.mark_text(dy=-10).encode(text="lambda:Q")
    st.altair_chart((line + labels).properties(height=260), width="stretch", key="mmr_chart")
    st.dataframe(mmr, hide_index=True, width="stretch", key="mmr_table")

info = service.training()
st.markdown("**Training** (early stopping on validation NDCG@10)")
st.dataframe(pd.DataFrame([{"model": n, **{k: h.get(k) for k in ("best_val_ndcg@10", "best_epoch", "epochs",
                                                                  "seconds_per_epoch", "n_params")}}
                           for n, h in info["training"].items()]), hide_index=True, width="stretch", key="training")
