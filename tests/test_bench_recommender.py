"""The recommender benchmark's summary over seeds: per-seed figures, means and the target on the mean."""

from __future__ import annotations

import importlib.util

import pytest

from apps.common.settings import REPO_ROOT


def bench_module():
    spec = importlib.util.spec_from_file_location("bench_recommender", REPO_ROOT / "bench" / "recommender.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run(model: float, sasrec: float) -> dict:
    return {"test": {"model": {"ndcg@10": model, "hr@10": 2 * model}, "sasrec": {"ndcg@10": sasrec, "hr@10": 0.2},
                     "popularity": {"ndcg@10": 0.04, "hr@10": 0.08}},
            "ndcg@10_vs_sasrec": round(model / sasrec - 1, 4)}


def test_seed_summary_averages_each_model_and_judges_the_target_on_the_mean():
    s = bench_module().seed_summary({13: run(0.090, 0.100), 7: run(0.120, 0.100)})
    assert set(s["per_seed"]) == {"13", "7"}
    assert s["per_seed"]["7"]["ndcg@10_vs_sasrec"] == pytest.approx(0.2)
    assert s["mean"]["model"] == {"ndcg@10": 0.105, "hr@10": 0.21} and s["mean"]["popularity"]["ndcg@10"] == 0.04
    assert s["mean_ndcg@10_vs_sasrec"] == pytest.approx(0.05) and s["target_met_on_the_mean"]  # one seed wins by 20%
    s = bench_module().seed_summary({13: run(0.090, 0.100), 7: run(0.112, 0.100)})
    assert s["mean_ndcg@10_vs_sasrec"] == pytest.approx(0.01) and not s["target_met_on_the_mean"]
