"""Validation sweep of the generative recommender on ML-100k: each argument is a JSON object of ModelConfig changes to
the default model (plus "train": TrainConfig changes, "cloze_weight", "text_init", and "which": "sasrec" to change the
baseline instead); prints the best validation NDCG@10 per run. Never looks at the test targets. Results of the runs
so far: bench/results/recommender_val_sweep.json.

Usage: python bench/rec_val_sweep.py '{"dropout": 0.4}' '{"text_init": false}' '{"which": "sasrec", "n_embd": 32}'
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
from apps.recommender.pipeline import item_text_features, train_model  # noqa: E402
from apps.recommender.settings import RecSettings  # noqa: E402


def main() -> None:
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
        top = {k: kw.pop(k) for k in ("train", "cloze_weight", "text_init") if k in kw}
        s = RecSettings(progress=False, **top, **{which: kw})
        out = Path(tempfile.mkdtemp(prefix="trident_rec_sweep_"))
        if which == "sasrec":
            h = train_model("sasrec", s.sasrec, s, data, split, out)
        else:
            h = train_model("model", s.model, s, data, split, out, text if s.text_init else None, s.cloze_weight)
        print(json.dumps({"spec": spec, "best": round(h["best_val_ndcg@10"], 4), "epoch": h["best_epoch"],
                          "epochs": h["epochs"], "s": h["train_seconds"], "curve": h["val_ndcg@10"]}), flush=True)


if __name__ == "__main__":
    main()
