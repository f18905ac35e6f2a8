"""What the CLI modules share: flags derived from the settings' fields (type, choices, help, environment variable),
settings built from the flags given (a flag beats the environment, which beats the default), subcommands, and
starting a Streamlit dashboard.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, TypeVar

from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from pydantic_settings import BaseSettings

from apps.common.settings import merge

S = TypeVar("S", bound=BaseSettings)
_PORT = TypeAdapter(Annotated[int, Field(ge=1, le=65535)])

# a field's value in the argparse namespace is kept under "<class name>:<path>" (e.g. "RecSettings:batch.k")
_NAMES = "_settings_flag_names"  # namespace default: {"<class name>:<path>": "--flag"}, for error messages


class CLIError(Exception):
    """An error to show the user as one line."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` (and, through ``add_subparsers``, every subcommand's) whose usage errors are one line
    like every other error of the CLI: ``error: <what argparse says> (see `trident rec recommend --help`)``, exit
    status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


@dataclass(frozen=True)
class Flag:
    """A settings field as a flag: ``path`` (dotted, e.g. ``train.max_epochs``), its option strings (default:
    ``--`` and the path's last part with dashes) and argparse keywords that replace the derived ones."""

    path: str
    names: tuple[str, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


def flag(path: str, *names: str, **kwargs: Any) -> Flag:
    """A :class:`Flag`, e.g. ``flag("train.max_epochs", "--epochs")``."""
    return Flag(path, names, kwargs)


def _resolve(cls: type[BaseSettings], path: str) -> tuple[Any, str]:
    """The field at ``path`` of ``cls`` and its environment variable (a nested ``BaseSettings`` reads its own
    prefix, as ``core`` reads ``TRIDENT_``)."""
    prefix, parts, model, info = cls.model_config.get("env_prefix", ""), [], cls, None
    for name in path.split("."):
        info = model.model_fields[name]
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseSettings):
            prefix, parts, model = sub.model_config.get("env_prefix", ""), [], sub
            continue
        parts.append(name)
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            model = sub
    return info, (prefix + "__".join(parts)).upper()


def _plain(annotation: Any) -> Any:
    """``X`` of ``X | None``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    return args[0] if union and len(args) == 1 else annotation


def settings_flags(parser: argparse.ArgumentParser, cls: type[BaseSettings],
                   fields: Iterable[str | Flag]) -> argparse.ArgumentParser:
    """Add one flag per field of ``cls`` in ``fields`` (paths or :class:`Flag`); every flag defaults to "not given".

    A bool becomes ``--x / --no-x``, a ``Literal`` a choice, a tuple a list of values; anything else is passed to the
    settings as text, which they parse and check (:func:`settings_from_args`).
    """
    names = dict(parser.get_default(_NAMES) or {})
    for f in fields:
        f = f if isinstance(f, Flag) else Flag(f)
        info, env = _resolve(cls, f.path)
        kind = _plain(info.annotation)
        options = f.names or ("--" + f.path.rsplit(".", 1)[-1].replace("_", "-"),)
        default = info.get_default(call_default_factory=True)
        shown = "" if default in (None, "") or isinstance(default, Path) else f"; default {default}"
        kw: dict[str, Any] = {"dest": f"{cls.__name__}:{f.path}", "default": None,
                              "help": f"{info.description or ''} (env {env}{shown})".replace("%", "%%")}
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is Literal:
            kw["choices"] = [str(a) for a in typing.get_args(kind)]
        else:
            kw["metavar"] = f.path.rsplit(".", 1)[-1].upper()
            if typing.get_origin(kind) is tuple:
                kw["nargs"] = "+"
        kw.update(f.kwargs)
        parser.add_argument(*options, **kw)
        names[kw["dest"]] = options[0]
    parser.set_defaults(**{_NAMES: names})
    return parser


def given(cls: type[BaseSettings], args: argparse.Namespace) -> dict[str, Any]:
    """The flags of ``cls`` that were given: ``{path: value}``."""
    head = cls.__name__ + ":"
    return {k[len(head):]: v for k, v in vars(args).items() if k.startswith(head) and v is not None}


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}``."""
    out: dict[str, Any] = {}
    for path, value in flat.items():
        *parents, last = path.split(".")
        functools.reduce(lambda node, p: node.setdefault(p, {}), parents, out)[last] = value
    return out


def _message(err: Mapping[str, Any]) -> str:
    ctx, kind = err.get("ctx") or {}, err["type"]
    bounds = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"), "less_than_equal": ("<=", "le"),
              "less_than": ("<", "lt")}
    if kind in bounds:
        op, key = bounds[kind]
        return f"must be {op} {ctx[key]}"
    msg = str(err["msg"]).removeprefix("Value error, ")
    msg = msg[:1].lower() + msg[1:]
    return f"{msg}, not {err['input']!r}" if isinstance(err.get("input"), str) else msg


def error_line(exc: BaseException) -> str:
    """What an error the user can fix shows after ``error: ``, on one line: a pydantic ``ValidationError`` raised
    outside the settings (a model config built from its parts, a file's record) as ``Model.field: message`` of its
    first error; any other message with its line breaks turned into spaces."""
    if isinstance(exc, ValidationError) and exc.errors():
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        return f"{exc.title}{'.' + where if where else ''}: {_message(err)}"
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _build(cls: type[S], values: dict[str, Any], args: argparse.Namespace, root: type[BaseSettings],
           base: str = "") -> S:
    values = dict(values)
    for name, info in cls.model_fields.items():  # a nested BaseSettings is built by its own class (its own prefix)
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseSettings) and isinstance(values.get(name, {}), dict):
            values[name] = _build(sub, values.get(name, {}), args, root, f"{base}{name}.")
    try:
        return cls(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        if not err["loc"]:
            raise CLIError(_message(err)) from None
        parts = (base + ".".join(str(p) for p in err["loc"])).split(".")
        for n in range(len(parts), 0, -1):  # the field, then what is inside it (an item of a list: [0])
            try:
                path, env = ".".join(parts[:n]), _resolve(root, ".".join(parts[:n]))[1]
                env += "".join(f"[{p}]" for p in parts[n:])
                break
            except (KeyError, AttributeError):
                continue
        else:  # not a field path (a model's own check): name what pydantic names
            path = env = ".".join(parts)
        dest = f"{root.__name__}:{path}"
        option = (getattr(args, _NAMES, None) or {}).get(dest)
        if option and getattr(args, dest, None) is not None:
            raise CLIError(f"{option}: {_message(err)} ({env})") from None
        raise CLIError(f"{env}: {_message(err)}") from None


def settings_from_args(cls: type[S], args: argparse.Namespace, **defaults: Any) -> S:
    """``cls`` from the flags of ``cls`` that were given (:func:`settings_flags`), then the environment, then the
    defaults; ``defaults`` (nested dicts) sit between the environment and the flags.

    Raises:
        CLIError: A value the settings refuse, as one line: ``--k: must be >= 1 (REC_BATCH__K)``.
    """
    return _build(cls, merge(defaults, _nest(given(cls, args))), args, cls)


def settings_env(cls: type[BaseSettings], args: argparse.Namespace) -> dict[str, str]:
    """The given flags of ``cls`` as the environment variables that carry them (a child process, e.g. a dashboard,
    reads its settings from its environment); paths absolute."""
    out = {}
    for path, value in given(cls, args).items():
        info, env = _resolve(cls, path)
        if _plain(info.annotation) is Path:
            value = Path(value).resolve()
        out[env] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def command_adder(subparsers, cls: type[BaseSettings], shared: Iterable[str | Flag] = ("core.data_dir",
                                                                                        "core.artifacts_dir")):
    """A function ``add(name, help, fn, *fields)`` that adds one subcommand with ``--json``, the ``shared`` flags of
    settings ``cls`` and the flags of its own ``fields``."""
    shared = tuple(shared)

    def add(name: str, help_: str, fn: Callable, *fields: str | Flag) -> argparse.ArgumentParser:
        sp = subparsers.add_parser(name, help=help_)
        sp.add_argument("--json", action="store_true", help="print JSON")
        settings_flags(sp, cls, (*shared, *fields))
        sp.set_defaults(fn=fn)
        return sp

    return add


def add_dashboard(add: Callable[..., argparse.ArgumentParser], cls: type[BaseSettings], name: str, help_: str,
                  app: Path, port: int, *fields: str | Flag) -> None:
    """Add (with ``add`` of :func:`command_adder`) the subcommand ``name`` that starts the Streamlit script ``app`` on
    ``--port`` (default ``port``), with the given flags of settings ``cls`` in its environment. The settings (flags
    and environment) and the port are checked first: a bad value is one ``error:`` line here, not a report in the
    browser or a server on a port nobody asked for."""

    def start(args: argparse.Namespace) -> None:
        settings_from_args(cls, args)
        try:
            chosen = _PORT.validate_python(args.port)
        except ValidationError as exc:
            raise CLIError(f"--port: {_message(exc.errors()[0])}") from None
        run_dashboard(app, chosen, args.address, settings_env(cls, args))

    sp = add(name, help_, start, *fields)
    sp.add_argument("--port", default=port, help=f"port to listen on, 1-65535 (default {port})")
    sp.add_argument("--address", default="127.0.0.1",
                    help="interface to listen on (default: this machine only; 0.0.0.0: every interface)")


def run_dashboard(app: Path, port: int, address: str = "127.0.0.1", env: dict[str, str] | None = None) -> NoReturn:
    """Become ``streamlit run app``, headless on ``address:port``, with ``env`` on top of this environment; never
    returns. The process is replaced (``exec``), not waited for, so that a SIGTERM from a supervisor (docker,
    systemd, a test) reaches Streamlit itself, which shuts down cleanly, instead of orphaning the server."""
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port), "--server.address", address,
           "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, cmd, {**os.environ, **(env or {})})
