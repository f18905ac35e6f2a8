"""What the recommender's services return: plain pydantic objects that the CLI prints and the dashboard renders."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Source = Literal["model", "popularity"]


class Item(BaseModel):
    """One catalogue item."""

    model_config = ConfigDict(frozen=True)

    item_id: str
    title: str
    genres: tuple[str, ...] = ()


class HistoryEntry(BaseModel):
    """One interaction of a user's history."""

    model_config = ConfigDict(frozen=True)

    item: Item
    timestamp: datetime


class Recommendation(BaseModel):
    """One recommended item: its rank, the model's score, and why."""

    model_config = ConfigDict(frozen=True)

    rank: int = Field(ge=1)
    item: Item
    score: float = Field(description="The model's score (a logit), or the item's user count for popularity.")
    because: tuple[Item, ...] = Field((), description="History items most similar to this one (item embeddings).")
    reason: str = ""


class Recommendations(BaseModel):
    """A user's slate and where it came from."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    source: Source = Field(description="model: decoded from the user's history; popularity: the user is unknown.")
    note: str = ""
    history_length: int = 0
    mmr_lambda: float = 1.0
    items: tuple[Recommendation, ...] = ()


class SimilarItem(BaseModel):
    """An item and its cosine similarity to the query item."""

    model_config = ConfigDict(frozen=True)

    item: Item
    similarity: float
    users: int = Field(0, description="Users who interacted with it.")


class StoredRecommendation(BaseModel):
    """One row of the batch job's table."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    rank: int
    item_id: str
    score: float
    version: str
    created_at: datetime
