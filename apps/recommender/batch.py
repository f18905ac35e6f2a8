"""The batch job: the top-K items of every user, through Lightning's ``trainer.predict``, resumable and deterministic.

Users (natural id order) are cut into fixed chunks of ``chunk_size``; ``OUT.parts/manifest.json`` records the job.
Each pending chunk is one predict batch, scored on the user's whole history (history excluded), and written as
``part-NNNNNN.parquet`` atomically, so a crash loses at most the chunks in flight and a rerun does exactly the missing
ones. The parts are then merged in chunk order into ``OUT`` and, with a database, upserted one transaction per part.
Under a distributed strategy (docs/deploy.md) rank ``r`` of ``W`` takes every ``W``-th pending chunk from the ``r``-th
on and global rank 0 merges after a barrier; the output folder must be on storage every node sees. The chunks are
shared out by ``ChunkDataModule``, not Lightning's distributed sampler, which fails with fewer chunks than processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader

from apps.recommender.data import RecData, atomic_write_table
from apps.recommender.model import RecArtifact, check_same_catalogue
from apps.recommender.settings import BatchSettings
from core.data import pad_left
from core.lit import mask_seen
from core.tasks import CoreModel
from core.train import StderrProgressBar

log = logging.getLogger(__name__)
SCHEMA = pa.schema([("user_id", pa.string()), ("rank", pa.int32()), ("item_id", pa.string()),
                    ("score", pa.float32())])


class BatchError(RuntimeError):
    """The batch job cannot run or resume (a different job's parts are in the way, or parts are missing)."""


@dataclass(frozen=True)
class BatchResult:
    """What a finished job did."""

    out: Path
    users: int
    rows: int
    chunks: int
    chunks_done_before: int
    chunks_run: int
    seconds: float
    users_per_second: float
    db_rows: int = 0
    merged: bool = True  # False in the processes other than global rank 0 of a distributed job: they wrote parts only


def part_name(chunk: int) -> str:
    return f"part-{chunk:06d}.parquet"


class ChunkDataModule(L.LightningDataModule):
    """The pending chunks as predict batches: rank ``r`` of ``W`` takes ``pending[r::W]`` of rank 0's list (broadcast
    once the processes are connected, so every process shards the same list), possibly none."""

    def __init__(self, data: RecData, pending: list[int], chunk_size: int, max_len: int):
        super().__init__()
        self.data, self.pending, self.chunk_size, self.max_len = data, pending, chunk_size, max_len
        self.allow_zero_length_dataloader_with_multiple_devices = True  # a process may have no chunk

    def predict_dataloader(self) -> DataLoader:
        trainer = self.trainer
        pending = trainer.strategy.broadcast(self.pending, src=0)
        mine = pending[trainer.global_rank::trainer.world_size]
        return DataLoader(mine, batch_size=None, shuffle=False, collate_fn=self.chunk)

    def chunk(self, c: int) -> dict:
        """Chunk ``c`` as one predict batch: its index, its user ids and their histories."""
        rows = slice(c * self.chunk_size, (c + 1) * self.chunk_size)
        hists = self.data.seqs[rows]
        return {"chunk": c, "users": self.data.users[rows], "inputs": torch.from_numpy(pad_left(hists, self.max_len)),
                "seen": torch.from_numpy(pad_left(hists))}


class LitPredictor(L.LightningModule):
    """``predict_step``: the top-k unseen items of each user of a chunk."""

    def __init__(self, model: CoreModel, k: int):
        super().__init__()
        self.model, self.k = model, k

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        scores = mask_seen(self.model.score_next(batch["inputs"]).float(), batch["seen"])
        k = min(self.k, self.model.cfg.n_items)
        vals, idx = torch.topk(scores, k, dim=1)  # sorted, best first
        return {"chunk": batch["chunk"], "users": batch["users"], "items": idx.cpu().numpy(),
                "scores": vals.cpu().numpy()}


class PartWriter(BasePredictionWriter):
    """Writes each chunk's predictions as one part file, atomically, as soon as the chunk is done."""

    def __init__(self, parts: Path, item_ids: list[str]):
        super().__init__(write_interval="batch")
        self.parts = parts
        self.inv = np.asarray([""] + list(item_ids), dtype=object)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx) -> None:
        items, scores = prediction["items"], prediction["scores"]
        keep = np.isfinite(scores)  # a user who has seen almost everything gets fewer than k items (at the end)
        rows, cols = np.nonzero(keep)
        users = np.asarray(prediction["users"], dtype=object)[rows]
        table = pa.table({"user_id": pa.array(users.tolist(), pa.string()),
                          "rank": pa.array((cols + 1).astype(np.int32)),
                          "item_id": pa.array(self.inv[items[keep]].tolist(), pa.string()),
                          "score": pa.array(scores[keep].astype(np.float32))}, schema=SCHEMA)
        atomic_write_table(table, self.parts / part_name(int(prediction["chunk"])))


def _manifest(art: RecArtifact, data: RecData, cfg: BatchSettings, k: int) -> dict:
    """What identifies a job: the artifact, k, the chunking, and hashes of the users and their histories."""
    return {"artifact": str(art.path), "version": art.version, "k": k, "chunk_size": cfg.chunk_size,
            "users": data.n_users, "chunks": -(-data.n_users // cfg.chunk_size),
            "users_sha": hashlib.sha256("\n".join(data.users).encode()).hexdigest()[:16],
            "histories_sha": hashlib.sha256(b"".join(s.astype(np.int64).tobytes() for s in data.seqs)).hexdigest()[:16]}


def done_chunks(parts: Path, n_chunks: int) -> list[int]:
    """Chunks whose part file exists and can be read (a part is written atomically, so existing means complete)."""
    out = []
    for c in range(n_chunks):
        p = parts / part_name(c)
        if p.is_file():
            try:
                pq.read_metadata(p)
                out.append(c)
            except (OSError, pa.ArrowException):
                log.warning("unreadable part %s: redoing its chunk", p)
                p.unlink(missing_ok=True)  # another process of the same job may have removed it
    return out


def run_batch(art: RecArtifact, out: str | Path, cfg: BatchSettings, k: int | None = None,
              data: RecData | None = None, store=None, restart: bool = False, progress: bool = True) -> BatchResult:
    """Write the top-``k`` (default ``cfg.k``) unseen items of every user to ``out`` (Parquet; parts and manifest in
    ``OUT.parts/``) and, with a ``RecStore``, to the database. ``data`` (default: the artifact's own) must share the
    artifact's catalogue; ``restart`` drops the parts of an earlier, different job.

    Returns:
        What the job did; under a distributed strategy the processes other than global rank 0 return
        ``merged=False`` with no user or row counts.

    Raises:
        BatchError: ``OUT.parts`` holds a different job's parts (without ``restart``), or chunks are missing after
            the predict loop.
    """
    t0 = time.perf_counter()
    k = k or cfg.k
    data = data or art.data
    if data is not art.data:
        check_same_catalogue(art, data)
    out = Path(out)
    parts = out.with_name(out.name + ".parts")
    manifest = _manifest(art, data, cfg, k)
    mpath = parts / "manifest.json"
    old = None
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        old = json.loads(mpath.read_text())
    if mpath.is_file() and old != manifest:
        if not restart:
            raise BatchError(f"{parts} holds the parts of a different job (other artifact, data, k or chunk size); "
                             "pass --restart to discard them")
        shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    if not mpath.is_file():
        tmp = mpath.with_name(f".{mpath.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(manifest, indent=2))
        os.replace(tmp, mpath)
    n_chunks = manifest["chunks"]
    before = done_chunks(parts, n_chunks)
    pending = sorted(set(range(n_chunks)) - set(before))
    log.info("batch: %d chunks, %d done before, %d to run", n_chunks, len(before), len(pending))
    if pending:
        callbacks = [PartWriter(parts, data.item_ids)] + ([StderrProgressBar(refresh_rate=1)] if progress else [])
        trainer = L.Trainer(accelerator=cfg.accelerator, devices=cfg.devices, strategy=cfg.strategy,
                            num_nodes=cfg.num_nodes, logger=False, callbacks=callbacks, enable_progress_bar=progress,
                            enable_model_summary=False, enable_checkpointing=False, precision="32-true",
                            use_distributed_sampler=False)  # ChunkDataModule shares the chunks out
        chunks = ChunkDataModule(data, pending, cfg.chunk_size, art.model.cfg.block_size)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*infer the batch indices.*")  # one chunk = one batch
            warnings.filterwarnings("ignore", message=".*local rank has zero length.*")  # fewer chunks than processes
            trainer.predict(LitPredictor(art.model, k), datamodule=chunks, return_predictions=False)
        trainer.strategy.barrier("rec-batch-parts")  # every process has written its parts
        secondary = trainer.world_size > 1 and trainer.global_rank != 0
    else:
        secondary = bool(rank_zero_only.rank)  # nothing to predict, under torchrun or SLURM
    if secondary:  # only global rank 0 merges and upserts
        return BatchResult(out, 0, 0, n_chunks, len(before), len(pending), round(time.perf_counter() - t0, 3), 0.0,
                           merged=False)
    for stale in parts.glob(".*.tmp-*"):  # what a killed process was writing: never a part, safe to drop now
        stale.unlink(missing_ok=True)
    missing = sorted(set(range(n_chunks)) - set(done_chunks(parts, n_chunks)))
    if missing:
        raise BatchError(f"{len(missing)} chunk(s) have no part after the run (first: {missing[0]}); run again")
    table = pa.concat_tables([pq.read_table(parts / part_name(c), schema=SCHEMA) for c in range(n_chunks)])
    atomic_write_table(table, out)
    db_rows = 0 if store is None else sum(store.upsert(pq.read_table(parts / part_name(c)).to_pylist(), art.version)
                                          for c in range(n_chunks))
    seconds = time.perf_counter() - t0
    return BatchResult(out, data.n_users, table.num_rows, n_chunks, len(before), len(pending), round(seconds, 3),
                       round(data.n_users / max(seconds, 1e-9), 1), db_rows)
