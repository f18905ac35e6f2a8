"""Train, save, load and evaluate the recommender artifact: the generative model and both baselines, on one split.

```
artifacts/rec/
  config.json         format, data source and fingerprint, protocol, settings, training history of each model
  model.safetensors   the generative recommender (with its frozen text features, when it has them)
  sasrec.safetensors  the SASRec baseline
  items.parquet       index, item_id, title, genres, train_users (popularity baseline), users (all data)
  sequences.parquet   user_id, items (chronological item ids), timestamps: what `recommend`, the batch job and the
                      dashboard read as each user's history
  report.json         the test evaluation at training time (the dashboard's metrics page)
  logs/               TensorBoard, one version per model
```
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from apps.recommender.data import DataError, RecData, leave_one_out
from apps.recommender.evaluate import evaluate
from apps.recommender.model import GenerativeRecommender, Popularity, SASRec, SequentialRecommender, text_embeddings
from apps.recommender.settings import ModelSettings, RecSettings, SASRecSettings
from apps.recommender.train import fit

log = logging.getLogger(__name__)
FORMAT, VERSION = "trident-rec", 1
PROTOCOL = ("leave-one-out (last item test, second-to-last validation, users with >= 3 interactions), implicit "
            "feedback (first occurrence of each user-item pair), chronological with file order breaking ties; full "
            "ranking over every catalogue item with the user's history excluded")


class RecArtifactError(RuntimeError):
    """A recommender artifact folder is missing, corrupt, or does not fit the data it is used with."""


def _sampled(cfg: ModelSettings, n_items: int) -> bool:
    return cfg.loss == "sampled" or (cfg.loss == "auto" and n_items >= cfg.sampled_above)


def item_text_features(data: RecData, enabled: bool) -> torch.Tensor | None:
    """MiniLM embeddings of the items' titles and genres, or None (disabled, or the pretrained package missing)."""
    if not enabled:
        return None
    from core.pretrained import PretrainedNotInstalled

    try:
        t0 = time.perf_counter()
        vecs = text_embeddings(data.item_texts())
        log.info("embedded %d item texts in %.1fs", data.n_items, time.perf_counter() - t0)
        return vecs
    except PretrainedNotInstalled as exc:
        log.warning("training without text features: %s", exc)
        return None


def train_all(settings: RecSettings, data: RecData, out: str | Path, evaluate_test: bool = True) -> Path:
    """Train the generative recommender and SASRec on the same leave-one-out split, count popularity, save the
    artifact, and evaluate all three on the test cases (``report.json``).

    Returns:
        The artifact folder.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    split = leave_one_out(data)
    if len(split.val) == 0:
        raise DataError("no user has 3 or more interactions: nothing to validate on (leave-one-out needs them)")
    text = item_text_features(data, settings.model.text_init)
    history: dict[str, dict] = {}
    torch.manual_seed(settings.train.seed)
    gen = GenerativeRecommender(settings.model, data.n_items, text)
    torch.manual_seed(settings.train.seed)
    sas = SASRec(settings.sasrec, data.n_items, settings.model.max_len)
    sampled = _sampled(settings.model, data.n_items)
    for name, model in (("model", gen), ("sasrec", sas)):
        log.info("training %s", name)
        history[name] = fit(model, split.train, split.val, settings.train, out, name, sampled=sampled,
                            n_negatives=settings.model.n_negatives)
    save_artifact(out, data, gen, sas, settings, history, popularity=data.popularity(split.train))
    if evaluate_test:
        art = load_artifact(out)
        report = evaluate_artifact(art, None, settings.mmr_lambdas)
        (out / "report.json").write_text(json.dumps(report, indent=2))
    return out


# ---------------------------------------------------------------------------------------------------------- save/load
def save_artifact(out: Path, data: RecData, gen: GenerativeRecommender, sas: SASRec, settings: RecSettings,
                  history: dict, popularity: np.ndarray) -> Path:
    """Write the artifact folder (see the module docstring)."""
    save_file({k: v.detach().cpu().contiguous() for k, v in gen.state_dict().items()}, str(out / "model.safetensors"))
    save_file({k: v.detach().cpu().contiguous() for k, v in sas.state_dict().items()}, str(out / "sasrec.safetensors"))
    full = data.popularity()
    items = pa.table({"index": np.arange(1, data.n_items + 1), "item_id": data.item_ids, "title": data.titles,
                      "genres": [list(g) for g in data.genres], "train_users": popularity[1:], "users": full[1:]})
    pq.write_table(items, out / "items.parquet")
    inv = np.asarray([""] + data.item_ids, dtype=object)
    seqs = pa.table({"user_id": data.users, "items": [inv[s].tolist() for s in data.seqs],
                     "timestamps": [t.tolist() for t in data.times]})
    pq.write_table(seqs, out / "sequences.parquet")
    config = {"format": FORMAT, "version": VERSION, "created": datetime.now(UTC).isoformat(timespec="seconds"),
              "data": {**data.source, "fingerprint": data.fingerprint()}, "protocol": PROTOCOL,
              "n_items": data.n_items, "text_features": gen.has_text, "model": settings.model.model_dump(),
              "sasrec": settings.sasrec.model_dump(), "train": settings.train.model_dump(), "training": history}
    (out / "config.json").write_text(json.dumps(config, indent=2, default=str))
    return out


@dataclass
class RecArtifact:
    """A loaded artifact: the catalogue and histories, the two sequence models and the popularity baseline."""

    path: Path
    config: dict
    data: RecData
    model: GenerativeRecommender
    sasrec: SASRec
    popularity: Popularity  # counted on the training sequences (the baseline)
    popularity_all: np.ndarray  # users per item over all data (the answer for unknown users)

    @property
    def version(self) -> str:
        """What identifies this artifact's weights in the batch job's manifest and the database."""
        return f"{self.config['data']['fingerprint']}-{self.config['created']}"


def read_config(path: Path) -> dict:
    path = Path(path)
    if not (path / "config.json").is_file():
        raise RecArtifactError(f"no recommender artifact at {path} (train one: trident rec train --data DIR)")
    try:
        config = json.loads((path / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecArtifactError(f"{path}/config.json is corrupt: {exc}") from exc
    if config.get("format") != FORMAT or config.get("version") != VERSION:
        raise RecArtifactError(f"{path} is not a {FORMAT} v{VERSION} artifact")
    return config


def _weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise RecArtifactError(f"artifact file missing: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise RecArtifactError(f"{path} is corrupt: {exc}") from exc


def _load_into(model: SequentialRecommender, path: Path) -> None:
    try:
        model.load_state_dict(_weights(path), strict=True)
    except RuntimeError as exc:
        raise RecArtifactError(f"{path} does not match config.json: {str(exc).splitlines()[0][:300]}") from exc
    model.eval()


def load_artifact(path: str | Path) -> RecArtifact:
    """Rebuild everything from the folder.

    Raises:
        RecArtifactError: a missing or corrupt folder or file.
    """
    path = Path(path)
    config = read_config(path)
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
    try:
        # artifacts older than a setting were trained as its earlier (then only) behaviour
        legacy = {"norm": "post", "head": "mlm"}
        mcfg = ModelSettings(**{**legacy, **config["model"]})
        scfg = SASRecSettings(**config["sasrec"])
    except (ValidationError, KeyError, TypeError) as exc:
        raise RecArtifactError(f"{path}/config.json holds invalid settings: {exc}") from exc
    text = torch.zeros(len(item_ids), 384) if config.get("text_features") else None  # the real values load below
    gen = GenerativeRecommender(mcfg, len(item_ids), text)
    _load_into(gen, path / "model.safetensors")
    sas = SASRec(scfg, len(item_ids), mcfg.max_len)
    _load_into(sas, path / "sasrec.safetensors")
    train_pop = np.r_[0, items["train_users"].to_numpy(dtype=np.int64)]
    all_pop = np.r_[0, items["users"].to_numpy(dtype=np.int64)]
    return RecArtifact(path, config, data, gen, sas, Popularity(train_pop), all_pop)


# ---------------------------------------------------------------------------------------------------------- evaluate
def torch_scorer(model: SequentialRecommender, batch_size: int = 256):
    """histories -> (B, n_items + 1) numpy scores of the next item, under inference mode."""
    from apps.recommender.data import pad_left

    @torch.inference_mode()
    def score(hists: list[np.ndarray]) -> np.ndarray:
        out = []
        for s in range(0, len(hists), batch_size):
            x = torch.from_numpy(pad_left(hists[s: s + batch_size], model.max_len))
            out.append(model.score_last(x).float().numpy())
        return np.concatenate(out)

    return score


def check_same_catalogue(art: RecArtifact, data: RecData) -> None:
    if data.fingerprint() != art.data.fingerprint():
        raise DataError(f"the data's catalogue ({data.n_items} items, fingerprint {data.fingerprint()}) is not the "
                        f"one the artifact was trained on ({art.data.n_items} items, {art.data.fingerprint()}); "
                        "retrain with trident rec train --data ...")


def evaluate_artifact(art: RecArtifact, data: RecData | None = None, mmr_lambdas=(1.0, 0.7, 0.5, 0.3),
                      return_ranks: bool = False) -> dict:
    """Test-set evaluation of the model and both baselines on the same cases (``data``: the artifact's own data).

    Returns:
        The model's metrics at the top level, ``baselines`` with ``popularity`` and ``sasrec`` holding the same keys,
        and ``mmr``: the model's accuracy / diversity trade-off per MMR lambda.
    """
    data = data or art.data
    check_same_catalogue(art, data)
    split = leave_one_out(data)
    pop = data.popularity(split.train)
    genres = data.genre_matrix()
    common = dict(cases=split.test, n_items=data.n_items, popularity=pop, n_users=data.n_users, genre_vectors=genres,
                  return_ranks=return_ranks)
    table = art.model.item_table().detach().float().numpy()
    report = evaluate(torch_scorer(art.model), mmr_vectors=table, mmr_lambdas=tuple(mmr_lambdas), **common)
    report["baselines"] = {"popularity": evaluate(lambda h: art.popularity.score(len(h)), **common),
                           "sasrec": evaluate(torch_scorer(art.sasrec), **common)}
    report["protocol"] = PROTOCOL
    report["data"] = {k: art.config["data"].get(k) for k in ("path", "format", "users", "items", "interactions")}
    return report

