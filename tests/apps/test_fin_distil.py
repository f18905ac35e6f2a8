"""`trident fin distil`: the sentiment teacher distilled into one student model, entity-blind like its teacher, on the
labelled sample sentences and the sentences of feed files (test sentences removed), served by the app's loader."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from apps.cli import main
from apps.common.settings import REPO_ROOT
from apps.finance_sentiment.settings import FinDistilSettings

SAMPLES = REPO_ROOT / "samples"
# two test sentences of samples/fin_sentences.csv (as sentiment_task splits it), one written differently, and a new one
FEED = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Wire</title><link>http://example.com/</link><description>news</description>
<item><title>The transaction is subject to approval by the competition authorities.</title>
<link>http://example.com/1</link><description>Quarterly sales doubled at the plant.</description></item>
<item><title>THE DEAL includes the transfer of  45 employees to the buyer.</title><link>http://example.com/2</link>
</item>
</channel></rss>
"""


@pytest.fixture(scope="module")
def blind_teacher(fin_artifact, tmp_path_factory):
    """The sample sentiment model, served entity-blind (its fin_model.json says so): the teacher."""
    folder = tmp_path_factory.mktemp("teacher") / "fin"
    shutil.copytree(fin_artifact, folder)
    (folder / "fin_model.json").write_text(json.dumps({"entity_blind": True}))
    return folder


@pytest.fixture(scope="module")
def student(blind_teacher, tmp_path_factory):
    from apps.finance_sentiment.pipeline import distil_sentiment

    folder = tmp_path_factory.mktemp("student")
    (folder / "wire.rss").write_text(FEED)
    settings = FinDistilSettings(layers=2, train={"max_epochs": 2, "batch_size": 16, "max_length": 48})
    report = distil_sentiment(blind_teacher, SAMPLES / "fin_sentences.csv", folder / "fin", fmt="csv",
                              settings=settings, unlabelled=[folder / "wire.rss", SAMPLES / "feeds"])
    return folder / "fin", report


def test_student_is_one_entity_blind_model_that_the_apps_loader_serves(student, blind_teacher):
    from apps.finance_sentiment.model import EntityBlindModel, load_sentiment_model
    from apps.finance_sentiment.scoring import SentimentScorer
    from core.engine import ENSEMBLE_FILE, InferenceEngine

    out, report = student
    assert (out / "config.json").is_file() and not (out / ENSEMBLE_FILE).exists() and not (out / "members").exists()
    assert json.loads((out / "fin_model.json").read_text()) == {"entity_blind": True}
    model = load_sentiment_model(out)
    assert isinstance(model, EntityBlindModel) and len(model.members) == 1
    engine = model.members[0].engine
    assert engine.path == out and engine.model.cfg.n_layer == 2 and len(engine.model.backbone.h) == 2
    assert InferenceEngine(out).tasks["sentiment"].labels == ("negative", "neutral", "positive")
    # served entity-blind: a company's name does not change the score
    p = model.classify_proba(["Northwind Traders raised its profit forecast.", "Fabrikam raised its profit forecast."])
    np.testing.assert_allclose(p[0], p[1], atol=1e-6)
    scored = SentimentScorer(model).score_articles([{"title": "Profit rose sharply.", "summary": "Sales fell."}])
    assert scored[0] is not None and len(scored[0].sentences) == 2
    # the report: the student's and the teacher's test metrics on the same test split, and the distillation record
    d = report["distillation"]
    assert report["test"]["n"] == report["teacher"]["test"]["n"] == report["split"]["test"] == 12
    assert report["teacher"]["path"] == str(blind_teacher) and d["teacher"]["path"] == str(blind_teacher)
    assert d["teacher"]["test_accuracy"] == pytest.approx(report["teacher"]["test"]["accuracy"], abs=1e-4)
    assert d["test"]["accuracy"] == pytest.approx(report["test"]["accuracy"], abs=1e-4)
    assert (d["layers"], d["alpha"], d["temperature"], d["labelled"]) == (2, 0.5, 2.0, report["split"]["train"])
    assert json.loads((out / "fin_report.json").read_text())["distillation"] == d
    meta = json.loads((out / "config.json").read_text())["meta"]
    assert meta["teacher_entity_blind"] is True and meta["distillation"] == d


def test_feed_sentences_of_the_test_split_are_removed_before_training(student):
    from apps.finance_sentiment.pipeline import feed_sentences, sentiment_task
    from core.data import text_key

    _, report = student
    d = report["distillation"]
    assert d["leakage_removed"] == 2  # the two test sentences of wire.rss, one in capitals and with a double space
    sentences = feed_sentences([SAMPLES / "feeds"])
    test = {text_key(t) for t in sentiment_task(SAMPLES / "fin_sentences.csv", "csv").test[0]}
    assert not {text_key(s) for s in sentences} & test  # the sample feeds hold none
    assert d["unlabelled"] == len({text_key(s) for s in sentences} | {"quarterly sales doubled at the plant."})


def test_feed_sentences_are_the_headlines_and_summary_sentences_of_each_article_once(tmp_path):
    from apps.finance_sentiment.pipeline import feed_sentences

    (tmp_path / "a.rss").write_text(FEED)
    (tmp_path / "b.xml").write_text(FEED)  # the same articles again: read once
    assert feed_sentences([tmp_path]) == ["The transaction is subject to approval by the competition authorities.",
                                          "Quarterly sales doubled at the plant.",
                                          "THE DEAL includes the transfer of 45 employees to the buyer."]


@pytest.fixture(scope="module")
def other_task_artifact(tmp_path_factory):
    """A core artifact whose one task is not sentiment."""
    from core.artifacts import save_artifact
    from core.config import ModelConfig
    from core.tasks import CoreModel, TaskSpec
    from core.tokenizer import Tokenizer

    tok = Tokenizer.train(["my card is lost", "refund my money please"] * 5, vocab_size=60, min_frequency=1)
    model = CoreModel(ModelConfig.tiny(vocab_size=tok.vocab_size),
                      [TaskSpec(name="intent", kind="classify", labels=("card", "refund"))])
    return save_artifact(tmp_path_factory.mktemp("other") / "a", model.eval(), tok)


def test_fin_distil_cli_errors_are_one_line(tmp_path, capsys, other_task_artifact, blind_teacher):
    data = ["--data", str(SAMPLES / "fin_sentences.csv"), "--unlabelled", str(SAMPLES / "feeds")]
    cases = [
        (["--teacher", str(tmp_path / "none"), *data], f"error: teacher not found: {tmp_path / 'none'}"),
        (["--teacher", str(blind_teacher), "--layers", "7", *data],
         "error: --layers: must be <= 6 (FIN_DISTIL__LAYERS)"),
        (["--teacher", str(blind_teacher), "--layers", "0", *data],
         "error: --layers: must be >= 1 (FIN_DISTIL__LAYERS)"),
        (["--teacher", str(other_task_artifact), *data], "has no text classification task 'sentiment'"),
        (["--teacher", str(blind_teacher), "--out", str(blind_teacher), *data],
         "the student cannot be written over its teacher"),
        (["--teacher", str(blind_teacher), "--data", str(tmp_path / "missing.csv")], "data file not found"),
        (["--teacher", str(blind_teacher), "--data", str(SAMPLES / "fin_sentences.csv"), "--unlabelled",
          str(tmp_path / "none.rss")], f"feed file not found: {tmp_path / 'none.rss'}"),
    ]
    for argv, needle in cases:
        capsys.readouterr()
        assert main(["fin", "distil", "--out", str(tmp_path / "out"), *argv]) == 2, argv
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1 and err.startswith("error: "), (argv, err)
    assert not (tmp_path / "out").exists()
    assert (blind_teacher / "config.json").is_file()  # the teacher is untouched


def test_teacher_trained_on_another_split_is_refused(blind_teacher, tmp_path):
    from apps.finance_sentiment.pipeline import distil_sentiment

    other = tmp_path / "other.csv"
    rows = (SAMPLES / "fin_sentences.csv").read_text().splitlines()
    other.write_text("\n".join(rows[:-3]) + "\n")
    with pytest.raises(ValueError, match="was trained on another split"):
        distil_sentiment(blind_teacher, other, tmp_path / "out", fmt="csv")
    assert not (tmp_path / "out").exists()
