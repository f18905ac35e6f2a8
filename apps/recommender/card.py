"""The model card of the recommender artifact (``MODEL_CARD.md``, see ``core.model_card``), from what it records:
``config.json`` (the data source, the protocol, each model's training), ``report.json`` (the test evaluation of the
model and both baselines) and the two sequence models' own ``config.json``, each of which gets a card of its own.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from apps.recommender.model import MODELS, RecArtifactError, read_config
from core.artifacts import ArtifactError
from core.artifacts import read_config as read_core_config
from core.model_card import (
    NO_FAIRNESS,
    ModelCard,
    Use,
    bullets,
    core_card,
    escape_markdown,
    number,
    read_record,
    setting,
    table,
    training_rows,
    write_card,
)

REPORT_FILE = "report.json"
USE = Use(
    intended=("Rank the next items for a user of its training data from that user's history, for the recommender "
              "dashboard and the batch job that writes every user's top-K.",),
    limits=("It knows the users, items and catalogue of its training data only (see Data): another catalogue needs "
            "retraining, and a user it has not seen gets the most popular items, labelled so.",
            "Implicit feedback: every interaction counts as interest, whatever its rating, so an item a user disliked "
            "still pulls similar items up.",
            "Measured offline, leave-one-out on the same users' last items; an online test with real users was not "
            "run.",
            "It learns from what users did: it favours items that were already popular, and anyone underrepresented "
            "in the data is served less well."))
MOVIELENS = ("MovieLens users only: volunteers of a film-rating web site (mostly from the USA, in the 1990s and "
             "2000s); other audiences, and other kinds of items than films, were not measured.")
MODEL_NAMES = {"model": "generative recommender", "sasrec": "SASRec baseline", "popularity": "popularity baseline"}
METRICS = (("hr@10", "HR@10"), ("ndcg@10", "NDCG@10"), ("mrr", "MRR"), ("coverage", "coverage"),
           ("diversity", "diversity"), ("novelty", "novelty"))


def _report(folder: Path) -> dict:
    return read_record(folder / REPORT_FILE, RecArtifactError, "evaluate again with `trident rec train`")


def model_card(folder: str | Path) -> ModelCard:
    """The card of the recommender artifact in ``folder``.

    Raises:
        RecArtifactError: the folder is not a (readable) recommender artifact.
    """
    folder = Path(folder)
    config, report = read_config(folder), _report(folder)
    try:
        model = core_card(folder / "model", read_core_config(folder / "model"))
    except ArtifactError as exc:
        raise RecArtifactError(str(exc)) from None
    data, training = config.get("data") or {}, config.get("training") or {}
    text = ", its items starting from MiniLM embeddings of their titles" if config.get("text_features") else ""
    summary = ("The recommender dashboard's model: the shared core in causal mode over item sequences (the generative "
               f"recommender{text}), trained and evaluated with two baselines on the same split: SASRec and "
               "popularity.")
    model_md = model.sections["Model"] + "\n\n" + table(("", ""), [
        ("created", config.get("created")), ("catalogue", f"{config.get('n_items')} items"),
        ("catalogue fingerprint", data.get("fingerprint")),
        ("baselines", "SASRec (the same loop, ids only) in sasrec/, and popularity counted on the training "
                      "sequences")])
    source = [f"Interactions: {escape_markdown(data.get('path'))} ({escape_markdown(data.get('format'))})"]
    if data.get("items_path"):
        source.append(f"Catalogue: {escape_markdown(data['items_path'])}")
    source.append(f"{number(data.get('users'))} users, {number(data.get('items'))} items, "
                  f"{number(data.get('interactions'))} interactions ({number(data.get('repeats_dropped'))} repeated "
                  f"user-item pairs dropped of {number(data.get('interactions_read'))} read)")
    cases = data.get("users_evaluated")
    splits = (f"Protocol: {escape_markdown(config.get('protocol'))}.\n\n"
              + table(("part", "what", "users"), [
                  ("train", "each user's history without its last two items (a user with fewer than three trains "
                            "on all and is not evaluated)", data.get("users")),
                  ("validation", "the second-to-last item (early stopping on NDCG@10)", cases),
                  ("test", "the last item", report.get("n_users", cases))]))
    rows = [(f"test {label}, {MODEL_NAMES[name]}", m.get(key), "test cases, full ranking")
            for name, m in (("model", report), *(report.get("baselines") or {}).items()) if name in MODEL_NAMES
            for key, label in METRICS if m and key in m]
    rows += [(f"best validation NDCG@10, {MODEL_NAMES.get(name, name)}", h.get("best_val_ndcg@10"),
              "validation cases, best epoch (the weights kept)") for name, h in training.items()]
    figures = table(("figure", "value", "measured on"), rows) if rows else "No figures recorded."
    if not report:
        figures += f"\n\nNo test evaluation recorded ({REPORT_FILE} is missing): `trident rec eval` measures it."
    runs = table(("model", "epochs", "best epoch", "seconds per epoch", "training seconds", "parameters"),
                 [(MODEL_NAMES.get(n, n), h.get("epochs"), h.get("best_epoch"), setting(h.get("seconds_per_epoch")),
                   setting(h.get("train_seconds")), h.get("n_params")) for n, h in training.items()]) if training else \
        "No training history recorded."
    knobs = training_rows({"train_config": (config.get("settings") or {}).get("train") or {}})
    if knobs:
        runs += "\n\nThe settings both models trained with:\n\n" + table(("", ""), knobs)
    fmt = str(data.get("format") or "")
    use = USE + Use(limits=(MOVIELENS,)) if fmt.startswith("movielens") else USE
    sources = ("config.json", "model/config.json") + ((REPORT_FILE,) if report else ())
    return ModelCard(title=folder.name, summary=summary, sources=sources,
                     sections={"Model": model_md, "Data": bullets(source), "Splits": splits, "Figures": figures,
                               "Training": runs, "Fairness": NO_FAIRNESS},
                     use=use)


def member_card(folder: str | Path) -> ModelCard:
    """The card of one sequence model (``model/`` or ``sasrec/``) of the recommender artifact that holds ``folder``."""
    folder = Path(folder)
    try:
        card = core_card(folder, read_core_config(folder, f"trident rec train --out {folder.parent}"), use=USE,
                         summary=f"The {MODEL_NAMES.get(folder.name, folder.name)} of the recommender artifact "
                                 f"{escape_markdown(folder.parent.name)}; its test figures, beside the other models', "
                                 "are in that artifact's card.")
    except ArtifactError as exc:
        raise RecArtifactError(str(exc)) from None
    return replace(card, title=f"{folder.parent.name} {folder.name}")


def write_cards(folder: str | Path) -> Path:
    """Write the card of the recommender artifact in ``folder`` and of its two sequence models; return the first."""
    folder = Path(folder)
    for name in MODELS:
        write_card(folder / name, member_card(folder / name))
    return write_card(folder, model_card(folder))
