"""Tests for core.runtime and the engine's runtimes: the ONNX export of a tiny artifact (parity with torch, the cache
beside the artifact and when it is redone), ONNX Runtime's sessions, and length bucketing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from apps.cli import main
from core.adapters import apply_lora
from core.artifacts import ArtifactError, load_artifact, save_artifact
from core.config import InferenceConfig, ModelConfig
from core.engine import Ensemble, InferenceEngine
from core.runtime import MANIFEST, ONNX_DIR, PARITY_TOLERANCE, export_onnx, graph_file, read_manifest
from core.tasks import CoreModel, TaskSpec

LABELS = ("refund", "card", "transfer")
TEXTS = [
    "my card was declined",
    "where is my refund",
    "the transfer has not arrived yet and i am worried about it, it was due on monday",
    "hello",
    "shares fell sharply after the weak sales forecast",
    "a good great nice excellent happy day",
    "how do i activate my new card",
]


def _model(tok, seed: int = 0, adapter: bool = True) -> CoreModel:
    """A tiny model with two text tasks, the first on the base weights, the second on a LoRA adapter that changes
    the outputs (``adapter``; else one task)."""
    torch.manual_seed(seed)
    tasks = [TaskSpec(name="intent", kind="classify", labels=LABELS, adapter="-")]
    if adapter:
        tasks.append(TaskSpec(name="mood", kind="classify", labels=("up", "down"), adapter="tuned"))
    model = CoreModel(ModelConfig.tiny(vocab_size=tok.vocab_size), tasks)
    if adapter:
        apply_lora(model.backbone, "tuned", r=2)
    with torch.no_grad():  # distinct probabilities (a fresh head is near uniform) and an adapter that matters
        for head in model.heads.values():
            head.out.weight.normal_(0.0, 1.0)
        for name, p in model.named_parameters():
            if name.endswith("lora_B.tuned"):
                p.normal_(0.0, 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def artifact(tok, tmp_path_factory):
    return save_artifact(tmp_path_factory.mktemp("runtime") / "art", _model(tok), tok)


@pytest.fixture(scope="module")
def engines(artifact) -> dict[str, InferenceEngine]:
    """One engine per runtime (batch_size 3: several batches); the ONNX ones export the artifact once."""
    return {r: InferenceEngine(artifact, InferenceConfig(runtime=r), batch_size=3)
            for r in ("torch", "torch-int8", "onnx", "onnx-int8")}


def test_export_writes_both_graphs_of_each_adapter_state_beside_the_artifact(artifact, engines):
    folder = artifact / ONNX_DIR
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["adapters"] == [None, "tuned"]
    assert manifest["tasks"] == ["intent", "mood"]
    assert sorted(manifest["graphs"]) == ["text-tuned.int8.onnx", "text-tuned.onnx", "text.int8.onnx", "text.onnx"]
    for name in manifest["graphs"]:
        assert (folder / name).stat().st_size > 0
    # the int8 graphs are smaller: their weights are stored in 8 bits
    assert (folder / "text.int8.onnx").stat().st_size < (folder / "text.onnx").stat().st_size
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no temporary left behind
    for parity in manifest["parity"].values():
        assert parity["fp32_probs"] < PARITY_TOLERANCE


@pytest.mark.parametrize("task", ["intent", "mood"])
def test_onnx_fp32_probabilities_match_torch_within_1e3(engines, corpus, task):
    texts = TEXTS + corpus
    p_torch = engines["torch"].classify_proba(texts, task)
    p_onnx = engines["onnx"].classify_proba(texts, task)
    assert np.abs(p_onnx - p_torch).max() < 1e-3
    np.testing.assert_allclose(p_onnx.sum(1), 1.0, atol=1e-5)
    # the adapter task really runs on its adapter: on the base weights its probabilities differ
    if task == "mood":
        model, tok, _ = load_artifact(engines["torch"].path)
        model.tasks["mood"] = model.tasks["mood"].model_copy(update={"adapter": "-"})
        assert np.abs(InferenceEngine.from_model(model, tok).classify_proba(texts, task) - p_torch).max() > 1e-2


def test_onnx_embeddings_match_torch_with_the_active_adapter(engines, corpus):
    texts = TEXTS + corpus
    for kwargs in ({}, {"base": True}, {"task": "mood"}):
        e_torch = engines["torch"].embed(texts, **kwargs)
        e_onnx = engines["onnx"].embed(texts, **kwargs)
        assert np.abs(e_onnx - e_torch).max() < 1e-4, kwargs
    assert np.abs(engines["onnx"].embed(texts, base=True) - engines["onnx"].embed(texts, task="mood")).max() > 1e-3


def test_onnx_int8_gives_the_same_label_on_most_texts(engines, corpus):
    # int8 rounding may flip a text whose two best classes are close; the torch int8 runtime is held to the same
    # bounds (tests/core/test_engine.py): at least 80% of the labels the same, no probability more than 0.05 off
    texts = TEXTS + corpus
    for task in ("intent", "mood"):
        p32 = engines["torch"].classify_proba(texts, task)
        p8 = engines["onnx-int8"].classify_proba(texts, task)
        assert (p8.argmax(1) == p32.argmax(1)).mean() >= 0.8
        assert np.abs(p8 - p32).max() < 0.05
    e32, e8 = engines["torch"].embed(texts, base=True), engines["onnx-int8"].embed(texts, base=True)
    assert (e32 * e8).sum(1).min() > 0.99  # cosine of unit vectors


def test_explanations_on_onnx_match_torch(engines):
    w = {LABELS[0]: 1.0, LABELS[1]: -1.0}
    (torch_words,) = engines["torch"].explain([TEXTS[2]], "intent", weights=w)
    (onnx_words,) = engines["onnx"].explain([TEXTS[2]], "intent", weights=w)
    assert [wd for wd, _ in onnx_words] == [wd for wd, _ in torch_words]
    np.testing.assert_allclose([a for _, a in onnx_words], [a for _, a in torch_words], atol=1e-4)


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_length_bucketing_gives_the_same_outputs_in_input_order(artifact, engines, corpus, runtime):
    texts = TEXTS + corpus
    plain = InferenceEngine(artifact, InferenceConfig(runtime=runtime, bucket_by_length=False), batch_size=3)
    bucketed = engines[runtime]
    # the batches differ: input order without bucketing, sorted by token length with it
    assert [list(pos) for pos, _, _ in plain._batches(texts)][0] == [0, 1, 2]
    lengths = [len(s) for s in bucketed._encode(texts)]
    first = list(next(iter(bucketed._batches(texts)))[0])
    assert sorted(lengths[i] for i in first) == sorted(lengths)[:3]
    # the same numbers come back, each in its text's row (up to float rounding of differently padded batches)
    np.testing.assert_allclose(plain.classify_proba(texts, "intent"), bucketed.classify_proba(texts, "intent"),
                               atol=1e-6)
    np.testing.assert_allclose(plain.embed(texts), bucketed.embed(texts), atol=1e-6)


def test_a_current_export_is_reused_and_a_changed_artifact_is_exported_again(tok, tmp_path, corpus):
    art = save_artifact(tmp_path / "art", _model(tok, seed=1, adapter=False), tok)
    first = export_onnx(art)
    assert first["exported"] is True
    graph = art / ONNX_DIR / graph_file(None)
    stamp = graph.stat().st_mtime_ns
    again = InferenceEngine(art, InferenceConfig(runtime="onnx"))
    assert again.onnx.manifest["exported"] is False and graph.stat().st_mtime_ns == stamp
    before = again.classify_proba(corpus, "intent")
    # new weights in the same folder (a retraining): the export is stale and done again on the next load
    save_artifact(art, _model(tok, seed=2, adapter=False), tok)
    assert read_manifest(art) is None
    fresh = InferenceEngine(art, InferenceConfig(runtime="onnx"))
    assert fresh.onnx.manifest["exported"] is True and fresh.onnx.manifest["source"] != first["source"]
    after = fresh.classify_proba(corpus, "intent")
    assert np.abs(after - before).max() > 1e-2
    assert np.abs(after - InferenceEngine(art).classify_proba(corpus, "intent")).max() < 1e-3
    # a missing graph also makes the export stale
    graph.unlink()
    assert read_manifest(art) is None


def test_sessions_take_their_intra_op_threads_from_the_settings(artifact, engines):
    eng = InferenceEngine(artifact, InferenceConfig(runtime="onnx-int8", threads=2))
    eng.classify_proba(["hello"], "intent")
    (sess,) = eng.onnx._sessions.values()
    assert sess.get_session_options().intra_op_num_threads == 2


def test_ensemble_members_are_served_on_the_runtime_given(artifact, engines):
    ens = Ensemble.load(artifact, "intent", InferenceConfig(runtime="onnx"))
    assert [m.engine.runtime for m in ens.members] == ["onnx"]
    assert np.abs(ens.classify_proba(TEXTS) - engines["torch"].classify_proba(TEXTS, "intent")).max() < 1e-3


def test_an_artifact_without_a_tokenizer_is_refused_in_one_line(tok, tmp_path):
    art = save_artifact(tmp_path / "items", _model(tok, adapter=False), None)
    with pytest.raises(ArtifactError, match="reads no text") as err:
        export_onnx(art)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="serves an artifact folder"):
        InferenceEngine.from_model(_model(tok), tok, inference=InferenceConfig(runtime="onnx"))


def test_cli_exports_once_then_reports_the_current_export(artifact, engines, capsys):
    assert main(["core", "export-onnx", "--artifact", str(artifact), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["exported"] is False  # the engines above exported it
    assert out["graphs"].split(", ") == ["text.onnx", "text.int8.onnx", "text-tuned.onnx", "text-tuned.int8.onnx"]
    assert out["parity_fp32_probs"] < PARITY_TOLERANCE
    assert main(["core", "export-onnx", "--artifact", str(artifact / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "artifact folder not found" in err
