"""Benchmark of the sentiment model's counterfactual fairness. Prints one JSON object (and writes it to --out): for
each artifact, how often swapping a company name (real or invented), a person's name or a gendered pronoun in a
PhraseBank test sentence flips its label, the mean |score shift|, and the test accuracy and macro-F1 of the same run
(``apps.finance_sentiment.fairness``, what ``trident fin fairness`` measures), and how fast each scores the test
sentences (an entity-blind model runs spaCy's NER first). The first artifact is the baseline:
the others (e.g. one trained entity-blind, ``FIN_TRAIN__ENTITY_BLIND=true``) are compared with it.

Usage: python bench/fin_fairness.py --artifacts artifacts/fin DIR ... [--out bench/results/fin_fairness.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apps.common.settings import CoreSettings  # noqa: E402
from apps.finance_sentiment.fairness import TARGET_FLIP_RATE, measure  # noqa: E402
from apps.finance_sentiment.model import load_sentiment_model, reads_entity_blind  # noqa: E402
from apps.finance_sentiment.names import load_nlp  # noqa: E402
from apps.finance_sentiment.pipeline import sentiment_task  # noqa: E402
from apps.finance_sentiment.scoring import SentimentScorer  # noqa: E402
from apps.finance_sentiment.settings import ScoringSettings  # noqa: E402


def run(artifact: Path, texts: list[str], labels: list[str], nlp, seed: int, variants: int) -> dict:
    scorer = SentimentScorer(load_sentiment_model(artifact), ScoringSettings(batch_size=64, explain=False))
    scorer.probabilities(texts[:64])  # warm-up (and spaCy's first load, for an entity-blind model)
    t = time.perf_counter()
    scorer.probabilities(texts)
    speed = round(len(texts) / (time.perf_counter() - t), 1)
    t = time.perf_counter()
    report = measure(scorer, texts, labels, nlp=nlp, seed=seed, variants=variants, top=5, artifact=str(artifact),
                     entity_blind=reads_entity_blind(artifact), data={})
    trained = json.loads((artifact / "fin_report.json").read_text()) if (artifact / "fin_report.json").is_file() else {}
    return {"artifact": str(artifact), "entity_blind": report.entity_blind,
            "seconds": round(time.perf_counter() - t, 1), "scoring_sentences_per_s": speed,
            "train_split": trained.get("split"), "test": report.test,
            "meets_target": report.meets_target,
            "overall": report.overall.model_dump(), "kinds": {k: f.model_dump() for k, f in report.kinds.items()},
            "worst_flips": [f.model_dump(include={"id", "kind", "swap", "before", "after", "shift"})
                            for f in report.worst_flips]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifacts", nargs="+", type=Path, required=True, help="the baseline first")
    p.add_argument("--data", type=Path, help="default: <data>/financial_phrasebank/Sentences_50Agree.txt")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--variants", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fin_fairness.json")
    args = p.parse_args()
    data = args.data or CoreSettings().data_dir / "financial_phrasebank" / "Sentences_50Agree.txt"
    task = sentiment_task(data, "phrasebank")
    texts, labels = task.test[0], [task.labels[i] for i in task.test[1]]
    nlp = load_nlp()
    runs = [run(a, texts, labels, nlp, args.seed, args.variants) for a in args.artifacts]
    base = runs[0]
    for r in runs[1:]:
        r["against_baseline"] = {
            "flip_rate": round(r["overall"]["flip_rate"] - base["overall"]["flip_rate"], 6),
            "mean_abs_shift": round(r["overall"]["mean_abs_shift"] - base["overall"]["mean_abs_shift"], 6),
            "accuracy": round(r["test"]["accuracy"] - base["test"]["accuracy"], 6),
            "macro_f1": round(r["test"]["macro_f1"] - base["test"]["macro_f1"], 6),
            "scoring_speed": round(r["scoring_sentences_per_s"] / base["scoring_sentences_per_s"], 2)}
    out = {"machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                       "python": platform.python_version(), "torch": torch.__version__},
           "data": {"path": str(data), "split": "test", "seed": task.source["seed"], "sentences": len(texts)},
           "seed": args.seed, "variants": args.variants, "target_flip_rate": TARGET_FLIP_RATE, "runs": runs}
    text = json.dumps(out, indent=2)
    args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
