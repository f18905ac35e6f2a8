"""InferenceEngine: load an artifact once, then batched embed / classify / explain / generate; and Ensemble: several
engines of one classification task, their class probabilities mixed by weights.

An engine runs as its ``core.config.InferenceConfig`` says: on torch (fp32 or int8) or ONNX Runtime (fp32 or int8,
``core.runtime``), with texts sorted by token length before batching (less padding) or batched in input order; the
results come back in input order either way. An ensemble folder holds ``ensemble.json`` (:func:`write_ensemble`)::

    {"task": "sentiment", "members": ["members/0", "members/1"], "weights": [0.5, 0.5], ...}

``members`` are artifact folders relative to the ensemble folder (``"."``: its own artifact), ``weights`` one per
member (default: equal), ``tasks`` (optional) the task each member answers when it is not ``task`` (members that are
tasks of one artifact share its engine); any other key records how the ensemble was made.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.adapters import active_adapter, adapter_names, set_adapter
from core.artifacts import ArtifactError, load_artifact
from core.config import InferenceConfig, Runtime
from core.data import pad_ids
from core.generation import GenerationConfig, generate
from core.modalities import InputError, prepare_images
from core.runtime import EMBEDDING, OnnxText, logits_name, quantize_int8
from core.tasks import CoreModel, TaskSpec, UnknownTaskError

log = logging.getLogger(__name__)

MAX_CHARS = 20_000  # longer texts are cut before tokenising (the model reads at most block_size tokens anyway)
ENSEMBLE_FILE = "ensemble.json"


def _locked(fn):
    """Run ``fn`` holding the engine's lock: a call may switch the LoRA adapter, and dashboards call from threads."""

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return fn(self, *args, **kwargs)

    return wrapper


def _predictions(probs: np.ndarray, labels: Sequence[str]) -> list[Prediction]:
    """One Prediction per row of class probabilities."""
    return [Prediction(labels[int(p.argmax())], float(p.max()), dict(zip(labels, map(float, p)))) for p in probs]


@dataclass(frozen=True)
class Prediction:
    """One classification: the label, its probability, and every class's probability."""

    label: str
    score: float
    probs: dict[str, float]


class InferenceEngine:
    """Serve the artifact folder ``artifact`` as ``inference`` says (its runtime and batching; default: torch fp32,
    batches sorted by length), ``max_length`` tokens per text (longer texts are truncated with a warning),
    ``batch_size`` texts per forward pass.

    On the ONNX runtimes, text classification (``classify``, ``classify_proba``, ``explain``) and ``embed`` run in
    ONNX Runtime on the graphs exported beside the artifact (``core.runtime``; exported here when missing or out of
    date), and the rest (images, series, generation) on the torch model in fp32. On ``torch-int8`` every Linear layer
    is quantised.

    Raises:
        ArtifactError: in one line, when the artifact is missing or corrupt or its ONNX export fails.
    """

    def __init__(self, artifact: str | Path, inference: InferenceConfig | None = None, max_length: int = 256,
                 batch_size: int = 64):
        model, tok, config = load_artifact(artifact)
        self.path, self.tok, self.config = Path(artifact), tok, config
        self.inference = inference or InferenceConfig()
        self.onnx = (OnnxText(artifact, model, tok, int8=self.runtime == "onnx-int8", threads=self.inference.threads)
                     if self.runtime.startswith("onnx") else None)
        self.model: CoreModel = (quantize_int8(model) if self.runtime == "torch-int8" else model).eval()
        self.max_length, self.batch_size = min(max_length, model.cfg.block_size), batch_size
        self._lock = threading.RLock()

    @classmethod
    def from_model(cls, model: CoreModel, tok, max_length: int = 256, batch_size: int = 64,
                   inference: InferenceConfig | None = None) -> InferenceEngine:
        """Wrap a model in memory (tests, notebooks) without an artifact folder, on a torch runtime (ONNX Runtime
        serves an artifact folder, beside which its graph is kept)."""
        inference = inference or InferenceConfig()
        if inference.runtime.startswith("onnx"):
            raise ValueError(f"runtime {inference.runtime!r} serves an artifact folder: save the model first")
        self = cls.__new__(cls)
        self.path, self.tok, self.config, self.inference, self.onnx = None, tok, {}, inference, None
        self.model = (quantize_int8(model) if inference.runtime == "torch-int8" else model).eval()
        self.max_length, self.batch_size = min(max_length, model.cfg.block_size), batch_size
        self._lock = threading.RLock()
        return self

    @property
    def runtime(self) -> Runtime:
        """The runtime of text classification and embeddings: torch, torch-int8, onnx or onnx-int8."""
        return self.inference.runtime

    @property
    def tasks(self) -> dict[str, TaskSpec]:
        """The artifact's tasks by name."""
        return self.model.tasks

    def _spec(self, task: str, kind: str, what: str) -> TaskSpec:
        spec = self.model.task(task)
        if spec.kind != kind:
            raise InputError(f"task {task!r} is a {spec.kind} task, not {what}")
        return spec

    def _check_texts(self, texts: Sequence[str]) -> list[str]:
        if isinstance(texts, str):
            raise TypeError("pass a list of texts, not a single string")
        out = []
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InputError(f"text {i} is {type(t).__name__}, not str")
            if not t.strip():
                raise InputError(f"text {i} is empty")
            if len(t) > MAX_CHARS:
                log.warning("text %d has %d characters; reading the first %d", i, len(t), MAX_CHARS)
                t = t[:MAX_CHARS]
            out.append(t)
        return out

    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        ids = self.tok.encode_batch(texts, max_length=None)
        out = []
        for i, seq in enumerate(ids):
            if len(seq) > self.max_length:
                log.warning("text %d has %d tokens; truncated to %d", i, len(seq), self.max_length)
                seq = seq[: self.max_length - 1] + [self.tok.sep_id]
            out.append(seq)
        return out

    def _batches(self, texts: Sequence[str]):
        """Yield (positions, ids, mask) batches: of texts sorted by token length (``bucket_by_length``: each batch
        pads to less), or in input order."""
        yield from self._id_batches(self._encode(self._check_texts(texts)))

    def _id_batches(self, ids: Sequence[Sequence[int]]):
        """Yield (positions, ids, mask) batches of token id lists, as ``_batches`` does of texts."""
        order = (np.argsort([len(s) for s in ids], kind="stable") if self.inference.bucket_by_length
                 else np.arange(len(ids)))
        for start in range(0, len(order), self.batch_size):
            pos = order[start: start + self.batch_size]
            x, m = pad_ids([ids[i] for i in pos], self.tok.pad_id)
            yield pos, x, m

    @_locked
    @torch.inference_mode()
    def embed(self, texts: Sequence[str], task: str | None = None, base: bool = False) -> np.ndarray:
        """L2-normalised sentence embeddings, (N, C) float32; ``task`` picks the adapter of that (pairs) task,
        ``base`` switches every adapter off (the base weights alone)."""
        if task is not None:
            self.model.activate(task)
        elif base:
            set_adapter(self.model, None)
        out = np.zeros((len(texts), self.model.cfg.n_embd), dtype=np.float32)
        for pos, x, m in self._batches(texts):
            out[pos] = self._embeddings(x, m)
        return out

    def _embeddings(self, x: torch.Tensor, m: torch.Tensor) -> np.ndarray:
        """Sentence embeddings (B, C) of a padded batch, with the adapter that is active."""
        if self.onnx is None:
            return self.model.embed(x, m).float().numpy()
        return self.onnx.run(active_adapter(self.model.backbone), EMBEDDING, x, m)

    def _logits(self, task: str, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Class logits (B, n_classes) of a padded batch for text classification ``task`` (its adapter switched on)."""
        if self.onnx is None:
            return self.model.classify(task, x, m).float()
        self.model.activate(task)
        return torch.from_numpy(self.onnx.run(active_adapter(self.model.backbone), logits_name(task), x, m))

    @_locked
    @torch.inference_mode()
    def classify_proba(self, texts: Sequence[str], task: str) -> np.ndarray:
        """Class probabilities (N, n_classes) of a text task."""
        spec = self._spec(task, "classify", "a text classifier")
        out = np.zeros((len(texts), spec.n_classes), dtype=np.float32)
        for pos, x, m in self._batches(texts):
            out[pos] = torch.softmax(self._logits(task, x, m), -1).numpy()
        return out

    @_locked
    def classify(self, texts: Sequence[str], task: str) -> list[Prediction]:
        """Label, probability and class probabilities of each text."""
        return _predictions(self.classify_proba(texts, task), self.model.task(task).labels)

    @_locked
    @torch.inference_mode()
    def classify_series_proba(self, series: np.ndarray, texts: Sequence[str], task: str) -> np.ndarray:
        """Class probabilities (N, n_classes) of numeric windows (N, T, F) read together with texts (a prefix)."""
        spec = self._spec(task, "series_classify", "a series classifier")
        series = np.asarray(series, dtype=np.float32)
        if series.ndim != 3 or len(series) != len(texts):
            raise InputError(f"series of shape {series.shape} for {len(texts)} texts: expected (N, T, F)")
        out = np.zeros((len(texts), spec.n_classes), dtype=np.float32)
        for pos, x, m in self._batches(texts):
            s = torch.from_numpy(series[pos])
            out[pos] = torch.softmax(self.model.classify_series(task, s, x, m).float(), -1).numpy()
        return out

    @_locked
    @torch.inference_mode()
    def classify_images_proba(self, images: np.ndarray, task: str | None = None) -> np.ndarray:
        """Class probabilities (N, n_classes) of images (any H x W, grey or colour; see ``prepare_images``)."""
        task = task or self._only_task("image_classify")
        self._spec(task, "image_classify", "an image classifier")
        x = prepare_images(images, self.model.cfg.image_channels)
        return np.concatenate([torch.softmax(self.model.classify_images(task, batch).float(), -1).numpy()
                               for batch in x.split(self.batch_size * 4)])

    @_locked
    def classify_images(self, images: np.ndarray, task: str | None = None) -> list[Prediction]:
        """Label and probabilities of each image."""
        task = task or self._only_task("image_classify")
        return _predictions(self.classify_images_proba(images, task), self.model.task(task).labels)

    @_locked
    @torch.inference_mode()
    def explain(self, texts: Sequence[str], task: str, weights: dict[str, float] | None = None,
                max_words: int = 64) -> list[list[tuple[str, float]]]:
        """Per text, (word, attribution) pairs in text order (at most ``max_words``), by occlusion: how much the
        explained quantity drops when the word is left out. Every distinct text of the call and every variant of it
        with one word left out go through the model together, in batches (sorted by length with
        ``bucket_by_length``).

        The quantity is the ``weights``-weighted sum of class log-probabilities (e.g. ``{"positive": 1, "negative":
        -1}``: the log-odds of positive over negative), or the log-probability of the predicted class.
        Log-probabilities, because a confident prediction saturates the softmax and every attribution would vanish.
        """
        labels = self._spec(task, "classify", "a text classifier").labels
        unknown = sorted(set(weights or {}) - set(labels))
        if unknown:
            raise InputError(f"unknown classes {unknown}; {task!r} has {list(labels)}")
        w = torch.tensor([weights.get(lab, 0.0) for lab in labels]) if weights else None
        variants: list[list[int]] = []  # per distinct text: the text itself, then the text without each of its words
        found: dict[tuple[int, ...], tuple[int, list[str]]] = {}  # distinct text -> where its variants start, words
        seqs = self._encode(self._check_texts(texts))
        for seq in seqs:
            if tuple(seq) in found:  # a text met twice (a feed's boilerplate line) is explained once
                continue
            groups, words = self._words(seq, max_words)
            found[tuple(seq)] = (len(variants), words)
            variants.append(seq)
            for g in groups:
                drop = set(g)
                variants.append([t for i, t in enumerate(seq) if i not in drop])
        logp = torch.zeros(len(variants), len(labels))
        for pos, x, m in self._id_batches(variants):
            logp[torch.as_tensor(pos)] = torch.log_softmax(self._logits(task, x, m), -1)
        out = []
        for seq in seqs:
            start, words = found[tuple(seq)]
            rows = logp[start: start + 1 + len(words)]
            # the weighted log-odds, or the log-probability of the class predicted for the full text
            target = rows @ w if w is not None else rows[:, int(rows[0].argmax())]
            out.append([(word, float(target[0] - target[k + 1])) for k, word in enumerate(words)])
        return out

    def _words(self, seq: Sequence[int], max_words: int) -> tuple[list[list[int]], list[str]]:
        """The first ``max_words`` words of an encoded text (``[CLS] tokens [SEP]``): the positions in ``seq`` of each
        word's tokens (a ``##`` piece joins the word before it), and the word as written."""
        toks = self.tok.token_strings(seq[1:-1])
        groups: list[list[int]] = []
        for i, t in enumerate(toks, start=1):
            if t.startswith("##") and groups:
                groups[-1].append(i)
            else:
                groups.append([i])
        groups = groups[:max_words]
        words = ["".join(toks[i - 1][2:] if toks[i - 1].startswith("##") else toks[i - 1] for i in g)
                 for g in groups]
        return groups, words

    @_locked
    def generate(self, prompts: Sequence[str], cfg: GenerationConfig | None = None) -> list[str]:
        """Continue each prompt with text (the prompt itself is not repeated)."""
        prompts = self._check_texts(prompts)
        cfg = cfg or GenerationConfig()
        banned = tuple(sorted(self.tok.special_ids - {self.tok.sep_id}))
        cfg = GenerationConfig(**{**cfg.__dict__, "stop_ids": tuple(set(cfg.stop_ids) | {self.tok.sep_id}),
                                  "banned_ids": tuple(set(cfg.banned_ids) | set(banned))})
        # the prompt is [CLS] tokens, without the closing [SEP]: generation continues the text
        ids = [s[:-1] for s in self._encode(prompts)]
        outs = generate(self.model, ids, cfg, pad_id=self.tok.pad_id)
        return [self.tok.decode(o) for o in outs]

    def adapters(self) -> list[str]:
        """Names of the LoRA adapters in the artifact."""
        return adapter_names(self.model)

    @_locked
    def use_adapter(self, name: str | None) -> None:
        """Switch the active LoRA adapter (None: the base weights alone), e.g. retrieval vs intents."""
        set_adapter(self.model, name)

    def _only_task(self, kind: str) -> str:
        names = [n for n, t in self.model.tasks.items() if t.kind == kind]
        if len(names) != 1:
            raise InputError(f"name the task: this model has {len(names)} {kind} tasks ({names})")
        return names[0]


def write_ensemble(folder: str | Path, members: Sequence[str], weights: Sequence[float], task: str,
                   tasks: Sequence[str] | None = None, **record) -> Path:
    """Write ``folder/ensemble.json`` (the format in the module docstring) and return it: ``members`` relative to
    ``folder``, one non-negative weight each, ``tasks`` per member when not ``task``, and ``record`` kept beside."""
    if len(weights) != len(members) or (tasks is not None and len(tasks) != len(members)):
        raise ValueError(f"{len(members)} members need as many weights (and tasks); got {len(weights)}")
    spec = {"task": task, "members": list(members), "weights": [float(w) for w in weights],
            **({"tasks": list(tasks)} if tasks is not None and list(tasks) != [task] * len(members) else {}), **record}
    path = Path(folder) / ENSEMBLE_FILE
    path.write_text(json.dumps(spec, indent=2))
    return path


@dataclass(frozen=True)
class Member:
    """One voice of an ensemble: an engine, the task of it that votes, and its share (the shares sum to 1)."""

    engine: InferenceEngine
    task: str
    weight: float


class Ensemble:
    """(engine, task) members that classify into the same labels, their class probabilities mixed by ``weights``
    (default: equal; normalised to sum to 1).

    It answers like an ``InferenceEngine`` with one classification task (``tasks``, ``classify_proba``, ``classify``,
    ``explain``). Probabilities come in the first member's label order; a member of weight 0 is not run. Raises
    ``ArtifactError`` when the weights do not fit the members or the members' labels differ.
    """

    def __init__(self, members: Sequence[tuple[InferenceEngine, str]], weights: Sequence[float] | None = None,
                 task: str | None = None, path: Path | None = None):
        where = path or "the ensemble"
        if not members:
            raise ArtifactError(f"{where} has no members")
        w = np.asarray([1.0] * len(members) if weights is None else weights, dtype=np.float64)
        if w.shape != (len(members),) or (w < 0).any() or w.sum() <= 0:
            raise ArtifactError(f"{where}: need one non-negative weight per member ({len(members)}), got {list(w)}")
        specs = []
        for engine, name in members:
            if name not in engine.tasks or engine.tasks[name].kind != "classify":
                raise ArtifactError(f"{where}: member {engine.path} has no text classification task {name!r}")
            specs.append(engine.tasks[name])
        self.labels: tuple[str, ...] = tuple(specs[0].labels)
        odd = [str(e.path) for (e, _), s in zip(members, specs) if set(s.labels) != set(self.labels)]
        if odd:
            raise ArtifactError(f"{where}: members {odd} classify into other labels than {list(self.labels)}")
        self.task = task or members[0][1]
        self.path = path
        self.members = [Member(e, name, float(wi / w.sum())) for (e, name), wi in zip(members, w)]

    @classmethod
    def load(cls, folder: str | Path, task: str | None = None, inference: InferenceConfig | None = None,
             max_length: int = 256, batch_size: int = 64, engine: InferenceEngine | None = None) -> Ensemble:
        """Load ``folder``'s ``ensemble.json`` (members of weight 0 are not loaded), or else its single artifact as a
        one-member ensemble of ``task`` (required then; checked against an ``ensemble.json``), every member served
        as ``inference`` says (``InferenceEngine``). ``engine``: the
        already loaded engine of ``folder``'s own artifact. Raises ``ArtifactError`` in one line naming what is
        missing, malformed or does not fit."""
        folder = Path(folder)
        spec_path = folder / ENSEMBLE_FILE
        engines: dict[Path, InferenceEngine] = {folder.resolve(): engine} if engine is not None else {}

        def member_engine(rel: str) -> InferenceEngine:
            path = (folder / rel).resolve()
            if path not in engines:
                try:
                    engines[path] = InferenceEngine(path, inference, max_length=max_length, batch_size=batch_size)
                except ArtifactError as exc:
                    raise ArtifactError(f"member {rel!r} of the ensemble in {folder}: {exc}") from exc
            return engines[path]

        if not spec_path.is_file():
            if task is None:
                raise ArtifactError(f"name the task of the single artifact in {folder}")
            single = engine or InferenceEngine(folder, inference, max_length=max_length, batch_size=batch_size)
            return cls([(single, task)], task=task, path=folder)
        try:
            spec = json.loads(spec_path.read_text())
            members, name = [str(m) for m in spec["members"]], str(spec["task"])
            weights = [float(w) for w in spec.get("weights") or [1.0] * len(members)]
            tasks = [str(t) for t in spec.get("tasks") or [name] * len(members)]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ArtifactError(f"{spec_path} is malformed ({type(exc).__name__}: {exc})") from exc
        if task is not None and task != name:
            raise ArtifactError(f"{spec_path} answers task {name!r}, not {task!r}")
        if not (len(members) == len(weights) == len(tasks)):
            raise ArtifactError(f"{spec_path}: {len(members)} members, {len(weights)} weights, {len(tasks)} tasks")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ArtifactError(f"{spec_path}: need one non-negative weight per member, not all 0, got {weights}")
        kept = [(m, t, w) for m, t, w in zip(members, tasks, weights) if w > 0]
        return cls([(member_engine(m), t) for m, t, _ in kept], [w for *_, w in kept], task=name, path=folder)

    @property
    def tasks(self) -> dict[str, TaskSpec]:
        """The ensemble's one task, as an engine lists its tasks."""
        return {self.task: TaskSpec(name=self.task, kind="classify", labels=self.labels)}

    def _check(self, task: str | None) -> None:
        if task not in (None, self.task):
            raise UnknownTaskError(f"unknown task {task!r}; this ensemble answers {self.task!r}")

    def _active(self) -> list[Member]:
        return [m for m in self.members if m.weight > 0]

    def classify_proba(self, texts: Sequence[str], task: str | None = None) -> np.ndarray:
        """The members' class probabilities (N, n_classes) mixed by their weights, in ``labels`` order."""
        self._check(task)
        parts = []
        for m in self._active():
            cols = [list(m.engine.tasks[m.task].labels).index(lab) for lab in self.labels]
            parts.append(m.weight * m.engine.classify_proba(texts, m.task)[:, cols].astype(np.float64))
        return sum(parts).astype(np.float32)

    def classify(self, texts: Sequence[str], task: str | None = None) -> list[Prediction]:
        """Label, probability and class probabilities of each text."""
        return _predictions(self.classify_proba(texts, task), self.labels)

    def explain(self, texts: Sequence[str], task: str | None = None, weights: dict[str, float] | None = None,
                max_words: int = 64) -> list[list[tuple[str, float]]]:
        """Word attributions (``InferenceEngine.explain``) of each member, mixed by the members' weights."""
        self._check(task)
        active = self._active()
        runs = [m.engine.explain(texts, m.task, weights=weights, max_words=max_words) for m in active]
        return [[(word, float(sum(m.weight * run[i][1] for m, run in zip(active, per_text))))
                 for i, (word, _) in enumerate(per_text[0])] for per_text in zip(*runs)]
