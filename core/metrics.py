"""Evaluation metrics for classification, ranking, language modelling and recommendation catalogues.

Pure numpy functions; inputs may be arrays or plain sequences. Invalid input (empty data, mismatched lengths,
``k < 1`` ...) raises ``ValueError`` naming the problem instead of returning ``nan``. Classification metrics follow
scikit-learn with ``zero_division=0``. Ranking metrics use binary relevance: ``ranked`` is item ids, best first;
``relevant`` a collection of ids; ranks are 1-based.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

_AVERAGES = ("macro", "weighted", "micro")
Labels = Sequence[Any] | np.ndarray


def _as_label_arrays(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both label sequences as 1-D arrays; ``ValueError`` if not 1-D, of different lengths or empty."""
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.ndim != 1 or p.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D, got shapes {t.shape} and {p.shape}")
    if t.shape[0] != p.shape[0]:
        raise ValueError(f"y_true and y_pred must have the same length, got {t.shape[0]} and {p.shape[0]}")
    if t.shape[0] == 0:
        raise ValueError("y_true and y_pred are empty; metrics are undefined for zero samples")
    return t, p


def _label_indices(y_true: Any, y_pred: Any, labels: Labels | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(labels, true_idx, pred_idx)``: the label set (given, or the sorted union of both inputs) and each sample's
    true and predicted label as an index into it (-1 for a label outside it)."""
    t, p = _as_label_arrays(y_true, y_pred)
    if labels is None:
        lab = np.unique(np.concatenate([t, p]))
    else:
        lab = np.asarray(labels)
        if lab.ndim != 1 or lab.shape[0] == 0:
            raise ValueError("labels must be a non-empty 1-D sequence")
        if np.unique(lab).shape[0] != lab.shape[0]:
            raise ValueError("labels contains duplicate entries")
    return lab, _index_in(t, lab), _index_in(p, lab)


def _index_in(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Map each value to its index in ``labels``; values not in ``labels`` map to -1."""
    sorter = np.argsort(labels, kind="stable")
    pos = np.clip(np.searchsorted(labels, values, sorter=sorter), 0, labels.shape[0] - 1)
    idx = sorter[pos]
    return np.where(labels[idx] == values, idx, -1)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Element-wise ``num / den`` with 0 wherever ``den`` is 0."""
    num, den = np.broadcast_arrays(np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64))
    return np.divide(num, den, out=np.zeros(num.shape), where=den != 0)


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")


def _rows(table: np.ndarray | Mapping, ids: list) -> np.ndarray:
    """The float rows of ``ids`` in an array indexed by integer id, or in a mapping id -> value."""
    if isinstance(table, Mapping):
        return np.asarray([table[i] for i in ids], dtype=np.float64)
    return table[np.asarray(ids, dtype=np.int64)]


# ------------------------------------------------------------------------------------------------------- classification
def accuracy(y_true: Labels, y_pred: Labels) -> float:
    """Fraction of samples whose predicted label equals the true label (``ValueError`` on empty or mismatched input)."""
    t, p = _as_label_arrays(y_true, y_pred)
    return float(np.mean(t == p))


def confusion_matrix(y_true: Labels, y_pred: Labels, labels: Labels | None = None) -> np.ndarray:
    """``int64`` (L, L) matrix whose ``[i, j]`` counts samples of true label ``labels[i]`` predicted as ``labels[j]``.

    ``labels`` defaults to the sorted union of both inputs; samples with a label outside it are ignored (as in
    scikit-learn). Raises ``ValueError`` on invalid input or an empty / duplicated ``labels``.
    """
    lab, ti, pi = _label_indices(y_true, y_pred, labels)
    n = lab.shape[0]
    keep = (ti >= 0) & (pi >= 0)
    flat = ti[keep].astype(np.int64) * n + pi[keep].astype(np.int64)
    return np.bincount(flat, minlength=n * n).astype(np.int64).reshape(n, n)


def precision_recall_f1(y_true: Labels, y_pred: Labels, labels: Labels | None = None,
                        average: str = "macro") -> dict[str, float]:
    """``{"precision", "recall", "f1"}`` averaged over ``labels`` (default: the sorted union of both inputs).

    ``macro``: unweighted mean of per-class scores; ``weighted``: mean weighted by support; ``micro``: from
    true positives, predictions and supports summed over ``labels``. Counts for a label are taken over all samples,
    as in scikit-learn. Raises ``ValueError`` on an unknown ``average`` or invalid input.
    """
    if average not in _AVERAGES:
        raise ValueError(f"average must be one of {_AVERAGES}, got {average!r}")
    lab, ti, pi = _label_indices(y_true, y_pred, labels)
    n = lab.shape[0]
    tp = np.bincount(ti[(ti >= 0) & (ti == pi)], minlength=n)
    pred = np.bincount(pi[pi >= 0], minlength=n)
    support = np.bincount(ti[ti >= 0], minlength=n)
    if average == "micro":
        tp, pred, support = tp.sum(), pred.sum(), support.sum()
    p_c, r_c = _safe_div(tp, pred), _safe_div(tp, support)
    scores = {"precision": p_c, "recall": r_c, "f1": _safe_div(2 * p_c * r_c, p_c + r_c)}
    if average != "weighted":
        return {name: float(np.mean(v)) for name, v in scores.items()}
    total = support.sum()
    if total == 0:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    # weighted sums can exceed 1 by a rounding error (e.g. 1.0000000000000002), so clip to the valid range
    return {name: float(np.clip(v @ (support / total), 0.0, 1.0)) for name, v in scores.items()}


def macro_f1(y_true: Labels, y_pred: Labels, labels: Labels | None = None) -> float:
    """Unweighted mean of per-class F1 scores."""
    return precision_recall_f1(y_true, y_pred, labels=labels, average="macro")["f1"]


# -------------------------------------------------------------------------------------------------------------- ranking
def hit_rate_at_k(ranked: Sequence[Hashable], relevant: Iterable[Hashable], k: int) -> float:
    """1.0 if any relevant item is in the top ``k`` of ``ranked``, else 0.0 (``ValueError`` if ``k < 1``)."""
    _check_k(k)
    rel = set(relevant)
    return 1.0 if any(item in rel for item in list(ranked)[:k]) else 0.0


def reciprocal_rank(ranked: Sequence[Hashable], relevant: Iterable[Hashable]) -> float:
    """``1 / rank`` of the first relevant item in ``ranked``, or 0.0 if none is ranked."""
    rel = set(relevant)
    return next((1.0 / i for i, item in enumerate(ranked, start=1) if item in rel), 0.0)


def rank_of_target(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``int64`` (N,) 1-based rank of each row's target under ``scores`` (N, n_items), higher better: 1 + the number of
    items scored strictly higher (ties go the target's way). ``ValueError`` on bad shapes or out-of-range targets."""
    s = np.asarray(scores)
    t = np.asarray(targets)
    if s.ndim != 2:
        raise ValueError(f"scores must have shape (N, n_items), got {s.shape}")
    if t.ndim != 1 or t.shape[0] != s.shape[0]:
        raise ValueError(f"targets must have shape ({s.shape[0]},), got {t.shape}")
    if not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"targets must be integer item indices, got dtype {t.dtype}")
    if t.size and (t.min() < 0 or t.max() >= s.shape[1]):
        raise ValueError(f"targets must lie in [0, {s.shape[1]}), got range [{t.min()}, {t.max()}]")
    target_scores = s[np.arange(s.shape[0]), t]
    return 1 + (s > target_scores[:, None]).sum(axis=1).astype(np.int64)


def hr_ndcg_mrr_from_ranks(ranks: Sequence[int] | np.ndarray, k: int) -> dict[str, float]:
    """Hit rate, NDCG and MRR from the 1-based rank of one target per query.

    Returns:
        ``{f"hr@{k}": share with rank <= k, f"ndcg@{k}": mean 1 / log2(rank + 1) within k (else 0),
        "mrr": mean 1 / rank (not truncated at k)}``.

    Raises:
        ValueError: If ``ranks`` is empty, not finite or below 1, or ``k < 1``.
    """
    _check_k(k)
    r = np.asarray(ranks, dtype=np.float64).reshape(-1)
    if r.size == 0:
        raise ValueError("ranks is empty; metrics are undefined for zero queries")
    if np.any(r < 1) or np.any(~np.isfinite(r)):
        raise ValueError("ranks must be finite and >= 1 (ranks are 1-based)")
    hit = r <= k
    ndcg = np.where(hit, 1.0 / np.log2(r + 1.0), 0.0)
    return {f"hr@{k}": float(hit.mean()), f"ndcg@{k}": float(ndcg.mean()), "mrr": float((1.0 / r).mean())}


# ------------------------------------------------------------------------- probabilistic classifiers and their mixtures
def log_loss(proba: np.ndarray, y: Sequence[int] | np.ndarray) -> float:
    """Mean negative log-probability (nats) of the labels ``y`` under the rows of ``proba`` (clipped at 1e-12).

    Raises:
        ValueError: If ``proba`` is not 2-D, is empty, or does not have one row per label.
    """
    p, t = np.asarray(proba, dtype=np.float64), np.asarray(y, dtype=np.int64)
    if p.ndim != 2 or len(p) == 0 or len(p) != len(t):
        raise ValueError(f"log_loss needs (N, C) probabilities and N labels, got {p.shape} and {t.shape}")
    return float(-np.log(np.clip(p[np.arange(len(t)), t], 1e-12, None)).mean())


def mixture_weights(views: Mapping[str, np.ndarray], y: Sequence[int] | np.ndarray,
                    step: float = 0.1) -> dict[str, float]:
    """Weights (summing to 1, on a ``step`` grid) of several classifiers' probabilities whose mixture has the
    lowest log-loss on ``y``: the weights of a validated ensemble.

    Log-loss rather than accuracy: on a validation split of a few hundred to a few thousand texts accuracy moves in
    steps of single examples and many weightings tie, while the log-loss of a mixture is smooth (and convex) in the
    weights. Ties keep the first weighting found (the grid is walked from the last view's side).

    Raises:
        ValueError: If there are no views or ``step`` does not divide 1.
    """
    names = list(views)
    if not names:
        raise ValueError("mixture_weights needs at least one view")
    n = round(1 / step)
    if n < 1 or abs(n * step - 1) > 1e-9:
        raise ValueError(f"step must divide 1, got {step}")
    best: tuple[float, list[float]] | None = None
    for cut in itertools.product(range(n + 1), repeat=len(names) - 1):
        if sum(cut) > n:
            continue
        w = [c / n for c in cut] + [(n - sum(cut)) / n]
        loss = log_loss(sum(wi * np.asarray(views[k], dtype=np.float64) for wi, k in zip(w, names)), y)
        if best is None or loss < best[0] - 1e-12:
            best = (loss, w)
    return {k: round(wi, 2) for k, wi in zip(names, best[1])}


def member_weights(
    kinds: Sequence[str], probas: Sequence[np.ndarray], y: Sequence[int] | np.ndarray, step: float = 0.1
) -> tuple[list[float], dict[str, np.ndarray]]:
    """Per-member weights of an ensemble whose members come in kinds (e.g. full fine-tunes and adapters): the
    members of one kind are averaged into one view, the views' shares are :func:`mixture_weights` on ``y``, and each
    member gets its kind's share divided equally.

    Returns:
        The weights (one per member, in order) and the views (each kind's mean probabilities, first-seen order).
    """
    kinds = list(kinds)
    if len(kinds) != len(probas) or not kinds:
        raise ValueError(f"member_weights needs one kind per member, got {len(kinds)} kinds for {len(probas)}")
    views = {kind: np.mean([p for p, k in zip(probas, kinds) if k == kind], axis=0) for kind in dict.fromkeys(kinds)}
    shares = mixture_weights(views, y, step) if len(views) > 1 else {kinds[0]: 1.0}
    return [round(shares[k] / kinds.count(k), 6) for k in kinds], views


def guard_mixture(
    kinds: Sequence[str], weights: Sequence[float], views: Mapping[str, np.ndarray], y: Sequence[int] | np.ndarray,
    primary: str, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0,
) -> tuple[list[float], dict]:
    """Keep a validated mixture only where validation says, with ``confidence``, that it is more accurate than the
    ``primary`` view alone; otherwise serve the primary view (its members equally weighted, every other member 0).

    Why: :func:`member_weights` fits the shares to one validation split, where a view can take a share it does not
    earn elsewhere, and each extra view costs a backbone pass per query. The test is a paired bootstrap over the
    validation labels ``y``: the mixture is kept when strictly more accurate than the primary view in at least
    ``confidence`` of ``n_boot`` resamples. ``kinds``, ``weights`` and ``views`` are as :func:`member_weights` gives
    them; ``primary`` is the kind to fall back to (e.g. the fully fine-tuned members).

    Returns:
        The weights to serve and what was decided: ``{"primary", "kept", "win_rate", "confidence",
        "mixture_accuracy", "primary_accuracy"}``.

    Raises:
        ValueError: If ``primary`` is not one of the kinds, or the lengths disagree.
    """
    kinds, weights, y = list(kinds), [float(w) for w in weights], np.asarray(y)
    if primary not in kinds:
        raise ValueError(f"primary kind {primary!r} is not among the members' kinds {sorted(set(kinds))}")
    if len(kinds) != len(weights):
        raise ValueError(f"guard_mixture needs one weight per member, got {len(weights)} for {len(kinds)}")
    share = {k: sum(w for w, kk in zip(weights, kinds) if kk == k) for k in dict.fromkeys(kinds)}
    mixture = sum(share[k] * np.asarray(views[k], dtype=np.float64) for k in share)
    right_mix = np.asarray(mixture).argmax(-1) == y
    right_primary = np.asarray(views[primary]).argmax(-1) == y
    info = {"primary": primary, "confidence": confidence, "mixture_accuracy": float(right_mix.mean()),
            "primary_accuracy": float(right_primary.mean())}
    if share[primary] >= 1 - 1e-9:
        return weights, {**info, "kept": True, "win_rate": None}
    rng = np.random.default_rng(seed)
    diff = right_mix.astype(np.int64) - right_primary.astype(np.int64)
    # a resample's summed difference only depends on how many +1 / -1 / 0 examples it draws: a multinomial draw
    counts = rng.multinomial(len(y), [float((diff > 0).mean()), float((diff < 0).mean()), float((diff == 0).mean())],
                             size=n_boot)
    win_rate = float((counts[:, 0] > counts[:, 1]).mean())
    if win_rate >= confidence:
        return weights, {**info, "kept": True, "win_rate": round(win_rate, 4)}
    fallback = [round(1.0 / kinds.count(primary), 6) if k == primary else 0.0 for k in kinds]
    return fallback, {**info, "kept": False, "win_rate": round(win_rate, 4)}


# --------------------------------------------------------------------------------------------------- language modelling
def perplexity(total_nll: float, n_tokens: int) -> float:
    """``exp(total_nll / n_tokens)`` from a summed natural-log NLL; ``inf`` on overflow (``ValueError`` if
    ``n_tokens <= 0``)."""
    if n_tokens <= 0:
        raise ValueError(f"n_tokens must be positive, got {n_tokens}")
    try:
        return math.exp(float(total_nll) / n_tokens)
    except OverflowError:
        return math.inf


# -------------------------------------------------------------------------------------------- recommendation catalogues
def coverage(recommendation_lists: Iterable[Iterable[Hashable]], n_items: int) -> float:
    """Share of the catalogue of ``n_items`` recommended at least once (``ValueError`` if ``n_items <= 0``)."""
    if n_items <= 0:
        raise ValueError(f"n_items must be positive, got {n_items}")
    distinct: set[Hashable] = set()
    for rec in recommendation_lists:
        distinct.update(rec.tolist() if isinstance(rec, np.ndarray) else rec)
    return len(distinct) / n_items


def intra_list_diversity(lists: Iterable[Sequence[Hashable]],
                         item_vectors: np.ndarray | Mapping[Hashable, Any]) -> float:
    """Mean over lists of the mean pairwise cosine distance ``1 - cos(v_i, v_j)`` within each list, in ``[0, 2]``.

    ``item_vectors`` is an (n_items, d) array indexed by integer id, or a mapping id -> vector. Lists of fewer than
    two items are skipped; a zero vector has cosine 0 with everything. ``ValueError`` if no list has two items.
    """
    table = item_vectors if isinstance(item_vectors, Mapping) else np.asarray(item_vectors, dtype=np.float64)
    per_list: list[float] = []
    for items in lists:
        ids = list(items)
        if len(ids) < 2:
            continue
        vecs = _rows(table, ids)
        unit = _safe_div(vecs, np.linalg.norm(vecs, axis=1, keepdims=True))
        sim = unit @ unit.T
        per_list.append(float(np.mean(1.0 - sim[np.triu_indices(len(ids), k=1)])))
    if not per_list:
        raise ValueError("intra_list_diversity needs at least one list with two or more items")
    return float(np.mean(per_list))


def novelty(lists: Iterable[Sequence[Hashable]],
            item_popularity: Mapping[Hashable, float] | Sequence[float] | np.ndarray, n_users: int) -> float:
    """Mean self-information ``-log2(popularity / n_users)`` of recommended items, in bits: averaged within each list,
    then over lists (empty lists skipped).

    ``item_popularity`` is the number of users of each item: a mapping id -> count or an array indexed by integer id.
    Raises ``ValueError`` if ``n_users <= 0``, a recommended item's popularity is missing or outside
    ``(0, n_users]``, or every list is empty.
    """
    if n_users <= 0:
        raise ValueError(f"n_users must be positive, got {n_users}")
    table = item_popularity if isinstance(item_popularity, Mapping) else np.asarray(item_popularity, dtype=np.float64)
    per_list: list[float] = []
    for items in lists:
        ids = list(items)
        if not ids:
            continue
        try:
            pop = _rows(table, ids)
        except KeyError as exc:
            raise ValueError(f"item {exc.args[0]!r} has no popularity entry") from exc
        if np.any(pop <= 0) or np.any(pop > n_users):
            raise ValueError(f"item popularity must lie in (0, n_users={n_users}] for recommended items")
        per_list.append(float(np.mean(-np.log2(pop / n_users))))
    if not per_list:
        raise ValueError("novelty needs at least one non-empty recommendation list")
    return float(np.mean(per_list))
