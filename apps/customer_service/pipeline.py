"""Train and evaluate the customer-service models (offline: nothing online imports this module).

The artifact (default ``artifacts/cs``) is all-MiniLM-L6-v2, its base weights frozen, with two LoRA adapters:
``intents`` (with the classifier head) and ``retrieval`` (contrastive, for the FAISS embeddings). A linear head on the
frozen base (``intents-base``) and optional fully fine-tuned models (sub-artifacts ``intents-full/``,
``intents-full-2/``, ...) join the adapter in the intent ensemble written to ``ensemble.json``.

That artifact is the teacher: :func:`distil_intents` distils its intent ensemble into one student model (sub-artifact
``intents-student/``, the ensemble's only member) and writes the served artifact, which keeps the teacher's backbone
and retrieval adapter and holds no other intent model.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from apps.customer_service.card import write_cards
from apps.customer_service.index import index_entries, make_retriever
from apps.customer_service.intents import TASK, evaluation_report, load_intents
from apps.customer_service.knowledge import KBFormatError, entry_text, load_kb, read_queries
from apps.customer_service.retrieval import HybridRetriever
from apps.customer_service.settings import CSDistilSettings, CSSettings, CSTrainSettings
from core.adapters import adapter_names, apply_lora, remove_adapter, set_adapter, train_only_adapters
from core.artifacts import load_artifact, read_config, save_artifact, update_meta
from core.config import TrainConfig
from core.data import ListDataset, MultiTaskDataModule, TaskData, pad_ids
from core.engine import ENSEMBLE_FILE, InferenceEngine, write_ensemble
from core.heads import ClassifierHead
from core.metrics import guard_mixture, hit_rate_at_k, log_loss, member_weights, reciprocal_rank
from core.model import mean_pool
from core.recipes import distil, finetune_text, new_text_model, refit, text_task
from core.tasks import BASE, TaskSpec
from core.train import fit

log = logging.getLogger(__name__)

FULL_INTENTS_DIR = "intents-full"  # the first fully fine-tuned member's sub-artifact; more: intents-full-2, ...
STUDENT_DIR = "intents-student"  # the distilled student's sub-artifact
_FULL_DIR_RE = re.compile(rf"{FULL_INTENTS_DIR}(?:-([0-9]+))?")


# ------------------------------------------------------------------------------------------------------ readers
def retrieval_pairs(queries_path: str | Path, kb_path: str | Path, with_answer: bool) -> list[tuple[str, str]]:
    """(query, entry text) pairs to train retrieval on: every query of ``queries_path`` with the text of its gold
    entry in the knowledge base ``kb_path``; queries whose entry is not in it are left out."""
    kb = {e.id: e for e in load_kb(kb_path).entries}
    return [(q, entry_text(kb[g], with_answer=with_answer)) for q, g in read_queries(queries_path) if g in kb]


# ------------------------------------------------------------------------------------------------------ training
def train_cs(out: Path, intents_csv: Path | None, pairs: Sequence[tuple[str, str]] = (),
             intents_cfg: TrainConfig | None = None, retrieval_cfg: TrainConfig | None = None,
             lora_r: int | None = None, init_from: Path | None = None, full: int = 0,
             full_cfg: TrainConfig | None = None, refit_epochs: int | None = None) -> Path:
    """Train the intents adapter (+ classifier head) on ``intents_csv`` and the retrieval adapter on ``pairs``
    (query, entry text), one after the other on the frozen all-MiniLM-L6-v2 base; return ``out``.

    A config or ``lora_r`` not given is the default of :class:`CSTrainSettings`. ``init_from`` (an earlier cs
    artifact) continues from its adapters and heads (a warm restart, with the settings' ``continue_lr`` and
    ``continue_head_lr`` when ``intents_cfg`` is not given); what is not retrained is kept as it was.

    ``full`` also fine-tunes every weight of that many copies of all-MiniLM-L6-v2 on the intents (``full_cfg``, seeds
    1000 apart; sub-artifacts ``intents-full/``, ``intents-full-2/``, ...), averaged into the ensemble as one view.
    Continuing without ``full`` keeps the earlier artifact's full members. ``refit_epochs`` (with ``full``): the full
    members train on the training and validation parts together for that many epochs, without early stopping, and
    their average alone is served (the adapter and the base head are kept with weight 0).
    """
    if intents_csv is None and not pairs:
        raise ValueError("nothing to train: give intents, retrieval pairs or both")
    defaults = CSTrainSettings()
    intents_cfg = intents_cfg or defaults.intents_config(continuing=init_from is not None)
    retrieval_cfg = retrieval_cfg or defaults.retrieval_config()
    full_cfg = full_cfg or defaults.full_config()
    lora_r = defaults.lora_r if lora_r is None else lora_r
    if refit_epochs is not None and (refit_epochs < 1 or not full or intents_csv is None):
        raise ValueError("a refit needs refit_epochs >= 1, intents and at least one full member (--full-intents)")
    if init_from is not None:
        model, tok, config = load_artifact(init_from)
        model.train()  # load_artifact returns it in eval mode; dropout is part of training
        meta = {**config.get("meta", {}), "recipe": "cs", "continued_from": str(init_from)}
        lora_r = int(meta.get("lora_r", lora_r))
    else:
        model, tok = new_text_model("minilm")
        meta = {"recipe": "cs", "lora_r": lora_r}
    if intents_csv is not None:
        if not (init_from is not None and not full and _carry_intents(Path(init_from), Path(out))):
            for stale in full_intents_dirs(Path(out)):  # stale, or about to be retrained
                shutil.rmtree(Path(out) / stale, ignore_errors=True)
        shutil.rmtree(Path(out) / STUDENT_DIR, ignore_errors=True)  # the new intent ensemble replaces a student
        meta["intents"] = _train_intents(model, tok, intents_csv, intents_cfg, lora_r, out, meta,
                                         full_cfg if full else None, full_members=int(full),
                                         refit_epochs=refit_epochs)
    elif init_from is not None:  # the intents are not retrained: their ensemble goes along as it is
        _carry_intents(Path(init_from), Path(out))
    if pairs:
        meta["retrieval_pairs"] = len(pairs)
        _train_retrieval(model, tok, pairs, retrieval_cfg, max(4, lora_r // 2), out, meta)
    write_cards(out)
    return out


def _carry_intents(src: Path, dst: Path) -> bool:
    """Put the intent ensemble of artifact ``src`` (``ensemble.json`` and the full members or the student, if it has
    them) into artifact ``dst`` unchanged; whether ``dst`` now holds full members."""
    names = [d for d in full_intents_dirs(src) if (src / d / "config.json").is_file()]
    if src.resolve() == dst.resolve():
        return bool(names)
    dst.mkdir(parents=True, exist_ok=True)
    if (src / ENSEMBLE_FILE).is_file():
        shutil.copyfile(src / ENSEMBLE_FILE, dst / ENSEMBLE_FILE)
    shutil.rmtree(dst / STUDENT_DIR, ignore_errors=True)
    if (src / STUDENT_DIR / "config.json").is_file():
        shutil.copytree(src / STUDENT_DIR, dst / STUDENT_DIR)
    if names:
        for stale in full_intents_dirs(dst):
            shutil.rmtree(dst / stale, ignore_errors=True)
        for d in names:
            shutil.copytree(src / d, dst / d)
    return bool(names)


def full_intents_dirs(artifact: Path) -> list[str]:
    """The full intents sub-artifacts that folder ``artifact`` holds, in member order."""
    found = [(int(m[1] or 1), p.name) for p in (artifact.iterdir() if artifact.is_dir() else ())
             if p.is_dir() and (m := _FULL_DIR_RE.fullmatch(p.name))]
    return [name for _, name in sorted(found)]


def _train_intents(model, tok, intents_csv: Path, cfg: TrainConfig, lora_r: int, out: Path, meta: dict,
                   full_cfg: TrainConfig | None, full_members: int, refit_epochs: int | None) -> dict:
    task = text_task(TASK, intents_csv, "csv", val_fraction=0.1, test_fraction=0.0)
    spec = TaskSpec(name=TASK, kind="classify", labels=task.labels, adapter=TASK)
    if TASK in adapter_names(model.backbone) and TASK in model.tasks:  # continuing an earlier artifact
        if list(model.tasks[TASK].labels) != list(task.labels):
            raise ValueError(f"{intents_csv}: its intents differ from those of the artifact it continues")
        spec = model.tasks[TASK]
    else:
        apply_lora(model.backbone, TASK, r=lora_r, alpha=2 * lora_r, dropout=0.1)
        model.add_task(spec)
    train_only_adapters(model, keep_trainable=(f"heads.{TASK}.",))
    _freeze_other_adapters(model, TASK)
    dm = MultiTaskDataModule([TaskData(spec, ListDataset(*task.train), ListDataset(*task.val))], tok,
                             batch_size=cfg.batch_size, max_length=cfg.max_length, seed=cfg.seed)
    fit(model, dm, cfg, out, tok, meta={**meta, "intents": task.source})
    # the retrieval run's history replaces this one as the artifact's "training": keep it under its own name
    meta["intents_training"] = read_config(out)["meta"]["training"]
    if full_cfg is not None:
        full_task = task
        if refit_epochs is not None:  # validation trains too (still logged, never selected on)
            full_task, full_cfg = refit(task, full_cfg, refit_epochs)
        for i, sub in enumerate([FULL_INTENTS_DIR] + [f"{FULL_INTENTS_DIR}-{k}" for k in range(2, full_members + 1)]):
            log.info("intents: fully fine-tuned member %d/%d in %s", i + 1, full_members, Path(out) / sub)
            finetune_text([full_task], Path(out) / sub, full_cfg.model_copy(update={"seed": full_cfg.seed + 1000 * i}))
    meta["intent_ensemble"] = _train_base_head(model, tok, task, out, {**meta, "intents": task.source},
                                               refit_epochs=refit_epochs)
    return task.source


def _pooled(model, tok, texts: Sequence[str], batch: int = 64, max_length: int = 64) -> torch.Tensor:
    """Mean-pooled hidden states (N, C) of the model as its adapters are now set."""
    out = []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(texts), batch):
            ids, mask = pad_ids(tok.encode_batch(list(texts[start:start + batch]), max_length), tok.pad_id)
            hidden, full = model.encode(ids, mask)
            out.append(mean_pool(hidden, full).float())
    return torch.cat(out)


def _train_base_head(model, tok, task, out: Path, meta: dict, refit_epochs: int | None = None) -> dict:
    """Fit task ``intents-base``, a linear head on the frozen mean-pooled base embeddings (L-BFGS, L2 strength chosen
    on validation), then write the intent ensemble (adapter, base head, full members) to ``ensemble.json``; return
    its report, which also goes into the artifact's meta.

    Without full members the shares are chosen on validation by log-loss (:func:`core.metrics.member_weights`). With
    them their average is the primary view, and the validated mixture is served only when a paired bootstrap says it
    is more accurate with 95% confidence (:func:`core.metrics.guard_mixture`; the decision is the report's ``guard``).
    Refitted full members have trained on validation, so it cannot weigh them: their average is served alone, and the
    report's ``validation_seen_by`` names the views whose validation figures are not held-out ones."""
    (xt, yt), (xv, yv) = task.train, task.val
    set_adapter(model.backbone, None)
    ft, fv = _pooled(model, tok, xt), _pooled(model, tok, xv)
    mu, sd = ft.mean(0), ft.std(0) + 1e-6
    yt_t, yv_np = torch.as_tensor(yt), np.asarray(yv)
    best = None
    for l2 in (1e-4, 1e-3, 1e-2):
        lin = torch.nn.Linear(ft.shape[1], len(task.labels))
        opt = torch.optim.LBFGS(lin.parameters(), lr=1.0, max_iter=300, history_size=20)

        def closure(opt=opt, lin=lin, l2=l2):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(lin((ft - mu) / sd), yt_t) + l2 * lin.weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            acc = float((lin((fv - mu) / sd).argmax(-1).numpy() == yv_np).mean())
        if best is None or acc > best[0]:
            best = (acc, l2, lin)
    _, l2, lin = best
    if "intents-base" not in model.heads:
        model.add_task(TaskSpec(name="intents-base", kind="classify", labels=task.labels, adapter=BASE))
    head: ClassifierHead = model.heads["intents-base"]
    with torch.no_grad():  # fold the standardisation into the linear layer: W (x - mu) / sd + b
        head.out.weight.copy_(lin.weight / sd)
        head.out.bias.copy_(lin.bias - (lin.weight * (mu / sd)).sum(-1))
    # the ensemble weights, on validation, from the probabilities as served (the engine runs in eval mode: no
    # dropout in the head created above)
    engine = InferenceEngine.from_model(model, tok, max_length=64)
    probs = {name: engine.classify_proba(list(xv), name) for name in (TASK, "intents-base")}
    fulls = [d for d in full_intents_dirs(Path(out)) if (Path(out) / d / "config.json").is_file()]
    for d in fulls:
        probs[d] = InferenceEngine(Path(out) / d, max_length=64).classify_proba(list(xv), TASK)
    names = [TASK, "intents-base", *fulls]
    kinds = ["adapter", "base_head"] + ["full"] * len(fulls)
    w, views = member_weights(kinds, [probs[n] for n in names], yv_np)
    guard = None
    if fulls and refit_epochs is not None:  # validation is part of their training: it cannot weigh them
        w = [1.0 / len(fulls) if k == "full" else 0.0 for k in kinds]
    elif fulls:  # the fully fine-tuned members are the primary view: the others must clearly earn their passes
        validated = dict(zip(names, w))
        w, guard = guard_mixture(kinds, w, views, yv_np, primary="full")
        guard["validated_weights"] = validated  # what the mixture would have been, kept for the record
    weights = dict(zip(names, w))
    views["ensemble"] = sum(wi * probs[n] for n, wi in weights.items())
    accs = {name: float((p.argmax(-1) == yv_np).mean()) for name, p in views.items()}
    losses = {name: round(log_loss(p, yv_np), 5) for name, p in views.items()}
    report = {"weights": weights, "val_accuracy": accs, "val_log_loss": losses, "base_head_l2": l2,
              **({"guard": guard} if guard else {})}
    if fulls and refit_epochs is not None:
        report.update(refit_epochs=refit_epochs, validation_seen_by=["full", "ensemble", *fulls])
    if fulls:
        report["val_accuracy"]["members"] = {m: float((probs[m].argmax(-1) == yv_np).mean()) for m in [TASK, *fulls]}
    log.info("intent ensemble on validation: %s", report)
    save_artifact(out, model, tok, meta={**meta, "intent_ensemble": report})
    # the adapter and the base head are tasks of the cs artifact itself ("."), the full members artifacts of their own
    write_ensemble(out, [d if d in fulls else "." for d in names], w, TASK,
                   tasks=[TASK if n in fulls else n for n in names], kinds=kinds)
    return report


def _train_retrieval(model, tok, pairs: Sequence[tuple[str, str]], cfg: TrainConfig, r: int, out: Path,
                     meta: dict) -> Path:
    """Train (or keep training) the retrieval adapter on (query, entry text) pairs with in-batch negatives."""
    a, b = zip(*pairs)
    order = np.random.default_rng(cfg.seed).permutation(len(a))
    a, b = [a[i] for i in order], [b[i] for i in order]
    n_val = min(len(a) // 2, max(cfg.batch_size, len(a) // 10))
    if "retrieval" not in adapter_names(model.backbone):
        apply_lora(model.backbone, "retrieval", r=r, alpha=2 * r, dropout=0.1)
    spec = TaskSpec(name="retrieval", kind="pairs", adapter="retrieval")
    if "retrieval" not in model.tasks:
        model.add_task(spec)
    train_only_adapters(model)
    _freeze_other_adapters(model, "retrieval")
    dm = MultiTaskDataModule([TaskData(spec, ListDataset(a[n_val:], b[n_val:]), ListDataset(a[:n_val], b[:n_val]))],
                             tok, batch_size=cfg.batch_size, max_length=cfg.max_length, seed=cfg.seed)
    split = {"train": len(a) - n_val, "val": n_val, "seed": cfg.seed}
    return fit(model, dm, cfg, out, tok, meta={**meta, "retrieval_split": split})


def learn(settings: CSSettings, store, queries: Sequence[tuple[str, str]]) -> dict:
    """Fine-tune the retrieval adapter on the agents' accepted and edited answers (``settings.train.retrieval``);
    report retrieval on the fixed ``queries`` before and after. The new artifact replaces the old one only when it is
    not worse."""
    cfg = settings.train.retrieval_config()
    kb = {e.id: e for e in load_kb(settings.kb_path).entries}
    kb.update({e.id: e for e in store.kb_entries(origin="feedback")})
    pairs = [(q, entry_text(kb[i], with_answer=settings.retrieval.index_answers))
             for q, i in store.feedback_pairs() if i in kb]
    if len(pairs) < 8:
        raise ValueError(f"only {len(pairs)} usable feedback pairs; need at least 8 to learn from")

    def score(artifact: Path) -> dict:
        eng = InferenceEngine(artifact)
        retriever = make_retriever(eng, settings.retrieval)
        index_entries(retriever, list(kb.values()), settings.retrieval)
        return retrieval_metrics(retriever, queries)

    before = score(settings.artifact_dir)
    model, tok, config = load_artifact(settings.artifact_dir)
    staging = settings.artifact_dir.with_name(settings.artifact_dir.name + ".learning")
    shutil.rmtree(staging, ignore_errors=True)
    _train_retrieval(model, tok, pairs, cfg.model_copy(update={"batch_size": min(cfg.batch_size, len(pairs))}),
                     8, staging, {**config.get("meta", {}), "learned_from_feedback": len(pairs)})
    _carry_intents(settings.artifact_dir, staging)  # the intent ensemble goes along unchanged
    write_cards(staging)
    after = score(staging)
    kept = after["mrr"] >= before["mrr"]
    if kept:
        backup = settings.artifact_dir.with_name(settings.artifact_dir.name + ".previous")
        shutil.rmtree(backup, ignore_errors=True)
        settings.artifact_dir.rename(backup)
        staging.rename(settings.artifact_dir)
    return {"pairs": len(pairs), "before": before, "after": after, "kept": kept}


# ------------------------------------------------------------------------------------------------------ distillation
def _is_query_file(path: Path) -> bool:
    """Whether ``path`` is a query file (JSONL or CSV whose first record has a ``query`` field), not a KB."""
    if not path.is_file() or path.suffix not in (".jsonl", ".csv"):
        return False
    with path.open(encoding="utf-8-sig", errors="replace") as f:
        first = next((line for line in f if line.strip()), "")
    if path.suffix == ".csv":
        return "query" in next(csv.reader([first]), [])
    try:
        record = json.loads(first)
    except json.JSONDecodeError:
        return False
    return isinstance(record, dict) and "query" in record


def unlabelled_texts(paths: Sequence[str | Path]) -> list[str]:
    """The texts of query files (their queries) and knowledge bases (their questions, read as ``load_kb`` reads
    them: cleaned, redacted, de-duplicated) that the teacher labels for the student.

    Raises:
        KBFormatError: A file is missing or malformed.
    """
    texts: list[str] = []
    for p in map(Path, paths):
        if _is_query_file(p):
            texts += [q for q, _ in read_queries(p)]
        else:
            texts += [e.question for e in load_kb(p).entries]
    return texts


def _served_part(teacher: Path, out: Path) -> dict:
    """Write to ``out`` the teacher's cs artifact without its intent models (the ``intents`` adapter and task, the
    base head): its backbone, its retrieval adapter and their tokenizer, as they were; return the teacher's meta."""
    model, tok, config = load_artifact(teacher)
    if TASK in adapter_names(model.backbone):
        remove_adapter(model.backbone, TASK)
    for name in (TASK, "intents-base"):
        model.tasks.pop(name, None)
        if name in model.heads:
            del model.heads[name]
    meta = {k: v for k, v in config.get("meta", {}).items() if k != "intent_ensemble"}
    save_artifact(out, model, tok, meta=meta)
    return config.get("meta", {})


def distil_intents(teacher: str | Path, intents_csv: str | Path, out: str | Path,
                   settings: CSDistilSettings | None = None, unlabelled: Sequence[str | Path] = (),
                   test_path: str | Path | None = None) -> dict:
    """Distil the intent ensemble of the cs artifact ``teacher`` into one student model and write the served cs
    artifact to ``out``: the teacher's backbone, retrieval adapter and tokenizer, and an intent ensemble whose only
    member is the student (sub-artifact ``intents-student/``, ``core.recipes.distil``): one pass per message.

    The student learns the teacher's probabilities (and the gold intents, ``settings.alpha``) on the training part of
    ``intents_csv``, split as the teacher's was, and the teacher's probabilities alone on the texts of ``unlabelled``
    (:func:`unlabelled_texts`); it early-stops on the validation part's gold intents (``settings.train``). With
    ``test_path`` (labelled intents never trained on; unlabelled texts equal to one of them are dropped) the student's
    and the teacher's test accuracy, measured in this run, are recorded.

    Returns:
        The report, also kept in the artifact's meta (``intents_student``).

    Raises:
        FileNotFoundError: No teacher folder.
        core.artifacts.ArtifactError: The teacher is not a complete cs artifact.
        ValueError: ``out`` is the teacher's folder, the teacher has no intents, or it was trained on another split.
    """
    settings = settings or CSDistilSettings()
    teacher, out = Path(teacher), Path(out)
    if not teacher.is_dir():
        raise FileNotFoundError(f"teacher not found: {teacher} (train it with `trident cs train --out {teacher}`)")
    if out.resolve() == teacher.resolve():
        raise ValueError(f"the student cannot be written over its teacher: choose another folder than {teacher}")
    engine = InferenceEngine(teacher)
    intents = load_intents(engine)
    if intents is None:
        raise ValueError(f"the teacher at {teacher} has no intents task: train it with `trident cs train`")
    task = text_task(TASK, intents_csv, "csv", val_fraction=0.1, test_fraction=0.0, test_path=test_path)
    theirs = (engine.config.get("meta") or {}).get("intents") or {}
    if any(k in theirs and theirs[k] != task.source.get(k) for k in ("n", "seed")):
        raise ValueError(f"the teacher at {teacher} was trained on other intents (n={theirs.get('n')}, seed="
                         f"{theirs.get('seed')}) than {intents_csv} gives (n={task.source['n']}): distil on its data")
    texts = unlabelled_texts(unlabelled)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    teacher_meta = _served_part(teacher, tmp)
    distil(intents, task, tmp / STUDENT_DIR, settings.config(), unlabelled=texts, layers=settings.layers,
           meta={"unlabelled_sources": [str(p) for p in unlabelled]})
    record = json.loads((tmp / STUDENT_DIR / "config.json").read_text())["meta"]["distillation"]
    write_ensemble(tmp, [STUDENT_DIR], [1.0], TASK, kinds=["student"], distilled_from=str(teacher))
    student = load_intents(InferenceEngine(tmp))
    xv, yv = task.val
    report = {"distillation": record, "teacher": {"path": str(teacher),
                                                  "intent_ensemble": teacher_meta.get("intent_ensemble")},
              "val_accuracy": float((student.classify_proba(list(xv), TASK).argmax(-1) == np.asarray(yv)).mean())}
    if "test" in record:  # measured on test_path in this run, the teacher's too
        report["test"] = record["test"]
    update_meta(tmp, intents_student=report)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return {"artifact": str(out), **report}


def _freeze_other_adapters(model, keep: str) -> None:
    for name, p in model.named_parameters():
        if ".lora_" in name and not name.endswith(f".{keep}"):
            p.requires_grad_(False)


# ------------------------------------------------------------------------------------------------------ evaluation
def eval_intents(engine: InferenceEngine, csv_path: Path) -> dict:
    """Accuracy, macro-F1 and scoring speed (sentences per second, without loading) of the artifact's intent
    ensemble on a ``text,category`` CSV."""
    intents = load_intents(engine)
    if intents is None:
        raise ValueError("the artifact has no intents task: train it with `trident cs train`")
    keep = ("accuracy", "macro_f1", "n", "sentences_per_s")
    return {k: v for k, v in evaluation_report(intents, csv_path).items() if k in keep}


def retrieval_metrics(retriever: HybridRetriever, queries: Sequence[tuple[str, str]], k: int = 10) -> dict:
    """hit@1, hit@5 and MRR of the retriever on (query, gold id) pairs."""
    results = retriever.search([q for q, _ in queries], k=k)
    ranked = [[r.id for r in res] for res in results]
    gold = [{g} for _, g in queries]
    return {"hit@1": float(np.mean([hit_rate_at_k(r, g, 1) for r, g in zip(ranked, gold)])),
            "hit@5": float(np.mean([hit_rate_at_k(r, g, 5) for r, g in zip(ranked, gold)])),
            "mrr": float(np.mean([reciprocal_rank(r, g) for r, g in zip(ranked, gold)])), "n": len(queries)}


def eval_retrieval(settings: CSSettings, engine: InferenceEngine, kb_path: Path, queries_path: Path) -> dict:
    """Index ``kb_path`` in memory and score ``queries_path`` against it."""
    build = load_kb(kb_path)
    queries = read_queries(queries_path)
    missing = sorted({g for _, g in queries} - {e.id for e in build.entries})
    if missing:
        raise KBFormatError(f"{queries_path} refers to ids missing from the KB: {missing[:5]}")
    retriever = make_retriever(engine, settings.retrieval)
    index_entries(retriever, build.entries, settings.retrieval)
    return retrieval_metrics(retriever, queries)
