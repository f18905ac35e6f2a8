"""doc2query: the core's generative mode writes paraphrased questions for each KB entry, to enrich the index.

The generator is the core trained causally (next-token) on lines ``question : <entry question> paraphrase : <a real
user query for it>``; prompted with ``question : <q> paraphrase :`` it continues with a new phrasing, sampled
(top-p) several times per entry. Paraphrases are stored on the entry (``KBEntry.paraphrases``) and embedded with it.

Whether it helps is measured, not assumed (:func:`doc2query_experiment`): the user queries are split per entry into
a training part (the retrieval adapter and the generator learn from it) and a held-out part; retrieval is scored on
the held-out queries with the plain KB and with the enriched KB, and the enrichment is kept only when it is better.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

from apps.customer_service.schemas import KBEntry

__all__ = ["PROMPT", "doc2query_experiment", "enrich", "generator_lines", "paraphrase", "train_generator"]

log = logging.getLogger(__name__)

PROMPT = "question : {q} paraphrase :"


def generator_lines(pairs: Sequence[tuple[str, str]]) -> list[str]:
    """Training lines of the generator from (entry question, user query) pairs."""
    return [f"{PROMPT.format(q=q.strip())} {p.strip()}" for q, p in pairs if q.strip() and p.strip()]


def train_generator(pairs: Sequence[tuple[str, str]], out: Path, cfg=None, init_from: str = "minilm") -> Path:
    """Train the paraphrase generator (next-token objective only) and write its artifact."""
    from core.config import TrainConfig
    from core.recipes import pretrain

    cfg = cfg or TrainConfig(max_epochs=6, batch_size=16, lr=2e-4, head_lr=1e-3, max_length=64,
                             precision="32-true", patience=2, causal_fraction=1.0)
    return pretrain(generator_lines(pairs), out, cfg, init_from=init_from, val_fraction=0.1)


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def paraphrase(engine, questions: Sequence[str], n: int = 4, seed: int = 0, max_new_tokens: int = 24,
               top_p: float = 0.9, temperature: float = 0.9) -> list[list[str]]:
    """Up to ``n`` distinct generated phrasings of each question (empty ones and copies of it dropped)."""
    from core.generation import GenerationConfig

    prompts = [PROMPT.format(q=q.strip()) for q in questions]
    outs: list[list[str]] = [[] for _ in questions]
    for k in range(n):
        cfg = GenerationConfig(max_new_tokens=max_new_tokens, strategy="sample", top_p=top_p,
                               temperature=temperature, seed=seed + k)
        for i, text in enumerate(engine.generate(prompts, cfg)):
            text = text.split(" question :")[0].strip()
            seen = {_norm(questions[i])} | {_norm(x) for x in outs[i]}
            if len(_norm(text)) >= 3 and _norm(text) not in seen:
                outs[i].append(text)
    return outs


def enrich(entries: Sequence[KBEntry], engine, n: int = 4, seed: int = 0) -> list[KBEntry]:
    """The entries with generated paraphrases added to their own."""
    gen = paraphrase(engine, [e.question for e in entries], n=n, seed=seed)
    return [e.model_copy(update={"paraphrases": tuple(e.paraphrases) + tuple(g)}) for e, g in zip(entries, gen)]


def doc2query_experiment(entries: Sequence[KBEntry], queries: Sequence[tuple[str, str]], work: Path,
                         n_train_per_entry: int = 3, n_paraphrases: int = 4, retrieval_cfg=None, generator_cfg=None,
                         settings=None) -> dict:
    """Measure doc2query on queries that neither the retrieval adapter nor the generator saw.

    Args:
        entries: The KB.
        queries: (query, gold entry id) pairs; per entry, the first ``n_train_per_entry`` (in file order) train,
            the rest are held out.
        work: Folder for the two artifacts.
        n_paraphrases: Generated phrasings per entry.

    Returns:
        ``{"held_out": n, "plain": metrics, "enriched": metrics, "keep": bool, "examples": [...]}`` for the dense and
        the hybrid retriever (metrics: hit@1, hit@5, MRR).
    """
    from apps.customer_service.knowledge import entry_text
    from apps.customer_service.pipeline import index_entries, make_retriever, retrieval_metrics, train_cs
    from apps.customer_service.settings import CSSettings, RetrievalSettings
    from core.engine import InferenceEngine

    by_id = {e.id: e for e in entries}
    seen: dict[str, int] = {}
    train, held = [], []
    for q, g in queries:
        if g not in by_id:
            continue
        seen[g] = seen.get(g, 0) + 1
        (train if seen[g] <= n_train_per_entry else held).append((q, g))
    if not train or not held:
        raise ValueError(f"need training and held-out queries: got {len(train)} and {len(held)}; some entries must "
                         f"have more than {n_train_per_entry} queries")
    rs = (settings or CSSettings()).retrieval
    retr_art = train_cs(work / "retrieval", None, [(q, entry_text(by_id[g], rs.index_answers)) for q, g in train],
                        **({"retrieval_cfg": retrieval_cfg} if retrieval_cfg else {}))
    gen_art = train_generator([(by_id[g].question, q) for q, g in train], work / "generator", generator_cfg)
    enriched = enrich(entries, InferenceEngine(gen_art), n=n_paraphrases)
    engine = InferenceEngine(retr_art)
    report: dict = {"train_queries": len(train), "held_out": len(held), "paraphrases_per_entry": n_paraphrases}
    for mode in ("dense", "hybrid"):
        mode_rs = RetrievalSettings(**{**rs.model_dump(), "mode": mode})
        for name, kb in (("plain", entries), ("enriched", enriched)):
            retriever = make_retriever(engine, mode_rs)
            index_entries(retriever, kb, mode_rs)
            report[f"{mode}_{name}"] = retrieval_metrics(retriever, held)
    report["keep"] = report["hybrid_enriched"]["mrr"] > report["hybrid_plain"]["mrr"]
    report["examples"] = [{"question": e.question, "generated": list(e.paraphrases)} for e in enriched[:5]]
    return report
