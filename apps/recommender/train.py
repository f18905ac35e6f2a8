"""Training of the sequence models with Lightning: one LightningModule for both the generative recommender and SASRec,
so that they share the loss, the optimiser, the data and the early stopping on validation NDCG@10.

Every position of a training window predicts the item that follows it (causal next-item prediction). The loss is
the cross-entropy of a full softmax over the catalogue, or a sampled softmax (uniform shared negatives, accidental hits
of the target masked) when the catalogue is large. Validation ranks every item for each user, with the user's history
excluded, after each epoch; the best epoch by NDCG@10 is kept.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, Dataset, Sampler

from apps.recommender.data import Cases, pad_left, windows
from apps.recommender.model import SequentialRecommender
from apps.recommender.settings import TrainSettings
from core import metrics
from core.train import StderrProgressBar

log = logging.getLogger(__name__)
MONITOR = "val/ndcg@10"


class WindowData(Dataset):
    """Training windows (item index arrays of length <= max_len + 1)."""

    def __init__(self, seqs: list[np.ndarray], max_len: int):
        self.windows = windows(seqs, max_len)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.windows[i]


class LengthBuckets(Sampler[list[int]]):
    """Seeded batches of windows of similar length (less padding): each epoch the windows are shuffled, cut into pools
    of 50 batches, sorted by length inside each pool and batched, and the batches are shuffled."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int, pool: int = 50):
        self.lengths, self.batch_size, self.seed, self.pool = np.asarray(lengths), batch_size, seed, pool
        self.epoch = 0

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self):
        rng = np.random.default_rng(self.seed + self.epoch)
        self.epoch += 1
        perm = rng.permutation(len(self.lengths))
        size = self.batch_size * self.pool
        batches = []
        for start in range(0, len(perm), size):
            chunk = perm[start: start + size]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i: i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)]
        for i in rng.permutation(len(batches)):
            yield batches[i]


def collate_windows(items: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(pad_left(items))  # (B, T + 1)


class CaseData(Dataset):
    """Evaluation cases: (input history, target)."""

    def __init__(self, cases: Cases):
        self.cases = cases

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, i: int):
        return self.cases.inputs[i], int(self.cases.targets[i])


class CaseCollator:
    """Left-padded last ``max_len`` items as input, the target, and the whole history (to exclude from ranking)."""

    def __init__(self, max_len: int):
        self.max_len = max_len

    def __call__(self, items):
        hist, targets = zip(*items)
        return (torch.from_numpy(pad_left(list(hist), self.max_len)), torch.tensor(targets, dtype=torch.long),
                torch.from_numpy(pad_left(list(hist))))


def mask_seen(scores: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """Set the padding column and every item of the user's history to -inf: (B, N+1), (B, H) -> (B, N+1)."""
    scores = scores.clone()
    scores.scatter_(1, seen, float("-inf"))  # padding (0) in ``seen`` lands on column 0, which is masked anyway
    scores[:, 0] = float("-inf")
    return scores


class LitRecommender(L.LightningModule):
    """Trains a ``SequentialRecommender``; validation logs HR@10, NDCG@10 and MRR over full rankings."""

    def __init__(self, model: SequentialRecommender, cfg: TrainSettings, sampled: bool = False,
                 n_negatives: int = 512, future_window: int = 0, future_weight: float = 0.0):
        super().__init__()
        self.model, self.cfg, self.sampled, self.n_negatives = model, cfg, sampled, n_negatives
        self.future_window, self.future_weight = future_window, future_weight
        self._ranks: list[np.ndarray] = []

    def loss(self, seqs: torch.Tensor) -> torch.Tensor:
        """Next-item cross-entropy over every position of (B, T + 1) windows; with a future window, plus
        ``future_weight`` times the mean cross-entropy of the ``future_window`` items after the next one."""
        inp, tgt = seqs[:, :-1], seqs[:, 1:]
        h = self.model.hidden(inp)  # (B, T, C)
        sel = (tgt != 0) & (inp != 0)  # a real item after a real item (a user's first item is never a target)
        table, bias = self.model.item_table(), self.model.item_bias()
        if not self.sampled:
            logits = self._item_logits(h[sel])
            t = tgt[sel]
            if not (self.future_window and self.future_weight):
                return F.cross_entropy(logits, t - 1)
            logp = logits.log_softmax(-1)  # (M, N)
            loss = F.nll_loss(logp, t - 1)
            return loss + self.future_weight * self._future_loss(logp, tgt, sel)
        h, t = h[sel], tgt[sel]  # (M, C), (M,)
        neg = torch.randint(1, self.model.n_items + 1, (self.n_negatives,), device=h.device)  # shared negatives
        pos = (h * table[t]).sum(-1, keepdim=True)  # (M, 1)
        negs = h @ table[neg].t()  # (M, S)
        if bias is not None:
            pos, negs = pos + bias[t][:, None], negs + bias[neg][None]
        negs = negs.masked_fill(neg[None] == t[:, None], float("-inf"))  # an accidental hit is not a negative
        return F.cross_entropy(torch.cat([pos, negs], 1), torch.zeros_like(t))

    def _future_loss(self, logp: torch.Tensor, tgt: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood, at each position, of the items 2..future_window+1 steps ahead (those inside
        the window): (M, N) log-probabilities of the selected positions, (B, T) next-item targets, (B, T) selection."""
        B, T = tgt.shape
        parts, total = [], 0
        for j in range(1, self.future_window + 1):
            ahead = torch.zeros_like(tgt)
            if j < T:
                ahead[:, :T - j] = tgt[:, j:]  # the item j steps after the next one
            ahead = ahead[sel]  # (M,)
            ok = ahead != 0
            if ok.any():
                parts.append(-logp[ok].gather(1, (ahead[ok] - 1)[:, None]).sum())
                total += int(ok.sum())
        return torch.stack(parts).sum() / total if parts else logp.new_zeros(())

    def cloze_loss(self, seqs: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the items hidden at random (``cloze_prob`` of each window's items, at least one per
        window) given the rest of the window, read in the core's bidirectional mode: (B, T + 1) windows (their last
        ``max_len`` items)."""
        seqs = seqs[:, -self.model.max_len:]
        real = seqs != 0
        masked = (torch.rand(seqs.shape, device=seqs.device) < self.model.cloze_prob) & real
        masked[:, -1] |= ~masked.any(1)  # windows are left-padded: the last item is always real
        h = self.model.cloze_hidden(seqs, masked)[masked]  # (K, C)
        return F.cross_entropy(self._item_logits(h), seqs[masked] - 1)

    def _item_logits(self, h: torch.Tensor) -> torch.Tensor:
        """(M, C) states -> (M, N) scores of the catalogue's items: the padding column is never a candidate."""
        logits = h @ self.model.item_table()[1:].t()
        bias = self.model.item_bias()
        return logits if bias is None else logits + bias[1:]

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        if self.model.cloze_weight > 0:
            loss = loss + self.model.cloze_weight * self.cloze_loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch.size(0))
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        inp, target, seen = batch
        scores = mask_seen(self.model.score_last(inp), seen)
        ts = scores.gather(1, target[:, None])
        self._ranks.append((1 + (scores > ts).sum(1)).cpu().numpy())

    def on_validation_epoch_end(self) -> None:
        if not self._ranks:
            return
        m = metrics.hr_ndcg_mrr_from_ranks(np.concatenate(self._ranks), 10)
        self._ranks.clear()
        self.log(MONITOR, m["ndcg@10"], prog_bar=True, sync_dist=True)
        self.log("val/hr@10", m["hr@10"], sync_dist=True)
        self.log("val/mrr", m["mrr"], sync_dist=True)

    def configure_optimizers(self):
        """AdamW (no decay on biases, LayerNorms and position tables), linear warm-up then a constant rate."""
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            (decay if p.ndim >= 2 and "pos" not in name and "wpe" not in name else no_decay).append(p)
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": self.cfg.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=self.cfg.lr, betas=(0.9, 0.98))
        warm = self.cfg.warmup_steps
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warm) if warm else 1.0)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class History(Callback):
    """Wall-clock seconds of each training epoch (validation excluded) and the validation NDCG@10 after each."""

    def __init__(self):
        self.seconds: list[float] = []
        self.val: list[float] = []
        self._t0 = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds.append(time.perf_counter() - self._t0)

    def on_validation_end(self, trainer, pl_module) -> None:
        if MONITOR in trainer.callback_metrics and not trainer.sanity_checking:
            self.val.append(float(trainer.callback_metrics[MONITOR]))


def loaders(train_seqs: list[np.ndarray], val: Cases, max_len: int, batch_size: int, seed: int
            ) -> tuple[DataLoader, DataLoader]:
    """The training windows (shuffled, seeded, batched by length) and the validation cases."""
    data = WindowData(train_seqs, max_len)
    buckets = LengthBuckets([len(w) for w in data.windows], batch_size, seed)
    train = DataLoader(data, batch_sampler=buckets, collate_fn=collate_windows)
    valid = DataLoader(CaseData(val), batch_size=256, shuffle=False, collate_fn=CaseCollator(max_len))
    return train, valid


def fit(model: SequentialRecommender, train_seqs: list[np.ndarray], val: Cases, cfg: TrainSettings,
        out_dir: str | Path, name: str, sampled: bool = False, n_negatives: int = 512, future_window: int = 0,
        future_weight: float = 0.0) -> dict:
    """Train ``model`` until validation NDCG@10 stops improving; load the best epoch's weights into it.

    Args:
        model: a freshly initialised sequence model.
        train_seqs: training sequences (every user's items but the validation and test targets).
        val: the validation cases (history -> second-to-last item).
        cfg: the training knobs (shared by every model of a run).
        out_dir: folder for TensorBoard logs (``logs/<name>``) and the temporary best checkpoint.
        name: the model's name in the logs.
        sampled: sampled instead of full softmax.
        n_negatives: negatives of the sampled softmax.
        future_window: with the full softmax, also predict this many items after the next one at each position.
        future_weight: the weight of that future-window loss.

    Returns:
        The training history: best validation metrics, epochs, seconds in all and per training epoch.
    """
    out_dir = Path(out_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    train_dl, val_dl = loaders(train_seqs, val, model.max_len, cfg.batch_size, cfg.seed)
    lit = LitRecommender(model, cfg, sampled=sampled, n_negatives=n_negatives, future_window=future_window,
                         future_weight=future_weight)
    ckpt = ModelCheckpoint(dirpath=out_dir / "checkpoints", filename=f"{name}-best", monitor=MONITOR, mode="max",
                           save_top_k=1, save_weights_only=True, enable_version_counter=False)
    hist = History()
    callbacks = [ckpt, EarlyStopping(monitor=MONITOR, mode="max", patience=cfg.patience), hist]
    if cfg.progress:
        callbacks.append(StderrProgressBar(refresh_rate=5))
    trainer = L.Trainer(max_epochs=cfg.max_epochs, precision=cfg.precision, accelerator=cfg.accelerator,
                        devices=cfg.devices, strategy=cfg.strategy, num_nodes=cfg.num_nodes, callbacks=callbacks,
                        logger=TensorBoardLogger(out_dir, name="logs", version=name, default_hp_metric=False),
                        enable_progress_bar=cfg.progress, enable_model_summary=False, num_sanity_val_steps=0,
                        log_every_n_steps=5, deterministic=False)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
        trainer.fit(lit, train_dl, val_dl)
    seconds = time.perf_counter() - t0
    best = float(ckpt.best_model_score) if ckpt.best_model_score is not None else None
    if ckpt.best_model_path:
        state = torch.load(ckpt.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
        lit.load_state_dict(state)
        Path(ckpt.best_model_path).unlink(missing_ok=True)
    model.eval()
    stop = trainer.early_stopping_callback
    return {"best_val_ndcg@10": best, "best_epoch": int(np.argmax(hist.val)) + 1 if hist.val else None,
            "epochs": len(hist.seconds), "stopped_early": bool(stop is not None and stop.stopped_epoch > 0),
            "steps": int(trainer.global_step), "train_seconds": round(seconds, 2),
            "seconds_per_epoch": round(float(np.mean(hist.seconds)), 3) if hist.seconds else None,
            "val_ndcg@10": [round(v, 4) for v in hist.val],
            "n_params": int(sum(p.numel() for p in model.parameters())), "loss": "sampled" if sampled else "full"}
