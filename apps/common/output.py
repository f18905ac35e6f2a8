"""How CLI commands print their results."""

from __future__ import annotations

import json


def emit(obj, as_json: bool) -> None:
    """Print a result: JSON when asked, else a table (flat dicts) or pretty JSON."""
    if as_json:
        print(json.dumps(obj, indent=None if isinstance(obj, dict) and len(obj) < 8 else 2))
    else:
        from rich.console import Console
        from rich.table import Table

        if isinstance(obj, dict) and all(not isinstance(v, (dict, list)) for v in obj.values()):
            table = Table(show_header=False)
            for k, v in obj.items():
                table.add_row(str(k), f"{v:.4f}" if isinstance(v, float) else str(v))
            Console().print(table)
        else:
            Console().print_json(json.dumps(obj))
