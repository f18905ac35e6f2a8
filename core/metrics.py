"""Evaluation metrics for classification, ranking, language modelling and recommendation catalogues.

Every function here is pure and depends only on numpy. Inputs may be numpy arrays or plain Python
sequences. Invalid input (empty data, mismatched lengths, non-positive ``k`` ...) raises ``ValueError``
with a message that names the problem, rather than silently returning ``nan``.

Conventions:
    * Classification metrics follow scikit-learn with ``zero_division=0``: a class with no predicted
      samples has precision 0, a class with no true samples has recall 0, and F1 is 0 whenever
      precision + recall is 0.
    * Ranking metrics use binary relevance. ``ranked`` is a sequence of item ids, best first;
      ``relevant`` is a collection of item ids. Ranks are 1-based.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

_AVERAGES = ("macro", "weighted", "micro")


# -------------------------------------------------------------------------------------------------------------- helpers


def _as_label_arrays(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """Convert a pair of label sequences to 1-D arrays and validate them.

    Args:
        y_true: Ground-truth labels.
        y_pred: Predicted labels.

    Returns:
        The two inputs as 1-D numpy arrays.

    Raises:
        ValueError: If either input is not 1-D, the lengths differ, or the inputs are empty.
    """
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.ndim != 1 or p.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D, got shapes {t.shape} and {p.shape}")
    if t.shape[0] != p.shape[0]:
        raise ValueError(f"y_true and y_pred must have the same length, got {t.shape[0]} and {p.shape[0]}")
    if t.shape[0] == 0:
        raise ValueError("y_true and y_pred are empty; metrics are undefined for zero samples")
    return t, p


def _resolve_labels(t: np.ndarray, p: np.ndarray, labels: Sequence[Any] | np.ndarray | None) -> np.ndarray:
    """Return the label set to evaluate: the given ``labels`` or the sorted union of ``t`` and ``p``."""
    if labels is None:
        return np.unique(np.concatenate([t, p]))
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] == 0:
        raise ValueError("labels must be a non-empty 1-D sequence")
    if np.unique(lab).shape[0] != lab.shape[0]:
        raise ValueError("labels contains duplicate entries")
    return lab


def _index_in(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Map each value to its index in ``labels``; values not in ``labels`` map to -1."""
    sorter = np.argsort(labels, kind="stable")
    pos = np.searchsorted(labels, values, sorter=sorter)
    pos = np.clip(pos, 0, labels.shape[0] - 1)
    idx = sorter[pos]
    return np.where(labels[idx] == values, idx, -1)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Element-wise ``num / den`` with 0 wherever ``den`` is 0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _per_class_counts(
    y_true: Any, y_pred: Any, labels: Sequence[Any] | np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(labels, tp, predicted_count, support)`` arrays, one entry per label.

    Counts for a label are taken over all samples, so a prediction of a listed label counts towards its
    predicted total even when the sample's true label is not listed (and vice versa), as in scikit-learn.
    """
    t, p = _as_label_arrays(y_true, y_pred)
    lab = _resolve_labels(t, p, labels)
    n = lab.shape[0]
    ti = _index_in(t, lab)
    pi = _index_in(p, lab)
    tp = np.bincount(ti[(ti >= 0) & (ti == pi)], minlength=n)
    pred = np.bincount(pi[pi >= 0], minlength=n)
    support = np.bincount(ti[ti >= 0], minlength=n)
    return lab, tp, pred, support


def _check_k(k: int) -> None:
    """Raise ``ValueError`` unless ``k`` is a positive integer."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")


# ------------------------------------------------------------------------------------------------------- classification


def accuracy(y_true: Sequence[Any] | np.ndarray, y_pred: Sequence[Any] | np.ndarray) -> float:
    """Fraction of samples whose predicted label equals the true label.

    Args:
        y_true: Ground-truth labels, shape ``(n,)``.
        y_pred: Predicted labels, shape ``(n,)``.

    Returns:
        Accuracy in ``[0, 1]``.

    Raises:
        ValueError: If the inputs are empty, not 1-D, or of different lengths.
    """
    t, p = _as_label_arrays(y_true, y_pred)
    return float(np.mean(t == p))


def confusion_matrix(
    y_true: Sequence[Any] | np.ndarray,
    y_pred: Sequence[Any] | np.ndarray,
    labels: Sequence[Any] | np.ndarray | None = None,
) -> np.ndarray:
    """Confusion matrix with true labels on the rows and predicted labels on the columns.

    Args:
        y_true: Ground-truth labels, shape ``(n,)``.
        y_pred: Predicted labels, shape ``(n,)``.
        labels: Label order for rows/columns. Defaults to the sorted union of ``y_true`` and ``y_pred``.
            Samples whose true or predicted label is not in ``labels`` are ignored (as in scikit-learn).

    Returns:
        ``int64`` array of shape ``(len(labels), len(labels))`` where entry ``[i, j]`` counts samples
        with true label ``labels[i]`` predicted as ``labels[j]``.

    Raises:
        ValueError: If the inputs are empty or mismatched, or ``labels`` is empty or has duplicates.
    """
    t, p = _as_label_arrays(y_true, y_pred)
    lab = _resolve_labels(t, p, labels)
    n = lab.shape[0]
    ti = _index_in(t, lab)
    pi = _index_in(p, lab)
    keep = (ti >= 0) & (pi >= 0)  # samples with a label outside ``lab`` are dropped
    flat = ti[keep].astype(np.int64) * n + pi[keep].astype(np.int64)
    return np.bincount(flat, minlength=n * n).astype(np.int64).reshape(n, n)


def precision_recall_f1(
    y_true: Sequence[Any] | np.ndarray,
    y_pred: Sequence[Any] | np.ndarray,
    labels: Sequence[Any] | np.ndarray | None = None,
    average: str = "macro",
) -> dict[str, float]:
    """Averaged precision, recall and F1 (scikit-learn semantics with ``zero_division=0``).

    Per class, precision is ``tp / predicted``, recall is ``tp / support`` and F1 is their harmonic mean;
    any zero denominator gives 0.

    * ``"macro"``: unweighted mean of the per-class scores (F1 is the mean of per-class F1s).
    * ``"weighted"``: mean of the per-class scores weighted by support (true count).
    * ``"micro"``: scores computed from true positives, predictions and supports summed over ``labels``.

    Args:
        y_true: Ground-truth labels, shape ``(n,)``.
        y_pred: Predicted labels, shape ``(n,)``.
        labels: Classes to include. Defaults to the sorted union of ``y_true`` and ``y_pred``.
        average: One of ``"macro"``, ``"weighted"`` or ``"micro"``.

    Returns:
        Dict with keys ``"precision"``, ``"recall"`` and ``"f1"``.

    Raises:
        ValueError: If ``average`` is unknown or the inputs are invalid.
    """
    if average not in _AVERAGES:
        raise ValueError(f"average must be one of {_AVERAGES}, got {average!r}")
    _, tp, pred, support = _per_class_counts(y_true, y_pred, labels)
    if average == "micro":
        prec = float(_safe_div(tp.sum(), pred.sum()))
        rec = float(_safe_div(tp.sum(), support.sum()))
        f1 = float(_safe_div(2 * prec * rec, prec + rec))
        return {"precision": prec, "recall": rec, "f1": f1}
    p_c, r_c, f_c = _per_class_prf(tp, pred, support)
    if average == "macro":
        return {"precision": float(p_c.mean()), "recall": float(r_c.mean()), "f1": float(f_c.mean())}
    total = support.sum()
    if total == 0:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    # weighted sums can exceed 1 by a rounding error (e.g. 1.0000000000000002), so clip to the valid range
    w = support / total
    return {name: float(np.clip(v @ w, 0.0, 1.0)) for name, v in (("precision", p_c), ("recall", r_c), ("f1", f_c))}


def _per_class_prf(tp: np.ndarray, pred: np.ndarray, support: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall and F1 arrays with zero-division giving 0."""
    p_c = _safe_div(tp, pred)
    r_c = _safe_div(tp, support)
    f_c = _safe_div(2 * p_c * r_c, p_c + r_c)
    return p_c, r_c, f_c


def macro_f1(
    y_true: Sequence[Any] | np.ndarray,
    y_pred: Sequence[Any] | np.ndarray,
    labels: Sequence[Any] | np.ndarray | None = None,
) -> float:
    """Unweighted mean of per-class F1 scores.

    Args:
        y_true: Ground-truth labels, shape ``(n,)``.
        y_pred: Predicted labels, shape ``(n,)``.
        labels: Classes to include. Defaults to the sorted union of ``y_true`` and ``y_pred``.

    Returns:
        Macro-averaged F1 in ``[0, 1]``.
    """
    return precision_recall_f1(y_true, y_pred, labels=labels, average="macro")["f1"]


# -------------------------------------------------------------------------------------------------------------- ranking


def hit_rate_at_k(ranked: Sequence[Hashable], relevant: Iterable[Hashable], k: int) -> float:
    """1.0 if any relevant item appears in the top ``k`` of ``ranked``, else 0.0.

    Args:
        ranked: Item ids in ranked order, best first. May be shorter than ``k``.
        relevant: Relevant item ids (an empty collection gives 0.0).
        k: Cut-off, a positive integer.

    Returns:
        1.0 or 0.0.

    Raises:
        ValueError: If ``k < 1``.
    """
    _check_k(k)
    rel = set(relevant)
    return 1.0 if any(item in rel for item in list(ranked)[:k]) else 0.0


def reciprocal_rank(ranked: Sequence[Hashable], relevant: Iterable[Hashable]) -> float:
    """Reciprocal of the 1-based rank of the first relevant item.

    Args:
        ranked: Item ids in ranked order, best first.
        relevant: Relevant item ids.

    Returns:
        ``1 / rank`` of the first relevant item, or 0.0 if no relevant item is ranked.
    """
    rel = set(relevant)
    for i, item in enumerate(ranked, start=1):
        if item in rel:
            return 1.0 / i
    return 0.0


# ------------------------------------------------------------------------- ranks of one target per query (recommenders)


def rank_of_target(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of each row's target item under the row's scores.

    The rank is ``1 + (number of items with a strictly higher score)``, so ties with the target are
    resolved in the target's favour.

    Args:
        scores: Float array of shape ``(N, n_items)``; higher is better.
        targets: Integer array of shape ``(N,)`` with the target item index of each row.

    Returns:
        ``int64`` array of shape ``(N,)`` with values in ``[1, n_items]``.

    Raises:
        ValueError: If the shapes disagree or a target index is out of range.
    """
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
    """Hit rate, NDCG and MRR from 1-based ranks of a single target per query.

    Args:
        ranks: 1-based rank of the target for each query, e.g. from :func:`rank_of_target`.
        k: Cut-off for hit rate and NDCG, a positive integer.

    Returns:
        Dict with keys ``f"hr@{k}"`` (fraction with ``rank <= k``), ``f"ndcg@{k}"`` (mean of
        ``1 / log2(rank + 1)`` when ``rank <= k``, else 0) and ``"mrr"`` (mean ``1 / rank``, not truncated
        at ``k``). For ``k=10`` the keys are ``"hr@10"``, ``"ndcg@10"`` and ``"mrr"``.

    Raises:
        ValueError: If ``ranks`` is empty or contains values below 1, or ``k < 1``.
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


def mixture_weights(
    views: Mapping[str, np.ndarray], y: Sequence[int] | np.ndarray, step: float = 0.1
) -> dict[str, float]:
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
    assert best is not None
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

    :func:`member_weights` fits the shares to one validation split, and a view that split happens to favour can take
    a share it does not earn elsewhere (seen with Banking77: a frozen-base head scored 0.933 on the validation split
    and 0.916 in 5-fold cross-validation of the training part). Each extra view also costs a backbone pass per query.
    The test is a paired bootstrap over the validation examples: the mixture is kept when it is strictly more
    accurate than the primary view in at least ``confidence`` of ``n_boot`` resamples.

    Args:
        kinds: Each member's kind (as for :func:`member_weights`).
        weights: Each member's weight from :func:`member_weights`.
        views: Each kind's mean probabilities on validation (as :func:`member_weights` returns them).
        y: Validation labels.
        primary: The kind to fall back to (the strongest by construction, e.g. the fully fine-tuned members).

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
    n_primary = kinds.count(primary)
    fallback = [round(1.0 / n_primary, 6) if k == primary else 0.0 for k in kinds]
    return fallback, {**info, "kept": False, "win_rate": round(win_rate, 4)}


# --------------------------------------------------------------------------------------------------- language modelling


def perplexity(total_nll: float, n_tokens: int) -> float:
    """Perplexity from a summed negative log-likelihood (natural log).

    Args:
        total_nll: Sum of per-token negative log-likelihoods, in nats.
        n_tokens: Number of tokens the sum is over.

    Returns:
        ``exp(total_nll / n_tokens)``; ``inf`` if that overflows a float.

    Raises:
        ValueError: If ``n_tokens <= 0``.
    """
    if n_tokens <= 0:
        raise ValueError(f"n_tokens must be positive, got {n_tokens}")
    try:
        return math.exp(float(total_nll) / n_tokens)
    except OverflowError:
        return math.inf


# -------------------------------------------------------------------------------------------- recommendation catalogues


def coverage(recommendation_lists: Iterable[Iterable[Hashable]], n_items: int) -> float:
    """Catalogue coverage: fraction of the catalogue recommended at least once.

    Args:
        recommendation_lists: One list of recommended item ids per user.
        n_items: Catalogue size.

    Returns:
        ``|distinct recommended items| / n_items``.

    Raises:
        ValueError: If ``n_items <= 0``.
    """
    if n_items <= 0:
        raise ValueError(f"n_items must be positive, got {n_items}")
    distinct: set[Hashable] = set()
    for rec in recommendation_lists:
        distinct.update(rec.tolist() if isinstance(rec, np.ndarray) else rec)
    return len(distinct) / n_items


def intra_list_diversity(
    lists: Iterable[Sequence[Hashable]], item_vectors: np.ndarray | Mapping[Hashable, Any]
) -> float:
    """Mean intra-list diversity: average pairwise cosine distance within each list.

    For each list with at least two items, the mean of ``1 - cos(v_i, v_j)`` over unordered pairs
    ``i < j`` is computed; the result is the mean of these values over lists. Lists with fewer than
    two items are skipped. A zero vector has cosine similarity 0 with everything.

    Args:
        lists: Recommendation lists of item ids.
        item_vectors: Either an array of shape ``(n_items, d)`` indexed by integer item id, or a mapping
            item id -> vector of length ``d``.

    Returns:
        Mean intra-list diversity, in ``[0, 2]``.

    Raises:
        ValueError: If no list has at least two items.
    """
    per_list: list[float] = []
    table = None if isinstance(item_vectors, Mapping) else np.asarray(item_vectors, dtype=np.float64)
    for items in lists:
        ids = list(items)
        m = len(ids)
        if m < 2:
            continue
        if table is None:
            vecs = np.asarray([item_vectors[i] for i in ids], dtype=np.float64)  # type: ignore[index]
        else:
            vecs = table[np.asarray(ids, dtype=np.int64)]
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        unit = _safe_div(vecs, norms)
        sim = unit @ unit.T
        iu = np.triu_indices(m, k=1)
        per_list.append(float(np.mean(1.0 - sim[iu])))
    if not per_list:
        raise ValueError("intra_list_diversity needs at least one list with two or more items")
    return float(np.mean(per_list))


def novelty(
    lists: Iterable[Sequence[Hashable]],
    item_popularity: Mapping[Hashable, float] | Sequence[float] | np.ndarray,
    n_users: int,
) -> float:
    """Mean self-information of recommended items, ``-log2(popularity / n_users)``.

    The self-information is averaged within each list, then over lists; empty lists are skipped.

    Args:
        lists: Recommendation lists of item ids.
        item_popularity: Number of users who interacted with each item, as a mapping item id -> count or an
            array indexed by integer item id.
        n_users: Total number of users.

    Returns:
        Mean novelty in bits (higher means less popular items are recommended).

    Raises:
        ValueError: If ``n_users <= 0``, a recommended item has popularity outside ``(0, n_users]`` or is
            missing from ``item_popularity``, or every list is empty.
    """
    if n_users <= 0:
        raise ValueError(f"n_users must be positive, got {n_users}")
    table = None if isinstance(item_popularity, Mapping) else np.asarray(item_popularity, dtype=np.float64)
    per_list: list[float] = []
    for items in lists:
        ids = list(items)
        if not ids:
            continue
        if table is None:
            try:
                pop = np.asarray([item_popularity[i] for i in ids], dtype=np.float64)  # type: ignore[index]
            except KeyError as exc:
                raise ValueError(f"item {exc.args[0]!r} has no popularity entry") from exc
        else:
            pop = table[np.asarray(ids, dtype=np.int64)]
        if np.any(pop <= 0) or np.any(pop > n_users):
            raise ValueError(f"item popularity must lie in (0, n_users={n_users}] for recommended items")
        per_list.append(float(np.mean(-np.log2(pop / n_users))))
    if not per_list:
        raise ValueError("novelty needs at least one non-empty recommendation list")
    return float(np.mean(per_list))
