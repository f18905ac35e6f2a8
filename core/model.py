"""The Backbone: a BERT-shaped Transformer whose attention mode is chosen per call.

- ``bidirectional``: every token sees every other one (classify, embed).
- ``causal``: a token sees itself and what came before (generate).
- ``prefix``: the first ``prefix_len`` positions see each other; the rest are causal (UniLM's seq2seq mask), used for
  generation conditioned on a prompt or on a non-text prefix (image patches, a numeric window, items).

The block is BERT's post-LayerNorm block, so the weights of all-MiniLM-L6-v2 load into it (see ``pretrained.py``).
Non-text inputs arrive as a ``Prefix`` of embeddings from ``modalities.py``; they are placed before the text tokens and
tagged with a modality-type embedding. Read top to bottom like nanoGPT; no framework imports.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.config import MODALITY_TYPES, AttnMode, ModelConfig

KVCache = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Prefix:
    """Embeddings of non-text inputs that go before the text: ``embeds`` (B, P, C), ``mask`` (B, P) bool (True = real
    position), ``types`` (B, P) long modality-type ids."""

    embeds: torch.Tensor
    mask: torch.Tensor
    types: torch.Tensor

    def __len__(self) -> int:
        return self.embeds.size(1)

    @staticmethod
    def cat(parts: list[Prefix]) -> Prefix:
        """Join several prefixes along the sequence (for example an image and a series window)."""
        return Prefix(torch.cat([p.embeds for p in parts], 1), torch.cat([p.mask for p in parts], 1),
                      torch.cat([p.types for p in parts], 1))

    def rows(self, index) -> Prefix:
        """The rows ``index`` of the batch (a slice or an index tensor)."""
        return Prefix(self.embeds[index], self.mask[index], self.types[index])


def build_attn_mask(mode: AttnMode, key_mask: torch.Tensor, n_query: int,
                    prefix_len: torch.Tensor | None = None) -> torch.Tensor:
    """Boolean attention mask (B, 1, T, S), True where a query may attend to a key: ``key_mask`` (B, S) marks the
    real keys (past cache included), the queries are the last ``n_query`` (T) of the S positions, and in prefix mode
    the first ``prefix_len`` (B,) positions attend to each other bidirectionally."""
    B, S = key_mask.shape
    device = key_mask.device
    q_pos = torch.arange(S - n_query, S, device=device)[:, None]  # (T, 1) absolute position of each query
    k_pos = torch.arange(S, device=device)[None, :]  # (1, S)
    if mode == "bidirectional":
        allowed = torch.ones(n_query, S, dtype=torch.bool, device=device)[None]  # (1, T, S)
    elif mode == "causal":
        allowed = (k_pos <= q_pos)[None]  # (1, T, S)
    elif mode == "prefix":
        if prefix_len is None:
            raise ValueError("prefix attention needs prefix_len")
        pl = prefix_len.to(device)[:, None, None]  # (B, 1, 1)
        allowed = (k_pos <= q_pos)[None] | ((k_pos[None] < pl) & (q_pos[None] < pl))  # (B, T, S)
    else:
        raise ValueError(f"unknown attention mode {mode!r}; use bidirectional, causal or prefix")
    allowed = allowed & key_mask[:, None, :]  # (B, T, S)
    # A query always sees itself, so that a padded row never has an empty softmax (which would give NaN).
    allowed = allowed | (k_pos == q_pos)[None]
    return allowed[:, None]  # (B, 1, T, S)


class SelfAttention(nn.Module):
    """Multi-head self-attention with F.scaled_dot_product_attention and an optional KV cache."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head, self.hs = cfg.n_head, cfg.head_size
        self.query = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.key = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.value = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.attn_dropout = cfg.attn_dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor,
                past: tuple[torch.Tensor, torch.Tensor] | None = None):
        B, T, C = x.shape
        q = self.query(x).view(B, T, self.n_head, self.hs).transpose(1, 2)  # (B, nh, T, hs)
        k = self.key(x).view(B, T, self.n_head, self.hs).transpose(1, 2)  # (B, nh, T, hs)
        v = self.value(x).view(B, T, self.n_head, self.hs).transpose(1, 2)  # (B, nh, T, hs)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)  # (B, nh, S, hs)
            v = torch.cat([past[1], v], dim=2)  # (B, nh, S, hs)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.attn_dropout if self.training else 0.0)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.proj(y), (k, v)


class Block(nn.Module):
    """BERT's post-LayerNorm block: x = LN(x + Attn(x)); x = LN(x + MLP(x)). With ``cfg.norm == "pre"``:
    x = x + Attn(LN(x)); x = x + MLP(LN(x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.pre = cfg.norm == "pre"
        self.attn = SelfAttention(cfg)
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps)
        self.fc = nn.Linear(cfg.n_embd, cfg.n_inner)
        self.fc_proj = nn.Linear(cfg.n_inner, cfg.n_embd)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, mask, past=None):
        if self.pre:
            a, kv = self.attn(self.ln_1(x), mask, past)
            x = x + self.drop(a)
            return x + self.drop(self.fc_proj(F.gelu(self.fc(self.ln_2(x))))), kv
        a, kv = self.attn(x, mask, past)
        x = self.ln_1(x + self.drop(a))
        x = self.ln_2(x + self.drop(self.fc_proj(F.gelu(self.fc(x)))))
        return x, kv


class Backbone(nn.Module):
    """Token + position + modality-type embeddings, then ``n_layer`` Blocks; returns hidden states (B, P+T, C)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.wme = nn.Embedding(cfg.n_types, cfg.n_embd)  # modality type
        self.ln_emb = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps)
        self.drop = nn.Dropout(cfg.dropout)
        self.h = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        # pre-LN: no LayerNorm on the embeddings (ln_emb stays, unused, so every config has the same tensors but
        # ln_f); a final LayerNorm after the last block instead
        self.ln_f = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps) if cfg.norm == "pre" else None
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # BERT's initialisation: N(0, 0.02) weights, zero biases, unit LayerNorms.
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, idx: torch.Tensor | None, attention_mask: torch.Tensor | None = None,
                mode: AttnMode = "bidirectional", prefix: Prefix | None = None,
                prefix_len: torch.Tensor | None = None, past_kv: KVCache | None = None,
                use_cache: bool = False, positions: torch.Tensor | None = None):
        """Run the Transformer.

        Args:
            idx: (B, T) token ids, or None when the sequence is the prefix alone.
            attention_mask: without ``past_kv``: (B, T), True/1 for real tokens. With ``past_kv``: (B, S) over the
                whole sequence so far (prefix, cached positions and ``idx``).
            prefix: non-text embeddings placed before ``idx`` (first call only, never with ``past_kv``).
            prefix_len: (B,) bidirectional positions in prefix mode; defaults to the prefix's length.
            past_kv: a cache from an earlier call, to decode new tokens without recomputing old ones.
            positions: (B, T) position ids to use instead of counting real tokens from the left (e.g. counted from
                the right end, so that the most recent item of a sequence always sits at the same position).

        Returns:
            hidden (B, P+T, C), and the cache when ``use_cache``.
        """
        parts, masks = [], []
        if prefix is not None:
            if past_kv is not None:
                raise ValueError("a prefix goes in the first call, not with a KV cache")
            parts.append(prefix.embeds + self.wme(prefix.types))  # (B, P, C)
            masks.append(prefix.mask.bool())
        if idx is not None:
            parts.append(self.wte(idx) + self.wme(torch.full_like(idx, MODALITY_TYPES["text"])))  # (B, T, C)
            if past_kv is None:
                masks.append(torch.ones_like(idx, dtype=torch.bool) if attention_mask is None
                             else attention_mask.bool())
        if not parts:
            raise ValueError("nothing to encode: give token ids, a prefix or both")
        x = torch.cat(parts, dim=1)  # (B, P+T, C)
        B, T, _ = x.shape
        past_len = 0 if past_kv is None else past_kv[0][0].size(2)
        if past_kv is None:
            key_mask = torch.cat(masks, dim=1)  # (B, S) with S = T
        elif attention_mask is None:
            key_mask = torch.ones(B, past_len + T, dtype=torch.bool, device=x.device)
        else:
            key_mask = attention_mask.bool()
        if key_mask.size(1) != past_len + T:
            raise ValueError(f"attention_mask covers {key_mask.size(1)} positions, expected {past_len + T}")
        if past_len + T > self.cfg.block_size:
            raise ValueError(f"sequence of {past_len + T} positions exceeds block_size={self.cfg.block_size}")
        # Positions count real tokens only, so left-padded prompts in a batch line up with unpadded ones.
        if positions is None:
            pos = (key_mask.long().cumsum(1) - 1).clamp(min=0)[:, -T:]  # (B, T)
        else:
            if positions.shape != (B, T):
                raise ValueError(f"positions of shape {tuple(positions.shape)}, expected {(B, T)}")
            if int(positions.min()) < 0 or int(positions.max()) >= self.cfg.block_size:
                raise ValueError(f"positions must lie in [0, {self.cfg.block_size})")
            pos = positions
        x = x + self.wpe(pos)
        x = self.drop(x if self.ln_f is not None else self.ln_emb(x))
        if mode == "prefix" and prefix_len is None:
            prefix_len = torch.full((B,), len(prefix) if prefix is not None else 0, device=x.device)
        mask = build_attn_mask(mode, key_mask, T, prefix_len)  # (B, 1, T, S)
        present: KVCache = []
        for i, block in enumerate(self.h):
            x, kv = block(x, mask, None if past_kv is None else past_kv[i])
            if use_cache:
                present.append(kv)
        if self.ln_f is not None:
            x = self.ln_f(x)
        return (x, present) if use_cache else x


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the hidden states over real positions: (B, T, C), (B, T) -> (B, C)."""
    m = mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)

