"""The sentiment model as served: the artifact ``trident fin train`` writes, one core artifact or an ensemble of them
(``ensemble.json`` over ``members/``, see ``core.engine``), scoring the labels positive, neutral and negative."""

from __future__ import annotations

from pathlib import Path

from core.artifacts import ArtifactError
from core.engine import ENSEMBLE_FILE, Ensemble

TASK = "sentiment"


def load_sentiment_model(path: str | Path, quantize: bool = False, batch_size: int = 64, task: str = TASK) -> Ensemble:
    """Load a sentiment artifact (a single model or an ensemble); it answers like an engine with one task.

    Raises:
        core.artifacts.ArtifactError: The folder is not a (complete) artifact; the message says what to run.
    """
    path = Path(path)
    if not (path / ENSEMBLE_FILE).is_file() and not (path / "config.json").is_file():
        raise ArtifactError(f"no sentiment model at {path}: train one with `trident fin train`")
    try:
        return Ensemble.load(path, task, quantize=quantize, batch_size=batch_size)
    except ArtifactError as exc:
        raise ArtifactError(f"{exc}: retrain with `trident fin train`") from exc
