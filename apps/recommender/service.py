"""RecService: what the CLI's ``recommend`` and the dashboard call. Loads the artifact once and answers from memory:
recommendations decoded from a user's history by the generative model (each with the history items closest to it as
the reason; an unknown user gets the most popular items, labelled so), similar items by cosine of the model's item
vectors, and the test report written at training time. The histories and popularity counts are read again when the
artifact's Parquet files change (a user forgotten by ``trident privacy forget --user``), so that a running dashboard
stops showing them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from apps.recommender.card import model_card
from apps.recommender.data import DataError, natural_key
from apps.recommender.evaluate import mask_seen, mmr, unit_rows
from apps.recommender.model import (
    Popularity,
    RecArtifact,
    RecArtifactError,
    load_artifact,
    read_histories,
    torch_scorer,
)
from apps.recommender.schemas import HistoryEntry, Item, Recommendation, Recommendations, SimilarItem
from apps.recommender.settings import RecSettings
from core.model_card import CardText, read_card

REASONS_FROM_LAST = 50  # the reasons are chosen among the user's most recent items


class UnknownItem(KeyError):
    """No catalogue item has this id."""

    def __str__(self) -> str:
        return str(self.args[0])


USER_ERRORS: tuple[type[BaseException], ...] = (DataError, RecArtifactError, UnknownItem)


class RecService:
    """Recommendations, histories, similar items and the evaluation report of one artifact."""

    def __init__(self, art: RecArtifact, settings: RecSettings | None = None):
        self.art, self.settings = art, settings or RecSettings()
        self.data = art.data
        self._histories_stamp = self._stamp()
        with torch.inference_mode():
            self.unit = unit_rows(art.model.item_encoder.table().float().numpy())  # (N + 1, C)
        self.unit[0] = 0.0

    @classmethod
    def build(cls, settings: RecSettings) -> RecService:
        """Load the artifact of ``settings``."""
        return cls(load_artifact(settings.artifact_dir), settings)

    def _stamp(self) -> tuple[int, ...] | None:
        try:
            stats = [(Path(self.art.path) / name).stat() for name in ("sequences.parquet", "items.parquet")]
        except OSError:  # an artifact built in memory (tests), or one being replaced: keep what is loaded
            return None
        return tuple(n for st in stats for n in (st.st_mtime_ns, st.st_size))

    def refresh(self) -> bool:
        """Read the histories (and popularity counts) again if the artifact's ``sequences.parquet`` or
        ``items.parquet`` changed since they were read; return whether they did."""
        stamp = self._stamp()
        if stamp is None or stamp == self._histories_stamp:
            return False
        data, train_pop, all_pop = read_histories(self.art.path, self.art.config)
        self.art.data, self.art.popularity, self.art.popularity_all = data, Popularity(train_pop), all_pop
        self.data, self._histories_stamp = data, stamp
        return True

    def item(self, index: int) -> Item:
        return Item(item_id=self.data.item_ids[index - 1], title=self.data.titles[index - 1],
                    genres=self.data.genres[index - 1])

    def users(self) -> list[str]:
        """Every known user id, in natural order."""
        self.refresh()
        return list(self.data.users)

    def history(self, user_id: str) -> list[HistoryEntry]:
        """The user's interactions, oldest first (empty for an unknown user)."""
        self.refresh()
        u = self.data.user_index.get(str(user_id).strip())
        if u is None:
            return []
        return [HistoryEntry(item=self.item(int(i)), timestamp=datetime.fromtimestamp(int(t), UTC))
                for i, t in zip(self.data.seqs[u], self.data.times[u])]

    def search_items(self, text: str, limit: int = 50) -> list[Item]:
        """Items whose title or id contains ``text`` (case-insensitive), most popular first."""
        self.refresh()
        q = text.strip().lower()
        hits = [i for i in range(1, self.data.n_items + 1)
                if not q or q in self.data.titles[i - 1].lower() or q == self.data.item_ids[i - 1].lower()]
        hits.sort(key=lambda i: (-int(self.art.popularity_all[i]), natural_key(self.data.item_ids[i - 1])))
        return [self.item(i) for i in hits[:limit]]

    def recommend(self, user_id: str, k: int | None = None, mmr_lambda: float = 1.0) -> Recommendations:
        """The next ``k`` (default ``settings.top_k``) items for ``user_id``: decoded from the history, or the most
        popular ones for an unknown user; ``mmr_lambda`` below 1 trades score for variety (item-embedding cosine)."""
        k = k or self.settings.top_k
        self.refresh()
        if not 0.0 <= mmr_lambda <= 1.0:
            raise DataError(f"mmr_lambda must lie in [0, 1], got {mmr_lambda}")
        user_id = str(user_id).strip()
        if user_id not in self.data.user_index:
            return self._popular(user_id, k)
        hist = self.data.history(user_id)
        scores = mask_seen(torch_scorer(self.art.model)([hist]).astype(np.float64), [hist])[0]
        slate = mmr(scores, self.unit, k, mmr_lambda)
        recent = hist[-REASONS_FROM_LAST:]
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
        order = [i for i in np.argsort(-pop, kind="stable") if i != 0][:k]  # ties: the lower index first
        recs = tuple(Recommendation(rank=r, item=self.item(int(i)), score=float(pop[i]),
                                    reason=f"popular: {int(pop[i])} users") for r, i in enumerate(order, 1))
        return Recommendations(user_id=user_id, source="popularity", items=recs,
                               note="unknown user: no history, so these are the most popular items")

    def similar_items(self, item_id: str, k: int = 10) -> list[SimilarItem]:
        """The ``k`` items nearest to ``item_id`` by cosine of the model's item vectors."""
        self.refresh()
        i = self.data.item_index.get(str(item_id).strip())
        if i is None:
            raise UnknownItem(f"unknown item {item_id!r}")
        sims = self.unit @ self.unit[i]
        sims[[0, i]] = -np.inf
        order = np.argsort(-sims, kind="stable")[:k]
        return [SimilarItem(item=self.item(int(j)), similarity=round(float(sims[j]), 4),
                            users=int(self.art.popularity_all[j])) for j in order]

    def report(self) -> dict | None:
        """The test evaluation saved at training time, or None when the artifact has none."""
        path = Path(self.art.path) / "report.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def model_card(self) -> CardText:
        """The card of the artifact (its ``MODEL_CARD.md``; generated from its records when it has none)."""
        return read_card(self.art.path, lambda: model_card(self.art.path))

    def training(self) -> dict:
        """The training history of each model (epochs, time, best validation NDCG@10) and the data source."""
        return {"training": self.art.config.get("training", {}), "data": self.art.config.get("data", {}),
                "protocol": self.art.config.get("protocol", "")}
