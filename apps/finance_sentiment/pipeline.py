"""Training and evaluation of the finance sentiment model.

The model is the shared core (all-MiniLM-L6-v2 start) fine-tuned on Financial PhraseBank (50% agreement),
deduplicated and split 70/10/20 with a fixed seed (``core.recipes.text_task``): the 20% test part is never trained on
nor used for any choice. Two kinds of member train on the same split:

- *full* members fine-tune every weight of their own copy of the backbone (``members``, seeds 1 apart);
- *LoRA* members keep the backbone frozen and train a low-rank adapter plus the classifier head
  (``lora_members``): a model that stays close to the pretrained sentence encoder, so a different view of the text.

With ``tapt_corpus`` (``trident fin train --tapt``) the full members start from a task-adaptive pretraining of
all-MiniLM-L6-v2: masked-token training on the training split's sentences and unlabelled finance text (the sentences
of the captured RSS/Atom feeds), so the backbone has read the domain's wording before it learns the labels.

Financial PhraseBank says how many annotators agreed on each sentence (its 50%, 66%, 75% and 100% agreement
files). When those files are there the members train on soft targets (:func:`agreement_targets`): a sentence only
half the annotators called positive teaches "positive, or maybe neutral", not a certain positive. Validation, test
and every reported figure use the majority labels.

With ``refit_epochs`` (``trident fin train --refit-epochs N``, what ``make artifacts`` builds) the full members do not
early-stop on the validation split: they train on the training and validation splits together for a fixed N epochs
and keep their last weights. Early stopping on 387 validation sentences is noisy (one member kept its first epoch),
and the refit also learns from those sentences; in a cross-validation of the training part (3 folds, one seed) a
5-epoch refit scored 0.852 against 0.838 for early stopping on an inner 10% split, ahead on every fold (README,
Results). ``make artifacts`` refits five members (seeds 13 to 17) and averages them.

With more than one member their class probabilities are mixed: equally within a kind, and between the kinds with
shares chosen on the validation split by log-loss (:func:`core.metrics.member_weights`); refitted members, which
have seen the validation split, equally. The artifact folder then holds ``ensemble.json`` (members, kinds, weights,
validation figures) and one core artifact per member under ``members/``; a single-member artifact is a plain core
artifact.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from apps.finance_sentiment.scoring import LABELS

__all__ = ["AGREEMENT_FILES", "SentimentModel", "agreement_targets", "default_tapt_config", "default_train_config",
           "eval_sentiment", "feed_sentences", "hinted_task", "load_sentiment_model", "phrasebank_agreement",
           "read_sentiment_data", "train_sentiment", "training_view"]

log = logging.getLogger(__name__)

_SYNONYMS = {"pos": "positive", "neg": "negative", "neu": "neutral", "bullish": "positive", "bearish": "negative"}


def default_train_config(soft: bool = True):
    """6 epochs at most, lr 8e-5, 10% warm-up, early stopping on validation accuracy; with soft (agreement) targets
    batches of 16 and no label smoothing (the targets carry the annotators' doubt), with hard labels batches of 32
    and label smoothing 0.05.

    The soft setting won a cross-validated sweep (``bench/text_cv_sweep.py``, 3 folds x 3 seeds of PhraseBank's
    training part, on a GPU): single members 0.850 against 0.837 for the hard-label recipe, seed ensembles 0.857
    against 0.845-0.848, macro-F1 0.842 against 0.827-0.829 (README, Results)."""
    from core.config import TrainConfig

    return TrainConfig(max_epochs=6, batch_size=16 if soft else 32, lr=8e-5, head_lr=2e-3, max_length=96,
                       precision="32-true", patience=2, warmup_ratio=0.1, label_smoothing=0.0 if soft else 0.05)


def default_lora_config(soft: bool = True):
    """A LoRA member: the full members' schedule at the adapter's learning rate (1e-3)."""
    return default_train_config(soft).model_copy(update={"lr": 1e-3})


def default_tapt_config():
    """Task-adaptive pretraining before the full members: masked tokens only (no causal batches), lr 1e-4, 10 epochs
    at most, early stopping on the held-out perplexity."""
    from core.config import TrainConfig

    return TrainConfig(max_epochs=10, batch_size=32, lr=1e-4, head_lr=5e-4, max_length=96, precision="32-true",
                       patience=3, warmup_ratio=0.06, causal_fraction=0.0)


def feed_sentences(folder: str | Path, min_words: int = 4) -> list[str]:
    """Unlabelled in-domain text for adaptive pretraining: the sentences (``min_words`` words or more) of the titles
    and summaries of every RSS/Atom file in ``folder``, as the poller stores them (:func:`feeds.entry_text`: HTML
    stripped, PII redacted), each once. Files feedparser finds no entries in (a README, a broken feed) add nothing."""
    import feedparser

    from apps.finance_sentiment.feeds import entry_text
    from apps.finance_sentiment.scoring import split_sentences

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"feeds folder not found: {folder}")
    seen: dict[str, None] = {}
    for f in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".rss", ".xml", ".atom")):
        for entry in feedparser.parse(str(f)).entries:
            for text in entry_text(entry):
                seen.update((x, None) for x in split_sentences(text) if len(x.split()) >= min_words)
    return list(seen)


def read_sentiment_data(path: str | Path, fmt: str) -> tuple[list[str], list[str]]:
    """Read labelled sentences: ``phrasebank`` (latin-1 ``sentence@label`` lines) or ``csv`` (``text,label``).

    Labels are lower-cased; ``pos`` / ``neg`` / ``neu`` are accepted for positive / negative / neutral.

    Raises:
        core.data.DataFormatError: The file is missing, malformed, or has another label.
    """
    from core.data import DataFormatError, read_labelled_texts

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
    """Annotator agreement per sentence of a PhraseBank file, from the agreement subsets beside it.

    Every sentence gets the share of the strictest subset (:data:`AGREEMENT_FILES`) that holds it; keys are the
    sentences as :func:`core.data.text_key` writes them (as :func:`core.data.dedupe_texts` compares them).

    Raises:
        DataFormatError: a subset file is missing, or malformed.
    """
    from core.data import read_labelled_texts, text_key

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
    from core.data import text_key

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


def training_view(task, agreement_from: str | Path | None = None, hints: bool = False):
    """``task`` as the members train on it: soft targets from the PhraseBank agreement files beside
    ``agreement_from`` (when given, :func:`agreement_targets`), then the numeric comparison hints (:func:`hinted_task`),
    in that order, since the agreement is keyed by the sentences as written."""
    if agreement_from is not None:
        task = agreement_targets(task, phrasebank_agreement(agreement_from))
    return hinted_task(task) if hints else task


def hinted_task(task):
    """``task`` with every sentence of every split followed by its numeric comparison hints
    (:func:`apps.finance_sentiment.numeracy.with_hints`), as a model trained with hints reads text."""
    from apps.finance_sentiment.numeracy import with_hints

    def hint(split):
        return [with_hints(x) for x in split[0]], list(split[1])

    return replace(task, train=hint(task.train), val=hint(task.val), test=hint(task.test),
                   source={**task.source, "hints": "numeric"})


def train_sentiment(data_path: str | Path, out: str | Path, fmt: str = "phrasebank", members: int = 1,
                    cfg=None, split_seed: int = 13, lora_members: int = 0, lora_cfg=None, lora_r: int = 16,
                    tapt_corpus: list[str] | None = None, tapt_cfg=None, soft_labels: bool | None = None,
                    refit_epochs: int | None = None, hints: bool = False) -> dict:
    """Fine-tune the sentiment model(s) and write the artifact.

    Args:
        data_path: Labelled sentences (PhraseBank's ``Sentences_50Agree.txt`` or a ``text,label`` CSV).
        out: Artifact folder (replaced only once everything has trained).
        fmt: ``phrasebank`` or ``csv``.
        members: Fully fine-tuned members (seeds ``cfg.seed``, ``cfg.seed + 1``, ...); may be 0 with LoRA members.
        cfg: ``TrainConfig`` of the full members (default: 6 epochs, lr 8e-5, early stopping on validation).
        split_seed: Seed of the train/validation/test split (kept fixed, so every member sees the same test).
        lora_members: LoRA members (frozen backbone, rank ``lora_r`` adapter and head; seeds 1000 apart).
        lora_cfg: Their ``TrainConfig`` (default :func:`default_lora_config`).
        lora_r: Rank of their adapters.
        tapt_corpus: With it, the full members start from a task-adaptive pretraining of all-MiniLM-L6-v2 (masked
            tokens, :func:`default_tapt_config` or ``tapt_cfg``) on the training split's sentences plus these
            unlabelled texts (e.g. :func:`feed_sentences`), never the validation or test sentences. ``[]``: the
            training split alone. The pretrained backbone is not kept; its perplexities go into the report.
        tapt_cfg: ``TrainConfig`` of that pretraining.
        soft_labels: Train on soft targets from annotator agreement (:func:`agreement_targets`), read from the
            PhraseBank agreement subsets beside ``data_path``. ``None`` (default): when ``fmt`` is ``phrasebank`` and
            those files are there; ``True``: required (an error without them); ``False``: the majority labels.
            Validation and test always score the majority labels.
        refit_epochs: Instead of early stopping on the validation split, train the full members on the training and
            validation splits together for this many epochs and keep the last weights (``TrainConfig.keep="last"``);
            the members are then averaged with equal weights, and the report holds no validation figures (the
            members have seen those sentences). LoRA members need a validation split for their share, so they
            cannot refit. The test split stays out of training either way.
        hints: Every sentence, in training and whenever the artifact scores, is followed by its numeric comparison
            hints (:func:`hinted_task`, :mod:`apps.finance_sentiment.numeracy`); each member's artifact records it
            (``meta.data.sentiment.hints``), and :class:`SentimentModel` adds them to what it is asked to score.

    Returns:
        ``{"artifact", "members", "weights", "validation", "test"}``: each member's and the mixture's test metrics,
        the weights chosen on validation and the validation log-loss and accuracy of each view.
    """
    from core.recipes import finetune_text, refit, text_task

    if members < 0 or lora_members < 0 or members + lora_members < 1:
        raise ValueError("train at least one member (members + lora_members >= 1)")
    if refit_epochs is not None and (refit_epochs < 1 or lora_members or not members):
        raise ValueError("a refit needs refit_epochs >= 1 and full members only (LoRA members take their share "
                         "from the validation split)")
    folder = Path(data_path).parent
    has_subsets = fmt == "phrasebank" and all((folder / name).is_file() for name, _ in AGREEMENT_FILES)
    if soft_labels and not has_subsets:
        raise ValueError(f"soft labels need PhraseBank's agreement files beside {data_path}: "
                         f"{', '.join(name for name, _ in AGREEMENT_FILES)}")
    soft = has_subsets if soft_labels is None else soft_labels
    cfg = cfg or default_train_config(soft)
    lora_cfg = lora_cfg or default_lora_config(soft)
    out = Path(out)
    task = text_task("sentiment", data_path, fmt, seed=split_seed)
    unknown = sorted(set(task.labels) - set(LABELS))
    if unknown:
        raise ValueError(f"{data_path}: labels must be positive, neutral or negative; found {unknown}")
    if refit_epochs is not None:  # validation trains too (it is still logged, never selected on)
        task, cfg = refit(task, cfg, refit_epochs)
    # soft targets touch training only: validation and test keep the majority labels
    task = training_view(task, data_path if soft else None, hints)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    n = members + lora_members
    kinds = ["full"] * members + ["lora"] * lora_members
    init, tapt = "minilm", None
    if tapt_corpus is not None and members:
        init, tapt = _tapt(task, list(tapt_corpus), out.with_name(out.name + ".tapt"), tapt_cfg)
    for k, kind in enumerate(kinds):
        member_out = tmp if n == 1 else tmp / "members" / str(k)
        if kind == "full":
            log.info("sentiment member %d/%d: full fine-tuning (seed %d)", k + 1, n, cfg.seed + k)
            finetune_text([task], member_out, cfg.model_copy(update={"seed": cfg.seed + k}), init_from=init)
        else:
            i = k - members
            log.info("sentiment member %d/%d: LoRA r=%d (seed %d)", k + 1, n, lora_r, lora_cfg.seed + 1000 * i)
            _train_lora_member(task, member_out, lora_cfg.model_copy(update={"seed": lora_cfg.seed + 1000 * i}), lora_r)
    if tapt is not None:
        shutil.rmtree(init, ignore_errors=True)
    report: dict = {"members": [], "kinds": kinds, "split": task.source, "targets": "agreement" if soft else "labels",
                    "hints": "numeric" if hints else None,
                    **({"tapt": tapt} if tapt else {})}
    if n > 1:
        spec = {"members": [f"members/{k}" for k in range(n)], "kinds": kinds, "task": "sentiment",
                "split": task.source}
        (tmp / "ensemble.json").write_text(json.dumps(spec, indent=2))
    model = load_sentiment_model(tmp)
    if refit_epochs is None:
        yv = [LABELS.index(task.labels[i]) for i in task.val[1]]
        val_p = [e.classify_proba(list(task.val[0]), "sentiment")[:, model.columns(e)] for e in model.engines]
        weights, validation = _mixture(kinds, val_p, np.asarray(yv))
    else:  # the members trained on the validation split: nothing left to weigh them on
        weights, validation = [round(1 / n, 6)] * n, None
    report["weights"], report["validation"] = weights, validation
    if n > 1:
        spec["weights"], spec["validation"] = weights, validation
        (tmp / "ensemble.json").write_text(json.dumps(spec, indent=2))
    texts, ys = task.test
    y = [LABELS.index(task.labels[i]) for i in ys]
    per_member = [e.classify_proba(texts, "sentiment")[:, model.columns(e)] for e in model.engines]
    for p in per_member:
        report["members"].append(_metrics(y, p.argmax(-1)))
    report["test"] = _metrics(y, sum(w * p for w, p in zip(weights, per_member)).argmax(-1))
    if n > 1:  # the test accuracy of the first k members together, what the ensemble's size buys (the argmax of
        # their weighted sum needs no renormalising)
        mixes = [sum(w * p for w, p in zip(weights[:k], per_member[:k])) for k in range(1, n + 1)]
        report["test_by_members"] = [round(float((m.argmax(-1) == np.asarray(y)).mean()), 4) for m in mixes]
    (tmp / "fin_report.json").write_text(json.dumps(report, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    report["artifact"] = str(out)
    return report


def _tapt(task, extra: list[str], out: Path, cfg=None) -> tuple[Path, dict]:
    """Masked-token pretraining of all-MiniLM-L6-v2 on the training split's sentences and ``extra`` (any of them that
    is a validation or test sentence is dropped); returns the artifact folder and its corpus size and perplexities."""
    from core.recipes import pretrain

    held_out = set(task.val[0]) | set(task.test[0])
    corpus = [t for t in [*task.train[0], *extra] if t not in held_out]
    cfg = cfg or default_tapt_config()
    log.info("task-adaptive pretraining on %d texts (%d training sentences)", len(corpus), len(task.train[0]))
    shutil.rmtree(out, ignore_errors=True)
    pretrain(corpus, out, cfg)
    training = json.loads((out / "config.json").read_text())["meta"].get("training", {})
    ppl = {k: (training.get(k) or {}).get("val/lm/ppl") for k in ("initial", "final")}
    return out, {"texts": len(set(corpus)), "extra": len(extra), "epochs": training.get("epochs"), "val_ppl": ppl}


def _train_lora_member(task, out: Path, cfg, r: int) -> Path:
    """A LoRA member: all-MiniLM-L6-v2 frozen, a rank-``r`` adapter (on by default for the task) and the head train."""
    from core.adapters import apply_lora, train_only_adapters
    from core.data import ListDataset, MultiTaskDataModule, TaskData
    from core.recipes import new_text_model
    from core.tasks import TaskSpec
    from core.train import fit

    model, tok = new_text_model("minilm")
    apply_lora(model.backbone, task.name, r=r, alpha=2 * r, dropout=0.1)
    spec = TaskSpec(name=task.name, kind="classify", labels=task.labels, adapter=task.name)
    model.add_task(spec)
    train_only_adapters(model, keep_trainable=(f"heads.{task.name}.",))
    data = TaskData(spec, ListDataset(*task.train), ListDataset(*task.val), ListDataset(*task.test))
    dm = MultiTaskDataModule([data], tok, batch_size=cfg.batch_size, max_length=cfg.max_length, seed=cfg.seed)
    meta = {"recipe": "fin-lora", "lora_r": r, "data": {task.name: task.source}}
    return fit(model, dm, cfg, out, tok, meta=meta)


def _mixture(kinds: list[str], val_p: list[np.ndarray], yv: np.ndarray) -> tuple[list[float], dict]:
    """Per-member weights: equal within a kind, the kinds' shares by validation log-loss; and the validation
    accuracy and log-loss of each kind's mean and of the mixture."""
    from core.metrics import log_loss, member_weights

    weights, views = member_weights(kinds, val_p, yv)
    views["mixture"] = sum(w * p for w, p in zip(weights, val_p))
    validation = {name: {"accuracy": float((p.argmax(-1) == yv).mean()), "log_loss": round(log_loss(p, yv), 5)}
                  for name, p in views.items()}
    return weights, validation


def _metrics(y, pred) -> dict:
    from core.metrics import accuracy, precision_recall_f1

    y, pred = np.asarray(y), np.asarray(pred)
    weighted = precision_recall_f1(y, pred, average="weighted")["f1"] if len(y) else 0.0
    return {"accuracy": accuracy(y, pred), "macro_f1": precision_recall_f1(y, pred)["f1"],
            "weighted_f1": weighted, "n": int(len(y))}


class SentimentModel:
    """One artifact or an ensemble, with the engine interface the scorer needs (probabilities mixed).

    Members trained with numeric comparison hints (``trident fin train --hints``) read every text with its hints
    appended (:func:`apps.finance_sentiment.numeracy.with_hints`); the model adds them to what it is given, so callers
    pass the text as written.

    Args:
        engines: ``InferenceEngine`` per member.
        path: The artifact folder.
        weights: Each member's weight (default: equal); they are normalised to sum to 1.

    Raises:
        ValueError: The weights do not fit the members, or the members read text differently (some with hints).
    """

    def __init__(self, engines: list, path: Path, weights: list[float] | None = None):
        self.engines, self.path = engines, path
        self.tasks = engines[0].tasks
        hints = {_text_hints(e) for e in engines}
        if len(hints) > 1:
            raise ValueError(f"{path}: the members read text differently (hints {sorted(map(str, hints))})")
        self.hints = hints.pop()
        w = np.asarray(weights if weights is not None else [1.0] * len(engines), dtype=np.float64)
        if len(w) != len(engines) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"{path}: need one non-negative weight per member, got {list(w)}")
        self.weights = (w / w.sum()).tolist()

    def columns(self, engine) -> list[int]:
        """Column order of ``engine``'s sentiment task that gives positive, neutral, negative."""
        labels = tuple(engine.tasks["sentiment"].labels)
        return [labels.index(lab) for lab in LABELS]

    def _active(self) -> list[tuple[float, object]]:
        return [(w, e) for w, e in zip(self.weights, self.engines) if w > 0]

    def prepare(self, texts) -> list[str]:
        """The texts as the members read them: with their numeric comparison hints when the members trained so."""
        if self.hints == "numeric":
            from apps.finance_sentiment.numeracy import with_hints

            return [with_hints(t) for t in texts]
        return list(texts)

    def classify_proba(self, texts, task: str) -> np.ndarray:
        """The members' class probabilities mixed by their weights (the first member's label order); a member of
        weight 0 is not run."""
        texts = self.prepare(texts)
        if len(self.engines) == 1:
            return self.engines[0].classify_proba(texts, task)
        order = list(self.engines[0].tasks[task].labels)
        acc = None
        for w, e in self._active():
            labels = list(e.tasks[task].labels)
            p = w * e.classify_proba(texts, task)[:, [labels.index(lab) for lab in order]].astype(np.float64)
            acc = p if acc is None else acc + p
        return acc.astype(np.float32)

    def explain(self, texts, task: str, weights=None, max_words: int = 64):
        """Word attributions mixed over the members by their weights (each member's own occlusion attributions); with
        hints, the hint words (``[ increase ]``) are attributed too, as what the model read."""
        texts = self.prepare(texts)
        active = self._active()
        runs = [e.explain(texts, task, weights=weights, max_words=max_words) for _, e in active]
        ws = [w for w, _ in active]
        out = []
        for per_text in zip(*runs):
            words = per_text[0]
            out.append([(word, float(sum(wm * run[i][1] for wm, run in zip(ws, per_text))))
                        for i, (word, _) in enumerate(words)])
        return out


def _text_hints(engine) -> str | None:
    """How a member artifact reads text: ``"numeric"`` when it trained with hints, else None."""
    source = ((engine.config or {}).get("meta") or {}).get("data", {}).get("sentiment") or {}
    return source.get("hints")


def load_sentiment_model(path: str | Path, quantize: bool = False, batch_size: int = 64) -> SentimentModel:
    """Load a sentiment artifact (single or ensemble).

    Raises:
        core.artifacts.ArtifactError: The folder is not a (complete) artifact.
    """
    from core.artifacts import ArtifactError
    from core.engine import InferenceEngine

    path = Path(path)
    spec_path = path / "ensemble.json"
    weights = None
    if spec_path.is_file():
        try:
            spec = json.loads(spec_path.read_text())
            members = [path / m for m in spec["members"]]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{spec_path} is malformed ({exc}): retrain with `trident fin train`") from exc
        weights = spec.get("weights")
    elif (path / "config.json").is_file():
        members = [path]
    else:
        raise ArtifactError(f"no sentiment model at {path}: train one with `trident fin train`")
    return SentimentModel([InferenceEngine(m, quantize=quantize, batch_size=batch_size) for m in members], path,
                          weights)


def eval_sentiment(model: SentimentModel, path: str | Path, fmt: str) -> dict:
    """Accuracy, macro-F1 and weighted F1 on a labelled file (see :func:`read_sentiment_data`)."""
    texts, labels = read_sentiment_data(path, fmt)
    p = model.classify_proba(texts, "sentiment")
    order = list(model.tasks["sentiment"].labels)
    return _metrics([order.index(lab) for lab in labels], p.argmax(-1))
