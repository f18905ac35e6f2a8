"""Settings of the recommender app (env prefix ``REC_``, nested with ``__``, e.g. ``REC_TRAIN__MAX_EPOCHS=50``).

``model`` and ``sasrec`` hold the part of ``core.config.ModelConfig`` an item model sets, ``train`` the part of
``core.config.TrainConfig`` this training reads, with this app's defaults; ``preset`` picks other defaults by name
(``PRESETS``), and a field set explicitly overrides the preset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict

from apps.common.settings import REPO_ROOT, CoreSettings, PresetSettings
from core.config import Devices, ModelConfig, TrainConfig, config_part

SAMPLES = REPO_ROOT / "samples"

MODEL_FIELDS = ("n_layer", "n_head", "n_embd", "n_inner", "block_size", "dropout", "attn_dropout", "norm",
                "item_text_mode", "item_positions", "item_scale")
TRAIN_FIELDS = ("max_epochs", "batch_size", "lr", "head_lr", "weight_decay", "warmup_ratio", "precision", "seed",
                "patience", "mlm_prob", "n_negatives", "sampled_above", "num_workers", "accelerator", "devices",
                "strategy", "num_nodes", "deterministic")
# The core's model in causal item mode with pre-LayerNorm blocks; block_size is the most recent items read per user.
MODEL = dict(n_layer=2, n_head=2, n_embd=64, n_inner=256, block_size=200, dropout=0.2, attn_dropout=0.0, norm="pre")
# SASRec (Kang and McAuley, 2018) as a configuration of the same model: two one-head blocks as wide as its item
# vectors, positions counted from the most recent item, item vectors scaled by sqrt(n_embd) on the way in.
SASREC = dict(MODEL, n_head=1, n_inner=64, item_positions="right", item_scale=True)
TRAIN = dict(max_epochs=200, batch_size=64, lr=1e-3, head_lr=1e-3, weight_decay=0.0, warmup_ratio=0.03,
             precision="32-true", patience=10, mlm_prob=0.2)
RecModelConfig = config_part(ModelConfig, "RecModelConfig", MODEL_FIELDS, MODEL)
SASRecConfig = config_part(ModelConfig, "SASRecConfig", MODEL_FIELDS, SASREC)
RecTrainConfig = config_part(TrainConfig, "RecTrainConfig", TRAIN_FIELDS, TRAIN)
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},  # the fields' defaults
    # a 1-layer, 16-wide model that trains on the sample data in seconds (tests and the demo)
    "tiny": {"model": dict(n_layer=1, n_embd=16, n_inner=32, block_size=20, dropout=0.1, attn_dropout=0.1),
             "sasrec": dict(n_embd=16, n_inner=16, block_size=20, dropout=0.1),
             "train": dict(max_epochs=6, lr=5e-3, head_lr=5e-3, warmup_ratio=0.0, patience=3),
             "text_init": False, "cloze_weight": 0.0},
}


class BatchSettings(BaseModel):
    """The batch job that writes top-K lists for every user."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False, extra="forbid")

    k: int = Field(20, ge=1, le=1000, description="Items per user.")
    chunk_size: int = Field(256, ge=1, description="Users per chunk (one part file, one predict batch).")
    accelerator: str = Field("auto", description="Lightning accelerator for trainer.predict.")
    devices: Devices = Field(1, union_mode="left_to_right",
                             description="Devices for trainer.predict (several GPUs: a count, with ddp).")
    strategy: str = Field("auto", description="Lightning strategy (ddp for several devices or nodes).")
    num_nodes: int = Field(1, ge=1, description="Nodes.")


class RecSettings(PresetSettings):
    """Everything the recommender reads from its environment."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = PRESETS

    model_config = SettingsConfigDict(env_prefix="REC_", env_nested_delimiter="__", frozen=True, allow_inf_nan=False,
                                      extra="ignore", env_ignore_empty=True)

    core: CoreSettings = Field(default_factory=CoreSettings)
    data: Path = Field(SAMPLES / "rec_interactions.csv",
                       description="Interactions: a file (CSV/Parquet) or a MovieLens 100k / 1M folder.")
    items: Path | None = Field(SAMPLES / "rec_items.csv", description="Item catalogue file (ignored for MovieLens).")
    artifact: Path | None = Field(None, description="Artifact folder; default: <artifacts>/rec.")
    preset: Literal["default", "tiny"] = Field("default", description="Defaults of model, sasrec, train, text_init "
                                                                       "and cloze_weight (tiny: trains in seconds).")
    model: RecModelConfig = Field(default_factory=RecModelConfig)  # the generative recommender
    sasrec: SASRecConfig = Field(default_factory=SASRecConfig)  # the SASRec baseline
    train: RecTrainConfig = Field(default_factory=RecTrainConfig)  # both, with early stopping on validation NDCG@10
    text_init: bool = Field(True, description="Give the generative model's items the MiniLM text features of their "
                                              "title and genres (model.item_text_mode says how); without the "
                                              "pretrained package it uses ids only.")
    cloze_weight: float = Field(0.5, ge=0.0, description="Weight of the cloze task (hidden items filled in from both "
                                                         "sides, BERT4Rec-style) that trains the generative model "
                                                         "beside next-item prediction, on the same windows; 0: off. "
                                                         "Recommendation stays causal.")
    progress: bool = Field(True, description="Show Lightning's progress bars while training.")
    batch: BatchSettings = Field(default_factory=BatchSettings)
    top_k: int = Field(10, ge=1, le=100, description="Items shown per user in the dashboard and `recommend`.")
    mmr_lambdas: tuple[float, ...] = Field((1.0, 0.9, 0.7, 0.5, 0.3),
                                           description="MMR lambdas whose accuracy / diversity trade-off is measured.")

    @property
    def artifact_dir(self) -> Path:
        """The artifact folder."""
        return self.artifact or self.core.artifacts_dir / "rec"


def tiny_settings(**kw) -> RecSettings:
    """The tiny preset (tests and the quick demo), with ``kw`` on top."""
    return RecSettings(**{"preset": "tiny", **kw})
