"""LoRA adapters: low-rank updates of chosen Linear layers, one named adapter per task.

A wrapped layer computes ``base(x) + (dropout(x) @ A^T @ B^T) * alpha / r`` for the active adapter. Several adapters can
live side by side (one per task) and be switched, saved to safetensors, loaded, or merged into the base weights.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

DEFAULT_TARGETS = ("query", "key", "value", "proj", "fc", "fc_proj")


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus named low-rank adapters; ``active`` picks which one (None: the base alone)."""

    def __init__(self, base: nn.Linear):
        super().__init__()
        self.base = base
        self.lora_A = nn.ParameterDict()
        self.lora_B = nn.ParameterDict()
        self.scale: dict[str, float] = {}
        self.drop = nn.ModuleDict()
        self.active: str | None = None

    def add(self, name: str, r: int, alpha: float, dropout: float) -> None:
        """Add adapter ``name`` of rank ``r``; B starts at zero so the layer is unchanged until trained."""
        a = torch.empty(r, self.base.in_features)
        nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        self.lora_A[name] = nn.Parameter(a)
        self.lora_B[name] = nn.Parameter(torch.zeros(self.base.out_features, r))
        self.scale[name] = alpha / r
        self.drop[name] = nn.Dropout(dropout)
        self.active = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.active is None:
            return y
        n = self.active
        return y + (self.drop[n](x) @ self.lora_A[n].t() @ self.lora_B[n].t()) * self.scale[n]

    def delta(self, name: str) -> torch.Tensor:
        """The adapter's update of the base weight, (out, in)."""
        return (self.lora_B[name] @ self.lora_A[name]) * self.scale[name]


def apply_lora(model: nn.Module, name: str, r: int = 8, alpha: float = 16.0, dropout: float = 0.05,
               targets: Iterable[str] = DEFAULT_TARGETS) -> int:
    """Add adapter ``name`` to every Linear called one of ``targets`` inside ``model``; return how many were wrapped."""
    if r < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {r}")
    targets = set(targets)
    layers = [(parent, child_name, child) for parent in model.modules() for child_name, child in parent.named_children()
              if child_name in targets and isinstance(child, (nn.Linear, LoRALinear))]
    if not layers:
        raise ValueError(f"no Linear layer named one of {sorted(set(targets))} in the model")
    for parent, child_name, child in layers:
        if isinstance(child, nn.Linear):
            child = LoRALinear(child)
            setattr(parent, child_name, child)
        if name in child.lora_A:
            raise ValueError(f"adapter {name!r} already exists")
        child.add(name, r, alpha, dropout)
    return len(layers)


def lora_layers(model: nn.Module) -> list[tuple[str, LoRALinear]]:
    """Every LoRA-wrapped layer with its qualified name."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoRALinear)]


def adapter_names(model: nn.Module) -> list[str]:
    """Names of the adapters present."""
    layers = lora_layers(model)
    return sorted(layers[0][1].lora_A.keys()) if layers else []


def set_adapter(model: nn.Module, name: str | None) -> None:
    """Make adapter ``name`` active everywhere (None: run the base weights alone)."""
    for _, layer in lora_layers(model):
        if name is not None and name not in layer.lora_A:
            raise KeyError(f"unknown adapter {name!r}; known: {sorted(layer.lora_A.keys())}")
        layer.active = name


def active_adapter(model: nn.Module) -> str | None:
    """The adapter that is active (None: the base weights alone, or no adapters)."""
    layers = lora_layers(model)
    return layers[0][1].active if layers else None


def train_only_adapters(model: nn.Module, keep_trainable: tuple[str, ...] = ()) -> int:
    """Freeze every parameter except the LoRA matrices (of all adapters) and those whose name starts with one of
    ``keep_trainable`` (heads, for example); return the number of trainable parameters."""
    for name, p in model.named_parameters():
        p.requires_grad_(".lora_" in f".{name}" or name.startswith(keep_trainable))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def adapter_state(model: nn.Module, name: str) -> dict[str, torch.Tensor]:
    """The tensors of adapter ``name``, keyed by layer (plus its scale)."""
    state = {}
    for qual, layer in lora_layers(model):
        state[f"{qual}.A"] = layer.lora_A[name].detach().cpu().contiguous()
        state[f"{qual}.B"] = layer.lora_B[name].detach().cpu().contiguous()
        state[f"{qual}.scale"] = torch.tensor(layer.scale[name])
    if not state:
        raise KeyError(f"the model has no adapter {name!r}")
    return state


def save_adapter(model: nn.Module, name: str, path: str | Path) -> None:
    """Write adapter ``name`` to a safetensors file."""
    save_file(adapter_state(model, name), str(path))


def _replace(model: nn.Module, qual: str, module: nn.Module) -> None:
    """Put ``module`` in place of the submodule called ``qual``."""
    parent, _, child = qual.rpartition(".")
    setattr(model.get_submodule(parent), child, module)


def load_adapter(model: nn.Module, name: str, path: str | Path) -> None:
    """Read an adapter written by ``save_adapter`` into ``model`` under ``name`` (wrapping layers as needed)."""
    state = load_file(str(path))
    layer_names = sorted({k.rsplit(".", 1)[0] for k in state})
    modules = dict(model.named_modules())
    for qual in layer_names:
        # a qualified name may point at the wrapper (already wrapped) or at the plain Linear (not yet)
        target = modules.get(qual)
        if target is None:
            raise ValueError(f"adapter file {path} names a layer {qual!r} that the model does not have")
        if isinstance(target, nn.Linear):
            target = modules[qual] = LoRALinear(target)
            _replace(model, qual, target)
        a, b = state[f"{qual}.A"], state[f"{qual}.B"]
        if a.shape[1] != target.base.in_features or b.shape[0] != target.base.out_features:
            raise ValueError(f"adapter {name!r} in {path} does not fit layer {qual}")
        target.add(name, a.shape[0], 1.0, 0.0)
        target.scale[name] = float(state[f"{qual}.scale"])
        with torch.no_grad():
            target.lora_A[name].copy_(a)
            target.lora_B[name].copy_(b)


def remove_adapter(model: nn.Module, name: str) -> None:
    """Drop adapter ``name`` from every layer (where it was active, the base weights alone run); a layer left without
    adapters becomes its plain Linear again."""
    layers = lora_layers(model)
    if not layers or name not in layers[0][1].lora_A:
        raise KeyError(f"the model has no adapter {name!r}")
    for qual, layer in layers:
        del layer.lora_A[name], layer.lora_B[name], layer.drop[name], layer.scale[name]
        if layer.active == name:
            layer.active = None
        if not layer.lora_A:
            _replace(model, qual, layer.base)


def merge_adapter(model: nn.Module, name: str) -> nn.Module:
    """Fold adapter ``name`` into the base weights and unwrap every LoRA layer (other adapters are dropped)."""
    for qual, layer in lora_layers(model):
        with torch.no_grad():
            layer.base.weight += layer.delta(name).to(layer.base.weight.dtype)
        _replace(model, qual, layer.base)
    return model
