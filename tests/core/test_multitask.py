"""Multi-task training: one backbone learns text classification, contrastive pairs, images and the LM objective
together, each task's loss and metrics land in TensorBoard under its own name, and the artifact serves them all."""

from __future__ import annotations

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from core.config import ModelConfig, TrainConfig
from core.data import ListDataset, MultiTaskDataModule, TaskData
from core.engine import InferenceEngine
from core.tasks import CoreModel, TaskSpec
from core.tokenizer import Tokenizer
from core.train import fit

WORDS = {0: ["refund", "money", "back", "returned"], 1: ["card", "lost", "stolen", "blocked"]}


def _toy_texts(n: int, rng: np.random.Generator) -> tuple[list[str], list[int]]:
    ys = rng.integers(0, 2, n).tolist()
    return [" ".join(rng.choice(WORDS[y], 3)) for y in ys], ys


def _toy_images(n: int, rng: np.random.Generator) -> tuple[list[np.ndarray], list[int]]:
    # class 0: bright top half, class 1: bright bottom half (plus noise); training flips left-right, never up-down
    ys = rng.integers(0, 2, n)
    imgs = (rng.random((n, 12, 12)) * 60).astype(np.uint8)
    for i, y in enumerate(ys):
        imgs[i, (0 if y == 0 else 6):(6 if y == 0 else 12), :] += 180
    return list(imgs), ys.tolist()


def test_four_task_kinds_train_together_and_log_per_task(tmp_path):
    rng = np.random.default_rng(0)
    texts, ys = _toy_texts(160, rng)
    imgs, iys = _toy_images(160, rng)
    tok = Tokenizer.train(texts, vocab_size=60, min_frequency=1)
    cfg = ModelConfig.tiny(vocab_size=tok.vocab_size, image_size=12, patch_size=4)
    tasks = [TaskSpec(name="topic", kind="classify", labels=("refund", "card")), TaskSpec(name="para", kind="pairs"),
             TaskSpec(name="shapes", kind="image_classify", labels=("top", "bottom")), TaskSpec(name="lm", kind="lm")]
    model = CoreModel(cfg, tasks)
    paraphrase = [" ".join(reversed(t.split())) for t in texts]
    data = [TaskData(tasks[0], ListDataset(texts[:128], ys[:128]), ListDataset(texts[128:], ys[128:])),
            TaskData(tasks[1], ListDataset(texts[:128], paraphrase[:128]), ListDataset(texts[128:], paraphrase[128:])),
            TaskData(tasks[2], ListDataset(imgs[:128], iys[:128]), ListDataset(imgs[128:], iys[128:])),
            TaskData(tasks[3], ListDataset(texts[:128]), ListDataset(texts[128:]))]
    dm = MultiTaskDataModule(data, tok, batch_size=16, max_length=16, seed=0)
    art = fit(model, dm, TrainConfig.quick(max_epochs=6, lr=3e-3, head_lr=3e-3, patience=6), tmp_path / "mt", tok,
              progress=False)

    events = EventAccumulator(str(next((art / "logs").rglob("events.out.tfevents*")).parent)).Reload()
    tags = set(events.Tags()["scalars"])
    for t in ("topic", "para", "shapes", "lm"):
        assert f"train/{t}/loss" in tags and f"val/{t}/loss" in tags
    assert {"val/topic/acc", "val/topic/macro_f1", "val/shapes/acc", "val/para/acc", "val/lm/ppl"} <= tags
    assert events.Scalars("val/topic/acc")[-1].value >= 0.9  # the words give the class away
    assert events.Scalars("val/shapes/acc")[-1].value >= 0.9

    eng = InferenceEngine(art)
    assert eng.classify(["card lost blocked"], "topic")[0].label == "card"
    probe = np.zeros((1, 12, 12), np.uint8)
    probe[0, 6:, :] = 240
    assert eng.classify_images(probe, "shapes")[0].label == "bottom"
