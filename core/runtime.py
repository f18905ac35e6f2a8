"""The runtimes an ``InferenceEngine`` serves text with: torch fp32, torch with int8 dynamic quantisation, and ONNX
Runtime (fp32 or int8) on a graph exported from the artifact and kept beside it::

    ARTIFACT/onnx/
      export.json          {"exporter": 1, "source": SHA-256 of the weights and config, "graphs": [...], "parity": ...}
      text.onnx            the text graph on the base weights
      text.int8.onnx       the same with int8 weights (onnxruntime.quantization.quantize_dynamic)
      text-NAME.onnx       the text graph with LoRA adapter NAME folded in (one per adapter), and its .int8.onnx

A text graph runs the backbone once and returns the sentence embedding (``sentence_embedding``, (B, C)) and the
logits of every text classification task (``logits.TASK``, (B, n_classes)) for ``input_ids`` (B, T) int64 and
``attention_mask`` (B, T) bool; B and T are dynamic (T up to ``block_size``). The export is redone when the
artifact's weights or config change (their SHA-256 is recorded) or when this module's ``EXPORTER`` version does, and
refused when the fp32 graph's probabilities differ from torch's by more than ``PARITY_TOLERANCE`` on probe texts.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from core.adapters import active_adapter, adapter_names, merge_adapter, set_adapter
from core.artifacts import ArtifactError, load_artifact
from core.data import pad_ids
from core.tasks import CoreModel
from core.tokenizer import Tokenizer

log = logging.getLogger(__name__)

EXPORTER = 1  # bump when the exported graph changes: every cached export is then redone
ONNX_DIR, MANIFEST = "onnx", "export.json"
EMBEDDING = "sentence_embedding"
PARITY_TOLERANCE = 1e-3  # largest |p_onnx - p_torch| an fp32 export may show on the probe texts
# probe texts of the parity check at export: short and long, so that padding is exercised in one batch
PROBE = [
    "The company reported a strong rise in quarterly profit.",
    "Shares fell sharply after the weak sales forecast, and analysts cut their targets for the rest of the year.",
    "My card payment was declined.",
    "Where is my refund?",
    "Hello",
    "Operating profit totalled EUR 9.8 mn, down from EUR 11.7 mn in the corresponding period a year earlier, the "
    "company said in a statement on Tuesday.",
]


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantisation of every ``nn.Linear`` (weights int8, activations quantised per batch)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization warns of its own deprecation when imported and used
        from torch.ao.quantization import quantize_dynamic  # why: here only, so that its warnings can be silenced

        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def logits_name(task: str) -> str:
    """The graph output holding the logits of text classification task ``task``."""
    return f"logits.{task}"


def graph_file(adapter: str | None, int8: bool = False) -> str:
    """File name of the text graph with ``adapter`` active (None: the base weights)."""
    return f"text{'' if adapter is None else '-' + adapter}{'.int8' if int8 else ''}.onnx"


def text_tasks(model: CoreModel) -> list[str]:
    """The model's text classification tasks, in the order of the graph's outputs."""
    return [name for name, spec in model.tasks.items() if spec.kind == "classify"]


def source_digest(folder: str | Path) -> str:
    """SHA-256 over the files an export is made of: ``config.json`` and the weights (backbone, heads, adapters)."""
    folder = Path(folder)
    files = [folder / "config.json", folder / "model.safetensors", *sorted((folder / "heads").glob("*.safetensors")),
             *sorted((folder / "adapters").glob("*.safetensors"))]
    h = hashlib.sha256()
    for f in files:
        if not f.is_file():
            continue
        h.update(f.relative_to(folder).as_posix().encode() + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


class TextGraph(nn.Module):
    """What is exported: the backbone once, then the embedding head and every text classifier head."""

    def __init__(self, model: CoreModel):
        super().__init__()
        self.model, self.tasks = model, text_tasks(model)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hidden, full = self.model.encode(input_ids, attention_mask)
        return (self.model.embed_head(hidden, full), *(self.model.heads[t](hidden, full) for t in self.tasks))


class _DropQuantizeHint(logging.Filter):
    # quantize_dynamic advises shape-inference pre-processing on the root logger; that pre-processing fails on the
    # exporter's graphs, and the dynamic quantisation does not need it
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's and the quantiser's progress lines and warnings (missing torchvision, deprecations)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    hint = _DropQuantizeHint()
    logging.getLogger().addFilter(hint)
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.getLogger().removeFilter(hint)
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export_graph(model: CoreModel, path: Path) -> None:
    """Export ``model``'s text graph, in its current adapter state, to ``path`` (one file, weights inside)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # heavy; only when exporting

    graph = TextGraph(model).eval()
    ids, mask = pad_ids([[2, 5, 6, 3], [2, 7, 3]], 0)  # (2, 4): a padded row, so the mask is a real input
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=model.cfg.block_size)
    with _quiet(), torch.no_grad():
        torch.onnx.export(graph, (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
                          output_names=[EMBEDDING, *(logits_name(t) for t in graph.tasks)],
                          dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
                          dynamo=True, external_data=False, verbose=False)
        # per-channel weight scales: per-tensor ones cost MiniLM's embeddings several cosine points; 7-bit weights
        # (reduce_range): CPUs without VNNI add pairs of uint8 x int8 products in 16 bits, which full-range weights
        # can overflow (a model with large weights then loses most of its accuracy)
        quantize_dynamic(str(path), str(path.with_suffix(".int8.onnx")), weight_type=QuantType.QInt8,
                         per_channel=True, reduce_range=True)


def session(path: str | Path, threads: int = 0):
    """An ONNX Runtime CPU session of the graph ``path`` with ``threads`` intra-op threads (0: its default)."""
    import onnxruntime as ort  # heavy; only where ONNX Runtime serves

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1  # the graph is one chain of operators: nothing runs side by side
    opts.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _parity(model: CoreModel, tok: Tokenizer, folder: Path, adapter: str | None) -> dict[str, float]:
    """Largest |p_onnx - p_torch| over the probe texts and every text task (``probs``), and the largest difference of
    the embeddings (``embedding``), of the fp32 and the int8 graph of ``adapter``."""
    x, m = pad_ids(tok.encode_batch(PROBE, max_length=model.cfg.block_size), tok.pad_id)
    with torch.no_grad():
        want = [t.numpy() for t in TextGraph(model)(x, m)]
    out = {}
    for int8 in (False, True):
        got = session(folder / graph_file(adapter, int8)).run(None, {"input_ids": x.numpy(),
                                                                     "attention_mask": m.numpy()})
        probs = [np.abs(_softmax(g) - _softmax(w)).max() for g, w in zip(got[1:], want[1:])]
        kind = "int8" if int8 else "fp32"
        out[f"{kind}_probs"] = float(max(probs, default=0.0))
        out[f"{kind}_embedding"] = float(np.abs(got[0] - want[0]).max())
    return out


def _softmax(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(logits), -1).numpy()


def read_manifest(folder: str | Path) -> dict | None:
    """The artifact's ``onnx/export.json`` when it is current (this exporter, the artifact's present weights, every
    graph on disk), else None."""
    folder = Path(folder)
    path = folder / ONNX_DIR / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(manifest, dict) or manifest.get("exporter") != EXPORTER:
        return None
    if manifest.get("source") != source_digest(folder):
        return None
    files = [graph_file(a, q) for a in manifest.get("adapters", []) for q in (False, True)]
    return manifest if files and all((folder / ONNX_DIR / f).is_file() for f in files) else None


def export_onnx(folder: str | Path, force: bool = False, model: CoreModel | None = None,
                tok: Tokenizer | None = None) -> dict:
    """Export the artifact ``folder``'s text graphs to ``folder/onnx/`` (see the module docstring), unless a current
    export is there (``force``: export anyway); ``model`` and ``tok``: the artifact already loaded (fp32).

    Returns:
        The manifest (``export.json``) and ``"exported"``: whether the graphs were written now.

    Raises:
        ArtifactError: in one line: the artifact is missing or corrupt, reads no text, the folder cannot be
            written, the export fails, or the fp32 graph differs from torch by more than ``PARITY_TOLERANCE``.
    """
    folder = Path(folder)
    if not force and (manifest := read_manifest(folder)) is not None:
        return {**manifest, "exported": False}
    if model is None:
        model, tok, _ = load_artifact(folder)
    if tok is None:
        raise ArtifactError(f"{folder} reads no text (it has no tokenizer): ONNX Runtime serves text models only")
    names = adapter_names(model.backbone)
    for name in names:
        if not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
            raise ArtifactError(f"{folder}: adapter name {name!r} cannot name a file; use letters, digits, _ and -")
    states: list[str | None] = [None, *names]
    target = folder / ONNX_DIR
    digest = source_digest(folder)
    before = active_adapter(model.backbone)
    try:
        target.mkdir(exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=target))
    except OSError as exc:
        raise ArtifactError(f"cannot write the ONNX export beside the artifact, in {target}: {exc}") from None
    try:
        parity = {}
        for state in states:
            set_adapter(model.backbone, state)
            # an adapter is folded into the weights it updates: plain Linear layers, which quantise as well as the
            # base ones (the low-rank product quantised on its own costs int8 most of its accuracy)
            graph = model if state is None else merge_adapter(copy.deepcopy(model), state)
            try:
                _export_graph(graph, tmp / graph_file(state))
            except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds; the user gets one line
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise ArtifactError(f"exporting {folder} to ONNX failed: {type(exc).__name__}: {first[:300]}") from exc
            parity[graph_file(state)] = _parity(model, tok, tmp, state)
            if parity[graph_file(state)]["fp32_probs"] > PARITY_TOLERANCE:
                raise ArtifactError(f"the ONNX export of {folder} ({graph_file(state)}) differs from torch by "
                                    f"{parity[graph_file(state)]['fp32_probs']:.2e} in probability (more than "
                                    f"{PARITY_TOLERANCE:g}); serve it with the torch runtime")
        manifest = {"exporter": EXPORTER, "source": digest, "torch": torch.__version__, "adapters": states,
                    "tasks": text_tasks(model), "graphs": [graph_file(s, q) for s in states for q in (False, True)],
                    "parity": parity}
        for f in tmp.iterdir():  # each file lands whole: a reader never sees half a graph
            os.replace(f, target / f.name)
        tmp_manifest = target / f".{MANIFEST}.{os.getpid()}"
        tmp_manifest.write_text(json.dumps(manifest, indent=2))
        os.replace(tmp_manifest, target / MANIFEST)
    finally:
        set_adapter(model.backbone, before)
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported %s to ONNX (%s)", folder, ", ".join(manifest["graphs"]))
    return {**manifest, "exported": True}


class OnnxText:
    """ONNX Runtime sessions of an artifact's text graphs, fp32 or ``int8``, one per adapter state, opened on first
    use with ``threads`` intra-op threads. The export is made (or found current) when this is built."""

    def __init__(self, folder: str | Path, model: CoreModel, tok: Tokenizer | None, int8: bool, threads: int = 0):
        self.folder, self.int8, self.threads = Path(folder), int8, threads
        self.manifest = export_onnx(self.folder, model=model, tok=tok)
        self._sessions: dict[str | None, object] = {}

    def run(self, adapter: str | None, output: str, ids: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
        """The graph output ``output`` for (B, T) ``ids`` and ``mask``, with ``adapter`` active."""
        if adapter not in self._sessions:
            self._sessions[adapter] = session(self.folder / ONNX_DIR / graph_file(adapter, self.int8), self.threads)
        feed = {"input_ids": ids.numpy(), "attention_mask": mask.bool().numpy()}
        return self._sessions[adapter].run([output], feed)[0]
