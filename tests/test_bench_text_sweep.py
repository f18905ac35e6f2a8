"""The cross-validated recipe sweep (bench/text_cv_sweep.py): its folds never hold a product test sentence, its
pretraining corpus holds no validation or test sentence, and its summary averages seeds into an ensemble per fold."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from apps.common.settings import REPO_ROOT


@pytest.fixture(scope="module")
def sweep():
    spec = importlib.util.spec_from_file_location("bench_text_cv_sweep", REPO_ROOT / "bench" / "text_cv_sweep.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture()
def data(tmp_path):
    rng = np.random.default_rng(0)
    words = ["profit", "loss", "sales", "rose", "fell", "flat", "quarter", "company", "shares", "outlook"]
    labels = ["positive", "neutral", "negative"]
    lines = {f"{' '.join(rng.choice(words, 6))} number {i} .@{labels[i % 3]}" for i in range(300)}
    d = tmp_path / "financial_phrasebank"
    d.mkdir()
    (d / "Sentences_50Agree.txt").write_bytes("\n".join(sorted(lines)).encode("latin-1"))
    return tmp_path


def test_folds_resplit_the_training_part_and_never_hold_a_test_sentence(sweep, data):
    product = sweep.product_task("fin", data)
    test = set(product.test[0])
    pool = set(product.train[0]) | set(product.val[0])
    folds = [sweep.fold_task("fin", data, f) for f in range(3)]
    for t in folds:
        train, val = set(t.train[0]), set(t.val[0])
        assert not train & val and train | val == pool and not (train | val) & test
        assert t.test == t.val  # a fold is scored on its own validation part
        assert abs(len(val) / len(pool) - 0.15) < 0.03
        assert sorted(set(t.val[1])) == [0, 1, 2]  # stratified
    assert set(folds[0].val[0]) != set(folds[1].val[0])
    assert sweep.fold_task("fin", data, "test").test == product.test


def test_pretraining_corpus_drops_validation_and_test_sentences(sweep, data):
    t = sweep.fold_task("fin", data, 0)
    product = sweep.product_task("fin", data)
    leak = [product.test[0][0], t.val[0][0]]
    corpus = sweep.tapt_corpus("fin", data, t, ["an unlabelled feed headline about shares", *leak])
    assert "an unlabelled feed headline about shares" in corpus
    assert not set(corpus) & (set(t.val[0]) | set(product.test[0]))
    assert set(t.train[0]) <= set(corpus)


def test_summary_averages_seeds_into_an_ensemble_and_picks_on_it(sweep, data, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    for f in range(2):
        y = np.asarray(sweep.fold_task("fin", data, f).test[1])
        truth = np.eye(3)[y]
        for s in range(2):
            # "good": each seed wrong on a different 20% (the average is right wherever one of them is confident)
            wrong = (np.arange(len(y)) % 5) == s
            p = np.where(wrong[:, None], 0.45 * np.eye(3)[(y + 1) % 3] + 0.3 * truth + 0.083, 0.9 * truth + 0.033)
            np.save(work / f"probs_{f}_good_{s}.npy", p)
            np.save(work / f"probs_{f}_base_{s}.npy", np.where((np.arange(len(y)) % 2 == 0)[:, None],
                                                                 np.eye(3)[(y + 1) % 3], truth))
    table = sweep.summarise("fin", data, work, ["base", "good"], seeds=2, folds=[0, 1])
    assert table["base"]["ensemble"] == pytest.approx(0.5, abs=0.01) and table["base"]["members"] == 4
    assert table["good"]["single"] == pytest.approx(0.8, abs=0.02)
    assert table["good"]["ensemble"] == 1.0 and len(table["good"]["ensemble_folds"]) == 2
    assert table["good"]["log_loss"] < table["base"]["log_loss"]
    with pytest.raises(SystemExit, match="unknown config"):
        sweep._config("fin", "nope")
    name, cfg = sweep._config("fin", '{"name": "lr5", "lr": 5e-5}')
    assert name == "lr5" and cfg == {"lr": 5e-5, "tapt": None}
