"""Tasks and the CoreModel: one Backbone, its modality encoders, and one head per task.

A task names what a head does (``kind``) and, for classifiers, its label names. The CoreModel is a plain
``nn.Module`` (no Lightning), so the inference engine and the artifacts use it directly.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field

from core.adapters import adapter_names, set_adapter
from core.config import ModelConfig
from core.heads import ClassifierHead, EmbeddingHead, LMHead, NextItemHead
from core.modalities import ImagePatchEncoder, ItemEncoder, ItemMask, SeriesEncoder
from core.model import Backbone, Prefix

# The adapter name of a task that runs on the base weights alone, whatever adapter was active.
BASE = "-"
TaskKind = Literal["lm", "classify", "pairs", "image_classify", "series_classify", "next_item", "cloze"]


class UnknownTaskError(KeyError):
    """A task name that the model has no head for."""

    def __str__(self) -> str:
        return str(self.args[0])


class TaskSpec(BaseModel):
    """One task of the model.

    kinds: ``lm`` (masked + next-token pretraining, LM head), ``classify`` (text -> label), ``pairs`` (contrastive
    text pairs, embedding head), ``image_classify`` (image -> label), ``series_classify`` (numeric window + text ->
    label), ``next_item`` (each position of an item sequence predicts the next item, causal), ``cloze`` (hidden items
    of a sequence are filled in from both sides; it trains on the batches of the model's next-item task).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$", description="Task name; also the head's name.")
    kind: TaskKind
    labels: tuple[str, ...] = Field((), description="Class names, index = class id (classifiers only).")
    weight: float = Field(1.0, gt=0.0, description="Weight of this task's loss in multi-task training.")
    adapter: str | None = Field(None, description="LoRA adapter the task switches to (None: it does not switch; "
                                                  f"{BASE!r}: every adapter off, the base weights alone).")

    @property
    def n_classes(self) -> int:
        """Number of classes (0 for tasks that do not classify)."""
        return len(self.labels)


class CoreModel(nn.Module):
    """Backbone + LM head (tied) + embedding head + the encoders of ``cfg.encoders`` (and the item encoder and its
    tied next-item head when ``cfg.n_items``) + one head per task that has weights of its own."""

    def __init__(self, cfg: ModelConfig, tasks: list[TaskSpec] | tuple[TaskSpec, ...] = ()):
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg)
        self.lm_head = LMHead(cfg, self.backbone.wte)
        self.embed_head = EmbeddingHead(cfg)
        self.image_encoder = ImagePatchEncoder(cfg) if "image" in cfg.encoders else None
        self.series_encoder = SeriesEncoder(cfg) if "series" in cfg.encoders else None
        self.item_encoder = ItemEncoder(cfg) if cfg.n_items else None
        self.item_head = NextItemHead(self.item_encoder) if cfg.n_items else None
        self.heads = nn.ModuleDict()
        self.tasks: dict[str, TaskSpec] = {}
        for t in tasks:
            self.add_task(t)

    def add_task(self, task: TaskSpec) -> None:
        """Register a task, creating its classifier head when it has labels."""
        if task.kind in ("classify", "image_classify", "series_classify"):
            if task.n_classes < 2:
                raise ValueError(f"task {task.name!r} needs at least two labels")
            self.heads[task.name] = ClassifierHead(self.cfg, task.n_classes)
        if task.kind in ("next_item", "cloze") and self.item_encoder is None:
            raise ValueError(f"task {task.name!r} reads item sequences: the model needs n_items > 0")
        if task.kind == "cloze":
            self.heads[task.name] = ItemMask(self.cfg)
        self.tasks[task.name] = task

    def activate(self, name: str) -> TaskSpec:
        """Switch to the LoRA adapter of task ``name`` (if the model has adapters); return the task."""
        spec = self.task(name)
        if spec.adapter == BASE:
            set_adapter(self.backbone, None)
        elif spec.adapter is not None:
            if spec.adapter not in adapter_names(self.backbone):
                raise UnknownTaskError(f"task {name!r} needs adapter {spec.adapter!r}, which this model lacks")
            set_adapter(self.backbone, spec.adapter)
        return spec

    def task(self, name: str) -> TaskSpec:
        """The task called ``name``, or a clear error listing the known ones."""
        if name not in self.tasks:
            raise UnknownTaskError(f"unknown task {name!r}; this model knows {sorted(self.tasks) or 'no tasks'}")
        return self.tasks[name]

    def encode(self, ids: torch.Tensor | None, mask: torch.Tensor | None, mode="bidirectional",
               prefix: Prefix | None = None, prefix_len: torch.Tensor | None = None):
        """Hidden states and the mask over all positions (prefix first)."""
        hidden = self.backbone(ids, mask, mode=mode, prefix=prefix, prefix_len=prefix_len)
        masks = [prefix.mask] if prefix is not None else []
        if ids is not None:
            masks.append(mask.bool() if mask is not None else torch.ones_like(ids, dtype=torch.bool))
        return hidden, torch.cat(masks, 1)

    def classify(self, task: str, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Class logits (B, n_classes) of a text task."""
        self.activate(task)
        hidden, full = self.encode(ids, mask)
        return self.heads[task](hidden, full)

    def embed(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """L2-normalised sentence embeddings (B, C)."""
        hidden, full = self.encode(ids, mask)
        return self.embed_head(hidden, full)

    def image_prefix(self, images: torch.Tensor) -> Prefix:
        """Patch tokens of prepared images (N, C, H, W)."""
        return self.image_encoder(images)

    def classify_images(self, task: str, images: torch.Tensor) -> torch.Tensor:
        """Class logits (N, n_classes) of prepared images."""
        self.activate(task)
        hidden, full = self.encode(None, None, prefix=self.image_prefix(images))
        return self.heads[task](hidden, full)

    def classify_series(self, task: str, series: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor):
        """Class logits of a numeric window (prefix) read together with a text."""
        self.activate(task)
        hidden, full = self.encode(ids, mask, prefix=self.series_encoder(series))
        return self.heads[task](hidden, full)

    def item_states(self, items: torch.Tensor, mode: str = "causal", hidden: torch.Tensor | None = None,
                    mask_task: str | None = None) -> torch.Tensor:
        """(B, T) item ids, left-padded with 0 -> (B, T, C) states of the backbone in ``mode``; where ``hidden`` is
        True the item is replaced by the learned vector of cloze task ``mask_task``."""
        vector = self.heads[mask_task].vector if hidden is not None else None
        prefix = self.item_encoder(items, hidden, vector)
        positions = None
        if self.cfg.item_positions == "right":  # the most recent item at the last position, whatever the length
            real = prefix.mask.long()
            after = real.flip(1).cumsum(1).flip(1) - real  # real items after each position
            positions = (self.cfg.block_size - 1 - after).clamp(min=0)
        return self.backbone(None, mode=mode, prefix=prefix, positions=positions)

    def score_next(self, items: torch.Tensor) -> torch.Tensor:
        """Scores of the next item after each left-padded sequence (its last ``block_size`` items): (B, T) ->
        (B, n_items + 1); column 0 is padding."""
        return self.item_head(self.item_states(items[:, -self.cfg.block_size:])[:, -1])
