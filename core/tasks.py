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
from core.heads import ClassifierHead, EmbeddingHead, LMHead
from core.modalities import ImagePatchEncoder, SeriesEncoder
from core.model import Backbone, Prefix, mean_pool

# The adapter name of a task that runs on the base weights alone, whatever adapter was active.
BASE = "-"
TaskKind = Literal["lm", "classify", "pairs", "image_classify", "series_classify"]


class UnknownTaskError(KeyError):
    """A task name that the model has no head for."""

    def __str__(self) -> str:
        return str(self.args[0])


class TaskSpec(BaseModel):
    """One task of the model.

    kinds: ``lm`` (masked + next-token pretraining, LM head), ``classify`` (text -> label), ``pairs`` (contrastive
    text pairs, embedding head), ``image_classify`` (image -> label), ``series_classify`` (numeric window + text ->
    label).
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
    """Backbone + LM head (tied) + embedding head + image and series encoders + one classifier per task."""

    def __init__(self, cfg: ModelConfig, tasks: list[TaskSpec] | tuple[TaskSpec, ...] = ()):
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg)
        self.lm_head = LMHead(cfg, self.backbone.wte)
        self.embed_head = EmbeddingHead(cfg)
        self.image_encoder = ImagePatchEncoder(cfg)
        self.series_encoder = SeriesEncoder(cfg)
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

    # ------------------------------------------------------------------ forward passes
    def encode(self, ids: torch.Tensor | None, mask: torch.Tensor | None, mode="bidirectional",
               prefix: Prefix | None = None, prefix_len: torch.Tensor | None = None):
        """Hidden states and the mask over all positions (prefix first)."""
        hidden = self.backbone(ids, mask, mode=mode, prefix=prefix, prefix_len=prefix_len)
        masks = []
        if prefix is not None:
            masks.append(prefix.mask)
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
        prefix = self.image_prefix(images)
        hidden, full = self.encode(None, None, prefix=prefix)
        return self.heads[task](hidden, full)

    def classify_series(self, task: str, series: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor):
        """Class logits of a numeric window (prefix) read together with a text."""
        self.activate(task)
        hidden, full = self.encode(ids, mask, prefix=self.series_encoder(series))
        return self.heads[task](hidden, full)

    def pooled(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean-pooled hidden state (B, C)."""
        return mean_pool(hidden, mask)
