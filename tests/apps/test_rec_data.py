"""Reading interactions and items, chronological sequences, the leave-one-out split, and bad input."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from apps.common.settings import REPO_ROOT
from apps.recommender.data import (
    DataError,
    build_data,
    leave_one_out,
    load_data,
    read_interactions,
    read_movielens_1m,
    read_movielens_100k,
)

SAMPLES = REPO_ROOT / "samples"
DATASETS = REPO_ROOT.parent / "shared" / "datasets"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def items_csv(tmp_path) -> Path:
    return write(tmp_path / "items.csv", "item_id,title,genres\n1,Alpha,Drama|Comedy\n2,Beta,Drama\n3,Gamma,\n"
                                         "10,Delta,Sci-Fi\n")


def test_sequences_are_chronological_with_ties_in_file_order(tmp_path, items_csv):
    inter = write(tmp_path / "i.csv", "user_id,item_id,timestamp,rating\n"
                                      "a,3,200,5\na,2,100,4\na,10,100,1\nb,1,50,\na,1,300,3\n")
    d = load_data(inter, items_csv)
    assert d.item_ids == ["1", "2", "3", "10"]  # numeric ids in numeric order
    assert d.users == ["a", "b"]
    # a: t=100 twice (item 2 before item 10, as in the file), then 200, then 300
    assert [d.item_ids[i - 1] for i in d.history("a")] == ["2", "10", "3", "1"]
    assert d.times[0].tolist() == [100, 100, 200, 300]
    assert d.source["ties_in_time"] == 1 and d.source["users_evaluated"] == 1


def test_repeated_user_item_pairs_keep_the_first_occurrence(tmp_path, items_csv):
    inter = write(tmp_path / "i.csv", "user_id,item_id,timestamp\nu,1,5\nu,2,6\nu,1,7\nu,3,8\n")
    d = load_data(inter, items_csv)
    assert [d.item_ids[i - 1] for i in d.history("u")] == ["1", "2", "3"]
    assert d.source["repeats_dropped"] == 1


def test_iso_timestamps_and_parquet_read_like_csv(tmp_path, items_csv):
    df = pd.DataFrame({"user_id": [7, 7, 7], "item_id": [2, 1, 3],
                       "timestamp": ["2024-01-02T00:00:00Z", "2024-01-01T00:00:00Z", "2024-01-03T12:00:00Z"]})
    df.to_parquet(tmp_path / "i.parquet")
    d = load_data(tmp_path / "i.parquet", items_csv)
    assert d.users == ["7"] and [d.item_ids[i - 1] for i in d.history("7")] == ["1", "2", "3"]
    assert d.times[0][0] == 1704067200


def test_leave_one_out_holds_out_the_last_two_and_keeps_short_users_for_training(tmp_path, items_csv):
    inter = write(tmp_path / "i.csv", "user_id,item_id,timestamp\n"
                                      "long,1,1\nlong,2,2\nlong,3,3\nlong,10,4\none,2,1\ntwo,1,1\ntwo,3,2\n")
    d = load_data(inter, items_csv)
    s = leave_one_out(d)
    assert s.val.users == ["long"] and s.test.users == ["long"]
    assert s.train[d.user_index["long"]].tolist() == [1, 2]
    assert s.val.inputs[0].tolist() == [1, 2] and s.val.targets.tolist() == [3]
    assert s.test.inputs[0].tolist() == [1, 2, 3] and s.test.targets.tolist() == [4]
    assert s.train[d.user_index["one"]].tolist() == [2]  # one interaction: input only, never evaluated
    assert s.train[d.user_index["two"]].tolist() == [1, 3]


def test_genre_matrix_popularity_and_texts(tmp_path, items_csv):
    inter = write(tmp_path / "i.csv", "user_id,item_id,timestamp\na,1,1\nb,1,1\nb,2,2\n")
    d = load_data(inter, items_csv)
    g = d.genre_matrix()
    assert g.shape == (5, 3) and g[0].sum() == 0 and g[1].tolist() == [1, 1, 0]  # Comedy, Drama, Sci-Fi
    assert d.popularity().tolist() == [0, 2, 1, 0, 0]
    assert d.item_texts()[:2] == ["Alpha. Drama, Comedy", "Beta. Drama"]


def test_catalogue_without_items_file_is_the_interacted_items(tmp_path):
    d = load_data(write(tmp_path / "i.csv", "user_id,item_id,timestamp\na,x9,1\na,x10,2\n"))
    assert d.item_ids == ["x10", "x9"] and d.titles == ["x10", "x9"]


# ------------------------------------------------------------------------------------------------ bad input
def test_unknown_item_ids_are_an_error_that_names_them(tmp_path, items_csv):
    inter = write(tmp_path / "i.csv", "user_id,item_id,timestamp\na,1,1\na,99,2\nb,98,3\n")
    with pytest.raises(DataError, match=r"2 item id\(s\) .* not in the items file, e.g. '98', '99'"):
        load_data(inter, items_csv)


def test_truncated_csv_names_the_line(tmp_path, items_csv):
    inter = write(tmp_path / "i.csv", "user_id,item_id,timestamp\na,1,1\na,2,2\na,3")
    with pytest.raises(DataError, match=r"i\.csv:4: missing timestamp \(truncated file\?\)"):
        read_interactions(inter)


def test_malformed_rows_missing_columns_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="malformed"):
        read_interactions(write(tmp_path / "a.csv", "user_id,item_id,timestamp\na,1,1\na,2,2,9,9\n"))
    with pytest.raises(DataError, match=r"missing \['timestamp'\]"):
        read_interactions(write(tmp_path / "b.csv", "user_id,item_id\na,1\n"))
    with pytest.raises(DataError, match="empty"):
        read_interactions(write(tmp_path / "c.csv", ""))
    with pytest.raises(DataError, match="neither Unix seconds nor ISO-8601"):
        read_interactions(write(tmp_path / "d.csv", "user_id,item_id,timestamp\na,1,yesterday\n"))
    with pytest.raises(DataError, match="not found"):
        read_interactions(tmp_path / "nope.csv")


def test_truncated_parquet_and_gzip_are_data_errors(tmp_path):
    pd.DataFrame({"user_id": ["a"] * 50, "item_id": ["1"] * 50, "timestamp": range(50)}).to_parquet(tmp_path / "x.pq")
    raw = (tmp_path / "x.pq").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="not a readable Parquet file"):
        read_interactions(tmp_path / "cut.parquet")
    ml = tmp_path / "ml1m"
    ml.mkdir()
    blob = gzip.compress(b"1::1::5::978300760\n" * 1000)
    (ml / "ratings.dat.gz").write_bytes(blob[: len(blob) - 20])
    write(ml / "movies.dat", "1::Toy Story (1995)::Animation\n")
    with pytest.raises(DataError, match="truncated or not gzip"):
        read_movielens_1m(ml)


def test_movielens_formats_and_a_truncated_last_line(tmp_path):
    ml = tmp_path / "ml100k"
    ml.mkdir()
    write(ml / "u.data", "1\t2\t5\t881250949\n1\t1\t3\t881250949\n2\t1\t4\t881250950\n")
    flags = "|".join(["0"] * 19)
    (ml / "u.item").write_bytes(f"1|Toy Story (1995)|01-Jan-1995||http://x|{flags[:-1]}1\n"
                                f"2|Caf\xe9 Society (1995)|01-Jan-1995||http://y|0|1{flags[3:]}\n".encode("latin-1"))
    inter, items = read_movielens_100k(ml)
    assert len(inter) == 3 and items["title"].tolist()[1] == "Café Society (1995)"
    assert items["genres"].tolist() == [("Western",), ("Action",)]
    d = load_data(ml)
    assert d.source["format"] == "movielens-100k" and [d.item_ids[i - 1] for i in d.history("1")] == ["2", "1"]
    write(ml / "u.data", "1\t2\t5\t881250949\n1\t1\t3")
    with pytest.raises(DataError, match=r"u\.data:2: expected 4 fields .* \(truncated file\?\)"):
        load_data(ml)
    ml1 = tmp_path / "ml1m"
    ml1.mkdir()
    write(ml1 / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    write(ml1 / "movies.dat", "1193::One Flew (1975)::Drama\n661::James (1996)::Animation|Children's\n")
    d = load_data(ml1)
    assert d.source["format"] == "movielens-1m" and d.genres[d.item_index["661"] - 1] == ("Animation", "Children's")
    with pytest.raises(DataError, match="holds no interactions"):
        load_data(tmp_path)


def test_sample_data_reads_with_short_users_and_ties():
    d = load_data(SAMPLES / "rec_interactions.csv", SAMPLES / "rec_items.csv")
    assert d.n_items == 58 and d.n_users == 160
    lengths = [len(s) for s in d.seqs]
    assert min(lengths) == 1 and lengths.count(2) > 0
    assert d.source["ties_in_time"] > 0
    assert d.popularity()[d.item_index[str(d.n_items)]] == 0  # "The Unwatched Reel": in the catalogue, never seen


@pytest.mark.data
@pytest.mark.skipif(not (DATASETS / "movielens-100k" / "u.data").is_file(), reason="MovieLens 100k not present")
def test_movielens_100k_counts():
    d = load_data(DATASETS / "movielens-100k")
    assert (d.n_users, d.n_items, d.source["interactions"]) == (943, 1682, 100_000)
    assert len(leave_one_out(d).test) == 943


def test_build_data_rejects_no_interactions():
    empty = pd.DataFrame({"user_id": [], "item_id": [], "timestamp": [], "rating": [], "row": []})
    with pytest.raises(DataError, match="no interactions"):
        build_data(empty, None)
