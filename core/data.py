"""Data for the core: readers, seeded stratified splits, datasets, collators (text, images, series, item
sequences), and the multi-task DataModule.

Lightning appears here (the DataModule), in ``lit.py`` and in ``train.py`` only.
"""

from __future__ import annotations

import csv
import io
import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from core.tasks import TaskSpec
from core.tokenizer import Tokenizer

log = logging.getLogger(__name__)


class DataFormatError(ValueError):
    """A data file is missing, unreadable, or lacks the columns its format needs."""


# ---------------------------------------------------------------------------------------------------------- readers
def read_labelled_texts(path: str | Path, fmt: str = "csv") -> tuple[list[str], list[str]]:
    """Read ``(texts, labels)`` from a labelled-text file.

    Args:
        path: the file.
        fmt: ``csv`` (a header with ``text`` and ``label`` or ``category``; UTF-8) or ``phrasebank`` (latin-1
            ``sentence@label`` lines, split on the last ``@``, as in Financial PhraseBank).

    Raises:
        DataFormatError: missing file, unknown format, wrong encoding, missing columns or no rows.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"data file not found: {path}")
    rows: list[tuple[str, str]] = []
    if fmt == "phrasebank":
        raw = path.read_bytes().decode("latin-1")
        for n, line in enumerate(raw.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
            if not line.strip():
                continue
            text, sep, label = line.rpartition("@")
            if not sep or not text.strip() or not label.strip():
                raise DataFormatError(f"{path}:{n}: expected 'sentence@label', got {line[:60]!r}")
            rows.append((text.strip(), label.strip()))
    elif fmt == "csv":
        try:
            content = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DataFormatError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
        reader = csv.DictReader(io.StringIO(content))
        try:
            cols = reader.fieldnames or []
            label_col = "label" if "label" in cols else "category" if "category" in cols else None
            if "text" not in cols or label_col is None:
                raise DataFormatError(f"{path}: needs columns 'text' and 'label' (or 'category'); found {cols}")
            rows = [(r["text"].strip(), r[label_col].strip()) for r in reader if r["text"] and r[label_col]]
        except csv.Error as exc:  # e.g. a field longer than the csv module's limit (128 KiB)
            raise DataFormatError(f"{path}: unreadable CSV after line {reader.line_num}: {exc}") from None
    else:
        raise DataFormatError(f"unknown data format {fmt!r}; use csv or phrasebank")
    if not rows:
        raise DataFormatError(f"{path}: no rows")
    return [t for t, _ in rows], [lab for _, lab in rows]


def stratified_split(labels: Sequence, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Seeded stratified split of indices into parts with the given fractions (the last part takes the rest).

    Every class is shuffled with ``seed`` and cut in the same proportions, so each part keeps the class balance.
    """
    if not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must sum to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    parts: list[list[int]] = [[] for _ in fractions]
    for cls in sorted(set(labels.tolist()), key=str):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        cuts = np.round(np.cumsum(fractions)[:-1] * len(idx)).astype(int)
        for p, chunk in zip(parts, np.split(idx, cuts)):
            p.extend(chunk.tolist())
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def text_key(text: str) -> str:
    """The form under which two texts count as the same: lower-cased, whitespace collapsed."""
    return " ".join(text.lower().split())


def dedupe_texts(texts: Sequence[str], labels: Sequence[str]) -> tuple[list[str], list[str]]:
    """Drop exact duplicate texts (first label kept), so a sentence never lands in two splits."""
    first: dict[str, tuple[str, str]] = {}
    for t, lab in zip(texts, labels):
        first.setdefault(text_key(t), (t, lab))
    return [t for t, _ in first.values()], [lab for _, lab in first.values()]


# ---------------------------------------------------------------------------------------------------------- batches
@dataclass
class Batch:
    """One batch of one task. Text fields are padded on the right; ``mode`` is the attention mode of LM batches."""

    task: str
    ids: torch.Tensor | None = None  # (B, T)
    mask: torch.Tensor | None = None  # (B, T) bool
    labels: torch.Tensor | None = None  # (B,) classes, (B, C) soft targets, (B, T) token targets (-100 = ignore)
    gold: torch.Tensor | None = None  # (B,) distillation: gold classes (-1: none), ``labels`` the teacher's (B, C)
    ids_b: torch.Tensor | None = None  # second text of a pair
    mask_b: torch.Tensor | None = None
    images: torch.Tensor | None = None  # (B, C, H, W) floats in [0, 1]
    series: torch.Tensor | None = None  # (B, W, F)
    items: torch.Tensor | None = None  # (B, T) item ids, left-padded with 0
    seen: torch.Tensor | None = None  # (B, H) items never to recommend (a user's history), left-padded with 0
    mode: str = "bidirectional"
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return next((t.size(0) for t in (self.ids, self.images, self.series, self.items) if t is not None), 0)

    def to(self, device) -> Batch:
        """Move every tensor to ``device``."""
        return Batch(**{k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()})


def pad_ids(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists to (B, T) ids and a (B, T) bool mask."""
    T = max(1, max(len(s) for s in seqs))
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
        mask[i, : len(s)] = True
    return ids, mask


class ListDataset(Dataset):
    """A dataset over parallel lists: item i is the tuple of the i-th element of each."""

    def __init__(self, *columns: Sequence):
        n = {len(c) for c in columns}
        if len(n) != 1:
            raise ValueError(f"columns of different lengths: {sorted(n)}")
        self.columns = columns

    def __len__(self) -> int:
        return len(self.columns[0])

    def __getitem__(self, i):
        return tuple(c[i] for c in self.columns)


@dataclass(frozen=True)
class Distilled:
    """The label of a text in knowledge distillation: the teacher's class probabilities, and the gold class (-1: an
    unlabelled text)."""

    probs: tuple[float, ...]
    gold: int = -1


class TextCollator:
    """Tokenise (text, label) pairs of a classification task into a Batch. A label is a class index, a soft target (a
    sequence of class probabilities, e.g. the share of annotators behind each label), or a :class:`Distilled` one (the
    batch's ``labels`` are then the teacher's probabilities and ``gold`` the gold classes); one batch holds one kind."""

    def __init__(self, task: str, tok: Tokenizer, max_length: int):
        self.task, self.tok, self.max_length = task, tok, max_length

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenised, cut to ``max_length`` and right-padded: (B, T) ids and mask."""
        return pad_ids(self.tok.encode_batch(texts, self.max_length), self.tok.pad_id)

    def __call__(self, items) -> Batch:
        texts, labels = zip(*items)
        ids, mask = self.encode(texts)
        if isinstance(labels[0], Distilled):
            probs = torch.as_tensor(np.asarray([d.probs for d in labels]), dtype=torch.float32)  # (B, C)
            return Batch(self.task, ids, mask, probs, gold=torch.as_tensor([d.gold for d in labels], dtype=torch.long))
        dtype = torch.float32 if isinstance(labels[0], (list, tuple, np.ndarray)) else torch.long  # soft targets
        return Batch(self.task, ids, mask, torch.as_tensor(np.asarray(labels), dtype=dtype))


class SeriesTextCollator(TextCollator):
    """(series window (T, F) float array, text, label) triples of a ``series_classify`` task into a Batch; the
    windows of one batch must share T and F (NaN steps are padding, see ``SeriesEncoder``)."""

    def __call__(self, items) -> Batch:
        series, texts, labels = zip(*items)
        ids, mask = self.encode(texts)
        x = torch.as_tensor(np.stack([np.asarray(w, dtype=np.float32) for w in series]))  # (B, T, F)
        return Batch(self.task, ids, mask, torch.as_tensor(labels, dtype=torch.long), series=x)


class PairCollator(TextCollator):
    """Tokenise (text_a, text_b) pairs of a contrastive task; row i of a is the positive of row i of b."""

    def __call__(self, items) -> Batch:
        a, b = zip(*items)
        ids, mask = self.encode(a)
        ids_b, mask_b = self.encode(b)
        return Batch(self.task, ids, mask, ids_b=ids_b, mask_b=mask_b)


class ImageCollator:
    """Stack (uint8 image, label) pairs; in training, random 2-pixel shifts and horizontal flips augment them."""

    def __init__(self, task: str, augment: bool, seed: int = 0, pad: int = 2):
        self.task, self.augment, self.pad = task, augment, pad
        self.rng = np.random.default_rng(seed)

    def __call__(self, items) -> Batch:
        imgs, labels = zip(*items)
        x = torch.from_numpy(np.stack(imgs)).float().div(255.0)
        x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)  # (B, C, H, W)
        if self.augment:
            B, _, H, W = x.shape
            p = self.pad
            padded = torch.nn.functional.pad(x, (p, p, p, p))  # (B, C, H+2p, W+2p)
            dy = self.rng.integers(0, 2 * p + 1, B)
            dx = self.rng.integers(0, 2 * p + 1, B)
            flip = self.rng.random(B) < 0.5
            out = torch.empty_like(x)
            for i in range(B):
                crop = padded[i, :, dy[i]: dy[i] + H, dx[i]: dx[i] + W]
                out[i] = crop.flip(-1) if flip[i] else crop
            x = out
        return Batch(self.task, images=x, labels=torch.as_tensor(labels, dtype=torch.long))


class LMCollator(TextCollator):
    """Pretraining batches: each batch is either masked-token (bidirectional) or next-token (causal).

    The choice is drawn per batch with probability ``causal_fraction`` from a seeded generator. Masked batches follow
    BERT: 15% of real tokens are targets, of which 80% become [MASK], 10% a random token and 10% stay.
    """

    def __init__(self, task: str, tok: Tokenizer, max_length: int, mlm_prob: float = 0.15,
                 causal_fraction: float = 0.5, seed: int = 0):
        super().__init__(task, tok, max_length)
        self.mlm_prob, self.causal_fraction = mlm_prob, causal_fraction
        self.gen = torch.Generator().manual_seed(seed)
        self.plain_ids = torch.tensor([i for i in range(tok.vocab_size) if i not in tok.special_ids])

    def __call__(self, items) -> Batch:
        texts = [it[0] if isinstance(it, tuple) else it for it in items]
        ids, mask = self.encode(texts)
        if torch.rand((), generator=self.gen).item() < self.causal_fraction:
            labels = ids.clone()
            labels[~mask] = -100  # hidden state t predicts token t+1 (the shift happens in the loss)
            return Batch(self.task, ids, mask, labels, mode="causal")
        special = torch.isin(ids, torch.tensor([self.tok.cls_id, self.tok.sep_id, self.tok.pad_id]))
        target = (torch.rand(ids.shape, generator=self.gen) < self.mlm_prob) & mask & ~special
        labels = torch.where(target, ids, torch.full_like(ids, -100))
        r = torch.rand(ids.shape, generator=self.gen)
        masked = ids.clone()
        masked[target & (r < 0.8)] = self.tok.mask_id
        rand_pos = target & (r >= 0.8) & (r < 0.9)
        pick = torch.randint(0, len(self.plain_ids), (int(rand_pos.sum()),), generator=self.gen)
        masked[rand_pos] = self.plain_ids[pick]  # a random ordinary token, never a special one
        return Batch(self.task, masked, mask, labels, mode="bidirectional")


# ---------------------------------------------------------------------------------------------------- item sequences
def pad_left(seqs: Sequence[np.ndarray], max_len: int | None = None) -> np.ndarray:
    """Left-pad (and cut to the last ``max_len``) item sequences into one (B, T) int64 array; 0 pads."""
    cut = [s[-max_len:] if max_len else s for s in seqs]
    T = max(1, max((len(s) for s in cut), default=1))
    out = np.zeros((len(cut), T), dtype=np.int64)
    for i, s in enumerate(cut):
        out[i, T - len(s):] = s
    return out


def windows(seqs: Sequence[np.ndarray], max_len: int) -> list[np.ndarray]:
    """Cut training sequences into windows of at most ``max_len + 1`` items (input = all but the last, target = all but
    the first), from the end backwards, overlapping by one item, so that every item but a sequence's first is a target
    exactly once. Sequences of one item give no window."""
    out = []
    for s in seqs:
        end = len(s)
        while end > 1:
            start = max(0, end - max_len - 1)
            out.append(s[start:end])
            end = start + 1
    return out


class ItemWindows(Dataset):
    """The training windows of item sequences (see ``windows``) of a next-item task."""

    def __init__(self, seqs: Sequence[np.ndarray], max_len: int):
        self.windows = windows(seqs, max_len)
        self.lengths = [len(w) for w in self.windows]

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.windows[i]


class LengthBuckets(Sampler[list[int]]):
    """Seeded batches of windows of similar length (less padding): each epoch the windows are shuffled, cut into pools
    of ``pool`` batches, sorted by length inside each pool and batched, and the batches are shuffled."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, pool: int = 50):
        self.lengths, self.batch_size, self.seed, self.pool = np.asarray(lengths), batch_size, seed, pool
        self.epoch = 0

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
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


class ItemCollator:
    """Item sequences into a Batch. Training: windows (``ItemWindows``), left-padded. Evaluation: (history, target)
    pairs: the history's last ``max_len`` items as input, the target as label, the whole history as ``seen``."""

    def __init__(self, task: str, max_len: int, train: bool):
        self.task, self.max_len, self.train = task, max_len, train

    def __call__(self, items) -> Batch:
        if self.train:
            return Batch(self.task, items=torch.from_numpy(pad_left(items)))  # (B, T + 1)
        hist, targets = zip(*items)
        return Batch(self.task, items=torch.from_numpy(pad_left(hist, self.max_len)),
                     labels=torch.tensor(targets, dtype=torch.long), seen=torch.from_numpy(pad_left(hist)))


# ---------------------------------------------------------------------------------------------------- multi-task
@dataclass
class TaskData:
    """The data of one task: its spec, and its training and (optional) validation datasets."""

    spec: TaskSpec
    train: Dataset
    val: Dataset | None = None


class MultiTaskLoader:
    """Every batch of every task's loader once per epoch, in a seeded random interleaving that changes every epoch
    (a small task is not cycled). Under a distributed strategy each loader reads this process's share; every process
    has as many batches per task and the same task order, so the processes step together."""

    def __init__(self, loaders: dict[str, DataLoader], seed: int):
        self.loaders, self.seed, self.epoch = loaders, seed, 0

    def __len__(self) -> int:
        return sum(len(dl) for dl in self.loaders.values())

    def __iter__(self) -> Iterator[Batch]:
        order = [name for name, dl in self.loaders.items() for _ in range(len(dl))]
        random.Random(self.seed + self.epoch).shuffle(order)
        for dl in self.loaders.values():
            if isinstance(dl.sampler, DistributedSampler):
                dl.sampler.set_epoch(self.epoch)  # a new shuffle each epoch, the same on every process
        self.epoch += 1
        its = {name: iter(dl) for name, dl in self.loaders.items()}
        for name in order:
            yield next(its[name])


class MultiTaskDataModule(L.LightningDataModule):
    """Train batches from every task interleaved (``MultiTaskLoader``); one validation loader per task."""

    def __init__(self, tasks: list[TaskData], tok: Tokenizer, batch_size: int = 32, max_length: int = 128,
                 seed: int = 13, num_workers: int = 0, mlm_prob: float = 0.15, causal_fraction: float = 0.5,
                 eval_batch_size: int | None = None):
        super().__init__()
        self.tasks, self.tok = tasks, tok
        self.batch_size, self.max_length, self.seed = batch_size, max_length, seed
        self.num_workers, self.mlm_prob, self.causal_fraction = num_workers, mlm_prob, causal_fraction
        self.eval_batch_size = eval_batch_size or batch_size * 2

    @property
    def val_task_names(self) -> list[str]:
        """Task names in the order of the validation loaders."""
        return [t.spec.name for t in self.tasks if t.val is not None]

    def collator(self, spec: TaskSpec, train: bool):
        """The collate function of a task kind."""
        text = {"classify": TextCollator, "pairs": PairCollator, "series_classify": SeriesTextCollator}
        if spec.kind in text:
            return text[spec.kind](spec.name, self.tok, self.max_length)
        if spec.kind == "lm":
            # validation draws from its own fixed seed, so every validation sees the same masks
            return LMCollator(spec.name, self.tok, self.max_length, self.mlm_prob, self.causal_fraction,
                              seed=self.seed if train else 1234)
        if spec.kind == "image_classify":
            return ImageCollator(spec.name, augment=train, seed=self.seed)
        if spec.kind in ("next_item", "cloze"):
            return ItemCollator(spec.name, self.max_length, train)
        raise ValueError(f"no collator for task kind {spec.kind!r}")

    def _loader(self, td: TaskData, ds: Dataset, train: bool, world: int = 1, rank: int = 0) -> DataLoader:
        g = torch.Generator().manual_seed(self.seed)
        sampler = None
        if train and world == 1 and isinstance(ds, ItemWindows):  # batches of similar lengths: less padding
            return DataLoader(ds, batch_sampler=LengthBuckets(ds.lengths, self.batch_size, self.seed),
                              collate_fn=self.collator(td.spec, train), num_workers=self.num_workers)
        if train and world > 1:  # this process's share of each epoch's shuffle, padded to the same length everywhere
            sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=self.seed)
        # contrastive batches must not be cut short: in-batch negatives need the whole batch
        return DataLoader(ds, batch_size=self.batch_size if train else self.eval_batch_size,
                          shuffle=train and sampler is None, sampler=sampler,
                          generator=g if train and sampler is None else None, collate_fn=self.collator(td.spec, train),
                          num_workers=self.num_workers, drop_last=train and td.spec.kind == "pairs")

    def train_dataloader(self) -> MultiTaskLoader:
        # Lightning adds its distributed sampler only to plain DataLoaders, not inside MultiTaskLoader: shard here
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer is not None else (1, 0)
        return MultiTaskLoader({t.spec.name: self._loader(t, t.train, True, world, rank) for t in self.tasks},
                               self.seed)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(t, t.val, False) for t in self.tasks if t.val is not None]
