"""LitCore: the Lightning wrapper of a CoreModel. One backbone, several task heads, one loss per task kind.

Steps stay a few lines; the metrics are the pure functions of ``core.metrics``.
"""

from __future__ import annotations

import math
from collections import defaultdict

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DistributedSampler

from core import metrics
from core.config import TrainConfig
from core.data import Batch
from core.heads import info_nce
from core.tasks import CoreModel

NEW_MODULES = ("heads.", "image_encoder.", "series_encoder.", "lm_head.")


class LitCore(L.LightningModule):
    """Trains a CoreModel on batches of several tasks; logs each task's loss and metrics under its own name."""

    def __init__(self, model: CoreModel, cfg: TrainConfig, val_tasks: list[str] | None = None,
                 new_module_prefixes: tuple[str, ...] = NEW_MODULES):
        super().__init__()
        self.model, self.cfg = model, cfg
        self.val_tasks = list(val_tasks or [])
        self.new_module_prefixes = new_module_prefixes
        self._val: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
        self._val_loader: dict[str, int] = {}  # task -> index of its validation loader

    # ------------------------------------------------------------------ losses
    def task_loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Loss of one batch and, for classifiers, its logits."""
        spec = self.model.task(batch.task)
        if spec.kind == "classify":
            logits = self.model.classify(batch.task, batch.ids, batch.mask)
        elif spec.kind == "image_classify":
            logits = self.model.classify_images(batch.task, batch.images)
        elif spec.kind == "series_classify":
            logits = self.model.classify_series(batch.task, batch.series, batch.ids, batch.mask)
        elif spec.kind == "pairs":
            self.model.activate(batch.task)
            a = self.model.embed(batch.ids, batch.mask)
            b = self.model.embed(batch.ids_b, batch.mask_b)
            return info_nce(a, b, self.cfg.temperature), a @ b.t()
        elif spec.kind == "lm":
            self.model.activate(batch.task)
            return self.lm_loss(batch), None
        else:
            raise ValueError(f"no loss for task kind {spec.kind!r}")
        return self.class_loss(logits, batch.labels), logits

    def class_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy against class indices, or (B, C) soft targets (probabilities), with the label smoothing."""
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.cfg.label_smoothing)

    def lm_loss(self, batch: Batch, reduction: str = "mean") -> torch.Tensor:
        """Masked-token loss (bidirectional batches) or next-token loss (causal batches)."""
        hidden = self.model.backbone(batch.ids, batch.mask, mode=batch.mode)
        labels = batch.labels
        if batch.mode == "causal":
            hidden, labels = hidden[:, :-1], labels[:, 1:]  # position t predicts token t+1
        sel = labels != -100
        logits = self.model.lm_head(hidden[sel])  # only where there is a target: (N, vocab)
        return F.cross_entropy(logits.float(), labels[sel], reduction=reduction)

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss, _ = self.task_loss(batch)
        weight = self.model.task(batch.task).weight
        self.log(f"train/{batch.task}/loss", loss, batch_size=len(batch), prog_bar=len(self.model.tasks) == 1)
        return loss * weight

    def validation_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        spec = self.model.task(batch.task)
        acc = self._val[batch.task]
        self._val_loader[batch.task] = dataloader_idx
        if spec.kind == "lm":
            nll = self.lm_loss(batch, reduction="sum")
            n = batch.labels[:, 1:].ne(-100).sum() if batch.mode == "causal" else batch.labels.ne(-100).sum()
            acc["nll"].append(float(nll))
            acc["n"].append(int(n))
            return
        loss, out = self.task_loss(batch)
        acc["loss"].extend([float(loss)] * len(batch))  # one entry per sample, like pred and true (see _gathered)
        if spec.kind == "pairs":
            acc["pred"].extend(out.argmax(-1).tolist())  # in-batch retrieval: is the positive ranked first?
            acc["true"].extend(range(out.size(0)))
        else:
            acc["pred"].extend(out.argmax(-1).tolist())
            true = batch.labels.argmax(-1) if batch.labels.is_floating_point() else batch.labels  # soft: the top class
            acc["true"].extend(true.tolist())

    def on_validation_epoch_end(self) -> None:
        scores, losses = [], []
        for task, acc in self._gathered().items():
            if "nll" in acc:
                loss = sum(acc["nll"]) / max(1, sum(acc["n"]))
                self.log(f"val/{task}/ppl", metrics.perplexity(sum(acc["nll"]), max(1, sum(acc["n"]))))
                self.log(f"val/{task}/loss", loss)
                losses.append(loss)
                continue
            loss = sum(acc["loss"]) / max(1, len(acc["loss"]))
            a = metrics.accuracy(acc["true"], acc["pred"])
            self.log(f"val/{task}/loss", loss)
            self.log(f"val/{task}/acc", a, prog_bar=True)
            if self.model.task(task).kind != "pairs":
                self.log(f"val/{task}/macro_f1", metrics.macro_f1(acc["true"], acc["pred"]))
            scores.append(a)
            losses.append(loss)
        if scores:
            self.log("val/score", float(np.mean(scores)), prog_bar=True)
        if losses:
            self.log("val/loss", float(np.mean(losses)), prog_bar=not scores)
        self._val.clear()

    def _gathered(self) -> dict[str, dict[str, list]]:
        """This validation's records from every process, so that every rank computes and logs the same metrics and
        early stopping and the best checkpoint are decided on the whole validation set, the same way everywhere.

        Under a distributed strategy Lightning gives each process a ``DistributedSampler`` without shuffling: rank
        ``r`` of ``W`` reads positions ``r, r + W, ...`` of the validation set, padded at the end with repeats of its
        first samples so that every rank gets as many. Those repeats are dropped from the per-sample records (pred,
        true, loss) before the records of all ranks are put together; the LM records (sums per batch) are summed as
        they are. One process: its own records.
        """
        local = {}
        for task, acc in self._val.items():
            keep = self._unpadded(task, len(acc.get("true", [])))
            local[task] = {k: list(v[:keep]) if k in ("pred", "true", "loss") else list(v) for k, v in acc.items()}
        if self.trainer.world_size == 1 or not torch.distributed.is_initialized():
            return local
        parts: list[dict | None] = [None] * self.trainer.world_size
        torch.distributed.all_gather_object(parts, local)  # the same list, in rank order, on every rank
        merged: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
        for part in parts:
            for task, acc in part.items():
                for k, v in acc.items():
                    merged[task][k].extend(v)
        return merged

    def _unpadded(self, task: str, n: int) -> int:
        """How many of this process's first ``n`` validation samples of ``task`` are not the sampler's padding."""
        loaders = self.trainer.val_dataloaders
        dl = loaders[self._val_loader.get(task, 0)] if isinstance(loaders, (list, tuple)) else loaders
        sampler = getattr(dl, "sampler", None)
        if not isinstance(sampler, DistributedSampler) or sampler.shuffle or sampler.drop_last:
            return n
        return min(n, len(range(sampler.rank, len(sampler.dataset), sampler.num_replicas)))

    # ------------------------------------------------------------------ optimiser
    def configure_optimizers(self):
        """AdamW with two learning rates (pretrained backbone vs new heads), no decay on biases and LayerNorms, and
        linear warm-up then cosine decay per step."""
        groups: dict[tuple[bool, bool], list] = defaultdict(list)
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            new = name.startswith(self.new_module_prefixes) or ".lora_" in name  # fresh weights: the higher rate
            decay = p.ndim >= 2 and "wpe" not in name and "wme" not in name
            groups[(new, decay)].append(p)
        params = [{"params": ps, "lr": self.cfg.head_lr if new else self.cfg.lr,
                   "weight_decay": self.cfg.weight_decay if decay else 0.0}
                  for (new, decay), ps in groups.items()]
        opt = torch.optim.AdamW(params, betas=(0.9, 0.98), eps=1e-6)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warm = max(1, int(total * self.cfg.warmup_ratio))

        def schedule(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return max(0.0, 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm))))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
