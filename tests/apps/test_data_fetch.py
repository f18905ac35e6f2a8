"""``trident data fetch``: small fake archives served by a local HTTP server stand in for the official sources."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import tarfile
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from apps.common.data_fetch import MARKER, REGISTRY, FetchError, fetch, read_idx, safe_extract
from apps.recommender.data import read_movielens_100k

GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
          "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """(folder, base URL): files under the folder are served at the URL by a local HTTP server."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("TRIDENT_FETCH_MIRROR", raising=False)
    root = tmp_path / "mirror"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ml100k_zip(ratings: list[tuple[int, int, int, int]], extra: dict[str, bytes] | None = None) -> bytes:
    """A zip laid out like GroupLens' ml-100k.zip, with three movies (Latin-1 titles) and the given ratings."""
    items = [(1, "Toy Story (1995)", "Animation|Children's|Comedy"), (2, "GoldenEye (1995)", "Action"),
             (3, "Café Society (1995)", "Drama")]
    item_lines = []
    for i, title, genres in items:
        flags = "|".join("1" if g in genres.split("|") else "0" for g in GENRES)
        item_lines.append(f"{i}|{title}|01-Jan-1995||http://example.org/{i}|{flags}")
    files = {
        "ml-100k/u.data": "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ratings).encode(),
        "ml-100k/u.item": ("\n".join(item_lines) + "\n").encode("latin-1"),
        "ml-100k/u.genre": "".join(f"{g}|{n}\n" for n, g in enumerate(GENRES)).encode() + b"\n",
        "ml-100k/u.user": b"1|24|M|technician|85711\n2|53|F|other|94043\n",
        "ml-100k/u.occupation": b"technician\nother\n",
        "ml-100k/u.info": b"2 users\n3 items\n4 ratings\n",
        "ml-100k/README": b"fake MovieLens for a test\n",
        "ml-100k/u1.base": b"left out of the layout\n",
        **(extra or {}),
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


RATINGS = [(1, 1, 5, 100), (1, 2, 3, 200), (2, 3, 4, 150), (2, 1, 2, 300)]


def serve(root: Path, name: str, filename: str, data: bytes) -> str:
    (root / name).mkdir(exist_ok=True)
    (root / name / filename).write_bytes(data)
    return sha256(data)


def ml100k_entry(digest: str | None):
    """The real movielens-100k entry, its download pinned to ``digest`` and without the pins of the real files."""
    ds = REGISTRY["movielens-100k"]
    return dataclasses.replace(ds, downloads=(dataclasses.replace(ds.downloads[0], sha256=digest),), pins={})


def test_fetch_builds_the_movielens_layout_that_the_reader_reads(mirror, tmp_path):
    root, url = mirror
    digest = serve(root, "movielens-100k", "ml-100k.zip", ml100k_zip(RATINGS))
    dest = tmp_path / "data"
    res = fetch(ml100k_entry(digest), dest, mirror=url)

    assert res.path == dest / "movielens-100k"
    assert sorted(p.name for p in res.path.iterdir()) == sorted(
        ["README", "u.data", "u.genre", "u.info", "u.item", "u.occupation", "u.user", MARKER])  # no u1.base
    assert res.checked == ["ml-100k.zip"] and res.unpinned == {}
    inter, items = read_movielens_100k(res.path)
    assert len(inter) == 4 and sorted(inter["user_id"].unique()) == ["1", "2"]
    assert list(items["title"]) == ["Toy Story (1995)", "GoldenEye (1995)", "Café Society (1995)"]
    assert items["genres"].iloc[0] == ("Animation", "Children's", "Comedy")
    record = json.loads((res.path / MARKER).read_text())
    assert record["downloads"][0]["sha256"] == digest and record["downloads"][0]["verified"] == "pinned sha256"
    assert os.listdir(dest) == ["movielens-100k"]  # the staging folder is gone


def test_the_registry_pins_of_unpacked_files_are_checked(mirror, tmp_path):
    # the real entry pins u.data & co. to the GroupLens files; a fake u.data must be refused, and nothing written
    root, url = mirror
    serve(root, "movielens-100k", "ml-100k.zip", ml100k_zip(RATINGS))
    dest = tmp_path / "data"
    with pytest.raises(FetchError, match=r"checksum mismatch for u\.data .*pinned from the copy in ../shared/datasets"):
        fetch(REGISTRY["movielens-100k"], dest, mirror=url)
    assert os.listdir(dest) == []


def test_a_wrong_checksum_keeps_the_existing_copy_and_leaves_no_partial_folder(mirror, tmp_path):
    root, url = mirror
    digest = serve(root, "movielens-100k", "ml-100k.zip", ml100k_zip(RATINGS))
    dest = tmp_path / "data"
    fetch(ml100k_entry(digest), dest, mirror=url)
    before = (dest / "movielens-100k" / "u.data").read_bytes()

    serve(root, "movielens-100k", "ml-100k.zip", ml100k_zip(RATINGS[:2]))  # the server now sends other bytes
    with pytest.raises(FetchError, match="checksum mismatch for ml-100k.zip"):
        fetch(ml100k_entry(digest), dest, mirror=url, force=True)
    assert (dest / "movielens-100k" / "u.data").read_bytes() == before
    assert os.listdir(dest) == ["movielens-100k"]


def test_force_replaces_a_fetched_copy_but_never_a_hand_made_folder(mirror, tmp_path):
    root, url = mirror
    dest = tmp_path / "data"
    mine = dest / "movielens-100k"
    mine.mkdir(parents=True)
    (mine / "u.data").write_text("my own curated copy\n")
    digest = serve(root, "movielens-100k", "ml-100k.zip", ml100k_zip(RATINGS))

    with pytest.raises(FetchError, match="exists; add --force"):
        fetch(ml100k_entry(digest), dest, mirror=url)
    with pytest.raises(FetchError, match="not made by `trident data fetch`"):
        fetch(ml100k_entry(digest), dest, mirror=url, force=True)
    assert (mine / "u.data").read_text() == "my own curated copy\n"

    (mine / "u.data").unlink()
    mine.rmdir()
    fetch(ml100k_entry(digest), dest, mirror=url)
    digest2 = serve(root, "movielens-100k", "ml-100k.zip", ml100k_zip(RATINGS[:3]))
    fetch(ml100k_entry(digest2), dest, mirror=url, force=True)
    assert len(read_movielens_100k(mine)[0]) == 3
    assert os.listdir(dest) == ["movielens-100k"]


def test_an_unpinned_download_is_warned_about_and_its_sha256_recorded(mirror, tmp_path, caplog):
    root, url = mirror
    digest = serve(root, "movielens-100k", "ml-100k.zip", ml100k_zip(RATINGS))
    with caplog.at_level("WARNING", logger="apps.common.data_fetch"):
        res = fetch(ml100k_entry(None), tmp_path / "data", mirror=url)
    assert res.unpinned == {"ml-100k.zip": digest} and res.checked == []
    assert f"no pinned checksum for ml-100k.zip: its sha256 is {digest}" in caplog.text
    record = json.loads((res.path / MARKER).read_text())
    assert record["downloads"][0] == {"url": f"{url}/movielens-100k/ml-100k.zip", "file": "ml-100k.zip",
                                      "bytes": len(ml100k_zip(RATINGS)), "sha256": digest, "verified": None}


def test_a_user_sha256_overrides_a_pin_and_an_unknown_file_name_is_refused(mirror, tmp_path):
    root, url = mirror
    data = ml100k_zip(RATINGS)
    digest = serve(root, "movielens-100k", "ml-100k.zip", data)
    entry = ml100k_entry(None)
    with pytest.raises(FetchError, match="has no such file"):
        fetch(entry, tmp_path / "data", mirror=url, sha256={"ratings.csv": digest})
    u_data = "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in RATINGS).encode()
    res = fetch(dataclasses.replace(entry, pins={"u.data": "0" * 64}), tmp_path / "data", mirror=url,
                sha256={"ml-100k.zip": digest, "u.data": sha256(u_data)})
    assert res.checked == ["ml-100k.zip", "u.data"]


@pytest.mark.parametrize("member", ["../evil.txt", "ml-100k/../../evil.txt", "/tmp/evil.txt", "C:/evil.txt",
                                    "..\\evil.txt"])
def test_a_zip_member_outside_the_folder_is_rejected(mirror, tmp_path, member):
    root, url = mirror
    digest = serve(root, "movielens-100k", "ml-100k.zip", ml100k_zip(RATINGS, {member: b"pwned\n"}))
    dest = tmp_path / "data"
    with pytest.raises(FetchError, match="unsafe path"):
        fetch(ml100k_entry(digest), dest, mirror=url)
    assert os.listdir(dest) == []
    assert not list(tmp_path.rglob("evil.txt"))


def _tar(members: list[tarfile.TarInfo], data: dict[str, bytes]) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for m in members:
            payload = data.get(m.name, b"")
            m.size = len(payload) if m.isfile() else 0
            tf.addfile(m, io.BytesIO(payload) if m.isfile() else None)
    return buf


def test_tar_gz_and_gz_unpack_and_a_tar_link_or_traversal_is_rejected(tmp_path):
    good = tmp_path / "good.tar.gz"
    good.write_bytes(_tar([tarfile.TarInfo("pkg/a.txt")], {"pkg/a.txt": b"hello"}).getvalue())
    out = tmp_path / "out"
    out.mkdir()
    assert safe_extract(good, out) == [out / "pkg" / "a.txt"]
    assert (out / "pkg" / "a.txt").read_bytes() == b"hello"

    single = tmp_path / "ratings.dat.gz"
    single.write_bytes(gzip.compress(b"1::2::5::978300760\n"))
    assert safe_extract(single, out) == [out / "ratings.dat"]
    assert (out / "ratings.dat").read_bytes() == b"1::2::5::978300760\n"

    link = tarfile.TarInfo("pkg/passwd")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    bad = tmp_path / "bad.tar.gz"
    for members, data, msg in (([link], {}, "link or special file"),
                               ([tarfile.TarInfo("../up.txt")], {"../up.txt": b"x"}, "unsafe path")):
        bad.write_bytes(_tar(members, data).getvalue())
        with pytest.raises(FetchError, match=msg):
            safe_extract(bad, tmp_path / "out2")
        assert not (tmp_path / "out2").exists() and not (tmp_path / "up.txt").exists()


def test_a_zip_bomb_is_refused_before_anything_is_written(mirror, tmp_path):
    """30 MB of zeros in a zip of a few tens of KB: far above MAX_RATIO times its size, refused on the sizes the
    archive declares (through the CLI's fetch as through safe_extract)."""
    root, url = mirror
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("ml-100k/u.data", b"\0" * (30 << 20))
    assert len(buf.getvalue()) < 100_000
    digest = serve(root, "movielens-100k", "ml-100k.zip", buf.getvalue())
    dest = tmp_path / "data"
    with pytest.raises(FetchError, match=r"ml-100k.zip unpacks to more than [\d,]+ bytes \(100 times its own size"):
        fetch(ml100k_entry(digest), dest, mirror=url)
    assert os.listdir(dest) == []
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(buf.getvalue())
    (tmp_path / "out").mkdir()
    with pytest.raises(FetchError, match="refusing to unpack it"):
        safe_extract(bomb, tmp_path / "out")
    assert os.listdir(tmp_path / "out") == []


def test_the_unpacked_bytes_are_capped_while_writing_and_the_partial_file_removed(tmp_path):
    """A single-file .gz declares no size: the cap holds on the bytes written."""
    bomb = tmp_path / "ratings.dat.gz"
    bomb.write_bytes(gzip.compress(b"\0" * (30 << 20)))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(FetchError, match=r"ratings.dat.gz unpacks to more than"):
        safe_extract(bomb, out)
    assert os.listdir(out) == []


def test_an_archive_with_too_many_members_is_refused(tmp_path, monkeypatch):
    import apps.common.data_fetch as data_fetch

    assert data_fetch.MAX_MEMBERS == 10_000 and data_fetch.MAX_UNPACKED_BYTES == 1 << 30
    monkeypatch.setattr(data_fetch, "MAX_MEMBERS", 50)
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as z:
        for i in range(51):
            z.writestr(f"pkg/{i}.txt", b"x")
    (tmp_path / "out").mkdir()
    with pytest.raises(FetchError, match="many.zip has 51 members \\(at most 50\\)"):
        safe_extract(many, tmp_path / "out")
    assert os.listdir(tmp_path / "out") == []


def test_unpacking_never_follows_a_symlink_already_in_the_destination(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "a.txt").write_text("mine\n")
    archive = tmp_path / "pkg.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("pkg/a.txt", b"from the archive")
    for name, target in (("pkg", elsewhere), ("pkg/a.txt", elsewhere / "a.txt")):  # a linked folder, a linked file
        out = tmp_path / f"out-{len(name)}"
        (out / "pkg").mkdir(parents=True, exist_ok=name != "pkg")
        if name == "pkg":
            (out / "pkg").rmdir()
        (out / name).symlink_to(target)
        with pytest.raises(FetchError, match="is a symbolic link: refusing to unpack pkg.zip through it"):
            safe_extract(archive, out)
        assert (elsewhere / "a.txt").read_text() == "mine\n" and os.listdir(elsewhere) == ["a.txt"]
        assert (out / name).is_symlink()  # the user's link itself is left alone
    single = tmp_path / "notes.txt.gz"
    single.write_bytes(gzip.compress(b"from the archive"))
    (tmp_path / "out-gz").mkdir()
    (tmp_path / "out-gz" / "notes.txt").symlink_to(elsewhere / "a.txt")
    with pytest.raises(FetchError, match="symbolic link"):
        safe_extract(single, tmp_path / "out-gz")
    assert (elsewhere / "a.txt").read_text() == "mine\n"


def test_fetch_refuses_a_symlink_where_the_data_set_folder_goes(mirror, tmp_path):
    root, url = mirror
    digest = serve(root, "movielens-100k", "ml-100k.zip", ml100k_zip(RATINGS))
    real = fetch(ml100k_entry(digest), tmp_path / "real", mirror=url).path  # a fetched copy the link points to
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "movielens-100k").symlink_to(real)
    for force in (False, True):
        with pytest.raises(FetchError, match="is a symbolic link: refusing to follow or replace it"):
            fetch(ml100k_entry(digest), dest, mirror=url, force=force)
    assert (dest / "movielens-100k").is_symlink() and os.listdir(dest) == ["movielens-100k"]


def _idx(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    return gzip.compress(header + arr.astype(np.uint8).tobytes())


def test_fashion_mnist_fetch_keeps_the_idx_files_and_writes_the_test_split_as_npz(mirror, tmp_path):
    root, url = mirror
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (3, 28, 28)), np.array([9, 0, 7])
    blobs = {"train-images-idx3-ubyte.gz": _idx(images[:2]), "train-labels-idx1-ubyte.gz": _idx(labels[:2]),
             "t10k-images-idx3-ubyte.gz": _idx(images), "t10k-labels-idx1-ubyte.gz": _idx(labels),
             "LICENSE": b"MIT\n"}
    ds = REGISTRY["fashion_mnist"]
    downloads = tuple(dataclasses.replace(d, md5=None, sha256=serve(root, ds.name, d.filename, blobs[d.filename]))
                      for d in ds.downloads)
    # the class_names.txt pin stays: the file written must equal the one in ../shared/datasets byte for byte
    res = fetch(dataclasses.replace(ds, downloads=downloads), tmp_path / "data", mirror=url)

    assert "class_names.txt" in res.checked
    d = np.load(res.path / "fashion_mnist_test.npz")
    assert d["images"].shape == (3, 28, 28) and d["images"].dtype == np.uint8
    assert (d["images"] == images).all() and list(d["labels"]) == [9, 0, 7] and list(d["orig_index"]) == [0, 1, 2]
    assert (read_idx(res.path / "train-labels-idx1-ubyte.gz") == labels[:2]).all()
    assert (res.path / "train-images-idx3-ubyte.gz").read_bytes() == blobs["train-images-idx3-ubyte.gz"]  # as sent
    assert (res.path / "class_names.txt").read_text().split("\n")[:10][7] == "Sneaker"


def test_an_upstream_md5_is_checked_where_no_sha256_is_pinned(mirror, tmp_path):
    root, url = mirror
    csv = b"Question,Answer,Class\nq,a,cards\n"
    serve(root, "bank_faqs", "BankFAQs.csv", csv)
    d = REGISTRY["bank_faqs"].downloads[0]
    right = dataclasses.replace(d, sha256=None, md5=hashlib.md5(csv).hexdigest())
    wrong = dataclasses.replace(right, md5="0" * 32)
    with pytest.raises(FetchError, match="checksum mismatch for BankFAQs.csv .*: md5"):
        fetch(dataclasses.replace(REGISTRY["bank_faqs"], downloads=(wrong,)), tmp_path / "data", mirror=url)
    res = fetch(dataclasses.replace(REGISTRY["bank_faqs"], downloads=(right,)), tmp_path / "data", mirror=url)
    assert res.checked == ["BankFAQs.csv"]
    assert json.loads((res.path / MARKER).read_text())["downloads"][0]["verified"] == "upstream md5"


def test_a_served_file_missing_from_the_archive_is_a_clear_error(mirror, tmp_path):
    root, url = mirror
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ml-100k/u.data", "1\t1\t5\t100\n")
    digest = serve(root, "movielens-100k", "ml-100k.zip", buf.getvalue())
    with pytest.raises(FetchError, match="has no file 'ml-100k/README'"):
        fetch(ml100k_entry(digest), tmp_path / "data", mirror=url)


def test_an_http_error_names_the_url(mirror, tmp_path):
    _, url = mirror
    with pytest.raises(FetchError, match=r"cannot download .*/movielens-100k/ml-100k.zip: HTTP 404"):
        fetch(ml100k_entry(None), tmp_path / "data", mirror=url)
    assert os.listdir(tmp_path / "data") == []


def test_registry_entries_are_well_formed():
    for name, ds in REGISTRY.items():
        assert ds.name == name and ds.licence and ds.title
        names = [d.filename for d in ds.downloads]
        assert len(set(names)) == len(names)
        for d in ds.downloads:
            assert d.url.startswith("https://"), d.url
            assert d.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", d.sha256)
            assert d.md5 is None or re.fullmatch(r"[0-9a-f]{32}", d.md5)
        assert set(ds.pins) <= set(ds.files) | ({"class_names.txt"} if ds.convert else set())
        assert all(re.fullmatch(r"[0-9a-f]{64}", v) for v in ds.pins.values())


SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


@pytest.mark.data
@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/datasets is absent")
def test_every_sha256_pin_matches_the_local_copy_it_was_taken_from():
    # what "pinned" means here: the file in ../shared/datasets (copied byte for byte from the source) has this digest
    local = {("banking77", "train.csv"): "train.csv", ("banking77", "categories.json"): "categories.json",
             ("banking77", "LICENSE"): "LICENSE.txt", ("bank_faqs", "BankFAQs.csv"): "BankFAQs.csv",
             ("fashion_mnist", "LICENSE"): "LICENSE"}
    for ds in REGISTRY.values():
        for d in ds.downloads:
            if d.sha256:
                path = SHARED / ds.name / local[ds.name, d.filename]
                assert sha256(path.read_bytes()) == d.sha256, path
        folder = SHARED / ("movielens-1m-subset" if ds.name == "movielens-1m" else ds.name)
        for rel, want in ds.pins.items():
            assert sha256((folder / rel).read_bytes()) == want, folder / rel


# ------------------------------------------------------------------------------------------------------ the CLI
def test_cli_fetch_through_a_mirror_with_a_given_sha256(mirror, tmp_path, capsys):
    from apps.cli import main

    root, url = mirror
    csv = b"Question,Answer,Class\nHow do I block my card?,Call us.,cards\n"
    digest = serve(root, "bank_faqs", "BankFAQs.csv", csv)
    dest = tmp_path / "data"
    with pytest.raises(SystemExit) as exc:  # the pinned digest is the real file's, not this one's
        main(["data", "fetch", "bank_faqs", "--dest", str(dest), "--mirror", url])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "licence: No licence stated" in err and "error: checksum mismatch for BankFAQs.csv" in err

    assert main(["data", "fetch", "bank_faqs", "--dest", str(dest), "--mirror", url, "--sha256", digest,
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["checked"] == "BankFAQs.csv" and out["path"] == str(dest / "bank_faqs")
    assert (dest / "bank_faqs" / "BankFAQs.csv").read_bytes() == csv

    assert main(["data", "list", "--dest", str(dest), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["datasets"]}
    assert rows["bank_faqs"]["present"] == "fetched" and rows["banking77"]["present"] == "no"
    assert rows["bank_faqs"]["downloads_pinned"] == "1/1"


def test_cli_offline_fetch_prints_one_error_line_without_a_traceback(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("trident")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "apps.cli"]
    env = {**os.environ, "TRIDENT_DATA_DIR": str(tmp_path / "data"), "NO_PROXY": "127.0.0.1",
           "TRIDENT_FETCH_MIRROR": f"http://127.0.0.1:{port}"}
    r = subprocess.run([*cmd, "data", "fetch", "movielens-100k", "--timeout", "5"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: cannot download http://127.0.0.1:{port}/movielens-100k/")
    assert "GroupLens usage licence" in r.stderr  # the licence note came first
    assert os.listdir(tmp_path / "data") == []


@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "inf"])
def test_cli_a_timeout_that_is_not_a_positive_number_of_seconds_is_one_error_line(timeout, tmp_path, capsys):
    from apps.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["data", "fetch", "movielens-100k", "--dest", str(tmp_path / "data"), "--timeout", timeout])
    assert exc.value.code == 2
    assert capsys.readouterr().err == f"error: --timeout: must be a number of seconds > 0, not {float(timeout)}\n"
    assert not (tmp_path / "data").exists()
