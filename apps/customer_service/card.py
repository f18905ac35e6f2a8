"""The model card of the customer-service artifact (``MODEL_CARD.md``, see ``core.model_card``), from what the artifact
records: ``config.json`` (the intents' source and split, the intent ensemble's validation report, the retrieval pairs,
each adapter's training history) and ``ensemble.json`` (the members and their weights). Each fully fine-tuned member
(``intents-full/``, ...) gets a card of its own.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

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
    read_record,
    setting,
    table,
    write_card,
)

RETRAIN = "trident cs train"
USE = Use(
    intended=("Suggest to a support agent, in the support console, the intent of an English customer message and the "
              "knowledge-base entry that answers it; the agent accepts, edits or rejects each suggestion.",
              "Answer a customer directly only above the confidence calibrated on the knowledge base; below it the "
              "bot asks which entry is meant or hands the conversation over to a person."),
    limits=("English only: the pretrained start (all-MiniLM-L6-v2) and the data it was trained on are English; other "
            "languages were not measured.",
            "It knows the intents of its training file only (see Data): a message about anything else is still put "
            "into one of them.",
            "Retrieval finds entries of the knowledge base it indexes; an answer that is not in it cannot be found, "
            "and a new knowledge base is measured with `trident cs eval-retrieval`.",
            "Not for decisions about a customer (credit, complaints, fraud) without a person reviewing them."))
VIEW_NAMES = {"intents": "intents adapter", "intents-base": "linear head on the frozen base",
              "full": "fully fine-tuned members (average)", "adapter": "intents adapter",
              "base_head": "linear head on the frozen base", "ensemble": "ensemble (as served)"}


def _ensemble(folder: Path) -> dict[str, Any]:
    return read_record(folder / ENSEMBLE_FILE, ArtifactError, RETRAIN)


def _history_row(run: str, h: dict | None) -> tuple[Any, ...]:
    h = h or {}
    return (run, h.get("epochs"), h.get("steps"), setting(h.get("train_seconds")), h.get("best_val_score"))


def model_card(folder: str | Path) -> ModelCard:
    """The card of the cs artifact in ``folder``.

    Raises:
        ArtifactError: the folder is not a (readable) artifact.
    """
    folder = Path(folder)
    config = read_config(folder, RETRAIN)
    meta, ens = config.get("meta") or {}, _ensemble(folder)
    base = core_card(folder, config, use=USE)
    intents, report = meta.get("intents") or {}, meta.get("intent_ensemble") or {}
    full = [m for m, k in zip(ens.get("members", []), ens.get("kinds", [])) if k == "full"]
    labels = next((t.get("labels", []) for t in config.get("tasks", []) if t.get("name") == "intents"), [])
    summary = ("The support console's model: all-MiniLM-L6-v2 with its base weights frozen, a LoRA adapter for "
               "intents and one for retrieval (the knowledge-base embeddings), and an intent ensemble of the "
               f"adapter, a linear head on the frozen base and {len(full)} fully fine-tuned member(s).")
    model = base.sections["Model"]
    if ens:
        members = ens.get("members", [])
        tasks = ens.get("tasks") or [ens.get("task")] * len(members)
        model += "\n\nThe intent ensemble as served (`ensemble.json`):\n\n" + table(
            ("member", "kind", "weight"), zip([f"task {t} of this folder" if m == "." else m for m, t in
                                               zip(members, tasks)], ens.get("kinds", []), ens.get("weights", [])))
    data = []
    if intents:
        data.append(f"Intents: {escape_markdown(intents.get('path'))} ({escape_markdown(intents.get('format'))}), "
                    f"{number(intents.get('n'))} distinct messages after removing duplicates, {len(labels)} intents")
    pairs = meta.get("retrieval_pairs")
    if pairs is not None:
        data.append(f"Retrieval: {number(pairs)} (query, knowledge-base entry) pairs")
    if meta.get("learned_from_feedback"):
        data.append(f"Then fine-tuned on {number(meta['learned_from_feedback'])} pairs of the agents' accepted and "
                    "edited answers (`trident cs learn`)")
    split = meta.get("retrieval_split") or {}
    rows = []
    if intents:
        refit = f"the full members trained on validation too (refit, {report['refit_epochs']} epochs)" \
            if report.get("refit_epochs") else ""
        rows.append(("intents", intents.get("train"), intents.get("val"), intents.get("test"), intents.get("seed"),
                     refit))
    if pairs is not None:
        name = "feedback pairs" if meta.get("learned_from_feedback") else "retrieval pairs"
        rows.append((name, split.get("train"), split.get("val"), 0, split.get("seed"),
                     "" if split else "the split's sizes are not recorded (an artifact of an earlier version)"))
    figures = [(f"validation accuracy, {VIEW_NAMES.get(v, v)}", a, "intents validation split")
               for v, a in (report.get("val_accuracy") or {}).items() if not isinstance(a, dict)]
    figures += [(f"validation accuracy, member {m}", a, "intents validation split")
                for m, a in ((report.get("val_accuracy") or {}).get("members") or {}).items() if m != "intents"]
    figures += [(f"validation log-loss, {VIEW_NAMES.get(v, v)}", x, "intents validation split")
                for v, x in (report.get("val_log_loss") or {}).items()]
    if pairs is not None and (meta.get("training") or {}).get("best_val_score") is not None:
        figures.append(("in-batch retrieval accuracy (best epoch)", meta["training"]["best_val_score"],
                        "retrieval validation pairs"))
    notes = []
    if report.get("validation_seen_by"):
        notes.append("The validation figures of " + ", ".join(escape_markdown(v) for v in report["validation_seen_by"])
                     + " are not held-out ones: those members trained on the validation split (refit).")
    notes.append("No test figures are recorded at training time: `trident cs eval-intents --data CSV` and "
                 "`trident cs eval-retrieval --kb KB --queries Q` measure held-out files.")
    runs = [_history_row("intents adapter", meta.get("intents_training"))] if meta.get("intents_training") else []
    if pairs is not None and meta.get("training"):
        runs.append(_history_row("retrieval adapter", meta["training"]))
    training = table(("run", "epochs", "steps", "seconds", "best validation score"), runs) if runs else \
        "No training history recorded."
    if meta.get("lora_r") is not None:
        training += f"\n\nLoRA rank of the intents adapter: {number(meta['lora_r'])}."
    limits = USE.limits
    if "banking77" in str(intents.get("path", "")).lower():
        limits += DATA_USES["banking77"].limits
    sections = {**base.sections, "Model": model, "Data": bullets(data) or "No data source recorded in this artifact.",
                "Splits": table(("data", "train", "validation", "test", "seed", "note"), rows) if rows else
                "No splits recorded in this artifact.",
                "Figures": (table(("figure", "value", "measured on"), figures) if figures else "No figures recorded.")
                + "\n\n" + " ".join(notes), "Training": training, "Fairness": NO_FAIRNESS}
    return ModelCard(title=folder.name, summary=summary, sources=("config.json",) + ((ENSEMBLE_FILE,) if ens else ()),
                     sections=sections, use=Use(USE.intended, limits))


def member_card(folder: str | Path) -> ModelCard:
    """The card of a fully fine-tuned member (``intents-full/``, ...) of the cs artifact that holds ``folder``."""
    folder = Path(folder)
    card = core_card(folder, read_config(folder, RETRAIN), use=USE, summary=(
        "One fully fine-tuned member of the support console's intent ensemble (all-MiniLM-L6-v2, every weight "
        f"trained on the intents); the ensemble of {escape_markdown(folder.parent.name)} serves it with the weight "
        "its `ensemble.json` gives, and its card holds the ensemble's validation figures."))
    return replace(card, title=f"{folder.parent.name} {folder.name}")


def write_cards(folder: str | Path) -> Path:
    """Write the card of the cs artifact in ``folder`` and of each of its full members; return the artifact's card."""
    folder = Path(folder)
    ens = _ensemble(folder)
    for member, kind in zip(ens.get("members", []), ens.get("kinds", [])):
        if kind == "full" and (folder / member / "config.json").is_file():
            write_card(folder / member, member_card(folder / member))
    return write_card(folder, model_card(folder))
