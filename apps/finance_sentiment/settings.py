"""Settings of the finance-sentiment monitor (env prefix ``FIN_``, nested with ``__``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from apps.common.settings import REPO_ROOT, CoreSettings


class ScoringSettings(BaseModel):
    """How texts are split, scored and explained."""

    model_config = ConfigDict(frozen=True)

    task: str = Field("sentiment", description="Classifier task of the artifact (labels positive/neutral/negative).")
    batch_size: int = Field(32, ge=1, le=1024, description="Sentences per forward pass.")
    max_chars: int = Field(20_000, ge=100, description="Longer article texts are cut here (with a flag) before use.")
    max_sentences: int = Field(48, ge=1, description="At most this many sentences of one article are scored.")
    title_weight: float = Field(2.0, ge=0.0, description="Weight of the headline against one body sentence.")
    explain: bool = Field(True, description="Store word attributions with each article score.")
    explain_sentences: int = Field(2, ge=0, description="Sentences per article whose words are attributed.")
    quantize: bool = Field(False, description="Score with the int8 dynamically quantised model.")


class MonitorSettings(BaseModel):
    """The worker loop."""

    model_config = ConfigDict(frozen=True)

    interval_seconds: float = Field(60.0, gt=0.0, description="Pause between poll cycles.")
    lookback_days: int = Field(60, ge=1, description="Days of articles the alert rules look at.")
    price_history_days: int = Field(400, ge=30, description="Days of prices kept for the indicators.")


class FinSettings(BaseSettings):
    """Everything the finance-sentiment monitor reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="FIN_", env_nested_delimiter="__", frozen=True, extra="ignore",
                                      env_ignore_empty=True)

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

    @property
    def artifact_dir(self) -> Path:
        """The sentiment model artifact folder."""
        return self.artifact or self.core.artifacts_dir / "fin"

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
