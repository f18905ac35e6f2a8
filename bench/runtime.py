"""Benchmark of the serving runtimes, side by side in one run. Prints one JSON object (and writes it to --out).

For the finance sentiment model (Financial PhraseBank's test split, as ``trident fin train`` cuts it) and the
customer-service intent model (Banking77 ``test_dev.csv``), when their artifacts are there: sentences/s and accuracy
of each runtime (torch fp32, torch int8, ONNX Runtime fp32, ONNX Runtime int8), each with and without length
bucketing (batches of texts sorted by token length, or in input order), with the largest probability difference
from torch fp32 and the share of the same labels. ``served`` names the fastest that loses at most 0.5 accuracy points
against torch fp32 on the sentences measured.

Baseline in the same run: a sentence-transformers-style encode of the same finance sentences with all-MiniLM-L6-v2
(batch 64, texts sorted by length, at most 256 tokens, mean pooling and L2 normalisation), through
sentence-transformers when it is installed, else through the core's own loader of the same weights
(``core.pretrained``); the JSON names which.

Every figure runs on ``--threads`` threads (torch's and ONNX Runtime's intra-op threads); timings are the fastest of
``--repeats`` passes over the sentences after a warm-up. The artifacts: ``--fin-artifact`` / ``--cs-artifact``, else
``<artifacts>/fin`` (``cs``), else the quick ones of ``make demo`` under ``<var>/demo/artifacts``; without a finance
artifact, all-MiniLM-L6-v2 with an untrained sentiment head stands in (speeds only: its accuracy is chance). The ONNX
export beside an artifact is made on its first ONNX load (its time is reported) and reused after.

Usage: python bench/runtime.py [--n 200] [--threads 2] [--repeats 3] [--out bench/results/runtime.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from apps.common.settings import CoreSettings  # noqa: E402
from core.config import InferenceConfig  # noqa: E402

RUNTIMES = ("torch", "torch-int8", "onnx", "onnx-int8")
MAX_LOSS_POINTS = 0.5  # accuracy a runtime may lose against torch fp32 and still be served


def _best_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Fastest of ``repeats`` timed calls (the least disturbed by the rest of the machine)."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _sample(texts: list[str], labels: list[str], n: int) -> tuple[list[str], list[str]]:
    """``n`` of the pairs (all when ``n`` is 0), drawn with a fixed seed so that every class can appear."""
    if not n or n >= len(texts):
        return texts, labels
    pick = np.random.default_rng(0).permutation(len(texts))[:n]
    return [texts[i] for i in pick], [labels[i] for i in pick]


def _first_artifact(*folders: Path) -> Path | None:
    return next((f for f in folders if (f / "config.json").is_file() or (f / "ensemble.json").is_file()), None)


def compare(load: Callable[[InferenceConfig], tuple[Callable[[list[str]], np.ndarray], Sequence[str]]],
            texts: list[str], gold: list[str], threads: int, repeats: int) -> dict:
    """Every runtime with and without length bucketing on ``texts``: ``load(config)`` gives the model's
    ``classify_proba`` and its label names."""
    out: dict = {}
    ref = None
    for runtime in RUNTIMES:
        for bucket in (True, False):
            t = time.perf_counter()
            proba, labels = load(InferenceConfig(runtime=runtime, threads=threads, bucket_by_length=bucket))
            loaded = time.perf_counter() - t
            proba(texts[:64])  # warm-up: the first pass allocates and picks kernels
            seconds = _best_seconds(lambda f=proba: f(texts), repeats)
            p = proba(texts)
            pred = [labels[i] for i in p.argmax(-1)]
            row = {"sentences_per_s": round(len(texts) / seconds, 1),
                   "accuracy": round(float(np.mean([a == b for a, b in zip(pred, gold)])), 4),
                   "load_seconds": round(loaded, 1)}
            if ref is None:
                ref = (p, pred)
            else:
                row["max_abs_prob_diff_vs_torch_fp32"] = float(f"{np.abs(p - ref[0]).max():.3g}")
                row["same_label_as_torch_fp32"] = round(float(np.mean([a == b for a, b in zip(pred, ref[1])])), 4)
            out.setdefault(runtime, {})["bucketed" if bucket else "input_order"] = row
    base = out["torch"]["bucketed"]["accuracy"]
    options = [(v["sentences_per_s"], runtime, how) for runtime, ways in out.items() for how, v in ways.items()
               if 100 * (base - v["accuracy"]) <= MAX_LOSS_POINTS]
    speed, runtime, how = max(options)
    out["served"] = {"runtime": runtime, "bucket_by_length": how == "bucketed", "sentences_per_s": speed,
                     "accuracy_loss_points": round(100 * (base - out[runtime][how]["accuracy"]), 2),
                     "rule": f"fastest with at most {MAX_LOSS_POINTS} accuracy points lost against torch fp32 "
                             "(bucketed) on these sentences"}
    return out


def bench_finance(settings: CoreSettings, artifact: Path | None, n: int, threads: int, repeats: int,
                  scratch: Path) -> tuple[dict, list[str]]:
    """The runtimes on the sentiment model and PhraseBank's test split; also returns the sentences measured."""
    from apps.finance_sentiment.model import TASK, model_input, reads_entity_blind
    from apps.finance_sentiment.pipeline import sentiment_task
    from core.artifacts import save_artifact
    from core.engine import Ensemble
    from core.recipes import new_text_model
    from core.tasks import TaskSpec

    data = settings.data_dir / "financial_phrasebank" / "Sentences_50Agree.txt"
    if not data.is_file():
        return {"skipped": f"{data} missing"}, []
    task = sentiment_task(data)
    texts, gold = _sample(task.test[0], [task.labels[y] for y in task.test[1]], n)
    out: dict = {"data": f"{data} (test split)", "n": len(texts)}
    if artifact is None:
        torch.manual_seed(0)
        model, tok = new_text_model("minilm")
        model.add_task(TaskSpec(name="sentiment", kind="classify", labels=task.labels))
        artifact = save_artifact(scratch / "fin-untrained", model.eval(), tok)
        out["note"] = "no finance artifact: all-MiniLM-L6-v2 with an untrained sentiment head (accuracy is chance)"
    out["artifact"] = str(artifact)
    raw = texts
    if reads_entity_blind(artifact):  # names are blinded once, outside the timing: the runtimes differ in the model
        out["entity_blind"] = True
        texts = model_input(True)(texts)

    def load(cfg: InferenceConfig):
        model = Ensemble.load(artifact, TASK, cfg, batch_size=64)
        out["members"] = len(model.members)
        return model.classify_proba, model.labels

    out["runtimes"] = compare(load, texts, gold, threads, repeats)
    return out, raw


def bench_intents(settings: CoreSettings, artifact: Path | None, n: int, threads: int, repeats: int) -> dict:
    """The runtimes on the cs artifact's intent model and Banking77 ``test_dev.csv``."""
    from apps.customer_service.intents import TASK, load_intents
    from core.data import read_labelled_texts
    from core.engine import InferenceEngine

    data = settings.data_dir / "banking77" / "test_dev.csv"
    if artifact is None:
        return {"skipped": "no cs artifact (`trident cs train` or `make artifacts`)"}
    if not data.is_file():
        return {"skipped": f"{data} missing"}
    texts, gold = _sample(*read_labelled_texts(data, "csv"), n)

    def load(cfg: InferenceConfig):
        intents = load_intents(InferenceEngine(artifact, cfg, batch_size=64))
        return (lambda xs: intents.classify_proba(xs, TASK)), intents.labels

    return {"artifact": str(artifact), "data": str(data), "n": len(texts),
            "runtimes": compare(load, texts, gold, threads, repeats)}


def bench_baseline(texts: list[str], repeats: int) -> dict:
    """Sentences/s of a sentence-transformers-style encode of ``texts`` with all-MiniLM-L6-v2 at batch 64."""
    from core.pretrained import minilm_dir

    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        SentenceTransformer = None
    if SentenceTransformer is not None:
        st = SentenceTransformer(str(minilm_dir()), device="cpu")
        encode = lambda: st.encode(texts, batch_size=64, normalize_embeddings=True)  # noqa: E731
        name = "sentence-transformers SentenceTransformer.encode, all-MiniLM-L6-v2, batch 64"
    else:
        from core.engine import InferenceEngine
        from core.recipes import new_text_model

        model, tok = new_text_model("minilm")
        engine = InferenceEngine.from_model(model, tok, max_length=256, batch_size=64)
        encode = lambda: engine.embed(texts)  # noqa: E731
        name = ("all-MiniLM-L6-v2 through core.pretrained (sentence-transformers is not installed): torch fp32 "
                "forward, mean pooling and L2 normalisation, texts sorted by length, batch 64, at most 256 tokens, "
                "as SentenceTransformer.encode does")
    encode()  # warm-up
    return {"name": name, "n": len(texts), "sentences_per_s": round(len(texts) / _best_seconds(encode, repeats), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench/results/runtime.json")
    ap.add_argument("--n", type=int, default=0, help="sentences per data set (0: the whole test split)")
    ap.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes; the fastest counts")
    ap.add_argument("--fin-artifact", type=Path, help="default: <artifacts>/fin, else the demo's")
    ap.add_argument("--cs-artifact", type=Path, help="default: <artifacts>/cs, else the demo's")
    args = ap.parse_args()
    settings = CoreSettings()
    torch.set_num_threads(args.threads)
    demo = settings.var_dir / "demo" / "artifacts"

    def artifact(given: Path | None, app: str) -> Path | None:
        return given or _first_artifact(settings.artifacts_dir / app, demo / "real" / app, demo / "samples" / app)

    with tempfile.TemporaryDirectory() as scratch:
        fin, sentences = bench_finance(settings, artifact(args.fin_artifact, "fin"), args.n, args.threads,
                                       args.repeats, Path(scratch))
        result = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                              "threads": args.threads},
                  "finance": fin,
                  "intents": bench_intents(settings, artifact(args.cs_artifact, "cs"), args.n, args.threads,
                                           args.repeats),
                  "baseline": bench_baseline(sentences, args.repeats) if sentences else {"skipped": "no sentences"}}
    import onnxruntime

    result["machine"]["onnxruntime"] = onnxruntime.__version__
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
