"""fit(): train a CoreModel with Lightning and write an artifact folder.

TensorBoard logs, the best checkpoint by the validation metric, early stopping, bf16-mixed where the hardware has it,
seeded for reproducibility, with a progress bar. Under a distributed strategy (ddp, several processes or nodes) the
validation metrics are computed on the whole validation set on every rank (``LitCore`` gathers the records), and only
global rank 0 writes the artifact; the others wait for it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from core.artifacts import save_artifact
from core.config import TrainConfig
from core.data import MultiTaskDataModule
from core.lit import LitCore
from core.tasks import CoreModel
from core.tokenizer import Tokenizer

log = logging.getLogger(__name__)


def _on_stderr(init):
    """``init`` (a bar builder of TQDMProgressBar) run with stdout sent to stderr: Lightning passes file=sys.stdout."""

    def wrapper(self):
        with contextlib.redirect_stdout(sys.stderr):
            return init(self)

    return wrapper


class StderrProgressBar(TQDMProgressBar):
    """Lightning's tqdm bars on stderr, not stdout, so that a command's result on stdout (``--json``) stays clean."""

    init_sanity_tqdm = _on_stderr(TQDMProgressBar.init_sanity_tqdm)
    init_train_tqdm = _on_stderr(TQDMProgressBar.init_train_tqdm)
    init_validation_tqdm = _on_stderr(TQDMProgressBar.init_validation_tqdm)
    init_predict_tqdm = _on_stderr(TQDMProgressBar.init_predict_tqdm)
    init_test_tqdm = _on_stderr(TQDMProgressBar.init_test_tqdm)


def route_lightning_logs() -> None:
    """Send Lightning's log records through the application's handlers, once and at the application's level.

    On import Lightning gives its loggers a console handler of their own at INFO, so that under a configured root
    logger every record printed twice and its INFO notes (accelerators found, tips) printed at all.
    """
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
        logger.propagate = True


def resolve_precision(precision: str) -> str:
    """Fall back to fp32 where bf16 is asked for but the CPU or GPU cannot do it."""
    # CPU autocast supports bf16
    if precision.startswith("bf16") and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        log.warning("bf16 is not supported here; training in fp32")
        return "32-true"
    return precision


def monitor_for(model: CoreModel) -> tuple[str, str]:
    """The metric that early stopping and checkpointing watch: mean validation accuracy, or loss for LM-only runs."""
    if any(t.kind != "lm" for t in model.tasks.values()):
        return "val/score", "max"
    return "val/loss", "min"


def fit(model: CoreModel, data: MultiTaskDataModule, cfg: TrainConfig, out_dir: str | Path, tok: Tokenizer | None,
        meta: dict | None = None, progress: bool = True, extra_callbacks: list | None = None,
        validate_first: bool = False) -> Path:
    """Train ``model`` (already holding a head per task) on ``data`` and save the best weights (``cfg.keep ==
    "last"``: the last) as an artifact in ``out_dir``, which also gets ``logs/`` (TensorBoard); return ``out_dir``.

    Args:
        tok: the tokenizer to save with the model (None for a model that reads no text, e.g. item sequences).
        meta: extra facts to keep in ``config.json`` (data set, splits, ...).
        progress: show a progress bar.
        extra_callbacks: more Lightning callbacks.
        validate_first: measure the validation metrics before training too (kept as ``initial`` in the history).
    """
    cores = os.cpu_count() or 1
    on_cpu = cfg.accelerator == "cpu" or (cfg.accelerator == "auto" and not torch.cuda.is_available())
    if on_cpu and isinstance(cfg.devices, int) and cfg.devices > cores:
        # one training process per device: more processes than cores only thrash the machine
        raise ValueError(f"devices={cfg.devices}: a CPU run takes at most one process per core ({cores} here)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    route_lightning_logs()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    monitor, mode = monitor_for(model)
    lit = LitCore(model, cfg, data.val_task_names)
    callbacks = [LearningRateMonitor(logging_interval="step"), *(extra_callbacks or [])]
    ckpt = None
    if cfg.keep == "best":
        ckpt = ModelCheckpoint(dirpath=out_dir / "checkpoints", monitor=monitor, mode=mode, save_top_k=1,
                               save_weights_only=True, filename="best")
        callbacks = [ckpt, EarlyStopping(monitor=monitor, mode=mode, patience=cfg.patience), *callbacks]
    if progress:
        callbacks.append(StderrProgressBar(refresh_rate=10))
    trainer = L.Trainer(
        max_epochs=cfg.max_epochs, max_steps=cfg.max_steps, precision=resolve_precision(cfg.precision),
        accelerator=cfg.accelerator, devices=cfg.devices, strategy=cfg.strategy, num_nodes=cfg.num_nodes,
        callbacks=callbacks, logger=TensorBoardLogger(out_dir, name="logs", default_hp_metric=False),
        val_check_interval=cfg.val_check_interval, limit_train_batches=cfg.limit_train_batches,
        deterministic=cfg.deterministic, enable_progress_bar=progress, enable_model_summary=False,
        enable_checkpointing=ckpt is not None,  # keep "last": the weights in memory at the end are the artifact
        num_sanity_val_steps=0, log_every_n_steps=10,
    )
    initial = {}
    t0 = time.time()
    model.train()  # Lightning 2 does not switch the module back to train mode, and fit() ends with model.eval()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*isn't an iterable.*")
        # LitCore gathers its validation records itself: every rank logs the same value, no sync_dist needed
        warnings.filterwarnings("ignore", message=".*sync_dist=True.*")
        if validate_first:
            res = trainer.validate(lit, datamodule=data, verbose=False)
            initial = {k: float(v) for r in res for k, v in r.items() if k.startswith("val/")}
        trainer.fit(lit, datamodule=data)
    seconds = time.time() - t0
    best_path = ckpt.best_model_path if ckpt is not None else ""
    if best_path:
        # our own checkpoint, weights only: read it back with weights_only=True (no pickle of arbitrary objects)
        lit.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=True)["state_dict"])
    model.eval()
    # Under a distributed strategy every process gets here with the same weights and history (the validation metrics
    # are gathered across processes, see LitCore), and global rank 0 alone writes the artifact.
    trainer.strategy.barrier("fit-best-loaded")  # nobody still reads best.ckpt when rank 0 removes it
    if trainer.is_global_zero:
        if best_path:
            # the artifact below holds the same weights: keep no second copy (and no stale best.ckpt for a later fit)
            Path(best_path).unlink(missing_ok=True)
        best = float(ckpt.best_model_score) if ckpt is not None and ckpt.best_model_score is not None else None
        history = {"best_" + monitor.replace("/", "_"): best, "kept": cfg.keep, "epochs": trainer.current_epoch,
                   "steps": trainer.global_step, "train_seconds": round(seconds, 1),
                   "final": {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")},
                   "initial": initial}
        log.info("trained %s in %.0fs: %s", out_dir, seconds, json.dumps(history))
        save_artifact(out_dir, model, tok, meta={**(meta or {}), "training": history,
                                                 "train_config": cfg.model_dump()})
    trainer.strategy.barrier("fit-artifact-written")  # the other processes return once the artifact is complete
    return out_dir


def is_global_zero() -> bool:
    """Whether this process is global rank 0 of the last distributed run (always True without one): the process
    that writes artifacts and should print reports."""
    return rank_zero_only.rank == 0
