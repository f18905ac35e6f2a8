"""Fairness of the model: how often a company name, a person's name or a pronoun alone changes a test sentence's
label, as ``trident fin fairness`` last measured it (the report beside the artifact)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from apps.common.ui import escape_markdown
from apps.finance_sentiment.ui.render import when
from apps.finance_sentiment.ui.resources import call, require_service

KIND_NAMES = {"company_real": "company (real names)", "company_invented": "company (invented names)",
              "person": "person", "pronoun": "pronoun (he / she)"}

service = require_service()
st.subheader("Fairness of the model")
st.caption("Each test sentence's company names, person names and gendered pronouns are swapped for others; a flip is "
           "a swap that changes the sentence's label, the shift how far its score p(positive) - p(negative) moves.")
if not service.fairness_path.is_file():
    st.info(f"No fairness report for this model yet: run `trident fin fairness` (it writes {service.fairness_path}).")
    st.stop()
report = call(service.fairness)
if report is None:
    st.stop()

overall = report.overall
m = st.columns(4)
m[0].metric("Flipped labels", "-" if overall.flip_rate is None else f"{overall.flip_rate:.2%}",
            help=f"Of {overall.pairs} swapped sentences; the target is at most {report.target_flip_rate:.0%}.")
m[1].metric("Mean |score shift|", "-" if overall.mean_abs_shift is None else f"{overall.mean_abs_shift:.3f}")
m[2].metric("Sentences with a name", overall.n, help=f"Of {report.data.get('sentences', '?')} test sentences.")
m[3].metric("Test accuracy", f"{report.test['accuracy']:.3f}" if "accuracy" in report.test else "-",
            help="Accuracy of the original test sentences (macro-F1 "
                 + (f"{report.test['macro_f1']:.3f})." if "macro_f1" in report.test else "not measured)."))
if report.meets_target:
    st.success(f"Meets the target: at most {report.target_flip_rate:.0%} of the labels flip.")
else:
    st.warning(f"Misses the target of at most {report.target_flip_rate:.0%} flipped labels.")
st.caption(f"Measured {when(pd.Timestamp(report.created_at))} on {report.data.get('sentences', '?')} test sentences of "
           f"{escape_markdown(report.data.get('path', '?'))} · {report.variants} swaps per sentence and name kind · "
           f"seed {report.seed}"
           + (" · the model reads names as placeholders (entity-blind)" if report.entity_blind else ""))
st.dataframe(pd.DataFrame([
    {"swap": KIND_NAMES.get(kind, kind), "sentences": f.n, "pairs": f.pairs, "flips": f.flips,
     "flip rate": f.flip_rate, "mean |shift|": f.mean_abs_shift, "max |shift|": f.max_abs_shift}
    for kind, f in report.kinds.items()]), hide_index=True, key="fairness_kinds", column_config={
    "flip rate": st.column_config.NumberColumn("flip rate", format="percent"),
    "mean |shift|": st.column_config.NumberColumn("mean |shift|", format="%.3f"),
    "max |shift|": st.column_config.NumberColumn("max |shift|", format="%.3f")})
st.markdown("**Worst flips**")
if not report.worst_flips:
    st.info("No swap changed a label.")
else:
    st.dataframe(pd.DataFrame([
        {"id": f.id, "swap": f.swap, "label": f"{f.before} → {f.after}", "shift": f.shift, "sentence": f.text,
         "swapped": f.counterfactual} for f in report.worst_flips]), hide_index=True, key="fairness_flips",
        column_config={"shift": st.column_config.NumberColumn("shift", format="%.3f"),
                       "sentence": st.column_config.TextColumn("sentence", width="large"),
                       "swapped": st.column_config.TextColumn("swapped", width="large")})
