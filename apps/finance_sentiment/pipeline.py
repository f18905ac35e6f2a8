"""Training and evaluation of the finance sentiment model.

The model is the shared core (all-MiniLM-L6-v2 start) fine-tuned on Financial PhraseBank (50% agreement),
deduplicated and split 70/10/20 with a fixed seed (``core.recipes.text_task``): the 20% test part is never trained on
nor used for any choice. With ``members > 1`` several copies are trained on the same split with different training
seeds (initialisation of the head, order of batches, dropout) and their class probabilities are averaged: a
*seed ensemble*. The artifact folder then holds ``ensemble.json`` and one core artifact per member under
``members/``; a single-member artifact is a plain core artifact.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from apps.finance_sentiment.scoring import LABELS

__all__ = ["SentimentModel", "default_train_config", "eval_sentiment", "load_sentiment_model", "read_sentiment_data",
           "train_sentiment"]

log = logging.getLogger(__name__)

_SYNONYMS = {"pos": "positive", "neg": "negative", "neu": "neutral", "bullish": "positive", "bearish": "negative"}


def default_train_config():
    """6 epochs at most, lr 8e-5, 10% warm-up, label smoothing 0.05, early stopping on validation accuracy."""
    from core.config import TrainConfig

    return TrainConfig(max_epochs=6, batch_size=32, lr=8e-5, head_lr=2e-3, max_length=96, precision="32-true",
                       patience=2, warmup_ratio=0.1, label_smoothing=0.05)


def read_sentiment_data(path: str | Path, fmt: str) -> tuple[list[str], list[str]]:
    """Read labelled sentences: ``phrasebank`` (latin-1 ``sentence@label`` lines) or ``csv`` (``text,label``).

    Labels are lower-cased; ``pos`` / ``neg`` / ``neu`` are accepted for positive / negative / neutral.

    Raises:
        core.data.DataFormatError: The file is missing, malformed, or has another label.
    """
    from core.data import DataFormatError, read_labelled_texts

    texts, raw = read_labelled_texts(path, fmt)
    labels = [_SYNONYMS.get(r.strip().lower(), r.strip().lower()) for r in raw]
    unknown = sorted(set(labels) - set(LABELS))
    if unknown:
        raise DataFormatError(f"{path}: labels must be positive, neutral or negative; found {unknown[:5]}")
    return texts, labels


def train_sentiment(data_path: str | Path, out: str | Path, fmt: str = "phrasebank", members: int = 1,
                    cfg=None, split_seed: int = 13) -> dict:
    """Fine-tune the sentiment model(s) and write the artifact.

    Args:
        data_path: Labelled sentences (PhraseBank's ``Sentences_50Agree.txt`` or a ``text,label`` CSV).
        out: Artifact folder (replaced).
        fmt: ``phrasebank`` or ``csv``.
        members: Seed-ensemble size.
        cfg: ``TrainConfig`` (default: 6 epochs, lr 8e-5, early stopping on validation).
        split_seed: Seed of the train/validation/test split (kept fixed, so every member sees the same test).

    Returns:
        ``{"artifact", "members", "test": {...}}`` with each member's and the ensemble's test metrics.
    """
    from core.recipes import finetune_text, text_task

    cfg = cfg or default_train_config()
    out = Path(out)
    task = text_task("sentiment", data_path, fmt, seed=split_seed)
    unknown = sorted(set(task.labels) - set(LABELS))
    if unknown:
        raise ValueError(f"{data_path}: labels must be positive, neutral or negative; found {unknown}")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    report: dict = {"members": [], "split": task.source}
    paths = []
    for k in range(members):
        member_out = tmp if members == 1 else tmp / "members" / str(k)
        finetune_text([task], member_out, cfg.model_copy(update={"seed": cfg.seed + k}))
        paths.append(member_out)
    if members > 1:
        (tmp / "ensemble.json").write_text(json.dumps({"members": [f"members/{k}" for k in range(members)],
                                                        "task": "sentiment", "split": task.source}, indent=2))
    model = load_sentiment_model(tmp)
    texts, ys = task.test
    y = [LABELS.index(task.labels[i]) for i in ys]
    per_member = [e.classify_proba(texts, "sentiment")[:, model.columns(e)] for e in model.engines]
    for p in per_member:
        report["members"].append(_metrics(y, p.argmax(-1)))
    report["test"] = _metrics(y, np.mean(per_member, 0).argmax(-1))
    (tmp / "fin_report.json").write_text(json.dumps(report, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    report["artifact"] = str(out)
    return report


def _metrics(y, pred) -> dict:
    from core.metrics import accuracy, precision_recall_f1

    y, pred = np.asarray(y), np.asarray(pred)
    weighted = precision_recall_f1(y, pred, average="weighted")["f1"] if len(y) else 0.0
    return {"accuracy": accuracy(y, pred), "macro_f1": precision_recall_f1(y, pred)["f1"],
            "weighted_f1": weighted, "n": int(len(y))}


class SentimentModel:
    """One artifact or a seed ensemble, with the engine interface the scorer needs (probabilities averaged).

    Args:
        engines: ``InferenceEngine`` per member.
        path: The artifact folder.
    """

    def __init__(self, engines: list, path: Path):
        self.engines, self.path = engines, path
        self.tasks = engines[0].tasks

    def columns(self, engine) -> list[int]:
        """Column order of ``engine``'s sentiment task that gives positive, neutral, negative."""
        labels = tuple(engine.tasks["sentiment"].labels)
        return [labels.index(lab) for lab in LABELS]

    def classify_proba(self, texts, task: str) -> np.ndarray:
        """Mean class probabilities of the members (the first member's label order)."""
        first = self.engines[0].classify_proba(texts, task)
        if len(self.engines) == 1:
            return first
        order = list(self.engines[0].tasks[task].labels)
        acc = first.astype(np.float64)
        for e in self.engines[1:]:
            labels = list(e.tasks[task].labels)
            acc += e.classify_proba(texts, task)[:, [labels.index(lab) for lab in order]]
        return (acc / len(self.engines)).astype(np.float32)

    def explain(self, texts, task: str, weights=None, max_words: int = 64):
        """Word attributions averaged over the members (each member's own occlusion attributions)."""
        runs = [e.explain(texts, task, weights=weights, max_words=max_words) for e in self.engines]
        out = []
        for per_text in zip(*runs):
            words = per_text[0]
            out.append([(w, float(np.mean([run[i][1] for run in per_text]))) for i, (w, _) in enumerate(words)])
        return out


def load_sentiment_model(path: str | Path, quantize: bool = False, batch_size: int = 64) -> SentimentModel:
    """Load a sentiment artifact (single or ensemble).

    Raises:
        core.artifacts.ArtifactError: The folder is not a (complete) artifact.
    """
    from core.artifacts import ArtifactError
    from core.engine import InferenceEngine

    path = Path(path)
    spec = path / "ensemble.json"
    if spec.is_file():
        members = [path / m for m in json.loads(spec.read_text())["members"]]
    elif (path / "config.json").is_file():
        members = [path]
    else:
        raise ArtifactError(f"no sentiment model at {path}: train one with `trident fin train`")
    return SentimentModel([InferenceEngine(m, quantize=quantize, batch_size=batch_size) for m in members], path)


def eval_sentiment(model: SentimentModel, path: str | Path, fmt: str) -> dict:
    """Accuracy, macro-F1 and weighted F1 on a labelled file (see :func:`read_sentiment_data`)."""
    texts, labels = read_sentiment_data(path, fmt)
    p = model.classify_proba(texts, "sentiment")
    order = list(model.tasks["sentiment"].labels)
    return _metrics([order.index(lab) for lab in labels], p.argmax(-1))
