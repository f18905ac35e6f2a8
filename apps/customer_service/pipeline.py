"""Train, index and evaluate the customer-service models.

The artifact (default ``artifacts/cs``) is all-MiniLM-L6-v2 with two LoRA adapters: ``intents`` (with the intent
classifier head) and ``retrieval`` (contrastive, for the FAISS embeddings). The base weights stay as they were, so
retrieval never gets worse because the core learned intents, and each adapter is switched on for its own task.
Optionally more intents adapters (``intents-2``, ...) and fully fine-tuned intents models of their own
(sub-artifacts ``intents-full/``, ``intents-full-2/``, ...) join a validated ensemble with a linear head on the
frozen base.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from apps.customer_service.bot import Calibrator
from apps.customer_service.knowledge import KBFormatError, entry_text, load_kb, save_kb
from apps.customer_service.retrieval import DenseIndex, HybridRetriever, IndexConfig
from apps.customer_service.schemas import KBBuild, KBEntry
from apps.customer_service.settings import CSSettings, RetrievalSettings
from core.config import TrainConfig
from core.metrics import (
    accuracy,
    guard_mixture,
    hit_rate_at_k,
    log_loss,
    member_weights,
    precision_recall_f1,
    reciprocal_rank,
)

log = logging.getLogger(__name__)

INTENTS_TRAIN = TrainConfig(max_epochs=3, batch_size=32, lr=1e-3, head_lr=2e-3, max_length=64, precision="32-true",
                            patience=2, warmup_ratio=0.06, label_smoothing=0.1)
# a warm restart of the intents adapter from an earlier artifact: a second, gentler cosine cycle (``--continue-from``)
INTENTS_CONTINUE = INTENTS_TRAIN.model_copy(update={"head_lr": 1e-3, "lr": 5e-4})
# the fully fine-tuned intents member (``--full-intents``): every weight of its own copy of the backbone trains
# (8 epochs: 3-fold cross-validation inside train.csv, two seeds each, gave 0.9362 against 0.9330 for 5 epochs);
# ``make artifacts`` refits two of them on train + validation for those 8 epochs (``--refit-epochs 8``: test_dev
# 0.9403, against 0.9377 for the early-stopped pair)
INTENTS_FULL_TRAIN = TrainConfig(max_epochs=8, batch_size=32, lr=8e-5, head_lr=2e-3, max_length=64,
                                 precision="32-true", patience=3, warmup_ratio=0.06, label_smoothing=0.1)
FULL_INTENTS_DIR = "intents-full"  # the sub-artifact (inside the cs artifact) that holds it; more: intents-full-2, ...
RETRIEVAL_TRAIN = TrainConfig(max_epochs=4, batch_size=32, lr=5e-4, head_lr=5e-4, max_length=96, precision="32-true",
                              patience=2, temperature=0.05)


# ------------------------------------------------------------------------------------------------------ readers
def read_queries(path: str | Path) -> list[tuple[str, str]]:
    """(query, gold KB id) pairs from JSONL or CSV with a ``query`` field and ``faq_id`` (or ``entry_id`` / ``id``)."""
    path = Path(path)
    if not path.is_file():
        raise KBFormatError(f"query file not found: {path}")
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise KBFormatError(f"{path} is not UTF-8 (byte offset {exc.start})") from exc
    if path.suffix == ".jsonl":
        rows = []
        for n, line in enumerate(raw.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise KBFormatError(f"{path} line {n}: malformed JSON ({exc.msg})") from exc
    elif path.suffix == ".csv":
        rows = list(csv.DictReader(io.StringIO(raw)))
    else:
        raise KBFormatError(f"{path}: queries must be .jsonl or .csv")
    out = []
    for n, row in enumerate(rows, 1):
        gold = next((row[k] for k in ("faq_id", "entry_id", "id") if k in row and row[k] not in (None, "")), None)
        if not isinstance(row, dict) or "query" not in row or gold is None:
            raise KBFormatError(f"{path} row {n}: needs 'query' and 'faq_id' (or 'entry_id'/'id')")
        out.append((str(row["query"]), str(gold)))
    if not out:
        raise KBFormatError(f"{path}: no queries")
    return out


def retrieval_pairs(queries_path: str | Path, kb_path: str | Path, with_answer: bool) -> list[tuple[str, str]]:
    """(query, entry text) pairs to train retrieval on: every query of ``queries_path`` with the text of its gold
    entry in the knowledge base ``kb_path``; queries whose entry is not in it are left out."""
    kb = {e.id: e for e in load_kb(kb_path).entries}
    return [(q, entry_text(kb[g], with_answer=with_answer)) for q, g in read_queries(queries_path) if g in kb]


# ------------------------------------------------------------------------------------------------------ training
def train_cs(out: Path, intents_csv: Path | None, pairs: Sequence[tuple[str, str]] = (),
             intents_cfg: TrainConfig = INTENTS_TRAIN, retrieval_cfg: TrainConfig = RETRIEVAL_TRAIN,
             lora_r: int = 16, init_from: Path | None = None, members: int = 1, full: int = 0,
             full_cfg: TrainConfig = INTENTS_FULL_TRAIN, refit_epochs: int | None = None) -> Path:
    """Train the intents adapter (+ classifier head) on ``intents_csv`` and the retrieval adapter on ``pairs``
    (query, entry text), one after the other on the frozen all-MiniLM-L6-v2 base.

    With ``init_from`` (an earlier cs artifact), training continues from its adapters and heads instead of starting
    from all-MiniLM-L6-v2 (a warm restart: a new cosine cycle, ``INTENTS_CONTINUE`` when ``intents_cfg`` is the
    default); whatever is not retrained (e.g. the retrieval adapter when no pairs are given) is kept as it was. The
    base weights stay frozen either way, so the retrieval embeddings do not move while the intents train.

    ``members`` > 1 trains that many intents adapters (``intents``, ``intents-2``, ...), each with its own head and
    seed, on the same split; their probabilities are averaged (and mixed with the base head's, see
    :func:`_train_base_head`). Each member costs one more backbone pass per message. When continuing, an earlier
    artifact's members are all retrained and ``members`` can only add new ones.

    ``full`` (a count) also fine-tunes every weight of that many separate copies of all-MiniLM-L6-v2 on the intents
    (``full_cfg``, seeds 1000 apart), kept as the sub-artifacts ``intents-full/``, ``intents-full-2/``, ... (about
    90 MB each); their probabilities are averaged and weighed into the same ensemble as one view. The shared base,
    and so retrieval, is untouched by them. When continuing without ``full``, an earlier artifact's full members are
    kept.

    ``refit_epochs`` (with ``full``): the full members do not early-stop on the validation split; they train on the
    training and validation parts together for a fixed ``refit_epochs`` epochs and keep their last weights (as
    ``trident fin train --refit-epochs`` does). Validation can then no longer weigh them against the other views, so
    their average alone is served (the view the bootstrap guard chose in every earlier run); the adapters and the base
    head are still trained, on the training part, and kept with weight 0.
    """
    if intents_csv is None and not pairs:
        raise ValueError("nothing to train: give intents, retrieval pairs or both")
    if refit_epochs is not None and (refit_epochs < 1 or not full or intents_csv is None):
        raise ValueError("a refit needs refit_epochs >= 1, intents and at least one full member (--full-intents)")
    if init_from is not None:
        from core.artifacts import load_artifact

        model, tok, config = load_artifact(init_from)
        model.train()  # load_artifact returns it in eval mode; dropout is part of training
        meta = {**config.get("meta", {}), "recipe": "cs", "continued_from": str(init_from)}
        lora_r = int(meta.get("lora_r", lora_r))
        if intents_cfg is INTENTS_TRAIN:
            intents_cfg = INTENTS_CONTINUE
    else:
        from core.recipes import new_text_model

        model, tok = new_text_model("minilm")
        meta = {"recipe": "cs", "lora_r": lora_r}
    if intents_csv is not None:
        if not (init_from is not None and not full and _carry_full_intents(Path(init_from), Path(out))):
            for stale in full_intents_dirs(Path(out)):  # stale, or about to be retrained
                shutil.rmtree(Path(out) / stale, ignore_errors=True)
        meta["intents"] = _train_intents(model, tok, intents_csv, intents_cfg, lora_r, out, meta, members,
                                         full_cfg if full else None, full_members=int(full),
                                         refit_epochs=refit_epochs)
    elif init_from is not None:  # the intents are not retrained: their full members go along with the ensemble
        _carry_full_intents(Path(init_from), Path(out))
    if pairs:
        meta["retrieval_pairs"] = len(pairs)
        _train_retrieval(model, tok, pairs, retrieval_cfg, max(4, lora_r // 2), out, meta)
    return out


def _carry_full_intents(src: Path, dst: Path) -> bool:
    """Put the full intents members of artifact ``src`` (if it has any) into artifact ``dst`` unchanged; whether
    ``dst`` now holds them."""
    names = [d for d in full_intents_dirs(src) if (src / d / "config.json").is_file()]
    if not names:
        return False
    if src.resolve() != dst.resolve():
        for stale in full_intents_dirs(dst):
            shutil.rmtree(dst / stale, ignore_errors=True)
        for d in names:
            shutil.copytree(src / d, dst / d)
    return True


def intent_member_names(n: int) -> list[str]:
    """The task (and adapter) names of ``n`` intents members: ``intents``, ``intents-2``, ..."""
    return ["intents"] + [f"intents-{i}" for i in range(2, n + 1)]


def full_member_names(n: int) -> list[str]:
    """The sub-artifact names of ``n`` fully fine-tuned intents members: ``intents-full``, ``intents-full-2``, ..."""
    return [FULL_INTENTS_DIR] + [f"{FULL_INTENTS_DIR}-{i}" for i in range(2, n + 1)]


def _is_full_dir(name: str) -> bool:
    return name == FULL_INTENTS_DIR or (name.startswith(FULL_INTENTS_DIR + "-") and
                                        name[len(FULL_INTENTS_DIR) + 1:].isdigit())


def full_intents_dirs(artifact: Path) -> list[str]:
    """The full intents sub-artifacts that folder ``artifact`` holds, in member order."""
    if not artifact.is_dir():
        return []
    found = [p.name for p in artifact.iterdir() if p.is_dir() and _is_full_dir(p.name)]
    return sorted(found, key=lambda n: 1 if n == FULL_INTENTS_DIR else int(n.rsplit("-", 1)[1]))


def _train_intents(model, tok, intents_csv: Path, cfg: TrainConfig, lora_r: int, out: Path, meta: dict,
                   members: int = 1, full_cfg: TrainConfig | None = None, full_members: int = 1,
                   refit_epochs: int | None = None) -> dict:
    from core.adapters import adapter_names, apply_lora, train_only_adapters
    from core.data import ListDataset, MultiTaskDataModule, TaskData
    from core.recipes import text_task
    from core.tasks import TaskSpec
    from core.train import fit

    if members < 1:
        raise ValueError("members must be at least 1")
    task = text_task("intents", intents_csv, "csv", val_fraction=0.1, test_fraction=0.0)
    existing = [n for n in model.tasks if n == "intents" or (n.startswith("intents-") and n[8:].isdigit())]
    names = intent_member_names(max(members, len(existing)))
    for i, name in enumerate(names):
        spec = TaskSpec(name=name, kind="classify", labels=task.labels, adapter=name)
        if name in adapter_names(model.backbone) and name in model.tasks:  # continuing an earlier artifact
            if list(model.tasks[name].labels) != list(task.labels):
                raise ValueError(f"{intents_csv}: its intents differ from those of the artifact it continues")
            spec = model.tasks[name]
        else:
            apply_lora(model.backbone, name, r=lora_r, alpha=2 * lora_r, dropout=0.1)
            model.add_task(spec)
        train_only_adapters(model, keep_trainable=(f"heads.{name}.",))
        _freeze_other_adapters(model, name)
        member_cfg = cfg if i == 0 else cfg.model_copy(update={"seed": cfg.seed + 1000 * i})
        dm = MultiTaskDataModule([TaskData(spec, ListDataset(*task.train), ListDataset(*task.val))], tok,
                                 batch_size=cfg.batch_size, max_length=cfg.max_length, seed=member_cfg.seed)
        log.info("intents member %d/%d (%s, seed %d)", i + 1, len(names), name, member_cfg.seed)
        fit(model, dm, member_cfg, out, tok, meta={**meta, "intents": task.source})
    if full_cfg is not None:
        from core.recipes import finetune_text, refit

        full_task = task
        if refit_epochs is not None:  # validation trains too (still logged, never selected on)
            full_task, full_cfg = refit(task, full_cfg, refit_epochs)
        for i, sub in enumerate(full_member_names(max(1, full_members))):
            log.info("intents: fully fine-tuned member %d/%d in %s", i + 1, full_members, Path(out) / sub)
            finetune_text([full_task], Path(out) / sub, full_cfg.model_copy(update={"seed": full_cfg.seed + 1000 * i}))
    meta["intent_ensemble"] = _train_base_head(model, tok, task, out, {**meta, "intents": task.source}, names,
                                               refit_epochs=refit_epochs)
    return task.source


def _pooled(model, tok, texts: Sequence[str], batch: int = 64, max_length: int = 64):
    """Mean-pooled hidden states (N, C) of the model as its adapters are now set."""
    import torch

    from core.data import pad_ids
    from core.model import mean_pool

    out = []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(texts), batch):
            ids, mask = pad_ids(tok.encode_batch(list(texts[start:start + batch]), max_length), tok.pad_id)
            hidden, full = model.encode(ids, mask)
            out.append(mean_pool(hidden, full).float())
    return torch.cat(out)


def _train_base_head(model, tok, task, out: Path, meta: dict, members: Sequence[str] = ("intents",),
                     refit_epochs: int | None = None) -> dict:
    """A second intent classifier on the *base* weights (every adapter off): a linear head on the frozen mean-pooled
    embeddings, fitted by L-BFGS with the L2 strength chosen on the validation split. Its probabilities are averaged
    with the adapters' (the ``members``, equally weighted among themselves; the base head's share chosen on
    validation), an ensemble of different views of the text that the validation split says is better (or the
    adapters alone when it is not). Saved as task ``intents-base``.

    With fully fine-tuned members (``intents-full/``, ...) their average is the primary view, and the validated
    mixture is served only when a paired bootstrap on validation says it is more accurate than that view alone with
    95% confidence (:func:`core.metrics.guard_mixture`); otherwise the adapters and the base head get weight 0 and are
    not run. The decision is kept in the report (``guard``).

    Refitted full members (``refit_epochs``) have trained on the validation split, so it cannot weigh them: their
    average is served alone, and the report's ``validation_seen_by`` says which views' validation figures are not
    held-out ones."""
    import torch

    from core.adapters import set_adapter
    from core.heads import ClassifierHead
    from core.tasks import BASE, TaskSpec

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
    spec = TaskSpec(name="intents-base", kind="classify", labels=task.labels, adapter=BASE)
    if "intents-base" not in model.heads:
        model.add_task(spec)
    head: ClassifierHead = model.heads["intents-base"]
    with torch.no_grad():  # fold the standardisation into the linear layer: W (x - mu) / sd + b
        head.out.weight.copy_(lin.weight / sd)
        head.out.bias.copy_(lin.bias - (lin.weight * (mu / sd)).sum(-1))
    # the ensemble weights, on validation, from the probabilities as served (the engine runs in eval mode: no
    # dropout in the head created above)
    from core.engine import InferenceEngine

    engine = InferenceEngine.from_model(model, tok, max_length=64)
    probs = {name: engine.classify_proba(list(xv), name) for name in members}
    probs["intents-base"] = engine.classify_proba(list(xv), "intents-base")
    fulls = [d for d in full_intents_dirs(Path(out)) if (Path(out) / d / "config.json").is_file()]
    for d in fulls:
        probs[d] = InferenceEngine(Path(out) / d, max_length=64).classify_proba(list(xv), "intents")
    names = [*members, "intents-base", *fulls]
    kinds = ["adapter"] * len(members) + ["base_head"] + ["full"] * len(fulls)
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
    if len(members) + len(fulls) > 1:
        report["val_accuracy"]["members"] = {m: float((probs[m].argmax(-1) == yv_np).mean())
                                             for m in [*members, *fulls]}
    log.info("intent ensemble on validation: %s", report)
    from core.artifacts import save_artifact

    save_artifact(out, model, tok, meta={**meta, "intent_ensemble": report})
    return report


def _full_intents_engine(engine, name: str = FULL_INTENTS_DIR):
    """The engine of a fully fine-tuned intents member (sub-artifact ``name``, e.g. ``intents-full/``), loaded once
    per engine with the same quantisation."""
    from core.artifacts import ArtifactError
    from core.engine import InferenceEngine

    with engine._lock:
        loaded = engine.__dict__.setdefault("_intents_full", {})
        comp = loaded.get(name)
        if comp is None:
            path = Path(engine.path) / name if engine.path is not None else None
            if path is None or not (path / "config.json").is_file():
                raise ArtifactError(f"the artifact's intent ensemble needs {path}, which is missing: retrain with "
                                    "`trident cs train --full-intents`")
            comp = InferenceEngine(path, quantize=engine.quantized, max_length=engine.max_length,
                                   batch_size=engine.batch_size)
            loaded[name] = comp
    return comp


def intent_proba(engine, texts: Sequence[str]) -> np.ndarray:
    """Intent probabilities (N, n_intents): the ``intents`` adapter's or, when the artifact has an ensemble
    (``meta.intent_ensemble``), the weighted sum of its members' and the base head's with the weights it chose on
    validation. A member with weight 0 is not run."""
    config = getattr(engine, "config", None) or {}
    ens = (config.get("meta", {}).get("intent_ensemble") or {}).get("weights") or {}
    parts = {name: w for name, w in ens.items() if w > 0 and (name in engine.tasks or _is_full_dir(name))}
    if not parts:
        return engine.classify_proba(texts, "intents")
    total = sum(parts.values())
    return sum((w / total) * _view_proba(engine, name, texts) for name, w in parts.items())


def _view_proba(engine, name: str, texts: Sequence[str]) -> np.ndarray:
    """Intent probabilities of one ensemble member: a task of the artifact, or its full member."""
    if _is_full_dir(name):
        return _full_intents_engine(engine, name).classify_proba(texts, "intents")
    return engine.classify_proba(texts, name)


def _train_retrieval(model, tok, pairs: Sequence[tuple[str, str]], cfg: TrainConfig, r: int, out: Path,
                     meta: dict) -> Path:
    """Train (or keep training) the retrieval adapter on (query, entry text) pairs with in-batch negatives."""
    from core.adapters import adapter_names, apply_lora, train_only_adapters
    from core.data import ListDataset, MultiTaskDataModule, TaskData
    from core.tasks import TaskSpec
    from core.train import fit

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
    return fit(model, dm, cfg, out, tok, meta=meta)


def learn(settings: CSSettings, store, queries: Sequence[tuple[str, str]], kb_path: Path | None = None,
          cfg: TrainConfig = RETRIEVAL_TRAIN, out: Path | None = None) -> dict:
    """Fine-tune the retrieval adapter on the agents' accepted and edited answers; report retrieval on the fixed
    ``queries`` before and after. The new artifact replaces the old one only when it is not worse."""
    from core.artifacts import load_artifact
    from core.engine import InferenceEngine

    kb = {e.id: e for e in load_kb(kb_path or settings.kb_path).entries}
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
    staging = out or settings.artifact_dir.with_name(settings.artifact_dir.name + ".learning")
    shutil.rmtree(staging, ignore_errors=True)
    _train_retrieval(model, tok, pairs, cfg.model_copy(update={"batch_size": min(cfg.batch_size, len(pairs))}),
                     8, staging, {**config.get("meta", {}), "learned_from_feedback": len(pairs)})
    _carry_full_intents(settings.artifact_dir, staging)  # the intents' own full model goes along unchanged
    after = score(staging)
    kept = after["mrr"] >= before["mrr"]
    if kept and out is None:
        backup = settings.artifact_dir.with_name(settings.artifact_dir.name + ".previous")
        shutil.rmtree(backup, ignore_errors=True)
        settings.artifact_dir.rename(backup)
        staging.rename(settings.artifact_dir)
    return {"pairs": len(pairs), "before": before, "after": after, "kept": kept}


def _freeze_other_adapters(model, keep: str) -> None:
    for name, p in model.named_parameters():
        if ".lora_" in name and not name.endswith(f".{keep}"):
            p.requires_grad_(False)


# ------------------------------------------------------------------------------------------------------ indexing
def embed_fn(engine):
    """Text -> vector function of an engine: the retrieval adapter when the artifact has one, else the base."""
    if "retrieval" in engine.tasks:
        return lambda texts: engine.embed(texts, task="retrieval")

    def base(texts):
        with engine._lock:
            if engine.adapters():
                engine.use_adapter(None)
            return engine.embed(texts)

    return base


def make_retriever(engine, rs: RetrievalSettings) -> HybridRetriever:
    """An empty retriever wired to the engine's embeddings."""
    cfg = IndexConfig(kind=rs.index_kind, approx_threshold=rs.approx_threshold, approx_kind=rs.approx_kind)
    return HybridRetriever(embed_fn(engine), engine.model.cfg.n_embd, cfg, mode=rs.mode, fusion=rs.fusion,
                           sparse_weight=rs.sparse_weight)


def index_entries(retriever: HybridRetriever, entries: Sequence[KBEntry], rs: RetrievalSettings,
                  rebuild: bool = True) -> None:
    """(Re)index entries: the dense side embeds the question (and paraphrases), BM25 reads question and answer."""
    ids = [e.id for e in entries]
    dense = [entry_text(e, with_answer=rs.index_answers) for e in entries]
    sparse = [entry_text(e, with_answer=True) for e in entries]
    (retriever.build if rebuild else retriever.upsert)(ids, dense, sparse)


def build_index(settings: CSSettings, engine, kb_path: Path | None = None,
                calibration: Sequence[tuple[str, str]] = ()) -> tuple[KBBuild, HybridRetriever]:
    """Ingest the KB, index it, fit the answer calibrator on (query, gold id) pairs if given, and save everything
    under the index folder (a KB version per build, the FAISS index with its id map, the calibrator)."""
    build = load_kb(kb_path or settings.kb_path)
    retriever = make_retriever(engine, settings.retrieval)
    index_entries(retriever, build.entries, settings.retrieval)
    folder = settings.index_folder
    folder.mkdir(parents=True, exist_ok=True)
    save_kb(build, folder / "kb")
    if retriever.mode != "sparse":
        retriever.dense.save(folder / "dense")
    if not calibration and settings.calibration_path and Path(settings.calibration_path).is_file():
        known = {e.id for e in build.entries} | {"-"}
        calibration = [(q, g) for q, g in read_queries(settings.calibration_path) if g in known]
    if calibration:
        cal = fit_calibrator(retriever, calibration)
        cal.save(folder / "calibrator.json")
    return build, retriever


def fit_calibrator(retriever: HybridRetriever, labelled: Sequence[tuple[str, str]]) -> Calibrator:
    """Fit P(top answer right) on queries with known gold ids."""
    results = retriever.search([q for q, _ in labelled], k=5)
    # gold "-" marks a question the KB cannot answer: any top answer is wrong
    correct = [bool(r) and gold != "-" and r[0].id == gold for r, (_, gold) in zip(results, labelled)]
    return Calibrator.fit(results, correct)


# ------------------------------------------------------------------------------------------------------ evaluation
def eval_intents(engine, csv_path: Path) -> dict:
    """Accuracy and macro-F1 of the intents task on a ``text,category`` CSV."""
    from core.data import read_labelled_texts

    texts, raw = read_labelled_texts(csv_path, "csv")
    labels = engine.tasks["intents"].labels if "intents" in engine.tasks else None
    if labels is None:
        raise ValueError("the artifact has no intents task: train it with `trident cs train`")
    unknown = sorted(set(raw) - set(labels))
    if unknown:
        raise KBFormatError(f"{csv_path} has intents the model does not know: {unknown[:5]}")
    y = [labels.index(r) for r in raw]
    pred = intent_proba(engine, texts).argmax(-1)
    return {"accuracy": accuracy(y, pred), "macro_f1": precision_recall_f1(y, pred)["f1"], "n": len(y)}


def evaluation_report(engine, intents_csv: Path) -> dict:
    """Accuracy, macro-F1 and the confusion matrix of the intents task on a ``text,category`` CSV.

    Args:
        engine: An ``InferenceEngine`` whose artifact has the ``intents`` task.
        intents_csv: The evaluation file.

    Returns:
        ``{"accuracy", "macro_f1", "n", "labels", "confusion"}``: ``confusion[i][j]`` counts messages of intent
        ``labels[i]`` predicted as ``labels[j]``, over every intent the model knows (plain Python numbers).

    Raises:
        ValueError: The artifact has no intents task.
        KBFormatError: The file has intents the model does not know.
        DataFormatError: The file is missing or malformed.
    """
    from core.data import read_labelled_texts
    from core.metrics import confusion_matrix

    if "intents" not in engine.tasks:
        raise ValueError("the artifact has no intents task: train it with `trident cs train`")
    labels = list(engine.tasks["intents"].labels)
    texts, raw = read_labelled_texts(intents_csv, "csv")
    unknown = sorted(set(raw) - set(labels))
    if unknown:
        raise KBFormatError(f"{intents_csv} has intents the model does not know: {unknown[:5]}")
    y = [labels.index(r) for r in raw]
    pred = intent_proba(engine, texts).argmax(-1).tolist()
    cm = confusion_matrix(y, pred, labels=list(range(len(labels))))
    # macro-F1 over the intents present in y or pred, the number eval_intents reports for the same file
    return {"accuracy": accuracy(y, pred), "macro_f1": precision_recall_f1(y, pred)["f1"], "n": len(y),
            "labels": labels, "confusion": cm.tolist()}


def retrieval_metrics(retriever: HybridRetriever, queries: Sequence[tuple[str, str]], k: int = 10) -> dict:
    """hit@1, hit@5 and MRR of the retriever on (query, gold id) pairs."""
    results = retriever.search([q for q, _ in queries], k=k)
    ranked = [[r.id for r in res] for res in results]
    gold = [{g} for _, g in queries]
    return {"hit@1": float(np.mean([hit_rate_at_k(r, g, 1) for r, g in zip(ranked, gold)])),
            "hit@5": float(np.mean([hit_rate_at_k(r, g, 5) for r, g in zip(ranked, gold)])),
            "mrr": float(np.mean([reciprocal_rank(r, g) for r, g in zip(ranked, gold)])), "n": len(queries)}


def eval_retrieval(settings: CSSettings, engine, kb_path: Path, queries_path: Path) -> dict:
    """Index ``kb_path`` in memory and score ``queries_path`` against it."""
    build = load_kb(kb_path)
    queries = read_queries(queries_path)
    known = {e.id for e in build.entries}
    missing = sorted({g for _, g in queries} - known)
    if missing:
        raise KBFormatError(f"{queries_path} refers to ids missing from the KB: {missing[:5]}")
    retriever = make_retriever(engine, settings.retrieval)
    index_entries(retriever, build.entries, settings.retrieval)
    return retrieval_metrics(retriever, queries)


def load_index(settings: CSSettings, engine) -> tuple[KBBuild, HybridRetriever, Calibrator]:
    """Load what ``build_index`` saved; the BM25 side is rebuilt from the KB (it is fast)."""
    from apps.customer_service.knowledge import read_kb

    folder = settings.index_folder
    build = read_kb(folder / "kb")
    retriever = make_retriever(engine, settings.retrieval)
    if retriever.mode != "sparse":
        retriever.dense = DenseIndex.load(folder / "dense")
    retriever.sparse.upsert([e.id for e in build.entries], [entry_text(e) for e in build.entries])
    return build, retriever, Calibrator.load(folder / "calibrator.json")
