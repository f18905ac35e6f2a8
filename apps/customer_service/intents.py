"""Intent detection: the cs artifact's intent ensemble, and its evaluation report.

``trident cs train`` writes the ensemble into the artifact folder (``ensemble.json``, see ``core.engine``): the
``intents`` adapter and the linear head on the frozen base (``intents-base``), tasks of the artifact itself, and the
fully fine-tuned members (sub-artifacts ``intents-full/``, ``intents-full-2/``, ...), with the weights training
chose. A member of weight 0 is neither loaded nor run. ``trident cs distil`` writes an artifact whose ensemble is one
student model alone (sub-artifact ``intents-student/``), the artifact itself then holding no intents task: one
backbone pass per message.
"""

from __future__ import annotations

import time
from pathlib import Path

from apps.customer_service.knowledge import KBFormatError
from core.artifacts import ArtifactError
from core.data import read_labelled_texts
from core.engine import ENSEMBLE_FILE, Ensemble, InferenceEngine
from core.metrics import accuracy, confusion_matrix, precision_recall_f1

TASK = "intents"
RETRAIN = "retrain it with `trident cs train`"


def load_intents(engine: InferenceEngine) -> Ensemble | None:
    """The intent ensemble of the cs artifact ``engine`` serves (None when it has none).

    An artifact without ``ensemble.json`` serves its ``intents`` task alone (None without one).

    Raises:
        ArtifactError: in one line, when the ensemble or a member is missing or does not fit, or the artifact keeps
            its ensemble in the layout of older versions (which this one does not read).
    """
    folder = Path(engine.path) if engine.path is not None else None
    if folder is None or not (folder / ENSEMBLE_FILE).is_file():
        if TASK not in engine.tasks:
            return None
        if (engine.config.get("meta") or {}).get("intent_ensemble"):
            raise ArtifactError(f"{folder} keeps its intent ensemble in an older layout: {RETRAIN}")
        return Ensemble([(engine, TASK)], path=folder)
    try:
        return Ensemble.load(folder, TASK, engine.inference, max_length=engine.max_length,
                             batch_size=engine.batch_size, engine=engine)
    except ArtifactError as exc:
        raise ArtifactError(f"{exc}: {RETRAIN}") from exc


def evaluation_report(intents, intents_csv: Path) -> dict:
    """Accuracy, macro-F1 and the confusion matrix of ``intents`` (the ensemble of :func:`load_intents`, or an
    engine whose ``intents`` task answers alone) on a ``text,category`` CSV.

    Returns:
        ``{"accuracy", "macro_f1", "n", "sentences_per_s", "labels", "confusion"}``: ``confusion[i][j]`` counts
        messages of intent ``labels[i]`` predicted as ``labels[j]``, over every intent the model knows (plain Python
        numbers); ``sentences_per_s`` counts the scoring time only (not reading or loading).

    Raises:
        KBFormatError: The file has intents the model does not know.
        DataFormatError: The file is missing or malformed.
    """
    labels = list(intents.tasks[TASK].labels)
    texts, raw = read_labelled_texts(intents_csv, "csv")
    unknown = sorted(set(raw) - set(labels))
    if unknown:
        raise KBFormatError(f"{intents_csv} has intents the model does not know: {unknown[:5]}")
    y = [labels.index(r) for r in raw]
    start = time.perf_counter()
    pred = intents.classify_proba(texts, TASK).argmax(-1).tolist()
    speed = len(texts) / max(time.perf_counter() - start, 1e-9)
    cm = confusion_matrix(y, pred, labels=list(range(len(labels))))
    # macro-F1 over the intents present in y or pred
    return {"accuracy": accuracy(y, pred), "macro_f1": precision_recall_f1(y, pred)["f1"], "n": len(y),
            "sentences_per_s": speed, "labels": labels, "confusion": cm.tolist()}
