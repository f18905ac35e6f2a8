"""Modality encoders: turn images, numeric indicator windows and item ids into prefix tokens for the Backbone."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from core.config import MODALITY_TYPES, ModelConfig
from core.model import Prefix


class InputError(ValueError):
    """An input has the wrong shape, type or size for the encoder it is given to."""


def prepare_images(images: np.ndarray | torch.Tensor, channels: int, max_side: int = 224) -> torch.Tensor:
    """Bring images of any common layout to a float tensor (N, channels, H, W) in [0, 1].

    Accepts (H, W), one colour image (H, W, C), (N, H, W), (N, H, W, C) with C in {1, 3, 4}, or (N, C, H, W); uint8
    in 0..255 or floats in [0, 1].
    Colour becomes grey by ITU-R 601 luma when the encoder works in grey, grey is repeated when it works in colour,
    an alpha channel is dropped, and an image whose longer side passes ``max_side`` is scaled down to it.

    Raises:
        InputError: on any other shape, on an empty batch, or on NaN values.
    """
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    # uint8, or integers above 1, are 0..255
    scaled = x.dtype == torch.uint8 or (not x.is_floating_point() and x.numel() and x.max() > 1)
    x = x.float() / 255.0 if scaled else x.float()
    if x.ndim == 2:
        x = x[None, None]  # (1, 1, H, W)
    elif x.ndim == 3 and x.shape[-1] in (3, 4) and x.shape[0] > 4:
        x = x.permute(2, 0, 1)[None]  # one colour image (H, W, C) -> (1, C, H, W)
    elif x.ndim == 3:
        x = x[:, None]  # (N, 1, H, W)
    elif x.ndim == 4:
        if x.shape[1] not in (1, 3, 4) and x.shape[-1] in (1, 3, 4):
            x = x.permute(0, 3, 1, 2)  # (N, C, H, W)
        if x.shape[1] not in (1, 3, 4):
            raise InputError(f"images of shape {tuple(np.shape(images))}: expected 1, 3 or 4 channels")
    else:
        raise InputError(f"images of shape {tuple(x.shape)}: expected (H, W), (N, H, W), (N, H, W, C) or (N, C, H, W)")
    if x.shape[0] == 0 or x.shape[-1] < 2 or x.shape[-2] < 2:
        raise InputError(f"images of shape {tuple(x.shape)}: need at least one image of at least 2 x 2 pixels")
    if torch.isnan(x).any():
        raise InputError("images contain NaN values")
    if x.shape[1] == 4:
        x = x[:, :3]  # drop alpha
    if x.shape[1] == 3 and channels == 1:
        x = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])  # (N, 1, H, W)
    elif x.shape[1] == 1 and channels == 3:
        x = x.repeat(1, 3, 1, 1)  # (N, 3, H, W)
    H, W = x.shape[-2:]
    if max(H, W) > max_side:
        s = max_side / max(H, W)
        x = F.interpolate(x, size=(max(2, round(H * s)), max(2, round(W * s))), mode="bilinear", align_corners=False)
    return x.clamp(0.0, 1.0)


class ImagePatchEncoder(nn.Module):
    """A small convolutional stem, then one token per patch position, with 2-D positions.

    The stem (3x3 conv + BatchNorm + ReLU blocks, halving the resolution and doubling the channels up to twice) does
    the local work, so the Transformer mixes features instead of raw pixels (a from-scratch backbone learns far more
    slowly from raw patches). Other sizes than ``image_size`` are padded to a multiple of the patch and the position
    grid is interpolated, so any H x W works.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c, s = cfg.image_channels, max(2, cfg.image_stem_channels // 2)
        self.patch = cfg.patch_size

        def block(i: int, o: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

        layers, rest = block(c, s, 1) + block(s, s, 1), cfg.patch_size
        for _ in range(2):  # stride-2 stages while the patch size allows
            if rest % 2:
                break
            layers += block(s, 2 * s, 2) + block(2 * s, 2 * s, 1)
            s, rest = 2 * s, rest // 2
        self.stem = nn.Sequential(*layers)
        self.to_patch = nn.Conv2d(s, cfg.n_embd, kernel_size=rest, stride=rest)  # what the stages left (1: 1x1)
        g = cfg.image_size // cfg.patch_size
        self.pos = nn.Parameter(torch.randn(1, cfg.n_embd, g, g) * 0.02)  # (1, C, g, g)
        self.norm = nn.LayerNorm(cfg.n_embd)

    def forward(self, images: torch.Tensor) -> Prefix:
        """images: (N, C, H, W) floats in [0, 1] (see ``prepare_images``) -> Prefix of (N, h*w, n_embd)."""
        x = (images - 0.5) / 0.5
        H, W = x.shape[-2:]
        ph, pw = (-H) % self.patch, (-W) % self.patch
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), value=-1.0)  # pad with background
        x = self.to_patch(self.stem(x))  # (N, C, h, w)
        N, C, h, w = x.shape
        pos = self.pos if self.pos.shape[-2:] == (h, w) else F.interpolate(self.pos, size=(h, w), mode="bicubic",
                                                                            align_corners=False)
        x = self.norm((x + pos).flatten(2).transpose(1, 2))  # (N, h*w, C)
        mask = torch.ones(N, h * w, dtype=torch.bool, device=x.device)
        types = torch.full((N, h * w), MODALITY_TYPES["image"], dtype=torch.long, device=x.device)
        return Prefix(x, mask, types)


class SeriesEncoder(nn.Module):
    """A numeric indicator window (N, T, F) -> T prefix tokens; NaN steps are masked out."""

    def __init__(self, cfg: ModelConfig, max_steps: int = 128):
        super().__init__()
        self.n_features, self.max_steps = cfg.series_features, max_steps
        self.inp = nn.Sequential(nn.Linear(cfg.series_features, cfg.n_embd), nn.GELU(),
                                 nn.Linear(cfg.n_embd, cfg.n_embd))
        self.step = nn.Embedding(max_steps, cfg.n_embd)
        self.norm = nn.LayerNorm(cfg.n_embd)

    def forward(self, series: torch.Tensor) -> Prefix:
        """series: (N, T, F) floats, already standardised per feature by the caller."""
        if series.ndim != 3 or series.shape[-1] != self.n_features:
            raise InputError(f"series of shape {tuple(series.shape)}: expected (N, T, {self.n_features})")
        N, T, _ = series.shape
        if T > self.max_steps:
            raise InputError(f"series window of {T} steps: at most {self.max_steps}")
        real = ~torch.isnan(series).all(-1)  # (N, T) a step with no value at all is padding
        x = self.inp(torch.nan_to_num(series.float(), nan=0.0))  # (N, T, C)
        x = self.norm(x + self.step(torch.arange(T, device=x.device))[None])
        types = torch.full((N, T), MODALITY_TYPES["series"], dtype=torch.long, device=x.device)
        return Prefix(x, real, types)


class ItemEncoder(nn.Module):
    """Item ids (N, T) -> item tokens; id 0 is padding.

    With ``cfg.item_text_dim`` each item also carries frozen text features (a buffer saved with the weights), which
    either start its embedding (``item_text_mode="init"``, see :meth:`set_text`) or are projected and added to it all
    along (``"add"``); either way an item without interactions can be placed from its text (:meth:`cold_vectors`).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.n_items <= 0:
            raise ValueError("ItemEncoder needs ModelConfig.n_items > 0")
        self.n_items, self.scale = cfg.n_items, math.sqrt(cfg.n_embd) if cfg.item_scale else 1.0
        self.emb = nn.Embedding(cfg.n_items + 1, cfg.n_embd, padding_idx=0)
        nn.init.normal_(self.emb.weight, std=0.02)
        with torch.no_grad():
            self.emb.weight[0].zero_()
        # row 0 (padding) stays zero; a loaded model reads the values from its weights
        self.register_buffer("text", torch.zeros(cfg.n_items + 1, cfg.item_text_dim) if cfg.item_text_dim else None)
        self.text_proj = None
        if cfg.item_text_dim and cfg.item_text_mode == "add":
            self.text_proj = nn.Linear(cfg.item_text_dim, cfg.n_embd, bias=False)
            nn.init.normal_(self.text_proj.weight, std=0.02)

    def init_from_vectors(self, vectors: torch.Tensor) -> None:
        """Start item ``i`` (1-based) at ``vectors[i-1]``, rescaled to the table's typical norm."""
        if vectors.shape != (self.n_items, self.emb.embedding_dim):
            raise ValueError(f"vectors of shape {tuple(vectors.shape)}, expected ({self.n_items}, "
                             f"{self.emb.embedding_dim})")
        with torch.no_grad():
            self.emb.weight[1:] = F.normalize(vectors.float(), dim=-1) * self.emb.weight[1:].norm(dim=-1).mean()

    def set_text(self, text: torch.Tensor) -> None:
        """Give the items their text features (n_items, item_text_dim); in ``init`` mode the embeddings start from
        their principal components."""
        if self.text is None or text.shape != (self.n_items, self.text.size(1)):
            want = (self.n_items, self.text.size(1)) if self.text is not None else "none (item_text_dim is 0)"
            raise ValueError(f"text features of shape {tuple(text.shape)}, expected {want}")
        with torch.no_grad():
            self.text[1:] = text.float()
        if self.text_proj is None:
            self.init_from_vectors(pca(text.float(), self.emb.embedding_dim))

    def table(self) -> torch.Tensor:
        """(n_items + 1, C) the vector of every item (row 0 is padding): what a next-item head scores against."""
        w = self.emb.weight
        return w + self.text_proj(self.text) if self.text_proj is not None else w

    def forward(self, items: torch.Tensor, hidden: torch.Tensor | None = None,
                mask_vector: torch.Tensor | None = None) -> Prefix:
        """Item tokens of (N, T) ids; where ``hidden`` (N, T) is True the item is replaced by ``mask_vector``."""
        if items.min() < 0 or items.max() > self.n_items:
            raise InputError(f"item ids must lie in 0..{self.n_items}")
        x = self.emb(items)  # (N, T, C)
        if self.text_proj is not None:
            x = x + self.text_proj(self.text[items])
        if hidden is not None:
            x = torch.where(hidden[..., None], mask_vector.to(x.dtype), x)
        types = torch.full_like(items, MODALITY_TYPES["item"])
        return Prefix(x * self.scale, items != 0, types)

    @torch.no_grad()
    def cold_vectors(self, text: torch.Tensor, ridge: float = 1.0) -> torch.Tensor:
        """Vectors of items not in the catalogue yet, from their text features alone: (M, D) -> (M, C), scored like
        rows of :meth:`table`. ``add`` mode: the projection of the text (a new item's id part is zero); ``init`` mode: a
        ridge regression from the catalogue's text features to its learned item vectors."""
        if self.text is None:
            raise ValueError("this model was trained without text features: it cannot place unseen items")
        if self.text_proj is not None:
            return self.text_proj(text.float())
        X, Y = self.text[1:], self.emb.weight[1:]  # (N, D), (N, C)
        W = torch.linalg.solve(X.t() @ X + ridge * torch.eye(X.size(1)), X.t() @ Y)  # (D, C)
        return text.float() @ W


class ItemMask(nn.Module):
    """The learned vector that stands in for a hidden item: the only weights of a cloze (masked-item) task."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.vector = nn.Parameter(torch.randn(cfg.n_embd) * 0.02)


def pca(x: torch.Tensor, k: int) -> torch.Tensor:
    """The first ``k`` principal components of the rows of ``x`` (N, D) -> (N, k) (zero-padded when k > D or N)."""
    xc = x - x.mean(0, keepdim=True)
    U, S, _ = torch.linalg.svd(xc, full_matrices=False)
    out = torch.zeros(x.size(0), k)
    m = min(k, S.numel())
    out[:, :m] = U[:, :m] * S[:m]
    return out
