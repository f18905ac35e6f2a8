"""Evaluation of a recommender on leave-one-out cases by full ranking, and the top-K slate with a diversity control.

Every item is scored after the user's history, which is excluded; the target's rank gives HR@10, NDCG@10 and MRR (a
tie counts in the target's favour), and the top-10 slates coverage, genre diversity and novelty (docs/recommender.md).
With ``lam < 1`` the slate is re-ranked by MMR: ``lam * relevance - (1 - lam) * max cosine to the items chosen``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from apps.recommender.data import Cases
from core import metrics

Scorer = Callable[[list[np.ndarray]], np.ndarray]  # histories -> (B, n_items + 1) scores, column 0 ignored
BUCKETS: tuple[tuple[int, int], ...] = ((1, 20), (21, 50), (51, 100), (101, 200), (201, 10**9))


def mask_seen(scores: np.ndarray, seen: Sequence[np.ndarray]) -> np.ndarray:
    """Set column 0 (padding) and each row's history items to -inf, in place; returns ``scores``."""
    scores[:, 0] = -np.inf
    for i, s in enumerate(seen):
        scores[i, s] = -np.inf
    return scores


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best columns of each row, best first: (B, N) -> indices (B, k), scores (B, k). Ties: lower index."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (B, k) unordered
    vals = np.take_along_axis(scores, part, 1)
    order = np.lexsort((part, -vals), axis=1)  # by score, then by index
    idx = np.take_along_axis(part, order, 1)
    return idx, np.take_along_axis(scores, idx, 1)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    v = np.asarray(vectors, dtype=np.float32)
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, n, out=np.zeros_like(v), where=n > 0)


def mmr(scores: np.ndarray, unit: np.ndarray, k: int, lam: float, n_candidates: int = 100) -> np.ndarray:
    """The maximal marginal relevance slate of one user: (k,) item indices in the order chosen.

    ``scores`` (N,) has the excluded items at -inf; ``unit`` (N, C) holds unit-length item vectors (the similarity is
    their dot product); ``lam`` 1 is the plain top-k, 0 pure novelty; the slate is chosen among the best
    ``n_candidates`` items, whose relevance is their score min-max normalised.
    """
    cand, cs = (a[0] for a in top_k(scores[None], max(k, n_candidates)))
    ok = np.isfinite(cs)
    cand, cs = cand[ok], cs[ok]
    if lam >= 1.0 or len(cand) <= 1:
        return cand[:k]
    rel = (cs - cs.min()) / max(cs.max() - cs.min(), 1e-12)
    sim = unit[cand] @ unit[cand].T  # (M, M)
    chosen = [0]
    max_sim = sim[0].copy()
    free = np.ones(len(cand), dtype=bool)
    free[0] = False
    while len(chosen) < min(k, len(cand)):
        value = np.where(free, lam * rel - (1 - lam) * max_sim, -np.inf)
        j = int(np.argmax(value))
        chosen.append(j)
        free[j] = False
        max_sim = np.maximum(max_sim, sim[j])
    return cand[chosen]


def slate_metrics(slates: np.ndarray, targets: np.ndarray, n_items: int, popularity: np.ndarray, n_users: int,
                  genre_vectors: np.ndarray | None, k: int = 10) -> dict:
    """HR@k / NDCG@k of the target's position in each slate, plus coverage, diversity and novelty of the slates."""
    hit = slates[:, :k] == targets[:, None]
    pos = np.where(hit.any(1), hit.argmax(1) + 1, 0)
    out = {f"hr@{k}": float((pos > 0).mean()),
           f"ndcg@{k}": float(np.where(pos > 0, 1.0 / np.log2(np.maximum(pos, 1) + 1.0), 0.0).mean())}
    return {**out, **list_metrics(slates[:, :k], n_items, popularity, n_users, genre_vectors)}


def list_metrics(slates: np.ndarray, n_items: int, popularity: np.ndarray, n_users: int,
                 genre_vectors: np.ndarray | None) -> dict:
    """Coverage, intra-list diversity (genres) and novelty of recommendation lists."""
    lists = [s[s > 0] for s in slates]
    out = {"coverage": metrics.coverage([s.tolist() for s in lists], n_items),
           "diversity": None, "novelty": metrics.novelty(lists, popularity + 1, n_users + 1)}
    if genre_vectors is not None and any(len(s) >= 2 for s in lists):
        out["diversity"] = metrics.intra_list_diversity(lists, genre_vectors)
    return out


def paired_bootstrap(ranks_a: Sequence[int], ranks_b: Sequence[int], k: int = 10, n: int = 2000,
                     seed: int = 0) -> dict:
    """NDCG@k of A relative to B on the same users, with a 95% paired bootstrap interval over users.

    Returns:
        ``{"ndcg_a", "ndcg_b", "relative", "relative_ci95": [lo, hi], "p_a_not_better"}``: relative = A / B - 1; the
        last is the share of resamples in which A's mean NDCG is not above B's.
    """
    a, b = np.asarray(ranks_a, dtype=np.float64), np.asarray(ranks_b, dtype=np.float64)
    ga, gb = (np.where(r <= k, 1.0 / np.log2(r + 1.0), 0.0) for r in (a, b))
    idx = np.random.default_rng(seed).integers(0, len(a), (n, len(a)))
    ma, mb = ga[idx].mean(1), gb[idx].mean(1)
    rel = ma / np.maximum(mb, 1e-12) - 1
    return {"ndcg_a": float(ga.mean()), "ndcg_b": float(gb.mean()), "relative": float(ga.mean() / gb.mean() - 1),
            "relative_ci95": [float(np.quantile(rel, 0.025)), float(np.quantile(rel, 0.975))],
            "p_a_not_better": float((ma <= mb).mean())}


def evaluate(scorer: Scorer, cases: Cases, n_items: int, popularity: np.ndarray, n_users: int,
             genre_vectors: np.ndarray | None = None, k: int = 10, batch_size: int = 256,
             mmr_vectors: np.ndarray | None = None, mmr_lambdas: Sequence[float] = (),
             return_ranks: bool = False) -> dict:
    """Full-ranking evaluation of ``scorer`` on ``cases``.

    Args:
        popularity, n_users: (n_items + 1,) training users per item, and the number of users (novelty).
        genre_vectors: (n_items + 1, G) multi-hot genres (diversity), or None.
        k: the cut-off of HR and NDCG, and the slate length.
        mmr_vectors, mmr_lambdas: (n_items + 1, C) item vectors for the MMR similarity, and the lambdas whose
            accuracy / diversity trade-off is measured (``mmr``).
        return_ranks: also return every case's rank of the target (``ranks``), for paired comparisons.

    Returns:
        ``{"hr@10", "ndcg@10", "mrr", "coverage", "diversity", "novelty", "n_users", "by_history_length", "mmr"}``.
    """
    if len(cases) == 0:
        raise ValueError("no user has enough interactions to evaluate (each needs at least 3)")
    ranks, slates = [], []
    mmr_slates: dict[float, list[np.ndarray]] = {lam: [] for lam in mmr_lambdas}
    unit = unit_rows(mmr_vectors) if mmr_vectors is not None else None
    for start in range(0, len(cases), batch_size):
        hist = cases.inputs[start: start + batch_size]
        target = cases.targets[start: start + batch_size]
        scores = mask_seen(np.array(scorer(hist), dtype=np.float64), hist)
        ranks.append(metrics.rank_of_target(scores, target))
        slates.append(top_k(scores, k)[0])
        for lam in mmr_lambdas:
            mmr_slates[lam] += [mmr(row, unit, k, lam) for row in scores]
    ranks_a, slates_a = np.concatenate(ranks), np.concatenate(slates)
    lengths = np.array([len(h) for h in cases.inputs])
    out = {**metrics.hr_ndcg_mrr_from_ranks(ranks_a, k),
           **list_metrics(slates_a, n_items, popularity, n_users, genre_vectors), "n_users": len(cases)}
    out["by_history_length"] = {}
    for lo, hi in BUCKETS:
        sel = (lengths >= lo) & (lengths <= hi)
        if sel.any():
            out["by_history_length"][f"{lo}-{hi}" if hi < 10**9 else f">{lo - 1}"] = {
                "n": int(sel.sum()), **metrics.hr_ndcg_mrr_from_ranks(ranks_a[sel], k)}
    if return_ranks:
        out["ranks"] = ranks_a.tolist()
    if mmr_lambdas:
        out["mmr"] = []
        for lam in mmr_lambdas:
            s = np.stack([np.pad(x, (0, k - len(x))) for x in mmr_slates[lam]])
            out["mmr"].append({"lambda": lam, **slate_metrics(s, cases.targets, n_items, popularity, n_users,
                                                               genre_vectors, k)})
    return out
