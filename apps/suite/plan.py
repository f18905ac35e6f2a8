"""The suite's plan: where every part lives (artifacts, index, feeds, batch output, database, ports), decided once
from the settings and the files present, and handed to every child process through :meth:`Plan.env`.

A full artifact of ``make artifacts`` is used when it is there, else a quick one that ``prepare`` trains under
``<var>/demo/artifacts``: on a capped part of an app's real data sets where the data folder holds them
(:data:`REAL_FILES`), else on the samples. The finance feeds and prices are always the samples (docs/deploy.md).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from apps.common.settings import REPO_ROOT, CoreSettings
from apps.customer_service.settings import CSSettings
from apps.finance_sentiment.settings import FinSettings, MonitorSettings
from apps.recommender.settings import RecSettings, tiny_settings

SAMPLES = REPO_ROOT / "samples"
APPS = ("cs", "fin", "rec")
# The files that make an app's data "real" (all of them must be under TRIDENT_DATA_DIR).
REAL_FILES = {"cs": ("banking77/train.csv", "banking77/test_dev.csv", "stackfaq/faq_threads.jsonl",
                     "stackfaq/queries_dev.jsonl"),
              "fin": ("financial_phrasebank/Sentences_50Agree.txt",),
              "rec": ("movielens-100k/u.data", "movielens-100k/u.item")}


class SuiteError(RuntimeError):
    """Something the user can fix: a port in use, an artifact missing under ``--no-train``."""


class SuiteSettings(BaseSettings):
    """Ports and timings of the suite (env prefix ``TRIDENT_SUITE_``)."""

    model_config = SettingsConfigDict(env_prefix="TRIDENT_SUITE_", frozen=True, allow_inf_nan=False, extra="ignore")

    cs_port: int = Field(8501, ge=1, le=65535, description="Port of the support console.")
    fin_port: int = Field(8502, ge=1, le=65535, description="Port of the finance dashboard.")
    rec_port: int = Field(8503, ge=1, le=65535, description="Port of the recommender dashboard.")
    feeds_port: int = Field(8766, ge=1, le=65535, description="Port of the local server of the sample feeds.")
    address: str = Field("127.0.0.1", description="Interface the dashboards listen on (0.0.0.0: every interface).")
    worker_interval: float = Field(30.0, gt=0.0, description="Seconds between the finance worker's cycles.")
    health_timeout: float = Field(300.0, gt=0.0, description="Seconds to wait for every dashboard to answer.")
    stop_timeout: float = Field(20.0, gt=0.0, description="Seconds a child has to stop before it is killed.")
    train: bool = Field(True, description="Train the quick artifacts that are missing (off: fail instead).")


@dataclass(frozen=True)
class Plan:
    """Where every part of the suite lives: ``core`` holds the (absolute) paths and database, ``suite`` the ports."""

    core: CoreSettings
    suite: SuiteSettings

    @classmethod
    def build(cls, core: CoreSettings, suite: SuiteSettings) -> Plan:
        """A plan with every path of ``core`` made absolute (children run elsewhere and read them from the env)."""
        paths = {k: Path(getattr(core, k)).resolve() for k in ("data_dir", "artifacts_dir", "var_dir")}
        return cls(core.model_copy(update=paths), suite)

    @property
    def demo_dir(self) -> Path:
        """What the suite writes (besides the database)."""
        return self.core.var_dir / "demo"

    @property
    def database_url(self) -> str:
        """The one database of the suite (``TRIDENT_DATABASE_URL``, else SQLite under ``<var>``)."""
        return self.core.effective_database_url

    def real(self, app: str) -> bool:
        """Whether the real data sets of ``app`` are under the data folder."""
        return all((self.core.data_dir / f).is_file() for f in REAL_FILES[app])

    def full_artifact(self, app: str) -> Path | None:
        """The complete artifact of ``make artifacts`` for ``app``, if there is one."""
        path = self.core.artifacts_dir / app
        return path if complete(app, path) else None

    def quick_artifact(self, app: str) -> Path:
        """Where the quick artifact of ``app`` is (or goes), one per kind of data."""
        return self.demo_dir / "artifacts" / ("real" if self.real(app) else "samples") / app

    def artifact(self, app: str) -> Path:
        """The artifact every part of the suite uses for ``app``."""
        return self.full_artifact(app) or self.quick_artifact(app)

    @property
    def kb(self) -> Path:
        """The knowledge base: StackFAQ's threads with the real data, else the sample FAQ."""
        return self.core.data_dir / "stackfaq" / "faq_threads.jsonl" if self.real("cs") else SAMPLES / "faq.csv"

    @property
    def calibration(self) -> Path:
        """Queries with gold KB ids that calibrate the bot's confidence."""
        return self.core.data_dir / "stackfaq" / "queries_dev.jsonl" if self.real("cs") else SAMPLES / "faq_queries.csv"

    @property
    def intents_eval(self) -> Path:
        """Labelled intents for the console's evaluation page (Banking77's test set with the real data)."""
        return self.core.data_dir / "banking77" / "test_dev.csv" if self.real("cs") else SAMPLES / "intents.csv"

    @property
    def rec_data(self) -> tuple[Path, Path | None]:
        """Interactions and items of the recommender."""
        if self.real("rec"):
            return self.core.data_dir / "movielens-100k", None
        return SAMPLES / "rec_interactions.csv", SAMPLES / "rec_items.csv"

    @property
    def feeds_file(self) -> Path:
        """``samples/demo_feeds.toml`` with the feed server's port (written by ``write_feeds_file``)."""
        return self.demo_dir / "feeds.toml"

    @property
    def rec_out(self) -> Path:
        """The batch job's Parquet file."""
        return self.demo_dir / "rec" / "recommendations.parquet"

    @property
    def state_path(self) -> Path:
        """What ``prepare`` did last, to know what it can reuse."""
        return self.demo_dir / "suite.json"

    @property
    def logs_dir(self) -> Path:
        """One log file per child of ``up``."""
        return self.demo_dir / "logs"

    def preset(self, app: str) -> str:
        """The preset of the quick training of ``app`` (cs, fin): demo on the real data, demo-sample on the samples."""
        return "demo" if self.real(app) else "demo-sample"

    def cs_settings(self) -> CSSettings:
        """The customer-service settings of the suite (the quick preset, which only matters for training)."""
        return CSSettings(preset=self.preset("cs"), core=self.core, artifact=self.artifact("cs"),
                          index_dir=self.demo_dir / "cs-index", kb_path=self.kb, intents_path=self.intents_eval,
                          calibration_path=self.calibration)

    def fin_settings(self) -> FinSettings:
        """The finance settings of the suite (sample feeds, rules and prices; the quick preset, for training)."""
        return FinSettings(preset=self.preset("fin"), core=self.core, artifact=self.artifact("fin"),
                           feeds_path=self.feeds_file, rules_path=SAMPLES / "alert_rules.toml",
                           prices_dir=SAMPLES / "prices",
                           monitor=MonitorSettings(interval_seconds=self.suite.worker_interval))

    def rec_settings(self) -> RecSettings:
        """The recommender settings of the suite (the tiny preset, which only matters for training)."""
        data, items = self.rec_data
        return tiny_settings(core=self.core, data=data, items=items, artifact=self.artifact("rec"), progress=True)

    def env(self) -> dict[str, str]:
        """The environment variables that give every child (dashboards, worker, ``prepare``) this plan."""
        s = self.suite
        data, items = self.rec_data
        env = {"TRIDENT_DATA_DIR": self.core.data_dir, "TRIDENT_ARTIFACTS_DIR": self.core.artifacts_dir,
               "TRIDENT_VAR_DIR": self.core.var_dir, "TRIDENT_DATABASE_URL": self.database_url,
               "TRIDENT_SUITE_FEEDS_PORT": s.feeds_port, "TRIDENT_SUITE_WORKER_INTERVAL": s.worker_interval,
               "TRIDENT_SUITE_TRAIN": s.train,
               "CS_ARTIFACT": self.artifact("cs"), "CS_INDEX_DIR": self.demo_dir / "cs-index", "CS_KB_PATH": self.kb,
               "CS_INTENTS_PATH": self.intents_eval, "CS_CALIBRATION_PATH": self.calibration,
               "FIN_ARTIFACT": self.artifact("fin"), "FIN_FEEDS_PATH": self.feeds_file,
               "FIN_RULES_PATH": SAMPLES / "alert_rules.toml", "FIN_PRICES_DIR": SAMPLES / "prices",
               "FIN_MONITOR__INTERVAL_SECONDS": s.worker_interval,
               "REC_ARTIFACT": self.artifact("rec"), "REC_DATA": data}
        if items is not None:
            env["REC_ITEMS"] = items
        return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in env.items()}


def complete(app: str, path: Path) -> bool:
    """Whether ``path`` holds a whole artifact of ``app`` (the customer-service one needs its retrieval adapter, which
    `trident cs train` writes last)."""
    if app == "cs":
        return (path / "config.json").is_file() and (path / "adapters" / "retrieval.safetensors").is_file()
    if app == "fin":
        return (path / "config.json").is_file() or (path / "ensemble.json").is_file()
    # the recommender's config.json is written last, beside the model's and SASRec's own artifact folders
    return (path / "config.json").is_file() and (path / "model" / "model.safetensors").is_file()


def stamp(artifact: Path) -> str:
    """What identifies an artifact's weights: a hash of its config (a retrained artifact gets a new one)."""
    config = next((artifact / n for n in ("config.json", "ensemble.json") if (artifact / n).is_file()), None)
    return hashlib.sha256(config.read_bytes()).hexdigest()[:16] if config else ""


def write_feeds_file(plan: Plan) -> Path:
    """``samples/demo_feeds.toml`` pointed at the feed server's port; rewritten only when it changes."""
    text = (SAMPLES / "demo_feeds.toml").read_text(encoding="utf-8").replace(
        "http://127.0.0.1:8766/", f"http://127.0.0.1:{plan.suite.feeds_port}/")
    path = plan.feeds_file
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return path


def read_state(path: Path) -> dict:
    """What ``prepare`` did last (``{}`` when it never ran)."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def write_state(path: Path, state: dict) -> None:
    """Write ``state`` as JSON, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.replace(path)
