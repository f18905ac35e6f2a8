"""The sentiment model as served: the artifact ``trident fin train`` writes, one core artifact or an ensemble of them
(``ensemble.json`` over ``members/``, see ``core.engine``), scoring the labels positive, neutral and negative.

An artifact trained entity-blind (``FIN_TRAIN__ENTITY_BLIND``) says so in ``fin_model.json``; it then reads every
text as :func:`model_input` gives it, company and person names replaced by placeholders, exactly as it was trained.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from apps.finance_sentiment.names import NameBlinder
from core.artifacts import ArtifactError
from core.config import InferenceConfig
from core.engine import ENSEMBLE_FILE, Ensemble

TASK = "sentiment"
MODEL_FILE = "fin_model.json"
"""How the model reads its input: ``{"entity_blind": bool}`` (absent: as written)."""


def model_input(entity_blind: bool) -> Callable[[Sequence[str]], list[str]]:
    """What the sentiment model reads of a list of texts, in training and in serving alike: the texts as written, or
    entity-blind (:class:`apps.finance_sentiment.names.NameBlinder`: names replaced by ``[COMPANY]`` / ``[PERSON]``)."""
    return NameBlinder() if entity_blind else list


def write_model_file(folder: str | Path, entity_blind: bool) -> Path:
    """Record in an artifact folder how its model reads its input."""
    path = Path(folder) / MODEL_FILE
    path.write_text(json.dumps({"entity_blind": bool(entity_blind)}) + "\n")
    return path


def reads_entity_blind(folder: str | Path) -> bool:
    """Whether the artifact in ``folder`` was trained entity-blind.

    Raises:
        core.artifacts.ArtifactError: Its ``fin_model.json`` is malformed.
    """
    path = Path(folder) / MODEL_FILE
    if not path.is_file():
        return False
    try:
        return bool(json.loads(path.read_text())["entity_blind"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{path} is malformed ({type(exc).__name__}: {exc})") from None


class EntityBlindModel:
    """A sentiment model that reads texts entity-blind: it answers like the ``Ensemble`` it wraps (``tasks``,
    ``classify_proba``, ``classify``, ``explain``; explanations attribute the placeholders), each text first passed
    through ``read`` (:func:`model_input`)."""

    def __init__(self, model: Ensemble, read: Callable[[Sequence[str]], list[str]]) -> None:
        self.model, self.read = model, read
        self.path, self.members, self.labels, self.task = model.path, model.members, model.labels, model.task

    @property
    def tasks(self):
        """The model's one task."""
        return self.model.tasks

    def classify_proba(self, texts: Sequence[str], task: str | None = None) -> np.ndarray:
        """Class probabilities (N, n_classes) of the texts as the model reads them."""
        return self.model.classify_proba(self.read(texts), task)

    def classify(self, texts: Sequence[str], task: str | None = None):
        """Label, probability and class probabilities of each text."""
        return self.model.classify(self.read(texts), task)

    def explain(self, texts: Sequence[str], task: str | None = None, weights: dict[str, float] | None = None,
                max_words: int = 64) -> list[list[tuple[str, float]]]:
        """Word attributions of the texts as the model reads them (a name shows as its placeholder)."""
        return self.model.explain(self.read(texts), task, weights=weights, max_words=max_words)


def load_sentiment_model(path: str | Path, inference: InferenceConfig | None = None, batch_size: int = 64,
                         task: str = TASK) -> Ensemble | EntityBlindModel:
    """Load a sentiment artifact (a single model or an ensemble), served as ``inference`` says (default: torch fp32);
    it answers like an engine with one task, reading texts as it was trained to (:func:`reads_entity_blind`).

    Raises:
        core.artifacts.ArtifactError: The folder is not a (complete) artifact; the message says what to run.
    """
    path = Path(path)
    if not (path / ENSEMBLE_FILE).is_file() and not (path / "config.json").is_file():
        raise ArtifactError(f"no sentiment model at {path}: train one with `trident fin train`")
    try:
        model = Ensemble.load(path, task, inference, batch_size=batch_size)
    except ArtifactError as exc:
        raise ArtifactError(f"{exc}: retrain with `trident fin train`") from exc
    return EntityBlindModel(model, model_input(True)) if reads_entity_blind(path) else model
