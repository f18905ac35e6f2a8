"""Benchmark of PII detection. Prints one JSON object (and writes it to --out): the detector of ``core.privacy``
(Presidio and spaCy) against the regex detector it replaced (``bench/experiments/privacy_regex_v1.py``, the
baseline), each scored on both parts of the labelled set (``data/privacy/dev.jsonl``, ``data/privacy/heldout.jsonl``):

- recall, precision, F1 and per-type recall as ``trident privacy eval`` computes them (``core.privacy_eval``);
- messages per second over the whole part, in one batch (``find_pii_many``) for the detector, one message at a time
  for the baseline (it has no batch path), by the wall clock and by this process's CPU time (the machine may be
  shared); models are loaded before timing;
- the detector with the ``news`` kind set (no names or places, so no spaCy pipeline), for speed.

Run with OMP_NUM_THREADS=1 to measure one core.

Usage: python bench/privacy.py [--out bench/results/privacy.json] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.experiments import privacy_regex_v1 as baseline  # noqa: E402
from core.privacy import find_pii_many  # noqa: E402
from core.privacy_eval import LabelledMessage, read_labelled, score  # noqa: E402

PARTS = {"dev": ROOT / "data/privacy/dev.jsonl", "heldout": ROOT / "data/privacy/heldout.jsonl"}


def _timed(detect: Callable[[list[str]], Sequence], texts: list[str], repeat: int) -> tuple[Sequence, float, float]:
    """The detections of the last run, and the best messages/s over ``repeat`` runs by wall clock and by CPU time."""
    best_wall = best_cpu = 0.0
    out: Sequence = []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        out = detect(texts)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        best_wall = max(best_wall, len(texts) / max(wall, 1e-9))
        best_cpu = max(best_cpu, len(texts) / max(cpu, 1e-9))
    return out, round(best_wall, 1), round(best_cpu, 1)


def _scored(messages: list[LabelledMessage], detect: Callable[[list[str]], Sequence], repeat: int) -> dict:
    texts = [m.text for m in messages]
    detect(texts[:8])  # load models outside the timing
    predicted, per_s, cpu_per_s = _timed(detect, texts, repeat)
    result = score(messages, predicted)
    return {**result, "messages_per_s": per_s, "messages_per_cpu_s": cpu_per_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench/results/privacy.json")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per measurement (the best counts)")
    args = ap.parse_args()

    detectors = {
        "presidio": find_pii_many,
        "regex_v1": lambda texts: [baseline.find_pii(text) for text in texts],
    }
    result: dict = {"machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                                "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}}
    for part, path in PARTS.items():
        messages = read_labelled(path)
        entry: dict = {"messages": len(messages), "without_pii": sum(not m.spans for m in messages)}
        for name, detect in detectors.items():
            entry[name] = _scored(messages, detect, args.repeat)
        texts = [m.text for m in messages]
        _, per_s, cpu_per_s = _timed(lambda t: find_pii_many(t, kinds="news"), texts, args.repeat)
        entry["presidio_news_kinds"] = {"messages_per_s": per_s, "messages_per_cpu_s": cpu_per_s}
        result[part] = entry
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        out = ROOT / args.out if not Path(args.out).is_absolute() else Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
