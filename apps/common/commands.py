"""What the apps' CLI modules share: adding subcommands and starting a Streamlit dashboard."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn


def command_adder(subparsers, common) -> Callable:
    """A function ``add(name, help, fn, artifact=True)`` that adds one subcommand with the common flags."""

    def add(name: str, help_: str, fn: Callable, artifact: bool = True):
        sp = common(subparsers.add_parser(name, help=help_), artifact)
        sp.set_defaults(fn=fn)
        return sp

    return add


def run_dashboard(app: Path, port: int, address: str = "0.0.0.0", env: dict[str, str] | None = None) -> NoReturn:
    """Become ``streamlit run app``, headless on ``address:port``; never returns.

    The process is replaced (``exec``) rather than waited for, so that a SIGTERM from a supervisor (docker, systemd,
    a test) reaches Streamlit itself, which shuts down cleanly, instead of killing a parent and orphaning the server.

    Args:
        app: The Streamlit script.
        port: Port to listen on.
        address: Interface to listen on (``0.0.0.0`` in a container).
        env: The environment to run with (default: this process's).
    """
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port), "--server.address", address,
           "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, cmd, dict(os.environ) if env is None else env)
