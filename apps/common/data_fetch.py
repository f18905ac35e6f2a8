"""``trident data fetch NAME``: a public data set, from its official source, in the ``TRIDENT_DATA_DIR`` layout.

A fetch downloads, checks and unpacks into a temporary folder beside the target and renames only a complete, verified
folder into place, with a ``.trident-fetch.json`` record (URLs, SHA-256 of every download, what was pinned); ``force``
replaces only folders carrying that record. Pins: a download's ``sha256`` only where the file is byte-identical to
the one in ``../shared/datasets``, ``md5`` only where the upstream publishes it; ``pins`` are SHA-256 values of
unpacked files identical to the local copies. An unpinned download is logged and recorded with its SHA-256.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import httpx
import numpy as np

log = logging.getLogger(__name__)

MARKER = ".trident-fetch.json"
MIRROR_ENV = "TRIDENT_FETCH_MIRROR"

# What one archive may unpack to (the largest data set of the registry, ml-1m, is 25 MB from a 6 MB zip): at most
# MAX_MEMBERS members and at most MAX_RATIO times its own size (plus RATIO_SLACK bytes), never above
# MAX_UNPACKED_BYTES; checked on the sizes the archive declares, then on the bytes actually written.
MAX_MEMBERS = 10_000
MAX_UNPACKED_BYTES = 1 << 30
MAX_RATIO = 100
RATIO_SLACK = 1 << 20

# progress(file name, bytes so far, total bytes or None)
Progress = Callable[[str, int, "int | None"], None]


class FetchError(Exception):
    """A fetch that cannot go on: offline, a wrong checksum, an unsafe archive, a folder in the way."""


@dataclass(frozen=True)
class Download:
    """One file to download from ``url`` (commit-pinned where possible), with its pinned ``sha256`` or the upstream's
    published ``md5`` where known; ``unpack`` extracts ``.zip``, ``.tar.gz``/``.tgz`` and ``.gz``."""

    url: str
    sha256: str | None = None
    md5: str | None = None
    unpack: bool = True

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class DataSet:
    """A data set ``fetch`` can build: its downloads and the folder ``name`` they become."""

    name: str
    title: str
    licence: str  # the terms, summarised; shown before downloading
    downloads: tuple[Download, ...]
    files: Mapping[str, str]  # layout path -> path in the unpacked downloads (found by file name when unique)
    pins: Mapping[str, str] = field(default_factory=dict)  # layout path -> SHA-256 of the ../shared/datasets copy
    convert: Callable[[Path], None] | None = None  # writes derived files (after `files`, before `pins` are checked)
    note: str = ""  # how a fetched copy differs from the one in ../shared/datasets


@dataclass
class FetchResult:
    """What ``fetch`` did."""

    path: Path
    files: list[str]
    checked: list[str]  # downloads and files whose digest matched a pin (or a --sha256 given by the user)
    unpinned: dict[str, str]  # download name -> its computed SHA-256, where nothing was pinned


# ------------------------------------------------------------------------------------------------------ converters
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (``.gz`` or not) of unsigned bytes -> a uint8 array of its shape (MNIST's format)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise FetchError(f"{path.name} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    start = 4 + 4 * ndim
    if len(raw) - start != int(np.prod(shape)):
        raise FetchError(f"{path.name}: {len(raw) - start} bytes of data for shape {shape}")
    return np.frombuffer(raw, dtype=np.uint8, offset=start).reshape(shape)


def _fashion_convert(out: Path) -> None:
    # the npz format the image commands read (`trident core eval-images --data`), from the official test split
    images = read_idx(out / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(out / "t10k-labels-idx1-ubyte.gz")
    if len(images) != len(labels):
        raise FetchError(f"Fashion-MNIST test split: {len(images)} images but {len(labels)} labels")
    np.savez_compressed(out / "fashion_mnist_test.npz", images=images, labels=labels,
                        orig_index=np.arange(len(labels), dtype=np.int32))
    (out / "class_names.txt").write_text("\n".join(FASHION_CLASSES) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------------------------ the registry
GROUPLENS = ("GroupLens usage licence: research use only, no commercial use, no redistribution without permission; "
             "cite Harper & Konstan 2015 (ACM TiiS).")
BANKING77 = "https://raw.githubusercontent.com/PolyAI-LDN/task-specific-datasets/57ec275d8078af65b7731c2a98be812d844a6d6b"
FASHION = "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/b2617bb6d3ffa2e429640350f613e3291e10b141"
FASHION_IDX = {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",  # file -> md5 of the README's table
               "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
               "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
               "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"}

# sha256 / pins: computed with sha256sum on ../shared/datasets/<name>/<file>, whose READMEs say the file was copied
# byte for byte from the URL's source. md5: the table in the Fashion-MNIST README. No other digest is pinned.
REGISTRY: dict[str, DataSet] = {
    "banking77": DataSet(
        name="banking77",
        title="Banking77 intents (PolyAI): train.csv, the official test set as test_dev.csv, categories.json",
        licence="CC BY 4.0 (PolyAI): attribution required; cite Casanueva et al. 2020 (arXiv:2003.04807).",
        downloads=(
            Download(f"{BANKING77}/banking_data/train.csv",
                     sha256="b06e26ac675513959a63135f11b94ea7786ed02da65db93a5650d8838cbc664b"),
            Download(f"{BANKING77}/banking_data/test.csv"),
            Download(f"{BANKING77}/banking_data/categories.json",
                     sha256="53261da888122daf2d120d925458631d9619e15d82e56052e7a42e535ce32b63"),
            Download(f"{BANKING77}/LICENSE", sha256="7e7170e3cebf88a9f60c7b8421418323c09304da1af4d5e90f4da1dc1c8a2661"),
        ),
        files={"train.csv": "train.csv", "test_dev.csv": "test.csv", "categories.json": "categories.json",
               "LICENSE.txt": "LICENSE"},
        note="test_dev.csv is the whole official test set (3,080 rows, 40 per intent); ../shared/datasets holds "
             "one half of it (the other half is kept back there), so scores are not comparable.",
    ),
    "bank_faqs": DataSet(
        name="bank_faqs",
        title="BankFAQs.csv: 1,764 banking FAQ question/answer/class rows",
        licence="No licence stated (FAQ text scraped from a bank's website): internal benchmarking and demos only; "
                "do not redistribute.",
        downloads=(Download("https://raw.githubusercontent.com/MrJay10/banking-faq-bot/"
                            "f0d2a5aa3a015db000f900d64378743b88821d91/BankFAQs.csv",
                            sha256="9cc6dbb1f8f9c389b1014fe2f3a5f28be5e04344735b4b3efb52c44884b1a938"),),
        files={"BankFAQs.csv": "BankFAQs.csv"},
    ),
    "financial_phrasebank": DataSet(
        name="financial_phrasebank",
        title="Financial PhraseBank v1.0 (Malo et al. 2014): Sentences_{50,66,75,All}Agree.txt",
        licence="CC BY-NC-SA 3.0: non-commercial use only, share alike; commercial use needs the authors' "
                "permission; cite Malo et al. 2014 (JASIST 65(4)).",
        downloads=(Download("https://huggingface.co/datasets/takala/financial_phrasebank/resolve/main/data/"
                            "FinancialPhraseBank-v1.0.zip"),),
        files={f"Sentences_{a}Agree.txt": f"FinancialPhraseBank-v1.0/Sentences_{a}Agree.txt"
               for a in ("50", "66", "75", "All")} | {"License.txt": "FinancialPhraseBank-v1.0/License.txt",
                                                      "README.txt": "FinancialPhraseBank-v1.0/README.txt"},
        note="the full release: ../shared/datasets removed a held-out 20% of the sentences from its copy.",
    ),
    "fashion_mnist": DataSet(
        name="fashion_mnist",
        title="Fashion-MNIST (Zalando): the official train/t10k IDX files, the test split as fashion_mnist_test.npz",
        licence="MIT, Copyright (c) 2017 Zalando SE; cite Xiao et al. 2017 (arXiv:1708.07747).",
        downloads=(*(Download(f"{FASHION}/data/fashion/{n}", md5=md5, unpack=False) for n, md5 in FASHION_IDX.items()),
                   Download(f"{FASHION}/LICENSE",
                            sha256="13ef4788476d292858fa60eb9a5f74aeca5c65770bc885ccaa05823a17ef7be1")),
        files={n: n for n in (*FASHION_IDX, "LICENSE")},
        pins={"class_names.txt": "c05cbe764897f8f34d28f45aa4669357a728c2bd56e7610475ae1594e478a8c7"},
        convert=_fashion_convert,
        note="not the curated fashion_mnist_test_8000.npz of ../shared/datasets (2,000 test items are kept back "
             "there): fashion_mnist_test.npz holds all 10,000 test images, and the train-*.gz files the 60,000 "
             "training images.",
    ),
    "movielens-100k": DataSet(
        name="movielens-100k",
        title="MovieLens 100K (GroupLens): u.data ratings, u.item titles/genres, u.user",
        licence=GROUPLENS,
        downloads=(Download("https://files.grouplens.org/datasets/movielens/ml-100k.zip"),),
        files={n: f"ml-100k/{n}" for n in ("README", "u.data", "u.item", "u.user", "u.genre", "u.occupation",
                                           "u.info")},
        pins={"u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
              "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
              "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
              "u.genre": "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb",
              "u.occupation": "cd5fbec9afe345d993a62fc7817df1a4a9079c4feb267b3118763b8fd942137d"},
    ),
    "movielens-1m": DataSet(
        name="movielens-1m",
        title="MovieLens 1M (GroupLens): all 1,000,209 ratings, movies.dat, users.dat",
        licence=GROUPLENS,
        downloads=(Download("https://files.grouplens.org/datasets/movielens/ml-1m.zip"),),
        files={n: f"ml-1m/{n}" for n in ("README", "ratings.dat", "movies.dat", "users.dat")},
        pins={"movies.dat": "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9",
              "users.dat": "1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3"},
        note="the full ml-1m, in its own folder: ../shared/datasets/movielens-1m-subset has users 1-2999 only.",
    ),
}


# ------------------------------------------------------------------------------------------------------ fetching
def source_url(ds: DataSet, d: Download, mirror: str | None = None) -> str:
    """The URL to download ``d`` from: its official one, or ``<mirror>/<data set>/<file name>``."""
    return f"{mirror.rstrip('/')}/{ds.name}/{d.filename}" if mirror else d.url


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def is_fetched(folder: Path) -> bool:
    """Whether ``folder`` was made by ``fetch`` (it carries the fetch record)."""
    return (folder / MARKER).is_file()


def fetch(ds: DataSet, dest: str | Path, *, mirror: str | None = None, force: bool = False,
          sha256: Mapping[str, str] | None = None, progress: Progress | None = None,
          timeout: float = 60.0) -> FetchResult:
    """Download ``ds``, check its digests, unpack it and move the finished folder to ``dest/ds.name``.

    ``mirror`` serves ``<mirror>/<ds.name>/<file name>``; ``force`` replaces a folder an earlier fetch made;
    ``sha256`` (file name or layout path -> digest the user vouches for) overrides a pin; ``timeout`` is the seconds
    without data before a download fails. Raises ``FetchError`` (offline, an HTTP error, a digest mismatch, an unsafe
    archive, a missing file, a folder in the way), and nothing under ``dest`` changes then.
    """
    dest = Path(dest)
    target = dest / ds.name
    overrides = {k: v.lower() for k, v in (sha256 or {}).items()}
    known = {d.filename for d in ds.downloads} | set(ds.files) | set(ds.pins)
    if unknown := sorted(set(overrides) - known):
        raise FetchError(f"--sha256 {unknown[0]}: {ds.name} has no such file (it has {', '.join(sorted(known))})")
    _check_replaceable(target, force)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{ds.name}.fetch-", dir=dest))
    except OSError as exc:
        raise FetchError(f"cannot write to {dest}: {exc.strerror or exc}") from exc
    try:
        return _fetch_into(ds, staging, target, mirror, force, overrides, progress, timeout)
    except OSError as exc:
        raise FetchError(f"fetching {ds.name} failed: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _mismatch(name: str, where: str, algo: str, got: str, want: str, why: str = "") -> FetchError:
    return FetchError(f"checksum mismatch for {name}{where}: {algo} {got}, expected {want}{why}; nothing was written")


def _fetch_into(ds: DataSet, staging: Path, target: Path, mirror: str | None, force: bool,
                overrides: dict[str, str], progress: Progress | None, timeout: float) -> FetchResult:
    raw, unpacked, out = staging / "download", staging / "unpacked", staging / ds.name
    raw.mkdir()
    unpacked.mkdir()
    checked: list[str] = []
    unpinned: dict[str, str] = {}
    records = []
    for d in ds.downloads:
        url = source_url(ds, d, mirror)
        path = raw / d.filename
        hint = "" if mirror else f" (offline? point {MIRROR_ENV} or --mirror at a local mirror)"
        got_sha256, got_md5, size = _download(url, path, progress, timeout, hint)
        want = overrides.get(d.filename, d.sha256)
        algo, got, expected = ("sha256", got_sha256, want) if want else ("md5", got_md5, d.md5)
        if expected is None:
            unpinned[d.filename] = got_sha256
            verified = None
            log.warning("no pinned checksum for %s: its sha256 is %s (recorded in %s/%s)", d.filename, got_sha256,
                        ds.name, MARKER)
        elif got != expected:
            raise _mismatch(d.filename, f" from {url}", algo, got, expected)
        else:
            checked.append(d.filename)
            verified = ("upstream md5" if algo == "md5" else
                        "sha256 given by the user" if d.filename in overrides else "pinned sha256")
        records.append({"url": url, "file": d.filename, "bytes": size, "sha256": got_sha256, "verified": verified})
        if d.unpack and _archive_kind(d.filename):
            safe_extract(path, unpacked)
        else:
            path.rename(unpacked / d.filename)

    out.mkdir()
    for rel, src in ds.files.items():
        found = _find(unpacked, src, ds.name)
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        found.rename(out / rel)
    if ds.convert is not None:
        ds.convert(out)
    # the registry's pins (or the user's digests for them), then the user's digests of other layout files
    wanted = {rel: overrides.get(rel, pin) for rel, pin in ds.pins.items()} | {
        rel: overrides[rel] for rel in sorted(set(overrides) - set(ds.pins) - {d.filename for d in ds.downloads})}
    for rel, want in wanted.items():
        if (got := file_sha256(out / rel)) != want:
            if rel in ds.pins:
                raise _mismatch(rel, f" in the {ds.name} download", "sha256", got, want,
                                " (pinned from the copy in ../shared/datasets)")
            raise _mismatch(rel, "", "sha256", got, want)
        checked.append(rel)

    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    record = {"name": ds.name, "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
              "downloads": records, "checked": checked, "licence": ds.licence}
    (out / MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    _check_replaceable(target, force)  # again: something may have appeared there while we downloaded
    _swap_into_place(out, target, staging)
    log.info("fetched %s into %s", ds.name, target)
    return FetchResult(target, files, checked, unpinned)


def _check_replaceable(target: Path, force: bool) -> None:
    if target.is_symlink():
        raise FetchError(f"{target} is a symbolic link: refusing to follow or replace it; remove the link or fetch "
                         "into another --dest")
    if not target.exists():
        return
    if not force:
        raise FetchError(f"{target} exists; add --force to replace it")
    if not is_fetched(target):
        raise FetchError(f"{target} exists and was not made by `trident data fetch`; --force replaces only fetched "
                         "copies, so move it away by hand first")


def _swap_into_place(out: Path, target: Path, staging: Path) -> None:
    # a rename within one file system is atomic; the old copy moves into staging and is deleted with it
    old = staging / "replaced" if target.exists() or target.is_symlink() else None
    if old:
        target.rename(old)
    try:
        out.rename(target)
    except OSError:
        if old:
            old.rename(target)
        raise


def _download(url: str, path: Path, progress: Progress | None, timeout: float, hint: str = "") -> tuple[str, str, int]:
    h256, h5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    size = 0
    # identity: the digests are of the file itself, not of a compressed transfer of it
    headers = {"Accept-Encoding": "identity", "User-Agent": "trident-data-fetch"}
    try:
        with httpx.stream("GET", url, headers=headers, follow_redirects=True,
                          timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0))) as r:
            if r.status_code != 200:
                raise FetchError(f"cannot download {url}: HTTP {r.status_code} {r.reason_phrase}")
            total = int(r.headers.get("content-length") or 0) or None
            with path.open("wb") as f:
                for chunk in r.iter_bytes(1 << 16):
                    f.write(chunk)
                    h256.update(chunk)
                    h5.update(chunk)
                    size += len(chunk)
                    if progress is not None:
                        progress(path.name, size, total)
    except httpx.HTTPError as exc:
        raise FetchError(f"cannot download {url}: {str(exc) or type(exc).__name__}{hint}") from exc
    return h256.hexdigest(), h5.hexdigest(), size


def _find(unpacked: Path, src: str, name: str) -> Path:
    exact = unpacked / src
    if exact.is_file():
        return exact
    base = PurePosixPath(src).name
    hits = [p for p in unpacked.rglob(base) if p.is_file() and "__MACOSX" not in p.parts]
    if len(hits) == 1:
        return hits[0]
    what = "several files named" if hits else "no file"
    raise FetchError(f"the {name} download has {what} {src!r}: its layout is not the one this registry knows")


# ------------------------------------------------------------------------------------------------------ unpacking
_ARCHIVES = ((".zip", "zip"), (".tar.gz", "tar"), (".tgz", "tar"), (".tar", "tar"), (".gz", "gz"))


def _archive_kind(filename: str) -> str | None:
    return next((kind for ext, kind in _ARCHIVES if filename.lower().endswith(ext)), None)


def _safe_member(name: str, archive: str) -> PurePosixPath:
    norm = name.replace("\\", "/")
    p = PurePosixPath(norm)
    if not norm or norm.startswith("/") or ".." in p.parts or ":" in (p.parts[0] if p.parts else ""):
        raise FetchError(f"unsafe path {name!r} in {archive}: refusing to unpack it")
    return p


def unpack_budget(archive: Path) -> int:
    """The most bytes ``archive`` may unpack to: ``MAX_RATIO`` times its size plus ``RATIO_SLACK``, at most
    ``MAX_UNPACKED_BYTES``."""
    return min(MAX_UNPACKED_BYTES, MAX_RATIO * archive.stat().st_size + RATIO_SLACK)


def _too_big(archive: Path, budget: int) -> FetchError:
    return FetchError(f"{archive.name} unpacks to more than {budget:,} bytes ({MAX_RATIO} times its own size, at most "
                      f"{MAX_UNPACKED_BYTES:,}): refusing to unpack it")


def _no_links_below(dest: Path, path: PurePosixPath, archive: str) -> None:
    """Refuse ``dest / path`` when it or a folder between it and ``dest`` already exists as a symbolic link."""
    at = dest
    for part in path.parts:
        at = at / part
        if at.is_symlink():
            raise FetchError(f"{at} is a symbolic link: refusing to unpack {archive} through it")


def _copy_capped(src, out: Path, budget: list[int], archive: Path, cap: int, written: list[Path]) -> None:
    """Copy ``src`` into the file ``out`` (never through a link; appended to ``written`` once opened), taking its
    bytes from ``budget[0]``."""
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
    written.append(out)
    with os.fdopen(fd, "wb") as dst:
        while chunk := src.read(1 << 20):
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise _too_big(archive, cap)
            dst.write(chunk)


def safe_extract(archive: Path, dest: Path) -> list[Path]:
    """Unpack a ``.zip``, ``.tar[.gz]``/``.tgz`` or single-file ``.gz`` into ``dest``; return the files written.

    Every member is checked before anything is written: an absolute path, a ``..`` part, a drive letter, a link or
    a device member, a path through a symbolic link already under ``dest``, more than ``MAX_MEMBERS`` members or more
    declared bytes than :func:`unpack_budget` makes the whole archive fail with ``FetchError``; so do more bytes than
    that budget while writing (what was written is removed then).
    """
    kind = _archive_kind(archive.name)
    cap = unpack_budget(archive) if kind else 0
    budget = [cap]
    written: list[Path] = []
    try:
        if kind == "gz":
            out = dest / archive.name[:-3]
            _no_links_below(dest, PurePosixPath(out.name), archive.name)
            try:
                with gzip.open(archive, "rb") as src:
                    _copy_capped(src, out, budget, archive, cap, written)
            except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
                raise FetchError(f"{archive.name} is not a valid gzip file: {exc}") from exc
            return written
        if kind is None:
            raise FetchError(f"{archive.name}: not an archive this fetcher unpacks (.zip, .tar.gz, .tgz, .gz)")
        opener, bad = (zipfile.ZipFile, zipfile.BadZipFile) if kind == "zip" else (tarfile.open, tarfile.TarError)
        try:
            af = opener(archive)
        except bad as exc:
            raise FetchError(f"{archive.name} is not a valid {kind} file: {exc}") from exc
        with af:
            if kind == "zip":
                read, link = af.open, "link"
                entries = [(i, i.filename, i.is_dir(), stat.S_ISLNK(i.external_attr >> 16), i.file_size)
                           for i in af.infolist()]
            else:
                read, link = af.extractfile, "link or special file"
                entries = [(m, m.name, m.isdir(), not (m.isfile() or m.isdir()), m.size) for m in af.getmembers()]
            if len(entries) > MAX_MEMBERS:
                raise FetchError(f"{archive.name} has {len(entries):,} members (at most {MAX_MEMBERS:,}): refusing to "
                                 "unpack it")
            if sum(size for *_, size in entries) > cap:
                raise _too_big(archive, cap)
            members = []
            for member, name, is_dir, is_link, _ in entries:
                path = _safe_member(name, archive.name)
                if is_link:
                    raise FetchError(f"{link} {name!r} in {archive.name}: refusing to unpack it")
                _no_links_below(dest, path, archive.name)
                members.append((member, dest / path, is_dir))
            for member, out, is_dir in members:  # every member was checked before this first write
                if is_dir:
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                with read(member) as src:
                    _copy_capped(src, out, budget, archive, cap, written)
    except BaseException:
        for path in written:  # nothing half-unpacked is left behind
            path.unlink(missing_ok=True)
        raise
    return written
