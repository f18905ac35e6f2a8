"""Every setting as an environment variable: ``trident settings --format env`` writes ``.env.example``,
``--format markdown`` the table of docs/settings.md (a test compares both with the committed files).

A default that is a path of this checkout is written empty (shown symbolically in the comment): an absolute path of
one machine means nothing in a container or another clone, and every settings class ignores empty variables.
"""

from __future__ import annotations

import json
import sys
import textwrap
import typing
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic_settings import BaseSettings

from apps.common.settings import REPO_ROOT, CoreSettings, CoreTrainSettings
from apps.common.users import AuthSettings
from apps.customer_service.settings import CSSettings
from apps.finance_sentiment.settings import FinSettings
from apps.recommender.settings import RecSettings
from apps.suite import SuiteSettings

# (class, heading) in the order they are documented; the class's own env_prefix names its variables
SETTINGS: tuple[tuple[type[BaseSettings], str], ...] = (
    (CoreSettings, "Shared by every app (paths, the database, how the models serve)"),
    (CoreTrainSettings, "The core's trainings: `trident core finetune / train-images / pretrain / artifacts`"),
    (AuthSettings, "Sign-in to the dashboards (`apps/common/users.py`; accounts: `trident users`)"),
    (CSSettings, "Customer service (`apps/customer_service/settings.py`)"),
    (FinSettings, "Finance sentiment (`apps/finance_sentiment/settings.py`)"),
    (RecSettings, "Recommender (`apps/recommender/settings.py`)"),
    (SuiteSettings, "The suite on one machine: `trident suite up` / `make demo` (`apps/suite/`)"),
)

# Variables that only docker-compose.yml reads (interpolated there), with their defaults.
COMPOSE: tuple[tuple[str, str, str], ...] = (
    ("TRIDENT_IMAGE", "trident:latest", "Image built from the Dockerfile and run by every Trident service."),
    ("TRIDENT_TORCH_INDEX", "https://download.pytorch.org/whl/cpu",
     "Package index the image installs torch from (the CPU build)."),
    ("TRIDENT_GPU_IMAGE", "trident:gpu",
     "Image of `trainer-gpu` (a CUDA build of torch), built from the same Dockerfile."),
    ("TRIDENT_GPU_TORCH_INDEX", "https://download.pytorch.org/whl/cu128",
     "Package index of the CUDA torch build in the `gpu` profile's image."),
    ("TRIDENT_GPU_COUNT", "all", "GPUs reserved for `trainer-gpu` (a count, or `all`)."),
    ("POSTGRES_USER", "trident", "PostgreSQL user created on the first start."),
    ("POSTGRES_PASSWORD", "trident", "Its password (change it before exposing the database)."),
    ("POSTGRES_DB", "trident", "The database the services use."),
    ("POSTGRES_HOST_PORT", "5433", "Host port (on 127.0.0.1) of the PostgreSQL service."),
    ("TRIDENT_PUBLISH_ADDRESS", "127.0.0.1",
     "Host interface the dashboards' ports are published on (0.0.0.0: every interface; put TLS in front)."),
    ("CS_CONSOLE_PORT", "8501", "Host port of the support console."),
    ("FIN_DASHBOARD_PORT", "8502", "Host port of the finance dashboard."),
    ("REC_DASHBOARD_PORT", "8503", "Host port of the recommender dashboard."),
)


@dataclass(frozen=True)
class Variable:
    """One environment variable of a settings class."""

    name: str                   # e.g. REC_TRAIN__MAX_EPOCHS
    owner: type[BaseSettings]   # the class that reads it
    path: tuple[str, ...]       # attribute path from the settings object, e.g. ("train", "max_epochs")
    annotation: Any             # the field's type
    default: Any                # the field's default value
    description: str


def variables(cls: type[BaseSettings]) -> list[Variable]:
    """The environment variables of ``cls``, one per leaf field in declaration order, nested models flattened with
    ``__``; a nested ``BaseSettings`` field (``core``) is left out: it reads its own prefix (``TRIDENT_``)."""
    prefix = cls.model_config.get("env_prefix", "")
    delimiter = cls.model_config.get("env_nested_delimiter") or "__"
    out: list[Variable] = []

    def walk(model: type[BaseModel], path: tuple[str, ...]) -> None:
        for name, field in model.model_fields.items():
            sub = field.annotation
            if isinstance(sub, type) and issubclass(sub, BaseModel):
                if not issubclass(sub, BaseSettings):
                    walk(sub, (*path, name))
                continue
            default = field.get_default(call_default_factory=True)
            env = (prefix + delimiter.join((*path, name))).upper()
            out.append(Variable(env, cls, (*path, name), sub, default, field.description or ""))

    walk(cls, ())
    return out


def all_variables() -> list[Variable]:
    """The variables of every settings class in ``SETTINGS``."""
    return [v for cls, _ in SETTINGS for v in variables(cls)]


def env_value(value: Any) -> str:
    """A default as the environment would spell it; a path of this checkout (or none) is empty: the default."""
    if value is None or (isinstance(value, Path) and value.is_absolute()):
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return json.dumps(list(value))
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def shown_default(value: Any) -> str:
    """A default for people to read: paths relative to the checkout (``<repo>/samples/faq.csv``)."""
    if value is None:
        return "unset"
    if value == "":
        return "empty"
    if isinstance(value, Path) and value.is_absolute():
        for root, shown in ((REPO_ROOT, "<repo>"), (REPO_ROOT.parent, "<repo>/..")):
            if value.is_relative_to(root):
                return f"{shown}/{value.relative_to(root).as_posix()}"
        return value.as_posix()
    return env_value(value)


def choices(annotation: Any) -> tuple[str, ...]:
    """The allowed values of a ``Literal`` field (also inside ``X | None``), else ()."""
    if typing.get_origin(annotation) is Literal:
        return tuple(str(a) for a in typing.get_args(annotation))
    return next((choices(a) for a in typing.get_args(annotation) if typing.get_origin(a) is Literal), ())


def _explained(v: Variable) -> str:
    return v.description + (f" One of: {', '.join(choices(v.annotation))}." if choices(v.annotation) else "")


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, width=118, initial_indent="# ", subsequent_indent="# ", break_on_hyphens=False)


def render_env() -> str:
    """The text of ``.env.example``: every variable with its default and a comment."""
    lines = ["# Every Trident setting with its default; generated by `trident settings --format env` (do not edit).",
             "# Copy to `.env` and change what you need: docker compose reads `.env` and gives these variables to",
             "# every Trident service. An empty value means the built-in default (shown in the comment).", ""]
    for cls, heading in SETTINGS:
        lines += [f"# ---- {heading}", ""]
        for v in variables(cls):
            note = _explained(v)
            if isinstance(v.default, Path) and v.default.is_absolute():
                note += f" Default: {shown_default(v.default)}."
            lines += [*_comment(note), f"{v.name}={env_value(v.default)}", ""]
    lines += ["# ---- docker-compose.yml only", ""]
    for name, default, description in COMPOSE:
        lines += [*_comment(description), f"{name}={default}", ""]
    return "\n".join(lines[:-1]) + "\n"


def render_markdown() -> str:
    """The settings reference table (docs/settings.md): variable, default, meaning."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for cls, heading in SETTINGS:
        lines.append(f"| **{cell(heading)}** | | |")
        for v in variables(cls):
            shown = shown_default(v.default)
            shown = shown if v.default is None or v.default == "" else f"`{cell(shown)}`"
            lines.append(f"| `{v.name}` | {shown} | {cell(_explained(v))} |")
    lines.append("| **docker-compose.yml only** | | |")
    for name, default, description in COMPOSE:
        lines.append(f"| `{name}` | `{cell(default)}` | {cell(description)} |")
    return "\n".join(lines) + "\n"


RENDERERS = {"env": render_env, "markdown": render_markdown}


def register(sub) -> None:
    """Add ``trident settings`` to the CLI."""
    sp = sub.add_parser("settings", help="every setting as an environment variable (.env.example, docs/settings.md)")
    sp.add_argument("--format", choices=sorted(RENDERERS), default="env",
                    help="env: the text of .env.example; markdown: the table of docs/settings.md")
    sp.set_defaults(fn=lambda args: sys.stdout.write(RENDERERS[args.format]()))
