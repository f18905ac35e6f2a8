"""Settings shared by every app: where data and artifacts live, and the database URL.

Built at the edge (the CLI, a dashboard's ``resources.py``, a test) and passed down. Values come from keyword
arguments, then the environment (prefix ``TRIDENT_``), then the defaults below.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class CoreSettings(BaseSettings):
    """Paths and services of one Trident installation."""

    model_config = SettingsConfigDict(env_prefix="TRIDENT_", env_nested_delimiter="__", frozen=True, extra="ignore",
                                      env_ignore_empty=True)

    data_dir: Path = Field(REPO_ROOT.parent / "shared" / "datasets",
                           description="Folder laid out like ../shared/datasets (real data sets).")
    artifacts_dir: Path = Field(REPO_ROOT / "artifacts", description="Trained model artifacts.")
    var_dir: Path = Field(REPO_ROOT / "var", description="Runtime state: SQLite file, indexes, logs.")
    database_url: str = Field("", description="SQLAlchemy URL; empty means SQLite under var_dir.")

    @property
    def effective_database_url(self) -> str:
        """The database to use: ``database_url``, or the SQLite file under ``var_dir``."""
        return self.database_url or f"sqlite:///{self.var_dir / 'trident.db'}"
