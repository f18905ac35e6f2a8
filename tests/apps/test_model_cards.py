"""The apps' model cards: what ``trident cs train``, ``trident fin train`` and ``trident rec train`` write beside their
artifacts (the figures equal to those the artifact records), the fairness figures of ``trident fin fairness``, and
``trident core model-card`` on each kind of artifact."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from apps.cli import main
from apps.finance_sentiment.card import BLIND, NOT_BLIND, write_cards
from apps.finance_sentiment.fairness import Counterfactual, summarise, write_report
from core.model_card import CARD_FILE, NO_FAIRNESS, SECTIONS, escape_markdown
from tests.core.test_model_card import rows, sections


def figures(card: str) -> dict[str, str]:
    """``{figure: value}`` of a card's Figures table."""
    return {r[0]: r[1] for r in rows(sections(card)["Figures"])}


def regenerated(folder, capsys) -> str:
    """The card ``trident core model-card`` prints for ``folder`` after its card file was deleted (checking that it
    wrote the same card again)."""
    written = (folder / CARD_FILE).read_text()
    (folder / CARD_FILE).unlink()
    capsys.readouterr()
    assert main(["core", "model-card", "--artifact", str(folder)]) == 0
    printed = capsys.readouterr().out
    assert (folder / CARD_FILE).read_text() == written
    return printed


# ---------------------------------------------------------------------------------------------------- customer service
@pytest.fixture(scope="module")
def cs(cs_artifact, tmp_path_factory):
    """A private copy of the session's cs artifact (the CLI rewrites its card)."""
    return shutil.copytree(cs_artifact, tmp_path_factory.mktemp("cs_card") / "cs")


def test_cs_card_holds_the_intent_ensembles_validation_figures_and_both_splits(cs, capsys):
    card = (cs / CARD_FILE).read_text()
    assert list(sections(card)) == list(SECTIONS)
    meta = json.loads((cs / "config.json").read_text())["meta"]
    shown = figures(card)
    report = meta["intent_ensemble"]
    assert shown["validation accuracy, ensemble (as served)"] == f"{report['val_accuracy']['ensemble']:.4f}"
    assert shown["validation accuracy, intents adapter"] == f"{report['val_accuracy']['adapter']:.4f}"
    assert shown["validation log-loss, ensemble (as served)"] == f"{report['val_log_loss']['ensemble']:.4f}"
    assert shown["in-batch retrieval accuracy (best epoch)"] == f"{meta['training']['best_val_score']:.4f}"
    intents, pairs = meta["intents"], meta["retrieval_split"]
    assert rows(sections(card)["Splits"]) == [
        ["intents", str(intents["train"]), str(intents["val"]), "0", "13", ""],
        ["retrieval pairs", str(pairs["train"]), str(pairs["val"]), "0", "13", ""]]
    assert pairs["train"] + pairs["val"] == meta["retrieval_pairs"]
    training = {r[0]: r for r in rows(sections(card)["Training"])}
    assert training["intents adapter"][2] == str(meta["intents_training"]["steps"])
    assert training["retrieval adapter"][2] == str(meta["training"]["steps"])
    assert sections(card)["Fairness"] == NO_FAIRNESS
    assert "support agent" in sections(card)["Intended use"]
    assert printed_card(cs, capsys) == card


def printed_card(folder, capsys) -> str:
    return regenerated(folder, capsys).rstrip("\n") + "\n"


# ---------------------------------------------------------------------------------------------------- finance
@pytest.fixture
def fin(fin_artifact, tmp_path):
    """A private copy of the session's sentiment artifact."""
    return shutil.copytree(fin_artifact, tmp_path / "fin")


def test_fin_card_holds_the_test_figures_of_its_report_and_says_it_reads_names(fin, capsys):
    card = (fin / CARD_FILE).read_text()
    report = json.loads((fin / "fin_report.json").read_text())
    shown = figures(card)
    for key, name in (("accuracy", "accuracy"), ("macro_f1", "macro-F1"), ("weighted_f1", "weighted F1")):
        assert shown[f"test {name}"] == f"{report['test'][key]:.4f}"
    assert shown["test sentences"] == str(report["test"]["n"]) == str(report["split"]["test"])
    assert shown["validation accuracy"] == f"{report['validation']['accuracy']:.4f}"
    split = report["split"]
    assert rows(sections(card)["Splits"])[0][1:4] == [str(split["train"]), str(split["val"]), str(split["test"])]
    assert not report["entity_blind"] and NOT_BLIND in card and BLIND not in card
    assert sections(card)["Fairness"].startswith(NO_FAIRNESS)
    assert printed_card(fin, capsys) == card


def test_fin_card_shows_the_fairness_report_beside_the_artifact(fin):
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.6, 0.2]])
    cfs = [Counterfactual(0, "company_invented", "Contoso sales rose.", (("Acme", "Contoso"),)),
           Counterfactual(0, "company_real", "Siemens sales rose.", (("Acme", "Siemens"),)),
           Counterfactual(1, "person", "Wei Zhang spoke.", (("Jane Doe", "Wei Zhang"),))]
    cf_probs = np.array([[0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.2, 0.6, 0.2]])
    report = summarise(["Acme sales rose.", "Jane Doe spoke."], probs, cfs, cf_probs, labels=["positive", "neutral"],
                       artifact=str(fin), entity_blind=False, data={"path": "a_*path*.csv", "sentences": 2}, seed=13,
                       variants=1)
    write_report(report, fin / "fairness.json")
    write_cards(fin)
    fairness = sections((fin / CARD_FILE).read_text())["Fairness"]
    assert "flipped 33.33% of 3 labels, which misses the target of at most 1.00%" in fairness
    assert "a\\_\\*path\\*.csv" in fairness
    kinds = {r[0]: r for r in rows(fairness)}
    assert kinds["overall"][1:5] == ["2", "3", "1", "33.33%"]
    assert kinds["company (invented names)"][3:5] == ["1", "100.00%"]
    assert kinds["overall"][5] == f"{report.overall.mean_abs_shift:.4f}"


# ---------------------------------------------------------------------------------------------------- recommender
@pytest.fixture(scope="module")
def rec(rec_artifact, tmp_path_factory):
    return shutil.copytree(rec_artifact, tmp_path_factory.mktemp("rec_card") / "rec")


def test_rec_card_holds_the_test_figures_of_the_model_and_both_baselines(rec, capsys):
    card = (rec / CARD_FILE).read_text()
    report = json.loads((rec / "report.json").read_text())
    config = json.loads((rec / "config.json").read_text())
    shown = figures(card)
    assert shown["test NDCG@10, generative recommender"] == f"{report['ndcg@10']:.4f}"
    assert shown["test HR@10, SASRec baseline"] == f"{report['baselines']['sasrec']['hr@10']:.4f}"
    assert shown["test MRR, popularity baseline"] == f"{report['baselines']['popularity']['mrr']:.4f}"
    assert shown["best validation NDCG@10, generative recommender"] == \
        f"{config['training']['model']['best_val_ndcg@10']:.4f}"
    test = next(r for r in rows(sections(card)["Splits"]) if r[0] == "test")
    assert test[2] == str(report["n_users"]) == str(config["data"]["users_evaluated"])
    assert escape_markdown(config["data"]["path"]) in sections(card)["Data"]
    assert "MovieLens" not in card  # the sample data is not MovieLens: the card does not say it is
    assert printed_card(rec, capsys) == card


def test_rec_models_have_cards_of_their_own(rec, capsys):
    for name, what in (("model", "generative recommender"), ("sasrec", "SASRec baseline")):
        card = (rec / name / CARD_FILE).read_text()
        assert card.startswith(f"# Model card: rec {name}\n") and f"The {what} of the recommender artifact" in card
        assert re.search(r"\| task next \| next\\_item \|", card)
        assert printed_card(rec / name, capsys) == card
