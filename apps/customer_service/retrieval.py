"""Answer retrieval: a FAISS index of the core's embeddings, BM25 (bm25s), and their fusion.

- ``DenseIndex``: inner product over L2-normalised vectors (= cosine), with a string-id map. Exact (Flat) for small
  knowledge bases; IVF or HNSW above ``approx_threshold`` entries. Entries are added, updated and removed without a
  full rebuild (HNSW cannot delete in FAISS: removed ids are tombstoned and filtered, and the graph is rebuilt once
  tombstones pass a quarter of it).
- ``SparseIndex``: BM25 with English stemming and stop words; rebuilt lazily after changes (it is cheap).
- ``fuse``: weighted sum of the dense cosine and the max-normalised BM25 score, or reciprocal-rank fusion.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import bm25s
import faiss
import numpy as np
import Stemmer

log = logging.getLogger(__name__)

IndexKind = Literal["auto", "flat", "ivf", "hnsw"]


class IndexMissingError(RuntimeError):
    """An index folder is missing or does not match its id map."""


@dataclass(frozen=True)
class IndexConfig:
    """How the dense index is built: ``kind`` auto is flat below ``approx_threshold`` entries, else ``approx_kind``."""

    kind: IndexKind = "auto"
    approx_threshold: int = 50_000
    approx_kind: Literal["ivf", "hnsw"] = "hnsw"
    nprobe: int = 16  # IVF lists searched per query
    hnsw_m: int = 32  # HNSW neighbours per node
    ef_search: int = 128  # HNSW search breadth

    def resolve(self, n: int) -> str:
        """The concrete kind for ``n`` entries."""
        if self.kind != "auto":
            return self.kind
        return self.approx_kind if n >= self.approx_threshold else "flat"


class DenseIndex:
    """FAISS inner-product index with string ids."""

    def __init__(self, dim: int, config: IndexConfig | None = None):
        self.dim, self.config = dim, config or IndexConfig()
        self._refill("flat", [], np.zeros((0, dim), np.float32))

    def _new(self, kind: str, n: int, train: np.ndarray | None = None) -> faiss.Index:
        if kind == "flat":
            return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        if kind == "hnsw":
            h = faiss.IndexHNSWFlat(self.dim, self.config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            h.hnsw.efSearch = self.config.ef_search
            h.hnsw.efConstruction = 80
            return faiss.IndexIDMap2(h)
        if kind == "ivf":
            nlist = int(max(8, min(4 * np.sqrt(max(n, 1)), max(8, n // 39))))
            quant = faiss.IndexFlatIP(self.dim)
            ivf = faiss.IndexIVFFlat(quant, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            if train is None or len(train) < nlist:
                raise ValueError(f"an IVF index of {nlist} lists needs at least {nlist} training vectors")
            ivf.train(np.ascontiguousarray(train, dtype=np.float32))
            ivf.nprobe = self.config.nprobe
            return ivf
        raise ValueError(f"unknown index kind {kind!r}; use flat, ivf, hnsw or auto")

    def build(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Replace the whole index with ``vectors`` (N, dim) under ``ids``."""
        vectors = self._check(ids, vectors)
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate ids in one build")
        self._refill(self.config.resolve(len(ids)), ids, vectors)

    def _refill(self, kind: str, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Replace the index with a new one of ``kind`` holding just ``vectors`` under ``ids``."""
        self.kind, self.index = kind, self._new(kind, len(ids), vectors)
        self.ids: dict[str, int] = {}  # string id -> int64 FAISS id
        self.rev: dict[int, str] = {}
        self.next_id, self.tombstones = 0, set[int]()
        if ids:
            self._add(ids, vectors)

    def _check(self, ids: Sequence[str], vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or len(ids) != len(vectors):
            raise ValueError(f"expected ({len(ids)}, {self.dim}) vectors, got {vectors.shape}")
        return vectors

    def _add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        nums = np.arange(self.next_id, self.next_id + len(ids), dtype=np.int64)
        self.next_id += len(ids)
        self.index.add_with_ids(vectors, nums)
        for s, n in zip(ids, nums.tolist()):
            self.ids[s] = n
            self.rev[n] = s

    def upsert(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Add entries, replacing any with the same id."""
        vectors = self._check(ids, vectors)
        self.remove([i for i in ids if i in self.ids])
        self._add(ids, vectors)

    def remove(self, ids: Sequence[str]) -> int:
        """Remove entries by id (unknown ids are ignored); return how many were removed."""
        nums = [self.ids.pop(i) for i in ids if i in self.ids]
        for n in nums:
            self.rev.pop(n, None)
        if not nums:
            return 0
        if self.kind == "hnsw":
            self.tombstones.update(nums)
            if len(self.tombstones) > 0.25 * max(1, self.index.ntotal):
                self._rebuild_hnsw()
        else:
            self.index.remove_ids(np.asarray(nums, dtype=np.int64))
        return len(nums)

    def _rebuild_hnsw(self) -> None:
        live = sorted(self.rev)
        vecs = np.stack([self.index.reconstruct(n) for n in live]) if live else np.zeros((0, self.dim), np.float32)
        self._refill("hnsw", [self.rev[n] for n in live], vecs)

    def search(self, queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """Top-``k`` (id, cosine) per query row, best first."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if not self.ids:
            return [[] for _ in range(len(queries))]
        fetch = min(self.index.ntotal, k + len(self.tombstones))
        scores, nums = self.index.search(queries, fetch)
        return [[(self.rev[int(n)], float(s)) for s, n in zip(srow, nrow) if n >= 0 and int(n) in self.rev][:k]
                for srow, nrow in zip(scores, nums)]

    def save(self, folder: str | Path) -> None:
        """Write ``index.faiss`` and ``ids.json`` into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(folder / "index.faiss"))
        meta = {"dim": self.dim, "kind": self.kind, "ids": self.ids, "next_id": self.next_id,
                "tombstones": sorted(self.tombstones), "config": self.config.__dict__}
        (folder / "ids.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, folder: str | Path) -> DenseIndex:
        """Read an index written by ``save``."""
        folder = Path(folder)
        if not (folder / "index.faiss").is_file() or not (folder / "ids.json").is_file():
            raise IndexMissingError(f"no index in {folder} (build one with `trident cs index`)")
        meta = json.loads((folder / "ids.json").read_text())
        self = cls(meta["dim"], IndexConfig(**meta["config"]))
        self.index = faiss.read_index(str(folder / "index.faiss"))
        self.kind, self.next_id = meta["kind"], meta["next_id"]
        self.ids = {k: int(v) for k, v in meta["ids"].items()}
        self.rev = {v: k for k, v in self.ids.items()}
        self.tombstones = set(meta["tombstones"])
        if self.index.ntotal - len(self.tombstones) != len(self.ids):
            raise IndexMissingError(f"index in {folder} holds {self.index.ntotal} vectors but its id map "
                                    f"{len(self.ids)}: rebuild it with `trident cs index`")
        return self


class SparseIndex:
    """BM25 over entry texts (English stop words, Snowball stemming), rebuilt lazily after changes."""

    def __init__(self, k1: float = 1.2, b: float = 0.75):
        self.k1, self.b = k1, b
        self.stemmer = Stemmer.Stemmer("english")
        self.texts: dict[str, str] = {}
        self._model = None
        self._order: list[str] = []

    def upsert(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        """Add or replace entries."""
        self.texts.update(zip(ids, texts))
        self._model = None

    def remove(self, ids: Sequence[str]) -> int:
        """Remove entries by id (unknown ids are ignored); return how many were removed."""
        n = sum(self.texts.pop(i, None) is not None for i in ids)
        if n:
            self._model = None
        return n

    def _tok(self, texts: list[str]):
        return bm25s.tokenize(texts, stopwords="en", stemmer=self.stemmer, show_progress=False)

    def _ensure(self) -> None:
        if self._model is None and self.texts:
            self._order = list(self.texts)
            self._model = bm25s.BM25(k1=self.k1, b=self.b)
            self._model.index(self._tok([self.texts[i] for i in self._order]), show_progress=False)

    def search(self, queries: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
        """Top-``k`` (id, BM25 score) per query, best first; entries with no shared term are left out."""
        self._ensure()
        if self._model is None:
            return [[] for _ in queries]
        k = min(k, len(self._order))
        docs, scores = self._model.retrieve(self._tok(list(queries)), k=k, show_progress=False, n_threads=1)
        return [[(self._order[int(d)], float(s)) for d, s in zip(drow, srow) if s > 0] for drow, srow in
                zip(docs, scores)]


def fuse(dense: list[tuple[str, float]], sparse: list[tuple[str, float]], method: str = "weighted",
         sparse_weight: float = 0.1, rrf_k: int = 60) -> list[tuple[str, float, float | None, float | None]]:
    """Fuse one query's dense and sparse hits into (id, score, dense, sparse), best first.

    ``weighted``: cosine + sparse_weight * BM25 / max BM25 (an id missing from the dense list counts with the lowest
    dense score seen, so BM25 alone cannot put a weak match on top). ``rrf``: sum of 1 / (rrf_k + rank).
    """
    d, s = dict(dense), dict(sparse)
    ids = list(dict.fromkeys([i for i, _ in dense] + [i for i, _ in sparse]))
    if method == "rrf":
        dr = {i: r for r, (i, _) in enumerate(dense, 1)}
        sr = {i: r for r, (i, _) in enumerate(sparse, 1)}
        scored = [(i, sum(1.0 / (rrf_k + r[i]) for r in (dr, sr) if i in r), d.get(i), s.get(i)) for i in ids]
    elif method == "weighted":
        top = max(s.values(), default=0.0) or 1.0
        floor = min(d.values(), default=0.0)
        scored = [(i, d.get(i, floor) + sparse_weight * s.get(i, 0.0) / top, d.get(i), s.get(i)) for i in ids]
    else:
        raise ValueError(f"unknown fusion {method!r}; use weighted or rrf")
    return sorted(scored, key=lambda x: -x[1])


@dataclass
class SearchResult:
    """One fused hit: id, fused score, dense cosine, BM25 score."""

    id: str
    score: float
    dense: float | None
    sparse: float | None


class HybridRetriever:
    """Dense + sparse retrieval over string-id'd texts; ``embed`` turns texts into L2-normalised vectors."""

    def __init__(self, embed: Callable[[list[str]], np.ndarray], dim: int, config: IndexConfig | None = None,
                 mode: Literal["dense", "sparse", "hybrid"] = "hybrid", fusion: str = "weighted",
                 sparse_weight: float = 0.1):
        self.embed, self.mode, self.fusion, self.sparse_weight = embed, mode, fusion, sparse_weight
        self.dense = DenseIndex(dim, config)
        self.sparse = SparseIndex()

    def build(self, ids: Sequence[str], dense_texts: Sequence[str], sparse_texts: Sequence[str] | None = None) -> None:
        """Index every entry from scratch."""
        if self.mode != "sparse":
            self.dense.build(ids, self.embed(list(dense_texts)))
        self.sparse = SparseIndex()
        self.sparse.upsert(ids, sparse_texts or dense_texts)

    def upsert(self, ids: Sequence[str], dense_texts: Sequence[str], sparse_texts: Sequence[str] | None = None):
        """Add or replace entries without a rebuild."""
        if self.mode != "sparse":
            self.dense.upsert(ids, self.embed(list(dense_texts)))
        self.sparse.upsert(ids, sparse_texts or dense_texts)

    def remove(self, ids: Sequence[str]) -> None:
        """Remove entries (unknown ids are ignored) from both sides, without a rebuild."""
        if self.mode != "sparse":
            self.dense.remove(ids)
        self.sparse.remove(ids)

    def search(self, queries: Sequence[str], k: int = 5, fetch: int = 50,
               vectors: np.ndarray | None = None) -> list[list[SearchResult]]:
        """Top-``k`` fused results per query; ``vectors`` replaces the queries' own embeddings on the dense side."""
        queries = list(queries)
        if self.mode != "sparse" and vectors is None:
            vectors = self.embed(queries)
        dense = self.dense.search(vectors, max(k, fetch)) if self.mode != "sparse" else None
        sparse = self.sparse.search(queries, max(k, fetch)) if self.mode != "dense" else None
        out = []
        for qi in range(len(queries)):
            if self.mode == "dense":
                rows = [(i, s, s, None) for i, s in dense[qi]]
            elif self.mode == "sparse":
                rows = [(i, s, None, s) for i, s in sparse[qi]]
            else:
                rows = fuse(dense[qi], sparse[qi], self.fusion, self.sparse_weight)
            out.append([SearchResult(*r) for r in rows[:k]])
        return out
