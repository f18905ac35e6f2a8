"""Validation sweep of the generative recommender on ML-100k: each argument is a JSON object of ModelSettings
changes (plus "train": TrainSettings changes, "which": "sasrec" for the baseline, "hack": a head ablation);
prints the best validation NDCG@10 per run. Never looks at the test targets. Results of the runs so far:
bench/results/recommender_val_sweep.json.

Usage: python bench/rec_val_sweep.py '{"dropout": 0.4}' '{"text_init": false}'
"""

import json
import logging
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from apps.common.settings import CoreSettings  # noqa: E402
from apps.recommender.data import leave_one_out, load_data  # noqa: E402
from apps.recommender.model import GenerativeRecommender, SASRec  # noqa: E402
from apps.recommender.pipeline import item_text_features  # noqa: E402
from apps.recommender.settings import ModelSettings, SASRecSettings, TrainSettings  # noqa: E402
from apps.recommender.train import fit  # noqa: E402

torch.set_num_threads(1)
logging.basicConfig(level=logging.WARNING)
data = load_data(CoreSettings().data_dir / "movielens-100k")
split = leave_one_out(data)
cache = Path(tempfile.gettempdir()) / "trident_ml100k_text.pt"
if cache.exists():
    text = torch.load(cache, weights_only=True)
else:
    text = item_text_features(data, True)
    torch.save(text, cache)
for spec in sys.argv[1:]:
    kw = json.loads(spec)
    which = kw.pop("which", "model")
    # ablations of the core's NextItemHead: "plain" scores the backbone output directly (no dense + GELU + LayerNorm),
    # "nobias" keeps the per-item bias at zero, "plain_nobias" both
    hack = kw.pop("hack", None)
    tkw = kw.pop("train", {})
    fut = kw.pop("future", [0, 0.0])  # [window, weight] of the future-window loss (for either model)
    tcfg = TrainSettings(progress=False, **tkw)
    torch.manual_seed(tcfg.seed)
    if which == "sasrec":
        m = SASRec(SASRecSettings(**kw), data.n_items, 200)
    else:
        cfg = ModelSettings(**kw)
        m = GenerativeRecommender(cfg, data.n_items, text if cfg.text_init else None)
        if hack in ("plain", "plain_nobias"):
            m.head.transform = lambda h: h
        if hack in ("nobias", "plain_nobias"):
            m.head.bias.requires_grad_(False)
        if hack in ("xavier", "xavier_all"):  # SASRec's initialisation of the matrices (the item table too: _all)
            for name, p in m.named_parameters():
                if p.ndim >= 2 and (hack == "xavier_all" or "items.emb" not in name):
                    torch.nn.init.xavier_normal_(p)
    h = fit(m, split.train, split.val, tcfg, tempfile.mkdtemp(prefix="trident_rec_sweep_"), "x",
            future_window=fut[0], future_weight=fut[1])
    print(json.dumps({"spec": spec, "best": round(h["best_val_ndcg@10"], 4), "epoch": h["best_epoch"],
                      "epochs": h["epochs"], "s": h["train_seconds"], "curve": h["val_ndcg@10"]}), flush=True)
