"""The FAQ index: the engine's embeddings behind the hybrid retriever; build, save and load it with the KB.

The index folder holds the KB version it was built from (``kb/``), the FAISS index with its id map (``dense/``) and
the answer calibrator (``calibrator.json``); the BM25 side is rebuilt from the KB on load (it is fast).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from apps.customer_service.bot import Calibrator
from apps.customer_service.knowledge import KBFormatError, entry_text, load_kb, read_kb, read_queries, save_kb
from apps.customer_service.retrieval import DenseIndex, HybridRetriever, IndexConfig
from apps.customer_service.schemas import KBBuild, KBEntry
from apps.customer_service.settings import CSSettings, RetrievalSettings
from core.engine import InferenceEngine


def embed_fn(engine: InferenceEngine) -> Callable[[Sequence[str]], np.ndarray]:
    """Text -> vector function of an engine: the retrieval adapter when the artifact has one, else the base."""
    kwargs = {"task": "retrieval"} if "retrieval" in engine.tasks else {"base": True}
    return lambda texts: engine.embed(texts, **kwargs)


def make_retriever(engine: InferenceEngine, rs: RetrievalSettings) -> HybridRetriever:
    """An empty retriever wired to the engine's embeddings."""
    cfg = IndexConfig(kind=rs.index_kind, approx_threshold=rs.approx_threshold, approx_kind=rs.approx_kind)
    return HybridRetriever(embed_fn(engine), engine.model.cfg.n_embd, cfg, mode=rs.mode, fusion=rs.fusion,
                           sparse_weight=rs.sparse_weight)


def index_entries(retriever: HybridRetriever, entries: Sequence[KBEntry], rs: RetrievalSettings,
                  rebuild: bool = True) -> None:
    """(Re)index entries: the dense side embeds the question (and paraphrases), BM25 reads question and answer."""
    ids = [e.id for e in entries]
    dense = [entry_text(e, with_answer=rs.index_answers) for e in entries]
    sparse = [entry_text(e, with_answer=True) for e in entries]
    (retriever.build if rebuild else retriever.upsert)(ids, dense, sparse)


def build_index(settings: CSSettings, engine: InferenceEngine, kb_path: Path | None = None,
                calibration: Sequence[tuple[str, str]] = ()) -> tuple[KBBuild, HybridRetriever]:
    """Ingest the KB, index it, fit the answer calibrator on (query, gold id) pairs if given (else on
    ``settings.calibration_path`` when that file exists), and save everything under the index folder."""
    build = load_kb(kb_path or settings.kb_path)
    if not build.entries:
        raise KBFormatError(f"{kb_path or settings.kb_path}: no entries to index ({build.n_read} read, {build.n_empty} "
                            "with an empty question or answer)")
    retriever = make_retriever(engine, settings.retrieval)
    index_entries(retriever, build.entries, settings.retrieval)
    folder = settings.index_folder
    save_kb(build, folder / "kb")  # creates the folder
    if retriever.mode != "sparse":
        retriever.dense.save(folder / "dense")
    if not calibration and settings.calibration_path and Path(settings.calibration_path).is_file():
        known = {e.id for e in build.entries} | {"-"}
        calibration = [(q, g) for q, g in read_queries(settings.calibration_path) if g in known]
    if calibration:
        fit_calibrator(retriever, calibration).save(folder / "calibrator.json")
    return build, retriever


def fit_calibrator(retriever: HybridRetriever, labelled: Sequence[tuple[str, str]]) -> Calibrator:
    """Fit P(top answer right) on queries with known gold ids."""
    results = retriever.search([q for q, _ in labelled], k=5)
    # gold "-" marks a question the KB cannot answer: any top answer is wrong
    correct = [bool(r) and gold != "-" and r[0].id == gold for r, (_, gold) in zip(results, labelled)]
    return Calibrator.fit(results, correct)


def load_index(settings: CSSettings, engine: InferenceEngine) -> tuple[KBBuild, HybridRetriever, Calibrator]:
    """Load what :func:`build_index` saved; the BM25 side is rebuilt from the KB."""
    folder = settings.index_folder
    build = read_kb(folder / "kb")
    retriever = make_retriever(engine, settings.retrieval)
    if retriever.mode != "sparse":
        retriever.dense = DenseIndex.load(folder / "dense")
    retriever.sparse.upsert([e.id for e in build.entries], [entry_text(e) for e in build.entries])
    return build, retriever, Calibrator.load(folder / "calibrator.json")
