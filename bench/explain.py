"""Benchmark of word attributions for the finance sentiment model. Prints one JSON object (and writes it to --out).

On a seeded sample of real sentences (Financial PhraseBank's test split, as ``trident fin train`` cuts it, or the
sentences of the captured feeds), each method explains ``log p(positive) - log p(negative)`` (what the dashboard and
the alerts show) and is measured for:

- ``sentences_per_s``: sentences explained per second (the fastest of ``--repeats`` passes after a warm-up);
- agreement with occlusion (the product's explanations, the reference): Spearman's rank correlation of the signed
  word attributions of each sentence (mean over the sentences of at least three words), and top-1 / top-3 agreement
  (the word of the largest |attribution| is the same; the share of occlusion's three largest that the method also
  has among its three largest).

Methods:

- ``occlusion_per_text``: the baseline, occlusion one text after another (each text's variants batched on their own);
- ``occlusion``: ``InferenceEngine.explain``, every variant of every text in one set of length-bucketed batches
  (the product's method); ``occlusion@RUNTIME`` the same on another runtime (``--runtimes``, e.g. onnx-int8: how far
  the served runtime's explanations are from torch fp32's);
- ``grad_x_input``: the gradient of the quantity with respect to each word-piece's token embedding, dotted with the
  embedding minus a baseline (zero), summed over the word's pieces; one forward and one backward pass per text;
- ``ig_N``: integrated gradients, the same with the gradient averaged over ``N`` points between the baseline and
  the embedding (midpoints), the ``N`` points of a text in one batch.

The gradient methods run on the torch fp32 model (``torch`` and the ONNX runtimes keep one; ``torch-int8`` has no
gradients), ``zero`` or the embedding of ``[PAD]``, ``[MASK]`` or ``[UNK]`` as baseline (``--baselines``). They were
measured and not adopted (docs/experiments.md): their code lives here, not in the product.

Usage: python bench/explain.py [--artifact DIR] [--n 200] [--source phrasebank|feeds] [--threads 1] [--repeats 2]
       [--steps 8] [--baselines zero unk] [--runtimes onnx-int8] [--methods NAME ...] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apps.common.settings import CoreSettings  # noqa: E402
from apps.finance_sentiment.model import EntityBlindModel, load_sentiment_model  # noqa: E402
from apps.finance_sentiment.pipeline import sentiment_task  # noqa: E402
from apps.finance_sentiment.scoring import split_sentences  # noqa: E402
from apps.finance_sentiment.settings import FinSettings  # noqa: E402
from core.config import InferenceConfig  # noqa: E402
from core.data import pad_ids  # noqa: E402
from core.engine import Ensemble, InferenceEngine  # noqa: E402

WEIGHTS = {"positive": 1.0, "negative": -1.0}  # the quantity the product explains
MAX_WORDS = 48  # as SentimentScorer asks

Attributions = list[list[tuple[str, float]]]


def gradient_explain(engine: InferenceEngine, texts: Sequence[str], task: str, weights: dict[str, float] | None,
                     max_words: int = 64, steps: int = 0, baseline: str = "zero") -> Attributions:
    """Word attributions in ``InferenceEngine.explain``'s format from gradients of the same quantity: ``steps`` 0,
    gradient x input; else integrated gradients over ``steps`` midpoints from a zero baseline. Only the text's
    word-pieces move ([CLS], [SEP] and the position embeddings stay); a word sums its pieces.

    Raises:
        ValueError: the engine serves torch-int8 (a quantised model has no gradients).
    """
    if engine.runtime == "torch-int8":
        raise ValueError("gradients need the fp32 model; torch-int8 has none")
    model, labels = engine.model, engine.tasks[task].labels
    w = torch.tensor([weights.get(lab, 0.0) for lab in labels]) if weights else None
    seqs = engine._encode(engine._check_texts(texts))
    alphas = torch.tensor([1.0]) if steps == 0 else (torch.arange(steps, dtype=torch.float32) + 0.5) / steps
    S = len(alphas)
    per = max(1, engine.batch_size // S)  # texts per pass: S rows each
    order = np.argsort([len(s) for s in seqs], kind="stable")
    wte = model.backbone.wte
    tokens: list[np.ndarray] = [np.zeros(0)] * len(seqs)
    with engine._lock:
        model.activate(task)
        for start in range(0, len(order), per):
            pos = order[start: start + per]
            x, m = pad_ids([seqs[i] for i in pos], engine.tok.pad_id)
            B, T = x.shape
            lengths = m.sum(1)
            body = m.clone()
            body[:, 0] = False
            body[torch.arange(B), lengths - 1] = False  # (B, T): the word-pieces, not [CLS], [SEP] or padding
            with torch.no_grad():
                emb = wte(x)  # (B, T, C)
                base = (torch.zeros_like(emb) if baseline == "zero"
                        else wte(torch.full_like(x, getattr(engine.tok, f"{baseline}_id"))))
                cls = (model.classify(task, x, m).argmax(-1) if w is None else None)
            a = alphas.view(S, 1, 1, 1)
            scaled = torch.where(body[None, :, :, None], base + a * (emb - base), emb)  # (S, B, T, C)
            inp = scaled.reshape(S * B, T, -1).requires_grad_(True)
            handle = wte.register_forward_hook(lambda mod, args, out, inp=inp: inp)
            try:
                with torch.enable_grad():
                    logp = torch.log_softmax(model.classify(task, x.repeat(S, 1), m.repeat(S, 1)).float(), -1)
                    target = logp @ w if w is not None else logp.gather(1, cls.repeat(S)[:, None])[:, 0]
                    (grad,) = torch.autograd.grad(target.sum(), inp)
            finally:
                handle.remove()
            g = grad.view(S, B, T, -1).mean(0)  # (B, T, C)
            attr = ((g * (emb - base)).sum(-1) * body).numpy()  # (B, T): gradient . (embedding - baseline)
            for k, i in enumerate(pos):
                tokens[i] = attr[k]
    out = []
    for seq, t in zip(seqs, tokens):
        groups, words = engine._words(seq, max_words)
        out.append([(word, float(t[g].sum())) for word, g in zip(words, groups)])
    return out


def _members(model) -> tuple[Ensemble, Callable[[Sequence[str]], list[str]]]:
    """The ensemble behind a loaded sentiment model, and how it reads texts."""
    if isinstance(model, EntityBlindModel):
        return model.model, model.read
    return model, list


def mixed(ens: Ensemble, fn: Callable[[InferenceEngine, str], Attributions]) -> Attributions:
    """``fn``'s attributions of each member mixed by the members' weights, as ``Ensemble.explain`` mixes them."""
    runs = [(m.weight, fn(m.engine, m.task)) for m in ens.members if m.weight > 0]
    return [[(word, float(sum(wt * run[t][i][1] for wt, run in runs))) for i, (word, _) in enumerate(words)]
            for t, words in enumerate(runs[0][1])]


def methods(ens: Ensemble, texts: list[str], steps: Sequence[int],
            baselines: Sequence[str]) -> dict[str, Callable[[], Attributions]]:
    """The methods by name, each a call that explains ``texts`` (already read as the model reads them)."""
    out = {
        "occlusion_per_text": lambda: [ens.explain([t], weights=WEIGHTS, max_words=MAX_WORDS)[0] for t in texts],
        "occlusion": lambda: ens.explain(texts, weights=WEIGHTS, max_words=MAX_WORDS),
    }
    for b in baselines:
        for n in (0, *steps):
            name = f"{'grad_x_input' if n == 0 else f'ig_{n}'}_{b}"
            out[name] = (lambda n=n, b=b: mixed(ens, lambda e, task: gradient_explain(
                e, texts, task, WEIGHTS, MAX_WORDS, steps=n, baseline=b)))
    return out


def agreement(ref: Attributions, got: Attributions) -> dict:
    """Spearman (mean over sentences of 3+ words), top-1 and top-3 agreement of ``got`` with ``ref``."""
    rho, top1, top3 = [], [], []
    for r, g in zip(ref, got):
        a, b = np.array([x for _, x in r]), np.array([x for _, x in g])
        if len(a) < 3:
            continue
        if np.ptp(a) > 0 and np.ptp(b) > 0:
            rho.append(spearmanr(a, b).statistic)
        top1.append(float(np.argmax(np.abs(a)) == np.argmax(np.abs(b))))
        top3.append(len(set(np.argsort(-np.abs(a))[:3]) & set(np.argsort(-np.abs(b))[:3])) / 3)
    return {"spearman": round(float(np.mean(rho)), 4), "top1": round(float(np.mean(top1)), 4),
            "top3": round(float(np.mean(top3)), 4), "sentences_compared": len(top1)}


def sample_sentences(source: str, data_dir: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` sentences (seeded) of PhraseBank's test split or of the captured feeds' titles and summaries."""
    if source == "phrasebank":
        texts = list(sentiment_task(data_dir / "financial_phrasebank" / "Sentences_50Agree.txt").test[0])
    else:
        import feedparser

        texts = []
        for f in sorted((data_dir / "finance_feeds").glob("*.*")):
            if f.suffix in (".rss", ".xml"):
                for e in feedparser.parse(str(f)).entries:
                    texts += [e.get("title", "").strip()] + split_sentences(e.get("summary", ""))
        texts = sorted({t for t in texts if len(t.split()) >= 3})
    rng = np.random.default_rng(seed)
    return [texts[i] for i in sorted(rng.choice(len(texts), size=min(n, len(texts)), replace=False))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", default=None, help="sentiment artifact (default: FinSettings' artifact)")
    ap.add_argument("--n", type=int, default=200, help="sentences")
    ap.add_argument("--source", choices=["phrasebank", "feeds"], default="phrasebank")
    ap.add_argument("--runtimes", nargs="*", default=[], help="also occlusion on these runtimes (e.g. onnx-int8)")
    ap.add_argument("--steps", type=int, nargs="*", default=[8], help="integrated-gradient steps to measure")
    ap.add_argument("--baselines", nargs="*", choices=["zero", "pad", "mask", "unk"], default=["zero", "unk"],
                    help="gradient baselines: the zero vector, or the embedding of [PAD], [MASK] or [UNK]")
    ap.add_argument("--methods", nargs="*", default=None, help="only these methods (the reference always runs)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default=None, help="also write the JSON here (e.g. bench/results/explain.json)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("core.engine").setLevel(logging.ERROR)  # a feed summary of 300 tokens is cut to 256: as served
    core = CoreSettings()
    artifact = Path(args.artifact) if args.artifact else FinSettings().artifact_dir
    ens, read = _members(load_sentiment_model(artifact, InferenceConfig(runtime="torch")))
    texts = read(sample_sentences(args.source, core.data_dir, args.n))
    ens.explain(texts[:1], weights=WEIGHTS, max_words=MAX_WORDS)  # warm-up
    todo = methods(ens, texts, args.steps, args.baselines)
    for runtime in args.runtimes:
        other, _ = _members(load_sentiment_model(artifact, InferenceConfig(runtime=runtime, threads=args.threads)))
        other.explain(texts[:1], weights=WEIGHTS, max_words=MAX_WORDS)  # warm-up: exports and opens the graph
        todo[f"occlusion@{runtime}"] = lambda other=other: other.explain(texts, weights=WEIGHTS, max_words=MAX_WORDS)
    results, ref = {}, None
    for name, fn in todo.items():
        if args.methods is not None and name not in ("occlusion_per_text", *args.methods):
            continue
        best, got = float("inf"), None
        for _ in range(args.repeats):
            t = time.perf_counter()
            got = fn()
            best = min(best, time.perf_counter() - t)
        if name == "occlusion_per_text":
            ref = got
        results[name] = {"sentences_per_s": round(len(texts) / best, 2), "seconds": round(best, 2),
                         **agreement(ref, got)}
        print(name, results[name], file=sys.stderr)
    words = [len(w) for w in ref]
    out = {"machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                       "python": platform.python_version(), "torch": torch.__version__},
           "artifact": str(artifact), "members": len(ens.members), "runtime": "torch", "source": args.source,
           "sentences": len(texts), "words_per_sentence": round(float(np.mean(words)), 1),
           "quantity": "log p(positive) - log p(negative)", "reference": "occlusion_per_text", "methods": results,
           "adopted": "occlusion"}
    text = json.dumps(out, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
