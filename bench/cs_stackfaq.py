"""StackFAQ retrieval on paraphrases never seen in training: 5-fold cross-validation over the dev paraphrases.

Each thread has five dev paraphrases; fold f holds out the f-th paraphrase of every thread and trains the retrieval
adapter on the other four (query -> thread question). BM25 (stemmed, questions and answers), off-the-shelf
all-MiniLM-L6-v2 (cosine over the questions) and the hybrid of each are scored on the same held-out queries.
Prints one JSON object (and writes it to --out).

Usage: python bench/cs_stackfaq.py [--folds 5] [--out bench/results/cs_stackfaq.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from apps.customer_service.index import index_entries, make_retriever  # noqa: E402
from apps.customer_service.knowledge import entry_text, load_kb, read_queries  # noqa: E402
from apps.customer_service.pipeline import retrieval_metrics, train_cs  # noqa: E402
from apps.customer_service.settings import CSSettings, RetrievalSettings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--out", default="bench/results/cs_stackfaq.json")
    args = ap.parse_args()
    from core.engine import InferenceEngine
    from core.recipes import new_text_model

    settings = CSSettings()
    d = settings.core.data_dir / "stackfaq"
    kb = load_kb(d / "faq_threads.jsonl").entries
    by_id = {e.id: e for e in kb}
    queries = read_queries(d / "queries_dev.jsonl")
    position: dict[str, int] = defaultdict(int)
    fold_of = []
    for _, gold in queries:
        fold_of.append(position[gold] % args.folds)
        position[gold] += 1

    model, tok = new_text_model("minilm")
    base_engine = InferenceEngine.from_model(model, tok)
    systems = {"bm25": RetrievalSettings(mode="sparse"), "minilm": RetrievalSettings(mode="dense"),
               "minilm+bm25": RetrievalSettings(mode="hybrid")}
    per_fold: dict[str, list[dict]] = defaultdict(list)
    for f in range(args.folds):
        test = [q for q, k in zip(queries, fold_of) if k == f]
        train = [q for q, k in zip(queries, fold_of) if k != f]
        for name, rs in systems.items():
            r = make_retriever(base_engine, rs)
            index_entries(r, kb, rs)
            per_fold[name].append(retrieval_metrics(r, test))
        with tempfile.TemporaryDirectory() as tmp:
            pairs = [(q, entry_text(by_id[g], with_answer=False)) for q, g in train]
            art = train_cs(Path(tmp) / "cs", None, pairs)  # the settings' retrieval training
            eng = InferenceEngine(art)
            for name, rs in (("trident", RetrievalSettings(mode="dense")),
                             ("trident+bm25", RetrievalSettings(mode="hybrid"))):
                r = make_retriever(eng, rs)
                index_entries(r, kb, rs)
                per_fold[name].append(retrieval_metrics(r, test))
        print(f"fold {f}: " + ", ".join(f"{k} {v[-1]['hit@1']:.3f}" for k, v in per_fold.items()), file=sys.stderr)
    result = {"protocol": f"{args.folds}-fold over the dev paraphrases (held-out paraphrase position per thread)",
              "n_queries": len(queries), "kb_entries": len(kb)}
    for name, folds in per_fold.items():
        result[name] = {m: round(float(np.mean([x[m] for x in folds])), 4) for m in ("hit@1", "hit@5", "mrr")}
        result[name]["hit@1_per_fold"] = [round(x["hit@1"], 4) for x in folds]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
