"""Text generation with the core: greedy, top-k / top-p sampling and beam search, with a KV cache.

Prompts are left-padded into one batch (positions count real tokens, so padding does not shift them). The prompt is
read in ``causal`` mode, or in ``prefix`` mode (bidirectional over the prompt and any modality prefix); every new token
is then decoded causally against the cache. An allowed-token mask restricts what may be produced, and stop tokens end a
sequence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from core.model import KVCache, Prefix
from core.tasks import CoreModel


@dataclass(frozen=True)
class GenerationConfig:
    """How to decode (the tokenizer's [SEP] is added to ``stop_ids`` by the engine)."""

    max_new_tokens: int = 32
    strategy: str = "greedy"  # greedy, sample or beam
    temperature: float = 1.0  # divides the logits before sampling
    top_k: int = 0  # keep only the k most likely tokens (0: all)
    top_p: float = 1.0  # keep the smallest set of tokens whose probability reaches p (1.0: all)
    num_beams: int = 4
    length_penalty: float = 1.0  # beam score = log-probability / length ** length_penalty
    stop_ids: tuple[int, ...] = ()  # ids that end a sequence
    allowed_ids: tuple[int, ...] | None = None  # if given, only these ids (and the stop ids) can be generated
    banned_ids: tuple[int, ...] = ()  # ids never generated (special tokens)
    use_cache: bool = True  # False recomputes the whole sequence each step (for benchmarks)
    mode: str = "causal"  # attention over the prompt: causal or prefix
    seed: int = 0  # seed of the sampler

    def __post_init__(self):
        if self.strategy not in ("greedy", "sample", "beam"):
            raise ValueError(f"unknown strategy {self.strategy!r}; use greedy, sample or beam")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        if not 0 < self.temperature < math.inf or not 0 < self.top_p <= 1 or self.top_k < 0 or self.num_beams < 1:
            raise ValueError("need a finite temperature > 0, 0 < top_p <= 1, top_k >= 0, num_beams >= 1")
        if self.mode not in ("causal", "prefix"):
            raise ValueError(f"unknown prompt mode {self.mode!r}; use causal or prefix")


def _token_mask(vocab: int, cfg: GenerationConfig, device) -> torch.Tensor:
    """(vocab,) bool: True where a token may be generated."""
    ok = torch.full((vocab,), cfg.allowed_ids is None, dtype=torch.bool, device=device)
    ok[list(cfg.allowed_ids or ())] = True
    ok[list(cfg.banned_ids)] = False
    ok[list(cfg.stop_ids)] = True  # a stop id is always allowed
    return ok


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set to -inf every logit outside the top-k and outside the top-p nucleus: (B, V) -> (B, V)."""
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[..., -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
        drop = cum - torch.softmax(sorted_logits, dim=-1) >= top_p  # keep the token that crosses p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


class Decoder:
    """Runs the model step by step, with or without the KV cache."""

    def __init__(self, model: CoreModel, cfg: GenerationConfig, prefix: Prefix | None):
        self.model, self.cfg, self.prefix = model, cfg, prefix
        self.cache: KVCache | None = None
        self.ids = self.mask = None

    def start(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Read the prompts; return the logits of the next token (B, V)."""
        self.ids, self.mask = ids, mask
        self.full_mask = mask if self.prefix is None else torch.cat([self.prefix.mask.bool(), mask], 1)
        self.prompt_len = self.full_mask.size(1)
        prefix_len = torch.full((ids.size(0),), self.prompt_len, device=ids.device)
        out = self.model.backbone(ids, mask, mode=self.cfg.mode, prefix=self.prefix, prefix_len=prefix_len,
                                  use_cache=self.cfg.use_cache)
        hidden, self.cache = out if self.cfg.use_cache else (out, None)
        return self.model.lm_head(hidden[:, -1])

    def step(self, next_ids: torch.Tensor) -> torch.Tensor:
        """Append one token per row (B,); return the logits of the following one (B, V)."""
        ones = torch.ones(next_ids.size(0), 1, dtype=torch.bool, device=next_ids.device)
        self.full_mask = torch.cat([self.full_mask, ones], 1)
        self.ids = torch.cat([self.ids, next_ids[:, None]], 1)
        self.mask = torch.cat([self.mask, ones], 1)
        if self.cfg.use_cache:
            hidden, self.cache = self.model.backbone(next_ids[:, None], self.full_mask, mode="causal",
                                                     past_kv=self.cache, use_cache=True)
        else:
            # recompute everything: the prompt keeps its own attention, new tokens are causal
            prefix_len = torch.full((self.ids.size(0),), self.prompt_len, device=self.ids.device)
            hidden = self.model.backbone(self.ids, self.mask, mode=self.cfg.mode, prefix=self.prefix,
                                         prefix_len=prefix_len)
        return self.model.lm_head(hidden[:, -1])

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` (beam search)."""
        self.ids, self.mask, self.full_mask = self.ids[index], self.mask[index], self.full_mask[index]
        if self.cache is not None:
            self.cache = [(k[index], v[index]) for k, v in self.cache]
        if self.prefix is not None:
            self.prefix = self.prefix.rows(index)


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad id lists: (B, T) ids and a (B, T) bool mask."""
    T = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), T), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros(len(prompts), T, dtype=torch.bool, device=device)
    for i, p in enumerate(prompts):
        if len(p):
            ids[i, T - len(p):] = torch.as_tensor(list(p), device=device)
            mask[i, T - len(p):] = True
    return ids, mask


@torch.inference_mode()
def generate(model: CoreModel, prompts: Sequence[Sequence[int]], cfg: GenerationConfig, pad_id: int = 0,
             prefix: Prefix | None = None) -> list[list[int]]:
    """Continue each prompt (non-empty token ids), after ``prefix`` (one row per prompt, e.g. image patches) if
    given; return only the new ids of each (stop token excluded)."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    device = next(model.parameters()).device
    room = model.cfg.block_size - max(len(p) for p in prompts) - (len(prefix) if prefix is not None else 0)
    if room < 1:
        raise ValueError(f"prompt fills the model's {model.cfg.block_size} positions; nothing left to generate")
    cfg = GenerationConfig(**{**cfg.__dict__, "max_new_tokens": min(cfg.max_new_tokens, room)})
    if cfg.strategy == "beam":
        return [_beam(model, p, cfg, pad_id, None if prefix is None else prefix.rows(slice(i, i + 1)), device)
                for i, p in enumerate(prompts)]
    ids, mask = left_pad(prompts, pad_id, device)
    dec = Decoder(model, cfg, prefix)
    logits = dec.start(ids, mask)
    ok = _token_mask(logits.size(-1), cfg, device)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    B = len(prompts)
    out: list[list[int]] = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool, device=device)
    stop = torch.tensor(list(cfg.stop_ids) or [-1], device=device)
    for step in range(cfg.max_new_tokens):
        logits = logits.float().masked_fill(~ok, float("-inf"))
        if cfg.strategy == "greedy":
            nxt = logits.argmax(-1)
        else:
            probs = torch.softmax(filter_logits(logits / cfg.temperature, cfg.top_k, cfg.top_p), -1)
            nxt = torch.multinomial(probs, 1, generator=gen).squeeze(1)
        is_stop = torch.isin(nxt, stop)
        for i in range(B):
            if not done[i] and not is_stop[i]:
                out[i].append(int(nxt[i]))
        done |= is_stop
        if bool(done.all()) or step == cfg.max_new_tokens - 1:
            break
        logits = dec.step(nxt)
    return out


def _beam(model: CoreModel, prompt: Sequence[int], cfg: GenerationConfig, pad_id: int, prefix: Prefix | None,
          device) -> list[int]:
    """Beam search for one prompt."""
    nb = cfg.num_beams
    ids, mask = left_pad([prompt], pad_id, device)
    dec = Decoder(model, cfg, prefix)
    logits = dec.start(ids, mask)
    ok = _token_mask(logits.size(-1), cfg, device)
    dec.reorder(torch.zeros(nb, dtype=torch.long, device=device))
    logits = logits.expand(nb, -1)
    scores = torch.full((nb,), float("-inf"), device=device)
    scores[0] = 0.0  # all beams start identical: only the first may expand at step one
    seqs: list[list[int]] = [[] for _ in range(nb)]
    finished: list[tuple[float, list[int]]] = []
    stop = set(cfg.stop_ids)
    for _ in range(cfg.max_new_tokens):
        logp = torch.log_softmax(logits.float().masked_fill(~ok, float("-inf")), -1)  # (nb, V)
        cand = (scores[:, None] + logp).view(-1)
        top = torch.topk(cand, min(2 * nb, cand.numel()))
        V = logp.size(-1)
        keep: list[tuple[int, int, float]] = []  # (beam, token, score)
        for s, flat in zip(top.values.tolist(), top.indices.tolist()):
            if s == float("-inf"):
                break
            b, t = divmod(flat, V)
            if t in stop:
                finished.append((s / max(1, len(seqs[b]) + 1) ** cfg.length_penalty, seqs[b]))
            else:
                keep.append((b, t, s))
            if len(keep) == nb:
                break
        if len(finished) >= nb or not keep:
            break
        keep += [(keep[0][0], keep[0][1], float("-inf"))] * (nb - len(keep))  # copies of the best keep the shape
        keep_beam, keep_tok, keep_score = (list(c) for c in zip(*keep))
        index = torch.tensor(keep_beam, device=device)
        seqs = [seqs[b] + [t] for b, t in zip(keep_beam, keep_tok)]
        scores = torch.tensor(keep_score, device=device)
        dec.reorder(index)
        logits = dec.step(torch.tensor(keep_tok, device=device))
    for s, seq in zip(scores.tolist(), seqs):
        if s > float("-inf"):
            finished.append((s / max(1, len(seq)) ** cfg.length_penalty, seq))
    return max(finished, key=lambda x: x[0])[1] if finished else []
