"""Benchmark of the recommender. Prints one JSON object (and writes it to --out): for each MovieLens set present,

- accuracy on the test cases (full ranking, leave-one-out, history excluded) of the generative model, the popularity
  baseline and the SASRec baseline, trained in the same run on the same split with the same loop and early stopping
  on validation NDCG@10, plus the model's NDCG@10 relative to SASRec's (the issue's target: at least +5% on ML-100k);
- coverage, diversity and novelty of the slates, the breakdown by history length, the MMR trade-off;
- training seconds per epoch of each model, the batch job's users per second (top-20 for every user through
  ``trainer.predict``), and the peak resident memory of the process.

Usage: python bench/recommender.py [--out bench/results/recommender.json] [--sets ml-100k ml-1m]
       [--max-epochs 200] [--artifacts DIR] [--merge] [--seeds 13 7 21]

With several ``--seeds``, each set is trained and tested once per seed (both sequence models with the same seed): the
set's full report is the first seed's, and ``seeds`` adds every seed's test figures and their mean, because on
ML-100k's 943 test users the model-vs-SASRec difference of one seed is mostly noise.

Everything runs on one CPU thread unless --threads says otherwise (the project's machine has two cores and shares
them). Nothing here chooses anything by looking at test numbers: the models are the settings' defaults, and the epoch
kept is the best by validation NDCG@10.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from apps.common.settings import CoreSettings  # noqa: E402
from apps.recommender.batch import run_batch  # noqa: E402
from apps.recommender.data import load_data  # noqa: E402
from apps.recommender.evaluate import paired_bootstrap  # noqa: E402
from apps.recommender.model import load_artifact  # noqa: E402
from apps.recommender.pipeline import evaluate_artifact, train_all  # noqa: E402
from apps.recommender.settings import RecSettings  # noqa: E402

SETS = {"ml-100k": "movielens-100k", "ml-1m": "movielens-1m-subset"}
KEYS = ("hr@10", "ndcg@10", "mrr", "coverage", "diversity", "novelty", "n_users")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _pick(m: dict) -> dict:
    return {k: (round(m[k], 4) if isinstance(m.get(k), float) else m.get(k)) for k in KEYS}


def bench_set(name: str, folder: Path, out_dir: Path, max_epochs: int | None, seed: int | None = None) -> dict:
    train = {**({"max_epochs": max_epochs} if max_epochs else {}), **({"seed": seed} if seed is not None else {})}
    settings = RecSettings(data=folder, items=None, train=train)
    t0 = time.perf_counter()
    data = load_data(folder)
    load_s = time.perf_counter() - t0
    art_dir = out_dir / f"rec-{name}"
    t0 = time.perf_counter()
    train_all(settings, data, art_dir, evaluate_test=False)
    train_s = time.perf_counter() - t0
    art = load_artifact(art_dir)
    t0 = time.perf_counter()
    report = evaluate_artifact(art, None, mmr_lambdas=settings.mmr_lambdas, return_ranks=True)
    eval_s = time.perf_counter() - t0
    paired = paired_bootstrap(report.pop("ranks"), report["baselines"]["sasrec"].pop("ranks"))
    report["baselines"]["popularity"].pop("ranks", None)
    (art_dir / "report.json").write_text(json.dumps(report, indent=2))
    with tempfile.TemporaryDirectory() as tmp:
        res = run_batch(art, Path(tmp) / "recs.parquet", settings.batch, k=20, progress=False)
    model, sas, pop = report, report["baselines"]["sasrec"], report["baselines"]["popularity"]
    gain = model["ndcg@10"] / sas["ndcg@10"] - 1 if sas["ndcg@10"] else None
    training = art.config["training"]
    return {
        "data": {"name": name, "path": str(folder), **{k: art.config["data"].get(k) for k in
                                                       ("users", "items", "interactions", "ties_in_time")}},
        "protocol": report["protocol"],
        "test": {"model": _pick(model), "sasrec": _pick(sas), "popularity": _pick(pop)},
        "ndcg@10_vs_sasrec": round(gain, 4) if gain is not None else None,
        "ndcg@10_vs_sasrec_paired_bootstrap": {k: (round(v, 4) if isinstance(v, float) else [round(x, 4) for x in v])
                                               for k, v in paired.items()},
        "target_ndcg@10_plus_5pct_over_sasrec_met": bool(gain is not None and gain >= 0.05),
        "by_history_length": {"model": model["by_history_length"], "sasrec": sas["by_history_length"],
                              "popularity": pop["by_history_length"]},
        "mmr": model["mmr"],
        "training": {n: {k: h.get(k) for k in ("best_val_ndcg@10", "best_epoch", "epochs", "stopped_early",
                                              "seconds_per_epoch", "train_seconds", "n_params", "val_ndcg@10")}
                     for n, h in training.items()},
        "settings": {**art.config["settings"], "text_features": art.config["text_features"]},
        "seconds": {"load": round(load_s, 2), "train_total": round(train_s, 1), "evaluate": round(eval_s, 2),
                    "batch": res.seconds},
        "batch": {"users": res.users, "k": 20, "rows": res.rows, "users_per_second": res.users_per_second,
                  "chunk_size": settings.batch.chunk_size},
        "peak_rss_mb_after": peak_rss_mb(),
    }


def seed_summary(runs: dict[int, dict]) -> dict:
    """Test NDCG@10 / HR@10 of each model per seed, the model's gain over SASRec per seed, and the means."""
    per = {str(seed): {**{name: {k: r["test"][name][k] for k in ("ndcg@10", "hr@10")} for name in r["test"]},
                       "ndcg@10_vs_sasrec": r["ndcg@10_vs_sasrec"]} for seed, r in runs.items()}
    names = list(next(iter(runs.values()))["test"])
    mean = {name: {k: round(sum(r["test"][name][k] for r in runs.values()) / len(runs), 4)
                   for k in ("ndcg@10", "hr@10")} for name in names}
    gain = round(mean["model"]["ndcg@10"] / mean["sasrec"]["ndcg@10"] - 1, 4) if mean["sasrec"]["ndcg@10"] else None
    return {"per_seed": per, "mean": mean, "mean_ndcg@10_vs_sasrec": gain,
            "target_met_on_the_mean": bool(gain is not None and gain >= 0.05)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results/recommender.json")
    ap.add_argument("--sets", nargs="*", default=list(SETS), choices=list(SETS))
    ap.add_argument("--max-epochs", type=int, help="cap on epochs (default: the settings', with early stopping)")
    ap.add_argument("--artifacts", help="keep the trained artifacts here (default: a temporary folder)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--merge", action="store_true", help="keep the other sets already in --out (run sets one by one)")
    ap.add_argument("--seeds", nargs="+", type=int, help="train and test once per seed (default: the settings' seed)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data_dir = CoreSettings().data_dir
    result = {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                          "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
                          "cuda": torch.cuda.is_available()},
              "note": "full ranking over every catalogue item, user history excluded; leave-one-out; one run per "
                      "seed (the report is the first seed's; 'seeds' has them all); ml-1m is the users 1-2999 "
                      "subset, not comparable to published full ml-1m figures",
              "sets": {}}
    out = Path(args.out)
    if args.merge and out.is_file():
        result["sets"] = json.loads(out.read_text()).get("sets", {})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.artifacts) if args.artifacts else Path(tmp)
        for name in args.sets:
            folder = data_dir / SETS[name]
            if not folder.is_dir():
                result["sets"][name] = {"skipped": f"{folder} not found"}
                continue
            runs = {}
            for seed in args.seeds or [None]:
                runs[seed] = bench_set(name, folder, root / f"seed-{seed}", args.max_epochs, seed)
            result["sets"][name] = next(iter(runs.values()))
            if len(runs) > 1:
                result["sets"][name]["seeds"] = seed_summary(runs)
            print(json.dumps({name: result["sets"][name]["test"]}), file=sys.stderr, flush=True)
    result["peak_rss_mb"] = max([peak_rss_mb()] + [s.get("peak_rss_mb_after", 0) for s in result["sets"].values()])
    text = json.dumps(result, indent=2)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
