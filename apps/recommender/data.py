"""Interactions and items -> per-user chronological sequences -> the leave-one-out split.

Formats (``load_data`` picks one from what the path holds): a generic interactions file, CSV or Parquet, with
``user_id,item_id,timestamp[,rating]`` (Unix seconds or ISO-8601) plus an optional items file
``item_id,title[,genres]`` (genres ``|``-separated), or a folder holding ``[rec_]interactions.*`` and ``[rec_]items.*``;
a MovieLens 100k folder (``u.data``, ``u.item``, ``u.genre``); a MovieLens 1M folder (``ratings.dat[.gz]``,
``movies.dat``). The protocol (implicit feedback, first occurrence of a user-item pair, stable chronological order,
leave-one-out for users with >= 3 interactions) is in docs/recommender.md. The catalogue is the items file (an
interaction with an unlisted item is an error), else the interacted items; item indices are 1..N in natural id order,
0 is padding. Every problem with a file is a ``DataError`` with one line that names the file (and line).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                 "War", "Western")
MIN_EVAL_LEN = 3  # a validation target, a test target and at least one item of history


class DataError(ValueError):
    """An interactions or items file is missing, truncated or malformed, or the two do not agree."""


def natural_key(value: str) -> tuple[int, int, str]:
    """Sort key that puts numeric ids in numeric order (2 before 10) and other ids after them, as text."""
    s = str(value)
    return (0, int(s), "") if s.isdigit() and len(s) < 19 else (1, 0, s)


# ---------------------------------------------------------------------------------------------------------- readers
def atomic_write_table(table: pa.Table, path: Path) -> None:
    """Write a Parquet file so that ``path`` either does not exist or is complete."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _check_file(path: Path) -> Path:
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    return path


def _read_table(path: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> pd.DataFrame:
    """A CSV or Parquet file as strings, with its required columns checked."""
    path = _check_file(path)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(path)
            df = df.astype({c: str for c in df.columns if c in ("user_id", "item_id")})
        else:
            df = pd.read_csv(path, dtype=str, keep_default_na=False, on_bad_lines="error", encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path} is empty") from exc
    except pd.errors.ParserError as exc:
        raise DataError(f"{path} is malformed: {' '.join(str(exc).split())}") from exc
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise DataError(f"{path} is not a readable Parquet file (truncated?): {' '.join(str(exc).split())[:200]}") \
            from exc
    df.columns = [str(c).strip().lower() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"{path}: needs columns {list(required)} (optional {list(optional)}); missing {missing}, "
                        f"found {list(df.columns)}")
    if df.empty:
        raise DataError(f"{path}: no rows")
    return df


def _line_of(mask: np.ndarray, header: bool = True) -> int:
    """1-based file line of the first row where ``mask`` is True (CSV with a header: row 0 is line 2)."""
    return int(np.flatnonzero(mask)[0]) + (2 if header else 1)


def _to_seconds(values: pd.Series, path: Path, header: bool = True) -> np.ndarray:
    """Timestamps as int64 Unix seconds: integers (or floats) as they are, ISO-8601 text parsed as UTC."""
    s = values.astype(str).str.strip()
    empty = (s == "") | (s.str.lower().isin(["nan", "none", "null"]))
    if empty.any():
        raise DataError(f"{path}:{_line_of(empty.to_numpy(), header)}: missing timestamp (truncated file?)")
    num = pd.to_numeric(s, errors="coerce")
    if num.notna().all():
        if not np.isfinite(num.to_numpy(dtype=float)).all():
            raise DataError(f"{path}: timestamps must be finite")
        return num.to_numpy(dtype=float).astype(np.int64)
    dt = pd.to_datetime(s, errors="coerce", utc=True, format="ISO8601")
    bad = dt.isna().to_numpy()
    if bad.any():
        raise DataError(f"{path}:{_line_of(bad, header)}: timestamp {s[bad].iloc[0]!r} is neither Unix seconds nor "
                        "ISO-8601")
    # (whatever the resolution pandas picked for the parsed datetimes) seconds since the epoch
    return ((dt - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)


def _clean_ids(df: pd.DataFrame, cols: tuple[str, ...], path: Path, header: bool = True) -> pd.DataFrame:
    for c in cols:
        df[c] = df[c].astype(str).str.strip()
        bad = (df[c] == "") | (df[c].str.lower() == "nan")
        if bad.any():
            raise DataError(f"{path}:{_line_of(bad.to_numpy(), header)}: empty {c} (truncated file?)")
    return df


def read_interactions(path: str | Path) -> pd.DataFrame:
    """Interactions from a CSV or Parquet file with ``user_id,item_id,timestamp[,rating]``: a frame with ``user_id``,
    ``item_id`` (str), ``timestamp`` (int64 seconds), ``rating`` (float, NaN where absent) and ``row`` (the position in
    the file, which breaks timestamp ties). A bad file or value is a ``DataError``."""
    path = Path(path)
    return _typed_interactions(_read_table(path, ("user_id", "item_id", "timestamp"), ("rating",)), path)


def _typed_interactions(df: pd.DataFrame, path: Path, header: bool = True) -> pd.DataFrame:
    """String columns -> ids, int64 timestamps, float ratings (NaN where absent) and the file ``row``."""
    df = _clean_ids(df, ("user_id", "item_id"), path, header)
    rating = df["rating"].astype(str).str.strip() if "rating" in df.columns else pd.Series(np.nan, index=df.index)
    return pd.DataFrame({"user_id": df["user_id"].to_numpy(dtype=object),
                         "item_id": df["item_id"].to_numpy(dtype=object),
                         "timestamp": _to_seconds(df["timestamp"], path, header),
                         "rating": pd.to_numeric(rating, errors="coerce").to_numpy(dtype=float),
                         "row": np.arange(len(df), dtype=np.int64)})


def read_items(path: str | Path) -> pd.DataFrame:
    """An item catalogue from a CSV or Parquet file with ``item_id,title[,genres]`` (genres ``|``-separated): a frame
    with ``item_id``, ``title`` (str) and ``genres`` (tuple of str). A bad file, empty or duplicate id is a
    ``DataError``."""
    path = Path(path)
    df = _read_table(path, ("item_id", "title"), ("genres",))
    df = _clean_ids(df, ("item_id",), path)
    genres = df["genres"].astype(str) if "genres" in df.columns else [""] * len(df)
    return _items(df, [tuple(g.strip() for g in s.split("|") if g.strip()) for s in genres], path)


def _items(df: pd.DataFrame, genres: list[tuple[str, ...]], path: Path) -> pd.DataFrame:
    """The catalogue frame (ids and titles stripped); an id listed twice is a DataError."""
    items = pd.DataFrame({"item_id": df["item_id"].str.strip().to_numpy(dtype=object),
                          "title": df["title"].astype(str).str.strip().to_numpy(dtype=object), "genres": genres})
    dup = items["item_id"].duplicated().to_numpy()
    if dup.any():
        raise DataError(f"{path}: item id {items['item_id'].iloc[int(np.flatnonzero(dup)[0])]!r} is listed twice")
    return items


def _read_text(path: Path, encoding: str) -> str:
    """A text file's content (gzip when the name ends in .gz); a truncated gzip is a DataError."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{path} is truncated or not gzip: {exc}") from exc
    return raw.decode(encoding)


def _read_separated(path: Path, sep: str, names: tuple[str, ...], encoding: str) -> pd.DataFrame:
    """Headerless separated text as strings; every line must have exactly ``len(names)`` fields."""
    text = _read_text(path, encoding)
    if not text.strip():
        raise DataError(f"{path} is empty")
    if len(sep) > 1:
        text = text.replace(sep, "\t")  # the C parser handles one-character separators only
        sep = "\t"
    lines = text.rstrip("\n").split("\n")
    counts = np.fromiter((ln.count(sep) + 1 for ln in lines), dtype=np.int64, count=len(lines))
    want = len(names)
    bad = counts != want
    if bad.any():
        n = int(np.flatnonzero(bad)[0])
        tail = " (truncated file?)" if n == len(lines) - 1 else ""
        raise DataError(f"{path}:{n + 1}: expected {want} fields separated by {sep!r}, found {int(counts[n])}{tail}")
    return pd.read_csv(io.StringIO(text), sep=sep, header=None, dtype=str, keep_default_na=False, quoting=3,
                       names=list(names))


def read_movielens_100k(folder: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``u.data`` and ``u.item`` (latin-1) of MovieLens 100k -> (interactions, items)."""
    folder = Path(folder)
    data = _check_file(folder / "u.data")
    df = _read_separated(data, "\t", ("user_id", "item_id", "rating", "timestamp"), "latin-1")
    inter = _typed_interactions(df, data, header=False)
    genre_names = ML100K_GENRES
    if (folder / "u.genre").is_file():
        rows = [ln.split("|") for ln in _read_text(folder / "u.genre", "latin-1").splitlines() if ln.strip()]
        genre_names = tuple(r[0] for r in sorted(rows, key=lambda r: int(r[1])))
    item_file = _check_file(folder / "u.item")
    names = ("item_id", "title", "release", "video_release", "url", *[f"g{i}" for i in range(len(genre_names))])
    it = _read_separated(item_file, "|", names, "latin-1")
    flags = it[[f"g{i}" for i in range(len(genre_names))]].to_numpy() == "1"
    genres = [tuple(g for g, f in zip(genre_names, row) if f and g != "unknown") for row in flags]
    return inter, _items(it, genres, item_file)


def read_movielens_1m(folder: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``ratings.dat`` (or ``ratings.dat.gz``) and ``movies.dat`` (latin-1) of MovieLens 1M -> (interactions, items)."""
    folder = Path(folder)
    ratings = folder / "ratings.dat" if (folder / "ratings.dat").is_file() else folder / "ratings.dat.gz"
    df = _read_separated(_check_file(ratings), "::", ("user_id", "item_id", "rating", "timestamp"), "latin-1")
    inter = _typed_interactions(df, ratings, header=False)
    movies = _check_file(folder / "movies.dat")
    it = _read_separated(movies, "::", ("item_id", "title", "genres"), "latin-1")
    return inter, _items(it, [tuple(g for g in s.split("|") if g) for s in it["genres"]], movies)


def _find(folder: Path, stems: tuple[str, ...]) -> Path | None:
    return next((p for stem in stems for ext in (".csv", ".parquet") if (p := folder / f"{stem}{ext}").is_file()), None)


def read_source(path: str | Path, items: str | Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame | None, str]:
    """(interactions, items or None, format name) of an interactions file, a folder holding one, or a MovieLens 100k /
    1M folder; ``items`` is the items file of a generic interactions file (a folder's own is found by name)."""
    path = Path(path)
    if path.is_dir():
        if (path / "u.data").is_file():
            return (*read_movielens_100k(path), "movielens-100k")
        if (path / "ratings.dat").is_file() or (path / "ratings.dat.gz").is_file():
            return (*read_movielens_1m(path), "movielens-1m")
        found = _find(path, ("interactions", "rec_interactions"))
        if found is None:
            raise DataError(f"{path} holds no interactions: expected u.data (MovieLens 100k), ratings.dat[.gz] "
                            "(MovieLens 1M) or interactions.csv / interactions.parquet")
        items = items or _find(path, ("items", "rec_items"))
        path = found
    if not path.exists():
        raise DataError(f"data not found: {path}")
    return read_interactions(path), (read_items(items) if items else None), "generic"


# ---------------------------------------------------------------------------------------------------------- sequences
@dataclass
class RecData:
    """The catalogue and every user's chronological sequence of item indices (1-based; 0 is padding)."""

    item_ids: list[str]  # the id of index i + 1 at position i; titles and genres in the same order
    titles: list[str]
    genres: list[tuple[str, ...]]
    users: list[str]  # in natural order; seqs and times in the same order
    seqs: list[np.ndarray]  # item indices in time order (repeats removed, ties by file order)
    times: list[np.ndarray]
    source: dict = field(default_factory=dict)  # where the data came from and how much was read

    def __post_init__(self) -> None:
        self.item_index = {iid: i + 1 for i, iid in enumerate(self.item_ids)}
        self.user_index = {u: i for i, u in enumerate(self.users)}

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_users(self) -> int:
        return len(self.users)

    def history(self, user: str) -> np.ndarray:
        """The full sequence of a user (KeyError when unknown)."""
        return self.seqs[self.user_index[user]]

    def fingerprint(self) -> str:
        """A hash of the catalogue's ids (what an artifact's item indices mean)."""
        return hashlib.sha256("\n".join(self.item_ids).encode()).hexdigest()[:16]

    def item_texts(self) -> list[str]:
        """``title. genre, genre`` per item: what the text embeddings read."""
        return [f"{t}. {', '.join(g)}" if g else t for t, g in zip(self.titles, self.genres)]

    def genre_matrix(self) -> np.ndarray | None:
        """(n_items + 1, n_genres) multi-hot genre vectors (row 0 padding), or None when no item has a genre."""
        names = sorted({g for gs in self.genres for g in gs})
        if not names:
            return None
        m = np.zeros((self.n_items + 1, len(names)), dtype=np.float32)
        for i, gs in enumerate(self.genres, 1):
            m[i, [names.index(g) for g in gs]] = 1.0
        return m

    def popularity(self, seqs: list[np.ndarray] | None = None) -> np.ndarray:
        """(n_items + 1,) number of users who interacted with each item (in ``seqs``, default all)."""
        counts = np.bincount(np.concatenate([np.zeros(0, np.int64), *(self.seqs if seqs is None else seqs)]),
                             minlength=self.n_items + 1)
        counts[0] = 0
        return counts


def build_data(inter: pd.DataFrame, items: pd.DataFrame | None, source: dict | None = None) -> RecData:
    """Sequences from interactions (see the module docstring for the protocol).

    Raises:
        DataError: interactions with items the catalogue lacks, or no interactions at all.
    """
    if inter.empty:
        raise DataError("no interactions")
    if items is not None:
        unknown = ~inter["item_id"].isin(set(items["item_id"])).to_numpy()
        if unknown.any():
            ids = sorted(set(inter.loc[unknown, "item_id"]), key=natural_key)
            first = int(np.flatnonzero(unknown)[0]) + 1
            raise DataError(f"{len(ids)} item id(s) in the interactions are not in the items file, e.g. "
                            f"{', '.join(map(repr, ids[:5]))} (first at interaction {first})")
        cat = items.assign(_k=[natural_key(i) for i in items["item_id"]]).sort_values("_k", kind="stable")
        item_ids, titles, genres = list(cat["item_id"]), list(cat["title"]), list(cat["genres"])
    else:
        item_ids = sorted(set(inter["item_id"]), key=natural_key)
        titles, genres = list(item_ids), [() for _ in item_ids]
    index = {iid: i + 1 for i, iid in enumerate(item_ids)}
    df = inter.sort_values(["user_id", "timestamp", "row"], kind="stable")
    n_read = len(df)
    df = df.drop_duplicates(["user_id", "item_id"], keep="first")  # implicit feedback: first occurrence only
    user_col = df["user_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, user_col[1:] != user_col[:-1]])[1:]  # where each user's rows begin
    seq_of = dict(zip(user_col[np.r_[0, starts]], np.split(df["item_id"].map(index).to_numpy(np.int64), starts)))
    time_of = dict(zip(user_col[np.r_[0, starts]], np.split(df["timestamp"].to_numpy(np.int64), starts)))
    users = sorted(seq_of, key=natural_key)
    seqs, tss = [seq_of[u] for u in users], [time_of[u] for u in users]
    lengths = np.array([len(s) for s in seqs])
    src = {**(source or {}), "interactions_read": int(n_read), "interactions": int(len(df)),
           "repeats_dropped": int(n_read - len(df)), "users": len(users), "items": len(item_ids),
           "users_evaluated": int((lengths >= MIN_EVAL_LEN).sum()),
           "ties_in_time": int(sum(int((np.diff(t) == 0).sum()) for t in tss))}
    return RecData(item_ids, titles, genres, users, seqs, tss, src)


def load_data(path: str | Path, items: str | Path | None = None) -> RecData:
    """Read ``path`` (see ``read_source``) and build the sequences."""
    inter, cat, fmt = read_source(path, items)
    return build_data(inter, cat, {"path": str(path), "items_path": str(items) if items else None, "format": fmt})


# ---------------------------------------------------------------------------------------------------------- split
@dataclass
class Cases:
    """Evaluation cases: per user, the input history and the held-out target."""

    users: list[str]
    inputs: list[np.ndarray]
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.users)


@dataclass
class Split:
    """Leave-one-out: training sequences (every user) and the validation and test cases."""

    train: list[np.ndarray]
    val: Cases
    test: Cases


def leave_one_out(data: RecData) -> Split:
    """The last item of each user (with >= 3 interactions) is the test target, the one before it validates, the rest
    trains; shorter users train on all they have and are not evaluated."""
    ev = [(u, s) for u, s in zip(data.users, data.seqs) if len(s) >= MIN_EVAL_LEN]
    users = [u for u, _ in ev]
    return Split([s[:-2] if len(s) >= MIN_EVAL_LEN else s for s in data.seqs],
                 Cases(users, [s[:-2] for _, s in ev], np.asarray([s[-2] for _, s in ev], dtype=np.int64)),
                 Cases(list(users), [s[:-1] for _, s in ev], np.asarray([s[-1] for _, s in ev], dtype=np.int64)))
