"""Choice of the distilled students' size: from each app's teacher, students that keep the lower 6, 4 and 3 layers of
all-MiniLM-L6-v2 (``--layers``) are distilled, and each is measured beside its teacher in the same run. Prints one
JSON object (and writes it to --out).

- finance: test accuracy on Financial PhraseBank's test split (as ``trident fin train`` cuts it) and sentences/s of
  the sentiment model (torch fp32, batch 64, names blinded once outside the timing for an entity-blind model), with a
  sentence-transformers encode of the same sentences (all-MiniLM-L6-v2, batch 64) as the speed baseline;
- intents: test accuracy on Banking77 ``test_dev.csv`` and sentences/s of the intent model (torch fp32, batch 64).

Each app's ``smallest_within_target`` names the smallest student whose test accuracy is at most 0.5 points below its
teacher's: the number of layers to distil the served model with (``FIN_DISTIL__LAYERS``, ``CS_DISTIL__LAYERS``).

Teachers: ``--fin-teacher`` / ``--cs-teacher`` (default ``<artifacts>/teachers/fin`` and ``cs``, what ``make
artifacts`` trains), data from ``TRIDENT_DATA_DIR``, the students' settings from the environment (``FIN_DISTIL__...``,
``CS_DISTIL__...``); the students are kept under ``--students`` (default ``<var>/distil``). With ``--quick``, small
teachers are first trained on the sample data in ``samples/`` (a fifth of the sample intents held out as their test)
and the students train for two short epochs: a check that the whole run works, not a measurement.

Usage: python bench/distil_students.py [--layers 6 4 3] [--threads 2] [--quick] [--out bench/results/distil.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apps.common.settings import REPO_ROOT, CoreSettings  # noqa: E402
from apps.customer_service.settings import CSDistilSettings, CSSettings  # noqa: E402
from apps.finance_sentiment.settings import FinDistilSettings, FinSettings  # noqa: E402
from bench.runtime import bench_baseline  # noqa: E402
from core.config import InferenceConfig, TrainConfig  # noqa: E402

MAX_LOSS_POINTS = 0.5  # test accuracy a student may lose against its teacher
SAMPLES = REPO_ROOT / "samples"
QUICK_STUDENT = {"max_epochs": 2, "batch_size": 16, "max_length": 48}


def _speed(proba: Callable[[list[str]], np.ndarray], texts: list[str], repeats: int) -> float:
    """Sentences/s of ``proba`` over ``texts``: the fastest of ``repeats`` passes after a warm-up."""
    proba(texts[:64])
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        proba(texts)
        best = min(best, time.perf_counter() - t)
    return round(len(texts) / best, 1)


def _measure(proba, labels: Sequence[str], texts: list[str], gold: list[str], repeats: int) -> dict:
    pred = [labels[i] for i in proba(texts).argmax(-1)]
    return {"test_accuracy": round(float(np.mean([a == b for a, b in zip(pred, gold)])), 4),
            "sentences_per_s": _speed(proba, texts, repeats)}


def smallest_within_target(teacher: dict, students: list[dict]) -> int | None:
    """The fewest layers of a student within ``MAX_LOSS_POINTS`` of the teacher's test accuracy."""
    for s in students:
        s["accuracy_points_vs_teacher"] = round(100 * (s["test_accuracy"] - teacher["test_accuracy"]), 2)
        s["speedup_vs_teacher"] = round(s["sentences_per_s"] / teacher["sentences_per_s"], 2)
        s["within_target"] = -s["accuracy_points_vs_teacher"] <= MAX_LOSS_POINTS
    kept = [s["layers"] for s in students if s["within_target"]]
    return min(kept) if kept else None


# ---------------------------------------------------------------------------------------------------------- finance
def quick_fin_teacher(folder: Path) -> tuple[Path, Path]:
    """A two-member, entity-blind sentiment ensemble trained briefly on the sample sentences; and that data."""
    from apps.finance_sentiment.pipeline import train_sentiment

    data = SAMPLES / "fin_sentences.csv"
    cfg = TrainConfig.quick(max_epochs=2, batch_size=16, lr=1e-4, head_lr=3e-3, max_length=48)
    train_sentiment(data, folder, fmt="csv", members=2, cfg=cfg, entity_blind=True)
    return folder, data


def bench_finance(teacher: Path, data: Path, fmt: str, settings: FinDistilSettings, unlabelled: Sequence[Path],
                  layers: Sequence[int], students_dir: Path, repeats: int) -> tuple[dict, list[str]]:
    from apps.finance_sentiment.model import TASK, model_input, reads_entity_blind
    from apps.finance_sentiment.pipeline import distil_sentiment, sentiment_task
    from core.engine import Ensemble

    task = sentiment_task(data, fmt)
    raw, gold = task.test[0], [task.labels[y] for y in task.test[1]]
    texts = model_input(reads_entity_blind(teacher))(raw)  # blinded once, outside the timing

    def measure(folder: Path) -> dict:
        model = Ensemble.load(folder, TASK, InferenceConfig(), batch_size=64)
        return {"members": len(model.members), **_measure(model.classify_proba, model.labels, texts, gold, repeats)}

    out: dict = {"data": f"{data} (test split)", "n": len(texts), "teacher": {"path": str(teacher), **measure(teacher)}}
    students = []
    for n in layers:
        folder = students_dir / f"fin-L{n}"
        t = time.perf_counter()
        report = distil_sentiment(teacher, data, folder, fmt=fmt, settings=settings.model_copy(update={"layers": n}),
                                  unlabelled=unlabelled)
        d = report["distillation"]
        students.append({"layers": n, "artifact": str(folder), "distil_seconds": round(time.perf_counter() - t, 1),
                         "labelled": d["labelled"], "unlabelled": d["unlabelled"],
                         "leakage_removed": d["leakage_removed"], **measure(folder)})
    out["students"] = students
    out["smallest_within_target"] = smallest_within_target(out["teacher"], students)
    return out, raw


# ---------------------------------------------------------------------------------------------------------- intents
def quick_cs_teacher(folder: Path, scratch: Path) -> tuple[Path, Path, Path]:
    """A cs artifact (intents adapter, base head and one full member) trained briefly on four fifths of the sample
    intents; that training file and the held-out fifth."""
    from apps.customer_service.pipeline import train_cs

    rows = (SAMPLES / "intents.csv").read_text(encoding="utf-8").splitlines()
    head, body = rows[0], rows[1:]
    train, test = scratch / "intents_train.csv", scratch / "intents_test.csv"
    train.write_text("\n".join([head] + [r for i, r in enumerate(body) if i % 5]) + "\n", encoding="utf-8")
    test.write_text("\n".join([head] + [r for i, r in enumerate(body) if not i % 5]) + "\n", encoding="utf-8")
    cfg = TrainConfig.quick(max_epochs=2, batch_size=16, lr=1e-3, head_lr=3e-3, max_length=32)
    full = TrainConfig.quick(max_epochs=2, batch_size=16, lr=1e-4, head_lr=3e-3, max_length=32)
    train_cs(folder, train, intents_cfg=cfg, lora_r=4, full=1, full_cfg=full)
    return folder, train, test


def bench_intents(teacher: Path, intents: Path, test: Path, settings: CSDistilSettings, unlabelled: Sequence[Path],
                  layers: Sequence[int], students_dir: Path, repeats: int) -> dict:
    from apps.customer_service.intents import TASK, load_intents
    from apps.customer_service.pipeline import distil_intents
    from core.data import read_labelled_texts
    from core.engine import InferenceEngine

    texts, gold = read_labelled_texts(test, "csv")

    def measure(folder: Path) -> dict:
        model = load_intents(InferenceEngine(folder, batch_size=64))
        return {"members": len(model.members),
                **_measure(lambda xs: model.classify_proba(xs, TASK), model.labels, texts, gold, repeats)}

    out: dict = {"data": str(test), "n": len(texts), "teacher": {"path": str(teacher), **measure(teacher)}}
    students = []
    for n in layers:
        folder = students_dir / f"cs-L{n}"
        t = time.perf_counter()
        report = distil_intents(teacher, intents, folder, settings=settings.model_copy(update={"layers": n}),
                                unlabelled=unlabelled, test_path=test)
        d = report["distillation"]
        students.append({"layers": n, "artifact": str(folder), "distil_seconds": round(time.perf_counter() - t, 1),
                         "labelled": d["labelled"], "unlabelled": d["unlabelled"],
                         "leakage_removed": d["leakage_removed"], **measure(folder)})
    out["students"] = students
    out["smallest_within_target"] = smallest_within_target(out["teacher"], students)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench/results/distil.json")
    ap.add_argument("--layers", type=int, nargs="+", default=[6, 4, 3], help="the students' layers")
    ap.add_argument("--fin-teacher", type=Path, help="default: <artifacts>/teachers/fin")
    ap.add_argument("--cs-teacher", type=Path, help="default: <artifacts>/teachers/cs")
    ap.add_argument("--students", type=Path, help="where the students are written (default: <var>/distil)")
    ap.add_argument("--apps", nargs="+", default=["fin", "cs"], choices=["fin", "cs"])
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (training and timing)")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes; the fastest counts")
    ap.add_argument("--quick", action="store_true", help="small teachers trained on the samples first (a check)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)  # the trainings and the timings alike
    core = CoreSettings()
    fin_s, cs_s = FinSettings(), CSSettings()
    result: dict = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                                "torch": torch.__version__, "threads": args.threads},
                    "quick": args.quick, "layers": args.layers, "max_loss_points": MAX_LOSS_POINTS}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        students = args.students or (scratch / "students" if args.quick else core.var_dir / "distil")
        fin_distil, cs_distil = fin_s.distil, cs_s.distil
        if args.quick:
            fin_distil = fin_distil.model_copy(update={"train": fin_distil.train.model_copy(update=QUICK_STUDENT)})
            cs_distil = cs_distil.model_copy(update={"train": cs_distil.train.model_copy(update=QUICK_STUDENT)})
        sentences: list[str] = []
        if "fin" in args.apps:
            if args.quick:
                teacher, data = quick_fin_teacher(scratch / "teachers" / "fin")
                fmt, unlabelled = "csv", (SAMPLES / "feeds",)
            else:
                teacher = args.fin_teacher or fin_s.teacher_dir
                data, fmt = core.data_dir / "financial_phrasebank" / "Sentences_50Agree.txt", "phrasebank"
                unlabelled = fin_s.unlabelled_paths
            result["finance"], sentences = bench_finance(teacher, data, fmt, fin_distil, unlabelled, args.layers,
                                                         students, args.repeats)
            base = bench_baseline(sentences, args.repeats)
            result["finance"]["baseline"] = base
            for s in result["finance"]["students"]:
                s["speed_vs_baseline"] = round(s["sentences_per_s"] / base["sentences_per_s"], 2)
        if "cs" in args.apps:
            if args.quick:
                teacher, intents, test = quick_cs_teacher(scratch / "teachers" / "cs", scratch)
                unlabelled = (SAMPLES / "faq.csv", SAMPLES / "faq_queries.csv")
            else:
                teacher = args.cs_teacher or cs_s.teacher_dir
                intents, test = core.data_dir / "banking77" / "train.csv", core.data_dir / "banking77" / "test_dev.csv"
                unlabelled = cs_s.distil.unlabelled or (core.data_dir / "stackfaq" / "faq_threads.jsonl",
                                                        core.data_dir / "stackfaq" / "queries_dev.jsonl")
            result["intents"] = bench_intents(teacher, intents, test, cs_distil, unlabelled, args.layers, students,
                                              args.repeats)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
