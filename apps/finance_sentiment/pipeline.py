"""Training and evaluation of the finance sentiment model (offline: nothing online imports this module).

The shared core (all-MiniLM-L6-v2 start) is fully fine-tuned on Financial PhraseBank (50% agreement), deduplicated
and split 70/10/20 with a fixed seed (``core.recipes.text_task``); the test part is never trained on nor used for a
choice. When PhraseBank's agreement files are there the members train on soft targets (:func:`agreement_targets`): a
sentence half the annotators called positive teaches "positive, or maybe neutral". Validation, test and every
reported figure use the majority labels. With ``refit_epochs`` (what ``make artifacts`` builds) the members train on
the training and validation splits for a fixed number of epochs instead of early-stopping on a small, noisy validation
split (docs/experiments.md). Several members (seeds 1 apart) are averaged: the artifact then holds ``ensemble.json``
and one core artifact per member under ``members/`` (``core.engine``).

That ensemble is the teacher: :func:`distil_sentiment` distils it into the one student model that is served, a
single-model artifact trained on the teacher's probabilities over the labelled training split and the sentences of
the captured feeds.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from apps.finance_sentiment.card import REPORT_FILE, write_cards
from apps.finance_sentiment.feeds import Deduper, FeedConfig, FeedPoller
from apps.finance_sentiment.model import (
    TASK,
    EntityBlindModel,
    load_sentiment_model,
    model_input,
    reads_entity_blind,
    write_model_file,
)
from apps.finance_sentiment.scoring import LABELS, article_sentences
from apps.finance_sentiment.settings import FinDistilSettings, FinTrainSettings, ScoringSettings
from core.config import TrainConfig
from core.data import DataFormatError, read_labelled_texts, text_key
from core.engine import ENSEMBLE_FILE, Ensemble, InferenceEngine, write_ensemble
from core.metrics import accuracy, log_loss, precision_recall_f1
from core.recipes import distil, finetune_text, refit, text_task

log = logging.getLogger(__name__)

_SYNONYMS = {"pos": "positive", "neg": "negative", "neu": "neutral", "bullish": "positive", "bearish": "negative"}
FEED_SUFFIXES = (".rss", ".xml", ".atom")  # the feed files of a folder of unlabelled text


def read_sentiment_data(path: str | Path, fmt: str) -> tuple[list[str], list[str]]:
    """Read labelled sentences: ``phrasebank`` (latin-1 ``sentence@label`` lines) or ``csv`` (``text,label``).

    Labels are lower-cased; ``pos`` / ``neg`` / ``neu`` are accepted for positive / negative / neutral.

    Raises:
        core.data.DataFormatError: The file is missing, malformed, or has another label.
    """
    texts, raw = read_labelled_texts(path, fmt)
    labels = [_SYNONYMS.get(r.strip().lower(), r.strip().lower()) for r in raw]
    unknown = sorted(set(labels) - set(LABELS))
    if unknown:
        raise DataFormatError(f"{path}: labels must be positive, neutral or negative; found {unknown[:5]}")
    return texts, labels


AGREEMENT_FILES = (("Sentences_AllAgree.txt", 1.0), ("Sentences_75Agree.txt", 0.87), ("Sentences_66Agree.txt", 0.70),
                   ("Sentences_50Agree.txt", 0.58))
"""Financial PhraseBank's agreement subsets, strictest first, each with the annotator share its band stands for: the
middle of 75-99%, 66-74% and 50-65%."""


def phrasebank_agreement(path: str | Path) -> dict[str, float]:
    """Annotator agreement per sentence (keyed by :func:`core.data.text_key`) of a PhraseBank file: the share of the
    strictest subset beside it (:data:`AGREEMENT_FILES`) that holds the sentence.

    Raises:
        DataFormatError: a subset file is missing, or malformed.
    """
    folder, out = Path(path).parent, {}
    for name, share in reversed(AGREEMENT_FILES):  # loosest first, so the strictest subset's share wins
        for text in read_labelled_texts(folder / name, "phrasebank")[0]:
            out[text_key(text)] = share
    return out


def agreement_targets(task, agreement: dict[str, float]):
    """``task`` with soft training targets from annotator agreement (validation and test keep their labels).

    A sentence whose annotators agreed by share ``a`` puts ``a`` on its majority label and the rest where PhraseBank's
    disagreements lie: on neutral when the majority is positive or negative, split evenly between positive and
    negative when it is neutral. A sentence missing from ``agreement`` keeps a hard target.
    """
    names = list(task.labels)
    if sorted(names) != sorted(LABELS):
        raise ValueError(f"agreement targets need the labels {LABELS}, got {names}")
    neutral = names.index("neutral")
    polar = [names.index("positive"), names.index("negative")]
    targets = []
    for text, y in zip(*task.train):
        a = agreement.get(text_key(text), 1.0)
        doubt = polar if y == neutral else [neutral]  # where the rest of the annotators' votes went
        t = [0.0] * len(names)
        t[y] = a
        for j in doubt:
            t[j] = (1.0 - a) / len(doubt)
        targets.append(t)
    return replace(task, train=(list(task.train[0]), targets))


def training_view(task, agreement_from: str | Path | None = None):
    """``task`` as the members train on it: with soft targets from the PhraseBank agreement files beside
    ``agreement_from`` when given (:func:`agreement_targets`), else as it is."""
    if agreement_from is not None:
        task = agreement_targets(task, phrasebank_agreement(agreement_from))
    return task


def soft_targets(data_path: str | Path, fmt: str, soft_labels: bool | None = None) -> bool:
    """Whether the members train on soft (agreement) targets: ``soft_labels``, or when unset, whether ``fmt`` is
    ``phrasebank`` and PhraseBank's agreement files are beside ``data_path``.

    Raises:
        ValueError: ``soft_labels`` is true and the agreement files are not there.
    """
    folder = Path(data_path).parent
    has_subsets = fmt == "phrasebank" and all((folder / name).is_file() for name, _ in AGREEMENT_FILES)
    if soft_labels and not has_subsets:
        raise ValueError(f"soft labels need PhraseBank's agreement files beside {data_path}: "
                         f"{', '.join(name for name, _ in AGREEMENT_FILES)}")
    return has_subsets if soft_labels is None else soft_labels


def sentiment_task(data_path: str | Path, fmt: str = "phrasebank"):
    """The labelled sentences split as the sentiment model trains and is tested on them: deduplicated, then cut
    70/10/20 (seeded, stratified; ``core.recipes.text_task``).

    Raises:
        core.data.DataFormatError: The file is missing or malformed.
        ValueError: A label is not positive, neutral or negative.
    """
    task = text_task(TASK, data_path, fmt)
    unknown = sorted(set(task.labels) - set(LABELS))
    if unknown:
        raise ValueError(f"{data_path}: labels must be positive, neutral or negative; found {unknown}")
    return task


def train_sentiment(data_path: str | Path, out: str | Path, fmt: str = "phrasebank", members: int = 1,
                    cfg: TrainConfig | None = None, soft_labels: bool | None = None,
                    refit_epochs: int | None = None, entity_blind: bool = False) -> dict:
    """Fine-tune the sentiment model(s) and write the artifact.

    Args:
        data_path: Labelled sentences (PhraseBank's ``Sentences_50Agree.txt`` or a ``text,label`` CSV).
        out: Artifact folder (replaced only once everything has trained).
        fmt: ``phrasebank`` or ``csv``.
        members: Fully fine-tuned members (seeds ``cfg.seed``, ``cfg.seed + 1``, ...), averaged.
        cfg: ``TrainConfig`` of the members (default: :meth:`FinTrainSettings.config` for the targets used).
        soft_labels: Train on soft targets from the agreement files beside ``data_path`` (see :func:`soft_targets`):
            ``None`` when they are there, ``True`` required, ``False`` the majority labels.
        refit_epochs: Train on the training and validation splits for this many epochs and keep the last weights,
            instead of early stopping; the report then holds no validation figures.
        entity_blind: Train (and so serve) on the texts with company and person names replaced by placeholders
            (:func:`apps.finance_sentiment.model.model_input`); the artifact records it in ``fin_model.json``. The
            product's default is ``FinTrainSettings.entity_blind``, which ``trident fin train`` passes.

    Returns:
        ``{"artifact", "members", "weights", "validation", "test", ...}``: each member's and the average's test
        metrics, and the validation accuracy and log-loss of the average.
    """
    if members < 1:
        raise ValueError("train at least one member (members >= 1)")
    if refit_epochs is not None and refit_epochs < 1:
        raise ValueError("a refit needs refit_epochs >= 1")
    soft = soft_targets(data_path, fmt, soft_labels)
    cfg = cfg or FinTrainSettings().config(soft)
    out = Path(out)
    task = sentiment_task(data_path, fmt)  # one seeded split: every member sees the same test
    if refit_epochs is not None:  # validation trains too (it is still logged, never selected on)
        task, cfg = refit(task, cfg, refit_epochs)
    # soft targets touch training only: validation and test keep the majority labels
    task = training_view(task, data_path if soft else None)
    # the model reads its texts through model_input, here as in serving (the artifact records how, and the loaded
    # model reads every text it scores the same way: the validation and test figures below go through it)
    read, raw_val = model_input(entity_blind), list(task.val[0])
    if entity_blind:
        task = replace(task, train=(read(task.train[0]), task.train[1]), val=(read(task.val[0]), task.val[1]))
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for k in range(members):
        log.info("sentiment member %d/%d: full fine-tuning (seed %d)", k + 1, members, cfg.seed + k)
        finetune_text([task], tmp if members == 1 else tmp / "members" / str(k),
                      cfg.model_copy(update={"seed": cfg.seed + k}))
    weights = [round(1 / members, 6)] * members
    member_dirs = [f"members/{k}" for k in range(members)]
    if members > 1:
        write_ensemble(tmp, member_dirs, weights, TASK, split=task.source)
    write_model_file(tmp, entity_blind)
    model = load_sentiment_model(tmp)
    validation = None
    if refit_epochs is None:  # else the members trained on the validation split: nothing left to score them on
        yv = np.asarray([LABELS.index(task.labels[i]) for i in task.val[1]])
        p = _in_label_order(model, raw_val)
        validation = {"accuracy": float((p.argmax(-1) == yv).mean()), "log_loss": round(log_loss(p, yv), 5)}
    if members > 1:
        write_ensemble(tmp, member_dirs, weights, TASK, split=task.source, validation=validation)
    texts, ys = task.test
    y = [LABELS.index(task.labels[i]) for i in ys]
    per_member = [_in_label_order(m.engine, read(texts)) for m in model.members]  # members read as the model does
    report: dict = {"members": [_metrics(y, p.argmax(-1)) for p in per_member], "split": task.source,
                    "targets": "agreement" if soft else "labels", "entity_blind": entity_blind, "weights": weights,
                    "validation": validation,
                    "test": _metrics(y, _in_label_order(model, texts).argmax(-1))}
    if members > 1:  # the test accuracy of the first k members together, what the ensemble's size buys
        report["test_by_members"] = [round(float((sum(per_member[:k]).argmax(-1) == np.asarray(y)).mean()), 4)
                                     for k in range(1, members + 1)]
    return _publish(tmp, out, report)


# ------------------------------------------------------------------------------------------------------ distillation
def feed_sentences(paths: Sequence[str | Path], scoring: ScoringSettings | None = None) -> list[str]:
    """The sentences the worker would score in the feed files ``paths`` (RSS / Atom files, or folders of them:
    every ``.rss``, ``.xml`` and ``.atom`` file inside, sorted): each article once (``Deduper``), its headline and its
    summary's sentences (:func:`apps.finance_sentiment.scoring.article_sentences`), cleaned and redacted as the feed
    parser gives them.

    Raises:
        DataFormatError: A path is missing, or a folder holds no feed file.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in FEED_SUFFIXES)
            if not found:
                raise DataFormatError(f"no feed files ({', '.join(FEED_SUFFIXES)}) in {p}")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise DataFormatError(f"feed file not found: {p}")
    scoring = scoring or ScoringSettings()
    articles = []
    with FeedPoller([], {}) as poller:
        for f in files:
            parsed = poller.parse(f.read_bytes(), FeedConfig(url=f"http://localhost/{f.name}", name=f.stem))
            if not parsed:
                log.warning("no articles in %s", f)
            articles += parsed
    return [x for a in Deduper().filter(articles) for x in article_sentences(a.title, a.summary, scoring)[0]]


def _same_split(teacher: Path, split: dict) -> None:
    """Refuse a teacher whose record says it split other data than ``split`` (its test sentences could then be among
    the student's training sentences)."""
    record = {}
    for name in (REPORT_FILE, ENSEMBLE_FILE):
        if (teacher / name).is_file():
            try:
                record = json.loads((teacher / name).read_text()).get("split") or {}
            except (json.JSONDecodeError, AttributeError):
                record = {}
            break
    theirs = {k: record.get(k) for k in ("n", "seed", "test") if k in record}
    ours = {k: split.get(k) for k in theirs}
    if theirs != ours:
        raise ValueError(f"the teacher at {teacher} was trained on another split ({theirs}) than the data gives "
                         f"({ours}): its test sentences may be among the student's; distil on the teacher's data")


def distil_sentiment(teacher: str | Path, data_path: str | Path, out: str | Path, fmt: str = "phrasebank",
                     settings: FinDistilSettings | None = None, unlabelled: Sequence[str | Path] = (),
                     scoring: ScoringSettings | None = None) -> dict:
    """Distil the sentiment model ``teacher`` (the ensemble :func:`train_sentiment` writes) into one student model,
    written to ``out`` as a single-model sentiment artifact (``core.recipes.distil``).

    The student learns the teacher's probabilities (and the gold labels, ``settings.alpha``) on the training split of
    ``data_path``, cut as the teacher's was (:func:`sentiment_task`), and the teacher's probabilities alone on the
    sentences of the feed files ``unlabelled`` (:func:`feed_sentences`; those equal to a test sentence are dropped);
    it early-stops on the validation split's gold labels (``settings.train``). It reads its texts as the teacher does:
    entity-blind when the teacher is (:func:`apps.finance_sentiment.model.model_input`), in training and in serving.

    Returns:
        The report written to ``out/fin_report.json``: the student's and the teacher's test metrics (the teacher's
        measured in the same run), the student's validation accuracy and log-loss, and the distillation's record.

    Raises:
        FileNotFoundError: No teacher folder.
        core.artifacts.ArtifactError: The teacher is not a sentiment artifact.
        ValueError: ``out`` is the teacher's folder, or the teacher was trained on another split.
    """
    settings = settings or FinDistilSettings()
    teacher, out = Path(teacher), Path(out)
    if not teacher.is_dir():
        raise FileNotFoundError(f"teacher not found: {teacher} (train it with `trident fin train --out {teacher}`)")
    if out.resolve() == teacher.resolve():
        raise ValueError(f"the student cannot be written over its teacher: choose another folder than {teacher}")
    model = load_sentiment_model(teacher)
    blind = reads_entity_blind(teacher)
    inner = model.model if isinstance(model, EntityBlindModel) else model  # it is given the texts already read
    task = sentiment_task(data_path, fmt)
    _same_split(teacher, task.source)
    sentences = feed_sentences(unlabelled, scoring)
    log.info("distilling %s: %d labelled and %d feed sentences, %d layers, %s", teacher, len(task.train[0]),
             len(sentences), settings.layers, "entity-blind" if blind else "as written")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    distil(inner, task, tmp, settings.config(), unlabelled=sentences, layers=settings.layers, read=model_input(blind),
           meta={"teacher_entity_blind": blind, "unlabelled_sources": [str(p) for p in unlabelled]})
    write_model_file(tmp, blind)
    student = load_sentiment_model(tmp)
    (xv, yv), (xt, yt) = task.val, task.test
    y_val = np.asarray([LABELS.index(task.labels[i]) for i in yv])
    p_val = _in_label_order(student, xv)
    y_test = [LABELS.index(task.labels[i]) for i in yt]
    record = json.loads((tmp / "config.json").read_text())["meta"]["distillation"]
    report = {"distillation": record, "split": task.source, "targets": "distilled", "entity_blind": blind,
              "validation": {"accuracy": float((p_val.argmax(-1) == y_val).mean()),
                             "log_loss": round(log_loss(p_val, y_val), 5)},
              "test": _metrics(y_test, _in_label_order(student, xt).argmax(-1)),
              "teacher": {"path": str(teacher), "test": _metrics(y_test, _in_label_order(model, xt).argmax(-1))}}
    return _publish(tmp, out, report)


def _publish(tmp: Path, out: Path, report: dict) -> dict:
    """Write ``report`` into the finished artifact ``tmp``, move it to ``out`` in place of any older one, and write its
    cards (under its own name, once everything they read is there); return the report with the artifact's path."""
    (tmp / REPORT_FILE).write_text(json.dumps(report, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    write_cards(out)
    report["artifact"] = str(out)
    return report


def _in_label_order(model: Ensemble | EntityBlindModel | InferenceEngine, texts: list[str]) -> np.ndarray:
    """Class probabilities of the sentiment task in the order of :data:`LABELS`."""
    labels = list(model.tasks[TASK].labels)
    return model.classify_proba(texts, TASK)[:, [labels.index(lab) for lab in LABELS]]


def _metrics(y, pred) -> dict:
    y, pred = np.asarray(y), np.asarray(pred)
    weighted = precision_recall_f1(y, pred, average="weighted")["f1"] if len(y) else 0.0
    return {"accuracy": accuracy(y, pred), "macro_f1": precision_recall_f1(y, pred)["f1"],
            "weighted_f1": weighted, "n": int(len(y))}


def eval_sentiment(model: Ensemble | EntityBlindModel, path: str | Path, fmt: str) -> dict:
    """Accuracy, macro-F1, weighted F1 and scoring speed (``sentences_per_s``: scoring time only, without reading or
    loading) on a labelled file (see :func:`read_sentiment_data`)."""
    texts, labels = read_sentiment_data(path, fmt)
    start = time.perf_counter()
    p = _in_label_order(model, texts)
    speed = len(texts) / max(time.perf_counter() - start, 1e-9)
    return {**_metrics([LABELS.index(lab) for lab in labels], p.argmax(-1)), "sentences_per_s": speed}
