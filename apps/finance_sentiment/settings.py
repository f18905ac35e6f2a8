"""Settings of the finance-sentiment monitor (env prefix ``FIN_``, nested with ``__``, e.g. ``FIN_TRAIN__SOFT__LR``).

``train`` holds how `trident fin train` fine-tunes the members: ``soft`` when they train on soft targets from
PhraseBank's annotator agreement, ``hard`` on the majority labels; each is the part of ``core.config.TrainConfig`` it
sets (``apps.common.settings.train_config`` makes the whole config). ``distil`` holds how `trident fin distil` distils
that ensemble (the teacher) into the one student model that is served.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from apps.common.settings import HYPER_FIELDS, REPO_ROOT, CoreSettings, PresetSettings, train_config
from core.config import TrainConfig, config_part

# at most 6 epochs, 10% warm-up, early stopping on validation accuracy; soft targets carry the annotators' doubt, so
# no label smoothing and smaller batches (chosen by a cross-validated sweep, docs/experiments.md)
SOFT = dict(max_epochs=6, batch_size=16, lr=8e-5, head_lr=2e-3, max_length=96, precision="32-true", patience=2,
            warmup_ratio=0.1, label_smoothing=0.0)
SoftTrainConfig = config_part(TrainConfig, "SoftTrainConfig", HYPER_FIELDS, SOFT)
HardTrainConfig = config_part(TrainConfig, "HardTrainConfig", HYPER_FIELDS,
                              dict(SOFT, batch_size=32, label_smoothing=0.05))


class ScoringSettings(BaseModel):
    """How texts are split, scored and explained."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    task: str = Field("sentiment", description="Classifier task of the artifact (labels positive/neutral/negative).")
    batch_size: int = Field(32, ge=1, le=1024, description="Sentences per forward pass.")
    max_chars: int = Field(20_000, ge=100, description="Longer article texts are cut here (with a flag) before use.")
    max_sentences: int = Field(48, ge=1, description="At most this many sentences of one article are scored.")
    title_weight: float = Field(2.0, ge=0.0, description="Weight of the headline against one body sentence.")
    explain: bool = Field(True, description="Store word attributions with each article score.")
    explain_sentences: int = Field(2, ge=0, description="Sentences per article whose words are attributed.")


class MonitorSettings(BaseModel):
    """The worker loop."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    interval_seconds: float = Field(60.0, gt=0.0, description="Pause between poll cycles.")
    lookback_days: int = Field(60, ge=1, description="Days of articles the alert rules look at.")
    price_history_days: int = Field(400, ge=30, description="Days of prices kept for the indicators.")


class QueueSettings(BaseModel):
    """The job queue of `trident fin worker` (procrastinate on the suite's PostgreSQL): one job per feed per tick."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    cron: str = Field("* * * * *", description="When each feed's poll job is queued (cron; a sixth field is seconds, "
                                               "e.g. `* * * * * */30`); the feed's own poll_seconds and back-off still "
                                               "decide whether the job fetches it.")
    concurrency: int = Field(1, ge=1, le=32, description="Jobs one worker runs at once (threads); scale out with "
                                                        "more workers.")
    heartbeat_seconds: float = Field(10.0, gt=0.0, description="How often a worker tells the queue it is alive.")
    stalled_seconds: float = Field(30.0, gt=0.0, description="A worker silent this long is taken for dead and its "
                                                             "jobs are run again by another worker.")
    recover_seconds: int = Field(10, ge=1, le=60, description="How often the workers look for the jobs of dead "
                                                              "workers (seconds, a divisor of 60).")
    retry_attempts: int = Field(3, ge=0, description="Times a failed job (or one whose worker died) is run again.")
    retry_wait_seconds: int = Field(10, ge=0, description="Pause before a failed job runs again.")
    keep_jobs_hours: int = Field(24, ge=1, description="Finished jobs are kept this long for inspection (failed "
                                                       "ones until removed by hand).")

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        value = " ".join(value.split())
        try:
            croniter(value).get_next(float)
        except (ValueError, KeyError) as exc:
            raise ValueError(f"not a cron line ({' '.join(str(exc).split())})") from None
        return value

    @field_validator("recover_seconds")
    @classmethod
    def _divides_a_minute(cls, value: int) -> int:
        if 60 % value:
            raise ValueError("must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60)")
        return value

    @model_validator(mode="after")
    def _heartbeats_before_stalling(self):
        # a live worker misses no deadline: at least two heartbeats fall within stalled_seconds
        if self.stalled_seconds < 2 * self.heartbeat_seconds:
            raise ValueError(f"stalled_seconds ({self.stalled_seconds:g}) must be at least twice heartbeat_seconds "
                             f"({self.heartbeat_seconds:g})")
        return self

    @property
    def takeover_seconds(self) -> float:
        """The most time from a worker's death to another (idle) worker starting its job again: its last heartbeat
        goes stale within ``stalled_seconds``, the next look for stalled jobs comes within ``recover_seconds``, and
        queueing that look and fetching the job take under 2 s more. A busy worker first finishes the job in hand."""
        return self.stalled_seconds + self.recover_seconds + 2.0


class FinTrainSettings(BaseModel):
    """How `trident fin train` fine-tunes the sentiment model."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False, extra="forbid")

    soft: SoftTrainConfig = Field(default_factory=SoftTrainConfig)  # on soft (agreement) targets
    hard: HardTrainConfig = Field(default_factory=HardTrainConfig)  # on the majority labels
    members: int = Field(1, ge=1, description="Fully fine-tuned members, seeds 1 apart, averaged.")
    soft_labels: bool | None = Field(None, description="Train on soft targets from PhraseBank's annotator agreement "
                                                       "(unset: when the agreement files are beside the data; false: "
                                                       "the majority labels).")
    refit_epochs: int | None = Field(None, ge=1, description="Train the members on the training and validation "
                                                             "splits for this many epochs and keep the last weights "
                                                             "(no early stopping).")
    # on by default: swapping a name alone flipped far more labels without it, at the same test accuracy
    # (docs/experiments.md, bench/results/fin_fairness.json)
    entity_blind: bool = Field(True, description="Train the model to read company and person names as [COMPANY] / "
                                                 "[PERSON] (spaCy NER); the artifact records it and serving reads "
                                                 "texts the same way (docs/finance_sentiment.md).")

    def config(self, soft: bool) -> TrainConfig:
        """The members' config, on soft targets or on the majority labels."""
        return train_config(self.soft if soft else self.hard)


# the student trains as the soft-target members do, early-stopping on the validation split's gold labels
FinDistilTrainConfig = config_part(TrainConfig, "FinDistilTrainConfig", HYPER_FIELDS + ("keep",), SOFT)


class FinDistilSettings(BaseModel):
    """How `trident fin distil` distils the sentiment teacher (the ensemble `trident fin train` writes) into the one
    student model that is served."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False, extra="forbid")

    train: FinDistilTrainConfig = Field(default_factory=FinDistilTrainConfig)  # the student's training
    teacher: Path | None = Field(None, description="The teacher's artifact folder; default: <artifacts>/teachers/fin.")
    layers: int = Field(6, ge=1, le=6, description="Blocks of all-MiniLM-L6-v2 the student keeps, the lower ones "
                                                   "(6: all of them; fewer: a smaller, faster student).")
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="Weight of the gold label against the teacher's soft label "
                                                          "on a labelled sentence (an unlabelled one has the soft "
                                                          "label alone).")
    temperature: float = Field(2.0, gt=0.0, description="Temperature that softens the teacher's and the student's "
                                                        "probabilities in the soft-label loss.")
    unlabelled: tuple[Path, ...] | None = Field(
        None, description="Unlabelled in-domain text that the teacher labels: RSS / Atom feed files or folders of "
                          "them, read as the worker reads feeds (the headline and the summary's sentences); default: "
                          "<data>/finance_feeds, else samples/feeds.")

    def config(self) -> TrainConfig:
        """The student's training config, with the distillation's alpha and temperature."""
        return train_config(self.train, distil_alpha=self.alpha, distil_temperature=self.temperature)


# The quick trainings of `make demo` (apps/suite), on majority labels: a capped part of PhraseBank (demo) or the
# sample sentences (demo-sample). Fields a preset leaves out keep the core's defaults.
_QUICK = dict(precision="32-true", warmup_ratio=0.06, weight_decay=0.01, label_smoothing=0.0)
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "demo": {"train": {"hard": dict(_QUICK, max_epochs=1, batch_size=32, lr=8e-5, head_lr=2e-3, max_length=64,
                                    warmup_ratio=0.1, patience=2)}},
    "demo-sample": {"train": {"hard": dict(_QUICK, max_epochs=4, batch_size=16, lr=1e-4, head_lr=3e-3,
                                           max_length=48, patience=4)}},
}


class FinSettings(PresetSettings):
    """Everything the finance-sentiment monitor reads from its environment."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = PRESETS

    model_config = SettingsConfigDict(env_prefix="FIN_", env_nested_delimiter="__", frozen=True, allow_inf_nan=False,
                                      extra="ignore", env_ignore_empty=True)

    preset: Literal["default", "demo", "demo-sample"] = Field(
        "default", description="Defaults of the training (demo, demo-sample: the quick ones of `make demo`).")
    core: CoreSettings = Field(default_factory=CoreSettings)
    feeds_path: Path = Field(REPO_ROOT / "samples" / "feeds.toml", description="Feeds and entities (TOML or YAML).")
    rules_path: Path = Field(REPO_ROOT / "samples" / "alert_rules.toml", description="Alert rules (TOML).")
    prices_dir: Path | None = Field(None, description="Folder of <TICKER>.csv OHLCV files; default: the data "
                                                      "sets' market_prices/stooq_2026, else samples/prices.")
    price_tz: str = Field("America/New_York", description="Time zone of the price files' dates (exchange time).")
    artifact: Path | None = Field(None, description="Sentiment model artifact; default: <artifacts>/fin.")
    risk_artifact: Path | None = Field(None, description="Fusion risk model (`trident fin risk`); default: "
                                                         "<artifacts>/fin-risk, used by risk_model rules when present.")
    scoring: ScoringSettings = Field(default_factory=ScoringSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    train: FinTrainSettings = Field(default_factory=FinTrainSettings)
    distil: FinDistilSettings = Field(default_factory=FinDistilSettings)

    @field_validator("price_tz")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("unknown time zone; use an IANA name such as America/New_York") from None
        return value

    @property
    def artifact_dir(self) -> Path:
        """The sentiment model artifact folder."""
        return self.artifact or self.core.artifacts_dir / "fin"

    @property
    def teacher_dir(self) -> Path:
        """The folder of the teacher that `trident fin distil` distils."""
        return self.distil.teacher or self.core.artifacts_dir / "teachers" / "fin"

    @property
    def unlabelled_paths(self) -> tuple[Path, ...]:
        """The feed files (or folders) whose text the teacher labels for the student."""
        if self.distil.unlabelled is not None:
            return self.distil.unlabelled
        real = self.core.data_dir / "finance_feeds"
        return (real if real.is_dir() else REPO_ROOT / "samples" / "feeds",)

    @property
    def risk_artifact_dir(self) -> Path:
        """The fusion risk model's folder (it may not exist)."""
        return self.risk_artifact or self.core.artifacts_dir / "fin-risk"

    @property
    def prices_folder(self) -> Path:
        """The price files' folder."""
        if self.prices_dir is not None:
            return self.prices_dir
        real = self.core.data_dir / "market_prices" / "stooq_2026"
        return real if real.is_dir() else REPO_ROOT / "samples" / "prices"
