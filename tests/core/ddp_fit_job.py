"""A 2-process CPU ddp fine-tuning run for ``test_ddp.py``: ``python -m tests.core.ddp_fit_job OUT``.

Lightning starts the second process by running this module again. The job fine-tunes a tiny random-init model on
``samples/intents.csv`` (the first 9 rows validate: an odd count, so the sampler pads one rank's share) and leaves,
per rank, what the test checks: the validation metrics each rank logged (``rank{R}.jsonl``, one line per
validation), which ranks called ``save_artifact`` (``saves.txt``), and whether the artifact was complete when
``fit`` returned (``returned{R}.json``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L

import core.train
from core.config import TrainConfig
from core.data import ListDataset, MultiTaskDataModule, TaskData, read_labelled_texts
from core.recipes import new_text_model
from core.tasks import TaskSpec

REPO_ROOT = Path(__file__).resolve().parents[2]
N_VAL = 9


class RecordMetrics(L.Callback):
    """Appends the ``val/`` metrics this rank sees after each validation to ``rank{R}.jsonl``."""

    def __init__(self, out: Path):
        self.out = out

    def on_validation_end(self, trainer, pl_module) -> None:
        vals = {k: float(v) for k, v in sorted(trainer.callback_metrics.items()) if k.startswith("val/")}
        with open(self.out / f"rank{trainer.global_rank}.jsonl", "a") as f:
            f.write(json.dumps(vals) + "\n")


def main(out: Path) -> None:
    texts, raw = read_labelled_texts(REPO_ROOT / "samples" / "intents.csv", "csv")
    labels = tuple(sorted(set(raw)))
    ys = [labels.index(r) for r in raw]
    model, tok = new_text_model("tiny", corpus=texts[N_VAL:])
    spec = TaskSpec(name="intents", kind="classify", labels=labels)
    model.add_task(spec)
    data = MultiTaskDataModule([TaskData(spec, ListDataset(texts[N_VAL:], ys[N_VAL:]),
                                         ListDataset(texts[:N_VAL], ys[:N_VAL]))],
                               tok, batch_size=16, max_length=24, seed=13)
    cfg = TrainConfig.quick(max_epochs=3, lr=3e-3, head_lr=3e-3, patience=5, accelerator="cpu", devices=2,
                            strategy="ddp_find_unused_parameters_true")
    save = core.train.save_artifact

    def counting_save(path, *args, **kwargs):
        import torch.distributed as dist

        with open(out / "saves.txt", "a") as f:
            f.write(f"{dist.get_rank()}\n")
        return save(path, *args, **kwargs)

    core.train.save_artifact = counting_save
    art = core.train.fit(model, data, cfg, out / "art", tok, progress=False, extra_callbacks=[RecordMetrics(out)])
    import torch.distributed as dist

    rank = dist.get_rank()
    (out / f"returned{rank}.json").write_text(json.dumps({"config": (art / "config.json").is_file()}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
