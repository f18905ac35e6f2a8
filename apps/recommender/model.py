"""The recommender's models and its artifact: what the service, the batch job and the evaluation load.

The generative recommender and the SASRec baseline are the core's ``CoreModel`` in item mode with a ``next_item``
task, in two configurations; the generative one may also carry the items' MiniLM text features and a ``cloze`` task.
``Popularity`` is the count-based baseline.

```
artifacts/rec/
  config.json         format and version, data source and fingerprint, protocol, settings, training history
  model/              the generative recommender: a core artifact (with its frozen text features, when it has them)
  sasrec/             the SASRec baseline: a core artifact
  items.parquet       index, item_id, title, genres, train_users (popularity baseline), users (all data)
  sequences.parquet   user_id, items (chronological item ids), timestamps: what `recommend`, the batch job and the
                      dashboard read as each user's history
  report.json         the test evaluation at training time (the dashboard's metrics page)
  MODEL_CARD.md       data, splits, figures, intended use and limits, from the files above (``card.py``)
```
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from pydantic import BaseModel

from apps.recommender.data import DataError, RecData
from core.artifacts import ArtifactError
from core.artifacts import load_artifact as load_core
from core.artifacts import read_config as read_core_config
from core.config import ModelConfig
from core.data import pad_left
from core.tasks import CoreModel, TaskSpec

FORMAT, VERSION = "trident-rec", 2  # 1: the models were the app's own modules
NEXT, CLOZE = "next", "cloze"  # the task names
MODELS = ("model", "sasrec")  # the sequence models of an artifact, each in its own sub-folder


class RecArtifactError(ArtifactError):
    """A recommender artifact folder is missing, corrupt, or of a format this code does not read."""


def build_model(cfg: BaseModel, n_items: int, text: torch.Tensor | None = None,
                cloze_weight: float = 0.0) -> CoreModel:
    """A fresh sequence model over ``n_items`` items, shaped by ``cfg`` (the settings' part of a ``ModelConfig``):
    item tokens only, a next-item task, and a cloze task of weight ``cloze_weight`` when it is above 0; ``text``
    (n_items, D) gives the items frozen text features."""
    cfg = ModelConfig(**cfg.model_dump(), vocab_size=8, encoders=(), n_items=n_items,
                      item_text_dim=0 if text is None else int(text.shape[1]))
    tasks = [TaskSpec(name=NEXT, kind="next_item")]
    if cloze_weight > 0:
        tasks.append(TaskSpec(name=CLOZE, kind="cloze", weight=cloze_weight))
    model = CoreModel(cfg, tasks)
    if text is not None:
        model.item_encoder.set_text(text)
    return model


class Popularity:
    """Scores every item by the number of training users who interacted with it; ties go to the lower index."""

    def __init__(self, counts: np.ndarray):
        n = len(counts)
        self.scores = np.asarray(counts, dtype=np.float64) - np.arange(n) / (n + 1.0)  # deterministic tie-break
        self.scores[0] = -np.inf

    def score(self, n_rows: int) -> np.ndarray:
        """(n_rows, n_items + 1) the same scores for everyone."""
        return np.broadcast_to(self.scores, (n_rows, len(self.scores))).copy()


def torch_scorer(model: CoreModel, batch_size: int = 256) -> Callable[[list[np.ndarray]], np.ndarray]:
    """histories -> (B, n_items + 1) numpy scores of the next item, under inference mode."""

    @torch.inference_mode()
    def score(hists: list[np.ndarray]) -> np.ndarray:
        out = []
        for s in range(0, len(hists), batch_size):
            x = torch.from_numpy(pad_left(hists[s: s + batch_size], model.cfg.block_size))
            out.append(model.score_next(x).float().numpy())
        return np.concatenate(out)

    return score


@dataclass
class RecArtifact:
    """A loaded artifact: the catalogue and histories, the two sequence models and the popularity baseline."""

    path: Path
    config: dict
    data: RecData
    model: CoreModel
    sasrec: CoreModel
    popularity: Popularity  # counted on the training sequences (the baseline)
    popularity_all: np.ndarray  # users per item over all data (the answer for unknown users)

    @property
    def version(self) -> str:
        """What identifies this artifact's weights in the batch job's manifest and the database."""
        return f"{self.config['data']['fingerprint']}-{self.config['created']}"


def check_same_catalogue(art: RecArtifact, data: RecData) -> None:
    """Refuse data whose catalogue is not the one the artifact was trained on."""
    if data.fingerprint() != art.data.fingerprint():
        raise DataError(f"the data's catalogue ({data.n_items} items, fingerprint {data.fingerprint()}) is not the "
                        f"one the artifact was trained on ({art.data.n_items} items, {art.data.fingerprint()}); "
                        "retrain with trident rec train --data ...")


def save_artifact(out: Path, data: RecData, popularity: np.ndarray, meta: dict) -> Path:
    """Write the catalogue, the histories and ``config.json`` (with ``meta``) beside the models' own folders."""
    items = pa.table({"index": np.arange(1, data.n_items + 1), "item_id": data.item_ids, "title": data.titles,
                      "genres": [list(g) for g in data.genres], "train_users": popularity[1:],
                      "users": data.popularity()[1:]})
    pq.write_table(items, out / "items.parquet")
    inv = np.asarray([""] + data.item_ids, dtype=object)
    seqs = pa.table({"user_id": data.users, "items": [inv[s].tolist() for s in data.seqs],
                     "timestamps": [t.tolist() for t in data.times]})
    pq.write_table(seqs, out / "sequences.parquet")
    config = {"format": FORMAT, "version": VERSION, "created": datetime.now(UTC).isoformat(timespec="seconds"),
              "data": {**data.source, "fingerprint": data.fingerprint()}, "n_items": data.n_items, **meta}
    (out / "config.json").write_text(json.dumps(config, indent=2, default=str))
    return out


def read_config(path: str | Path) -> dict:
    """The parsed ``config.json`` of a recommender artifact, of a format version this code reads."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise RecArtifactError(f"no recommender artifact at {path} (train one: trident rec train --data DIR)")
    try:
        return read_core_config(path, f"trident rec train --out {path}", FORMAT, (VERSION,))
    except ArtifactError as exc:
        raise RecArtifactError(str(exc)) from exc


def read_histories(path: str | Path, config: dict) -> tuple[RecData, np.ndarray, np.ndarray]:
    """The catalogue and histories of the artifact at ``path`` (its ``config``), with its popularity counts over the
    training sequences and over all data ((n_items + 1,) each, 0 for the padding index).

    Raises:
        RecArtifactError: ``items.parquet`` or ``sequences.parquet`` is missing or unreadable.
    """
    path = Path(path)
    try:
        items = pq.read_table(path / "items.parquet").to_pandas()
        seqs = pq.read_table(path / "sequences.parquet").to_pandas()
    except (OSError, pa.ArrowException) as exc:
        raise RecArtifactError(f"{path}: cannot read items.parquet / sequences.parquet: {exc}") from exc
    item_ids = [str(i) for i in items["item_id"]]
    index = {iid: i + 1 for i, iid in enumerate(item_ids)}
    data = RecData(item_ids, [str(t) for t in items["title"]], [tuple(g) for g in items["genres"]],
                   [str(u) for u in seqs["user_id"]],
                   [np.asarray([index[i] for i in s], dtype=np.int64) for s in seqs["items"]],
                   [np.asarray(t, dtype=np.int64) for t in seqs["timestamps"]], config["data"])
    train_pop, all_pop = (np.r_[0, items[c].to_numpy(dtype=np.int64)] for c in ("train_users", "users"))
    return data, train_pop, all_pop


def load_artifact(path: str | Path) -> RecArtifact:
    """Rebuild everything from the folder.

    Raises:
        RecArtifactError: a missing or corrupt folder or file, or an artifact of an older format.
    """
    path = Path(path)
    config = read_config(path)
    data, train_pop, all_pop = read_histories(path, config)
    try:
        models = [load_core(path / name, retrain=f"trident rec train --out {path}")[0] for name in MODELS]
    except ArtifactError as exc:
        raise RecArtifactError(str(exc)) from exc
    return RecArtifact(path, config, data, *models, Popularity(train_pop), all_pop)
