"""Artifacts: a folder that rebuilds its own model.

```
ARTIFACT/
  config.json          {"format": "trident-core", "version": 1, "model": ..., "tasks": [...], "meta": {...}}
  model.safetensors    backbone, encoders and LM head (base weights, LoRA folded out)
  heads/TASK.safetensors   one classifier head per task
  adapters/NAME.safetensors  LoRA adapters, if any
  tokenizer.json       (absent for a model that reads no text, e.g. item sequences)
  MODEL_CARD.md        what the model is, its data, splits, figures, intended use and limits (``core.model_card``)
```
Loading checks every file and reports what is wrong in one sentence (``ArtifactError``). ``version`` is the format
version: this code writes ``VERSION`` and reads the versions in ``READABLE``; any other one is refused with a sentence
that says how to get a current artifact (``check_version``, shared with the apps' own artifact folders).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from core.adapters import adapter_names, load_adapter, save_adapter
from core.config import ModelConfig
from core.model_card import core_card, write_card
from core.tasks import CoreModel, TaskSpec
from core.tokenizer import Tokenizer, TokenizerError

log = logging.getLogger(__name__)
FORMAT, VERSION = "trident-core", 2
READABLE = (1, 2)  # 1: before item models and artifacts without a tokenizer


class ArtifactError(RuntimeError):
    """An artifact folder is missing, corrupt, or does not match its own config."""


def _base_state(model: CoreModel) -> dict[str, torch.Tensor]:
    """The state dict without heads and with LoRA wrappers folded out to the plain names."""
    return {k.replace(".base.", "."): v.detach().cpu().contiguous() for k, v in model.state_dict().items()
            if not k.startswith("heads.") and ".lora_" not in k}


def save_artifact(path: str | Path, model: CoreModel, tok: Tokenizer | None, meta: dict | None = None) -> Path:
    """Write ``model`` and ``tok`` to the folder ``path`` (created if needed); return the folder."""
    path = Path(path)
    (path / "heads").mkdir(parents=True, exist_ok=True)
    save_file(_base_state(model), str(path / "model.safetensors"))
    for name, head in model.heads.items():
        save_file({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()},
                  str(path / "heads" / f"{name}.safetensors"))
    names = adapter_names(model)
    for name in names:
        (path / "adapters").mkdir(exist_ok=True)
        save_adapter(model, name, path / "adapters" / f"{name}.safetensors")
    if tok is not None:
        tok.save(path / "tokenizer.json")
    config = {"format": FORMAT, "version": VERSION, "model": model.cfg.model_dump(mode="json"),
              "tasks": [t.model_dump(mode="json") for t in model.tasks.values()], "adapters": names,
              "tokenizer": tok is not None, "meta": meta or {}}
    (path / "config.json").write_text(json.dumps(config, indent=2))
    write_card(path, core_card(path, json.loads(json.dumps(config))))  # the card reads the config as it was written
    return path


def update_meta(path: str | Path, **entries) -> dict:
    """Set ``entries`` in the meta of the artifact in folder ``path`` (facts known only once it is written, e.g. its
    test accuracy); return its config."""
    config = read_config(path)
    config["meta"] = {**config.get("meta", {}), **entries}
    (Path(path) / "config.json").write_text(json.dumps(config, indent=2))
    return config


def check_version(config: dict, path: Path, fmt: str, readable: tuple[int, ...], retrain: str) -> None:
    """Refuse, in one sentence, the parsed ``config.json`` of ``path`` unless its format is ``fmt`` in one of the
    ``readable`` versions (the last one is the one written); ``retrain`` is the command that writes a current one."""
    if not isinstance(config, dict) or config.get("format") != fmt:
        raise ArtifactError(f"{path}/config.json is not a {fmt} config")
    version = config.get("version")
    if version in readable:
        return
    older = isinstance(version, int) and version < readable[-1]
    raise ArtifactError(f"{path} was written by {'an older' if older else 'another'} Trident (format version "
                        f"{version}, this one reads {', '.join(map(str, readable))}); retrain it with `{retrain}`")


def read_config(path: str | Path, retrain: str = "make artifacts", fmt: str = FORMAT,
                readable: tuple[int, ...] = READABLE) -> dict:
    """The parsed ``config.json`` of an artifact folder (``retrain``: the command that writes a current one) of format
    ``fmt`` in one of the ``readable`` versions (default: a core artifact)."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"artifact folder not found: {path} (train one first, e.g. `make artifacts`)")
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise ArtifactError(f"{path} is not a Trident artifact: config.json is missing")
    try:
        config = json.loads(cfg_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{cfg_file} is corrupt: {exc}") from exc
    check_version(config, path, fmt, readable, retrain)
    return config


def _load_tensors(file: Path) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise ArtifactError(f"artifact file missing: {file}")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{file} is corrupt or not a safetensors file: {exc}") from exc


def load_artifact(path: str | Path, retrain: str = "make artifacts") -> tuple[CoreModel, Tokenizer | None, dict]:
    """Rebuild the model from the folder's own config and weights; return ``(model, tokenizer, config)`` (the
    tokenizer is None for a model saved without one). ``retrain``: the command that writes a current artifact.

    Raises:
        ArtifactError: on a missing folder or file, a corrupt file, or weights that do not fit the config.
    """
    path = Path(path)
    config = read_config(path, retrain)
    try:
        cfg = ModelConfig(**config["model"])
        tasks = [TaskSpec(**t) for t in config.get("tasks", [])]
    except (ValidationError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{path}/config.json does not describe a valid model: {exc}") from exc
    tok = None
    if config.get("tokenizer", True):  # format 1 always has one
        try:
            tok = Tokenizer.load(path / "tokenizer.json")
        except TokenizerError as exc:
            raise ArtifactError(str(exc)) from exc
    if tok is not None and tok.vocab_size != cfg.vocab_size:
        raise ArtifactError(f"tokenizer has {tok.vocab_size} tokens but the model expects {cfg.vocab_size}")
    model = CoreModel(cfg, tasks)
    state = _load_tensors(path / "model.safetensors")
    for name in model.heads:
        state.update({f"heads.{name}.{k}": v for k, v in _load_tensors(path / "heads" / f"{name}.safetensors").items()})
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise ArtifactError(f"weights in {path} do not match its config.json: {' '.join(first)[:400]}") from exc
    for name in config.get("adapters", []):
        load_adapter(model, name, path / "adapters" / f"{name}.safetensors")
    model.eval()
    return model, tok, config
