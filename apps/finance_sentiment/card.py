"""The model cards of the finance artifacts (``MODEL_CARD.md``, see ``core.model_card``), from what each records.

The sentiment artifact (``trident fin train``): ``fin_report.json`` (the split, the test figures of the model as
served and of each member, the validation figures), ``fin_model.json`` (entity-blind or not), ``ensemble.json`` (the
members and their weights), each member's ``config.json`` (its shape and training run) and, once
``trident fin fairness`` has measured it, ``fairness.json``. The risk artifact (``trident fin risk``): its
``config.json`` and ``risk_report.json``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from apps.finance_sentiment.fairness import FAIRNESS_FILE, FairnessReport, read_report
from apps.finance_sentiment.model import MODEL_FILE, reads_entity_blind
from core.artifacts import ArtifactError, read_config
from core.engine import ENSEMBLE_FILE
from core.model_card import (
    DATA_USES,
    NO_FAIRNESS,
    ModelCard,
    Use,
    bullets,
    core_card,
    escape_markdown,
    number,
    percent,
    read_record,
    table,
    write_card,
)

REPORT_FILE = "fin_report.json"
RISK_REPORT_FILE = "risk_report.json"
RETRAIN = "trident fin train"
USE = Use(
    intended=("Score the sentiment (positive, neutral or negative) of English financial news sentences and headlines "
              "for the analysts' dashboard, where many articles are aggregated per ticker and day and alerts are "
              "raised on their changes.",),
    limits=("English only: the pretrained start (all-MiniLM-L6-v2) and the data it was trained on are English; other "
            "languages were not measured.",
            "Trained and tested on the labelled sentences under Data only; tweets, filings, analyst reports and long "
            "articles were not measured, and an article's score is a weighted mean of its sentences' scores.",
            "Not investment advice: it reads the tone of the words, not facts, prices or what the market expects."))
PHRASEBANK = DATA_USES["phrasebank"]  # the product's default data
BLIND = ("Entity-blind: company and person names are replaced by placeholders before the model reads a text, in "
         "training and in serving, so that a name alone should not move a label (see Fairness for how often it "
         "still does); a name's own sentiment, e.g. a company's reputation, is not read either.")
NOT_BLIND = ("It reads company and person names as written: a name alone can move a label (see Fairness); "
             "`FIN_TRAIN__ENTITY_BLIND=true` trains a model that reads placeholders instead.")
RISK_USE = Use(
    intended=("Estimate the risk of a large adverse move of a ticker from a window of market indicators read "
              "together with that day's headlines, compared in its report with text-only scoring.",),
    limits=("Measured on the sessions of the captured prices and feeds it was trained on only (see Splits); other "
            "tickers, markets and periods were not measured.",
            "The finance worker reads it only for alert rules of kind risk_model; it scores no single headline.",
            "Not investment advice."))
RISK_MODELS = {"fusion": "fusion model", "fusion_without_text": "fusion model reading no news",
               "text_only": "text-only scoring"}
RISK_METRICS = {"roc_auc": "ROC-AUC", "average_precision": "average precision", "brier": "Brier score"}
KIND_NAMES = {"company_real": "company (real names)", "company_invented": "company (invented names)",
              "person": "person", "pronoun": "pronoun (he / she)"}


def _json(path: Path) -> dict[str, Any]:
    return read_record(path, ArtifactError, f"retrain with `{RETRAIN}`")


def fairness_section(report: FairnessReport | None) -> str:
    """The Fairness section from the artifact's fairness report (``trident fin fairness``), or the sentence that there
    is none."""
    if report is None:
        return NO_FAIRNESS + " `trident fin fairness` measures how often a name or a pronoun alone flips a label."
    o = report.overall
    verdict = "meets" if report.meets_target else "misses"
    head = (f"Counterfactual fairness measured {report.created_at:%Y-%m-%d %H:%M} UTC on "
            f"{number(report.data.get('sentences'))} test sentences of {escape_markdown(report.data.get('path'))} "
            f"(seed {report.seed}, {report.variants} swaps per sentence and name kind): swapping a company name, a "
            f"person's name or a pronoun flipped {percent(o.flip_rate)} of {o.pairs} labels, which {verdict} the "
            f"target of at most {percent(report.target_flip_rate)}.")
    rows = [(KIND_NAMES.get(kind, kind), f.n, f.pairs, f.flips, percent(f.flip_rate), f.mean_abs_shift,
             f.max_abs_shift) for kind, f in report.kinds.items()]
    rows.append(("overall", o.n, o.pairs, o.flips, percent(o.flip_rate), o.mean_abs_shift, o.max_abs_shift))
    body = table(("swap", "sentences", "pairs", "flips", "flip rate", "mean abs shift", "max abs shift"), rows)
    tail = (f"A flip is a swap that changes the label; the shift is how far the score p(positive) - p(negative) "
            f"moves. The model read names as placeholders: {'yes' if report.entity_blind else 'no'}.")
    return f"{head}\n\n{body}\n\n{tail}"


def _first_member(folder: Path, ens: dict[str, Any]) -> Path:
    if (folder / "config.json").is_file():
        return folder
    members = ens.get("members") or []
    if not members:
        raise ArtifactError(f"no sentiment model at {folder}: train one with `{RETRAIN}`")
    return folder / members[0]


def model_card(folder: str | Path) -> ModelCard:
    """The card of the sentiment artifact in ``folder``.

    Raises:
        ArtifactError: the folder is not a (readable) sentiment artifact.
        FairnessError: its ``fairness.json`` is not a fairness report.
    """
    folder = Path(folder)
    ens, report = _json(folder / ENSEMBLE_FILE), _json(folder / REPORT_FILE)
    first = _first_member(folder, ens)
    config = read_config(first, RETRAIN)
    base = core_card(first, config, use=USE)
    blind = reads_entity_blind(folder)
    members = ens.get("members") or ["."]
    sources = [name for name in (REPORT_FILE, MODEL_FILE, ENSEMBLE_FILE, FAIRNESS_FILE) if (folder / name).is_file()]
    sources.append(str((first / "config.json").relative_to(folder)))
    split = report.get("split") or ((config.get("meta") or {}).get("data") or {}).get("sentiment") or {}
    summary = (f"The finance dashboard's sentiment model: all-MiniLM-L6-v2 fully fine-tuned into {len(members)} "
               f"member(s) whose class probabilities are averaged; it reads texts "
               f"{'entity-blind' if blind else 'with their names as written'}.")
    model = base.sections["Model"] + "\n\n" + table(("", ""), [
        ("members (weights)", ", ".join(f"{m} ({w})" for m, w in zip(members, report.get("weights") or [1.0]))),
        ("training targets", "soft: PhraseBank's annotator agreement" if report.get("targets") == "agreement"
         else "the majority labels"),
        ("entity-blind", blind)])
    data = bullets([f"{escape_markdown(split.get('path'))} ({escape_markdown(split.get('format'))}), "
                    f"{number(split.get('n'))} distinct sentences after removing duplicates"]) if split else \
        "No data source recorded in this artifact."
    note = f"validation trained on too (refit, {split['refit_epochs']} epochs)" if split.get("refit_epochs") else ""
    splits = table(("data", "train", "validation", "test", "seed", "note"),
                   [("sentences", split.get("train"), split.get("val"), split.get("test"), split.get("seed"), note)]) \
        if split else "No splits recorded in this artifact."
    test, val = report.get("test") or {}, report.get("validation") or {}
    rows = [(f"test {name}", test.get(key), "test split, the model as served")
            for key, name in (("accuracy", "accuracy"), ("macro_f1", "macro-F1"), ("weighted_f1", "weighted F1"),
                              ("n", "sentences")) if key in test]
    rows += [(f"validation {name}", val.get(key), "validation split, the model as served")
             for key, name in (("accuracy", "accuracy"), ("log_loss", "log-loss")) if key in val]
    rows += [(f"test accuracy, {m}", r.get("accuracy"), "test split")
             for m, r in zip(members, report.get("members") or []) if len(members) > 1]
    rows += [(f"test accuracy, first {k} members", a, "test split")
             for k, a in enumerate(report.get("test_by_members") or [], 1)]
    figures = table(("figure", "value", "measured on"), rows) if rows else \
        f"No figures recorded: this artifact has no {REPORT_FILE} (retrain with `{RETRAIN}`)."
    if report and not val:
        figures += "\n\nNo validation figures: the members trained on the validation split too (refit)."
    training = base.sections["Training"]
    if len(members) > 1:
        training = (f"The run of the first member ({escape_markdown(members[0])}); the others differ in their seed, "
                    f"and each member's card has its own run.\n\n{training}")
    use = USE + (PHRASEBANK if split.get("format") == "phrasebank" else Use())
    return ModelCard(title=folder.name, summary=summary, sources=tuple(sources),
                     sections={**base.sections, "Model": model, "Data": data, "Splits": splits, "Figures": figures,
                               "Training": training, "Fairness": fairness_section(read_report(folder))},
                     use=use + Use(limits=(BLIND if blind else NOT_BLIND,)))


def risk_card(folder: str | Path) -> ModelCard:
    """The card of the risk artifact in ``folder`` (``trident fin risk``)."""
    folder = Path(folder)
    config = read_config(folder, "trident fin risk")
    meta, report = config.get("meta") or {}, _json(folder / RISK_REPORT_FILE)
    base = core_card(folder, config, use=RISK_USE, summary=(
        "The finance app's fusion risk model: the sentiment model's backbone with a LoRA adapter and a numeric-series "
        "encoder, reading a window of market indicators and the day's headlines."))
    n = meta.get("n") or report.get("n") or {}
    data = bullets([f"Sessions built from the captured prices and feeds; the sentiment model it starts from: "
                    f"{escape_markdown(meta.get('sentiment_artifact'))}"])
    splits = table(("data", "train", "validation", "test"), [("sessions", n.get("train"), n.get("val"),
                                                              n.get("test"))]) if n else base.sections["Splits"]
    rows = [(f"test {metric}, {model}", (report[name].get(part) or {}).get(key), f"test sessions ({sessions})")
            for name, model in RISK_MODELS.items() if name in report
            for part, sessions in (("all", "all"), ("with_news", "with news")) for key, metric in RISK_METRICS.items()]
    figures = base.sections["Figures"]
    if rows:
        figures = table(("figure", "value", "measured on"), rows) + "\n\n" + figures
    sources = ("config.json",) + ((RISK_REPORT_FILE,) if report else ())
    return ModelCard(title=folder.name, summary=base.summary, sources=sources,
                     sections={**base.sections, "Data": data, "Splits": splits, "Figures": figures}, use=RISK_USE)


def member_card(folder: str | Path, artifact: str | Path) -> ModelCard:
    """The card of one member (``members/K``) of the sentiment ensemble ``artifact``."""
    folder, artifact = Path(folder), Path(artifact)
    blind = reads_entity_blind(artifact)
    config = read_config(folder, RETRAIN)
    phrasebank = ((config.get("meta") or {}).get("data") or {}).get("sentiment", {}).get("format") == "phrasebank"
    use = USE + (PHRASEBANK if phrasebank else Use()) + Use(limits=(BLIND if blind else NOT_BLIND,))
    card = core_card(folder, config, use=use,
                     summary=f"One member of the sentiment ensemble of {escape_markdown(artifact.name)} "
                             "(all-MiniLM-L6-v2 fully fine-tuned); the ensemble averages its class probabilities with "
                             "the others'. The test figures of each member and of the ensemble are in the ensemble's "
                             "own card.")
    return replace(card, title=f"{artifact.name} {folder.relative_to(artifact)}")


def write_cards(folder: str | Path) -> Path:
    """Write the card of the sentiment artifact in ``folder`` and of each of its members; return the artifact's."""
    folder = Path(folder)
    for member in _json(folder / ENSEMBLE_FILE).get("members") or []:
        if member != "." and (folder / member / "config.json").is_file():
            write_card(folder / member, member_card(folder / member, folder))
    return write_card(folder, model_card(folder))
