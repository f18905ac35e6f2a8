"""What the apps' CLI modules share: adding subcommands and starting a Streamlit dashboard."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


def command_adder(subparsers, common) -> Callable:
    """A function ``add(name, help, fn, artifact=True)`` that adds one subcommand with the common flags."""

    def add(name: str, help_: str, fn: Callable, artifact: bool = True):
        sp = common(subparsers.add_parser(name, help=help_), artifact)
        sp.set_defaults(fn=fn)
        return sp

    return add


def run_dashboard(app: Path, port: int, address: str = "0.0.0.0") -> None:
    """Run ``streamlit run app`` headless on ``address:port`` until it stops; exit with its status."""
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port), "--server.address", address,
           "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    raise SystemExit(subprocess.call(cmd))
