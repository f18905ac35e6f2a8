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
from core.heads import distillation_loss, info_nce
from core.tasks import CoreModel

NEW_MODULES = ("heads.", "image_encoder.", "series_encoder.", "lm_head.")


class LitCore(L.LightningModule):
    """Trains a CoreModel on batches of several tasks; logs each task's loss and metrics under its own name."""

    def __init__(self, model: CoreModel, cfg: TrainConfig, val_tasks: list[str] | None = None):
        super().__init__()
        self.model, self.cfg = model, cfg
        self.val_tasks = list(val_tasks or [])
        self._val: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
        self._val_loader: dict[str, int] = {}  # task -> index of its validation loader

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
        elif spec.kind == "next_item":
            loss = self.next_item_loss(batch)
            for t in self.model.tasks.values():  # a cloze task trains on the same windows
                if t.kind == "cloze":
                    loss = loss + t.weight * self.cloze_loss(batch, t.name)
            return loss, None
        elif spec.kind == "cloze":
            return self.cloze_loss(batch, batch.task), None
        else:
            raise ValueError(f"no loss for task kind {spec.kind!r}")
        if batch.gold is not None:  # labels: the teacher's probabilities (B, C); gold: the gold classes, -1 for none
            return distillation_loss(logits, batch.labels, batch.gold, self.cfg.distil_alpha,
                                     self.cfg.distil_temperature, self.cfg.label_smoothing), logits
        # labels are class indices, or (B, C) soft targets (probabilities)
        return F.cross_entropy(logits.float(), batch.labels, label_smoothing=self.cfg.label_smoothing), logits

    def lm_loss(self, batch: Batch, reduction: str = "mean") -> torch.Tensor:
        """Masked-token loss (bidirectional batches) or next-token loss (causal batches)."""
        hidden = self.model.backbone(batch.ids, batch.mask, mode=batch.mode)
        labels = batch.labels
        if batch.mode == "causal":
            hidden, labels = hidden[:, :-1], labels[:, 1:]  # position t predicts token t+1
        sel = labels != -100
        logits = self.model.lm_head(hidden[sel])  # only where there is a target: (N, vocab)
        return F.cross_entropy(logits.float(), labels[sel], reduction=reduction)

    def item_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(M, C) states -> (M, n_items) scores of the catalogue's items (the padding column is never a candidate)."""
        return self.model.item_head(hidden)[:, 1:]

    def next_item_loss(self, batch: Batch) -> torch.Tensor:
        """Every position of (B, T + 1) windows predicts the item after it: the cross-entropy of a full softmax over
        the catalogue, or from ``cfg.sampled_above`` items a sampled softmax (``cfg.n_negatives`` shared uniform
        negatives, an accidental hit of the target not counted as a negative)."""
        inp, tgt = batch.items[:, :-1], batch.items[:, 1:]
        h = self.model.item_states(inp)  # (B, T, C)
        sel = (tgt != 0) & (inp != 0)  # a real item after a real item (a sequence's first item is never a target)
        h, t = h[sel], tgt[sel]  # (M, C), (M,)
        n_items = self.model.cfg.n_items
        if n_items < self.cfg.sampled_above:
            return F.cross_entropy(self.item_logits(h).float(), t - 1)
        table = self.model.item_encoder.table()
        neg = torch.randint(1, n_items + 1, (self.cfg.n_negatives,), device=h.device)  # shared negatives
        pos = (h * table[t]).sum(-1, keepdim=True)  # (M, 1)
        negs = (h @ table[neg].t()).masked_fill(neg[None] == t[:, None], float("-inf"))  # (M, S)
        return F.cross_entropy(torch.cat([pos, negs], 1).float(), torch.zeros_like(t))

    def cloze_loss(self, batch: Batch, task: str) -> torch.Tensor:
        """Cross-entropy of the items hidden at random (``cfg.mlm_prob`` of each sequence's items, at least one per
        sequence) given the rest, read bidirectionally: the last ``block_size`` items of (B, T) left-padded rows."""
        seqs = batch.items[:, -self.model.cfg.block_size:]
        hidden = (torch.rand(seqs.shape, device=seqs.device) < self.cfg.mlm_prob) & (seqs != 0)
        hidden[:, -1] |= ~hidden.any(1)  # rows are left-padded: the last item is always real
        h = self.model.item_states(seqs, "bidirectional", hidden, task)[hidden]  # (K, C)
        return F.cross_entropy(self.item_logits(h).float(), seqs[hidden] - 1)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss, _ = self.task_loss(batch)
        weight = self.model.task(batch.task).weight
        self.log(f"train/{batch.task}/loss", loss, batch_size=len(batch), prog_bar=len(self.model.tasks) == 1)
        return loss * weight

    def validation_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        spec = self.model.task(batch.task)
        acc = self._val[batch.task]
        self._val_loader[batch.task] = dataloader_idx
        if spec.kind == "next_item":  # the rank of the target among every item the user has not seen
            scores = mask_seen(self.model.score_next(batch.items), batch.seen)
            acc["rank"].extend((1 + (scores > scores.gather(1, batch.labels[:, None])).sum(1)).tolist())
            return
        if spec.kind == "lm":
            targets = batch.labels[:, 1:] if batch.mode == "causal" else batch.labels
            acc["nll"].append(float(self.lm_loss(batch, reduction="sum")))
            acc["n"].append(int(targets.ne(-100).sum()))
            return
        loss, out = self.task_loss(batch)
        acc["loss"].extend([float(loss)] * len(batch))  # one entry per sample, like pred and true (see _gathered)
        acc["pred"].extend(out.argmax(-1).tolist())
        if spec.kind == "pairs":  # in-batch retrieval: is the positive ranked first?
            acc["true"].extend(range(out.size(0)))
        else:
            true = batch.labels.argmax(-1) if batch.labels.is_floating_point() else batch.labels  # soft: the top class
            acc["true"].extend(true.tolist())

    def on_validation_epoch_end(self) -> None:
        scores, losses = [], []
        for task, acc in self._gathered().items():
            if "rank" in acc:
                m = metrics.hr_ndcg_mrr_from_ranks(np.asarray(acc["rank"]), 10)
                for name, value in m.items():
                    self.log(f"val/{task}/{name}", value, prog_bar=name == "ndcg@10")
                scores.append(m["ndcg@10"])
                continue
            if "nll" in acc:
                loss = sum(acc["nll"]) / max(1, sum(acc["n"]))
                self.log(f"val/{task}/ppl", metrics.perplexity(sum(acc["nll"]), max(1, sum(acc["n"]))))
                self.log(f"val/{task}/loss", loss)
                losses.append(loss)
                continue
            loss, a = sum(acc["loss"]) / max(1, len(acc["loss"])), metrics.accuracy(acc["true"], acc["pred"])
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
        """This validation's records from every process, so that every rank logs the same metrics and early stopping
        and the best checkpoint are decided on the whole validation set. The repeats that Lightning's
        ``DistributedSampler`` pads each rank's share with are dropped from the per-sample records first."""
        local = {}
        for task, acc in self._val.items():
            keep = self._unpadded(task, len(acc.get("true", acc.get("rank", []))))
            local[task] = {k: list(v[:keep]) if k in ("pred", "true", "loss", "rank") else list(v)
                           for k, v in acc.items()}
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

    def configure_optimizers(self):
        """AdamW with two learning rates (pretrained backbone vs new heads), no decay on biases and LayerNorms, and
        linear warm-up then cosine decay per step."""
        groups: dict[tuple[bool, bool], list] = defaultdict(list)
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            new = name.startswith(NEW_MODULES) or ".lora_" in name  # fresh weights: the higher rate
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


def mask_seen(scores: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """Set the padding column and every item of the user's history to -inf: (B, N+1), (B, H) -> (B, N+1)."""
    scores = scores.clone()
    scores.scatter_(1, seen, float("-inf"))  # padding (0) in ``seen`` lands on column 0, which is masked anyway
    scores[:, 0] = float("-inf")
    return scores
