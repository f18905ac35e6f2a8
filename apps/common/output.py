"""How CLI commands print: their results, and the logs and warnings around them."""

from __future__ import annotations

import json
import logging
import warnings

from rich.console import Console
from rich.table import Table

# Warnings about a library's own future (deprecations) are for the people who upgrade it, not for a user: hidden
# unless they come from this repository's packages.
THIRD_PARTY = r"(?!core\b|apps\b|bench\b)"
DEPRECATIONS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def setup_logging(verbose: bool = False) -> None:
    """The CLI's logging: one handler, on stderr, at WARNING (DEBUG with ``verbose``); third-party deprecation
    warnings hidden. The level is set on the handler too: some libraries (bm25s) set their own logger to DEBUG when
    imported. Lightning's own handler is taken off by ``core.train`` where a Trainer is set up."""
    level = logging.DEBUG if verbose else logging.WARNING
    handler = logging.StreamHandler()
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    for category in DEPRECATIONS:
        warnings.filterwarnings("ignore", category=category, module=THIRD_PARTY)


def emit(obj, as_json: bool) -> None:
    """Print a result: JSON when asked, else a table (flat dicts) or pretty JSON."""
    if as_json:
        print(json.dumps(obj, indent=None if isinstance(obj, dict) and len(obj) < 8 else 2))
    elif isinstance(obj, dict) and all(not isinstance(v, (dict, list)) for v in obj.values()):
        table = Table(show_header=False)
        for k, v in obj.items():
            table.add_row(str(k), f"{v:.4f}" if isinstance(v, float) else str(v))
        Console().print(table)
    else:
        Console().print_json(json.dumps(obj))
