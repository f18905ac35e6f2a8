"""What the recommender's services return: plain pydantic objects that the CLI prints and the dashboard renders."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Source = Literal["model", "popularity"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class Item(_Frozen):
    """One catalogue item."""

    item_id: str
    title: str
    genres: tuple[str, ...] = ()


class HistoryEntry(_Frozen):
    """One interaction of a user's history."""

    item: Item
    timestamp: datetime


class Recommendation(_Frozen):
    """One recommended item: its rank, the model's score, and why."""

    rank: int = Field(ge=1)
    item: Item
    score: float = Field(description="The model's score (a logit), or the item's user count for popularity.")
    because: tuple[Item, ...] = Field((), description="History items most similar to this one (item embeddings).")
    reason: str = ""


class Recommendations(_Frozen):
    """A user's slate and where it came from."""

    user_id: str
    source: Source = Field(description="model: decoded from the user's history; popularity: the user is unknown.")
    note: str = ""
    history_length: int = 0
    mmr_lambda: float = 1.0
    items: tuple[Recommendation, ...] = ()


class SimilarItem(_Frozen):
    """An item and its cosine similarity to the query item."""

    item: Item
    similarity: float
    users: int = Field(0, description="Users who interacted with it.")
