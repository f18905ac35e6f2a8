"""``trident core model-card``: write the model card (``MODEL_CARD.md``) of any artifact folder again, from its own
records, and print it; an artifact trained before cards existed gets one without retraining.

Which card a folder gets follows from what it records: a recommender artifact (its ``config.json``'s format), a
sentiment artifact (``fin_model.json`` or ``fin_report.json``), the finance risk model or the customer-service
artifact (the recipe in its ``config.json``), one of their member models (by the folder that holds it), else the
core's own card.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from apps.customer_service import card as cs_card
from apps.finance_sentiment import card as fin_card
from apps.finance_sentiment.model import MODEL_FILE
from apps.recommender import card as rec_card
from apps.recommender.model import FORMAT as REC_FORMAT
from apps.recommender.model import MODELS as REC_MODELS
from core.artifacts import read_config
from core.model_card import ModelCard, core_card, write_card


def _recorded(folder: Path) -> dict:
    """The folder's ``config.json`` as recorded (any format), or ``{}`` where there is none or it is unreadable."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return config if isinstance(config, dict) else {}


def _sentiment(folder: Path) -> bool:
    return (folder / MODEL_FILE).is_file() or (folder / fin_card.REPORT_FILE).is_file()


def _recipe(config: dict) -> str | None:
    meta = config.get("meta")
    return meta.get("recipe") if isinstance(meta, dict) else None


def card_maker(folder: Path) -> Callable[[], ModelCard]:
    """The function that makes the card of ``folder`` (see the module docstring)."""
    config, parent = _recorded(folder), _recorded(folder.parent)
    if config.get("format") == REC_FORMAT:
        return lambda: rec_card.model_card(folder)
    if _sentiment(folder):
        return lambda: fin_card.model_card(folder)
    if _recipe(config) == "cs":
        return lambda: cs_card.model_card(folder)
    if _recipe(config) == "fin-risk":
        return lambda: fin_card.risk_card(folder)
    if parent.get("format") == REC_FORMAT and folder.name in REC_MODELS:
        return lambda: rec_card.member_card(folder)
    if _recipe(parent) == "cs":
        return lambda: cs_card.member_card(folder)
    if folder.parent.name == "members" and _sentiment(folder.parent.parent):
        return lambda: fin_card.member_card(folder, folder.parent.parent)
    return lambda: core_card(folder, read_config(folder))


def write_model_card(folder: str | Path) -> tuple[Path, str]:
    """Write the card of the artifact in ``folder`` from its records; return the file and its Markdown.

    Raises:
        core.artifacts.ArtifactError: the folder is missing or not a (readable) artifact.
    """
    folder = Path(folder)
    if not folder.is_dir():
        read_config(folder)  # raises the core's sentence for a missing folder
    card = card_maker(folder)()
    return write_card(folder, card), card.render()
