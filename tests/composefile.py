"""Reading docker-compose.yml and .env files as docker compose does, for the tests (there is no Docker engine here)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"

_BODY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])(.*))?", re.S)


def read_env_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines of an env file (comments and blank lines skipped; values taken literally)."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"{path.name}: not NAME=value: {line!r}"
            out[name.strip()] = value
    return out


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation: ``${VAR}``, ``${VAR:-default}`` (also when empty), ``${VAR-default}`` (when unset),
    nested defaults, and ``$$`` for a literal ``$``."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            j, depth = i + 2, 1
            while depth:  # find the matching brace: defaults may hold ${...} themselves
                if text.startswith("${", j):
                    depth, j = depth + 1, j + 2
                    continue
                depth -= text[j] == "}"
                j += 1
            name, op, default = _BODY.fullmatch(text[i + 2:j - 1]).groups()
            value = env.get(name)
            if (op == ":-" and not value) or (op == "-" and value is None):
                value = interpolate(default, env)
            out.append(value or "")
            i = j
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def variables_used(text: str) -> set[str]:
    """Names of the variables a compose file interpolates."""
    return set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", text))


def resolve(node: Any, env: Mapping[str, str]) -> Any:
    """Every string of a parsed compose file interpolated with ``env``."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(x, env) for x in node]
    if isinstance(node, dict):
        return {k: resolve(v, env) for k, v in node.items()}
    return node


def load_compose(env: Mapping[str, str] | None = None) -> dict:
    """docker-compose.yml parsed (YAML anchors and merge keys applied), interpolated with ``env`` (default: the
    defaults of .env.example)."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return resolve(raw, read_env_file(ENV_EXAMPLE) if env is None else env)
