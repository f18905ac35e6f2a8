"""Settings of the customer-service app (env prefix ``CS_``, nested with ``__``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from apps.common.settings import REPO_ROOT, CoreSettings


class RetrievalSettings(BaseModel):
    """How answers are retrieved."""

    model_config = ConfigDict(frozen=True)

    mode: Literal["dense", "sparse", "hybrid"] = Field("hybrid", description="Dense (FAISS), sparse (BM25) or both.")
    fusion: Literal["weighted", "rrf"] = Field("weighted", description="How dense and sparse scores are combined.")
    sparse_weight: float = Field(0.1, ge=0.0, description="Weight of the max-normalised BM25 score in the fusion.")
    index_kind: Literal["auto", "flat", "ivf", "hnsw"] = Field("auto", description="FAISS index type.")
    approx_threshold: int = Field(50_000, ge=1, description="KB size from which `auto` uses an approximate index.")
    approx_kind: Literal["ivf", "hnsw"] = Field("hnsw", description="Approximate index used above the threshold.")
    top_k: int = Field(5, ge=1, le=50, description="Answers shown to the agent.")
    index_answers: bool = Field(False, description="Embed the answer's start with the question (dense side).")


class DialogSettings(BaseModel):
    """When the bot answers, asks back, or hands over."""

    model_config = ConfigDict(frozen=True)

    answer_threshold: float = Field(0.5, ge=0.0, le=1.0,
                                    description="Calibrated confidence from which the bot answers.")
    clarify_margin: float = Field(0.03, ge=0.0, description="Fused-score gap below which two answers are 'close'.")
    clarify_floor: float = Field(0.25, ge=0.0, le=1.0, description="Least confidence for a clarifying question.")
    max_message_chars: int = Field(5_000, ge=10, description="Longer messages are cut (with a note) before use.")
    context_turns: int = Field(2, ge=0, description="Earlier customer turns used to resolve a follow-up.")
    context_weight: float = Field(0.6, ge=0.0, description="Share of the context in a follow-up's query vector.")


class CSSettings(BaseSettings):
    """Everything the customer-service app reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="CS_", env_nested_delimiter="__", frozen=True, extra="ignore",
                                      env_ignore_empty=True)

    core: CoreSettings = Field(default_factory=CoreSettings)
    kb_path: Path = Field(REPO_ROOT / "samples" / "faq.csv", description="Knowledge-base file or folder.")
    intents_path: Path = Field(REPO_ROOT / "samples" / "intents.csv",
                               description="Intent training data (text,category).")
    calibration_path: Path | None = Field(REPO_ROOT / "samples" / "faq_queries.csv",
                                          description="Queries with gold KB ids ('-': no answer) that calibrate the "
                                                      "answer confidence when the index is built.")
    artifact: Path | None = Field(None, description="Model artifact; default: <artifacts>/cs.")
    index_dir: Path | None = Field(None, description="Index folder; default: <var>/cs/index.")
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    dialog: DialogSettings = Field(default_factory=DialogSettings)

    @property
    def artifact_dir(self) -> Path:
        """The model artifact folder."""
        return self.artifact or self.core.artifacts_dir / "cs"

    @property
    def index_folder(self) -> Path:
        """The index folder."""
        return self.index_dir or self.core.var_dir / "cs" / "index"
