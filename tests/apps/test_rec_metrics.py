"""The recommender's evaluation against values computed by hand: full ranking with the history excluded, coverage,
diversity, novelty, the history-length breakdown, and the MMR slate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from apps.recommender.data import Cases
from apps.recommender.evaluate import evaluate, mask_seen, mmr, paired_bootstrap, slate_metrics, top_k, unit_rows

# Catalogue of 4 items (column 0 is padding). Three users, each with a history, a target and fixed scores.
SCORES = np.array([[0.0, 0.9, 0.5, 0.7, 0.1],   # A: item 1 seen -> ranking 3, 2, 4 -> target 3 at rank 1
                   [0.0, 0.2, 0.9, 0.8, 0.6],   # B: items 2, 3 seen -> ranking 4, 1 -> target 1 at rank 2
                   [0.0, 0.3, 0.1, 0.3, 0.9]])  # C: item 4 seen -> ranking 1, 3 (tie: lower index), 2 -> target 2: 3
CASES = Cases(["A", "B", "C"], [np.array([1]), np.array([2, 3]), np.array([4])], np.array([3, 1, 2]))
POP = np.array([0, 2, 1, 0, 3])  # training users per item; 3 users
GENRES = np.array([[0, 0], [1, 0], [1, 0], [0, 1], [1, 1]], dtype=float)


def scorer(hists):
    index = {tuple(h.tolist()): i for i, h in enumerate(CASES.inputs)}
    return SCORES[[index[tuple(h.tolist())] for h in hists]]


def si(p: int) -> float:  # self-information with add-one smoothing, 3 users
    return -math.log2((p + 1) / 4)


def test_full_ranking_metrics_with_history_excluded():
    r = evaluate(scorer, CASES, n_items=4, popularity=POP, n_users=3, genre_vectors=GENRES, k=2, batch_size=2)
    assert r["hr@2"] == pytest.approx(2 / 3)
    assert r["ndcg@2"] == pytest.approx((1 + 1 / math.log2(3) + 0) / 3)
    assert r["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    assert r["n_users"] == 3
    # slates: A [3, 2], B [4, 1], C [1, 3]: every item appears
    assert r["coverage"] == 1.0
    assert r["novelty"] == pytest.approx(((si(0) + si(1)) / 2 + (si(3) + si(2)) / 2 + (si(2) + si(0)) / 2) / 3)
    # genre cosine distance: A (3, 2) orthogonal = 1; B (4, 1): 1 - 1/sqrt(2); C (1, 3): 1
    assert r["diversity"] == pytest.approx((1 + (1 - 1 / math.sqrt(2)) + 1) / 3)
    assert r["by_history_length"] == {"1-20": {"n": 3, "hr@2": pytest.approx(2 / 3),
                                               "ndcg@2": pytest.approx(r["ndcg@2"]), "mrr": pytest.approx(r["mrr"])}}


def test_history_items_are_never_ranked_even_with_the_best_score():
    s = mask_seen(SCORES.copy(), CASES.inputs)
    idx, vals = top_k(s, 4)
    for row, v, h in zip(idx, vals, CASES.inputs):
        assert not set(row[np.isfinite(v)].tolist()) & set(h.tolist())
        assert 0 not in row[np.isfinite(v)]


def test_top_k_breaks_ties_by_lower_index():
    idx, vals = top_k(np.array([[1.0, 3.0, 3.0, 2.0, 3.0]]), 3)
    assert idx.tolist() == [[1, 2, 4]] and vals.tolist() == [[3.0, 3.0, 3.0]]


def test_mmr_trades_relevance_for_variety():
    scores = np.array([-np.inf, 1.0, 0.9, 0.5, 0.0])
    unit = unit_rows(np.array([[0, 0], [1, 0], [1, 0], [0, 1], [0, 1]], dtype=float))
    assert mmr(scores, unit, 3, lam=1.0).tolist() == [1, 2, 3]
    # lam 0.5: after item 1, item 2 is worth 0.5*0.9 - 0.5*1 = -0.05, item 3 0.5*0.5 - 0 = 0.25, item 4 0 -> 3;
    # then item 2 -0.05 beats item 4 0.5*0 - 0.5*1 = -0.5
    assert mmr(scores, unit, 3, lam=0.5).tolist() == [1, 3, 2]


def test_slate_metrics_use_the_targets_position_in_the_slate():
    slates = np.array([[3, 2], [1, 4], [1, 3]])
    m = slate_metrics(slates, np.array([3, 4, 2]), 4, POP, 3, GENRES, k=2)
    assert m["hr@2"] == pytest.approx(2 / 3)
    assert m["ndcg@2"] == pytest.approx((1 + 1 / math.log2(3)) / 3)


def test_mmr_at_lambda_one_is_the_plain_slate_and_lower_lambdas_are_reported():
    r = evaluate(scorer, CASES, n_items=4, popularity=POP, n_users=3, genre_vectors=GENRES, k=2,
                 mmr_vectors=GENRES, mmr_lambdas=(1.0, 0.3))
    plain = r["mmr"][0]
    assert plain["lambda"] == 1.0 and plain["hr@2"] == pytest.approx(r["hr@2"])
    assert plain["ndcg@2"] == pytest.approx(r["ndcg@2"]) and plain["diversity"] == pytest.approx(r["diversity"])
    assert r["mmr"][1]["lambda"] == 0.3


def test_evaluate_refuses_zero_cases():
    with pytest.raises(ValueError, match="at least 3"):
        evaluate(scorer, Cases([], [], np.array([], dtype=np.int64)), 4, POP, 3)


def test_paired_bootstrap_compares_the_same_users():
    r = paired_bootstrap([1, 20, 1, 3], [2, 20, 1, 3], k=10, n=500)
    ga, gb = (1 + 0 + 1 + 0.5) / 4, (1 / math.log2(3) + 0 + 1 + 0.5) / 4
    assert r["ndcg_a"] == pytest.approx(ga) and r["ndcg_b"] == pytest.approx(gb)
    assert r["relative"] == pytest.approx(ga / gb - 1)
    lo, hi = r["relative_ci95"]
    assert 0 <= lo <= r["relative"] <= hi  # A is never worse than B on any user
    assert 0 <= r["p_a_not_better"] < 0.5
