"""Settings of the customer-service app (env prefix ``CS_``, nested with ``__``, e.g. ``CS_TRAIN__INTENTS__LR``).

``train`` holds its three trainings, each the part of ``core.config.TrainConfig`` it sets
(``apps.common.settings.train_config`` makes the whole config): the intents adapter, the fully fine-tuned intents
members and the retrieval adapter; ``distil`` how `trident cs distil` distils that intent ensemble (the teacher) into
the one student model that is served.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict

from apps.common.settings import HYPER_FIELDS, REPO_ROOT, CoreSettings, PresetSettings, train_config
from core.config import TrainConfig, config_part

RETRIEVAL_FIELDS = tuple(f for f in HYPER_FIELDS if f != "label_smoothing") + ("temperature",)
IntentsTrainConfig = config_part(TrainConfig, "IntentsTrainConfig", HYPER_FIELDS, dict(
    max_epochs=3, batch_size=32, lr=1e-3, head_lr=2e-3, max_length=64, precision="32-true", patience=2,
    warmup_ratio=0.06, label_smoothing=0.1))
# every weight of their own copy of the backbone trains; the epoch count was chosen by cross-validation inside
# train.csv (docs/experiments.md)
IntentsFullTrainConfig = config_part(TrainConfig, "IntentsFullTrainConfig", HYPER_FIELDS, dict(
    max_epochs=8, batch_size=32, lr=8e-5, head_lr=2e-3, max_length=64, precision="32-true", patience=3,
    warmup_ratio=0.06, label_smoothing=0.1))
RetrievalTrainConfig = config_part(TrainConfig, "RetrievalTrainConfig", RETRIEVAL_FIELDS, dict(
    max_epochs=4, batch_size=32, lr=5e-4, head_lr=5e-4, max_length=96, precision="32-true", patience=2,
    temperature=0.05))


# the student trains as the full members do, early-stopping on the validation part's gold labels
CSDistilTrainConfig = config_part(TrainConfig, "CSDistilTrainConfig", HYPER_FIELDS + ("keep",), dict(
    max_epochs=8, batch_size=32, lr=8e-5, head_lr=2e-3, max_length=64, precision="32-true", patience=3,
    warmup_ratio=0.06, label_smoothing=0.0))


class RetrievalSettings(BaseModel):
    """How answers are retrieved."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    mode: Literal["dense", "sparse", "hybrid"] = Field("hybrid", description="Dense (FAISS), sparse (BM25) or both.")
    fusion: Literal["weighted", "rrf"] = Field("weighted", description="How dense and sparse scores are combined.")
    sparse_weight: float = Field(0.1, ge=0.0, description="Weight of the max-normalised BM25 score in the fusion.")
    index_kind: Literal["auto", "flat", "ivf", "hnsw"] = Field("auto", description="FAISS index type.")
    approx_threshold: int = Field(50_000, ge=1, description="KB size from which `auto` uses an approximate index.")
    approx_kind: Literal["ivf", "hnsw"] = Field("hnsw", description="Approximate index used above the threshold.")
    top_k: int = Field(5, ge=1, le=50, description="Answers shown to the agent.")
    index_answers: bool = Field(False, description="Embed the answer's start with the question (dense side).")


class DialogSettings(BaseModel):
    """When the bot answers, asks back, or hands over."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    answer_threshold: float = Field(0.5, ge=0.0, le=1.0,
                                    description="Calibrated confidence from which the bot answers.")
    clarify_margin: float = Field(0.03, ge=0.0, description="Fused-score gap below which two answers are 'close'.")
    clarify_floor: float = Field(0.25, ge=0.0, le=1.0, description="Least confidence for a clarifying question.")
    max_message_chars: int = Field(5_000, ge=10, description="Longer messages are cut (with a note) before use.")
    context_turns: int = Field(2, ge=0, description="Earlier customer turns used to resolve a follow-up.")
    context_weight: float = Field(0.6, ge=0.0, description="Share of the context in a follow-up's query vector.")


class CSTrainSettings(BaseModel):
    """How `trident cs train` (and `cs learn`, retrieval only) trains."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False, extra="forbid")

    intents: IntentsTrainConfig = Field(default_factory=IntentsTrainConfig)  # the intents LoRA adapter and head
    intents_full: IntentsFullTrainConfig = Field(default_factory=IntentsFullTrainConfig)  # the full members
    retrieval: RetrievalTrainConfig = Field(default_factory=RetrievalTrainConfig)  # the retrieval LoRA adapter
    lora_r: int = Field(16, ge=1, description="Rank of the intents LoRA adapter (the retrieval adapter's: half of "
                                              "it, at least 4).")
    continue_lr: float = Field(5e-4, gt=0.0, description="Learning rate of the intents adapter when training "
                                                          "continues from an earlier artifact: a second, gentler "
                                                          "cosine cycle.")
    continue_head_lr: float = Field(1e-3, gt=0.0, description="Learning rate of the intents head when training "
                                                              "continues from an earlier artifact.")
    full_intents: int = Field(0, ge=0, description="Full copies of the backbone also fine-tuned on the intents, "
                                                   "seeds 1000 apart (sub-artifacts intents-full/, intents-full-2/, "
                                                   "...; one more backbone pass per message each), averaged and "
                                                   "weighed into the intent ensemble; their average alone is served "
                                                   "unless validation finds the mixture clearly more accurate.")
    refit_epochs: int | None = Field(None, ge=1, description="With full_intents: train the full members on the "
                                                             "training and validation parts together for a fixed "
                                                             "number of epochs (last weights kept, no early "
                                                             "stopping) and serve their average alone.")

    def intents_config(self, continuing: bool = False) -> TrainConfig:
        """The intents adapter's config; ``continuing`` an earlier artifact: with the warm restart's rates."""
        return train_config(self.intents, **({"lr": self.continue_lr, "head_lr": self.continue_head_lr}
                                             if continuing else {}))

    def full_config(self) -> TrainConfig:
        """The fully fine-tuned intents members' config."""
        return train_config(self.intents_full)

    def retrieval_config(self) -> TrainConfig:
        """The retrieval adapter's config."""
        return train_config(self.retrieval)


class CSDistilSettings(BaseModel):
    """How `trident cs distil` distils the intent ensemble of a cs artifact (the teacher) into one student model, the
    served artifact's intent detection (one backbone pass per message)."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False, extra="forbid")

    train: CSDistilTrainConfig = Field(default_factory=CSDistilTrainConfig)  # the student's training
    teacher: Path | None = Field(None, description="The teacher's cs artifact folder; default: "
                                                   "<artifacts>/teachers/cs.")
    layers: int = Field(6, ge=1, le=6, description="Blocks of all-MiniLM-L6-v2 the student keeps, the lower ones "
                                                   "(6: all of them; fewer: a smaller, faster student).")
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="Weight of the gold intent against the teacher's soft "
                                                          "label on a labelled message (an unlabelled one has the "
                                                          "soft label alone).")
    temperature: float = Field(2.0, gt=0.0, description="Temperature that softens the teacher's and the student's "
                                                        "probabilities in the soft-label loss.")
    unlabelled: tuple[Path, ...] | None = Field(
        None, description="Unlabelled in-domain text that the teacher labels: query files (JSONL / CSV with a query "
                          "field: their queries) and knowledge bases (their questions); default: kb_path and "
                          "calibration_path.")
    test_path: Path | None = Field(None, description="Labelled intents (text,category) held out as the test: never "
                                                     "trained on, unlabelled texts equal to one are dropped, and the "
                                                     "student's and the teacher's accuracy on it are recorded.")

    def config(self) -> TrainConfig:
        """The student's training config, with the distillation's alpha and temperature."""
        return train_config(self.train, distil_alpha=self.alpha, distil_temperature=self.temperature)


# The quick trainings of `make demo` (apps/suite): on a capped part of Banking77 and StackFAQ (demo), or on the
# sample intents and FAQ queries (demo-sample). Fields a preset leaves out keep the core's defaults.
_QUICK = dict(precision="32-true", warmup_ratio=0.06, weight_decay=0.01)
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "demo": {"train": {"lora_r": 8,
                       "intents": dict(_QUICK, label_smoothing=0.0, max_epochs=2, batch_size=32, lr=1e-3,
                                       head_lr=3e-3, max_length=32, patience=2),
                       "retrieval": dict(_QUICK, max_epochs=1, batch_size=32, lr=5e-4, head_lr=5e-4, max_length=64,
                                         patience=2)}},
    "demo-sample": {"train": {"lora_r": 8,
                              "intents": dict(_QUICK, label_smoothing=0.0, max_epochs=4, batch_size=16, lr=1e-3,
                                              head_lr=3e-3, max_length=32, patience=4),
                              "retrieval": dict(_QUICK, max_epochs=2, batch_size=16, lr=5e-4, head_lr=5e-4,
                                                max_length=64, patience=2)}},
}


class CSSettings(PresetSettings):
    """Everything the customer-service app reads from its environment."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = PRESETS

    model_config = SettingsConfigDict(env_prefix="CS_", env_nested_delimiter="__", frozen=True, allow_inf_nan=False,
                                      extra="ignore", env_ignore_empty=True)

    preset: Literal["default", "demo", "demo-sample"] = Field(
        "default", description="Defaults of the trainings (demo, demo-sample: the quick ones of `make demo`).")
    core: CoreSettings = Field(default_factory=CoreSettings)
    kb_path: Path = Field(REPO_ROOT / "samples" / "faq.csv", description="Knowledge-base file or folder.")
    intents_path: Path = Field(REPO_ROOT / "samples" / "intents.csv",
                               description="Intent training data (text,category).")
    calibration_path: Path | None = Field(REPO_ROOT / "samples" / "faq_queries.csv",
                                          description="Queries with gold KB ids ('-': no answer) that calibrate the "
                                                      "answer confidence when the index is built.")
    artifact: Path | None = Field(None, description="Model artifact; default: <artifacts>/cs.")
    index_dir: Path | None = Field(None, description="Index folder; default: <var>/cs/index.")
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    dialog: DialogSettings = Field(default_factory=DialogSettings)
    train: CSTrainSettings = Field(default_factory=CSTrainSettings)
    distil: CSDistilSettings = Field(default_factory=CSDistilSettings)
    retention_days: int = Field(365, ge=0, description="Conversations not updated for this many days are deleted, "
                                                       "with their turns, feedback and the KB entries made from them "
                                                       "(`trident privacy retention`; the suite daily); 0 keeps "
                                                       "them for ever.")

    @property
    def artifact_dir(self) -> Path:
        """The model artifact folder."""
        return self.artifact or self.core.artifacts_dir / "cs"

    @property
    def teacher_dir(self) -> Path:
        """The folder of the teacher that `trident cs distil` distils."""
        return self.distil.teacher or self.core.artifacts_dir / "teachers" / "cs"

    @property
    def unlabelled_paths(self) -> tuple[Path, ...]:
        """The query files and knowledge bases whose text the teacher labels for the student."""
        if self.distil.unlabelled is not None:
            return self.distil.unlabelled
        return (self.kb_path, *([self.calibration_path] if self.calibration_path else []))

    @property
    def index_folder(self) -> Path:
        """The index folder."""
        return self.index_dir or self.core.var_dir / "cs" / "index"
