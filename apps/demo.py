"""``trident demo``: the core end to end in the terminal: trains what is missing with a quick preset (fine-tuning
all-MiniLM-L6-v2 on the sample intents of a fictional bank, a short continued pretraining for generation; the
benchmark artifacts of ``make artifacts`` when they are there), then classifies, embeds and generates.
"""

from __future__ import annotations

import csv
from pathlib import Path

from rich.console import Console
from rich.table import Table

from apps.common.settings import REPO_ROOT, CoreSettings
from core.config import TrainConfig

SAMPLES = REPO_ROOT / "samples"

QUERIES = ["I think someone took my card on the train", "why is the money I sent still not there?",
           "what rate do you use to convert dollars to euros"]
PROMPTS = ["how do i", "my card"]
# the demo's quick training: short runs on the sample data
QUICK = TrainConfig(max_epochs=4, batch_size=16, lr=1e-4, head_lr=3e-3, precision="32-true", max_length=32, patience=4)


def _demo_corpus() -> list[str]:
    """The sample intents plus the sample FAQ's questions and answers (a fictional bank)."""
    from core.recipes import read_corpus  # heavy: torch, Lightning

    texts = read_corpus([SAMPLES / "intents.csv"])
    with (SAMPLES / "faq.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            texts += [row["question"], row["answer"]]
    return texts


def _ensure(path: Path, build) -> Path:
    if not (path / "config.json").is_file():
        build(path)
    return path


def run_core_demo(settings: CoreSettings) -> None:
    """Classify, embed and generate with the core, training quick artifacts first where none exist."""
    from core.engine import InferenceEngine  # heavy: torch, Lightning
    from core.generation import GenerationConfig
    from core.recipes import finetune_text, pretrain, text_task

    console = Console()
    demo_dir = settings.var_dir / "demo"
    console.rule("[bold]1. intents: fine-tune all-MiniLM-L6-v2 on the sample intents (Larkspur Bank)")
    art = _ensure(demo_dir / "intents", lambda p: finetune_text(
        [text_task("intents", SAMPLES / "intents.csv", "csv", val_fraction=0.2, test_fraction=0.0)], p, QUICK))
    eng = InferenceEngine(art)
    table = Table("customer message", "intent", "confidence")
    for q, p in zip(QUERIES, eng.classify(QUERIES, "intents")):
        table.add_row(q, p.label, f"{p.score:.2f}")
    console.print(table)

    console.rule("[bold]2. embeddings: cosine similarity of the messages")
    vecs = eng.embed(QUERIES)
    sims = vecs @ vecs.T
    table = Table("", *[f"#{i}" for i in range(len(QUERIES))])
    for i, q in enumerate(QUERIES):
        table.add_row(f"#{i} {q[:40]}", *[f"{sims[i, j]:.2f}" for j in range(len(QUERIES))])
    console.print(table)

    console.rule("[bold]3. generation: continued pretraining (masked + next-token), then greedy and beam decoding")
    bench = settings.artifacts_dir / "text-pretrain"
    gen_art = bench if (bench / "config.json").is_file() else _ensure(demo_dir / "pretrain", lambda p: pretrain(
        _demo_corpus() * 3, p, QUICK.model_copy(update={"max_epochs": 5, "lr": 3e-4, "head_lr": 3e-3,
                                                         "causal_fraction": 0.8}), val_fraction=0.1))
    geng = InferenceEngine(gen_art)
    for strategy in ("greedy", "beam"):
        outs = geng.generate(PROMPTS, GenerationConfig(max_new_tokens=12, strategy=strategy, num_beams=3))
        for prompt, text in zip(PROMPTS, outs):
            console.print(f"[dim]{strategy:>6}[/dim]  {prompt} [bold]{text}[/bold]")
    console.print(f"\nartifacts: {art} and {gen_art}")
