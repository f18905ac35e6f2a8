"""Forgetting a user of the recommender on request: what ``trident privacy forget --user`` runs.

- Their recommendations: the database's rows, and their rows in every Parquet file of the batch job (the merged
  outputs under ``<var>`` and any given); a parts folder (``OUT.parts``) that holds some is removed whole, so that the
  next run starts afresh instead of resuming a job whose users have changed.
- Their history: their sequence in every copy of the artifact (``sequences.parquet``, the settings' artifact and the
  suite's under ``<var>``), which is what ``recommend``, the dashboard and the batch job read, and their share of the
  popularity counts (``items.parquet``). A service built afterwards no longer knows them: they get the popular slate of
  an unknown user, and a re-run of the batch job leaves them out.
- The log lines that name them (``apps.common.erasure.scrub_logs``).

What stays, by design: the models' weights (trained on every history; retraining removes their influence) and the
interactions file the artifact was trained from, an input this does not rewrite: the report's notes say how many of
its rows are theirs, to be removed there before the next ``trident rec train``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from apps.common.erasure import ErasureReport, audit, check_id, checkpoint, scrub_logs
from apps.recommender.data import MIN_EVAL_LEN, DataError, atomic_write_table, read_source
from apps.recommender.settings import RecSettings
from apps.recommender.store import RecStore

SEQUENCES, ITEMS = "sequences.parquet", "items.parquet"


def _unique(paths: Iterable[Path]) -> list[Path]:
    return list({p.resolve(): p for p in paths}.values())


def artifact_dirs(settings: RecSettings) -> list[Path]:
    """The artifacts holding users' histories: the settings' one and every one under ``<var>``."""
    var = settings.core.var_dir
    found = [settings.artifact_dir, *(p.parent for p in (sorted(var.rglob(SEQUENCES)) if var.is_dir() else ()))]
    return _unique(d for d in found if (d / SEQUENCES).is_file() and (d / ITEMS).is_file())


def output_files(settings: RecSettings, outputs: Sequence[Path] = ()) -> list[Path]:
    """The Parquet files with a ``user_id`` column under ``<var>`` (the batch job's outputs), outside the artifacts and
    the parts folders, and ``outputs``."""
    var = settings.core.var_dir
    skip = {d.resolve() for d in artifact_dirs(settings)}
    found = [p for p in (sorted(var.rglob("*.parquet")) if var.is_dir() else ())
             if not p.name.startswith(".") and p.parent.resolve() not in skip
             and not any(part.endswith(".parts") for part in p.relative_to(var).parts)]
    return _unique(p for p in [*found, *map(Path, outputs)] if p.is_file() and "user_id" in _columns(p))


def _columns(path: Path) -> list[str]:
    try:
        return pq.read_schema(path).names
    except (OSError, pa.ArrowException):  # not a Parquet file, or a truncated one: not the batch job's
        return []


def parts_folders(settings: RecSettings, outputs: Sequence[Path] = ()) -> list[Path]:
    """The batch job's parts folders: under ``<var>``, and beside ``outputs``."""
    var = settings.core.var_dir
    found = [*(sorted(var.rglob("*.parts")) if var.is_dir() else ()),
             *(Path(o).with_name(Path(o).name + ".parts") for o in outputs)]
    return _unique(d for d in found if d.is_dir())


def _rows_of(path: Path, user: str) -> int:
    return int(pc.sum(pc.equal(pq.read_table(path, columns=["user_id"])["user_id"], user)).as_py() or 0)


def _forget_in_output(path: Path, user: str, report: ErasureReport) -> None:
    table = pq.read_table(path)
    mine = pc.equal(table["user_id"], user)
    n = int(pc.sum(mine).as_py() or 0)
    if n:
        report.add("parquet_rows", n, f"{path} ({n})")
        if not report.dry_run:
            atomic_write_table(table.filter(pc.invert(mine)), path)


def _forget_in_parts(folder: Path, user: str, report: ErasureReport) -> None:
    n = sum(_rows_of(p, user) for p in sorted(folder.glob("part-*.parquet")))
    if n:
        report.add("batch_part_rows", n, f"{folder} ({n}; the folder goes whole)")
        if not report.dry_run:
            shutil.rmtree(folder)


def _forget_in_artifact(folder: Path, user: str, report: ErasureReport) -> None:
    """Remove the user's sequence and their share of the popularity counts (``users`` over the whole history,
    ``train_users`` over its training part) from one artifact."""
    seqs = pq.read_table(folder / SEQUENCES)
    mine = pc.equal(seqs["user_id"], user)
    if not pc.any(mine).as_py():
        return
    history = [str(i) for i in seqs.filter(mine)["items"][0].as_py()]
    report.add("histories", 1, str(folder))
    report.add("history_items", len(history))
    if report.dry_run:
        return
    train = history[:-2] if len(history) >= MIN_EVAL_LEN else history  # data.leave_one_out's training part
    items = pq.read_table(folder / ITEMS)
    ids = np.asarray([str(i) for i in items["item_id"].to_pylist()], dtype=object)
    for column, seen in (("users", history), ("train_users", train)):
        counts = items[column].to_numpy() - np.isin(ids, seen)
        items = items.set_column(items.schema.get_field_index(column), column,
                                 pa.array(np.maximum(counts, 0), type=items.schema.field(column).type))
    # the sequence first: a crash in between leaves the counts one user high, never counted down twice
    atomic_write_table(seqs.filter(pc.invert(mine)), folder / SEQUENCES)
    atomic_write_table(items, folder / ITEMS)


def source_rows(settings: RecSettings, user: str) -> int:
    """How many interactions of ``user`` the settings' interactions file holds (0 when it cannot be read)."""
    try:
        inter, _, _ = read_source(settings.data, settings.items)
    except (DataError, OSError):
        return 0
    return int((inter["user_id"] == user).sum())


def forget_user(settings: RecSettings, user: str, actor: str = "", dry_run: bool = False,
                store: RecStore | None = None, outputs: Sequence[Path] = ()) -> ErasureReport:
    """Remove the recommender's data about ``user`` (the module's docstring says what), or on ``dry_run`` say what
    would go and change nothing; ``outputs``: batch outputs outside ``<var>``.

    Raises:
        ErasureError: ``user`` is empty.
    """
    user = check_id(user, "user")
    report = ErasureReport("forget-user", dry_run)
    own = store is None
    store = store or RecStore(settings.core.effective_database_url)
    try:
        report.add("recommendations", store.forget(user, dry_run) if store.has_table("rec_recommendations") else 0)
        report.add("parquet_rows", 0)
        for path in output_files(settings, outputs):
            _forget_in_output(path, user, report)
        report.add("batch_part_rows", 0)
        for folder in parts_folders(settings, outputs):
            _forget_in_parts(folder, user, report)
        report.add("histories", 0)
        report.add("history_items", 0)
        for folder in artifact_dirs(settings):
            _forget_in_artifact(folder, user, report)
        scrub_logs([settings.core.var_dir], [user], report)
        if n := source_rows(settings, user):
            report.notes.append(f"{settings.data} still holds {n} interactions of user {user}: an input this does not "
                                "rewrite; remove them there before the next `trident rec train`")
        if not dry_run:
            checkpoint(store.engine)
        return audit(store.engine, report, actor, settings.core.var_dir, "user", user)
    finally:
        if own:
            store.close()
