"""Train, index and evaluate the customer-service models.

The artifact (default ``artifacts/cs``) is all-MiniLM-L6-v2 with two LoRA adapters: ``intents`` (with the intent
classifier head) and ``retrieval`` (contrastive, for the FAISS embeddings). The base weights stay as they were, so
retrieval never gets worse because the core learned intents, and each adapter is switched on for its own task.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from apps.customer_service.bot import Calibrator
from apps.customer_service.knowledge import KBFormatError, entry_text, load_kb, save_kb
from apps.customer_service.retrieval import DenseIndex, HybridRetriever, IndexConfig
from apps.customer_service.schemas import KBBuild, KBEntry
from apps.customer_service.settings import CSSettings, RetrievalSettings
from core.config import TrainConfig
from core.metrics import accuracy, hit_rate_at_k, precision_recall_f1, reciprocal_rank

log = logging.getLogger(__name__)

INTENTS_TRAIN = TrainConfig(max_epochs=3, batch_size=32, lr=1e-3, head_lr=2e-3, max_length=64, precision="32-true",
                            patience=2, warmup_ratio=0.06, label_smoothing=0.1)
# a warm restart of the intents adapter from an earlier artifact: a second, gentler cosine cycle (``--continue-from``)
INTENTS_CONTINUE = INTENTS_TRAIN.model_copy(update={"head_lr": 1e-3, "lr": 5e-4})
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


# ------------------------------------------------------------------------------------------------------ training
def train_cs(out: Path, intents_csv: Path | None, pairs: Sequence[tuple[str, str]] = (),
             intents_cfg: TrainConfig = INTENTS_TRAIN, retrieval_cfg: TrainConfig = RETRIEVAL_TRAIN,
             lora_r: int = 16, init_from: Path | None = None) -> Path:
    """Train the intents adapter (+ classifier head) on ``intents_csv`` and the retrieval adapter on ``pairs``
    (query, entry text), one after the other on the frozen all-MiniLM-L6-v2 base.

    With ``init_from`` (an earlier cs artifact), training continues from its adapters and heads instead of starting
    from all-MiniLM-L6-v2 (a warm restart: a new cosine cycle, ``INTENTS_CONTINUE`` when ``intents_cfg`` is the
    default); whatever is not retrained (e.g. the retrieval adapter when no pairs are given) is kept as it was. The
    base weights stay frozen either way, so the retrieval embeddings do not move while the intents train.
    """
    if intents_csv is None and not pairs:
        raise ValueError("nothing to train: give intents, retrieval pairs or both")
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
        meta["intents"] = _train_intents(model, tok, intents_csv, intents_cfg, lora_r, out, meta)
    if pairs:
        meta["retrieval_pairs"] = len(pairs)
        _train_retrieval(model, tok, pairs, retrieval_cfg, max(4, lora_r // 2), out, meta)
    return out


def _train_intents(model, tok, intents_csv: Path, cfg: TrainConfig, lora_r: int, out: Path, meta: dict) -> dict:
    from core.adapters import adapter_names, apply_lora, train_only_adapters
    from core.data import ListDataset, MultiTaskDataModule, TaskData
    from core.recipes import text_task
    from core.tasks import TaskSpec
    from core.train import fit

    task = text_task("intents", intents_csv, "csv", val_fraction=0.1, test_fraction=0.0)
    spec = TaskSpec(name="intents", kind="classify", labels=task.labels, adapter="intents")
    if "intents" in adapter_names(model.backbone) and "intents" in model.tasks:  # continuing an earlier artifact
        if list(model.tasks["intents"].labels) != list(task.labels):
            raise ValueError(f"{intents_csv}: its intents differ from those of the artifact it continues")
        spec = model.tasks["intents"]
    else:
        apply_lora(model.backbone, "intents", r=lora_r, alpha=2 * lora_r, dropout=0.1)
        model.add_task(spec)
    train_only_adapters(model, keep_trainable=("heads.intents.",))
    _freeze_other_adapters(model, "intents")
    dm = MultiTaskDataModule([TaskData(spec, ListDataset(*task.train), ListDataset(*task.val))], tok,
                             batch_size=cfg.batch_size, max_length=cfg.max_length, seed=cfg.seed)
    fit(model, dm, cfg, out, tok, meta={**meta, "intents": task.source})
    meta["intent_ensemble"] = _train_base_head(model, tok, task, out, {**meta, "intents": task.source})
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


def _train_base_head(model, tok, task, out: Path, meta: dict) -> dict:
    """A second intent classifier on the *base* weights (every adapter off): a linear head on the frozen mean-pooled
    embeddings, fitted by L-BFGS with the L2 strength chosen on the validation split. Its probabilities are averaged
    with the adapter's (weight chosen on validation), an ensemble of two different views of the text that the
    validation split says is better (or the adapter alone when it is not). Saved as task ``intents-base``."""
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
    acc_base, l2, lin = best
    spec = TaskSpec(name="intents-base", kind="classify", labels=task.labels, adapter=BASE)
    if "intents-base" not in model.heads:
        model.add_task(spec)
    head: ClassifierHead = model.heads["intents-base"]
    with torch.no_grad():  # fold the standardisation into the linear layer: W (x - mu) / sd + b
        head.out.weight.copy_(lin.weight / sd)
        head.out.bias.copy_(lin.bias - (lin.weight * (mu / sd)).sum(-1))
    # the ensemble weight, on validation
    model.activate("intents")
    with torch.inference_mode():
        from core.data import pad_ids

        p_ad, p_base = [], []
        for start in range(0, len(xv), 64):
            ids, mask = pad_ids(tok.encode_batch(list(xv[start:start + 64]), 64), tok.pad_id)
            p_ad.append(torch.softmax(model.classify("intents", ids, mask), -1))
            p_base.append(torch.softmax(model.classify("intents-base", ids, mask), -1))
        p_ad, p_base = torch.cat(p_ad).numpy(), torch.cat(p_base).numpy()
    grid = [round(w, 2) for w in np.linspace(0.0, 1.0, 11)]
    accs = {w: float(((w * p_ad + (1 - w) * p_base).argmax(-1) == yv_np).mean()) for w in grid}
    w = max(grid, key=lambda g: (accs[g], g))
    weights = {"intents": w, "intents-base": round(1.0 - w, 2)}
    report = {"weights": weights, "val_accuracy": {"adapter": accs[1.0], "base_head": acc_base, "ensemble": accs[w]},
              "base_head_l2": l2}
    log.info("intent ensemble on validation: %s", report)
    from core.artifacts import save_artifact

    save_artifact(out, model, tok, meta={**meta, "intent_ensemble": report})
    return report


def intent_proba(engine, texts: Sequence[str]) -> np.ndarray:
    """Intent probabilities (N, n_intents): the ``intents`` adapter's, averaged with the base head's with the
    weights the artifact chose on validation (``meta.intent_ensemble``), when it has them."""
    p = engine.classify_proba(texts, "intents")
    config = getattr(engine, "config", None) or {}
    ens = (config.get("meta", {}).get("intent_ensemble") or {}).get("weights")
    if ens and "intents-base" in engine.tasks and ens.get("intents-base", 0) > 0:
        p = ens["intents"] * p + ens["intents-base"] * engine.classify_proba(texts, "intents-base")
    return p


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
    import shutil

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
