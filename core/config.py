"""Configuration of the shared core: the model's shape and the training loop's knobs.

Both objects are frozen pydantic models, so a config read from an artifact's ``config.json`` is validated the same way
as one built in code, and nothing can change it after the model is built from it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model, model_validator
from pydantic.fields import FieldInfo

AttnMode = Literal["bidirectional", "causal", "prefix"]


def _device_count(value: int | str) -> int | str:
    if isinstance(value, int) and value < 1 and value != -1:
        raise ValueError("a count of devices must be >= 1 (or -1: every device)")
    return value


# Lightning's devices: a count (-1: every device), or text such as "auto" or "0,1"
Devices = Annotated[int | str, AfterValidator(_device_count)]

# Modality-type ids, added to every token as a learned embedding so that the backbone can tell a text token from an
# image patch, a numeric-series step or an item, even where they share positions in one sequence.
MODALITY_TYPES: dict[str, int] = {"text": 0, "image": 1, "series": 2, "item": 3}


class ModelConfig(BaseModel):
    """Shape of the Backbone and of its modality encoders.

    The field names follow nanoGPT (``n_layer``, ``n_head``, ``n_embd``, ``block_size``); the block itself is BERT's
    post-LayerNorm block so that all-MiniLM-L6-v2's weights load into it unchanged.
    """

    model_config = ConfigDict(frozen=True, allow_inf_nan=False, extra="forbid")

    vocab_size: int = Field(30522, ge=8, description="Number of text tokens (tokenizer vocabulary).")
    n_layer: int = Field(6, ge=1, description="Number of Transformer blocks.")
    n_head: int = Field(12, ge=1, description="Attention heads per block.")
    n_embd: int = Field(384, ge=8, description="Hidden size.")
    n_inner: int = Field(1536, ge=8, description="Hidden size of the MLP inside each block.")
    block_size: int = Field(512, ge=8, description="Longest sequence (prefix + text) the position table covers.")
    n_types: int = Field(len(MODALITY_TYPES), ge=1, description="Modality-type embeddings (text, image, series, item).")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout on embeddings, attention output and MLP.")
    attn_dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout on attention probabilities.")
    layer_norm_eps: float = Field(1e-12, gt=0.0, description="LayerNorm epsilon (BERT uses 1e-12).")
    norm: Literal["post", "pre"] = Field(
        "post", description="post: BERT's post-LayerNorm blocks with a LayerNorm on the embeddings (what MiniLM's "
                            "weights need); pre: pre-LayerNorm blocks and a final LayerNorm (GPT-2 / SASRec style), "
                            "for models trained from scratch.")
    # image patch encoder
    image_channels: int = Field(1, ge=1, le=3, description="Channels the image encoder works in (1 gray, 3 RGB).")
    image_size: int = Field(28, ge=4, description="Side the image encoder is trained at; other sizes are resized.")
    patch_size: int = Field(4, ge=2, multiple_of=2,
                            description="Side of one patch token in pixels (28 / 4 = 7 x 7 = 49 tokens); even.")
    image_stem_channels: int = Field(64, ge=4, description="Channels of the convolutional stem before patching.")
    # numeric series encoder
    series_features: int = Field(8, ge=1, description="Features per step of a numeric indicator window.")
    # items (recommender)
    n_items: int = Field(0, ge=0, description="Item vocabulary for item-mode sequences (0: no item embeddings).")
    item_text_dim: int = Field(0, ge=0, description="Width of the frozen text features of each item (0: ids only).")
    item_text_mode: Literal["init", "add"] = Field(
        "init", description="init: the item embeddings start from the text features (PCA to n_embd); add: each item "
                            "is its id embedding plus a learned projection of its text features, all along.")
    item_positions: Literal["left", "right"] = Field(
        "left", description="Positions of an item sequence: counted from its oldest item (left), or from its most "
                            "recent one, which then always sits at the last position (right, as in SASRec).")
    item_scale: bool = Field(False, description="Multiply the item vectors by sqrt(n_embd) on the way in (as SASRec).")
    encoders: tuple[Literal["image", "series"], ...] = Field(
        ("image", "series"), description="Non-text encoders the model builds (items have theirs when n_items > 0).")

    @model_validator(mode="after")
    def _check_heads(self) -> ModelConfig:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size={self.image_size} must be a multiple of patch_size={self.patch_size}")
        return self

    @property
    def head_size(self) -> int:
        """Size of one attention head."""
        return self.n_embd // self.n_head

    @classmethod
    def tiny(cls, vocab_size: int = 512, **kw) -> ModelConfig:
        """A model small enough for unit tests (well under a second per step)."""
        return cls(vocab_size=vocab_size, n_layer=2, n_head=2, n_embd=32, n_inner=64, block_size=128,
                   image_stem_channels=8, **kw)

    @classmethod
    def small(cls, vocab_size: int = 8000, **kw) -> ModelConfig:
        """A model small enough to train on a CPU (the image artifact uses this shape)."""
        return cls(vocab_size=vocab_size, n_layer=4, n_head=4, n_embd=128, n_inner=512, block_size=256, **kw)

    @classmethod
    def base(cls, vocab_size: int = 30522, **kw) -> ModelConfig:
        """all-MiniLM-L6-v2's shape: 6 layers, 12 heads, 384 hidden, 1536 MLP, 512 positions."""
        return cls(vocab_size=vocab_size, **kw)

    @classmethod
    def preset(cls, name: str, **kw) -> ModelConfig:
        """Build a preset by name (``tiny``, ``small``, ``base`` or ``minilm``)."""
        presets = {"tiny": cls.tiny, "small": cls.small, "base": cls.base, "minilm": cls.base}
        if name not in presets:
            raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(presets)}")
        return presets[name](**kw)


class TrainConfig(BaseModel):
    """Knobs of one training run (pretraining or fine-tuning)."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False, extra="forbid")

    max_epochs: int = Field(3, ge=1, description="Upper bound on epochs; early stopping may end sooner.")
    max_steps: int = Field(-1, ge=-1, description="Upper bound on optimizer steps (-1: no bound).")
    batch_size: int = Field(32, ge=1, description="Examples per batch, per task.")
    lr: float = Field(5e-5, gt=0.0, description="Peak learning rate of the backbone.")
    head_lr: float = Field(1e-3, gt=0.0, description="Learning rate of freshly initialised heads and encoders.")
    weight_decay: float = Field(0.01, ge=0.0, description="AdamW weight decay (not on biases and LayerNorms).")
    warmup_ratio: float = Field(0.06, ge=0.0, lt=1.0, description="Linear warm-up, as a fraction of all steps.")
    max_length: int = Field(128, ge=8, description="Text tokens per example; longer texts are truncated.")
    precision: str = Field("bf16-mixed", description="Lightning precision: bf16-mixed on CPU, 32-true, 16-mixed.")
    seed: int = Field(13, ge=0, le=2**32 - 1, description="Seed for splits, initialisation, shuffling and masking.")
    patience: int = Field(2, ge=1, description="Validations without improvement before early stopping.")
    keep: Literal["best", "last"] = Field(
        "best", description="Weights the artifact keeps: the best validation epoch (with early stopping), or the last "
                            "one (a fixed schedule of max_epochs, e.g. a refit on all the data; validation, if there "
                            "is any, is only logged).")
    val_check_interval: float = Field(1.0, gt=0.0, description="Validate every this fraction of an epoch.")
    limit_train_batches: float = Field(1.0, gt=0.0, description="Fraction (or count, if > 1) of batches per epoch.")
    mlm_prob: float = Field(0.15, gt=0.0, lt=1.0, description="Masking rate of the masked-token objective (and share "
                                                                "of the items hidden by the cloze task).")
    n_negatives: int = Field(512, ge=1, description="Shared uniform negatives of the next-item sampled softmax.")
    sampled_above: int = Field(50_000, ge=1, description="Catalogue size from which the next-item loss is a sampled "
                                                         "softmax instead of a full one over every item.")
    causal_fraction: float = Field(0.5, ge=0.0, le=1.0, description="Share of pretraining batches that are causal.")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="Label smoothing of classification losses.")
    temperature: float = Field(0.05, gt=0.0, description="Softmax temperature of the contrastive loss.")
    distil_alpha: float = Field(0.5, ge=0.0, le=1.0, description="Knowledge distillation: weight of the gold label "
                                                                 "against the teacher's soft label on a labelled "
                                                                 "text (an unlabelled text has the soft label alone).")
    distil_temperature: float = Field(2.0, gt=0.0, description="Knowledge distillation: temperature T that softens "
                                                               "the teacher's and the student's class probabilities "
                                                               "in the soft-label loss (scaled by T^2).")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    accelerator: str = Field("auto", description="Lightning accelerator (cpu, gpu, auto).")
    devices: Devices = Field("auto", union_mode="left_to_right",  # "4" from the environment is the count 4
                             description="Lightning devices (a count, or auto).")
    strategy: str = Field("auto", description="Lightning strategy (auto, ddp, fsdp, ...).")
    num_nodes: int = Field(1, ge=1, description="Nodes for multi-node training.")
    deterministic: bool = Field(False, description="Ask torch for deterministic kernels (slower).")

    @classmethod
    def quick(cls, **kw) -> TrainConfig:
        """Settings for tests and the demo: one short epoch."""
        return cls(**{"max_epochs": 1, "batch_size": 16, "precision": "32-true", **kw})


Runtime = Literal["torch", "torch-int8", "onnx", "onnx-int8"]


class InferenceConfig(BaseModel):
    """How an ``InferenceEngine`` runs: the runtime of its text classification and embeddings, and its batching."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    runtime: Runtime = Field(
        "torch", description="torch; torch-int8 (int8 dynamic quantisation of the Linear layers); onnx or onnx-int8 "
                             "(ONNX Runtime, fp32 or int8 weights, on a graph exported beside the artifact; it "
                             "serves text classification and embeddings, torch fp32 the rest).")
    threads: int = Field(0, ge=0, description="Intra-op threads of an ONNX Runtime session (0: ONNX Runtime's "
                                              "default, one per physical core).")
    bucket_by_length: bool = Field(True, description="Batch texts sorted by token length (less padding); results "
                                                     "come back in input order either way.")


def config_part(cls: type[BaseModel], name: str, fields: tuple[str, ...], defaults: dict[str, Any]) -> type[BaseModel]:
    """A frozen config class holding only ``fields`` of ``cls`` (the same types, constraints and descriptions), with
    ``defaults`` replacing their defaults: what an app's settings nest when only part of a core config is theirs to
    set. ``cls(**part.model_dump(), **rest)`` builds the whole config, and checks it."""
    out = {f: (cls.model_fields[f].annotation,
               FieldInfo.merge_field_infos(cls.model_fields[f], **({"default": defaults[f]} if f in defaults else {})))
           for f in fields}
    return create_model(name, __config__=ConfigDict(frozen=True, allow_inf_nan=False, extra="forbid"),
                        __doc__=f"The part of {cls.__name__} that {name} sets.", **out)
