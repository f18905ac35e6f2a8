"""core.train.fit under ddp on 2 CPU processes (gloo): one set of validation metrics, computed on the whole
validation set, one artifact writer, and each process trains on its own half of the data."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from core.data import read_labelled_texts
from core.engine import InferenceEngine
from tests.core.ddp_fit_job import N_VAL, REPO_ROOT


def test_ddp_fit_logs_one_metric_on_the_whole_validation_set_and_rank_zero_writes_the_artifact(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "tests.core.ddp_fit_job", str(tmp_path)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # every rank logged the same metrics at every validation, so early stopping and checkpointing agree
    ranks = [[json.loads(line) for line in (tmp_path / f"rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    assert len(ranks[0]) == 3 and ranks[0] == ranks[1]
    # one writer, and the artifact was complete when fit returned on either rank
    assert (tmp_path / "saves.txt").read_text().split() == ["0"]
    assert all(json.loads((tmp_path / f"returned{r}.json").read_text())["config"] for r in (0, 1))

    art = tmp_path / "art"
    training = json.loads((art / "config.json").read_text())["meta"]["training"]
    # 71 training rows: 36 per process, 3 batches of 16 per epoch (one process alone: 5)
    assert training["steps"] == 3 * 3
    assert training["final"] == ranks[0][-1]
    scores = [m["val/score"] for m in ranks[0]]
    best = scores.index(max(scores))  # the first best epoch is the checkpoint kept
    assert training["best_val_score"] == pytest.approx(max(scores))

    # the logged accuracy is that of all 9 validation rows, once each (not one rank's half, nor with the sampler's
    # repeat of the first row): the artifact, scored here in one process, gives the same number
    texts, raw = read_labelled_texts(REPO_ROOT / "samples" / "intents.csv", "csv")
    engine = InferenceEngine(art)
    labels = engine.model.task("intents").labels
    pred = engine.classify_proba(texts[:N_VAL], "intents").argmax(-1)
    acc = float(np.mean(pred == np.array([labels.index(r) for r in raw[:N_VAL]])))
    assert ranks[0][best]["val/intents/acc"] == pytest.approx(acc)
