"""Tests for core.metrics: every expected value is worked out by hand in the comments."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import metrics as M

# ---------------------------------------------------------------------------
# Worked 3-class example
#
#   y_true = [0, 0, 0, 0, 1, 1, 2, 2, 2]
#   y_pred = [0, 0, 1, 2, 1, 1, 2, 0, 1]
#
# Confusion matrix (rows = true, cols = predicted):
#            pred 0  pred 1  pred 2 | support
#   true 0      2       1       1   |   4
#   true 1      0       2       0   |   2
#   true 2      1       1       1   |   3
#   --------------------------------
#   predicted   3       4       2       n = 9, trace = 5 -> accuracy 5/9
#
# Per class:
#   class 0: P = 2/3, R = 2/4 = 1/2, F1 = 2*(2/3)(1/2) / (2/3 + 1/2) = (2/3) / (7/6) = 4/7
#   class 1: P = 2/4 = 1/2, R = 2/2 = 1, F1 = 2*(1/2)(1) / (3/2) = 2/3
#   class 2: P = 1/2, R = 1/3, F1 = 2*(1/6) / (5/6) = 2/5
# Macro:    P = (2/3 + 1/2 + 1/2)/3 = 5/9
#           R = (1/2 + 1 + 1/3)/3 = 11/18
#           F1 = (4/7 + 2/3 + 2/5)/3 = (60 + 70 + 42)/105/3 = 172/315
# Weighted (weights 4/9, 2/9, 3/9):
#           P = (4*2/3 + 2*1/2 + 3*1/2)/9 = (8/3 + 1 + 3/2)/9 = (31/6)/9 = 31/54
#           R = (4*1/2 + 2*1 + 3*1/3)/9 = 5/9   (weighted recall always equals accuracy)
#           F1 = (4*4/7 + 2*2/3 + 3*2/5)/9 = (240 + 140 + 126)/105/9 = 506/945
# Micro:    sum tp = 5, sum predicted = 9, sum support = 9 -> P = R = F1 = 5/9
# ---------------------------------------------------------------------------

Y_TRUE = [0, 0, 0, 0, 1, 1, 2, 2, 2]
Y_PRED = [0, 0, 1, 2, 1, 1, 2, 0, 1]


def test_accuracy_is_fraction_of_exact_matches():
    # 5 of 9 predictions are correct (see worked example)
    assert M.accuracy(Y_TRUE, Y_PRED) == pytest.approx(5 / 9)


def test_accuracy_accepts_string_labels_and_numpy_arrays():
    # "a"=="a", "b"!="c", "c"=="c" -> 2/3
    assert M.accuracy(np.array(["a", "b", "c"]), ["a", "c", "c"]) == pytest.approx(2 / 3)


def test_accuracy_rejects_empty_input():
    with pytest.raises(ValueError, match="empty"):
        M.accuracy([], [])


def test_accuracy_rejects_length_mismatch():
    with pytest.raises(ValueError, match="same length"):
        M.accuracy([0, 1], [0])


def test_confusion_matrix_matches_worked_example():
    cm = M.confusion_matrix(Y_TRUE, Y_PRED)
    np.testing.assert_array_equal(cm, [[2, 1, 1], [0, 2, 0], [1, 1, 1]])
    assert cm.dtype == np.int64


def test_confusion_matrix_follows_given_label_order():
    # reversing labels [2, 1, 0] reverses both rows and columns of the worked matrix
    cm = M.confusion_matrix(Y_TRUE, Y_PRED, labels=[2, 1, 0])
    np.testing.assert_array_equal(cm, [[1, 1, 1], [0, 2, 0], [1, 1, 2]])


def test_confusion_matrix_ignores_samples_outside_labels():
    # with labels [0, 1] only the pairs (t, p) both in {0, 1} count:
    # (0,0) x2, (0,1) x1, (1,1) x2
    cm = M.confusion_matrix(Y_TRUE, Y_PRED, labels=[0, 1])
    np.testing.assert_array_equal(cm, [[2, 1], [0, 2]])


def test_confusion_matrix_with_string_labels_sorted_by_default():
    # labels sorted: ["cat", "dog"]; (cat,cat), (dog,cat), (dog,dog)
    cm = M.confusion_matrix(["cat", "dog", "dog"], ["cat", "cat", "dog"])
    np.testing.assert_array_equal(cm, [[1, 0], [1, 1]])


def test_confusion_matrix_rejects_duplicate_labels():
    with pytest.raises(ValueError, match="duplicate"):
        M.confusion_matrix([0, 1], [0, 1], labels=[0, 0, 1])


def test_macro_precision_recall_f1_match_worked_example():
    out = M.precision_recall_f1(Y_TRUE, Y_PRED)
    assert out["precision"] == pytest.approx(5 / 9)
    assert out["recall"] == pytest.approx(11 / 18)
    assert out["f1"] == pytest.approx(172 / 315)


def test_weighted_precision_recall_f1_match_worked_example():
    out = M.precision_recall_f1(Y_TRUE, Y_PRED, average="weighted")
    assert out["precision"] == pytest.approx(31 / 54)
    assert out["recall"] == pytest.approx(5 / 9)
    assert out["f1"] == pytest.approx(506 / 945)


def test_micro_precision_recall_f1_equal_accuracy_when_all_labels_included():
    out = M.precision_recall_f1(Y_TRUE, Y_PRED, average="micro")
    assert out == pytest.approx({"precision": 5 / 9, "recall": 5 / 9, "f1": 5 / 9})


def test_micro_average_restricted_to_subset_of_labels():
    # labels [1, 2]: tp = 2 + 1 = 3, predicted = 4 + 2 = 6, support = 2 + 3 = 5
    # P = 3/6 = 1/2, R = 3/5, F1 = 2*(1/2)(3/5) / (1/2 + 3/5) = (3/5)/(11/10) = 6/11
    out = M.precision_recall_f1(Y_TRUE, Y_PRED, labels=[1, 2], average="micro")
    assert out == pytest.approx({"precision": 1 / 2, "recall": 3 / 5, "f1": 6 / 11})


def test_restricted_labels_still_count_predictions_from_unlisted_true_classes():
    # labels [1, 2]; class 1 is predicted 4 times (two of them for true 0 / true 2), class 2 twice
    #   class 1: P = 2/4, R = 2/2 = 1, F1 = 2/3     class 2: P = 1/2, R = 1/3, F1 = 2/5
    # macro P = (1/2 + 1/2)/2 = 1/2, R = (1 + 1/3)/2 = 2/3, F1 = (2/3 + 2/5)/2 = 8/15
    out = M.precision_recall_f1(Y_TRUE, Y_PRED, labels=[1, 2])
    assert out == pytest.approx({"precision": 1 / 2, "recall": 2 / 3, "f1": 8 / 15})


def test_macro_f1_convenience_equals_macro_average_f1():
    assert M.macro_f1(Y_TRUE, Y_PRED) == pytest.approx(172 / 315)


def test_class_never_predicted_gets_zero_precision_and_f1():
    # y_true = [0, 1, 2], y_pred = [0, 1, 1]; class 2 is never predicted.
    #   class 0: P = 1, R = 1, F1 = 1
    #   class 1: P = 1/2, R = 1, F1 = 2*(1/2)/(3/2) = 2/3
    #   class 2: P = 0 (0/0 -> 0), R = 0/1 = 0, F1 = 0
    # macro P = (1 + 1/2 + 0)/3 = 1/2, R = (1 + 1 + 0)/3 = 2/3, F1 = (1 + 2/3 + 0)/3 = 5/9
    out = M.precision_recall_f1([0, 1, 2], [0, 1, 1])
    assert out == pytest.approx({"precision": 1 / 2, "recall": 2 / 3, "f1": 5 / 9})


def test_label_absent_from_data_counts_as_zero_in_macro_average():
    # perfect predictions on {0, 1} but labels also lists 5, which never occurs:
    # per-class F1 = [1, 1, 0] -> macro F1 = 2/3; weighted ignores it (support 0) -> 1
    assert M.macro_f1([0, 1], [0, 1], labels=[0, 1, 5]) == pytest.approx(2 / 3)
    assert M.precision_recall_f1([0, 1], [0, 1], labels=[0, 1, 5], average="weighted")["f1"] == pytest.approx(1.0)


def test_weighted_average_with_no_support_in_labels_is_zero():
    # labels [7] never appears in y_true -> total support 0 -> all zero
    out = M.precision_recall_f1([0, 1], [0, 1], labels=[7], average="weighted")
    assert out == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_precision_recall_f1_rejects_unknown_average():
    with pytest.raises(ValueError, match="average"):
        M.precision_recall_f1([0], [0], average="samples")


def test_precision_recall_f1_rejects_empty_input():
    with pytest.raises(ValueError, match="empty"):
        M.precision_recall_f1([], [])


# ---------------------------------------------------------------------------
# Ranking, one query
#
#   ranked   = ["a", "b", "c", "d", "e"]
#   relevant = {"c", "e", "z"}          ("z" is never ranked)
#   hits at ranks 3 and 5
# ---------------------------------------------------------------------------

RANKED = ["a", "b", "c", "d", "e"]
RELEVANT = {"c", "e", "z"}


def test_hit_rate_at_k_is_one_if_any_relevant_in_top_k():
    assert M.hit_rate_at_k(RANKED, RELEVANT, 2) == 0.0
    assert M.hit_rate_at_k(RANKED, RELEVANT, 3) == 1.0
    assert M.hit_rate_at_k(RANKED, RELEVANT, 50) == 1.0
    assert M.hit_rate_at_k(RANKED, [], 5) == 0.0
    with pytest.raises(ValueError, match="k must be a positive integer"):
        M.hit_rate_at_k(RANKED, RELEVANT, 0)


def test_reciprocal_rank_of_first_relevant_item():
    # first hit "c" at rank 3 -> 1/3
    assert M.reciprocal_rank(RANKED, RELEVANT) == pytest.approx(1 / 3)
    # relevant given as a list works the same
    assert M.reciprocal_rank(RANKED, ["e"]) == pytest.approx(1 / 5)


def test_reciprocal_rank_is_zero_when_nothing_relevant_is_ranked():
    assert M.reciprocal_rank(RANKED, {"x", "y"}) == 0.0
    assert M.reciprocal_rank([], {"x"}) == 0.0


# ---------------------------------------------------------------------------
# Vectorised single-target helpers
# ---------------------------------------------------------------------------


def test_rank_of_target_counts_strictly_higher_scores():
    scores = np.array(
        [
            [0.1, 0.9, 0.5],  # target 2 (0.5): only 0.9 is higher -> rank 2
            [0.3, 0.3, 0.2],  # target 0 (0.3): tie with item 1 is not "strictly higher" -> rank 1
            [0.7, 0.8, 0.9],  # target 0 (0.7): 0.8 and 0.9 higher -> rank 3
        ]
    )
    ranks = M.rank_of_target(scores, np.array([2, 0, 0]))
    np.testing.assert_array_equal(ranks, [2, 1, 3])
    assert ranks.dtype == np.int64


def test_rank_of_target_rejects_out_of_range_target_and_bad_shapes():
    with pytest.raises(ValueError, match="targets must lie"):
        M.rank_of_target(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="shape"):
        M.rank_of_target(np.zeros((2, 3)), np.array([0]))
    with pytest.raises(ValueError, match="shape"):
        M.rank_of_target(np.zeros(3), np.array([0]))


def test_hr_ndcg_mrr_from_ranks_1_2_4_at_k2():
    # hr@2 = |{1, 2}| / 3 = 2/3
    # ndcg@2 = (1/log2(2) + 1/log2(3) + 0) / 3 = (1 + 0.63093) / 3 = 0.54364
    # mrr = (1 + 1/2 + 1/4) / 3 = 0.58333  (not truncated at k)
    out = M.hr_ndcg_mrr_from_ranks(np.array([1, 2, 4]), k=2)
    assert out == pytest.approx({"hr@2": 2 / 3, "ndcg@2": (1 + 1 / math.log2(3)) / 3, "mrr": 1.75 / 3})


def test_rank_helpers_agree_with_per_query_metrics():
    # three queries whose targets sit at ranks 1, 2 and 4 of 4 items
    scores = np.array([[4.0, 3, 2, 1], [4.0, 3, 2, 1], [4.0, 3, 2, 1]])
    ranks = M.rank_of_target(scores, np.array([0, 1, 3]))
    out = M.hr_ndcg_mrr_from_ranks(ranks, k=4)
    assert list(ranks) == [1, 2, 4]
    # mrr = (1 + 1/2 + 1/4) / 3; ndcg@4 = (1 + 1/log2(3) + 1/log2(5)) / 3
    assert out["mrr"] == pytest.approx(1.75 / 3)
    assert out["ndcg@4"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(5)) / 3)
    assert out["hr@4"] == pytest.approx(1.0)


def test_hr_ndcg_mrr_from_ranks_rejects_empty_and_zero_ranks():
    with pytest.raises(ValueError, match="empty"):
        M.hr_ndcg_mrr_from_ranks([], k=5)
    with pytest.raises(ValueError, match="1-based"):
        M.hr_ndcg_mrr_from_ranks([0, 1], k=5)


# ---------------------------------------------------------------------------
# Perplexity
# ---------------------------------------------------------------------------


def test_perplexity_is_exp_of_mean_nll():
    # mean NLL = 4*ln(8)/4 = ln(8) -> perplexity 8
    assert M.perplexity(4 * math.log(8), 4) == pytest.approx(8.0)
    # zero loss -> perplexity 1
    assert M.perplexity(0.0, 10) == pytest.approx(1.0)


def test_perplexity_rejects_zero_tokens():
    with pytest.raises(ValueError, match="n_tokens"):
        M.perplexity(1.0, 0)


def test_perplexity_overflow_returns_inf():
    assert M.perplexity(1e6, 1) == math.inf


# ---------------------------------------------------------------------------
# Catalogue metrics
# ---------------------------------------------------------------------------


def test_coverage_is_distinct_recommended_over_catalogue():
    # distinct {0, 1, 2} of 10 items -> 0.3
    assert M.coverage([[0, 1], [1, 2]], 10) == pytest.approx(0.3)
    assert M.coverage([np.array([3, 3]), []], 4) == pytest.approx(0.25)


def test_coverage_rejects_empty_catalogue():
    with pytest.raises(ValueError, match="n_items"):
        M.coverage([[0]], 0)


def test_intra_list_diversity_averages_pairwise_cosine_distance():
    # vectors: e0 = (1, 0), e1 = (0, 1), e2 = (1, 1)
    #   list [0, 1]: cos = 0 -> distance 1
    #   list [0, 2]: cos = 1/sqrt(2) -> distance 1 - 0.70711 = 0.29289
    #   list [5]   : fewer than 2 items -> skipped
    # mean = (1 + 0.29289) / 2 = 0.64645
    vecs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0, 0], [0, 0], [3.0, 4.0]])
    got = M.intra_list_diversity([[0, 1], [0, 2], [5]], vecs)
    assert got == pytest.approx((1 + (1 - 1 / math.sqrt(2))) / 2)


def test_intra_list_diversity_of_three_items_uses_all_pairs():
    # pairs (0,1) = 1, (0,2) = 1 - 1/sqrt(2), (1,2) = 1 - 1/sqrt(2) -> mean (3 - sqrt(2)) / 3
    vecs = {"x": [1.0, 0.0], "y": [0.0, 1.0], "z": [2.0, 2.0]}  # mapping input; scale does not matter
    assert M.intra_list_diversity([["x", "y", "z"]], vecs) == pytest.approx((3 - math.sqrt(2)) / 3)


def test_intra_list_diversity_rejects_lists_all_too_short():
    with pytest.raises(ValueError, match="two or more"):
        M.intra_list_diversity([[0], []], np.eye(2))


def test_novelty_is_mean_self_information():
    # n_users = 100; pop a = 50 -> -log2(0.5) = 1, b = 25 -> -log2(0.25) = 2, c = 100 -> 0
    # list [a, b] -> mean 1.5; list [c] -> 0; empty list skipped; mean over lists = 0.75
    pop = {"a": 50, "b": 25, "c": 100}
    assert M.novelty([["a", "b"], ["c"], []], pop, 100) == pytest.approx(0.75)


def test_novelty_accepts_popularity_array():
    # item 0 popularity 1 of 8 users -> -log2(1/8) = 3; item 1 popularity 4 -> 1; mean 2
    assert M.novelty([[0, 1]], np.array([1, 4]), 8) == pytest.approx(2.0)


def test_novelty_rejects_zero_popularity_and_missing_items():
    with pytest.raises(ValueError, match="popularity"):
        M.novelty([[0]], np.array([0]), 8)
    with pytest.raises(ValueError, match="no popularity"):
        M.novelty([["q"]], {"a": 1}, 8)


# ---------------------------------------------------------------------------
# Property tests
# ---------------------------------------------------------------------------

label_pairs = st.integers(min_value=1, max_value=40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(min_value=0, max_value=4), min_size=n, max_size=n),
        st.lists(st.integers(min_value=0, max_value=4), min_size=n, max_size=n),
    )
)


@settings(max_examples=60, deadline=None)
@given(label_pairs)
def test_property_accuracy_equals_confusion_trace_and_scores_are_bounded(pair):
    y_true, y_pred = pair
    cm = M.confusion_matrix(y_true, y_pred)
    # every sample lands in exactly one cell and the diagonal holds the correct ones
    assert cm.sum() == len(y_true)
    assert M.accuracy(y_true, y_pred) == pytest.approx(np.trace(cm) / len(y_true))
    # micro F1 over all labels equals accuracy for single-label multiclass data
    assert M.precision_recall_f1(y_true, y_pred, average="micro")["f1"] == pytest.approx(M.accuracy(y_true, y_pred))
    for average in ("macro", "weighted", "micro"):
        out = M.precision_recall_f1(y_true, y_pred, average=average)
        assert all(0.0 <= v <= 1.0 for v in out.values())


def test_log_loss_and_its_errors():
    from core.metrics import log_loss

    assert log_loss(np.array([[0.5, 0.5], [0.9, 0.1]]), [0, 0]) == pytest.approx((np.log(2) - np.log(0.9)) / 2)
    assert log_loss(np.array([[1.0, 0.0]]), [1]) == pytest.approx(-np.log(1e-12))  # clipped, not inf
    with pytest.raises(ValueError, match="N labels"):
        log_loss(np.array([[0.5, 0.5]]), [0, 1])


def test_mixture_weights_find_the_log_loss_optimum_on_the_grid():
    from core.metrics import log_loss, mixture_weights

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    truth = np.eye(3)[y]
    good = 0.7 * truth + 0.1  # right and confident
    noisy = rng.dirichlet(np.ones(3), 400)  # uninformative
    w = mixture_weights({"good": good, "noisy": noisy}, y)
    assert w["good"] > w["noisy"] and sum(w.values()) == pytest.approx(1.0)
    # the chosen point is no worse than every other point of the grid
    chosen = log_loss(w["good"] * good + w["noisy"] * noisy, y)
    for a in np.linspace(0, 1, 11):
        assert chosen <= log_loss(a * good + (1 - a) * noisy, y) + 1e-12
    # two complementary views: each is right where the other is not, so the mixture beats either
    half = np.arange(400) < 200
    a_view = np.where(half[:, None], 0.8 * truth + 0.0667, 1 / 3)
    b_view = np.where(half[:, None], 1 / 3, 0.8 * truth + 0.0667)
    w2 = mixture_weights({"a": a_view, "b": b_view}, y)
    assert 0.3 <= w2["a"] <= 0.7
    with pytest.raises(ValueError):
        mixture_weights({}, y)
    with pytest.raises(ValueError, match="divide"):
        mixture_weights({"good": good}, y, step=0.3)


def test_guard_mixture_keeps_a_mixture_only_when_it_is_clearly_more_accurate():
    from core.metrics import guard_mixture

    rng = np.random.default_rng(1)
    n = 1000
    y = rng.integers(0, 4, n)
    truth = np.eye(4)[y]
    wrong = np.eye(4)[(y + 1) % 4]

    def view(right_mask):
        return np.where(right_mask[:, None], 0.7 * truth + 0.1, 0.7 * wrong + 0.1)

    full = view(rng.random(n) < 0.90)
    kinds = ["adapter", "base_head", "full", "full"]
    # a mixture right on 60 more examples (6 points) than the primary view: kept
    better = view((full.argmax(-1) == y) | (np.arange(n) < 60))
    views = {"adapter": better, "base_head": better, "full": full}
    w, info = guard_mixture(kinds, [0.3, 0.3, 0.2, 0.2], views, y, primary="full")
    assert info["kept"] and info["win_rate"] > 0.99 and w == [0.3, 0.3, 0.2, 0.2]
    assert info["mixture_accuracy"] > info["primary_accuracy"]
    # right on 20 examples the primary view misses and wrong on 17 it gets: 3 better in a thousand is within noise,
    # so the primary view alone is served
    right = full.argmax(-1) == y
    fixed, broken = np.flatnonzero(~right)[:20], np.flatnonzero(right)[:17]
    slightly = view((right | np.isin(np.arange(n), fixed)) & ~np.isin(np.arange(n), broken))
    views = {"adapter": slightly, "base_head": slightly, "full": full}
    w, info = guard_mixture(kinds, [0.3, 0.3, 0.2, 0.2], views, y, primary="full")
    assert not info["kept"] and 0.5 < info["win_rate"] < 0.95
    assert w == [0.0, 0.0, 0.5, 0.5]
    # a worse mixture is never kept; a mixture that already is the primary view is left alone
    w, info = guard_mixture(kinds, [0.3, 0.3, 0.2, 0.2], {"adapter": full, "base_head": full, "full": better}, y,
                            primary="full")
    assert not info["kept"] and info["win_rate"] == 0.0 and w == [0.0, 0.0, 0.5, 0.5]
    w, info = guard_mixture(kinds, [0.0, 0.0, 0.5, 0.5], views, y, primary="full")
    assert info["kept"] and info["win_rate"] is None and w == [0.0, 0.0, 0.5, 0.5]
    with pytest.raises(ValueError, match="primary"):
        guard_mixture(kinds, [0.3, 0.3, 0.2, 0.2], views, y, primary="lora")
    with pytest.raises(ValueError, match="one weight per member"):
        guard_mixture(kinds, [1.0], views, y, primary="full")
