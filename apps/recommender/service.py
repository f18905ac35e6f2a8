"""RecService: what the CLI's ``recommend`` and the dashboard call. Loads the artifact once and answers from memory.

- ``recommend(user)``: the user's whole history (its last ``max_len`` items) goes through the generative model; every
  unseen item is scored, the best ``k`` are returned (re-ranked by MMR when ``mmr_lambda < 1``), each with the history
  items closest to it in the model's item space as the reason. An unknown user gets the most popular items, labelled
  ``source="popularity"``.
- ``similar_items(item)``: the nearest items by cosine of the model's item vectors.
- ``report()``: the test evaluation written at training time (model and baselines).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from apps.recommender.data import DataError, natural_key
from apps.recommender.evaluate import mmr, unit_rows
from apps.recommender.model import RecArtifact, RecArtifactError, load_artifact
from apps.recommender.schemas import HistoryEntry, Item, Recommendation, Recommendations, SimilarItem
from apps.recommender.settings import RecSettings
from core.data import pad_left

log = logging.getLogger(__name__)


class UnknownItem(KeyError):
    """No catalogue item has this id."""

    def __str__(self) -> str:
        return str(self.args[0])


USER_ERRORS: tuple[type[BaseException], ...] = (DataError, RecArtifactError, UnknownItem)


class RecService:
    """Recommendations, histories, similar items and the evaluation report of one artifact."""

    def __init__(self, art: RecArtifact, settings: RecSettings | None = None, reasons_from_last: int = 50):
        self.art, self.settings = art, settings or RecSettings()
        self.data = art.data
        self.reasons_from_last = reasons_from_last
        with torch.inference_mode():
            self.table = art.model.item_encoder.table().float().numpy()  # (N + 1, C)
        self.unit = unit_rows(self.table)
        self.unit[0] = 0.0

    @classmethod
    def build(cls, settings: RecSettings) -> RecService:
        """Load the artifact of ``settings``."""
        return cls(load_artifact(settings.artifact_dir), settings)

    # ------------------------------------------------------------------ lookups
    def item(self, index: int) -> Item:
        return Item(item_id=self.data.item_ids[index - 1], title=self.data.titles[index - 1],
                    genres=self.data.genres[index - 1])

    def item_index(self, item_id: str) -> int:
        try:
            return self.data.item_index[str(item_id).strip()]
        except KeyError:
            raise UnknownItem(f"unknown item {item_id!r}") from None

    def users(self) -> list[str]:
        """Every known user id, in natural order."""
        return list(self.data.users)

    def history(self, user_id: str) -> list[HistoryEntry]:
        """The user's interactions, oldest first (empty for an unknown user)."""
        user_id = str(user_id).strip()
        if user_id not in self.data.user_index:
            return []
        u = self.data.user_index[user_id]
        return [HistoryEntry(item=self.item(int(i)), timestamp=datetime.fromtimestamp(int(t), UTC))
                for i, t in zip(self.data.seqs[u], self.data.times[u])]

    def search_items(self, text: str, limit: int = 50) -> list[Item]:
        """Items whose title or id contains ``text`` (case-insensitive), most popular first."""
        q = text.strip().lower()
        hits = [i for i in range(1, self.data.n_items + 1)
                if not q or q in self.data.titles[i - 1].lower() or q == self.data.item_ids[i - 1].lower()]
        hits.sort(key=lambda i: (-int(self.art.popularity_all[i]), natural_key(self.data.item_ids[i - 1])))
        return [self.item(i) for i in hits[:limit]]

    # ------------------------------------------------------------------ recommendations
    def scores(self, history: np.ndarray) -> np.ndarray:
        """The model's score of every item after ``history`` (N + 1,), float64."""
        x = torch.from_numpy(pad_left([history], self.art.model.cfg.block_size))
        with torch.inference_mode():
            return self.art.model.score_next(x)[0].double().numpy()

    def recommend(self, user_id: str, k: int | None = None, mmr_lambda: float = 1.0) -> Recommendations:
        """The next items for ``user_id``: decoded from the history, or the most popular ones for an unknown user.

        Args:
            user_id: the user.
            k: slate length (default ``settings.top_k``).
            mmr_lambda: 1 = best scores; below 1, MMR trades score for variety (item-embedding cosine).
        """
        k = k or self.settings.top_k
        if not 0.0 <= mmr_lambda <= 1.0:
            raise DataError(f"mmr_lambda must lie in [0, 1], got {mmr_lambda}")
        user_id = str(user_id).strip()
        if user_id not in self.data.user_index:
            return self._popular(user_id, k)
        hist = self.data.history(user_id)
        scores = self.scores(hist)
        scores[0] = -np.inf
        scores[hist] = -np.inf
        slate = mmr(scores, self.unit, k, mmr_lambda)
        recent = hist[-self.reasons_from_last:]
        recs = []
        for rank, i in enumerate(slate, 1):
            sims = self.unit[recent] @ self.unit[i]
            top = recent[np.argsort(-sims, kind="stable")[:2]]
            because = tuple(self.item(int(j)) for j in top)
            reason = "close to " + " and ".join(f"“{b.title}”" for b in because) + " in your history"
            recs.append(Recommendation(rank=rank, item=self.item(int(i)), score=round(float(scores[i]), 4),
                                       because=because, reason=reason))
        note = f"decoded from the last {min(len(hist), self.art.model.cfg.block_size)} of {len(hist)} items"
        return Recommendations(user_id=user_id, source="model", note=note, history_length=len(hist),
                               mmr_lambda=mmr_lambda, items=tuple(recs))

    def _popular(self, user_id: str, k: int) -> Recommendations:
        pop = self.art.popularity_all.astype(np.float64)
        order = np.lexsort((np.arange(len(pop)), -pop))
        order = order[order != 0][:k]
        recs = tuple(Recommendation(rank=r, item=self.item(int(i)), score=float(pop[i]),
                                    reason=f"popular: {int(pop[i])} users") for r, i in enumerate(order, 1))
        return Recommendations(user_id=user_id, source="popularity", items=recs,
                               note="unknown user: no history, so these are the most popular items")

    def similar_items(self, item_id: str, k: int = 10) -> list[SimilarItem]:
        """The ``k`` items nearest to ``item_id`` by cosine of the model's item vectors."""
        i = self.item_index(item_id)
        sims = self.unit @ self.unit[i]
        sims[[0, i]] = -np.inf
        order = np.argsort(-sims, kind="stable")[:k]
        return [SimilarItem(item=self.item(int(j)), similarity=round(float(sims[j]), 4),
                            users=int(self.art.popularity_all[j])) for j in order]

    # ------------------------------------------------------------------ evaluation
    def report(self) -> dict | None:
        """The test evaluation saved at training time, or None when the artifact has none."""
        path = Path(self.art.path) / "report.json"
        if not path.is_file():
            return None
        return json.loads(path.read_text())

    def training(self) -> dict:
        """The training history of each model (epochs, time, best validation NDCG@10) and the data source."""
        return {"training": self.art.config.get("training", {}), "data": self.art.config.get("data", {}),
                "protocol": self.art.config.get("protocol", "")}
