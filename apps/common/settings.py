"""Settings shared by every app: where data and artifacts live, the database URL, and the core's own trainings.

Built at the edge (the CLI, a dashboard's ``resources.py``, a test) and passed down: keyword arguments (the CLI's
flags) beat the environment (prefix ``TRIDENT_``), which beats the defaults. A training's settings are the part of
``core.config.TrainConfig`` it sets (``core.config.config_part``); :func:`train_config` makes the whole config of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.config import InferenceConfig, TrainConfig, config_part

REPO_ROOT = Path(__file__).resolve().parents[2]

# the TrainConfig fields a text training sets: its hyper-parameters, then where it runs
HYPER_FIELDS = ("max_epochs", "max_steps", "batch_size", "lr", "head_lr", "weight_decay", "warmup_ratio", "max_length",
                "precision", "seed", "patience", "label_smoothing")
RUN_FIELDS = ("accelerator", "devices", "strategy", "num_nodes")


def train_config(part: BaseModel, **update) -> TrainConfig:
    """The whole ``TrainConfig`` of a training's settings ``part`` (the core's defaults for the rest), checked."""
    return TrainConfig(**{**part.model_dump(), **update})


def merge(default: dict, given: Any) -> Any:
    """``given`` over ``default``, dicts merged key by key at every depth; an object (not a dict) is taken whole."""
    if given is None:
        return default
    if not isinstance(given, dict):
        return given
    return {**default, **{k: merge(default[k], v) if isinstance(default.get(k), dict) else v
                          for k, v in given.items()}}


class PresetSettings(BaseSettings):
    """An app's settings whose defaults come from a preset chosen by name (the ``preset`` field each app declares,
    with its ``PRESETS`` dict). What is set explicitly (a keyword, a flag, an environment variable) beats the preset,
    field by field, however deep it sits (``CS_TRAIN__INTENTS__LR`` keeps the preset's other intents fields)."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"default": {}}

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        preset = cls.PRESETS.get(values.get("preset", "default"))
        if preset is None:
            return values  # the field's own validation names the choices
        return {**values, **{k: merge(v, values.get(k)) for k, v in preset.items()}}


class CoreSettings(BaseSettings):
    """Paths and services of one Trident installation, and how its models serve (``inference``)."""

    model_config = SettingsConfigDict(env_prefix="TRIDENT_", env_nested_delimiter="__", frozen=True, extra="ignore",
                                      env_ignore_empty=True)

    data_dir: Path = Field(REPO_ROOT.parent / "shared" / "datasets",
                           description="Folder laid out like ../shared/datasets (real data sets).")
    artifacts_dir: Path = Field(REPO_ROOT / "artifacts", description="Trained model artifacts.")
    var_dir: Path = Field(REPO_ROOT / "var", description="Runtime state: SQLite file, indexes, logs.")
    database_url: str = Field("", description="SQLAlchemy URL; empty means SQLite under var_dir.")
    inference: InferenceConfig = Field(default_factory=InferenceConfig)  # how every app's models serve

    @property
    def effective_database_url(self) -> str:
        """The database to use: ``database_url``, or the SQLite file under ``var_dir``."""
        return self.database_url or f"sqlite:///{self.var_dir / 'trident.db'}"


# The core's benchmark trainings (fp32: on a CPU, bf16 autocast is slower for these model sizes, bench/results/).
TextTrainConfig = config_part(TrainConfig, "TextTrainConfig", HYPER_FIELDS + RUN_FIELDS, dict(
    max_epochs=5, batch_size=32, lr=8e-5, head_lr=2e-3, max_length=96, precision="32-true", patience=2,
    warmup_ratio=0.06))
ImageTrainConfig = config_part(TrainConfig, "ImageTrainConfig", tuple(f for f in HYPER_FIELDS if f != "max_length")
                               + RUN_FIELDS, dict(max_epochs=8, batch_size=128, lr=2e-3, head_lr=2e-3,
                                                  precision="32-true", weight_decay=0.05, label_smoothing=0.1,
                                                  patience=3, warmup_ratio=0.03))
PretrainConfig = config_part(TrainConfig, "PretrainConfig", tuple(f for f in HYPER_FIELDS if f != "label_smoothing")
                             + ("mlm_prob", "causal_fraction") + RUN_FIELDS,
                             dict(max_epochs=2, batch_size=32, lr=5e-5, head_lr=5e-4, max_length=64,
                                  precision="32-true", patience=1, causal_fraction=0.5))


class CoreTrainSettings(BaseSettings):
    """The core's own trainings (``trident core finetune / train-images / pretrain / artifacts``), env prefix
    ``TRIDENT_TRAIN__``, e.g. ``TRIDENT_TRAIN__TEXT__LR``."""

    model_config = SettingsConfigDict(env_prefix="TRIDENT_TRAIN__", env_nested_delimiter="__", frozen=True,
                                      extra="ignore", env_ignore_empty=True)

    text: TextTrainConfig = Field(default_factory=TextTrainConfig)  # text classifiers: `finetune`, text-* artifacts
    images: ImageTrainConfig = Field(default_factory=ImageTrainConfig)  # `train-images`, the images-fashion artifact
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)  # continued pretraining, text-pretrain

    def configs(self) -> dict[str, TrainConfig]:
        """The whole config of each training, by name (``core.recipes.build_artifacts`` takes them)."""
        return {name: train_config(getattr(self, name)) for name in ("text", "images", "pretrain")}
