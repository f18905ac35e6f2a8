"""Benchmark of the core. Prints one JSON object (and writes it to --out), each figure beside its baseline measured
in the same run:

- training throughput: the Lightning loop (LitCore + Trainer) against a plain PyTorch loop over the same model, data,
  optimiser and precision; and fp32 against bf16-mixed;
- inference: embed and classify sentences/s, fp32 against int8 dynamic quantisation, with the accuracy of both on
  test data the model never saw (Banking77 test_dev, PhraseBank test split) when the artifacts are present;
- generation: tokens/s with and without the KV cache (identical outputs checked).

Usage: python bench/core.py [--out bench/results/core.json] [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from apps.common.settings import CoreSettings  # noqa: E402
from core.config import InferenceConfig, TrainConfig  # noqa: E402
from core.data import ListDataset, MultiTaskDataModule, TaskData  # noqa: E402
from core.tasks import TaskSpec  # noqa: E402


def _texts(settings: CoreSettings, n: int) -> tuple[list[str], list[int]]:
    """Banking77 training texts when the data is there, else the sample intents repeated."""
    from core.data import read_labelled_texts

    path = settings.data_dir / "banking77" / "train.csv"
    if not path.is_file():
        path = Path(__file__).resolve().parents[1] / "samples" / "intents.csv"
    texts, raw = read_labelled_texts(path, "csv")
    labels = sorted(set(raw))
    reps = n // len(texts) + 1
    return (texts * reps)[:n], ([labels.index(r) for r in raw] * reps)[:n]


def _fresh_model(n_classes: int):
    from core.recipes import new_text_model

    torch.manual_seed(0)
    model, tok = new_text_model("minilm")
    model.add_task(TaskSpec(name="bench", kind="classify", labels=tuple(str(i) for i in range(n_classes))))
    return model, tok


def bench_training(settings: CoreSettings, steps: int, warmup: int = 5, batch_size: int = 32) -> dict:
    """Tokens/s of the same fine-tuning run through Lightning and through a plain loop."""
    import lightning as L

    from core.lit import LitCore

    texts, ys = _texts(settings, batch_size * (steps + warmup))
    out = {}
    for precision in ("32-true", "bf16-mixed"):
        # ---- plain PyTorch loop
        model, tok = _fresh_model(max(ys) + 1)
        cfg = TrainConfig(batch_size=batch_size, precision=precision, max_steps=steps + warmup, max_length=64)
        dm = MultiTaskDataModule([TaskData(TaskSpec(name="bench", kind="classify",
                                                    labels=model.tasks["bench"].labels), ListDataset(texts, ys))],
                                 tok, batch_size=batch_size, max_length=64, seed=0)
        batches = list(dm.train_dataloader())
        n_tokens = [int(b.mask.sum()) for b in batches]
        lit = LitCore(model, cfg)
        opt = torch.optim.AdamW(model.parameters(), lr=5e-5)
        model.train()
        t0 = None
        for i, b in enumerate(batches[: steps + warmup]):
            if i == warmup:
                t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision.startswith("bf16")):
                loss, _ = lit.task_loss(b)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        plain_s = time.perf_counter() - t0
        plain_tps = sum(n_tokens[warmup: steps + warmup]) / plain_s

        # ---- Lightning loop over the same batches
        model, tok = _fresh_model(max(ys) + 1)
        lit = LitCore(model, cfg)

        class Timer(L.Callback):
            t0 = t1 = None

            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                if batch_idx == warmup:
                    Timer.t0 = time.perf_counter()

            def on_train_end(self, trainer, pl_module):
                Timer.t1 = time.perf_counter()

        trainer = L.Trainer(max_steps=steps + warmup, precision=precision, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, callbacks=[Timer()],
                            num_sanity_val_steps=0, limit_val_batches=0)
        trainer.fit(lit, train_dataloaders=dm.train_dataloader())
        lit_s = Timer.t1 - Timer.t0
        lit_tps = sum(n_tokens[warmup: steps + warmup]) / lit_s
        out[precision] = {"plain_tokens_per_s": round(plain_tps, 1), "lightning_tokens_per_s": round(lit_tps, 1),
                          "lightning_overhead_pct": round(100 * (plain_tps - lit_tps) / plain_tps, 2),
                          "steps_timed": steps, "batch_size": batch_size}
    out["bf16_speedup_vs_fp32"] = round(out["bf16-mixed"]["plain_tokens_per_s"] / out["32-true"]["plain_tokens_per_s"],
                                        3)
    return out


def _best_seconds(fn, repeats: int = 3) -> float:
    """Fastest of ``repeats`` timed calls (the least disturbed by the rest of the machine)."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _eval_sets(settings: CoreSettings) -> dict[str, tuple[list[str], list[int]]]:
    from core.recipes import banking77_task, phrasebank_task

    sets = {}
    try:
        sets["banking77"] = banking77_task(settings.data_dir).test
        sets["phrasebank"] = phrasebank_task(settings.data_dir).test
    except Exception as exc:  # noqa: BLE001 - the data may be absent; the figure is then skipped
        print(f"note: no evaluation data ({exc})", file=sys.stderr)
    return sets


def bench_inference(settings: CoreSettings, n: int = 512) -> dict:
    """Sentences/s of embed and classify, fp32 against int8, and accuracy of both on unseen test data."""
    from core.engine import InferenceEngine
    from core.metrics import accuracy

    art = settings.artifacts_dir / "text-multitask"
    if not (art / "config.json").is_file():
        return {"skipped": f"artifact {art} missing: run `make artifacts`"}
    texts, _ = _texts(settings, n)
    sets = _eval_sets(settings)
    out = {}
    for name, runtime in (("fp32", "torch"), ("int8", "torch-int8")):
        eng = InferenceEngine(art, InferenceConfig(runtime=runtime), batch_size=64)
        eng.embed(texts)  # warm-up: the first pass allocates and picks kernels
        eng.classify_proba(texts, "banking77")
        emb = n / _best_seconds(lambda e=eng: e.embed(texts))
        cls = n / _best_seconds(lambda e=eng: e.classify_proba(texts, "banking77"))
        accs = {}
        for task, (tx, y) in sets.items():
            accs[task] = round(accuracy(y, eng.classify_proba(tx, task).argmax(-1)), 4)
        out[name] = {"embed_sentences_per_s": round(emb, 1), "classify_sentences_per_s": round(cls, 1),
                     "accuracy": accs}
    out["int8_speedup_embed"] = round(out["int8"]["embed_sentences_per_s"] / out["fp32"]["embed_sentences_per_s"], 3)
    out["int8_speedup_classify"] = round(out["int8"]["classify_sentences_per_s"] /
                                         out["fp32"]["classify_sentences_per_s"], 3)
    out["int8_accuracy_loss_points"] = {k: round(100 * (out["fp32"]["accuracy"][k] - out["int8"]["accuracy"][k]), 2)
                                        for k in out["fp32"]["accuracy"]}
    return out


def bench_generation(settings: CoreSettings, new_tokens: int = 128, batch: int = 4) -> dict:
    """Tokens/s of greedy decoding with and without the KV cache, on the pretrained artifact (or MiniLM)."""
    from core.artifacts import load_artifact
    from core.generation import GenerationConfig, generate
    from core.recipes import new_text_model

    art = settings.artifacts_dir / "text-pretrain"
    if (art / "config.json").is_file():
        model, tok, _ = load_artifact(art)
        source = str(art)
    else:
        model, tok = new_text_model("minilm")
        source = "all-MiniLM-L6-v2 (untrained LM head)"
    model.eval()
    prompts = [tok.encode(p)[:-1] for p in ["how do i", "my card was", "the bank said", "shares of the company"]]
    prompts = (prompts * batch)[:batch]
    out, ids = {"model": source, "new_tokens": new_tokens, "batch": batch}, {}
    for cache in (True, False):
        cfg = GenerationConfig(max_new_tokens=new_tokens, use_cache=cache, stop_ids=())  # never stop early
        generate(model, prompts, GenerationConfig(max_new_tokens=4, use_cache=cache))
        t = time.perf_counter()
        ids[cache] = generate(model, prompts, cfg, pad_id=tok.pad_id)
        dt = time.perf_counter() - t
        out["with_cache" if cache else "without_cache"] = {"tokens_per_s": round(batch * new_tokens / dt, 1)}
    out["kv_cache_speedup"] = round(out["with_cache"]["tokens_per_s"] / out["without_cache"]["tokens_per_s"], 2)
    out["identical_outputs"] = ids[True] == ids[False]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench/results/core.json")
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    settings = CoreSettings()
    torch.manual_seed(0)
    np.random.seed(0)
    result = {"machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                          "platform": platform.platform(), "torch": torch.__version__},
              "training": bench_training(settings, args.steps),
              "inference": bench_inference(settings),
              "generation": bench_generation(settings)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
