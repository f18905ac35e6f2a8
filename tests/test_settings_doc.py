""".env.example and the README's settings table are the generator's output, and every variable in them is read."""

from __future__ import annotations

import json
import os
import typing
from pathlib import Path
from typing import Any

import pytest

from apps.customer_service.settings import CSSettings
from apps.finance_sentiment.settings import FinSettings
from apps.recommender.settings import RecSettings
from apps.settings_doc import COMPOSE, SETTINGS, Variable, all_variables, choices, render_env, render_markdown
from tests.composefile import ENV_EXAMPLE, ROOT, read_env_file

PREFIXES = tuple(cls.model_config["env_prefix"] for cls, _ in SETTINGS)


@pytest.fixture
def clean_env(monkeypatch):
    """No TRIDENT_/CS_/FIN_/REC_ variable of the machine running the tests leaks into the settings."""
    for name in list(os.environ):
        if name.upper().startswith(PREFIXES):
            monkeypatch.delenv(name)
    return monkeypatch


def test_env_example_is_the_generators_output():
    assert ENV_EXAMPLE.read_text(encoding="utf-8") == render_env(), \
        "regenerate it: trident settings --format env > .env.example"


def test_settings_reference_holds_the_generated_settings_table():
    assert render_markdown() in (ROOT / "docs" / "settings.md").read_text(encoding="utf-8"), \
        "paste `trident settings --format markdown` into docs/settings.md"


def test_env_example_lists_every_variable_once_and_nothing_else():
    names = [line.partition("=")[0] for line in ENV_EXAMPLE.read_text().splitlines()
             if line and not line.startswith("#")]
    expected = [v.name for v in all_variables()] + [name for name, _, _ in COMPOSE]
    assert names == expected
    assert len(set(names)) == len(names)
    assert {"TRIDENT_DATABASE_URL", "CS_RETRIEVAL__TOP_K", "FIN_MONITOR__INTERVAL_SECONDS", "REC_BATCH__K",
            "REC_TRAIN__NUM_NODES", "POSTGRES_PASSWORD"} <= set(names)


def test_env_example_holds_no_path_of_this_machine():
    text = ENV_EXAMPLE.read_text()
    assert str(ROOT) not in text and str(ROOT.parent) not in text


def test_env_example_values_are_the_defaults(clean_env):
    """Every value of .env.example, set in the environment, gives the same settings as an empty environment."""
    defaults = {cls: cls() for cls, _ in SETTINGS}
    for name, value in read_env_file(ENV_EXAMPLE).items():
        clean_env.setenv(name, value)
    for cls, _ in SETTINGS:
        assert cls() == defaults[cls], cls.__name__


# values a field's own check restricts further than its type
OTHER_VALUES = {"FIN_QUEUE__CRON": ("*/5 * * * *", "*/5 * * * *"), "FIN_QUEUE__RECOVER_SECONDS": ("12", 12)}


def _upper_bound(v: Variable) -> float:
    """The largest value the field of ``v`` allows (``le``), infinity without a bound."""
    model = v.owner
    for part in v.path[:-1]:
        model = model.model_fields[part].annotation
    bounds = [m.le for m in model.model_fields[v.path[-1]].metadata if getattr(m, "le", None) is not None]
    return min(bounds, default=float("inf"))


def _other_value(v: Variable) -> tuple[str, Any]:
    """A valid value unlike the default: (as the environment spells it, as the settings hold it)."""
    if v.name in OTHER_VALUES:
        return OTHER_VALUES[v.name]
    args = typing.get_args(v.annotation)
    if choices(v.annotation):
        pick = next(c for c in choices(v.annotation) if c != v.default)
        return pick, pick
    if any(typing.get_origin(a) is tuple and Path in typing.get_args(a) for a in (v.annotation, *args)):
        paths = [f"/srv/trident-test/{v.name.lower()}/a", f"/srv/trident-test/{v.name.lower()}/b"]
        return json.dumps(paths), tuple(map(Path, paths))
    if v.annotation is Path or Path in args:
        path = Path("/srv/trident-test") / v.name.lower()
        return str(path), path
    if isinstance(v.default, bool):
        return str(not v.default).lower(), not v.default
    if bool in args:  # bool | None, unset by default
        return "true", True
    if v.annotation is int or int in args:  # also `int | str` (devices): a digit string is a count
        value = (v.default if isinstance(v.default, int) else 1) + 1
        if value > _upper_bound(v):  # a default at its field's upper bound: one below it
            value -= 2
        return str(value), value
    if isinstance(v.default, float):
        return str(v.default + 0.05), v.default + 0.05
    if isinstance(v.default, tuple):
        return json.dumps([0.5, 0.25]), (0.5, 0.25)
    if v.name.endswith("_TZ"):  # a time zone the settings know
        return "Europe/London", "Europe/London"
    if isinstance(v.default, str):
        value = "sqlite:////srv/trident-test/x.db" if v.name.endswith("DATABASE_URL") else v.default + "-x"
        return value, value
    raise AssertionError(f"no test value for {v.name}: {v.annotation}")


@pytest.mark.parametrize("var", all_variables(), ids=lambda v: v.name)
def test_each_variable_is_read_by_its_settings(var, clean_env):
    text, expected = _other_value(var)
    assert expected != var.default
    clean_env.setenv(var.name, text)
    value: Any = var.owner()
    for part in var.path:
        value = getattr(value, part)
    assert value == expected


def test_trident_variables_reach_the_apps_settings(clean_env):
    """The apps' settings read the shared ones through their ``core`` field."""
    clean_env.setenv("TRIDENT_ARTIFACTS_DIR", "/srv/trident-test/artifacts")
    for cls, app in ((CSSettings, "cs"), (FinSettings, "fin"), (RecSettings, "rec")):
        assert cls().artifact_dir == Path("/srv/trident-test/artifacts") / app


def test_cli_prints_both_formats(capsys):
    from apps.cli import main

    assert main(["settings", "--format", "env"]) == 0
    assert capsys.readouterr().out == render_env()
    assert main(["settings", "--format", "markdown"]) == 0
    assert capsys.readouterr().out == render_markdown()
