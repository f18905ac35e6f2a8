"""Settings of the recommender app (env prefix ``REC_``, nested with ``__``, e.g. ``REC_TRAIN__MAX_EPOCHS=50``).

Built at the edge (the CLI, ``ui/resources.py``, a test) and passed down; functions take the narrowest part they need
(``ModelSettings``, ``TrainSettings``, ``BatchSettings``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from apps.common.settings import REPO_ROOT, CoreSettings

SAMPLES = REPO_ROOT / "samples"


class ModelSettings(BaseModel):
    """Shape of the generative recommender (the core's Backbone in causal item mode)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_layer: int = Field(2, ge=1, description="Transformer blocks.")
    n_head: int = Field(2, ge=1, description="Attention heads per block.")
    n_embd: int = Field(64, ge=8, description="Hidden size (and item embedding size).")
    n_inner: int = Field(256, ge=8, description="MLP hidden size inside each block.")
    max_len: int = Field(200, ge=2, description="Most recent items the model reads per user.")
    dropout: float = Field(0.2, ge=0.0, lt=1.0, description="Dropout on embeddings, attention output and MLP.")
    attn_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on attention probabilities (0 lets the CPU "
                                                                   "use its fused attention kernel: 2x faster).")
    scale_inputs: bool = Field(False, description="Multiply the item vectors by sqrt(n_embd) on the way in (as the "
                                                  "Transformer and SASRec do). Off: on ML-100k validation NDCG@10 it "
                                                  "scored 0.096 against 0.103 without.")
    norm: Literal["post", "pre"] = Field("pre", description="The core's block: BERT's post-LayerNorm (post) or "
                                                             "pre-LayerNorm with a final LayerNorm (pre). On ML-100k "
                                                             "validation NDCG@10 pre scored 0.105 against 0.102.")
    positions: Literal["left", "right"] = Field(
        "left", description="left: positions count the user's items from the oldest (the core's default); right: "
                            "from the most recent, which always sits at the last position (as in SASRec). On "
                            "ML-100k validation NDCG@10 (ids only) right scored 0.0936 against 0.1032 for left.")
    head: Literal["mlm", "dot"] = Field(
        "dot", description="mlm: the core's NextItemHead (BERT's prediction head: dense + GELU + LayerNorm, and a "
                           "per-item bias) before the dot product with the tied item table; dot: the backbone's last "
                           "hidden state dotted with the item table, no bias (as in SASRec). "
                           "With pre-LN, on ML-100k validation NDCG@10 dot scored 0.107 against 0.105 for mlm.")
    text_init: bool = Field(True, description="Use the items' MiniLM text embeddings (title + genres), as text_mode "
                                              "says; without the pretrained package the model uses ids only.")
    text_mode: Literal["init", "add"] = Field(
        "init", description="init: the id embeddings start from the text embeddings (PCA to n_embd), and an item "
                            "without interactions is placed by a ridge map fitted from text to the learned table; "
                            "add: each item is its id embedding plus a learned projection of its text, all along.")
    cloze_weight: float = Field(0.5, ge=0.0, description="Weight of an auxiliary masked-item loss that trains the same "
                                                         "weights in the core's bidirectional mode (BERT4Rec-style "
                                                         "cloze); 0 turns it off. Recommendation stays causal. On "
                                                         "ML-100k validation NDCG@10 0.5 scored 0.117 against 0.107 "
                                                         "without (SASRec 0.114).")
    cloze_prob: float = Field(0.2, gt=0.0, lt=1.0, description="Share of a window's items masked for the cloze loss.")
    loss: Literal["full", "sampled", "auto"] = Field(
        "auto", description="Full softmax over all items, sampled softmax, or auto (sampled above sampled_above).")
    n_negatives: int = Field(512, ge=1, description="Shared uniform negatives per batch for the sampled softmax.")
    sampled_above: int = Field(50_000, ge=1, description="Catalogue size from which `auto` uses the sampled softmax.")


class SASRecSettings(BaseModel):
    """The SASRec baseline (Kang and McAuley, 2018): two self-attention blocks, its own implementation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_layer: int = Field(2, ge=1, description="Self-attention blocks (the paper's 2).")
    n_head: int = Field(1, ge=1, description="Attention heads (the paper's 1).")
    n_embd: int = Field(64, ge=8, description="Hidden size.")
    dropout: float = Field(0.2, ge=0.0, lt=1.0, description="Dropout (the paper: 0.2 on ML-1M, 0.5 on sparse data).")


class TrainSettings(BaseModel):
    """How both sequential models are trained: the same loop, loss, optimiser, data and early stopping."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_epochs: int = Field(200, ge=1, description="Upper bound on epochs; early stopping usually ends sooner.")
    batch_size: int = Field(64, ge=1, description="Training windows per batch.")
    lr: float = Field(1e-3, gt=0.0, description="Adam learning rate (constant after a short warm-up).")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay on matrices.")
    warmup_steps: int = Field(100, ge=0, description="Linear learning-rate warm-up, in optimiser steps.")
    patience: int = Field(10, ge=1, description="Validations without a better validation NDCG@10 before stopping.")
    seed: int = Field(13, description="Seed of initialisation, shuffling and dropout.")
    precision: str = Field("32-true", description="Lightning precision (fp32: bf16 is slower on this CPU).")
    accelerator: str = Field("auto", description="Lightning accelerator (cpu, gpu, auto).")
    devices: int | str = Field("auto", union_mode="left_to_right",  # "4" from the environment is the count 4
                               description="Lightning devices.")
    strategy: str = Field("auto", description="Lightning strategy (auto, ddp, ...).")
    num_nodes: int = Field(1, ge=1, description="Nodes for multi-node training.")
    progress: bool = Field(True, description="Show Lightning's progress bar.")


class BatchSettings(BaseModel):
    """The batch job that writes top-K lists for every user."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    k: int = Field(20, ge=1, le=1000, description="Items per user.")
    chunk_size: int = Field(256, ge=1, description="Users per chunk (one part file, one predict batch).")
    accelerator: str = Field("auto", description="Lightning accelerator for trainer.predict.")
    devices: int | str = Field(1, union_mode="left_to_right",
                               description="Devices for trainer.predict (several GPUs: a count, with ddp).")
    strategy: str = Field("auto", description="Lightning strategy (ddp for several devices or nodes).")
    num_nodes: int = Field(1, ge=1, description="Nodes.")


class RecSettings(BaseSettings):
    """Everything the recommender reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="REC_", env_nested_delimiter="__", frozen=True, extra="ignore",
                                      env_ignore_empty=True)

    core: CoreSettings = Field(default_factory=CoreSettings)
    data: Path = Field(SAMPLES / "rec_interactions.csv",
                       description="Interactions: a file (CSV/Parquet) or a MovieLens 100k / 1M folder.")
    items: Path | None = Field(SAMPLES / "rec_items.csv", description="Item catalogue file (ignored for MovieLens).")
    artifact: Path | None = Field(None, description="Artifact folder; default: <artifacts>/rec.")
    model: ModelSettings = Field(default_factory=ModelSettings)
    sasrec: SASRecSettings = Field(default_factory=SASRecSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    top_k: int = Field(10, ge=1, le=100, description="Items shown per user in the dashboard and `recommend`.")
    mmr_lambdas: tuple[float, ...] = Field((1.0, 0.9, 0.7, 0.5, 0.3),
                                           description="MMR lambdas whose accuracy / diversity trade-off is measured.")

    @property
    def artifact_dir(self) -> Path:
        """The artifact folder."""
        return self.artifact or self.core.artifacts_dir / "rec"


def tiny_settings(**kw) -> RecSettings:
    """Settings for tests and the quick demo: a 1-layer, 16-wide model that trains on the sample data in seconds."""
    model = ModelSettings(n_layer=1, n_head=2, n_embd=16, n_inner=32, max_len=20, dropout=0.1, attn_dropout=0.1,
                          text_init=False, cloze_weight=0.0)
    sasrec = SASRecSettings(n_embd=16, dropout=0.1)
    train = TrainSettings(max_epochs=6, batch_size=64, lr=5e-3, warmup_steps=0, patience=3, progress=False)
    return RecSettings(**{"model": model, "sasrec": sasrec, "train": train, **kw})


PRESETS = {"tiny": tiny_settings, "default": RecSettings}
