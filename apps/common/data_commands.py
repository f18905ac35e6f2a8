"""``trident data {list,fetch}``: the public data sets ``trident data fetch`` can download into ``TRIDENT_DATA_DIR``.

A ``FetchError`` prints one line ``error: ...`` and exits with status 2 here, as ``apps/cli.py`` does for user errors,
so that an offline fetch answers at once without importing the apps' error types (and torch with them).
"""

from __future__ import annotations

import math
import os
import re
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from apps.common.commands import flag, settings_flags, settings_from_args
from apps.common.data_fetch import MIRROR_ENV, REGISTRY, FetchError, fetch, is_fetched, source_url
from apps.common.output import emit
from apps.common.settings import CoreSettings


def _dest(args) -> Path:
    return settings_from_args(CoreSettings, args).data_dir


def data_list(args) -> None:
    """One row per registry entry: whether it is present under the data folder, what is pinned, the licence."""
    dest = _dest(args)
    rows = []
    for ds in REGISTRY.values():
        folder = dest / ds.name
        present = "fetched" if is_fetched(folder) else "yes" if folder.is_dir() else "no"
        rows.append({"name": ds.name, "present": present,
                     "downloads_pinned": f"{sum(bool(d.sha256 or d.md5) for d in ds.downloads)}/{len(ds.downloads)}",
                     "files_pinned": len(ds.pins), "licence": re.split(r"[:;]", ds.licence, maxsplit=1)[0],
                     "title": ds.title})
    if args.json:
        emit({"dest": str(dest), "datasets": rows}, True)
        return
    table = Table(title=f"data sets (folder: {dest})")
    for col in ("name", "present", "pinned downloads", "pinned files", "licence"):
        table.add_column(col, no_wrap=col == "name")
    for r in rows:
        table.add_row(r["name"], r["present"], r["downloads_pinned"], str(r["files_pinned"]), r["licence"])
    Console().print(table)


def _overrides(values: list[str] | None, ds) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values or []:
        name, sep, digest = v.rpartition("=")
        if not sep:
            if len(ds.downloads) != 1:
                raise FetchError(f"--sha256 {v}: {ds.name} has {len(ds.downloads)} downloads; write FILE=SHA256")
            name = ds.downloads[0].filename
        if not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
            raise FetchError(f"--sha256 {v}: not a SHA-256 (64 hex digits)")
        out[name] = digest.lower()
    return out


def data_fetch(args) -> None:
    """Print the licence, download with a progress bar, and report what was checked."""
    ds = REGISTRY[args.name]
    mirror = args.mirror or os.environ.get(MIRROR_ENV) or None
    try:
        overrides = _overrides(args.sha256, ds)
        if not (math.isfinite(args.timeout) and args.timeout > 0):
            raise FetchError(f"--timeout: must be a number of seconds > 0, not {args.timeout}")
        print(f"{ds.name}: {ds.title}\nlicence: {ds.licence}", file=sys.stderr)
        if ds.note:
            print(f"note: {ds.note}", file=sys.stderr)
        for d in ds.downloads:
            print(f"source: {source_url(ds, d, mirror)}", file=sys.stderr)
        # a rich bar per file on stderr (stdout stays the result, e.g. for --json); transient: gone when done
        bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                       console=Console(stderr=True), transient=True)
        tasks: dict[str, int] = {}

        def progress(name: str, done: int, total: int | None) -> None:
            if bar.console.is_terminal:
                if not tasks:
                    bar.start()  # only once bytes arrive: an offline fetch prints its error line and nothing else
                if name not in tasks:
                    tasks[name] = bar.add_task(name, total=total)
                bar.update(tasks[name], completed=done)

        try:
            result = fetch(ds, _dest(args), mirror=mirror, force=args.force, sha256=overrides, progress=progress,
                           timeout=args.timeout)
        finally:
            if tasks:
                bar.stop()
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    emit({"name": ds.name, "path": str(result.path), "files": len(result.files),
          "checked": ", ".join(result.checked) or "none",
          "unpinned": ", ".join(f"{k} (sha256 {v})" for k, v in result.unpinned.items()) or "none"}, args.json)


def register(sub) -> None:
    """Add ``trident data {list,fetch}`` to the CLI's subcommands."""
    data = sub.add_parser("data", help="public data sets: list them, fetch one into TRIDENT_DATA_DIR")
    ds = data.add_subparsers(dest="command", required=True)

    def common(sp, fn):
        settings_flags(sp, CoreSettings, [flag("data_dir", "--dest", "--data-dir")])
        sp.add_argument("--json", action="store_true", help="print JSON")
        sp.set_defaults(fn=fn)
        return sp

    common(ds.add_parser("list", help="the data sets `data fetch` knows, and which are present"), data_list)
    sp = common(ds.add_parser("fetch", help="download a data set from its official source, check its checksums and "
                                            "unpack it into the TRIDENT_DATA_DIR layout"), data_fetch)
    sp.add_argument("name", choices=list(REGISTRY), help="the data set (its folder name)")
    sp.add_argument("--force", action="store_true", help="replace a copy an earlier fetch made")
    sp.add_argument("--mirror", help=f"base URL serving MIRROR/NAME/FILE instead of the official URLs "
                                     f"(env {MIRROR_ENV})")
    sp.add_argument("--sha256", action="append", metavar="[FILE=]HEX",
                    help="the SHA-256 you expect for a download or an unpacked file (overrides a pin; repeat)")
    sp.add_argument("--timeout", type=float, default=60.0, help="seconds without data before giving up")
