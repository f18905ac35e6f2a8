"""Model cards: ``MODEL_CARD.md`` in every artifact folder, generated from what the artifact records.

A card has fixed sections (:data:`SECTIONS`): the model, its data, the splits, the figures measured at training time,
the training run, fairness, intended use and limits. Everything but the last two comes from the folder's own records
(``config.json`` here; the apps add their reports); intended use and limits come from the tables below, one entry per
task kind and per benchmark data set (the apps keep their own), so a card never says more than its artifact holds: a
figure that was not measured is said to be missing, never estimated.

``save_artifact`` writes the core's card (:func:`core_card`) with every artifact; an app that completes an artifact
with its own reports writes its card over it (``apps/<app>/card.py``), and ``trident core model-card`` writes any
artifact's card again without retraining.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CARD_FILE = "MODEL_CARD.md"
SECTIONS = ("Model", "Data", "Splits", "Figures", "Training", "Fairness", "Intended use", "Limits")
NO_FAIRNESS = "No fairness evaluation recorded for this artifact."
# Characters that would make Markdown, HTML, LaTeX or a Streamlit directive (:red[...], :smile:) of a recorded text
# inside a line (a link needs its '[', so '(' stays; a directive or an emoji needs a letter after its ':', so a time
# stays). Digits, '.', '-', '+', '#' and '%' stay as written, so that a figure reads the same in the file and on the
# page: no line of a card starts with recorded text, where they would matter.
_INLINE_SPECIAL = re.compile(r"[\\`*_\[\]<>|$~&]|:(?=[A-Za-z_])")


@dataclass(frozen=True)
class Use:
    """What a model is for (``intended``) and where it falls short (``limits``): sentences of Markdown."""

    intended: tuple[str, ...] = ()
    limits: tuple[str, ...] = ()

    def __add__(self, other: Use) -> Use:
        """Both, each sentence once, in order."""
        return Use(tuple(dict.fromkeys(self.intended + other.intended)),
                   tuple(dict.fromkeys(self.limits + other.limits)))


ENGLISH = ("English only: the pretrained start (all-MiniLM-L6-v2) and the data it was trained on are English; other "
           "languages were not measured.")
# By task kind: what any model with a task of that kind is for.
KIND_USES: dict[str, Use] = {
    "classify": Use(("Label short English texts with one of the labels of its training file.",),
                    (ENGLISH, "It knows the labels of its training file only: any other text still gets one of them.",
                     "It reads the first `max_length` tokens of a text (see Training); the rest is not read.")),
    "pairs": Use(("Embed English texts so that a query lies close to the entries that answer it (retrieval).",),
                 (ENGLISH, "Trained on the pairs counted under Data; other domains were not measured.")),
    "lm": Use(("A starting point for fine-tuning, and short continuations of a prompt in the demo.",),
              ("Not an instruction-following or factual model: its continuations may be fluent and wrong.",
               ENGLISH)),
    "image_classify": Use(("Label small grayscale images with one of the classes of its training set.",),
                          ("Measured on images like its training set's only (28x28 grayscale, one centred object); "
                           "photos and other kinds of picture were not measured.",)),
    "series_classify": Use(("Label a window of numeric indicators read together with a text.",),
                           ("Measured on the series and texts of its training data only.",)),
    "next_item": Use(("Score the next item of a user's history, over the catalogue it was trained on.",),
                     ("It knows the items of its training catalogue only; another catalogue needs retraining.",)),
    "cloze": Use((), ("The cloze task only trains the item model; it is not served on its own.",)),
}
# By task name: the data sets of the core's benchmark recipes (``core/recipes.py``).
DATA_USES: dict[str, Use] = {
    "banking77": Use(limits=("Banking77's 77 intents only: English questions of a bank's customers (PolyAI); a "
                             "question about anything else is still put into one of them.",)),
    "phrasebank": Use(limits=("Financial PhraseBank-style sentences only: short English statements from financial "
                              "news, labelled from an investor's point of view; tweets, reports and long articles "
                              "were not measured.",
                              "Annotators disagreed on part of the sentences (50% agreement subset): a single "
                              "sentence's label is noisy.")),
    "fashion": Use(limits=("Fashion-MNIST's 10 classes of clothing only (28x28 grayscale product images on a black "
                           "background).",)),
}
METRIC_NAMES = {"acc": "accuracy", "macro_f1": "macro-F1", "loss": "loss", "ppl": "perplexity", "hr@10": "HR@10",
                "ndcg@10": "NDCG@10", "mrr": "MRR", "score": "score"}


def escape_markdown(text: object) -> str:
    """A recorded text (a path, a label, a name) to be shown literally inside a line of a card: newlines become
    spaces, and every character that Markdown, HTML, LaTeX or a Streamlit directive would read is backslash-escaped.
    ``None`` is ``-``."""
    if text is None:
        return "-"
    return _INLINE_SPECIAL.sub(lambda m: "\\" + m.group(), " ".join(str(text).split()))


def number(value: Any, digits: int = 4) -> str:
    """A figure as the card writes it: a float with ``digits`` decimals, an int as it is, a missing one as ``-``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return escape_markdown(value)


def percent(value: float | None) -> str:
    """A share as a percentage with two decimals (``0.0123`` -> ``1.23%``); ``-`` when missing."""
    return "-" if value is None else f"{100 * value:.2f}%"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table; every cell is escaped (:func:`escape_markdown`) or formatted (:func:`number`)."""
    lines = ["| " + " | ".join(escape_markdown(h) for h in header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(number(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def bullets(items: Iterable[str]) -> str:
    """A Markdown list of sentences that are already Markdown (records inside them escaped by the caller)."""
    return "\n".join(f"- {item}" for item in items)


@dataclass(frozen=True)
class ModelCard:
    """A card: a title, a summary, the files it was generated from, and one Markdown body per section of
    :data:`SECTIONS` (``use`` gives the last two)."""

    title: str
    summary: str
    sources: tuple[str, ...]
    sections: Mapping[str, str] = field(default_factory=dict)
    use: Use = Use()

    def render(self) -> str:
        """The card as Markdown: the title, the summary, where it came from, then every section in order."""
        bodies = {**self.sections, "Intended use": bullets(self.use.intended) or "Not recorded.",
                  "Limits": bullets(self.use.limits) or "Not recorded."}
        sources = ", ".join(f"`{s}`" for s in self.sources)
        out = [f"# Model card: {escape_markdown(self.title)}", "", self.summary, "",
               f"Generated from this folder's {sources}; `trident core model-card --artifact DIR` writes it again.", ""]
        for name in SECTIONS:
            out += [f"## {name}", "", bodies.get(name) or "Not recorded.", ""]
        return "\n".join(out)


def write_card(folder: str | Path, card: ModelCard) -> Path:
    """Write ``card`` to ``folder/MODEL_CARD.md`` (replacing an older one in one step); return the file."""
    path = Path(folder) / CARD_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # the processes of a distributed run may write at once
    tmp.write_text(card.render(), encoding="utf-8")
    tmp.replace(path)
    return path


def read_record(path: Path, error: type[Exception], hint: str) -> dict[str, Any]:
    """The JSON record (a report, ``ensemble.json``) at ``path`` that a card reads, ``{}`` where there is none.

    Raises:
        error: The file is corrupt (its message ends with ``hint``: how to make the record again).
    """
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path} is corrupt: {exc}; {hint}") from None


@dataclass(frozen=True)
class CardText:
    """An artifact's card as a dashboard shows it: the Markdown, the file it is (or would be) in, and whether it was
    read from that file or, the artifact having none yet, generated from its records just now."""

    path: Path
    markdown: str
    written: bool


def read_card(folder: str | Path, make: Callable[[], ModelCard]) -> CardText:
    """The card of the artifact in ``folder``: its ``MODEL_CARD.md``, or where it has none, ``make()`` rendered (and
    not written: a dashboard only reads)."""
    path = Path(folder) / CARD_FILE
    if path.is_file():
        return CardText(path, path.read_text(encoding="utf-8", errors="replace"), True)
    return CardText(path, make().render(), False)


# ---------------------------------------------------------------------------------------------- core artifacts
def uses_of(tasks: Sequence[Mapping[str, Any]]) -> Use:
    """Intended use and limits of a model with ``tasks`` (the ``tasks`` of its ``config.json``): the entries of
    :data:`KIND_USES` and :data:`DATA_USES` that apply."""
    use = Use()
    for t in tasks:
        use = use + KIND_USES.get(t.get("kind", ""), Use()) + DATA_USES.get(t.get("name", ""), Use())
    return use


def model_rows(config: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The Model section's rows of a core ``config.json``: shape, start, tasks, adapters."""
    m, meta = config.get("model", {}), config.get("meta", {})
    shape = (f"{m.get('n_layer')} layers, {m.get('n_head')} heads, {m.get('n_embd')} hidden, "
             f"{m.get('block_size')} positions, {m.get('vocab_size')}-token vocabulary")
    rows: list[tuple[str, Any]] = [("backbone", shape)]
    if m.get("n_items"):
        rows.append(("items", f"{m['n_items']} catalogue items" + (
            f", frozen text features of width {m['item_text_dim']}" if m.get("item_text_dim") else "")))
    if m.get("encoders"):
        rows.append(("encoders", ", ".join(m["encoders"])))
    start = meta.get("init_artifact") or meta.get("init_from") or meta.get("continued_from")
    if start:
        rows.append(("initialised from", start))
    for t in config.get("tasks", []):
        labels = t.get("labels") or ()
        what = t.get("kind", "?") + (f" into {len(labels)} labels ({', '.join(labels)})" if labels else "")
        if t.get("adapter"):
            what += f" (adapter {t['adapter']})"
        rows.append((f"task {t.get('name')}", what))
    if config.get("adapters"):
        rows.append(("LoRA adapters", ", ".join(config["adapters"])))
    return rows


def data_and_splits(meta: Mapping[str, Any]) -> tuple[str, str]:
    """The Data and Splits sections from ``meta["data"]`` as the core's recipes record it: per task a source with
    ``path``, ``n`` and ``train`` / ``val`` / ``test`` (text), per file its parts (images), or bare counts
    (pretraining)."""
    data = meta.get("data")
    if not isinstance(data, Mapping) or not data:
        return "No data source recorded in this artifact.", "No splits recorded in this artifact."
    if all(isinstance(v, int) for v in data.values()):  # a corpus: {"train": n, "val": n}
        return (f"A text corpus of {sum(data.values())} distinct texts.",
                table(("part", "train", "validation", "test"), [("corpus", data.get("train"), data.get("val"), None)]))
    lines, rows = [], []
    for name, src in data.items():
        if not isinstance(src, Mapping):
            lines.append(f"{escape_markdown(name)}: {number(src)} training examples")
            rows.append((name, src, None, None, None, ""))
            continue
        where = f" from {escape_markdown(src['path'])}" if src.get("path") else ""
        fmt = f" ({escape_markdown(src['format'])})" if src.get("format") else ""
        n = f", {src['n']} distinct examples after removing duplicates" if src.get("n") is not None else ""
        test = f"; the test set is {escape_markdown(src['test_path'])}" if src.get("test_path") else ""
        if not where and not n:  # a part of a file the recipe knows by name: its counts say what it is
            n = ", " + ", ".join(f"{src[k]} {part}" for k, part in (("train", "training"), ("val", "validation"),
                                                                     ("test", "test")) if k in src) + " examples"
        lines.append(f"{escape_markdown(name)}{where}{fmt}{n}{test}")
        note = f"validation trained on too (refit, {src['refit_epochs']} epochs)" if src.get("refit_epochs") else ""
        rows.append((name, src.get("train"), src.get("val"), src.get("test"), src.get("seed"), note))
    return bullets(lines), table(("data", "train", "validation", "test", "seed", "note"), rows)


def metric_name(key: str) -> str:
    """``val/sentiment/acc`` -> ``validation accuracy of sentiment``; ``val/score`` -> ``validation score``."""
    parts = key.split("/")
    what = METRIC_NAMES.get(parts[-1], parts[-1])
    return f"validation {what}" + (f" of {parts[1]}" if len(parts) == 3 else "")


def score_name(tasks: Sequence[Mapping[str, Any]]) -> str:
    """What ``val/score`` is for these tasks: the mean over the tasks of their accuracy (NDCG@10 for a next-item
    task; see ``core.lit``)."""
    kinds = {"NDCG@10" if t.get("kind") == "next_item" else "accuracy" for t in tasks
             if t.get("kind") not in ("lm", "cloze")}
    what = kinds.pop() if len(kinds) == 1 else "accuracy or NDCG@10"
    return f"validation {what} (mean over the tasks)" if len(tasks) > 1 else f"validation {what}"


def training_figures(meta: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]] = ()) -> list[tuple[Any, ...]]:
    """Figures rows ``(figure, value, measured on)`` of a core training history (``meta["training"]``) of a model
    with ``tasks``."""
    h = meta.get("training")
    if not isinstance(h, Mapping):
        return []
    rows: list[tuple[Any, ...]] = []
    for key in ("best_val_score", "best_val_loss"):
        if h.get(key) is not None:
            what = score_name(tasks) if key == "best_val_score" else "validation loss (mean over the tasks)"
            rows.append((what, h[key], "validation split, best epoch (the weights kept)"))
    for part, when in (("initial", "validation split, before training"), ("final", "validation split, last epoch")):
        for key, value in sorted((h.get(part) or {}).items()):
            if key not in ("val/score", "val/loss") or part == "initial":
                rows.append((metric_name(key), value, when))
    return rows


TRAINING_ROWS = {"epochs": "epochs run", "steps": "optimizer steps", "train_seconds": "training seconds",
                 "kept": "weights kept (best or last epoch)"}
CONFIG_ROWS = {"max_epochs": "at most epochs", "batch_size": "batch size", "lr": "learning rate",
               "head_lr": "learning rate of new heads", "max_length": "max_length (tokens read per text)",
               "precision": "precision", "seed": "seed", "patience": "early-stopping patience",
               "label_smoothing": "label smoothing"}


def setting(value: Any) -> Any:
    """A setting for a card's table: a float in its shortest form (``5e-05``, not rounded to a figure's digits)."""
    return f"{value:g}" if isinstance(value, float) else value


def training_rows(meta: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The Training section's rows: the run's history and the knobs of its ``TrainConfig``."""
    h, cfg = meta.get("training") or {}, meta.get("train_config") or {}
    rows = [(name, setting(h[k])) for k, name in TRAINING_ROWS.items() if k in h]
    return rows + [(name, setting(cfg[k])) for k, name in CONFIG_ROWS.items() if k in cfg]


def core_card(folder: str | Path, config: Mapping[str, Any], use: Use | None = None,
              summary: str | None = None) -> ModelCard:
    """The card of a core artifact from its parsed ``config.json``: ``use`` (default: :func:`uses_of` its tasks) and
    ``summary`` (default: what the artifact is and the recipe that wrote it) may be given by the app that owns it.

    Raises:
        ValueError: the config does not have the shape ``save_artifact`` writes.
    """
    try:
        meta = config.get("meta") or {}
        tasks = list(config.get("tasks", []))
        names = ", ".join(f"{escape_markdown(t['name'])} ({t['kind']})" for t in tasks) or "no task"
        recipe = f", written by the recipe {escape_markdown(meta['recipe'])}" if meta.get("recipe") else ""
        default_summary = f"A Trident core model (format version {config.get('version')}) with {names}{recipe}."
        data, splits = data_and_splits(meta)
        figures = training_figures(meta, tasks)
        train = training_rows(meta)
        model = model_rows(config)
    except (AttributeError, KeyError, TypeError) as exc:
        raise ValueError(f"{folder}/config.json does not describe a core model ({type(exc).__name__}: {exc})") from None
    figures_md = table(("figure", "value", "measured on"), figures) if figures else "No figures recorded."
    if any(t.get("kind") in ("classify", "image_classify") for t in tasks):
        figures_md += ("\n\nNo test figures are recorded at training time: `trident core eval-text` and "
                       "`trident core eval-images` measure a held-out file.")
    return ModelCard(title=Path(folder).name, summary=summary or default_summary, sources=("config.json",),
                     sections={"Model": table(("", ""), model), "Data": data, "Splits": splits, "Figures": figures_md,
                               "Training": table(("", ""), train) if train else "No training run recorded.",
                               "Fairness": NO_FAIRNESS},
                     use=use if use is not None else uses_of(tasks))
