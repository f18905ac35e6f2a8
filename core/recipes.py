"""Training recipes of the core's benchmark artifacts: data preparation, splits and the call to ``fit``.

Each recipe reads data from a folder laid out like ``../shared/datasets`` and writes one artifact folder. Splits are
seeded and stratified, and recorded in the artifact's ``config.json``.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from core.adapters import adapter_names
from core.artifacts import load_artifact, update_meta
from core.config import ModelConfig, TrainConfig
from core.data import (
    DataFormatError,
    Distilled,
    ListDataset,
    MultiTaskDataModule,
    TaskData,
    dedupe_texts,
    read_labelled_texts,
    stratified_split,
    text_key,
)
from core.engine import InferenceEngine
from core.heads import distillation_loss
from core.jsonl import json_lines
from core.pretrained import load_minilm, minilm_config
from core.tasks import CoreModel, TaskSpec
from core.tokenizer import Tokenizer
from core.train import fit

log = logging.getLogger(__name__)

# Only the *train* split of the Debian package is used: its t10k files hold the held-out test items.
DEBIAN_FASHION_TRAIN = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")


# ---------------------------------------------------------------------------------------------------------- images
def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST's format), gzipped or not."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise DataFormatError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_image_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``images`` (N, H, W[, C]) uint8 and ``labels`` (N,) from an npz file (no pickle)."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"image file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as d:
            if "images" not in d or "labels" not in d:
                raise DataFormatError(f"{path} needs arrays 'images' and 'labels'; it has {sorted(d.keys())}")
            images, labels = d["images"], d["labels"]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:  # EOFError: an empty file
        raise DataFormatError(f"{path} is not a readable npz file: {exc}") from exc
    if len(images) != len(labels):
        raise DataFormatError(f"{path}: {len(images)} images but {len(labels)} labels")
    return images, labels.astype(np.int64)


@dataclass
class ImageSplits:
    """Train and validation arrays, and where they came from."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    sources: dict


def fashion_splits(data_dir: Path, seed: int = 13, val_fraction: float = 0.25,
                   extra_train: Path | None = DEBIAN_FASHION_TRAIN) -> ImageSplits:
    """Fashion-MNIST: validation carved (seeded, stratified) out of ``fashion_mnist/``; the rest trains, plus the
    60,000 official training images where the Debian package ``dataset-fashion-mnist`` is installed."""
    x, y = load_image_npz(Path(data_dir) / "fashion_mnist" / "fashion_mnist_test_8000.npz")
    tr, va = stratified_split(y, [1 - val_fraction, val_fraction], seed)
    train_x, train_y = [x[tr]], [y[tr]]
    sources = {"fashion_mnist_test_8000": {"train": len(tr), "val": len(va), "seed": seed}}
    if extra_train is not None and (extra_train / "train-images-idx3-ubyte.gz").is_file():
        train_x.append(read_idx(extra_train / "train-images-idx3-ubyte.gz"))
        train_y.append(read_idx(extra_train / "train-labels-idx1-ubyte.gz").astype(np.int64))
        sources["debian_train"] = len(train_y[-1])
    else:
        log.warning("dataset-fashion-mnist is not installed: training on %d images only", len(tr))
    return ImageSplits(np.concatenate(train_x), np.concatenate(train_y), x[va], y[va], sources)


def train_image_classifier(data_dir: str | Path, out: str | Path, cfg: TrainConfig, preset: str = "small",
                           max_train: int | None = None, init_artifact: str | Path | None = None) -> Path:
    """Train the image artifact (``image_classify`` task) on Fashion-MNIST; with ``init_artifact``, continue from
    that artifact's weights (a warm restart: a new learning-rate schedule over the same splits)."""
    s = fashion_splits(Path(data_dir), seed=cfg.seed)
    if max_train:
        s.train_x, s.train_y = s.train_x[:max_train], s.train_y[:max_train]
    if init_artifact is not None:
        model, tok, _ = load_artifact(init_artifact)
        spec = model.task("fashion")
    else:
        tok = Tokenizer.train(FASHION_CLASSES, vocab_size=64, min_frequency=1)
        mcfg = ModelConfig.preset(preset, vocab_size=tok.vocab_size, image_channels=1, image_size=28, patch_size=4)
        spec = TaskSpec(name="fashion", kind="image_classify", labels=FASHION_CLASSES)
        model = CoreModel(mcfg, [spec])
    td = TaskData(spec, ListDataset(list(s.train_x), s.train_y.tolist()), ListDataset(list(s.val_x), s.val_y.tolist()))
    dm = MultiTaskDataModule([td], tok, batch_size=cfg.batch_size, seed=cfg.seed, num_workers=cfg.num_workers)
    meta = {"recipe": "images", "data": s.sources, "init_artifact": str(init_artifact) if init_artifact else None}
    return fit(model, dm, cfg, out, tok, meta=meta)


# ---------------------------------------------------------------------------------------------------------- text
@dataclass
class TextTask:
    """A labelled-text task read from a file, with its seeded splits."""

    name: str
    labels: tuple[str, ...]
    train: tuple[list[str], list]  # class indices, or soft targets (class probabilities, see TextCollator)
    val: tuple[list[str], list[int]]
    test: tuple[list[str], list[int]]
    source: dict


def _subset(texts, ys, idx):
    return [texts[i] for i in idx], [int(ys[i]) for i in idx]


def refit_task(task: TextTask, **source) -> TextTask:
    """``task`` with its validation part added to training (validation stays, to be logged only; test never trains),
    for a fixed schedule that keeps the last epoch; ``source`` adds keys to the task's source."""
    train = (task.train[0] + task.val[0], list(task.train[1]) + list(task.val[1]))
    return replace(task, train=train, source={**task.source, "train": len(train[0]), **source})


def refit(task: TextTask, cfg: TrainConfig, epochs: int) -> tuple[TextTask, TrainConfig]:
    """A refit of ``task`` for ``epochs``: training on its training and validation parts (:func:`refit_task`, the
    source records ``refit_epochs``) with ``cfg`` changed to a fixed schedule that keeps the last weights."""
    return refit_task(task, refit_epochs=epochs), cfg.model_copy(update={"keep": "last", "max_epochs": epochs})


def text_task(name: str, path: str | Path, fmt: str, seed: int = 13, test_path: str | Path | None = None,
              val_fraction: float = 0.1, test_fraction: float = 0.2) -> TextTask:
    """Read a labelled-text file and split it, seeded and stratified, after removing duplicate sentences.

    With ``test_path`` the test set is that file and only a validation set is carved out; otherwise the file is cut
    into train / validation / test by ``val_fraction`` and ``test_fraction``.
    """
    texts, raw = dedupe_texts(*read_labelled_texts(path, fmt))
    labels = tuple(sorted(set(raw)))
    ys = [labels.index(r) for r in raw]
    source = {"path": str(path), "format": fmt, "seed": seed, "n": len(texts)}
    if test_path is not None:
        tr, va = stratified_split(ys, [1 - val_fraction, val_fraction], seed)
        tt, traw = read_labelled_texts(test_path, fmt)
        unknown = sorted(set(traw) - set(labels))
        if unknown:
            raise DataFormatError(f"{test_path} has labels the training file lacks: {unknown[:5]}")
        test = (tt, [labels.index(r) for r in traw])
        source["test_path"] = str(test_path)
    else:
        tr, va, te = stratified_split(ys, [1 - val_fraction - test_fraction, val_fraction, test_fraction], seed)
        test = _subset(texts, ys, te)
    source.update(train=len(tr), val=len(va), test=len(test[0]))
    return TextTask(name, labels, _subset(texts, ys, tr), _subset(texts, ys, va), test, source)


def finetune_text(tasks: list[TextTask], out: str | Path, cfg: TrainConfig, init_from: str | Path = "minilm",
                  pairs: dict[str, tuple[list[str], list[str]]] | None = None, callbacks: list | None = None) -> Path:
    """Fine-tune one backbone on several text classification tasks (and optional contrastive pairs) at once
    (``callbacks``: more Lightning callbacks for the run)."""
    n_val = {name: max(1, len(a) // 10) for name, (a, _) in (pairs or {}).items()}  # the first pairs validate
    # a random init (tiny, small, base) trains its tokenizer on the training texts, never on validation or test
    corpus = [x for t in tasks for x in t.train[0]]
    corpus += [x for name, (a, b) in (pairs or {}).items() for x in [*a[n_val[name]:], *b[n_val[name]:]]]
    model, tok = new_text_model(init_from, corpus=corpus)
    datas = [TaskData(TaskSpec(name=t.name, kind="classify", labels=t.labels), ListDataset(*t.train),
                      ListDataset(*t.val)) for t in tasks]
    datas += [TaskData(TaskSpec(name=name, kind="pairs"), ListDataset(a[n_val[name]:], b[n_val[name]:]),
                       ListDataset(a[:n_val[name]], b[:n_val[name]])) for name, (a, b) in (pairs or {}).items()]
    for td in datas:
        model.add_task(td.spec)
    dm = MultiTaskDataModule(datas, tok, batch_size=cfg.batch_size, max_length=cfg.max_length, seed=cfg.seed)
    meta = {"recipe": "finetune_text", "init_from": str(init_from), "data": {t.name: t.source for t in tasks}}
    return fit(model, dm, cfg, out, tok, meta=meta, extra_callbacks=callbacks)


def new_text_model(init_from: str | Path, corpus: list[str] | None = None,
                   layers: int | None = None) -> tuple[CoreModel, Tokenizer]:
    """A CoreModel without tasks: all-MiniLM-L6-v2's weights (``minilm``; with ``layers``, its lower ``layers``
    blocks only), a random preset (with ``layers`` blocks) with a tokenizer trained on ``corpus``, or the backbone and
    tokenizer of an artifact folder (e.g. one :func:`pretrain` wrote), its heads and tasks dropped; one with LoRA
    adapters is refused (which adapter the backbone should carry is ambiguous)."""
    if isinstance(init_from, Path) or init_from not in ("minilm", "tiny", "small", "base"):
        path = Path(init_from)
        if not (path / "config.json").is_file():
            raise ValueError(f"unknown init_from {str(init_from)!r}: use minilm, tiny, small, base or an artifact "
                             "folder (one with a config.json)")
        if layers is not None:
            raise ValueError(f"init_from {path}: layers applies to minilm or a preset, not to an artifact")
        model, tok, _ = load_artifact(path)
        if adapter_names(model.backbone):
            raise ValueError(f"init_from {path}: the artifact has LoRA adapters "
                             f"({', '.join(adapter_names(model.backbone))}); start from one without")
        model.tasks.clear()
        model.heads.clear()
        model.train()
        return model, tok
    if init_from == "minilm":
        model = CoreModel(minilm_config(layers))
        load_minilm(model.backbone)
        return model, Tokenizer.pretrained()
    if not corpus:
        raise ValueError("a randomly initialised model needs a corpus to train its tokenizer on")
    tok = Tokenizer.train(corpus, vocab_size={"tiny": 1000, "small": 8000, "base": 16000}[init_from])
    cfg = ModelConfig.preset(init_from, vocab_size=tok.vocab_size)
    if layers is not None:
        cfg = ModelConfig(**{**cfg.model_dump(), "n_layer": layers})
    return CoreModel(cfg), tok


# ------------------------------------------------------------------------------------------------------ distillation
def clean_unlabelled(texts: Sequence[str], task: TextTask) -> tuple[list[str], dict[str, int]]:
    """The unlabelled texts that may train a student of ``task``: each once, without the blank ones, those equal
    (:func:`core.data.text_key`) to a test text (``leakage_removed``: they would leak the test into training), and
    those equal to a training or validation text or to an earlier unlabelled one (``duplicates_removed``)."""
    test = {text_key(t) for t in task.test[0]}
    seen = {text_key(t) for t in (*task.train[0], *task.val[0])}
    kept, counts = [], {"leakage_removed": 0, "duplicates_removed": 0}
    for text in texts:
        key = text_key(text)
        if not key:
            continue
        if key in test:
            counts["leakage_removed"] += 1
        elif key in seen:
            counts["duplicates_removed"] += 1
        else:
            seen.add(key)
            kept.append(text)
    return kept, counts


def _teacher_columns(teacher, name: str, labels: Sequence[str]) -> list[int]:
    """The columns of the teacher's task ``name`` in the order of ``labels``."""
    if name not in teacher.tasks or teacher.tasks[name].kind != "classify":
        where = getattr(teacher, "path", None)
        raise ValueError(f"the teacher{f' at {where}' if where else ''} has no text classification task {name!r} "
                         f"(it has {sorted(teacher.tasks) or 'none'})")
    theirs = list(teacher.tasks[name].labels)
    if sorted(theirs) != sorted(labels):
        raise ValueError(f"the teacher's task {name!r} classifies into {theirs}, the student's into {list(labels)}")
    return [theirs.index(lab) for lab in labels]


def _fit_to_teacher(engine: InferenceEngine, task: str, texts: list[str], targets: list[Distilled],
                    cfg: TrainConfig) -> dict:
    """How closely the model of ``engine`` follows the teacher on ``texts``: the mean distillation loss (as trained)
    and the share of texts on which its class is the teacher's."""
    if not texts:
        return {"loss": None, "agreement": None}
    q = torch.from_numpy(engine.classify_proba(texts, task)).clamp_min(1e-12)
    p = torch.tensor([t.probs for t in targets])
    gold = torch.tensor([t.gold for t in targets])
    loss = distillation_loss(q.log(), p, gold, cfg.distil_alpha, cfg.distil_temperature, cfg.label_smoothing)
    return {"loss": round(float(loss), 5), "agreement": round(float((q.argmax(-1) == p.argmax(-1)).float().mean()), 4)}


def distil(teacher, task: TextTask, out: str | Path, cfg: TrainConfig, unlabelled: Sequence[str] = (),
           layers: int | None = None, init_from: str | Path = "minilm", teacher_task: str | None = None,
           read: Callable[[Sequence[str]], list[str]] | None = None, meta: dict | None = None) -> Path:
    """Distil ``teacher`` into one student model of ``task`` (knowledge distillation, the loss of
    :func:`core.heads.distillation_loss` with ``cfg.distil_alpha`` and ``cfg.distil_temperature``) and write it to
    ``out``: an ordinary single-model artifact whose meta records the distillation (``meta["distillation"]``).

    Args:
        teacher: Anything with ``tasks`` and ``classify_proba(texts, task)`` (an ``InferenceEngine``, an
            ``Ensemble``) whose task ``teacher_task`` (default: ``task.name``) classifies into ``task.labels``, in any
            order.
        task: The training texts with their gold labels (class indices; a soft target counts as its top class), the
            validation part (gold labels: early stopping and the epoch kept, as ``cfg`` says) and the test part (never
            trained on: the teacher's and the student's accuracy on it are recorded).
        unlabelled: More texts, which the teacher alone labels (:func:`clean_unlabelled` removes test texts and
            duplicates first, and the meta records how many).
        layers: The student's blocks: the lower ``layers`` of all-MiniLM-L6-v2 (1 to 6; None: all six), or of a
            random preset.
        init_from: ``minilm``, a preset or an artifact (:func:`new_text_model`).
        read: What the models read of a list of texts (e.g. names replaced by placeholders), applied to every text
            the teacher labels and the student trains, validates and is tested on; default: the texts as written.
        meta: More facts for the artifact's meta.

    Raises:
        ValueError: The teacher lacks the task or its labels differ, ``layers`` is out of range, or there is nothing
            to train on.
    """
    name = teacher_task or task.name
    cols = _teacher_columns(teacher, name, task.labels)
    read = read or list
    extra, counts = clean_unlabelled(unlabelled, task)
    gold = [int(np.argmax(y)) if isinstance(y, (list, tuple, np.ndarray)) else int(y) for y in task.train[1]]
    texts = read([*task.train[0], *extra])
    if not texts:
        raise ValueError("nothing to distil on: no training texts and no unlabelled ones")
    log.info("the teacher labels %d training and %d unlabelled texts", len(task.train[0]), len(extra))
    probs = teacher.classify_proba(texts, name)[:, cols].astype(np.float64)
    targets = [Distilled(tuple(p.tolist()), g) for p, g in zip(probs, gold + [-1] * len(extra))]
    model, tok = new_text_model(init_from, corpus=texts, layers=layers)
    spec = TaskSpec(name=task.name, kind="classify", labels=task.labels)
    model.add_task(spec)
    initial = _fit_to_teacher(InferenceEngine.from_model(model, tok), task.name, texts, targets, cfg)
    model.train()
    td = TaskData(spec, ListDataset(texts, targets), ListDataset(read(task.val[0]), list(task.val[1])))
    dm = MultiTaskDataModule([td], tok, batch_size=cfg.batch_size, max_length=cfg.max_length, seed=cfg.seed)
    record = {"teacher": {"path": str(getattr(teacher, "path", None) or ""), "task": name},
              "alpha": cfg.distil_alpha, "temperature": cfg.distil_temperature, "layers": model.cfg.n_layer,
              "init_from": str(init_from), "labelled": len(task.train[0]), "unlabelled": len(extra), **counts}
    fit(model, dm, cfg, out, tok, meta={"recipe": "distil", "data": {task.name: task.source}, **(meta or {}),
                                        "distillation": record})
    student = InferenceEngine.from_model(model, tok)
    record["fit_to_teacher"] = {"initial": initial, "final": _fit_to_teacher(student, task.name, texts, targets, cfg)}
    if task.test[0]:
        test, y = read(task.test[0]), np.asarray([int(v) for v in task.test[1]])
        teacher_acc = float((teacher.classify_proba(test, name)[:, cols].argmax(-1) == y).mean())
        student_acc = float((student.classify_proba(test, task.name).argmax(-1) == y).mean())
        record["teacher"]["test_accuracy"] = round(teacher_acc, 4)
        record["test"] = {"n": len(y), "accuracy": round(student_acc, 4), "teacher_accuracy": round(teacher_acc, 4)}
    log.info("distilled %s: %s", out, json.dumps(record))
    update_meta(out, distillation=record)
    return Path(out)


def read_corpus(paths: list[str | Path]) -> list[str]:
    """Texts for pretraining from plain-text files (one text per non-empty line) or labelled CSV/PhraseBank files."""
    texts: list[str] = []
    for p in map(Path, paths):
        if not p.is_file():
            raise DataFormatError(f"corpus file not found: {p}")
        if p.suffix == ".csv":
            texts += read_labelled_texts(p, "csv")[0]
        elif p.name.startswith("Sentences_"):
            texts += read_labelled_texts(p, "phrasebank")[0]
        else:
            texts += [ln.strip() for ln in p.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    if not texts:
        raise DataFormatError("the corpus is empty")
    return texts


def pretrain(corpus: list[str], out: str | Path, cfg: TrainConfig, init_from: str = "minilm",
             val_fraction: float = 0.05) -> Path:
    """Continued pretraining that mixes masked-token and next-token batches; the validation perplexity is measured
    before and after (``meta.training.initial`` / ``final``)."""
    texts = sorted(set(t for t in corpus if t.strip()))
    rng = np.random.default_rng(cfg.seed)
    rng.shuffle(texts)
    n_val = max(1, int(len(texts) * val_fraction))
    model, tok = new_text_model(init_from, corpus=texts[n_val:])
    spec = TaskSpec(name="lm", kind="lm")
    model.add_task(spec)
    td = TaskData(spec, ListDataset(texts[n_val:]), ListDataset(texts[:n_val]))
    dm = MultiTaskDataModule([td], tok, batch_size=cfg.batch_size, max_length=cfg.max_length, seed=cfg.seed,
                             mlm_prob=cfg.mlm_prob, causal_fraction=cfg.causal_fraction)
    meta = {"recipe": "pretrain", "init_from": init_from, "data": {"train": len(texts) - n_val, "val": n_val}}
    return fit(model, dm, cfg, out, tok, meta=meta, validate_first=True)


def pretrain_corpus(data_dir: Path, seed: int = 13) -> list[str]:
    """A domain corpus from the data sets' training parts only: Banking77 train, bank FAQ questions and answers,
    StackFAQ answers and the PhraseBank training split (its test split is never read here)."""
    data_dir = Path(data_dir)
    texts = list(banking77_task(data_dir, seed).train[0]) + list(phrasebank_task(data_dir, seed).train[0])
    faq = data_dir / "bank_faqs" / "BankFAQs.csv"
    if faq.is_file():
        with faq.open(encoding="utf-8", errors="replace") as f:
            for row in csv.DictReader(f):
                texts += [row.get("Question", ""), row.get("Answer", "")]
    threads = data_dir / "stackfaq" / "faq_threads.jsonl"
    if threads.is_file():
        for _, line in json_lines(threads.read_text(encoding="utf-8")):
            rec = json.loads(line)
            texts += [a for a in rec.get("answers", []) if isinstance(a, str)]
    return [t for t in texts if t and t.strip()]


# ------------------------------------------------------------------------------------------------ benchmark artifacts
def banking77_task(data_dir: Path, seed: int = 13) -> TextTask:
    """Banking77: train.csv split 90/10 into train/validation; test_dev.csv is the test set."""
    d = Path(data_dir) / "banking77"
    return text_task("banking77", d / "train.csv", "csv", seed=seed, test_path=d / "test_dev.csv")


def phrasebank_task(data_dir: Path, seed: int = 13) -> TextTask:
    """Financial PhraseBank (50% agreement), deduplicated, split 70/10/20 (seeded, stratified)."""
    return text_task("phrasebank", Path(data_dir) / "financial_phrasebank" / "Sentences_50Agree.txt", "phrasebank",
                     seed=seed)


def _text_recipe(*task_fns):
    def run(data_dir: Path, out: Path, cfg: TrainConfig) -> Path:
        return finetune_text([fn(data_dir) for fn in task_fns], out, cfg)
    return run


# name -> (recipe(data_dir, out_dir, cfg), the training whose config it takes): what `make artifacts` trains, in order
ARTIFACT_RECIPES = {
    "text-multitask": (_text_recipe(phrasebank_task, banking77_task), "text"),
    "text-banking77": (_text_recipe(banking77_task), "text"),
    "text-phrasebank": (_text_recipe(phrasebank_task), "text"),
    "images-fashion": (train_image_classifier, "images"),
    "text-pretrain": (lambda data_dir, out, cfg: pretrain(pretrain_corpus(data_dir), out, cfg), "pretrain"),
}


def build_artifacts(data_dir: str | Path, out_root: str | Path, configs: dict[str, TrainConfig],
                    names: list[str] | None = None, force: bool = False) -> dict[str, Path]:
    """Train every artifact of ``ARTIFACT_RECIPES`` (or ``names``) that ``out_root`` lacks, each with the config of
    its training in ``configs`` (``text``, ``images``, ``pretrain``: the settings' ``CoreTrainSettings.configs()``)."""
    out_root, done = Path(out_root), {}
    for name in names or list(ARTIFACT_RECIPES):
        if name not in ARTIFACT_RECIPES:
            raise ValueError(f"unknown artifact {name!r}; known: {sorted(ARTIFACT_RECIPES)}")
        out = out_root / name
        if (out / "config.json").is_file() and not force:
            log.info("artifact %s exists; skipping", out)
        else:
            log.info("training artifact %s", name)
            recipe, training = ARTIFACT_RECIPES[name]
            recipe(Path(data_dir), out, configs[training])
        done[name] = out
    return done
