"""Does the shared core lose accuracy by learning several tasks? Evaluates the multi-task artifact against the same
backbone fine-tuned on each task alone, on test data none of them trained on: Banking77 ``test_dev.csv`` and the
seeded PhraseBank test split. Prints one JSON object (and writes it to --out).

Usage: python bench/multitask.py [--out bench/results/multitask.json]   (after `make artifacts`)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from apps.common.settings import CoreSettings  # noqa: E402
from core.engine import InferenceEngine  # noqa: E402
from core.metrics import accuracy, precision_recall_f1  # noqa: E402
from core.recipes import banking77_task, phrasebank_task  # noqa: E402

PAIRS = {"banking77": "text-banking77", "phrasebank": "text-phrasebank"}


def scores(artifact: Path, task: str, texts: list[str], y: list[int]) -> dict:
    eng = InferenceEngine(artifact)
    pred = eng.classify_proba(texts, task).argmax(-1)
    return {"accuracy": round(accuracy(y, pred), 4), "macro_f1": round(precision_recall_f1(y, pred)["f1"], 4),
            "n": len(y)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results/multitask.json")
    args = ap.parse_args()
    s = CoreSettings()
    tests = {"banking77": banking77_task(s.data_dir).test, "phrasebank": phrasebank_task(s.data_dir).test}
    result = {}
    for task, single in PAIRS.items():
        texts, y = tests[task]
        multi = scores(s.artifacts_dir / "text-multitask", task, texts, y)
        alone = scores(s.artifacts_dir / single, task, texts, y)
        result[task] = {"multitask": multi, "single_task": alone,
                        "delta_accuracy_points": round(100 * (multi["accuracy"] - alone["accuracy"]), 2),
                        "delta_macro_f1_points": round(100 * (multi["macro_f1"] - alone["macro_f1"]), 2)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
