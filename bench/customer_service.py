"""Benchmark of the customer-service bot on a generated 100,000-entry knowledge base. Prints one JSON object (and
writes it to --out):

- index build: embedding time of the whole KB (fp32), int8 against fp32 embedding speed on a 5,000-entry sample,
  and FAISS build time per index type;
- Flat (exact) against IVF and HNSW: recall@10 of the approximate indexes against Flat, queries/s of each;
- reply latency p50 / p95 of the whole path (redact + intent + hybrid retrieval + reply) over the large KB, with the
  index `auto` picks, against the same path over a Flat index.

Usage: python bench/customer_service.py [--entries 100000] [--queries 200] [--out bench/results/customer_service.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from apps.customer_service.bot import Bot  # noqa: E402
from apps.customer_service.retrieval import DenseIndex, HybridRetriever, IndexConfig  # noqa: E402
from apps.customer_service.schemas import KBEntry  # noqa: E402
from apps.customer_service.settings import CSSettings  # noqa: E402
from core.config import InferenceConfig  # noqa: E402

ADJ = ["premium", "basic", "student", "business", "joint", "travel", "green", "family", "senior", "digital", "gold",
       "silver", "youth", "savings", "credit"]
NOUN = ["card", "account", "loan", "mortgage", "overdraft", "insurance policy", "pension", "ISA", "bond", "wallet",
        "subscription", "cheque book", "standing order", "direct debit", "transfer", "deposit", "line of credit",
        "gift card", "fx account", "trading account"]
ACTION = ["cancel", "upgrade", "downgrade", "open", "close", "freeze", "unfreeze", "renew", "transfer", "report a "
          "problem with", "change the limit of", "get a statement for", "add a person to", "remove a person from",
          "pay off", "top up", "link", "unlink", "switch", "dispute a charge on"]
ASPECT = ["fees", "limits", "interest rate", "eligibility rules", "cancellation terms", "processing time",
          "documents needed", "tax rules", "currency options", "protection", "rewards", "penalties", "minimum balance",
          "opening hours of support for", "security features"]
CHANNEL = ["in the app", "online", "by phone", "at a branch", "while abroad", "as a non-resident", "for a minor",
           "with a joint holder", "after moving house", "before travelling", "for my company", "on a weekend"]


def generated_kb(n: int, seed: int = 0) -> list[KBEntry]:
    """``n`` distinct FAQ entries from templates (a fictional bank)."""
    qs = [f"How do I {a} my {j} {p} {c}?" for a, j, p, c in itertools.product(ACTION, ADJ, NOUN, CHANNEL)]
    qs += [f"What are the {s} of the {j} {p} {c}?" for s, j, p, c in itertools.product(ASPECT, ADJ, NOUN, CHANNEL)]
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(qs), size=min(n, len(qs)), replace=False)
    return [KBEntry(id=f"gen-{i}", question=qs[k], answer=f"Answer {i}: follow the steps for '{qs[k][:-1]}' in the "
                    f"help centre, section {k % 97}.", category="generated") for i, k in enumerate(pick)]


def percentile_ms(xs: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(xs) * 1000, q)), 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--out", default="bench/results/customer_service.json")
    args = ap.parse_args()
    from apps.customer_service.index import embed_fn
    from core.engine import InferenceEngine

    settings = CSSettings()
    art = settings.artifact_dir
    if not (art / "config.json").is_file():
        raise SystemExit(f"error: artifact {art} missing: run `trident cs train` (or `make artifacts`) first")
    kb = generated_kb(args.entries)
    texts = [e.question for e in kb]
    rng = np.random.default_rng(1)
    probes = [kb[i] for i in rng.choice(len(kb), args.queries, replace=False)]
    # queries a customer would type: the question reworded (dropped words, lower case, no question mark)
    queries = [" ".join(w for j, w in enumerate(p.question.lower().rstrip("?").split()) if j % 5 != 2)
               for p in probes]
    result: dict = {"machine": {"cpu_count": os.cpu_count()}, "entries": len(kb), "queries": len(queries)}

    engines = {"fp32": InferenceEngine(art, batch_size=256),
               "int8": InferenceEngine(art, InferenceConfig(runtime="torch-int8"), batch_size=256)}
    # the whole KB is embedded once (fp32, what the index holds); int8 embedding speed on a 5,000-entry sample,
    # against fp32 on the same sample
    t = time.perf_counter()
    base = embed_fn(engines["fp32"])(texts)
    result["embed_seconds_fp32_all"] = round(time.perf_counter() - t, 1)
    sample = texts[:5000]
    for name, eng in engines.items():
        t = time.perf_counter()
        embed_fn(eng)(sample)
        result[f"embed_per_s_{name}_sample"] = round(len(sample) / (time.perf_counter() - t), 1)
    qv = embed_fn(engines["fp32"])(queries)

    indexes, exact = {}, None
    for kind in ("flat", "ivf", "hnsw"):
        idx = DenseIndex(base.shape[1], IndexConfig(kind=kind))
        t = time.perf_counter()
        idx.build([e.id for e in kb], base)
        build_s = time.perf_counter() - t
        t = time.perf_counter()
        res = idx.search(qv, 10)
        qps = len(qv) / (time.perf_counter() - t)
        ids = [[i for i, _ in r] for r in res]
        if kind == "flat":
            exact = ids
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact)]))
        hit = float(np.mean([p.id in r[:1] for p, r in zip(probes, ids)]))
        indexes[kind] = {"build_seconds": round(build_s, 2), "queries_per_s": round(qps, 1),
                         "recall@10_vs_flat": round(recall, 4), "hit@1_on_probe_queries": round(hit, 4)}
    result["indexes"] = indexes

    latency = {}
    intents = engines["fp32"]
    for kind in ("auto", "flat"):
        retriever = HybridRetriever(embed_fn(intents), base.shape[1], IndexConfig(kind=kind),
                                    mode=settings.retrieval.mode, sparse_weight=settings.retrieval.sparse_weight)
        retriever.dense.build([e.id for e in kb], base)
        retriever.sparse.upsert([e.id for e in kb], [e.question + " " + e.answer for e in kb])
        retriever.sparse.search(["warm up"], 1)
        from apps.customer_service.bot import intent_from_probs
        from apps.customer_service.intents import load_intents

        ensemble = load_intents(intents)

        def intent_fn(text, ensemble=ensemble):
            return intent_from_probs(ensemble.labels, ensemble.classify_proba([text])[0])

        # the intent ensemble as served: a distilled artifact's student sits in a sub-artifact of its own
        bot = Bot(retriever, {e.id: e for e in kb}, settings.dialog,
                  intent_fn=intent_fn if ensemble is not None else None)
        times, correct = [], 0
        for p, q in zip(probes, queries):
            t = time.perf_counter()
            r = bot.reply(q)
            times.append(time.perf_counter() - t)
            correct += bool(r.hits) and r.hits[0].entry.id == p.id
        latency[kind] = {"index": retriever.dense.kind, "p50_ms": percentile_ms(times, 50),
                         "p95_ms": percentile_ms(times, 95), "hit@1": round(correct / len(probes), 4)}
    result["reply_latency"] = latency
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
