"""Model card: what the served model is, its data, splits, figures, fairness, intended use and limits (the artifact's
MODEL_CARD.md)."""

from __future__ import annotations

from apps.common.ui import show_model_card
from apps.finance_sentiment.ui.resources import call, require_service

service = require_service()
card = call(service.model_card)
if card is not None:
    show_model_card(card)
