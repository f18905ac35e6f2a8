"""Task heads that sit on the Backbone's hidden states."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.config import ModelConfig
from core.model import mean_pool


class LMHead(nn.Module):
    """BERT's prediction head with the decoder tied to the token embeddings: (B, T, C) -> (B, T, vocab)."""

    def __init__(self, cfg: ModelConfig, wte: nn.Embedding):
        super().__init__()
        self.dense = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.ln = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.wte = [wte]  # a list, so the tied table is not registered (and saved) twice

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        h = self.ln(F.gelu(self.dense(hidden)))
        return h @ self.wte[0].weight.t() + self.bias  # (B, T, vocab)


class ClassifierHead(nn.Module):
    """Mean-pooled hidden state -> class logits."""

    def __init__(self, cfg: ModelConfig, n_classes: int, dropout: float = 0.1):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(cfg.n_embd, n_classes)
        nn.init.normal_(self.out.weight, std=0.02)
        nn.init.zeros_(self.out.bias)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(mean_pool(hidden, mask)))  # (B, n_classes)


class EmbeddingHead(nn.Module):
    """Mean pooling then L2 normalisation (what all-MiniLM-L6-v2 was trained with), trained contrastively."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(mean_pool(hidden, mask).float(), dim=-1)  # (B, C)


class NextItemHead(nn.Module):
    """Hidden states -> scores of every item: the dot product with the item table of the ``ItemEncoder`` it is tied to
    (as in SASRec); it has no weights of its own."""

    def __init__(self, items: nn.Module):
        super().__init__()
        self.items = [items]  # a list, so the tied encoder is not registered (and saved) twice

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.items[0].table().t()  # (..., n_items + 1), column 0 is padding


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric in-batch-negatives contrastive loss of two (B, C) L2-normalised embedding batches."""
    logits = a @ b.t() / temperature  # (B, B)
    target = torch.arange(a.size(0), device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def distillation_loss(logits: torch.Tensor, teacher: torch.Tensor, gold: torch.Tensor, alpha: float,
                      temperature: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """Knowledge distillation loss (Hinton, Vinyals and Dean, 2015) of (B, C) student logits, mean over the batch.

    Each text's loss is ``(1 - a) * T^2 * KL(p_T || q_T) + a * CE(logits, gold)``: ``q_T`` is the student's softmax
    at temperature ``T``, ``p_T`` the teacher's (B, C) probabilities softened the same way (``softmax(log p / T)``,
    which is ``softmax(z / T)`` for a teacher with logits ``z``, and works as well for the mixed probabilities of an
    ensemble), and ``a`` is ``alpha`` for a text with a gold class and 0 for an unlabelled one (``gold`` -1). ``T^2``
    keeps the soft term's gradients at the scale of the hard term's whatever ``T``.
    """
    logits = logits.float()
    soft = torch.softmax(torch.log(teacher.float().clamp_min(1e-12)) / temperature, -1)  # (B, C)
    kl = F.kl_div(torch.log_softmax(logits / temperature, -1), soft, reduction="none").sum(-1)  # (B,)
    has_gold = gold >= 0
    ce = F.cross_entropy(logits, gold.clamp_min(0), reduction="none", label_smoothing=label_smoothing)  # (B,)
    a = has_gold.float() * alpha
    return ((1 - a) * temperature**2 * kl + a * ce).mean()
